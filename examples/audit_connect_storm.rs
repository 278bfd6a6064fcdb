//! Many threads making many `connect(2)` calls at once, to check that concurrent audit
//! lines never interleave.
//!
//! Usage: `audit_connect_storm THREADS PER_THREAD ADDR`
//!
//! Each thread connects a fresh TCP socket to ADDR PER_THREAD times. Stdout, one line:
//! `eacces N other M` (how many attempts failed with EACCES, and how many did not).

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 3 {
        eprintln!("usage: audit_connect_storm THREADS PER_THREAD ADDR");
        std::process::exit(2);
    }
    let threads: usize = a[0].parse().expect("THREADS");
    let per: usize = a[1].parse().expect("PER_THREAD");
    let addr: SocketAddr = a[2].parse().expect("ADDR");
    let eacces = AtomicUsize::new(0);
    let other = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per {
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                            eacces.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
    });
    println!(
        "eacces {} other {}",
        eacces.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed)
    );
}
