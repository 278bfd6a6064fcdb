//! A TCP client that reports exactly what `connect(2)` told it, so tests (and people)
//! can see the errno a program under the preload gets.
//!
//! Usage: `connect_client [--nonblock] [--bind SRC] [--send TEXT] [--no-read] [--after FILE] ADDR`
//!
//! - `ADDR`: `IP:PORT` or `[IPv6]:PORT`.
//! - `--nonblock`: non-blocking socket; `EINPROGRESS` is waited out with `poll` (5 s)
//!   and the result read from `SO_ERROR`, as event loops do.
//! - `--bind SRC`: bind to this source IP (port 0) before connecting, e.g. `127.0.0.2`.
//! - `--send TEXT`: write TEXT after connecting. `--no-read`: do not read.
//! - `--after FILE`: print `waiting`, then wait (at most 20 s) until FILE exists before
//!   opening the socket: a test can change the world between the program's start
//!   (when the preload reads its policy) and its first socket call.
//!
//! Stdout, one line: `ok DATA` where DATA is what was read until EOF or a 3 s silence
//! (ASCII-escaped, e.g. `ok 220 sockexit banner\r\n`), or `error ERRNO-NAME ERRNO`
//! (e.g. `error EACCES 13`, `error ECONNREFUSED 111`) with exit code 1. Stderr says which
//! step failed (`connect`, or `connect (SO_ERROR)` for a non-blocking connect that
//! failed later).

use std::io::{Error, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::process::exit;
use std::time::Duration;

mod common;
use common::{fail, raw_addr};

fn main() {
    let mut nonblock = false;
    let mut read = true;
    let mut bind: Option<IpAddr> = None;
    let mut send: Option<String> = None;
    let mut dest: Option<SocketAddr> = None;
    let mut after: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--nonblock" => nonblock = true,
            "--no-read" => read = false,
            "--bind" => {
                bind = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| usage()),
                )
            }
            "--send" => send = Some(args.next().unwrap_or_else(|| usage())),
            "--after" => after = Some(args.next().unwrap_or_else(|| usage()).into()),
            s if s.starts_with('-') => usage(),
            s => dest = Some(s.parse().unwrap_or_else(|_| usage())),
        }
    }
    let dest = dest.unwrap_or_else(|| usage());
    if let Some(file) = after {
        println!("waiting");
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while !file.exists() {
            if std::time::Instant::now() > until {
                fail("--after", &Error::from(ErrorKind::TimedOut));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    let family = if dest.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let ty =
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblock { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: socket(2) takes plain integers.
    let fd = unsafe { libc::socket(family, ty, 0) };
    if fd < 0 {
        fail("socket", &Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own; the stream closes it.
    let mut stream = unsafe { TcpStream::from_raw_fd(fd) };

    if let Some(src) = bind {
        let (sa, len) = raw_addr(&SocketAddr::new(src, 0));
        // SAFETY: sa is a sockaddr of len bytes, alive across the call.
        if unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_storage).cast(), len) } < 0 {
            fail("bind", &Error::last_os_error());
        }
    }

    let (sa, len) = raw_addr(&dest);
    // SAFETY: as above.
    let r = unsafe { libc::connect(fd, (&sa as *const libc::sockaddr_storage).cast(), len) };
    if r < 0 {
        let e = Error::last_os_error();
        if !(nonblock && e.raw_os_error() == Some(libc::EINPROGRESS)) {
            fail("connect", &e);
        }
        wait_connected(fd);
    }
    if nonblock {
        if let Err(e) = stream.set_nonblocking(false) {
            fail("fcntl", &e);
        }
    }

    if let Some(text) = send {
        if let Err(e) = stream.write_all(text.as_bytes()) {
            fail("write", &e);
        }
    }
    let mut got = Vec::new();
    if read {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("connect_client: read after {} bytes: {e}", got.len());
                    break;
                }
            }
        }
    }
    if got.is_empty() {
        println!("ok");
    } else {
        println!("ok {}", got.escape_ascii());
    }
}

/// Waits for a non-blocking connect to finish; exits with its error if it failed.
fn wait_connected(fd: i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: p is one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, 5000) };
    if n < 0 {
        fail("poll", &Error::last_os_error());
    }
    if n == 0 {
        fail("connect (poll)", &Error::from_raw_os_error(libc::ETIMEDOUT));
    }
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: err/len are live locals of the announced size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        fail("getsockopt", &Error::last_os_error());
    }
    if err != 0 {
        fail("connect (SO_ERROR)", &Error::from_raw_os_error(err));
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: connect_client [--nonblock] [--bind SRC] [--send TEXT] [--no-read] [--after FILE] ADDR"
    );
    exit(2)
}
