//! A non-blocking, edge-triggered epoll server in the style of libuv/nginx: on each
//! readiness edge of the listening socket it calls
//! `accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)` until `EAGAIN`, writes
//! `220 sockexit epoll\r\n` to each accepted connection and closes it.
//!
//! Edge-triggered means a spurious `EAGAIN` while connections are still queued stalls
//! the server for good: no new edge comes until another client arrives. That is what
//! this sample is for.
//!
//! Usage: `epoll_server [ADDR] [--max N]`
//!
//! - `ADDR` (default `127.0.0.1:0`): where to listen; port 0 picks a free port.
//! - `--max N`: exit after serving N connections. SIGTERM/SIGINT also end it cleanly.
//!
//! Stdout: `listening ADDR` once ready (or `error ERRNO-NAME ERRNO`, exit code 1), and
//! `served N` (connections that got the greeting) on exit. Exit code 3 if an accepted
//! socket lacks `O_NONBLOCK` (accept4 flags must pass through unchanged).

use std::io::Error;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::process::exit;

mod common;
use common::fail;

const GREETING: &[u8] = b"220 sockexit epoll\r\n";
const LISTENER: u64 = 1;
const SIGNALS: u64 = 2;

fn main() {
    let mut addr: SocketAddr = ([127, 0, 0, 1], 0).into();
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

    // Signals become events on the loop, so a kill ends it between two accepts and the
    // count printed is exact. Blocked before any thread could exist.
    let sfd = signal_fd();

    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => fail("listen", &e),
    };
    if let Err(e) = listener.set_nonblocking(true) {
        fail("fcntl", &e);
    }
    match listener.local_addr() {
        Ok(a) => println!("listening {a}"),
        Err(e) => fail("getsockname", &e),
    }
    let lfd = listener.as_raw_fd();

    // SAFETY: plain syscall wrappers on fds we own; epoll_event is plain data.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        fail("epoll_create1", &Error::last_os_error());
    }
    for (fd, token) in [(lfd, LISTENER), (sfd, SIGNALS)] {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: ep and fd are open; ev lives across the call.
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            fail("epoll_ctl", &Error::last_os_error());
        }
    }

    let mut served = 0u64;
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
    'run: while max.is_none_or(|m| served < m) {
        // SAFETY: events is a writable array of the announced length.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            let e = Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            fail("epoll_wait", &e);
        }
        for ev in &events[..n as usize] {
            if ev.u64 == SIGNALS {
                break 'run;
            }
            // Edge-triggered: drain the queue completely, or no new edge ever comes.
            loop {
                // SAFETY: NULL address and length are allowed by accept4(2).
                let fd = unsafe {
                    libc::accept4(
                        lfd,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    )
                };
                if fd < 0 {
                    let e = Error::last_os_error();
                    match e.raw_os_error() {
                        Some(libc::EAGAIN) => break,
                        Some(libc::EINTR) | Some(libc::ECONNABORTED) => continue,
                        _ => fail("accept4", &e),
                    }
                }
                // SAFETY: fcntl/write/close on the fd accept4 just returned to us.
                unsafe {
                    if libc::fcntl(fd, libc::F_GETFL) & libc::O_NONBLOCK == 0 {
                        eprintln!("epoll_server: accept4 dropped SOCK_NONBLOCK");
                        exit(3);
                    }
                    let w = libc::write(fd, GREETING.as_ptr().cast(), GREETING.len());
                    if w == GREETING.len() as isize {
                        served += 1;
                    } else {
                        eprintln!("epoll_server: greeting: {}", Error::last_os_error());
                    }
                    libc::close(fd);
                }
                if max.is_some_and(|m| served >= m) {
                    break 'run;
                }
            }
        }
    }
    println!("served {served}");
}

/// A signalfd for SIGTERM and SIGINT, which are blocked from now on.
fn signal_fd() -> i32 {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the calls only read
    // and write that set and the signal mask of this (still single-threaded) process.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) < 0 {
            fail("sigprocmask", &Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            fail("signalfd", &Error::last_os_error());
        }
        fd
    }
}

fn usage() -> ! {
    eprintln!("usage: epoll_server [ADDR] [--max N]");
    exit(2)
}
