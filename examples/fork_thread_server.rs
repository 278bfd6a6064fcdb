//! A server with a thread that forks while connections arrive, like a daemon that runs
//! helper programs or keeps a pool of pre-forked workers: the main thread serves a
//! blocking listener with the plain `accept` (no `SOCK_CLOEXEC`, as most C servers),
//! writes `220 sockexit forker\r\n`, shuts the connection down and closes it; the
//! forker thread forks a child whenever the listener is readable (a connection is
//! arriving, so the fork overlaps the accept) and at least every 100 ms.
//!
//! A child inherits every fd open at the moment of `fork()`. A refused connection the
//! library has accepted but not yet reset must not end up held open by such a child
//! (issue 13, item 8): its peer would wait for the child instead of seeing the reset.
//!
//! Usage: `fork_thread_server [--children sleep|exec|both] [--hold MS] [--cap N]`
//!
//! - `--children` (default `both`): `sleep` children sleep HOLD ms and `_exit` without
//!   exec; `exec` children exec `/bin/sleep` for HOLD ms; `both` alternates.
//! - `--hold MS` (default 1500): how long each child lives.
//! - `--cap N` (default 256): at most N children alive at once.
//!
//! Stdout: `listening ADDR` once ready (or `error ERRNO-NAME ERRNO`, exit code 1),
//! `forking` once the first child is forked, `accepted PEER` per connection served, `aborted NAME` per accept that returned -1
//! with an errno it retries. Runs until killed (kill the process group: the children
//! are in it).

use std::ffi::CString;
use std::io::{Error, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::exit;
use std::time::Duration;

mod common;
use common::{errno_name, fail};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sleep,
    Exec,
    Both,
}

fn main() {
    let mut kind = Kind::Both;
    let mut hold = 1500u64;
    let mut cap = 256usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--children" => {
                kind = match args.next().as_deref() {
                    Some("sleep") => Kind::Sleep,
                    Some("exec") => Kind::Exec,
                    Some("both") => Kind::Both,
                    _ => usage(),
                }
            }
            "--hold" => {
                hold = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--cap" => {
                cap = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            _ => usage(),
        }
    }

    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
        Ok(l) => l,
        Err(e) => fail("listen", &e),
    };
    let lfd = listener.as_raw_fd();
    match listener.local_addr() {
        Ok(a) => println!("listening {a}"),
        Err(e) => fail("getsockname", &e),
    }

    std::thread::spawn(move || forker(lfd, kind, hold, cap));

    loop {
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
            let e = Error::last_os_error();
            match e.raw_os_error() {
                Some(n @ (libc::ECONNABORTED | libc::EAGAIN | libc::EINTR)) => {
                    println!("aborted {}", errno_name(n));
                    continue;
                }
                _ => fail("accept", &e),
            }
        }
        // SAFETY: fd is the connected socket accept just returned, owned from here on.
        let mut conn = unsafe { TcpStream::from_raw_fd(fd) };
        let peer = conn.peer_addr().map(|p| p.to_string()).unwrap_or_default();
        println!("accepted {peer}");
        let _ = conn.write_all(b"220 sockexit forker\r\n");
        // A child forked meanwhile holds a copy of this fd: shut down, so the peer sees
        // the end now and not when the child exits.
        let _ = conn.shutdown(Shutdown::Both);
    }
}

fn forker(lfd: i32, kind: Kind, hold: u64, cap: usize) {
    let sleep = CString::new("/bin/sleep").expect("no NUL");
    let secs = CString::new(format!("{}.{:03}", hold / 1000, hold % 1000)).expect("no NUL");
    let argv = [sleep.as_ptr(), secs.as_ptr(), std::ptr::null()];
    let ts = libc::timespec {
        tv_sec: (hold / 1000) as libc::time_t,
        tv_nsec: ((hold % 1000) * 1_000_000) as libc::c_long,
    };
    let mut live = 0usize;
    let mut n = 0u64;
    loop {
        // SAFETY: waitpid with a null status pointer reaps any exited child of ours.
        while live > 0 && unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {
            live -= 1;
        }
        if live >= cap {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let mut p = libc::pollfd {
            fd: lfd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 100) };
        let exec = match kind {
            Kind::Sleep => false,
            Kind::Exec => true,
            Kind::Both => n % 2 == 1,
        };
        n += 1;
        // SAFETY: the child only calls async-signal-safe functions (nanosleep, execv,
        // _exit) on data prepared before the fork.
        match unsafe { libc::fork() } {
            0 => unsafe {
                if exec {
                    libc::execv(argv[0], argv.as_ptr());
                } else {
                    libc::nanosleep(&ts, std::ptr::null_mut());
                }
                libc::_exit(0)
            },
            pid if pid > 0 => {
                live += 1;
                if n == 1 {
                    println!("forking");
                }
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: fork_thread_server [--children sleep|exec|both] [--hold MS] [--cap N]");
    exit(2)
}
