//! What each interposed call does, in safe Rust: decide, then act on the verdict.
//!
//! The allowed fast path takes no lock and allocates nothing, so it is safe in a child
//! of a multi-threaded `fork()` and from a signal handler. The one exception is the
//! first IP call of a process whose policy has big set files: it compiles them
//! (allocating, but taking no lock: see [`crate::state::Loaded::Deferred`]).

use crate::facts::LazyFacts;
use crate::state::state;
use crate::sys::{self, c_int, Dest, PeerBuf};
use sockexit_engine::{AuditEvents, Call, Decision, Mode, Policy, Verdict};
use std::cell::Cell;
use std::net::SocketAddr;

thread_local! {
    /// Set while this thread is inside a hook: the library's own socket use (NSS user
    /// lookups, syslog, ...) must reach the real functions, not recurse.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is already inside one of our hooks.
pub fn in_hook() -> bool {
    // try_with: during thread teardown TLS may be gone; treat as re-entrant (the
    // thread is exiting, and recursing into the engine then is what we must avoid).
    IN_HOOK.try_with(|c| c.get()).unwrap_or(true)
}

/// Marks the thread as inside a hook until dropped (also on unwind).
pub struct Guard(());

impl Guard {
    pub fn enter() -> Guard {
        let _ = IN_HOOK.try_with(|c| c.set(true));
        Guard(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = IN_HOOK.try_with(|c| c.set(false));
    }
}

/// Decide one call and record it if the policy asks to. Returns whether to let it
/// through (audit mode lets everything through).
///
/// Only the allowed, unrecorded case is on the hot path; every other outcome goes
/// through [`report`], kept out of line so the hooks' code stays a few cache lines
/// (the kernel's TCP work between two calls evicts it).
fn check(call: Call, fd: c_int, remote: Option<SocketAddr>) -> bool {
    let st = state();
    let Some(policy) = st.policy() else {
        return no_policy(call, st.on_error_allow);
    };
    let mut facts = LazyFacts::new(fd, remote, st.program.as_deref());
    let d = policy.decide(call, &mut facts);
    if d.verdict == Verdict::Allow && policy.audit().events == AuditEvents::Deny {
        return true;
    }
    report(call, policy, d, &mut facts, remote, st.audit_enabled)
}

#[cold]
#[inline(never)]
fn no_policy(call: Call, on_error_allow: bool) -> bool {
    log::debug!("{} refused: no valid policy (fail closed)", call.as_str());
    on_error_allow
}

/// A refusal, or any decision when `audit.events: all`: the audit line, the debug
/// log, and the verdict (audit mode lets everything through).
#[cold]
#[inline(never)]
fn report(
    call: Call,
    policy: &Policy,
    d: Decision<'_>,
    facts: &mut LazyFacts<'_>,
    remote: Option<SocketAddr>,
    audit_enabled: bool,
) -> bool {
    if audit_enabled {
        let local = facts.local_cached();
        crate::audit::record(&crate::audit::Event {
            call,
            verdict: d.verdict,
            rule: d.rule,
            mode: policy.mode(),
            local,
            remote,
        });
    }
    match d.verdict {
        Verdict::Allow => true,
        Verdict::Deny => {
            if log::log_enabled!(log::Level::Debug) {
                log::debug!(
                    "{} {} refused by rule {}{}",
                    call.as_str(),
                    remote.map(|r| r.to_string()).unwrap_or_default(),
                    d.rule,
                    if policy.mode() == Mode::Audit {
                        " (audit mode: let through)"
                    } else {
                        ""
                    }
                );
            }
            policy.mode() == Mode::Audit
        }
    }
}

/// accept/accept4: take connections until one is allowed; refused ones are reset
/// unseen. Returns the new fd, or -1 with the real call's errno (so a non-blocking
/// socket reports EAGAIN exactly when the kernel does).
pub fn accept(fd: c_int, flags: Option<c_int>, buf: &mut PeerBuf) -> c_int {
    let _g = Guard::enter();
    loop {
        let newfd = match sys::real_accept(fd, flags, buf) {
            Ok(n) => n,
            Err(_) => return -1, // errno is still the real call's
        };
        let saved = sys::errno();
        let Some(peer) = buf.socket_addr() else {
            return newfd; // AF_UNIX and friends pass through untouched
        };
        // If deciding panics, the connection must not stay open and unjudged.
        let conn = ResetOnDrop(newfd);
        if check(Call::Accept, newfd, Some(peer)) {
            std::mem::forget(conn);
            sys::set_errno(saved);
            return newfd;
        }
        drop(conn);
    }
}

struct ResetOnDrop(c_int);

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        sys::reset_and_close(self.0);
    }
}

/// connect: whether to let it through. Never touches errno.
pub fn connect(fd: c_int, dest: &Dest) -> bool {
    let _g = Guard::enter();
    match dest {
        Dest::Ip(addr) => {
            let saved = sys::errno();
            let ok = check(Call::Connect, fd, Some(*addr));
            sys::set_errno(saved);
            ok
        }
        // Not an IP destination, or malformed: the kernel judges it.
        Dest::Other | Dest::Invalid => true,
    }
}

/// listen: -1/EACCES when refused, else the real call's result.
pub fn listen(fd: c_int, backlog: c_int) -> c_int {
    let _g = Guard::enter();
    let saved = sys::errno();
    let ip = matches!(
        sys::socket_domain(fd),
        Some(libc::AF_INET) | Some(libc::AF_INET6)
    );
    if ip && !check(Call::Listen, fd, None) {
        sys::set_errno(libc::EACCES);
        return -1;
    }
    if ip {
        if let Some(p) = state().policy() {
            if p.stealth() {
                crate::stealth::on_listen(fd, p);
            }
        }
    }
    sys::set_errno(saved);
    sys::real_listen(fd, backlog)
}
