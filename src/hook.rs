//! What each interposed call does, in safe Rust: decide, then act on the verdict.
//!
//! The allowed fast path takes no lock and allocates nothing, so it is safe in a child
//! of a multi-threaded `fork()` and from a signal handler. The one exception is the
//! first IP call of a process whose policy has big set files: it compiles them
//! (allocating, but taking no lock: see [`crate::state::Loaded::Deferred`]).
//!
//! Every call is judged, including one a signal handler makes while the same thread is
//! inside a hook: the hooks keep no per-thread state across the real (blocking) call,
//! and deciding is re-entrant. The only calls not judged are those made while the
//! library itself is loading on this thread (its constructor), when there is no
//! policy to judge with yet: an IP call then is refused.

use crate::facts::LazyFacts;
use crate::state::state;
use crate::sys::{self, accept::Target, c_int, Addr};
use sockexit_engine::{AuditEvents, BlockingAccept, Call, Judged, Mode, Policy, Verdict};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

thread_local! {
    /// Set while this thread loads the library (policy, audit target): a socket call
    /// that reaches a hook then (a signal handler) must not wait for the load.
    static LOADING: Cell<bool> = const { Cell::new(false) };
}

/// How many threads are loading the library right now: almost always 0, so the hot
/// path reads one global atomic instead of a thread-local (`__tls_get_addr` in a
/// shared library).
static LOADERS: AtomicUsize = AtomicUsize::new(0);

/// Whether this thread is loading the library right now.
#[inline]
pub(crate) fn loading() -> bool {
    LOADERS.load(Ordering::Relaxed) != 0 && loading_here()
}

/// Out of line, or the compiler hoists the thread-local's address computation above
/// the cheap check.
#[cold]
#[inline(never)]
fn loading_here() -> bool {
    LOADING.with(|c| c.get())
}

/// Marks the thread as loading the library until dropped (also on unwind); nests.
pub struct Loading(bool);

impl Loading {
    pub fn enter() -> Loading {
        // Counted before the thread-local is set, so `loading()` never misses it.
        LOADERS.fetch_add(1, Ordering::SeqCst);
        Loading(LOADING.with(|c| c.replace(true)))
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        LOADING.with(|c| c.set(self.0));
        LOADERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Decide one call and record it if the policy asks to. Returns whether to let it
/// through (audit mode lets everything through).
///
/// Only the allowed, unrecorded case is on the hot path; every other outcome goes
/// through [`report`], kept out of line so the hooks' code stays a few cache lines
/// (the kernel's TCP work between two calls evicts it).
fn check(call: Call, fd: c_int, remote: Option<SocketAddr>) -> bool {
    if loading() {
        return refused_while_loading(call);
    }
    let st = state();
    let Some(policy) = st.policy() else {
        return no_policy(call, st.on_error_allow);
    };
    let mut facts = LazyFacts::new(call, fd, remote, st.program.as_deref(), st.live());
    let j = policy.judge(call, &mut facts);
    if j.decision.verdict == Verdict::Allow && policy.audit().events == AuditEvents::Deny {
        return true;
    }
    report(call, policy, j, &mut facts, remote, st.audit_enabled)
}

#[cold]
#[inline(never)]
fn no_policy(call: Call, on_error_allow: bool) -> bool {
    log::debug!("{} refused: no valid policy (fail closed)", call.as_str());
    on_error_allow
}

#[cold]
#[inline(never)]
fn refused_while_loading(call: Call) -> bool {
    // No logging either: the logger may be what is being set up.
    let _ = call;
    false
}

/// A refusal, or any decision when `audit.events: all`: the audit line, the debug
/// log, and the verdict (audit mode lets everything through).
#[cold]
#[inline(never)]
fn report(
    call: Call,
    policy: &Policy,
    j: Judged<'_>,
    facts: &mut LazyFacts<'_>,
    remote: Option<SocketAddr>,
    audit_enabled: bool,
) -> bool {
    let d = j.decision;
    // The addresses of the form that was judged: a connect to 0.0.0.0 is recorded as
    // the loopback address it reaches.
    let remote = j.remote.or(remote);
    if audit_enabled {
        let local = j.local.or_else(|| facts.local_cached());
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
                    "{} {} refused by rule {}{}{}",
                    call.as_str(),
                    remote.map(|r| r.to_string()).unwrap_or_default(),
                    d.rule,
                    state()
                        .generation()
                        .map(|g| format!(" of policy generation {g}"))
                        .unwrap_or_default(),
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

/// accept/accept4: hand over the first allowed connection; refused ones are reset
/// unseen. Never blocks longer than the real call would have (see [`after_refusal`]).
/// Returns the new fd, or -1 with errno set.
pub fn accept(fd: c_int, flags: Option<c_int>, target: &mut Target) -> c_int {
    // Only under `blocking_accept: wait` is the call timed (SO_RCVTIMEO counts from
    // its start); the default path reads no clock.
    let started = wait_mode().then(Instant::now);
    let mut deadline = None;
    loop {
        let (newfd, peer) = match target.accept(fd, flags) {
            Ok(x) => x,
            Err(_) => return -1, // errno is still the real call's
        };
        let saved = sys::errno();
        // If deciding panics, the connection must not stay open and unjudged.
        let conn = ResetOnDrop(newfd);
        let allowed = match peer {
            Addr::Other => true, // AF_UNIX and friends pass through untouched
            Addr::Ip(p) => check(Call::Accept, newfd, Some(p)),
            Addr::Undecodable => false,
        };
        if allowed {
            std::mem::forget(conn);
            sys::set_errno(saved);
            return newfd;
        }
        drop(conn);
        target.rewind();
        if let Err(errno) = after_refusal(fd, started, &mut deadline) {
            sys::set_errno(errno);
            return -1;
        }
    }
}

/// Whether the policy says `blocking_accept: wait`.
#[inline]
fn wait_mode() -> bool {
    !loading()
        && state()
            .policy()
            .is_some_and(|p| p.blocking_accept() == BlockingAccept::Wait)
}

/// After a refused connection: whether to accept again (`Ok`), or the errno to return.
///
/// A connection already pending is taken at once. Otherwise the real call would have
/// returned that connection, so the hook must not now wait for another: a
/// select/poll-driven server with a blocking listener (xinetd, PostgreSQL, Python's
/// socketserver) would freeze until an allowed peer came, and any refused peer could
/// freeze it. A non-blocking listener gets `EAGAIN`, as from the real call. A blocking
/// one gets `ECONNABORTED` (what the kernel reports for a connection that died in the
/// queue; accept loops retry on it) — or, with `blocking_accept: wait`, the hook
/// waits for the next connection, within what is left of `SO_RCVTIMEO` counted from
/// the start of the call.
#[cold]
#[inline(never)]
fn after_refusal(
    fd: c_int,
    started: Option<Instant>,
    deadline: &mut Option<Option<Instant>>,
) -> Result<(), c_int> {
    if sys::pending(fd) {
        return Ok(());
    }
    if sys::nonblocking(fd) {
        return Err(libc::EAGAIN);
    }
    let Some(started) = started else {
        return Err(libc::ECONNABORTED);
    };
    let deadline = *deadline.get_or_insert_with(|| sys::receive_timeout(fd).map(|t| started + t));
    let Some(deadline) = deadline else {
        return Ok(()); // no SO_RCVTIMEO: the real accept may block, as it would have
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(libc::EAGAIN);
    }
    let ms = left
        .max(Duration::from_millis(1))
        .as_millis()
        .min(i32::MAX as u128) as c_int;
    match sys::wait_readable(fd, ms) {
        sys::Wait::Ready => Ok(()),
        sys::Wait::TimedOut => Err(libc::EAGAIN),
        sys::Wait::Failed => Err(sys::errno()),
    }
}

struct ResetOnDrop(c_int);

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        sys::reset_and_close(self.0);
    }
}

/// connect (and a send that connects: TCP Fast Open): whether to let it through.
/// Never touches errno.
pub fn connect(fd: c_int, dest: SocketAddr) -> bool {
    let saved = sys::errno();
    let ok = check(Call::Connect, fd, Some(dest));
    sys::set_errno(saved);
    ok
}

/// listen: -1/EACCES when refused, else the real call's result.
pub fn listen(fd: c_int, backlog: c_int) -> c_int {
    let saved = sys::errno();
    let ip = matches!(
        sys::socket_domain(fd),
        Some(libc::AF_INET) | Some(libc::AF_INET6)
    );
    if !ip {
        return sys::real_listen(fd, backlog);
    }
    if let Err(e) = bind_as_listen_would(fd) {
        sys::set_errno(e);
        return -1;
    }
    if !check(Call::Listen, fd, None) {
        sys::set_errno(libc::EACCES);
        return -1;
    }
    if let Some(p) = state().policy() {
        if p.stealth() {
            crate::stealth::on_listen(fd, p);
        }
    }
    sys::set_errno(saved);
    sys::real_listen(fd, backlog)
}

/// `listen(2)` on an unbound socket binds it to an ephemeral port first; do that now,
/// so the listen is judged on the port it will really listen on (and stealth filters
/// for it). A bind that fails is the error the listen's own bind would have had.
fn bind_as_listen_would(fd: c_int) -> Result<(), c_int> {
    let Some(local) = sys::local_addr(fd) else {
        return Ok(()); // the kernel will say what is wrong with this socket
    };
    if local.port() != 0 {
        return Ok(());
    }
    if !sys::bind_ephemeral(fd, local) {
        return Err(sys::errno());
    }
    if sys::local_addr(fd).is_some_and(|l| l.port() == 0) {
        // IP_BIND_ADDRESS_NO_PORT deferred the port again: pick it now.
        sys::bind_port_now(fd);
        if !sys::bind_ephemeral(fd, local) {
            return Err(sys::errno());
        }
    }
    Ok(())
}

/// Ways the program's socket calls can escape the library, seen at run time.
#[derive(Clone, Copy)]
pub enum Lost {
    /// A plugin `dlopen`ed with `RTLD_DEEPBIND` binds its calls to libc first.
    DeepBind,
    /// `dlmopen` into a new namespace: a second libc the library does not hook.
    Namespace,
    /// An exec of a statically linked program: `LD_PRELOAD` cannot reach it.
    StaticExec,
}

/// Say once per process (per kind) that calls will escape the library: the
/// administrator believes every call is judged. Cold; one `log::warn!`.
#[cold]
#[inline(never)]
pub fn coverage_lost(kind: Lost, what: &[u8]) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SAID: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];
    if SAID[kind as usize].swap(true, Ordering::Relaxed) || loading() {
        return;
    }
    // Read now when the load did not need it (no allocation: this may run in the
    // child of a vfork).
    let mut buf = [0u8; 512];
    // Never loads a deferred policy: this runs in exec hooks, maybe after `vfork`.
    let program = match crate::state::loaded().and_then(|s| s.program.as_deref()) {
        Some(p) => String::from_utf8_lossy(p),
        None => match crate::sys::exe_path_into(&mut buf) {
            [] => "this program".into(),
            p => String::from_utf8_lossy(p),
        },
    };
    let what = String::from_utf8_lossy(what);
    let why = match kind {
        Lost::DeepBind => {
            "was loaded with RTLD_DEEPBIND: its own socket calls go to libc \
                           directly and are not judged"
        }
        Lost::Namespace => {
            "was loaded with dlmopen into a new namespace, with its own libc: \
                            its socket calls are not judged"
        }
        Lost::StaticExec => {
            "is statically linked: after this exec, LD_PRELOAD cannot reach \
                             its socket calls and nothing it does is judged"
        }
    };
    log::warn!("coverage lost in {program}: {what} {why}");
}
