//! A datagram target: an AF_UNIX datagram socket connected at load time to a daemon's
//! socket (syslog's `/dev/log`, the journal's native socket), checked before each
//! send and reconnected — at most once a second — when the program took the number or
//! the daemon restarted.

use super::sink::{ReopenLock, Sink};
use crate::sys::logfile;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};

/// Seconds between two reconnect attempts after a failed one.
const RETRY_SECS: i64 = 1;

pub struct DgramTarget {
    pub path: &'static [u8],
    pub sock: Sink,
    /// No reconnect attempt before this time (seconds since the epoch).
    retry_at: AtomicI64,
    /// errno of the last failed connect or send (for the message), 0 if none.
    pub last_errno: AtomicI32,
}

impl DgramTarget {
    /// Connect at load time. A failure is not reported here: the default target is
    /// syslog, and a container without `/dev/log` must not print a warning from every
    /// process it starts. It is said once, when a line cannot be delivered.
    pub fn new(path: &'static [u8]) -> DgramTarget {
        let t = DgramTarget {
            path,
            sock: Sink::new(),
            retry_at: AtomicI64::new(0),
            last_errno: AtomicI32::new(0),
        };
        if let Err(e) = t.connect() {
            t.last_errno
                .store(e.raw_os_error().unwrap_or(0), Ordering::Relaxed);
        }
        t
    }

    fn connect(&self) -> std::io::Result<()> {
        let fresh = logfile::unix_dgram_connect(self.path)?;
        let id = logfile::fd_ident(fresh).ok_or_else(std::io::Error::last_os_error)?;
        match self.sock.verified() {
            // Still ours: swap in place, the number never changes hands.
            Some(ours) => {
                logfile::replace(fresh, ours)?;
                self.sock.set(ours, id);
            }
            None => self.sock.set(fresh, id),
        }
        Ok(())
    }

    /// A description for the once-per-process message: `what at PATH (error)`.
    pub fn shown(&self, what: &str) -> String {
        let e = std::io::Error::from_raw_os_error(self.last_errno.load(Ordering::Relaxed));
        format!("{what} at {} ({e})", String::from_utf8_lossy(self.path))
    }

    /// Send one datagram. Returns whether it was handed to the daemon — or
    /// deliberately dropped because its queue is full (a flood of refusals must not
    /// stall the server): only an unreachable daemon sends the line to the fallback.
    pub fn send(&self, lock: &ReopenLock, datagram: &[u8], now: i64) -> bool {
        if let Some(fd) = self.sock.verified() {
            match logfile::send_dgram(fd, datagram) {
                Ok(_) => return true,
                // The receive queue is full: drop rather than stall the server.
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return true,
                // The daemon restarted (ECONNREFUSED) or similar: reconnect once below.
                Err(e) => self
                    .last_errno
                    .store(e.raw_os_error().unwrap_or(0), Ordering::Relaxed),
            }
        }
        if now < self.retry_at.load(Ordering::Acquire) {
            return false;
        }
        let Some(_held) = lock.acquire() else {
            return false;
        };
        match self.connect() {
            Ok(()) => {
                self.retry_at.store(0, Ordering::Release);
                match self
                    .sock
                    .verified()
                    .map(|fd| logfile::send_dgram(fd, datagram))
                {
                    Some(Ok(_)) => true,
                    Some(Err(e)) => e.raw_os_error() == Some(libc::EAGAIN),
                    None => false,
                }
            }
            Err(e) => {
                self.last_errno
                    .store(e.raw_os_error().unwrap_or(0), Ordering::Relaxed);
                self.retry_at.store(now + RETRY_SECS, Ordering::Release);
                false
            }
        }
    }
}
