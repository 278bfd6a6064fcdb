//! Audit trail: one JSON line per decision the policy asks to record.
//!
//! [`init`] runs once in the load-time constructor: it opens the target (a file, the
//! syslog socket, or nothing for stderr) before the program can chroot or drop
//! privileges, and pre-escapes what never changes (the program path). [`record`] runs
//! inside the hooks: it formats into a fixed stack buffer (no allocation, no lock, no
//! formatting that could allocate), checks that the descriptor is still the one it
//! opened, and writes the whole line with a single `write(2)`.
//!
//! Reopening (the program closed or reused our descriptor, or logrotate renamed the
//! file) is serialised by a lock word holding the owner's pid: a thread of this process
//! waits for it a bounded time, and a child of `fork()` that inherited it held simply
//! takes it over, so no fork can leave it stuck.
//!
//! Seams: [`line`] formats (pure), [`sink`] holds checked descriptors and the lock
//! word, [`file`], [`syslog`] and [`journal`] are the targets (the last two over one
//! [`dgram`] socket type), [`fallback`] takes what a target cannot (never silently
//! lost), [`repeat`] collapses identical refusals.

mod dgram;
mod fallback;
mod file;
mod journal;
mod line;
mod repeat;
mod sink;
mod syslog;

use dgram::DgramTarget;
use fallback::Failed;
use file::{open_file_target, write_file, FileTarget};
use journal::send_journal;
pub use line::Event;
use line::{
    push_json, push_json_repeated, push_json_str, sanitize_host, LineBuf, Repeat, Stamp, LINE_MAX,
    PROGRAM_MAX,
};
use sink::ReopenLock;
use sockexit_engine::audit_line::journal::{JournalFacts, JOURNAL_SOCKET};
use syslog::send_syslog;

use crate::sys::logfile;
use sockexit_engine::{AuditConfig, AuditEvents, AuditLog};
use std::sync::atomic::AtomicI32;

enum Target {
    Stderr,
    Syslog(DgramTarget),
    Journal(DgramTarget),
    File(FileTarget),
    /// The file could not be opened at load time (said then): every line goes to
    /// the fallback.
    Unavailable(String),
}

struct Audit {
    target: Target,
    program_json: Vec<u8>,
    /// RFC 5424 HOSTNAME, from `gethostname(2)` at load time (no resolver).
    host: Vec<u8>,
    /// The policy path as bytes, for the journal's `SOCKEXIT_POLICY`.
    policy_path: Vec<u8>,
    lock: ReopenLock,
}

/// Set by the policy load, which threads may race (see `state::STATE`): never waited on.
static AUDIT: once_cell::race::OnceBox<Audit> = once_cell::race::OnceBox::new();

/// Called once from the load-time constructor, after the policy loaded.
///
/// `SOCKEXIT_SYSLOG_SOCKET` (an absolute path; ignored in setuid/AT_SECURE processes
/// like every `SOCKEXIT_*` variable) replaces `/dev/log`, so tests can receive the
/// datagrams. Whoever can set it can already set `SOCKEXIT_POLICY`.
pub fn init(cfg: &AuditConfig, program: Option<&[u8]>, policy_path: &std::path::Path) {
    let mut pj = LineBuf::<{ PROGRAM_MAX + 2 }>::new();
    match program {
        Some(p) => push_json_str(&mut pj, p, PROGRAM_MAX),
        None => pj.push(b"null"),
    }
    let program_json = pj.bytes().unwrap_or(b"null").to_vec();
    let mut hb = [0u8; 256];
    let host = sanitize_host(logfile::hostname(&mut hb));
    let target = match &cfg.log {
        AuditLog::Off => return,
        AuditLog::Stderr => Target::Stderr,
        AuditLog::Syslog => Target::Syslog(DgramTarget::new(crate::diag::syslog_path())),
        AuditLog::Journal => Target::Journal(DgramTarget::new(JOURNAL_SOCKET)),
        AuditLog::File(path) => match open_file_target(path) {
            Ok(t) => Target::File(t),
            Err(e) => {
                log::error!(
                    "audit: cannot open {}: {e}; audit lines go to syslog (else stderr) instead",
                    path.display()
                );
                Target::Unavailable(path.display().to_string())
            }
        },
    };
    log::debug!(
        "audit: {:?}, events {}",
        cfg.log,
        match cfg.events {
            AuditEvents::Deny => "deny",
            AuditEvents::All => "all",
        }
    );
    let policy_path = {
        use std::os::unix::ffi::OsStrExt;
        policy_path.as_os_str().as_bytes().to_vec()
    };
    let _ = AUDIT.set(Box::new(Audit {
        target,
        program_json,
        host,
        policy_path,
        lock: ReopenLock(AtomicI32::new(0)),
    }));
}

/// Record one decision. Safe after `fork()` in a multi-threaded program and in a
/// signal handler's hooked call: no allocation, no lock that can be left held or
/// waited for (identical refusals are collapsed behind a `try_lock`, see [`repeat`]).
pub fn record(ev: &Event<'_>) {
    let Some(a) = AUDIT.get() else { return };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (pid, uid) = (crate::sys::pid(), crate::sys::euid());
    let now_ms = now.as_millis() as i64;
    let o = repeat::observe(ev, now_ms, pid, uid);
    if let Some(f) = &o.flush {
        emit_repeated(a, f);
    }
    if !o.write {
        return;
    }
    let st = Stamp {
        secs: now.as_secs() as i64,
        millis: now.subsec_millis(),
        pid,
        uid,
        program_json: &a.program_json,
        backend: None,
        policy: crate::state::state().generation(),
        sets: crate::state::state().sets_revision(),
    };
    // `\n{json}\n`: the leading newline is written only after a cut write (file).
    let mut rec = LineBuf::<LINE_MAX>::new();
    rec.push(b"\n");
    push_json(&mut rec, &st, ev);
    rec.push(b"\n");
    let Some(rec) = rec.bytes() else { return };
    emit(a, &st, ev, rec, None);
}

/// The `"repeated":N` line for a window of identical refusals.
fn emit_repeated(a: &Audit, f: &repeat::Flushed) {
    let (secs, millis) = f.first();
    let st = Stamp {
        secs,
        millis,
        pid: f.pid(),
        uid: f.uid(),
        program_json: &a.program_json,
        backend: None,
        policy: crate::state::state().generation(),
        sets: crate::state::state().sets_revision(),
    };
    let ev = f.event();
    let mut rec = LineBuf::<LINE_MAX>::new();
    rec.push(b"\n");
    push_json_repeated(&mut rec, &st, &ev, &f.repeat);
    rec.push(b"\n");
    if let Some(rec) = rec.bytes() {
        emit(a, &st, &ev, rec, Some(&f.repeat));
    }
}

/// At process exit (the library's destructor): write this process's pending
/// `"repeated"` count, so no refusal goes uncounted. `_exit(2)` and fatal signals
/// skip destructors: their pending count (at most one window) is not written.
pub fn at_exit() {
    let Some(a) = AUDIT.get() else { return };
    if let Some(f) = repeat::take_pending(crate::sys::pid()) {
        emit_repeated(a, &f);
    }
}

/// Send one formatted record to the target, or to the fallback if the target
/// cannot take it.
fn emit(a: &Audit, st: &Stamp<'_>, ev: &Event<'_>, rec: &[u8], repeat: Option<&Repeat>) {
    let json = &rec[1..rec.len() - 1];
    let now = st.secs;
    let failed = match &a.target {
        Target::Syslog(t) => {
            if send_syslog(&a.lock, t, st, &a.host, ev.verdict, json, now) {
                return;
            }
            let what = t.shown("syslog");
            return fallback::deliver(Failed::Syslog, &what, st, &a.host, ev.verdict, json);
        }
        Target::Journal(t) => {
            let facts = JournalFacts {
                program: crate::state::state().program.as_deref(),
                policy: Some(&a.policy_path)
                    .filter(|p| !p.is_empty())
                    .map(|p| &p[..]),
                backend: "preload",
            };
            if send_journal(&a.lock, t, st, ev, &facts, json, repeat, now) {
                return;
            }
            let what = t.shown("the journal");
            return fallback::deliver(Failed::Journal, &what, st, &a.host, ev.verdict, json);
        }
        Target::File(t) => {
            if write_file(&a.lock, t, rec, now) {
                return;
            }
            (Failed::File, t.shown())
        }
        Target::Unavailable(shown) => (Failed::File, shown.as_str()),
        Target::Stderr => {
            // Only the fd 2 the process started with, never an IP socket.
            if crate::diag::write_stderr(&rec[1..]) {
                return;
            }
            (
                Failed::Stderr,
                "stderr (closed, replaced by the program, or a socket)",
            )
        }
    };
    fallback::deliver(failed.0, &failed.1, st, &a.host, ev.verdict, json);
}
