//! A dual-stack banner server: one AF_INET6 socket with `IPV6_V6ONLY=0`, so IPv4 peers
//! arrive as v4-mapped addresses (`::ffff:127.0.0.1`). Writes
//! `220 sockexit dualstack\r\n` to each connection and closes it.
//!
//! Usage: `dualstack_server [ADDR] [--max N]`
//!
//! - `ADDR` (default `[::]:0`): an IPv6 address to listen on; port 0 picks a free port.
//! - `--max N`: exit after serving N connections.
//!
//! Stdout: `listening ADDR` once ready (or `error ERRNO-NAME ERRNO`, exit code 1),
//! `accepted PEER` per connection (as the program sees it, v4-mapped for IPv4), and
//! `served N` when `--max` is reached.

use std::io::{Error, Write};
use std::net::{SocketAddrV6, TcpListener};
use std::os::fd::FromRawFd;
use std::process::exit;

mod common;
use common::fail;

const BANNER: &[u8] = b"220 sockexit dualstack\r\n";

fn main() {
    let mut addr: SocketAddrV6 = "[::]:0".parse().expect("literal");
    let mut max: Option<u64> = None;
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
            s if s.starts_with('-') => usage(),
            s => addr = s.parse().unwrap_or_else(|_| usage()),
        }
    }

    let listener = match dual_stack_listener(&addr) {
        Ok(l) => l,
        Err((what, e)) => fail(what, &e),
    };
    match listener.local_addr() {
        Ok(a) => println!("listening {a}"),
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

/// socket + IPV6_V6ONLY=0 + SO_REUSEADDR + bind + listen; std cannot set V6ONLY
/// before bind. The error names the step that failed.
fn dual_stack_listener(addr: &SocketAddrV6) -> Result<TcpListener, (&'static str, Error)> {
    // SAFETY: socket(2) takes plain integers.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(("socket", Error::last_os_error()));
    }
    // SAFETY: fd is a socket we just created and now own; from here on the listener
    // closes it on every path.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let off: libc::c_int = 0;
    let on: libc::c_int = 1;
    let int_len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: sockaddr_in6 is plain data (all-zero is valid); every pointer passed
    // below points at a live local of the announced length.
    unsafe {
        if libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&off as *const libc::c_int).cast(),
            int_len,
        ) < 0
        {
            return Err(("setsockopt IPV6_V6ONLY", Error::last_os_error()));
        }
        if libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&on as *const libc::c_int).cast(),
            int_len,
        ) < 0
        {
            return Err(("setsockopt SO_REUSEADDR", Error::last_os_error()));
        }
        let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
        sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa.sin6_port = addr.port().to_be();
        sa.sin6_addr.s6_addr = addr.ip().octets();
        sa.sin6_scope_id = addr.scope_id();
        let sa_len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        if libc::bind(fd, (&sa as *const libc::sockaddr_in6).cast(), sa_len) < 0 {
            return Err(("bind", Error::last_os_error()));
        }
        if libc::listen(fd, 128) < 0 {
            return Err(("listen", Error::last_os_error()));
        }
    }
    Ok(listener)
}

fn usage() -> ! {
    eprintln!("usage: dualstack_server [ADDR] [--max N]");
    exit(2)
}
