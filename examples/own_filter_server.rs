//! A banner server that attaches its own classic BPF socket filter before `listen()`,
//! like a program that filters its own traffic. With `stealth: true`, sockexit must
//! keep that filter (and fall back to accept-time checks), not replace it.
//!
//! Usage: `own_filter_server [ADDR] [--max N] [--no-filter] [--unbound]` (default
//! `127.0.0.1:0`).
//!
//! The filter accepts every packet (`ret 0xffffffff`) but is 2 instructions long so it
//! can be recognised: `ld #1; ret #0xffffffff`.
//!
//! - `--no-filter`: attach none (then `filter=N` shows what sockexit attached).
//! - `--unbound`: skip `bind`, so `listen` binds the socket to a kernel-chosen port on
//!   every address of ADDR's family (the library sees port 0 at listen).
//!
//! Stdout: `listening ADDR filter=N` once ready, N the socket's filter length read back
//! with `SO_GET_FILTER` after listen (2 when the program's own filter was kept),
//! `accepted PEER` per connection, `served N` when `--max` is reached; `error NAME N`
//! and exit code 1 when setting up fails.

use std::io::{Error, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::exit;

mod common;
use common::{fail, raw_addr};

const BANNER: &[u8] = b"220 own filter\r\n";

fn main() {
    let mut addr: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let mut max: Option<u64> = None;
    let (mut filter, mut bind) = (true, true);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--no-filter" => filter = false,
            "--unbound" => bind = false,
            "--max" => {
                max = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| usage()),
                )
            }
            s if s.starts_with('-') => usage(),
            s => addr = s.parse().unwrap_or_else(|_| usage()),
        }
    }
    let listener = match listener_with_filter(&addr, filter, bind) {
        Ok(l) => l,
        Err((what, e)) => fail(what, &e),
    };
    let n = match filter_len(listener.as_raw_fd()) {
        Ok(n) => n,
        Err(e) => fail("getsockopt SO_GET_FILTER", &e),
    };
    match listener.local_addr() {
        Ok(a) => println!("listening {a} filter={n}"),
        Err(e) => fail("getsockname", &e),
    }
    let mut served = 0u64;
    while max.is_none_or(|m| served < m) {
        let (mut conn, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::ECONNABORTED) => continue,
                _ => fail("accept", &e),
            },
        };
        println!("accepted {peer}");
        let _ = conn.write_all(BANNER);
        served += 1;
    }
    println!("served {served}");
}

/// socket + SO_REUSEADDR + bind + SO_ATTACH_FILTER + listen, the middle two as asked.
/// The error names the step.
fn listener_with_filter(
    addr: &SocketAddr,
    filter: bool,
    bind: bool,
) -> Result<TcpListener, (&'static str, Error)> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) takes plain integers.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(("socket", Error::last_os_error()));
    }
    // SAFETY: fd is a socket we just created and now own; the listener closes it on
    // every path from here.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let on: libc::c_int = 1;
    // SAFETY: on is a live c_int of the length given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(("setsockopt SO_REUSEADDR", Error::last_os_error()));
    }
    let (ss, len) = raw_addr(addr);
    // SAFETY: ss holds a sockaddr of len bytes and outlives the call.
    if bind && unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) } < 0 {
        return Err(("bind", Error::last_os_error()));
    }
    if filter {
        let mut prog = [
            libc::sock_filter {
                code: 0x00, // ld #k
                jt: 0,
                jf: 0,
                k: 1,
            },
            libc::sock_filter {
                code: 0x06, // ret #k
                jt: 0,
                jf: 0,
                k: 0xffff_ffff,
            },
        ];
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        // SAFETY: fprog points at prog, which outlives the call; the kernel copies it.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&fprog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(("setsockopt SO_ATTACH_FILTER", Error::last_os_error()));
        }
    }
    // SAFETY: listen(2) takes plain integers.
    if unsafe { libc::listen(fd, 128) } < 0 {
        return Err(("listen", Error::last_os_error()));
    }
    Ok(listener)
}

/// The attached filter's length in instructions (`SO_GET_FILTER` with length 0).
fn filter_len(fd: i32) -> Result<u32, Error> {
    let mut dummy = [0u8; 8];
    let mut n: libc::socklen_t = 0;
    // SAFETY: with a length of 0 the kernel writes nothing to the buffer, only the
    // count to n; both are live locals.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            dummy.as_mut_ptr().cast(),
            &mut n,
        )
    };
    if r < 0 {
        return Err(Error::last_os_error());
    }
    Ok(n)
}

fn usage() -> ! {
    eprintln!("usage: own_filter_server [ADDR] [--max N]");
    exit(2)
}
