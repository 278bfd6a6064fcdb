//! The only place that talks to libc. Everything above this module is safe Rust.
//!
//! Like socket2's `sys` layer: one [`syscall!`] macro turns `-1` into [`io::Error`],
//! and each wrapper documents the man page it follows. The four hooked functions are
//! never called through the `libc` crate (that would bind to our own exports and
//! recurse); they go through [`Real`], resolved with `dlsym(RTLD_NEXT, ..)`.
#![allow(unsafe_code)]

use sockexit_engine::bpf::SockFilter;
use std::ffi::{CStr, OsString};
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use libc::{c_int, sockaddr, sockaddr_storage, socklen_t};

/// Call a libc function, turning `-1` into `io::Error::last_os_error()`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // SAFETY: every caller passes valid pointers/lengths as the man page requires.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(::std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

// Declared after `syscall!` so they can use it (macro_rules scope is textual).
pub mod exports;
mod fini;
pub mod logfile;
pub mod stderr;

// ---------------------------------------------------------------------------------
// The real functions behind our exports.
// ---------------------------------------------------------------------------------

type AcceptFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
type ConnectFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
type ListenFn = unsafe extern "C" fn(c_int, c_int) -> c_int;

/// Function pointers of the next definitions of the hooked symbols (libc's).
/// Stored as `usize` in atomics: resolved in the constructor, and lazily if some other
/// library's constructor makes a socket call before ours runs.
struct Real {
    accept: AtomicUsize,
    accept4: AtomicUsize,
    connect: AtomicUsize,
    listen: AtomicUsize,
}

static REAL: Real = Real {
    accept: AtomicUsize::new(0),
    accept4: AtomicUsize::new(0),
    connect: AtomicUsize::new(0),
    listen: AtomicUsize::new(0),
};

fn resolve(slot: &AtomicUsize, name: &CStr) -> usize {
    let p = slot.load(Ordering::Acquire);
    if p != 0 {
        return p;
    }
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name is always sound; it
    // returns null when the symbol does not exist.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    slot.store(p, Ordering::Release);
    p
}

/// Resolve every real function now (called from the load-time constructor).
pub fn resolve_all() {
    resolve(&REAL.accept, c"accept");
    resolve(&REAL.accept4, c"accept4");
    resolve(&REAL.connect, c"connect");
    resolve(&REAL.listen, c"listen");
}

fn missing() -> c_int {
    set_errno(libc::ENOSYS);
    -1
}

/// The caller's address buffer for accept: our own `sockaddr_storage`, so the hook
/// always sees the peer even for `accept(fd, NULL, NULL)`.
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

    /// The peer as a std address, `None` for non-IP families (AF_UNIX, ...).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        storage_to_std(&self.storage, self.len)
    }
}

/// `accept4(2)` (or `accept(2)` when `flags` is `None`) on the real libc function.
/// On failure errno is left exactly as libc set it.
pub fn real_accept(fd: c_int, flags: Option<c_int>, buf: &mut PeerBuf) -> io::Result<c_int> {
    buf.len = mem::size_of::<sockaddr_storage>() as socklen_t;
    let addr = &mut buf.storage as *mut sockaddr_storage as *mut sockaddr;
    let res = match flags {
        None => {
            let p = resolve(&REAL.accept, c"accept");
            if p == 0 {
                return Err(io::Error::from_raw_os_error(missing_errno()));
            }
            // SAFETY: p is libc's accept; addr/len point to our own storage of the size given.
            unsafe { mem::transmute::<usize, AcceptFn>(p)(fd, addr, &mut buf.len) }
        }
        Some(flags) => {
            let p = resolve(&REAL.accept4, c"accept4");
            if p == 0 {
                return Err(io::Error::from_raw_os_error(missing_errno()));
            }
            // SAFETY: p is libc's accept4; addr/len point to our own storage.
            unsafe { mem::transmute::<usize, Accept4Fn>(p)(fd, addr, &mut buf.len, flags) }
        }
    };
    if res == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(res)
    }
}

fn missing_errno() -> c_int {
    missing();
    libc::ENOSYS
}

/// Raw pass-through accept for re-entrant calls: exactly what the program asked for.
///
/// # Safety
/// `addr`/`len` must satisfy accept(2)'s contract (they come straight from the caller).
pub unsafe fn passthrough_accept(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: Option<c_int>,
) -> c_int {
    match flags {
        None => {
            let p = resolve(&REAL.accept, c"accept");
            if p == 0 {
                return missing();
            }
            mem::transmute::<usize, AcceptFn>(p)(fd, addr, len)
        }
        Some(f) => {
            let p = resolve(&REAL.accept4, c"accept4");
            if p == 0 {
                return missing();
            }
            mem::transmute::<usize, Accept4Fn>(p)(fd, addr, len, f)
        }
    }
}

/// The real `connect(2)`.
///
/// # Safety
/// `addr`/`len` must satisfy connect(2)'s contract (they come straight from the caller).
pub unsafe fn real_connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let p = resolve(&REAL.connect, c"connect");
    if p == 0 {
        return missing();
    }
    mem::transmute::<usize, ConnectFn>(p)(fd, addr, len)
}

/// The real `listen(2)`.
pub fn real_listen(fd: c_int, backlog: c_int) -> c_int {
    let p = resolve(&REAL.listen, c"listen");
    if p == 0 {
        return missing();
    }
    // SAFETY: p is libc's listen, which takes two integers.
    unsafe { mem::transmute::<usize, ListenFn>(p)(fd, backlog) }
}

// ---------------------------------------------------------------------------------
// Socket addresses.
// ---------------------------------------------------------------------------------

/// Convert a kernel socket address to std, `None` for non-IP or truncated addresses.
pub fn storage_to_std(ss: &sockaddr_storage, len: socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match ss.ss_family as c_int {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: family is AF_INET and the kernel wrote a full sockaddr_in; storage
            // is aligned for every sockaddr type.
            let sin = unsafe { &*(ss as *const sockaddr_storage as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for AF_INET6 and sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const sockaddr_storage as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// What a caller-supplied address for connect(2) is.
pub enum Dest {
    /// An IP destination to decide on.
    Ip(SocketAddr),
    /// AF_UNIX, AF_UNSPEC (UDP disconnect), netlink, ...: not ours to judge.
    Other,
    /// Null or too short for its family: let the kernel return its own error.
    Invalid,
}

/// Read the destination of a connect(2) call without trusting the caller's length.
///
/// # Safety
/// When non-null, `addr` must point to at least `len` readable bytes (connect(2)'s
/// own contract; the kernel would fault otherwise).
pub unsafe fn read_dest(addr: *const sockaddr, len: socklen_t) -> Dest {
    if addr.is_null() || (len as usize) < mem::size_of::<libc::sa_family_t>() {
        return Dest::Invalid;
    }
    let family = std::ptr::read_unaligned(addr as *const libc::sa_family_t) as c_int;
    let n = (len as usize).min(mem::size_of::<sockaddr_storage>());
    match family {
        libc::AF_INET | libc::AF_INET6 => {
            let mut ss: sockaddr_storage = mem::zeroed();
            std::ptr::copy_nonoverlapping(addr as *const u8, &mut ss as *mut _ as *mut u8, n);
            match storage_to_std(&ss, n as socklen_t) {
                Some(a) => Dest::Ip(a),
                None => Dest::Invalid,
            }
        }
        _ => Dest::Other,
    }
}

/// Copy an accepted peer address back into the caller's buffer: at most `*len` bytes,
/// then store the real length, as accept(2) specifies for short buffers.
///
/// # Safety
/// `addr`/`len` come from the caller of accept and follow accept(2)'s contract.
pub unsafe fn copy_peer_out(buf: &PeerBuf, addr: *mut sockaddr, len: *mut socklen_t) {
    if addr.is_null() || len.is_null() {
        return;
    }
    let room = *len as usize;
    let n = room.min(buf.len as usize);
    std::ptr::copy_nonoverlapping(&buf.storage as *const _ as *const u8, addr as *mut u8, n);
    *len = buf.len;
}

/// `getsockname(2)`, `None` for non-IP sockets or errors.
pub fn local_addr(fd: c_int) -> Option<SocketAddr> {
    let mut buf = PeerBuf::new();
    syscall!(getsockname(
        fd,
        &mut buf.storage as *mut _ as *mut sockaddr,
        &mut buf.len
    ))
    .ok()?;
    buf.socket_addr()
}

/// The socket's address family via `getsockopt(SO_DOMAIN)` (socket(7)).
pub fn socket_domain(fd: c_int) -> Option<c_int> {
    let mut v: c_int = 0;
    let mut l = mem::size_of::<c_int>() as socklen_t;
    syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_DOMAIN,
        &mut v as *mut c_int as *mut libc::c_void,
        &mut l
    ))
    .ok()?;
    Some(v)
}

/// Reset and close a connection we refuse: `SO_LINGER {on, 0}` then `close(2)` makes
/// the kernel send RST and discard anything queued, so the peer receives zero bytes.
pub fn reset_and_close(fd: c_int) {
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = syscall!(setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_LINGER,
        &lg as *const libc::linger as *const libc::c_void,
        mem::size_of::<libc::linger>() as socklen_t
    ));
    let _ = syscall!(close(fd));
}

// ---------------------------------------------------------------------------------
// Socket filters (stealth).
// ---------------------------------------------------------------------------------

/// An `int` socket option via `getsockopt(2)`.
fn int_option(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let mut v: c_int = 0;
    let mut l = mem::size_of::<c_int>() as socklen_t;
    syscall!(getsockopt(
        fd,
        level,
        name,
        &mut v as *mut c_int as *mut libc::c_void,
        &mut l
    ))
    .ok()?;
    Some(v)
}

/// `SO_TYPE` (socket(7)): `SOCK_STREAM`, `SOCK_DGRAM`, ...
pub fn socket_type(fd: c_int) -> Option<c_int> {
    int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE)
}

/// `SO_PROTOCOL` (socket(7)): `IPPROTO_TCP` for TCP (SCTP and MPTCP are stream
/// sockets too, with other packet layouts).
pub fn socket_protocol(fd: c_int) -> Option<c_int> {
    int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)
}

/// `IPV6_V6ONLY` (ipv6(7)) of an `AF_INET6` socket; `false` when it cannot be read.
pub fn v6_only(fd: c_int) -> bool {
    int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).is_some_and(|v| v != 0)
}

/// The effective uid and gid, each only when this process cannot change it any more:
/// real, effective and saved ids equal, not root (a root server may still drop
/// privileges before it accepts), and no `CAP_SETUID`/`CAP_SETGID` in the permitted
/// capability set. `None` means "may change".
pub fn fixed_ids() -> (Option<u32>, Option<u32>) {
    let (set_uid, set_gid) = may_set_ids();
    let (mut r, mut e, mut s) = (0, 0, 0);
    if set_uid || syscall!(getresuid(&mut r, &mut e, &mut s)).is_err() || e == 0 || r != e || s != e
    {
        return (None, None);
    }
    let uid = e;
    let (mut r, mut e, mut s) = (0, 0, 0);
    if set_gid || syscall!(getresgid(&mut r, &mut e, &mut s)).is_err() || r != e || s != e {
        return (Some(uid), None);
    }
    (Some(uid), Some(e))
}

/// Whether `CAP_SETUID` / `CAP_SETGID` are in this process's permitted set
/// (`capget(2)`, version 3); both `true` when that cannot be read.
fn may_set_ids() -> (bool, bool) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_SETGID: u32 = 6;
    const CAP_SETUID: u32 = 7;
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // capget writes two Data entries for version 3, which `d` holds.
    match syscall!(syscall(
        libc::SYS_capget,
        &mut h as *mut Header,
        d.as_mut_ptr()
    )) {
        Ok(_) => (
            d[0].permitted & (1 << CAP_SETUID) != 0,
            d[0].permitted & (1 << CAP_SETGID) != 0,
        ),
        Err(_) => (true, true),
    }
}

fn from_libc(f: &libc::sock_filter) -> SockFilter {
    SockFilter {
        code: f.code,
        jt: f.jt,
        jf: f.jf,
        k: f.k,
    }
}

fn to_libc(f: &SockFilter) -> libc::sock_filter {
    libc::sock_filter {
        code: f.code,
        jt: f.jt,
        jf: f.jf,
        k: f.k,
    }
}

/// `SO_ATTACH_FILTER` (socket(7)): attach a classic BPF program. No privilege needed;
/// the kernel copies the program. Fails with `EPERM` when the socket's filter is
/// locked (`SO_LOCK_FILTER`), `EINVAL` when the kernel rejects the program.
pub fn attach_filter(fd: c_int, prog: &[SockFilter]) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> = prog.iter().map(to_libc).collect();
    let len = u16::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = libc::sock_fprog {
        len,
        filter: insns.as_mut_ptr(),
    };
    syscall!(setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &fprog as *const libc::sock_fprog as *const libc::c_void,
        mem::size_of::<libc::sock_fprog>() as socklen_t
    ))
    .map(|_| ())
}

/// What filter a socket carries.
pub enum AttachedFilter {
    /// None.
    None,
    /// A classic program, as attached.
    Classic(Vec<SockFilter>),
    /// One that cannot be read back (an eBPF program: `SO_GET_FILTER` gives `EACCES`).
    Unreadable,
}

/// `SO_GET_FILTER` (socket(7)): the socket's classic filter. The option's length is
/// counted in instructions; asked with 0, the kernel only reports the count.
pub fn attached_filter(fd: c_int) -> io::Result<AttachedFilter> {
    let mut one = [libc::sock_filter {
        code: 0,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let mut n: socklen_t = 0;
    let get = |buf: *mut libc::sock_filter, n: &mut socklen_t| {
        syscall!(getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            buf as *mut libc::c_void,
            n
        ))
    };
    match get(one.as_mut_ptr(), &mut n) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => return Ok(AttachedFilter::Unreadable),
        Err(e) => return Err(e),
    }
    if n == 0 {
        return Ok(AttachedFilter::None);
    }
    let mut buf = vec![one[0]; n as usize];
    let mut len = n;
    match get(buf.as_mut_ptr(), &mut len) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => return Ok(AttachedFilter::Unreadable),
        // Replaced by a longer one in between (another thread): not ours either way.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(AttachedFilter::Unreadable),
        Err(e) => return Err(e),
    }
    buf.truncate(len as usize);
    Ok(AttachedFilter::Classic(buf.iter().map(from_libc).collect()))
}

// ---------------------------------------------------------------------------------
// Process facts.
// ---------------------------------------------------------------------------------

/// `geteuid(2)`: cannot fail.
pub fn euid() -> u32 {
    // SAFETY: no arguments, always succeeds.
    unsafe { libc::geteuid() }
}

/// `getegid(2)`: cannot fail.
pub fn egid() -> u32 {
    // SAFETY: no arguments, always succeeds.
    unsafe { libc::getegid() }
}

/// `getpid(2)`.
pub fn pid() -> u32 {
    // SAFETY: no arguments, always succeeds.
    unsafe { libc::getpid() as u32 }
}

/// `getauxval(AT_SECURE)`: true for setuid/setgid/capability-raising execs, where the
/// environment belongs to a less privileged user and must not be trusted.
pub fn at_secure() -> bool {
    // SAFETY: getauxval takes a type id and returns 0 when absent.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// The executable's path (`/proc/self/exe`), read once at load time.
pub fn exe_path() -> Option<OsString> {
    std::fs::read_link("/proc/self/exe")
        .ok()
        .map(|p| p.into_os_string())
        .or_else(|| std::env::current_exe().ok().map(|p| p.into_os_string()))
        .map(|s| OsString::from_vec(s.into_vec()))
}

// ---------------------------------------------------------------------------------
// errno.
// ---------------------------------------------------------------------------------

/// The calling thread's errno.
pub fn errno() -> c_int {
    // SAFETY: __errno_location always returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Set the calling thread's errno.
pub fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e }
}

// ---------------------------------------------------------------------------------
// Load-time constructor.
// ---------------------------------------------------------------------------------

extern "C" fn sockexit_init() {
    // Not in the library's own unit-test binary: there the test harness is the "host
    // process", has no policy, and would print a fail-closed error on every run.
    if cfg!(test) {
        return;
    }
    crate::init();
}

/// Runs when the dynamic loader maps the library (before `main`), so policy errors are
/// reported at start-up and no hook ever has to load anything lazily.
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = sockexit_init;
