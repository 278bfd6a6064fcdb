//! glibc's remote-command helpers: `rcmd`, `rcmd_af`, `rexec`, `rexec_af`.
//!
//! They open their TCP connection themselves through libc's internal connect, which no
//! preload can take, and then send the user name (and for rexec the password) and the
//! command. So the hooks judge every address the host name resolves to, as `connect`
//! to that port, before the real function runs: if any is refused the call fails with
//! `EACCES` and nothing is sent. The name is resolved once more by the real function;
//! a DNS answer that changes in between is not seen (the resolver's own traffic is not
//! judged either: README, "what it cannot see"). The secondary stderr connection
//! (`fd2p`) is made by the remote side to us and is not judged.

use super::{c_int, set_errno};
use libc::{c_char, c_ushort, sa_family_t};
use std::ffi::CStr;
use std::net::SocketAddr;

/// Whether every address `host` resolves to (in `family`, `AF_UNSPEC` for any) is
/// allowed as a `connect` to `port` (host byte order). `None`: it does not resolve (the
/// real function reports that itself).
///
/// # Safety
/// `host` is a NUL-terminated string.
unsafe fn allowed(host: *const c_char, port: u16, family: c_int) -> Option<bool> {
    // SAFETY: addrinfo is plain old data; zero is "no hints" but for the two we set.
    let mut hints: libc::addrinfo = std::mem::zeroed();
    hints.ai_family = family;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    if libc::getaddrinfo(host, std::ptr::null(), &hints, &mut res) != 0 {
        return None;
    }
    let mut ok = true;
    let mut ai = res;
    while !ai.is_null() {
        let a = &*ai;
        let addr = if a.ai_addr.is_null() {
            super::Addr::Other
        } else {
            super::PeerBuf::copy_from(a.ai_addr, a.ai_addrlen as usize).decode()
        };
        if let super::Addr::Ip(ip) = addr {
            ok &= crate::hook::connect(-1, SocketAddr::new(ip.ip(), port));
        }
        ai = a.ai_next;
    }
    libc::freeaddrinfo(res);
    Some(ok)
}

/// 0 when the call may go ahead, else -1 with errno `EACCES` and a message on stderr
/// as rcmd(3) itself writes its errors.
///
/// # Safety
/// `ahost` as rcmd(3) takes it.
unsafe fn judge(ahost: *mut *mut c_char, port_be: c_int, family: c_int) -> c_int {
    if ahost.is_null() || (*ahost).is_null() {
        return 0;
    }
    let port = u16::from_be(port_be as u16);
    match allowed(*ahost, port, family) {
        Some(false) => {
            let host = CStr::from_ptr(*ahost).to_string_lossy();
            log::debug!("rcmd/rexec to {host}:{port} refused");
            set_errno(libc::EACCES);
            -1
        }
        _ => 0,
    }
}

type RcmdAfFn = unsafe extern "C" fn(
    *mut *mut c_char,
    c_ushort,
    *const c_char,
    *const c_char,
    *const c_char,
    *mut c_int,
    sa_family_t,
) -> c_int;
type RexecAfFn = unsafe extern "C" fn(
    *mut *mut c_char,
    c_int,
    *const c_char,
    *const c_char,
    *const c_char,
    *mut c_int,
    sa_family_t,
) -> c_int;

static RCMD_AF: super::real::Slot = super::real::Slot::new(c"rcmd_af");
static REXEC_AF: super::real::Slot = super::real::Slot::new(c"rexec_af");

/// Interposed `rcmd_af(3)`.
///
/// # Safety
/// Called by C code with rcmd_af(3)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn rcmd_af(
    ahost: *mut *mut c_char,
    port: c_ushort,
    locuser: *const c_char,
    remuser: *const c_char,
    cmd: *const c_char,
    fd2p: *mut c_int,
    af: sa_family_t,
) -> c_int {
    if judge(ahost, port as c_int, af as c_int) != 0 {
        return -1;
    }
    match RCMD_AF.get() {
        0 => {
            set_errno(libc::ENOSYS);
            -1
        }
        p => {
            std::mem::transmute::<usize, RcmdAfFn>(p)(ahost, port, locuser, remuser, cmd, fd2p, af)
        }
    }
}

/// Interposed `rcmd(3)`: `rcmd_af` for IPv4, as glibc defines it.
///
/// # Safety
/// Called by C code with rcmd(3)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn rcmd(
    ahost: *mut *mut c_char,
    port: c_ushort,
    locuser: *const c_char,
    remuser: *const c_char,
    cmd: *const c_char,
    fd2p: *mut c_int,
) -> c_int {
    rcmd_af(
        ahost,
        port,
        locuser,
        remuser,
        cmd,
        fd2p,
        libc::AF_INET as sa_family_t,
    )
}

/// Interposed `rexec_af(3)`.
///
/// # Safety
/// Called by C code with rexec_af(3)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn rexec_af(
    ahost: *mut *mut c_char,
    port: c_int,
    name: *const c_char,
    pass: *const c_char,
    cmd: *const c_char,
    fd2p: *mut c_int,
    af: sa_family_t,
) -> c_int {
    if judge(ahost, port, af as c_int) != 0 {
        return -1;
    }
    match REXEC_AF.get() {
        0 => {
            set_errno(libc::ENOSYS);
            -1
        }
        p => std::mem::transmute::<usize, RexecAfFn>(p)(ahost, port, name, pass, cmd, fd2p, af),
    }
}

/// Interposed `rexec(3)`: `rexec_af` for IPv4, as glibc defines it.
///
/// # Safety
/// Called by C code with rexec(3)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn rexec(
    ahost: *mut *mut c_char,
    port: c_int,
    name: *const c_char,
    pass: *const c_char,
    cmd: *const c_char,
    fd2p: *mut c_int,
) -> c_int {
    rexec_af(
        ahost,
        port,
        name,
        pass,
        cmd,
        fd2p,
        libc::AF_INET as sa_family_t,
    )
}
