//! The program's `accept(2)` address buffer, used the way the kernel uses it.
//!
//! The kernel itself writes the peer address into the program's buffer, so a bad
//! pointer is the kernel's `EFAULT`, never our SIGSEGV (`accept(fd, (void*)1, &len)`,
//! a read-only `addrlen`). We read the buffer only after the kernel has written it.
//! With `accept(fd, NULL, NULL)` (libuv) the kernel writes into a buffer of ours: the
//! hook must see the peer the program did not ask for.

use super::addr::{plausible, Addr, PeerBuf};
use super::{c_int, sockaddr, socklen_t};
use std::io;

/// Where one accept call's peer address goes.
pub struct Target {
    addr: *mut sockaddr,
    len: *mut socklen_t,
    how: How,
}

enum How {
    /// `addr` is null: our own buffer.
    Own,
    /// The caller's buffer, which held `cap` bytes when the call began.
    Caller { cap: socklen_t },
    /// Pointers we cannot read: passed to the kernel, which fails the call
    /// (`EFAULT`, `EINVAL`); should it succeed after all, the peer is read back with
    /// `getpeername` and the caller's memory is never touched by us.
    Blind,
}

impl Target {
    /// # Safety
    /// `addr` and `len` are the program's accept(2) arguments: null, valid, or pointers
    /// the kernel reports as bad. `*len` is read when `len` is plausible user memory
    /// (a garbage pointer into unmapped memory faults here as it would in the program).
    pub unsafe fn new(addr: *mut sockaddr, len: *mut socklen_t) -> Target {
        let how = if addr.is_null() {
            How::Own
        } else if !plausible(len as *const u8, std::mem::size_of::<socklen_t>()) {
            How::Blind
        } else {
            let cap = std::ptr::read_unaligned(len);
            if (cap as i32) < 0 {
                How::Blind
            } else {
                How::Caller { cap }
            }
        };
        Target { addr, len, how }
    }

    /// The real `accept4(2)` (`accept(2)` for `flags: None`) into this target: the new
    /// descriptor and the peer. On failure errno is the kernel's.
    pub fn accept(&mut self, fd: c_int, flags: Option<c_int>) -> io::Result<(c_int, Addr)> {
        match self.how {
            How::Own => {
                let mut b = PeerBuf::new();
                // SAFETY: our own buffer and its length.
                let r = unsafe { super::real::accept(fd, b.as_mut_ptr(), &mut b.len, flags) };
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok((r, b.decode()))
            }
            How::Caller { cap } => {
                // SAFETY: the caller's pointers, handed to the kernel as accept(2) takes them.
                let r = unsafe { super::real::accept(fd, self.addr, self.len, flags) };
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: the kernel just wrote *len and min(cap, *len) bytes at addr.
                let real = unsafe { std::ptr::read_unaligned(self.len) };
                let peer = if real <= cap {
                    // SAFETY: as above: `real` bytes written at addr.
                    unsafe { PeerBuf::copy_from(self.addr, real as usize) }.decode()
                } else {
                    peer_of(r) // the caller's buffer was too short to hold it
                };
                Ok((r, peer))
            }
            How::Blind => {
                // SAFETY: as above; the kernel validates what we could not.
                let r = unsafe { super::real::accept(fd, self.addr, self.len, flags) };
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok((r, peer_of(r)))
            }
        }
    }

    /// After a refused connection: give the caller's buffer its length back, so the next
    /// accept sees the room the program gave.
    pub fn rewind(&mut self) {
        if let How::Caller { cap } = self.how {
            // SAFETY: the kernel wrote through `len` in the accept that preceded the
            // refusal, so it is valid, writable memory.
            unsafe { std::ptr::write_unaligned(self.len, cap) };
        }
    }
}

/// The peer of an accepted socket via `getpeername`; undecodable (so refused) if even
/// that fails: an IP connection is never handed over unjudged.
fn peer_of(fd: c_int) -> Addr {
    let b = super::addr::peer(fd);
    match b.decode() {
        Addr::Other if b.len == 0 => match super::socket_domain(fd) {
            Some(libc::AF_INET) | Some(libc::AF_INET6) => Addr::Undecodable,
            _ => Addr::Other,
        },
        a => a,
    }
}
