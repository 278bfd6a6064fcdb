//! Audit lines of the supervisor: the engine's formatter (the preload's lines, plus
//! `"backend":"supervise"`), written where the policy's `audit:` says.

use crate::notify::Caller;
use sockexit_engine::audit_line::journal::{
    push_journal, JournalFacts, JOURNAL_MAX, JOURNAL_SOCKET,
};
use sockexit_engine::audit_line::{
    push_json, push_json_str, push_syslog_header, sanitize_host, Event, LineBuf, Stamp, LINE_MAX,
    PROGRAM_MAX,
};
use sockexit_engine::{AuditEvents, AuditLog, Policy, Verdict};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

enum Target {
    Off,
    Stderr,
    File(Mutex<std::fs::File>),
    Syslog(UnixDatagram, Vec<u8>),
    Journal(UnixDatagram),
}

/// The policy's audit target, opened once by the supervisor.
pub struct Audit {
    target: Target,
    all: bool,
    /// The policy file, for the journal's `SOCKEXIT_POLICY`.
    policy: Vec<u8>,
}

impl Audit {
    /// Open the target the policy names (a file relative to the policy's directory).
    pub fn open(p: &Policy) -> Result<Audit, String> {
        let cfg = p.audit();
        let target = match &cfg.log {
            AuditLog::Off => Target::Off,
            AuditLog::Stderr => Target::Stderr,
            AuditLog::File(f) => {
                let path = match p.path().parent() {
                    Some(dir) if f.is_relative() => dir.join(f),
                    _ => f.clone(),
                };
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&path)
                    .map_err(|e| format!("audit log {}: {e}", path.display()))?;
                Target::File(Mutex::new(file))
            }
            AuditLog::Syslog => {
                let host = std::fs::read("/proc/sys/kernel/hostname").unwrap_or_default();
                let host = sanitize_host(host.trim_ascii());
                match UnixDatagram::unbound() {
                    Ok(s) => Target::Syslog(s, host),
                    Err(_) => Target::Stderr,
                }
            }
            // Non-blocking, as the preload's: a journal whose queue is full drops the
            // entry rather than stall every supervised call behind it.
            AuditLog::Journal => match UnixDatagram::unbound() {
                Ok(s) if s.set_nonblocking(true).is_ok() => Target::Journal(s),
                _ => Target::Stderr,
            },
        };
        Ok(Audit {
            target,
            all: cfg.events == AuditEvents::All,
            policy: p.path().as_os_str().as_bytes().to_vec(),
        })
    }

    /// Record one decision, if the policy asks for it; `generation` is the published
    /// generation that decided (`"policy":G`, as in the preload's lines), `sets` the
    /// revision of the dynamic sets' entries in force (`"sets":R`).
    pub fn record(
        &self,
        ev: &Event<'_>,
        generation: Option<u64>,
        sets: Option<u64>,
        caller: &mut Caller,
    ) {
        if matches!(self.target, Target::Off) || (!self.all && ev.verdict == Verdict::Allow) {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let (pid, uid) = caller
            .status()
            .map(|s| (s.0, s.1))
            .unwrap_or((caller.tid, u32::MAX));
        let exe = caller.exe().map(<[u8]>::to_vec);
        let mut pj = LineBuf::<{ PROGRAM_MAX + 2 }>::new();
        match &exe {
            Some(e) => push_json_str(&mut pj, e, PROGRAM_MAX),
            None => pj.push(b"null"),
        }
        let st = Stamp {
            secs: now.as_secs() as i64,
            millis: now.subsec_millis(),
            pid,
            uid,
            program_json: pj.bytes().unwrap_or(b"null"),
            backend: Some("supervise"),
            policy: generation,
            sets,
        };
        let mut line = LineBuf::<LINE_MAX>::new();
        push_json(&mut line, &st, ev);
        line.push(b"\n");
        let Some(bytes) = line.bytes() else { return };
        match &self.target {
            Target::Off => {}
            Target::Stderr => {
                let _ = std::io::stderr().write_all(bytes);
            }
            Target::File(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(bytes);
                }
            }
            Target::Syslog(sock, host) => {
                let mut m = LineBuf::<LINE_MAX>::new();
                push_syslog_header(&mut m, &st, host, ev.verdict);
                push_json(&mut m, &st, ev);
                if let Some(m) = m.bytes() {
                    if sock.send_to(m, "/dev/log").is_err() {
                        let _ = std::io::stderr().write_all(bytes);
                    }
                }
            }
            Target::Journal(sock) => {
                let facts = JournalFacts {
                    program: exe.as_deref(),
                    policy: Some(&self.policy[..]).filter(|p| !p.is_empty()),
                    backend: "supervise",
                };
                let mut m = LineBuf::<JOURNAL_MAX>::new();
                push_journal(&mut m, &st, ev, &facts, &bytes[..bytes.len() - 1], None);
                let to = OsStr::from_bytes(JOURNAL_SOCKET);
                let sent = m.bytes().map(|m| sock.send_to(m, to));
                match sent {
                    Some(Ok(_)) => {}
                    // The journal's queue is full: dropped, as the preload does.
                    Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    _ => {
                        let _ = std::io::stderr().write_all(bytes);
                    }
                }
            }
        }
    }
}
