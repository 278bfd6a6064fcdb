//! The syslog target: an AF_UNIX datagram socket connected to `/dev/log`.

use super::sink::{ReopenLock, Sink};
use crate::sys::logfile;

/// Where `/dev/log` is; `SOCKEXIT_SYSLOG_SOCKET` overrides it (tests), see [`super::init`].
pub const DEV_LOG: &[u8] = b"/dev/log";

pub struct SyslogTarget {
    pub path: Vec<u8>,
    pub host: Vec<u8>,
    pub sock: Sink,
}

pub fn connect_syslog(t: &SyslogTarget) -> std::io::Result<()> {
    let fresh = logfile::unix_dgram_connect(&t.path)?;
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

pub fn send_syslog(lock: &ReopenLock, t: &SyslogTarget, line: &[u8]) {
    if let Some(fd) = t.sock.verified() {
        match logfile::send_dgram(fd, line) {
            Ok(_) => return,
            // The receive queue is full: drop rather than stall the server.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return,
            // syslogd restarted (ECONNREFUSED) or similar: reconnect once below.
            Err(_) => {}
        }
    }
    let Some(_held) = lock.acquire() else {
        return;
    };
    if connect_syslog(t).is_ok() {
        if let Some(fd) = t.sock.verified() {
            let _ = logfile::send_dgram(fd, line);
        }
    }
}
