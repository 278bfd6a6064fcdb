//! Descriptors the audit path owns, checked without locks, and the reopen lock word.

use crate::sys::logfile::{self, Ident};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// A descriptor we opened and the identity it had, read without locks. A torn read
/// (fd of one generation, identity of another) only ever fails the check and sends the
/// caller to the locked slow path, never the other way round.
pub struct Sink {
    fd: AtomicI32,
    dev: AtomicU64,
    ino: AtomicU64,
}

impl Sink {
    pub const fn new() -> Sink {
        Sink {
            fd: AtomicI32::new(-1),
            dev: AtomicU64::new(0),
            ino: AtomicU64::new(0),
        }
    }

    pub fn ident(&self) -> Ident {
        Ident {
            dev: self.dev.load(Ordering::Acquire),
            ino: self.ino.load(Ordering::Acquire),
        }
    }

    /// The descriptor, if it still refers to what we opened (never a program's file).
    pub fn verified(&self) -> Option<i32> {
        let fd = self.fd.load(Ordering::Acquire);
        let want = self.ident();
        (logfile::fd_ident(fd)? == want).then_some(fd)
    }

    pub fn set(&self, fd: i32, id: Ident) {
        self.dev.store(id.dev, Ordering::Release);
        self.ino.store(id.ino, Ordering::Release);
        self.fd.store(fd, Ordering::Release);
    }
}

/// Serialises reopening. Holds the owner's pid, 0 when free: threads of this process
/// wait (bounded), a forked child takes over a word its parent's thread held.
pub struct ReopenLock(pub AtomicI32);

pub struct Held<'a>(&'a AtomicI32);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

impl ReopenLock {
    pub fn acquire(&self) -> Option<Held<'_>> {
        let me = logfile::pid();
        for _ in 0..20_000 {
            let cur = self.0.load(Ordering::Acquire);
            if cur != me
                && self
                    .0
                    .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return Some(Held(&self.0));
            }
            logfile::yield_now();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_lock_is_taken_over_from_a_forked_parent_but_not_from_a_sibling_thread() {
        let me = logfile::pid();
        // Free: taken, and released on drop.
        let l = ReopenLock(AtomicI32::new(0));
        {
            let _h = l.acquire().expect("free lock");
            assert_eq!(l.0.load(Ordering::Relaxed), me);
        }
        assert_eq!(l.0.load(Ordering::Relaxed), 0);
        // Held by another process (a thread of the parent we were forked from):
        // that holder no longer exists here, so the word is taken over.
        let stale = ReopenLock(AtomicI32::new(me.wrapping_add(1).max(1)));
        assert!(stale.acquire().is_some());
        // Held by another thread of this process: waited for, a bounded time.
        let busy = ReopenLock(AtomicI32::new(me));
        assert!(busy.acquire().is_none());
        assert_eq!(busy.0.load(Ordering::Relaxed), me);
    }
}
