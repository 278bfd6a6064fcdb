//! Reports what `listen(2)` told it: bind + listen, print the outcome, exit.
//!
//! Usage: `listen_probe ADDR` or `listen_probe unix:PATH`
//!
//! - `ADDR` (`IP:PORT`, port 0 for any): an IP socket. Stdout: `ok ADDR` (the bound
//!   address) or `error ERRNO-NAME ERRNO` (e.g. `error EACCES 13`), exit code 1.
//! - `unix:PATH`: the AF_UNIX round trip — listen on PATH, `connect` to it twice,
//!   take one connection with `accept` and one with `accept4(fd, NULL, NULL, 0)`, and
//!   pass a byte across each. AF_UNIX sockets must pass through the library untouched
//!   whatever the policy. Stdout: `ok unix listen connect accept accept4` or
//!   `error ERRNO-NAME ERRNO`.
//!
//! Stderr names the step that failed.

use std::io::Error;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::exit;

mod common;
use common::{fail, raw_addr};

fn main() {
    let arg = match std::env::args().nth(1) {
        Some(a) if std::env::args().len() == 2 => a,
        _ => usage(),
    };
    if let Some(path) = arg.strip_prefix("unix:") {
        unix_round_trip(path);
        println!("ok unix listen connect accept accept4");
    } else {
        let addr: SocketAddr = arg.parse().unwrap_or_else(|_| usage());
        let bound = ip_listen(&addr);
        println!("ok {bound}");
    }
}

/// socket + bind + listen, done step by step (std would hide which step failed).
fn ip_listen(addr: &SocketAddr) -> SocketAddr {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let fd = check("socket", unsafe_socket(family));
    // SAFETY: fd is a fresh socket we own.
    let l = unsafe { TcpListener::from_raw_fd(fd) };
    let (ss, len) = raw_addr(addr);
    // SAFETY: ss holds a sockaddr of len bytes and outlives the bind call.
    unsafe {
        check(
            "bind",
            libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len),
        );
        check("listen", libc::listen(fd, 16));
    }
    l.local_addr().unwrap_or_else(|e| fail("getsockname", &e))
}

fn unix_round_trip(path: &str) {
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if path.len() >= sun.sun_path.len() {
        eprintln!("listen_probe: path too long");
        exit(2);
    }
    for (d, s) in sun.sun_path.iter_mut().zip(path.bytes()) {
        *d = s as libc::c_char;
    }
    let sun_len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let sun_ptr = (&sun as *const libc::sockaddr_un).cast::<libc::sockaddr>();

    let lfd = check("socket", unsafe_socket(libc::AF_UNIX));
    // SAFETY: fds below are ones we just created and own (wrapped so they close);
    // sun/peer/len are live locals of the announced sizes.
    unsafe {
        let _l = OwnedFd::from_raw_fd(lfd);
        check("bind", libc::bind(lfd, sun_ptr, sun_len));
        check("listen", libc::listen(lfd, 4));
        let mut pairs = Vec::new();
        for step in ["accept", "accept4"] {
            let c = check("socket", unsafe_socket(libc::AF_UNIX));
            let client = OwnedFd::from_raw_fd(c);
            check("connect", libc::connect(c, sun_ptr, sun_len));
            let s = if step == "accept" {
                let mut peer: libc::sockaddr_un = std::mem::zeroed();
                let mut len = sun_len;
                libc::accept(lfd, (&mut peer as *mut libc::sockaddr_un).cast(), &mut len)
            } else {
                libc::accept4(lfd, std::ptr::null_mut(), std::ptr::null_mut(), 0)
            };
            let server = OwnedFd::from_raw_fd(check(step, s));
            pairs.push((client, server, c, s));
        }
        for (_client, _server, c, s) in &pairs {
            let byte = [b'x'];
            if libc::write(*c, byte.as_ptr().cast(), 1) != 1 {
                fail("write", &Error::last_os_error());
            }
            let mut got = [0u8];
            if libc::read(*s, got.as_mut_ptr().cast(), 1) != 1 || got != byte {
                fail("read", &Error::last_os_error());
            }
        }
    }
    let _ = std::fs::remove_file(path);
}

fn unsafe_socket(family: libc::c_int) -> libc::c_int {
    // SAFETY: socket(2) takes plain integers.
    unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) }
}

/// The result of a libc call returning -1 on error, or exit reporting errno.
fn check(what: &str, r: libc::c_int) -> libc::c_int {
    if r < 0 {
        fail(what, &Error::last_os_error());
    }
    r
}

fn usage() -> ! {
    eprintln!("usage: listen_probe ADDR | listen_probe unix:PATH");
    exit(2)
}
