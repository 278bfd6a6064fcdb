//! What every subcommand shares: errno names, results, arguments, sockets, glibc's
//! symbol versions.

pub(crate) use std::ffi::{c_void, CStr};
pub(crate) use std::io::Error;
pub(crate) use std::mem;
pub(crate) use std::net::{IpAddr, Ipv4Addr, SocketAddr};
pub(crate) use std::process::exit;
pub(crate) use std::ptr;
pub(crate) use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
pub(crate) use std::time::{Duration, Instant};

pub(crate) use crate::common::raw_addr;

pub(crate) use libc::{c_int, c_uint, sockaddr, sockaddr_storage, socklen_t};

pub(crate) const BANNER: &[u8] = b"220 sockexit attack\r\n";
pub(crate) const TFO_DATA: &[u8] = b"tfo-data";

/// glibc's symbol versions of the hooked calls (`nm -D libc.so.6`).
#[cfg(target_arch = "x86_64")]
pub(crate) mod ver {
    pub const BASE: &std::ffi::CStr = c"GLIBC_2.2.5";
    pub const ACCEPT4: &std::ffi::CStr = c"GLIBC_2.10";
    pub const DLSYM: &std::ffi::CStr = c"GLIBC_2.34";
}
#[cfg(not(target_arch = "x86_64"))]
pub(crate) mod ver {
    pub const BASE: &std::ffi::CStr = c"GLIBC_2.17";
    pub const ACCEPT4: &std::ffi::CStr = c"GLIBC_2.17";
    pub const DLSYM: &std::ffi::CStr = c"GLIBC_2.34";
}

extern "C" {
    pub(crate) fn rcmd(
        ahost: *mut *mut libc::c_char,
        inport: u16,
        locuser: *const libc::c_char,
        remuser: *const libc::c_char,
        cmd: *const libc::c_char,
        fd2p: *mut c_int,
    ) -> c_int;
    pub(crate) fn rcmd_af(
        ahost: *mut *mut libc::c_char,
        inport: u16,
        locuser: *const libc::c_char,
        remuser: *const libc::c_char,
        cmd: *const libc::c_char,
        fd2p: *mut c_int,
        af: libc::sa_family_t,
    ) -> c_int;
    pub(crate) fn rexec(
        ahost: *mut *mut libc::c_char,
        inport: c_int,
        user: *const libc::c_char,
        passwd: *const libc::c_char,
        cmd: *const libc::c_char,
        fd2p: *mut c_int,
    ) -> c_int;
    pub(crate) fn rexec_af(
        ahost: *mut *mut libc::c_char,
        inport: c_int,
        user: *const libc::c_char,
        passwd: *const libc::c_char,
        cmd: *const libc::c_char,
        fd2p: *mut c_int,
        af: libc::sa_family_t,
    ) -> c_int;
    /// glibc 2.34+.
    pub(crate) fn execveat(
        dirfd: c_int,
        path: *const libc::c_char,
        argv: *const *const libc::c_char,
        envp: *const *const libc::c_char,
        flags: c_int,
    ) -> c_int;
    /// glibc's exported alias of connect (a weak `connect` and this share one body).
    pub(crate) fn __connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
}

pub(crate) type ConnectFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
pub(crate) type AcceptFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
pub(crate) type Accept4Fn =
    unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
pub(crate) type ListenFn = unsafe extern "C" fn(c_int, c_int) -> c_int;
pub(crate) type DlsymFn = unsafe extern "C" fn(*mut c_void, *const libc::c_char) -> *mut c_void;
pub(crate) type SendtoFn =
    unsafe extern "C" fn(c_int, *const c_void, usize, c_int, *const sockaddr, socklen_t) -> isize;
pub(crate) type SendmsgFn = unsafe extern "C" fn(c_int, *const libc::msghdr, c_int) -> isize;
pub(crate) type SendmmsgFn =
    unsafe extern "C" fn(c_int, *mut libc::mmsghdr, c_uint, c_int) -> c_int;

pub(crate) fn errno() -> c_int {
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Errno names, including the ones the shared helper does not know.
pub(crate) fn ename(e: c_int) -> &'static str {
    match e {
        libc::EFAULT => "EFAULT",
        libc::EINTR => "EINTR",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EISCONN => "EISCONN",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTCONN => "ENOTCONN",
        libc::ENODEV => "ENODEV",
        _ => crate::common::errno_name(e),
    }
}

pub(crate) fn res(r: i64) -> String {
    if r < 0 {
        let e = errno();
        format!("error {} {e}", ename(e))
    } else {
        "ok".to_string()
    }
}

pub(crate) fn die(what: &str) -> ! {
    let e = Error::last_os_error();
    crate::common::fail(what, &e)
}

pub(crate) fn usage() -> ! {
    eprintln!("usage: attack_bypass SUBCOMMAND ... (see the comment at the top of examples/attack_bypass/main.rs)");
    exit(2)
}

pub(crate) fn parse_addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| usage())
}

pub(crate) fn family_of(a: &SocketAddr) -> c_int {
    if a.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

pub(crate) fn tcp_socket(family: c_int) -> c_int {
    // SAFETY: socket(2) takes plain integers.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        die("socket");
    }
    fd
}

pub(crate) fn opt_value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).map(|i| {
        args.get(i + 1)
            .map(String::as_str)
            .unwrap_or_else(|| usage())
    })
}

pub(crate) fn has_flag(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

/// The positional arguments (not an option or an option's value).
pub(crate) fn positional(args: &[String], with_value: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if with_value.contains(&args[i].as_str()) {
            i += 2;
            continue;
        }
        if !args[i].starts_with("--") {
            out.push(args[i].clone());
        }
        i += 1;
    }
    out
}
