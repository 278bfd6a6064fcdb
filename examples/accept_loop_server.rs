//! The plainest server there is: one or more threads in a loop of the plain `accept`
//! on one **blocking** listening socket, retrying `ECONNABORTED`, `EAGAIN` and `EINTR`
//! as nginx, libuv, OpenJDK and Go do; each connection gets `220 sockexit loop\r\n`
//! and is closed.
//!
//! Usage: `accept_loop_server [--threads N] [--rcvtimeo MS] [--once]`
//!
//! - `--threads N` (default 1): N threads accept on the same socket.
//! - `--rcvtimeo MS`: `SO_RCVTIMEO` on the listener (a blocking accept then gives up
//!   with `EAGAIN` after MS milliseconds).
//! - `--once`: make exactly one `accept` call, report it and exit (to time it).
//!
//! Stdout: `listening ADDR` once ready (or `error ERRNO-NAME ERRNO`, exit code 1);
//! then per call `accepted T PEER` (thread T served PEER) or `aborted T NAME` (accept
//! returned -1 with an errno the loop retries). A line `stop` on stdin, or its end,
//! stops the server: the listener is shut down, which wakes every thread blocked in
//! `accept` (Linux returns `EINVAL`); each thread prints `done T`, and `joined N`
//! follows once all N have ended.
//!
//! With `--once`: `accepting` just before the call, then `result ok PEER ms=N` or
//! `result error NAME ms=N` (N: milliseconds the call took), and exit.

use std::io::{BufRead, Error, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::exit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

mod common;
use common::{errno_name, fail};

static STOP: AtomicBool = AtomicBool::new(false);

fn main() {
    let mut threads = 1usize;
    let mut rcvtimeo: Option<u64> = None;
    let mut once = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage())
        };
        match a.as_str() {
            "--threads" => threads = num() as usize,
            "--rcvtimeo" => rcvtimeo = Some(num()),
            "--once" => once = true,
            _ => usage(),
        }
    }

    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
        Ok(l) => Arc::new(l),
        Err(e) => fail("listen", &e),
    };
    let lfd = listener.as_raw_fd();
    if let Some(ms) = rcvtimeo {
        let tv = libc::timeval {
            tv_sec: (ms / 1000) as libc::time_t,
            tv_usec: ((ms % 1000) * 1000) as libc::suseconds_t,
        };
        // SAFETY: tv is a live timeval of the announced size.
        let r = unsafe {
            libc::setsockopt(
                lfd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            fail("setsockopt SO_RCVTIMEO", &Error::last_os_error());
        }
    }
    match listener.local_addr() {
        Ok(a) => println!("listening {a}"),
        Err(e) => fail("getsockname", &e),
    }

    if once {
        println!("accepting");
        let t0 = Instant::now();
        let r = accept_one(lfd);
        let ms = t0.elapsed().as_millis();
        match r {
            Ok(mut conn) => {
                let peer = conn.peer_addr().map(|p| p.to_string()).unwrap_or_default();
                let _ = conn.write_all(b"220 sockexit loop\r\n");
                println!("result ok {peer} ms={ms}");
            }
            Err(e) => println!(
                "result error {} ms={ms}",
                errno_name(e.raw_os_error().unwrap_or(0))
            ),
        }
        return;
    }

    let workers: Vec<_> = (0..threads)
        .map(|t| std::thread::spawn(move || serve(t, lfd)))
        .collect();

    // Until `stop` or the end of stdin.
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(l) if l.trim() == "stop" => break,
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    STOP.store(true, Ordering::SeqCst);
    // SAFETY: shutdown(2) on our own listening socket; it stays open until exit.
    unsafe { libc::shutdown(lfd, libc::SHUT_RDWR) };
    let n = workers.len();
    for w in workers {
        let _ = w.join();
    }
    println!("joined {n}");
    drop(listener);
}

/// One plain `accept` call.
fn accept_one(lfd: i32) -> Result<TcpStream, Error> {
    // SAFETY: ss is a writable sockaddr_storage of `len` bytes.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let fd = unsafe {
        libc::accept(
            lfd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: fd is the connected socket accept just returned, owned from here on.
    Ok(unsafe { TcpStream::from_raw_fd(fd) })
}

fn serve(t: usize, lfd: i32) {
    loop {
        match accept_one(lfd) {
            Ok(mut conn) => {
                let peer = conn.peer_addr().map(|p| p.to_string()).unwrap_or_default();
                println!("accepted {t} {peer}");
                let _ = conn.write_all(b"220 sockexit loop\r\n");
            }
            Err(_) if STOP.load(Ordering::SeqCst) => break,
            Err(e) => match e.raw_os_error() {
                Some(n @ (libc::ECONNABORTED | libc::EAGAIN | libc::EINTR)) => {
                    println!("aborted {t} {}", errno_name(n))
                }
                _ => fail("accept", &e),
            },
        }
    }
    println!("done {t}");
}

fn usage() -> ! {
    eprintln!("usage: accept_loop_server [--threads N] [--rcvtimeo MS] [--once]");
    exit(2)
}
