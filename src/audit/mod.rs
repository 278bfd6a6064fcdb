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

mod file;
mod line;
mod sink;
mod syslog;

use file::{open_file_target, write_file, FileTarget};
pub use line::Event;
use line::{
    push_json, push_json_str, push_syslog_header, sanitize_host, LineBuf, Stamp, LINE_MAX,
    PROGRAM_MAX,
};
use sink::{ReopenLock, Sink};
use syslog::{connect_syslog, send_syslog, SyslogTarget, DEV_LOG};

use crate::sys::logfile;
use sockexit_engine::{AuditConfig, AuditEvents, AuditLog};
use std::sync::atomic::AtomicI32;
use std::sync::OnceLock;

enum Target {
    Stderr,
    Syslog(SyslogTarget),
    File(FileTarget),
}

struct Audit {
    target: Target,
    program_json: Vec<u8>,
    lock: ReopenLock,
}

static AUDIT: OnceLock<Audit> = OnceLock::new();

/// Called once from the load-time constructor, after the policy loaded.
///
/// `SOCKEXIT_SYSLOG_SOCKET` (an absolute path; ignored in setuid/AT_SECURE processes
/// like every `SOCKEXIT_*` variable) replaces `/dev/log`, so tests can receive the
/// datagrams. Whoever can set it can already set `SOCKEXIT_POLICY`.
pub fn init(cfg: &AuditConfig) {
    let st = Some(crate::state::state());
    let program = st.and_then(|s| s.program.as_deref());
    let mut pj = LineBuf::<{ PROGRAM_MAX + 2 }>::new();
    match program {
        Some(p) => push_json_str(&mut pj, p, PROGRAM_MAX),
        None => pj.push(b"null"),
    }
    let program_json = pj.bytes().unwrap_or(b"null").to_vec();
    let target = match &cfg.log {
        AuditLog::Off => return,
        AuditLog::Stderr => Target::Stderr,
        AuditLog::Syslog => {
            let path = crate::state::env_var("SOCKEXIT_SYSLOG_SOCKET")
                .filter(|p| p.starts_with('/'))
                .map(String::into_bytes)
                .unwrap_or_else(|| DEV_LOG.to_vec());
            let mut hb = [0u8; 256];
            let host = sanitize_host(logfile::hostname(&mut hb));
            let t = SyslogTarget {
                path,
                host,
                sock: Sink::new(),
            };
            match connect_syslog(&t) {
                Ok(()) => {}
                Err(e) => log::warn!(
                    "audit: cannot reach syslog at {}: {e}; will retry on each line",
                    String::from_utf8_lossy(&t.path)
                ),
            }
            Target::Syslog(t)
        }
        AuditLog::File(path) => match open_file_target(path) {
            Ok(t) => Target::File(t),
            Err(e) => {
                log::error!(
                    "audit: cannot open {}: {e}; no audit lines will be written",
                    path.display()
                );
                return;
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
    let _ = AUDIT.set(Audit {
        target,
        program_json,
        lock: ReopenLock(AtomicI32::new(0)),
    });
}

/// Record one decision. Safe after `fork()` in a multi-threaded program and in a
/// signal handler's hooked call: no allocation, no lock that can be left held.
pub fn record(ev: &Event<'_>) {
    let Some(a) = AUDIT.get() else { return };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let st = Stamp {
        secs: now.as_secs() as i64,
        millis: now.subsec_millis(),
        pid: crate::sys::pid(),
        uid: crate::sys::euid(),
        program_json: &a.program_json,
    };
    let mut line = LineBuf::<LINE_MAX>::new();
    match &a.target {
        Target::Syslog(t) => {
            push_syslog_header(&mut line, &st, &t.host, ev.verdict);
            push_json(&mut line, &st, ev);
            if let Some(b) = line.bytes() {
                send_syslog(&a.lock, t, b);
            }
        }
        Target::File(t) => {
            push_json(&mut line, &st, ev);
            line.push(b"\n");
            if let Some(b) = line.bytes() {
                write_file(&a.lock, t, b);
            }
        }
        Target::Stderr => {
            push_json(&mut line, &st, ev);
            line.push(b"\n");
            // Never a byte into a client's socket (inetd, `sshd -i`) or a closed fd.
            if let Some(b) = line.bytes() {
                crate::diag::write_stderr(b);
            }
        }
    }
}
