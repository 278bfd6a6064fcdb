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
pub mod byfilter;
pub mod filter;
pub mod live;
pub mod notify;
mod pool;
mod sockopt;
mod stash;
mod sys;
mod walk;

pub use byfilter::Choice;
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
/// effect at the next start). `choice` picks how accepts are judged
/// (`crate::byfilter`); `say` gets the one line that tells which, and the mode's
/// later diagnostics.
pub fn run(
    source: Source,
    cmd: &[OsString],
    choice: Choice,
    say: Arc<dyn Fn(&str) + Send + Sync>,
) -> Result<Outcome, String> {
    probe()?;
    let audit = audit::Audit::open(&source.current().policy)?;
    let (byfilter, accepts) = accept_mode(&source, choice, &say)?;
    let (parent, child) = sys::socketpair().map_err(|e| format!("socketpair: {e}"))?;
    // Forwarded signals are taken by one thread with sigwait; blocked everywhere
    // else (threads inherit the mask, the child gets an empty one).
    sys::block_forwarded();
    let mut c = Command::new(&cmd[0]);
    c.args(&cmd[1..]);
    sys::filter_before_exec(&mut c, filter::program(accepts), child);
    let proc = match c.spawn() {
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
    let mut proc = proc;
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
        byfilter: byfilter.clone(),
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
    let code = match byfilter {
        Some(bf) => {
            let s3 = Arc::clone(&sup);
            std::thread::Builder::new()
                .name("sockexit-reload".into())
                .spawn(move || walk::watch(s3, bf))
                .map_err(|e| format!("cannot start the reload thread: {e}"))?;
            reap_until(pid)
        }
        None => {
            let st = proc.wait().map_err(|e| format!("wait: {e}"))?;
            match (st.code(), st.signal()) {
                (Some(c), _) => c as u8,
                (None, Some(s)) => 128u8.wrapping_add(s as u8),
                _ => 1,
            }
        }
    };
    // Descendants still under the filter keep being served; the listener reports
    // a hang-up when the last of them is gone.
    let _ = server.join();
    Ok(Outcome::Exited(code))
}

/// Decide how accepts are judged, say it, and prepare accept-by-filter mode (the
/// filters of inherited listeners, the subreaper).
fn accept_mode(
    source: &Source,
    choice: Choice,
    say: &Arc<dyn Fn(&str) + Send + Sync>,
) -> Result<(Option<Arc<byfilter::ByFilter>>, filter::Accepts), String> {
    let cur = source.current();
    let (mut accepts, mut why) = byfilter::choose(choice, &cur.policy)?;
    let mut bf = None;
    if accepts == filter::Accepts::Filter {
        let say2 = Arc::clone(say);
        let b = byfilter::ByFilter::new(cur.generation, Box::new(move |m| say2(m)));
        let ready = byfilter::inherited(&b, &cur).and_then(|keys| {
            sys::set_subreaper().map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
            Ok(keys)
        });
        match ready {
            Ok(keys) => {
                b.registry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .listeners
                    .extend(keys);
                bf = Some(Arc::new(b));
            }
            Err(e) if choice == Choice::Filter => {
                return Err(format!(
                    "--accept=filter: accept-by-filter mode cannot be used: {e}"
                ))
            }
            Err(e) => {
                accepts = filter::Accepts::Notify;
                why = format!("notified accepts (accept-by-filter mode not chosen: {e})");
            }
        }
    }
    say(&format!("accepts: {why}"));
    Ok((bf, accepts))
}

/// As a subreaper: reap every child, return CMD's exit code when CMD is reaped, and
/// go on reaping the orphans the tree leaves us on a thread of its own.
fn reap_until(cmd: u32) -> u8 {
    let code = loop {
        match sys::wait_any() {
            Some((p, code)) if p == cmd => break code,
            Some(_) => {}
            None => break 1,
        }
    };
    let _ = std::thread::Builder::new()
        .name("sockexit-reaper".into())
        .spawn(|| loop {
            if sys::wait_any().is_none() {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        });
    code
}
