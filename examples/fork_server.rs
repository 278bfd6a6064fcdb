//! A multi-threaded server that forks a child per connection, like classic inetd-style
//! daemons that also run helper threads. It checks that the library keeps working
//! after `fork()` in a threaded program: the parent keeps accepting (through the
//! hook) while worker threads exist, and each child makes a hooked `listen` call of its
//! own before writing `220 sockexit fork child listen=RESULT\r\n` and exiting.
//!
//! Usage: `fork_server [ADDR] [--max N] [--workers N] [--busy]`
//!
//! - `ADDR` (default `127.0.0.1:0`): where to listen; port 0 picks a free port.
//! - `--max N`: exit after forking N children (and waiting for them).
//! - `--workers N` (default 3): worker threads, idle (parked) by default.
//! - `--busy`: workers loop (1 ms apart) on `connect` to a reserved, non-listening
//!   local port (ECONNREFUSED), so forks happen while other threads are inside the
//!   hook; a lock or allocation held across the hook would deadlock the child.
//!
//! Stdout: `listening ADDR` once ready (or `error ERRNO-NAME ERRNO`, exit code 1),
//! `forked PEER` per connection, `served N` when `--max` is reached.
//! RESULT in the banner is `ok` or the errno name the child's `listen` got.

use std::io::Error;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::exit;
use std::time::Duration;

mod common;
use common::fail;

fn main() {
    let mut addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut max: Option<u64> = None;
    let mut workers = 3usize;
    let mut busy = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--max" => {
                max = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| usage()),
                )
            }
            "--workers" => {
                workers = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--busy" => busy = true,
            s if s.starts_with('-') => usage(),
            s => addr = s.parse().unwrap_or_else(|_| usage()),
        }
    }

    // SAFETY: setting a signal disposition to SIG_IGN; children are then reaped by
    // the kernel and never become zombies.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };

    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => fail("listen", &e),
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => fail("getsockname", &e),
    };

    // A bound, never-listening socket holds a port nobody else can listen on, so the
    // busy workers' connects are refused by the kernel, not by chance.
    let reserved = reserve_port();
    for _ in 0..workers {
        std::thread::spawn(move || loop {
            if busy {
                let _ = TcpStream::connect(reserved);
                std::thread::sleep(Duration::from_millis(1));
            } else {
                std::thread::park();
            }
        });
    }
    println!("listening {local}");

    let mut served = 0u64;
    while max.is_none_or(|m| served < m) {
        let (conn, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::ECONNABORTED) => continue,
                _ => fail("accept", &e),
            },
        };
        // SAFETY: fork(2). The child only makes raw libc calls (socket, bind, listen,
        // write, close) and leaves with _exit, never touching locks other threads
        // may have held at the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            fail("fork", &Error::last_os_error());
        }
        if pid == 0 {
            child(conn.as_raw_fd());
        }
        drop(conn);
        println!("forked {peer}");
        served += 1;
    }
    // With SIGCHLD ignored, wait() returns once every child has exited.
    // SAFETY: plain wait on our own children.
    while unsafe { libc::wait(std::ptr::null_mut()) } > 0 {}
    println!("served {served}");
}

/// The forked child: one hooked listen of its own, then the banner, then _exit.
fn child(conn: i32) -> ! {
    let result = match child_listen() {
        0 => "ok",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EADDRINUSE => "EADDRINUSE",
        _ => "UNKNOWN",
    };
    let mut banner = [0u8; 64];
    let parts: [&[u8]; 3] = [
        b"220 sockexit fork child listen=",
        result.as_bytes(),
        b"\r\n",
    ];
    let mut n = 0;
    for p in parts {
        banner[n..n + p.len()].copy_from_slice(p);
        n += p.len();
    }
    // SAFETY: write/close/_exit are async-signal-safe; banner holds n bytes.
    unsafe {
        libc::write(conn, banner.as_ptr().cast(), n);
        libc::close(conn);
        libc::_exit(0)
    }
}

/// socket + bind 127.0.0.1:0 + listen, with no allocation; 0 or the errno.
fn child_listen() -> i32 {
    // SAFETY: raw calls on a socket this function creates and closes; sin is a live,
    // fully initialised sockaddr_in.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return *libc::__errno_location();
        }
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let mut r = libc::bind(fd, (&sin as *const libc::sockaddr_in).cast(), len);
        if r == 0 {
            r = libc::listen(fd, 1);
        }
        let e = if r < 0 { *libc::__errno_location() } else { 0 };
        libc::close(fd);
        e
    }
}

/// Binds (without listening) a socket on 127.0.0.1:0 for the process lifetime.
fn reserve_port() -> SocketAddr {
    // SAFETY: as in child_listen; the fd is deliberately kept open until exit.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            fail("socket", &Error::last_os_error());
        }
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::bind(fd, (&sin as *const libc::sockaddr_in).cast(), len) < 0 {
            fail("bind", &Error::last_os_error());
        }
        if libc::getsockname(fd, (&mut sin as *mut libc::sockaddr_in).cast(), &mut len) < 0 {
            fail("getsockname", &Error::last_os_error());
        }
        SocketAddr::from(([127, 0, 0, 1], u16::from_be(sin.sin_port)))
    }
}

fn usage() -> ! {
    eprintln!("usage: fork_server [ADDR] [--max N] [--workers N] [--busy]");
    exit(2)
}
