//! Helpers shared by the sample programs. Each program uses a subset, so unused items
//! are expected here.
#![allow(dead_code)]

use std::io::Error;
use std::net::SocketAddr;
use std::process::exit;

/// The symbolic name of an errno value, as the tests read it from stdout.
pub fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EALREADY => "EALREADY",
        libc::EAGAIN => "EAGAIN",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EINVAL => "EINVAL",
        libc::EPIPE => "EPIPE",
        libc::EMFILE => "EMFILE",
        libc::EBADF => "EBADF",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::ENOENT => "ENOENT",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EINTR => "EINTR",
        _ => "UNKNOWN",
    }
}

/// Report a failed call the way the tests parse it (`error NAME N` on stdout, the
/// readable message on stderr) and exit 1.
pub fn fail(what: &str, e: &Error) -> ! {
    let n = e.raw_os_error().unwrap_or(0);
    println!("error {} {n}", errno_name(n));
    let prog = std::env::args().next().unwrap_or_default();
    let prog = prog.rsplit('/').next().unwrap_or("example");
    eprintln!("{prog}: {what}: {e}");
    exit(1)
}

/// `addr` as a raw sockaddr (in a sockaddr_storage) and its length, for calling
/// `bind`/`connect` directly (the sample programs must make the exact libc call the
/// hook sees).
pub fn raw_addr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data, all-zero is valid, and it is large and
    // aligned enough to be viewed as sockaddr_in or sockaddr_in6.
    unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin =
                    &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 =
                    &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_scope_id = a.scope_id();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        (ss, len as libc::socklen_t)
    }
}

/// `accept` as servers write it: retry on `ECONNABORTED`, which the kernel returns for
/// a connection that died in the queue and the library for a refused one on a
/// blocking listener with nothing else pending.
pub fn accept_next(l: &std::net::TcpListener) -> (std::net::TcpStream, SocketAddr) {
    loop {
        match l.accept() {
            Ok(x) => return x,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
            Err(e) => fail("accept", &e),
        }
    }
}
