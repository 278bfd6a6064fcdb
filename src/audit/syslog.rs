//! The syslog target: an AF_UNIX datagram socket connected to `/dev/log`.

use super::line::{push_syslog_header, LineBuf, Stamp, LINE_MAX};
use super::sink::{ReopenLock, Sink};
use crate::sys::logfile;
use sockexit_engine::Verdict;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};

/// Seconds between two reconnect attempts after a failed one.
const RETRY_SECS: i64 = 1;

pub struct SyslogTarget {
    pub path: &'static [u8],
    pub sock: Sink,
    /// No reconnect attempt before this time (seconds since the epoch).
    retry_at: AtomicI64,
    /// errno of the last failed connect or send (for the message), 0 if none.
    pub last_errno: AtomicI32,
}

impl SyslogTarget {
    /// Connect at load time. A failure is not reported here: the default target is
    /// syslog, and a container without `/dev/log` must not print a warning from every
    /// process it starts. It is said once, when a line cannot be delivered.
    pub fn new(path: &'static [u8]) -> SyslogTarget {
        let t = SyslogTarget {
            path,
            sock: Sink::new(),
            retry_at: AtomicI64::new(0),
            last_errno: AtomicI32::new(0),
        };
        if let Err(e) = connect_syslog(&t) {
            t.last_errno
                .store(e.raw_os_error().unwrap_or(0), Ordering::Relaxed);
        }
        t
    }
}

fn connect_syslog(t: &SyslogTarget) -> std::io::Result<()> {
    let fresh = logfile::unix_dgram_connect(t.path)?;
    let id = logfile::fd_ident(fresh).ok_or_else(std::io::Error::last_os_error)?;
    match t.sock.verified() {
        // Still ours: swap in place, the number never changes hands.
        Some(ours) => {
            logfile::replace(fresh, ours)?;
            t.sock.set(ours, id);
        }
        None => t.sock.set(fresh, id),
    }
    Ok(())
}

/// Send one record (`json` without newline) as an RFC 5424 datagram. Returns whether
/// it was handed to the syslog daemon — or deliberately dropped because its queue is
/// full (a flood of refusals must not stall the server): only an unreachable daemon
/// sends the line to the fallback.
pub fn send_syslog(
    lock: &ReopenLock,
    t: &SyslogTarget,
    st: &Stamp<'_>,
    host: &[u8],
    verdict: Verdict,
    json: &[u8],
    now: i64,
) -> bool {
    let mut line = LineBuf::<LINE_MAX>::new();
    push_syslog_header(&mut line, st, host, verdict);
    line.push(json);
    let Some(line) = line.bytes() else {
        return false;
    };
    if let Some(fd) = t.sock.verified() {
        match logfile::send_dgram(fd, line) {
            Ok(_) => return true,
            // The receive queue is full: drop rather than stall the server.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return true,
            // syslogd restarted (ECONNREFUSED) or similar: reconnect once below.
            Err(e) => t
                .last_errno
                .store(e.raw_os_error().unwrap_or(0), Ordering::Relaxed),
        }
    }
    if now < t.retry_at.load(Ordering::Acquire) {
        return false;
    }
    let Some(_held) = lock.acquire() else {
        return false;
    };
    match connect_syslog(t) {
        Ok(()) => {
            t.retry_at.store(0, Ordering::Release);
            match t.sock.verified().map(|fd| logfile::send_dgram(fd, line)) {
                Some(Ok(_)) => true,
                Some(Err(e)) => e.raw_os_error() == Some(libc::EAGAIN),
                None => false,
            }
        }
        Err(e) => {
            t.last_errno
                .store(e.raw_os_error().unwrap_or(0), Ordering::Relaxed);
            t.retry_at.store(now + RETRY_SECS, Ordering::Release);
            false
        }
    }
}
