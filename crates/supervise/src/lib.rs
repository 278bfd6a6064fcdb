//! The supervisor backend of sockexit: `sockexit run --supervise`.
//!
//! The command runs under a seccomp filter (installed in the child after
//! `PR_SET_NO_NEW_PRIVS`, before exec, inherited by every descendant) that sends
//! `connect`, `accept`, `accept4`, `listen` and Fast Open sends to this process. The
//! supervisor copies each call's arguments out of the target, judges them with the
//! same engine as the preload, and performs the allowed call itself on a
//! `pidfd_getfd` duplicate of the target's socket, answering with the real result.
//! It never lets the kernel continue a judged call. All unsafe code is in `sys`.
#![deny(unsafe_code)]

mod audit;
pub mod filter;
pub mod live;
pub mod notify;
mod pool;
mod stash;
mod sys;

pub use live::Source;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::Arc;

/// Why the kernel cannot supervise, or `Ok`.
pub fn probe() -> Result<(), String> {
    if !cfg!(target_arch = "x86_64") {
        return Err("the supervisor's seccomp filter is written for x86-64 only".into());
    }
    let actions = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail")
        .map_err(|e| format!("cannot read /proc/sys/kernel/seccomp/actions_avail ({e}): no seccomp filter support"))?;
    if !actions.split_whitespace().any(|a| a == "user_notif") {
        return Err("the kernel has no seccomp user notification (Linux 5.0 and later)".into());
    }
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = rel
        .trim()
        .split(['.', '-'])
        .map(|x| x.parse::<u32>().unwrap_or(0));
    let (maj, min) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    if (maj, min) < (5, 14) {
        return Err(format!(
            "kernel {} lacks SECCOMP_ADDFD_FLAG_SEND (Linux 5.14) needed to hand accepted \
             connections to the program",
            rel.trim()
        ));
    }
    Ok(())
}

/// How the supervised command ended.
pub enum Outcome {
    /// It ran; this is its exit status (128 + signal when killed).
    Exited(u8),
    /// It could not be started: message and exit status (127 not found, 126 other).
    NotStarted(String, u8),
}

/// Run `cmd` supervised under the policy `source` gives; returns once the command has
/// exited and no process under the filter remains. The audit target is the one of the
/// policy in use at start (as in the preload: an apply that changes `audit:` takes
/// effect at the next start).
pub fn run(source: Source, cmd: &[OsString]) -> Result<Outcome, String> {
    probe()?;
    let audit = audit::Audit::open(&source.current().policy)?;
    let (parent, child) = sys::socketpair().map_err(|e| format!("socketpair: {e}"))?;
    // Forwarded signals are taken by one thread with sigwait; blocked everywhere
    // else (threads inherit the mask, the child gets an empty one).
    sys::block_forwarded();
    let mut c = Command::new(&cmd[0]);
    c.args(&cmd[1..]);
    sys::filter_before_exec(&mut c, filter::program(filter::Accepts::Notify), child);
    let mut proc = match c.spawn() {
        Ok(p) => p,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Ok(Outcome::NotStarted(
                format!("cannot run {}: {e}", cmd[0].to_string_lossy()),
                code,
            ));
        }
    };
    // Our end of the child's socket was dropped with the Command.
    drop(c);
    let lfd = match sys::recv_fd(&parent) {
        Ok(f) => f,
        Err(e) => {
            let _ = proc.kill();
            let _ = proc.wait();
            return Err(e.to_string());
        }
    };
    let pid = proc.id();
    let sup = Arc::new(notify::Sup {
        lfd,
        source,
        audit,
        accept_locks: Default::default(),
        stash: Default::default(),
    });
    let s2 = Arc::clone(&sup);
    let server = std::thread::Builder::new()
        .name("sockexit-notify".into())
        .spawn(move || notify::serve(s2))
        .map_err(|e| format!("cannot start the notification thread: {e}"))?;
    std::thread::Builder::new()
        .name("sockexit-signals".into())
        .spawn(move || loop {
            let sig = sys::wait_forwarded();
            sys::kill(pid, sig);
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    let st = proc.wait().map_err(|e| format!("wait: {e}"))?;
    let code = match (st.code(), st.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => 128u8.wrapping_add(s as u8),
        _ => 1,
    };
    // Descendants still under the filter keep being served; the listener reports
    // a hang-up when the last of them is gone.
    let _ = server.join();
    Ok(Outcome::Exited(code))
}
