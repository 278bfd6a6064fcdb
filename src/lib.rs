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
/// functions, set up diagnostics, load the policy, open the audit log.
fn init() {
    let _loading = hook::Loading::enter();
    // Never unwind out of a constructor into the dynamic loader.
    let _ = std::panic::catch_unwind(|| {
        sys::resolve_all();
        diag::init();
        // Our own std's panic hook (not the host's): report through the safe
        // diagnostics channel, never a raw write to fd 2.
        std::panic::set_hook(Box::new(|info| {
            log::error!("internal error (call refused): {info}");
        }));
        let st = state::state();
        sys::prepare_exec(&st.policy_path, st.on_error_allow);
        if let Some(cfg) = st.audit_config() {
            if st.audit_enabled {
                audit::init(cfg);
            }
        }
    });
}
