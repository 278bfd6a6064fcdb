//! The two unsafe pieces of the live policy: the shared read-only mapping of the
//! generation file, and the pointer to the policy in use, swapped on reload.

use super::c_int;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Map `file` (one page, checked by the caller) read-only and shared, and return its
/// u64 words (the generation, the dynamic-set revision). The mapping is never
/// unmapped: the words stay valid for the life of the process (and its forks, which
/// inherit the mapping).
pub fn map_words(file: &File, len: usize) -> Option<&'static [AtomicU64]> {
    if !len.is_multiple_of(8) {
        return None;
    }
    let m = Mapped::new(file, len)?;
    let words = m.ptr as *const AtomicU64;
    // Never unmapped: the words are read for the life of the process.
    std::mem::forget(m);
    // SAFETY: a page-aligned mapping of `len` bytes that lives forever, seen as len / 8
    // AtomicU64 (the layout of u64). `sockexit apply` and `sockexit set` write the
    // words with atomic stores through their own shared mappings of the same file.
    Some(unsafe { std::slice::from_raw_parts(words, len / 8) })
}

/// A policy image mapped read-only and shared (`MAP_POPULATE`: its pages are set up
/// in one call, from the page cache every process under the policy shares). Unmapped
/// when dropped, which the live policy does only after the grace period of the
/// policy that borrows from it.
pub struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: a read-only mapping, never written through; sharing it between threads is
// sharing `&[u8]`.
unsafe impl Send for Mapped {}
// SAFETY: as above.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Map `len` bytes of `file` (`len` > 0, the file's size, checked by the caller).
    pub fn new(file: &File, len: usize) -> Option<Mapped> {
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh shared read-only mapping of an open regular file; checked for
        // MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        (p != libc::MAP_FAILED).then_some(Mapped { ptr: p, len })
    }

    /// The bytes, for as long as the caller keeps `self` (stated as `'static` because
    /// the policy built on them lives in the same `Current` and is dropped first).
    ///
    /// A mapped file that someone truncates afterwards would raise SIGBUS on access:
    /// images are written under a new name and renamed into place, never changed in
    /// place, and only their trusted owner could truncate one.
    pub fn bytes(&self) -> &'static [u8] {
        // SAFETY: `len` readable bytes at `ptr` until `drop`; every reader is a policy
        // owned next to this mapping and dropped before it (field order of Current).
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

/// A value published to every thread, replaced on reload. Readers get `&'static T`
/// with one atomic load and nothing else (no count, no lock: signal handlers and
/// forked children included). A replaced value is freed only after [`GRACE`] — far
/// longer than any decision takes — and only by a later replacement.
pub struct Swap<T> {
    ptr: AtomicPtr<T>,
}

/// How long a replaced value stays allocated.
pub const GRACE: Duration = Duration::from_secs(60);

/// A replaced value waiting for its grace period to pass.
pub struct Retired<T> {
    ptr: *mut T,
    at: Instant,
}

// SAFETY: a Retired is only a pointer to a T that was shared with every thread; moving
// it between threads is what Swap already does with T.
unsafe impl<T: Send + Sync> Send for Retired<T> {}

impl<T> Swap<T> {
    pub const fn empty() -> Swap<T> {
        Swap {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    #[inline]
    pub fn load(&self) -> Option<&'static T> {
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: non-null pointers come from Box::into_raw in `replace` and are freed
        // only by `reclaim`, GRACE after they stopped being published.
        unsafe { p.as_ref() }
    }

    /// Publish `v`; the value it replaces (if any) is returned for [`reclaim`].
    pub fn replace(&self, v: Box<T>) -> Option<Retired<T>> {
        let old = self.ptr.swap(Box::into_raw(v), Ordering::AcqRel);
        (!old.is_null()).then(|| Retired {
            ptr: old,
            at: Instant::now(),
        })
    }
}

/// Free the retired values whose grace period has passed; keep the others.
pub fn reclaim<T>(list: &mut Vec<Retired<T>>) {
    list.retain(|r| {
        if r.at.elapsed() < GRACE {
            return true;
        }
        // SAFETY: unpublished for longer than GRACE: no decision still uses it (stated
        // limit: a thread stopped inside one decision for a minute, e.g. by a debugger).
        drop(unsafe { Box::from_raw(r.ptr) });
        false
    });
}

/// The pid that holds a reload lock, 0 when free.
pub fn pid() -> c_int {
    super::pid() as c_int
}
