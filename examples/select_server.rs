//! Two **blocking** listening sockets, A and B, served by one `select()` loop, the way
//! xinetd and many C servers are written: wait until a listener is readable, then call
//! the plain `accept` on that (blocking) socket, write `220 sockexit select X\r\n` and
//! close.
//!
//! A refused peer on A makes A readable; if the `accept` that follows waited for the
//! next connection on A instead of returning, B would never be served again (issue 13,
//! item 6). The loop retries `ECONNABORTED`, `EAGAIN` and `EINTR`, as such servers do.
//!
//! Usage: `select_server [--max N]`: both listeners on 127.0.0.1 with free ports; exit
//! after serving N connections in all (default: until killed).
//!
//! Stdout: `listening A ADDR` and `listening B ADDR` once ready (or `error ERRNO-NAME
//! ERRNO`, exit code 1), `accepted X PEER` per connection served, `aborted X NAME` per
//! accept that returned -1 with an errno it retries, `served N` when `--max` is reached.

use std::io::{Error, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::exit;

mod common;
use common::{errno_name, fail};

fn main() {
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
            _ => usage(),
        }
    }

    let mut listeners = Vec::new();
    for name in ["A", "B"] {
        // std's listeners are blocking: exactly what this sample is about.
        let l = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
            Ok(l) => l,
            Err(e) => fail("listen", &e),
        };
        match l.local_addr() {
            Ok(a) => println!("listening {name} {a}"),
            Err(e) => fail("getsockname", &e),
        }
        listeners.push((name, l));
    }

    let mut served = 0u64;
    while max.is_none_or(|m| served < m) {
        // SAFETY: fd_set is plain data; FD_ZERO/FD_SET/FD_ISSET only touch it, and both
        // fds are open and far below FD_SETSIZE.
        let mut set: libc::fd_set = unsafe { std::mem::zeroed() };
        let mut top = 0;
        unsafe { libc::FD_ZERO(&mut set) };
        for (_, l) in &listeners {
            let fd = l.as_raw_fd();
            unsafe { libc::FD_SET(fd, &mut set) };
            top = top.max(fd);
        }
        // SAFETY: set is a valid fd_set; NULL write/except sets and timeout are allowed.
        let n = unsafe {
            libc::select(
                top + 1,
                &mut set,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            fail("select", &e);
        }
        for (name, l) in &listeners {
            // SAFETY: set was filled in by select above.
            if !unsafe { libc::FD_ISSET(l.as_raw_fd(), &set) } {
                continue;
            }
            let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: ss is a writable sockaddr_storage of `len` bytes.
            let fd = unsafe {
                libc::accept(
                    l.as_raw_fd(),
                    (&mut ss as *mut libc::sockaddr_storage).cast(),
                    &mut len,
                )
            };
            if fd < 0 {
                let e = Error::last_os_error();
                match e.raw_os_error() {
                    Some(n @ (libc::ECONNABORTED | libc::EAGAIN | libc::EINTR)) => {
                        println!("aborted {name} {}", errno_name(n));
                        continue;
                    }
                    _ => fail("accept", &e),
                }
            }
            // SAFETY: fd is the connected socket accept just returned.
            let mut conn = unsafe { TcpStream::from_raw_fd(fd) };
            let peer = conn.peer_addr().map(|p: SocketAddr| p.to_string());
            println!("accepted {name} {}", peer.unwrap_or_else(|e| e.to_string()));
            let _ = conn.write_all(format!("220 sockexit select {name}\r\n").as_bytes());
            served += 1;
        }
    }
    println!("served {served}");
}

fn usage() -> ! {
    eprintln!("usage: select_server [--max N]");
    exit(2)
}
