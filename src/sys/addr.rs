//! Socket addresses: decoding what the kernel or the program hands us, and reading
//! program memory only where the kernel has shown it to be valid.
//!
//! The kernel reports a bad pointer as `EFAULT`; a library that dereferences it dies
//! with SIGSEGV instead. So the hooks let the kernel touch the program's pointers first
//! wherever they can (accept writes into the caller's buffer; we read it afterwards),
//! and where they cannot (connect must be judged before the kernel sees the address)
//! a pointer that cannot be valid user memory is answered with `EFAULT` unread.

use super::{c_int, sockaddr, sockaddr_storage, socklen_t};
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// `sizeof(struct sockaddr_in)`: the least the kernel accepts for AF_INET.
const SIN_LEN: usize = mem::size_of::<libc::sockaddr_in>();
/// `SIN6_LEN_RFC2133`: the kernel accepts a `sockaddr_in6` without `sin6_scope_id`
/// (`tcp_v6_connect`, `__ip6_datagram_connect`); the scope id is then 0.
const SIN6_LEN_RFC2133: usize = 24;
const SIN6_LEN: usize = mem::size_of::<libc::sockaddr_in6>();

/// Lowest address a process can map (`vm.mmap_min_addr` is at least one page).
const USER_MIN: usize = 4096;
/// One past the highest user-space address on this architecture.
#[cfg(target_arch = "x86_64")]
const USER_END: usize = 1 << 56; // 5-level paging; 4-level ends at 1 << 47
#[cfg(not(target_arch = "x86_64"))]
const USER_END: usize = 1 << 52;

/// Whether `[p, p + n)` could be user memory at all. Only pointers that cannot be
/// valid are caught (null page, kernel half, wrap-around); an unmapped pointer in the
/// middle of the address space is still the program's bug to fault on.
pub fn plausible<T>(p: *const T, n: usize) -> bool {
    let a = p as usize;
    a >= USER_MIN && a.checked_add(n).is_some_and(|e| e <= USER_END)
}

/// An address buffer of our own, for `accept(fd, NULL, NULL)` (we must see the peer
/// the program did not ask for) and for `getsockname`/`getpeername`.
pub struct PeerBuf {
    pub storage: sockaddr_storage,
    pub len: socklen_t,
}

impl PeerBuf {
    pub fn new() -> PeerBuf {
        PeerBuf {
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            storage: unsafe { mem::zeroed() },
            len: mem::size_of::<sockaddr_storage>() as socklen_t,
        }
    }

    pub fn as_mut_ptr(&mut self) -> *mut sockaddr {
        &mut self.storage as *mut sockaddr_storage as *mut sockaddr
    }

    /// Copy `len` bytes of an address the kernel just wrote into program memory.
    ///
    /// # Safety
    /// `addr` must point to at least `len` (≤ 128) readable bytes.
    pub unsafe fn copy_from(addr: *const sockaddr, len: usize) -> PeerBuf {
        let mut b = PeerBuf::new();
        let n = len.min(mem::size_of::<sockaddr_storage>());
        std::ptr::copy_nonoverlapping(addr as *const u8, b.as_mut_ptr() as *mut u8, n);
        b.len = n as socklen_t;
        b
    }

    /// What the address is (see [`decode`]).
    pub fn decode(&self) -> Addr {
        decode(&self.storage, self.len as usize)
    }
}

/// What an address is, to the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr {
    /// An IP address to judge.
    Ip(SocketAddr),
    /// AF_UNIX, AF_UNSPEC (a disconnect), netlink, ...: not ours to judge.
    Other,
    /// AF_INET or AF_INET6, but shorter than the kernel itself would accept: refused,
    /// never passed unjudged.
    Undecodable,
}

/// Decode `len` bytes of a socket address exactly as the kernel reads them: AF_INET
/// from 16 bytes on, AF_INET6 from 24 (scope id 0 below 28).
pub fn decode(ss: &sockaddr_storage, len: usize) -> Addr {
    if len < mem::size_of::<libc::sa_family_t>() {
        return Addr::Other;
    }
    match ss.ss_family as c_int {
        libc::AF_INET if len >= SIN_LEN => {
            // SAFETY: family is AF_INET and at least a full sockaddr_in is present;
            // sockaddr_storage is aligned for every sockaddr type.
            let sin = unsafe { &*(ss as *const sockaddr_storage as *const libc::sockaddr_in) };
            Addr::Ip(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= SIN6_LEN_RFC2133 => {
            // SAFETY: as above for AF_INET6; the storage holds all 28 bytes (zeroed
            // past `len`), and the scope id is only used when the caller gave it.
            let sin6 = unsafe { &*(ss as *const sockaddr_storage as *const libc::sockaddr_in6) };
            let scope = if len >= SIN6_LEN {
                sin6.sin6_scope_id
            } else {
                0
            };
            Addr::Ip(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                scope,
            )))
        }
        libc::AF_INET | libc::AF_INET6 => Addr::Undecodable,
        _ => Addr::Other,
    }
}

/// A destination given to connect(2), sendto(2) or sendmsg(2).
pub enum Dest {
    /// Decoded (or not ours to judge, or undecodable).
    Addr(Addr),
    /// Null, or a length the kernel rejects before reading (`EINVAL`): the kernel
    /// judges it and nothing connects.
    KernelRejects,
    /// A pointer that cannot be user memory: `EFAULT`, as the kernel would say.
    Fault,
}

/// The bytes of a destination the policy can look at: the family, port and address
/// (8 for AF_INET, 24 for AF_INET6 — the scope id is never judged), or `len` when
/// shorter. Reading no more than that means a program whose sockaddr ends in unmapped
/// memory gets the kernel's `EFAULT`, not our SIGSEGV, for the part we never read.
fn needed(family: c_int, len: usize) -> usize {
    match family {
        libc::AF_INET => len.min(8),
        libc::AF_INET6 => len.min(SIN6_LEN_RFC2133),
        _ => len.min(mem::size_of::<libc::sa_family_t>()),
    }
}

/// Copy `dst.len()` bytes of program memory at `src`. Within one page the first byte
/// decides, and the copy is a plain load; across a page boundary (rare: a sockaddr a
/// few bytes from the end of a page) `process_vm_readv(2)` on ourselves copies it, so
/// an unmapped second page is `false` (`EFAULT`), never a fault.
///
/// # Safety
/// The page holding `src` is readable (the program's own contract; the kernel would
/// fault on it too).
pub unsafe fn read_user(src: *const u8, dst: &mut [u8]) -> bool {
    const PAGE: usize = 4096; // the smallest page size; a larger one only means more checks
    let n = dst.len();
    if (src as usize % PAGE) + n <= PAGE {
        std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), n);
        return true;
    }
    let local = libc::iovec {
        iov_base: dst.as_mut_ptr() as *mut libc::c_void,
        iov_len: n,
    };
    let remote = libc::iovec {
        iov_base: src as *mut libc::c_void,
        iov_len: n,
    };
    libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) == n as isize
}

/// Read a destination without trusting the program's pointer or length.
///
/// # Safety
/// When `addr` is plausible, the page holding its first byte must be readable or the
/// program faults, as it would have in the kernel's copy (connect(2)'s own contract).
pub unsafe fn read_dest(addr: *const sockaddr, len: socklen_t) -> Dest {
    let len = len as usize;
    if addr.is_null() || len == 0 || len > mem::size_of::<sockaddr_storage>() {
        return Dest::KernelRejects;
    }
    if !plausible(addr as *const u8, len) {
        return Dest::Fault;
    }
    let mut b = PeerBuf::new();
    // SAFETY (of the slices): our own storage, larger than any `needed` length.
    let raw = std::slice::from_raw_parts_mut(
        b.as_mut_ptr() as *mut u8,
        mem::size_of::<sockaddr_storage>(),
    );
    let head = needed(libc::AF_UNSPEC, len);
    if !read_user(addr as *const u8, &mut raw[..head]) {
        return Dest::Fault;
    }
    let family = b.storage.ss_family as c_int;
    let want = needed(family, len);
    if want > head && !read_user((addr as *const u8).add(head), &mut raw[head..want]) {
        return Dest::Fault;
    }
    // Decoded by the length the program gave, from the bytes that matter; the rest of
    // the storage is zero (an AF_INET6 scope id reads as 0).
    b.len = len as socklen_t;
    Dest::Addr(b.decode())
}

/// `getsockname(2)`, `None` for non-IP sockets or errors.
pub fn local_addr(fd: c_int) -> Option<SocketAddr> {
    let mut buf = PeerBuf::new();
    syscall!(getsockname(fd, buf.as_mut_ptr(), &mut buf.len)).ok()?;
    match buf.decode() {
        Addr::Ip(a) => Some(a),
        _ => None,
    }
}

/// `getpeername(2)` into a buffer of our own (a caller's buffer was too short).
pub fn peer(fd: c_int) -> PeerBuf {
    let mut buf = PeerBuf::new();
    if syscall!(getpeername(fd, buf.as_mut_ptr(), &mut buf.len)).is_err() {
        buf.len = 0;
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(bytes: &[u8]) -> sockaddr_storage {
        // SAFETY: plain old data.
        let mut ss: sockaddr_storage = unsafe { mem::zeroed() };
        // SAFETY: bytes fit in the storage (asserted by the slice length below).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), &mut ss as *mut _ as *mut u8, bytes.len())
        };
        ss
    }

    fn sin6(ip: Ipv6Addr, port: u16, scope: u32) -> Vec<u8> {
        let mut b = (libc::AF_INET6 as u16).to_ne_bytes().to_vec();
        b.extend(port.to_be_bytes());
        b.extend(0u32.to_ne_bytes());
        b.extend(ip.octets());
        b.extend(scope.to_ne_bytes());
        b
    }

    #[test]
    fn every_length_the_kernel_accepts_is_decoded() {
        let b = sin6(Ipv6Addr::LOCALHOST, 22, 7);
        let ss = storage(&b);
        match decode(&ss, 28) {
            Addr::Ip(SocketAddr::V6(a)) => assert_eq!((a.port(), a.scope_id()), (22, 7)),
            other => panic!("{other:?}"),
        }
        match decode(&ss, 24) {
            Addr::Ip(SocketAddr::V6(a)) => assert_eq!((a.port(), a.scope_id()), (22, 0)),
            other => panic!("{other:?}"),
        }
        for short in 2..24 {
            assert_eq!(decode(&ss, short), Addr::Undecodable, "len {short}");
        }
        let mut v4 = (libc::AF_INET as u16).to_ne_bytes().to_vec();
        v4.extend(80u16.to_be_bytes());
        v4.extend([127, 0, 0, 2]);
        v4.extend([0u8; 8]);
        let ss = storage(&v4);
        assert_eq!(decode(&ss, 16), Addr::Ip("127.0.0.2:80".parse().unwrap()));
        for short in 2..16 {
            assert_eq!(decode(&ss, short), Addr::Undecodable, "len {short}");
        }
        assert_eq!(decode(&storage(&[0, 0, 1, 2]), 4), Addr::Other); // AF_UNSPEC
        assert_eq!(decode(&ss, 1), Addr::Other);
    }

    #[test]
    fn impossible_pointers() {
        assert!(!plausible(std::ptr::dangling::<u8>(), 16)); // (void*)1
        assert!(!plausible(std::ptr::null::<u8>(), 1));
        assert!(!plausible(usize::MAX as *const u8, 1));
        assert!(!plausible((usize::MAX - 4) as *const u8, 16));
        let x = [0u8; 16];
        assert!(plausible(x.as_ptr(), 16));
    }
}
