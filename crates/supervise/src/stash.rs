//! Allowed connections whose caller stopped waiting before the supervisor could hand
//! them over: a blocked `accept` interrupted by a signal (vsftpd's `SIGCHLD` when a
//! session ends), or a thread that died. The kernel has already taken the
//! connection off the listener's queue, so resetting it would refuse a peer the
//! policy allows. It is kept, by listener, for the next accept on that listener —
//! judged again for that caller, whose user or program may differ — and reset only
//! if no accept comes within [`HOLD`].
//!
//! A stashed connection does not make the listener readable: a program that polls
//! before it accepts sees it at its next accept (the next connection, or a retry
//! after `EINTR`, which is what interrupted accept loops do).

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a connection waits for the next accept before it is reset.
pub const HOLD: Duration = Duration::from_secs(5);

/// At most this many per listener (beyond: the oldest is reset).
const MAX: usize = 64;

/// A connection accepted and allowed, with its peer address as `accept` wrote it.
pub struct Held {
    pub conn: OwnedFd,
    pub peer: Vec<u8>,
    at: Instant,
}

/// The stash, by listener (socket inode).
#[derive(Default)]
pub struct Stash {
    held: Mutex<HashMap<(u64, u64), VecDeque<Held>>>,
}

impl Stash {
    /// Keep `conn` for the next accept on the listener `key`.
    pub fn put(&self, key: (u64, u64), conn: OwnedFd, peer: Vec<u8>) {
        let mut m = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let q = m.entry(key).or_default();
        if q.len() >= MAX {
            if let Some(old) = q.pop_front() {
                crate::sys::reset_and_close(old.conn);
            }
        }
        q.push_back(Held {
            conn,
            peer,
            at: Instant::now(),
        });
    }

    /// The oldest connection kept for `key` that has not waited past [`HOLD`]
    /// (those are reset on the way).
    pub fn take(&self, key: (u64, u64)) -> Option<Held> {
        let mut m = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let q = m.get_mut(&key)?;
        let mut out = None;
        while let Some(h) = q.pop_front() {
            if h.at.elapsed() < HOLD {
                out = Some(h);
                break;
            }
            crate::sys::reset_and_close(h.conn);
        }
        if q.is_empty() {
            m.remove(&key);
        }
        out
    }

    /// Reset what waited past [`HOLD`] on every listener (called now and then, so a
    /// listener with no further accept does not keep a peer waiting forever).
    pub fn expire(&self) {
        let mut m = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for q in m.values_mut() {
            while q.front().is_some_and(|h| h.at.elapsed() >= HOLD) {
                if let Some(h) = q.pop_front() {
                    crate::sys::reset_and_close(h.conn);
                }
            }
        }
        m.retain(|_, q| !q.is_empty());
    }
}
