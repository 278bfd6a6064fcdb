//! A multi-threaded program that forks while its threads make refused calls, to check
//! that no diagnostic path takes a lock a forked child can inherit held.
//!
//! Usage: `diag_fork_storm THREADS FORKS ADDR`
//!
//! THREADS threads `connect` to ADDR in a loop (the policy refuses it, so with
//! `SOCKEXIT_LOG=debug` each call logs a line) while the main thread forks FORKS
//! children, 1 ms apart. Each child makes one refused `connect` of its own (another
//! debug line) and `_exit(0)`s. The parent waits at most 20 s for all of them, kills
//! the rest, and prints one line: `exited N hung M`.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::raw_addr;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 3 {
        eprintln!("usage: diag_fork_storm THREADS FORKS ADDR");
        std::process::exit(2);
    }
    let threads: usize = a[0].parse().expect("THREADS");
    let forks: usize = a[1].parse().expect("FORKS");
    let addr: SocketAddr = a[2].parse().expect("ADDR");
    let stop = AtomicBool::new(false);
    let (exited, hung) = std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut pids = Vec::new();
        for _ in 0..forks {
            // SAFETY: fork in a multi-threaded program; the child only makes raw libc
            // calls (socket, connect, _exit), as POSIX allows after such a fork.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let (ss, len) = raw_addr(&addr);
                // SAFETY: plain libc calls with a valid sockaddr; _exit never returns.
                unsafe {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                    libc::connect(fd, &ss as *const _ as *const libc::sockaddr, len);
                    libc::_exit(0);
                }
            }
            assert!(pid > 0, "fork failed");
            pids.push(pid);
            std::thread::sleep(Duration::from_millis(1));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut exited = 0usize;
        while !pids.is_empty() && Instant::now() < deadline {
            pids.retain(|&p| {
                let mut st = 0;
                // SAFETY: waiting for our own child, without blocking.
                let r = unsafe { libc::waitpid(p, &mut st, libc::WNOHANG) };
                if r == p {
                    exited += 1;
                    false
                } else {
                    true
                }
            });
            std::thread::sleep(Duration::from_millis(10));
        }
        let hung = pids.len();
        for p in pids {
            // SAFETY: killing and reaping our own stuck child.
            unsafe {
                libc::kill(p, libc::SIGKILL);
                libc::waitpid(p, std::ptr::null_mut(), 0);
            }
        }
        stop.store(true, Ordering::Relaxed);
        (exited, hung)
    });
    println!("exited {exited} hung {hung}");
}
