//! `libsockexit.so`: socket exit points for Linux.
//!
//! Loaded with `LD_PRELOAD`, it checks every `accept`, `accept4`, `connect` and
//! `listen` against the policy in `$SOCKEXIT_POLICY` (default
//! `/etc/sockexit/policy.yaml`) and refuses what the policy refuses. See docs/design.md.
//!
//! Layers: [`sys`] (the only `unsafe`: libc calls and the exported symbols) →
//! [`hook`] (what each call does) → [`facts`] (lazy facts) → `sockexit_engine`
//! (the decision) → [`audit`].
#![deny(unsafe_code)]

mod audit;
mod diag;
mod facts;
mod hook;
mod live;
mod state;
mod stealth;
mod sys;

/// Load-time initialisation, run by the constructor in [`sys`]: resolve the real
/// functions, set up diagnostics, record the start, and — when `SOCKEXIT_POLICY` names
/// the policy — load it and open the audit log. The system policy (no
/// `SOCKEXIT_POLICY`) is loaded at the first call that needs it ([`state::state`]).
fn init() {
    let _loading = hook::Loading::enter();
    // Never unwind out of a constructor into the dynamic loader.
    let _ = std::panic::catch_unwind(|| {
        let start = state::start();
        // Files count as trusted by the uid the process started with, whenever read.
        sockexit_engine::trust_uid(start.uid);
        if start.eager {
            sys::resolve_all();
        } else {
            sys::resolve_exec();
        }
        diag::init();
        // Our own std's panic hook (not the host's): report through the safe
        // diagnostics channel, never a raw write to fd 2.
        std::panic::set_hook(Box::new(|info| {
            log::error!("internal error (call refused): {info}");
        }));
        if start.eager {
            state::state();
        }
        // Children must be given the library back only when it came from
        // `LD_PRELOAD`; from `/etc/ld.so.preload` every child has it anyway, and an
        // added `SOCKEXIT_POLICY` would make each of them load at start-up.
        if start.eager || std::env::var_os("LD_PRELOAD").is_some_and(|v| !v.is_empty()) {
            sys::prepare_exec(&start.policy_path(), start.on_error_allow);
        }
    });
}
