//! A client that retries refused connects, as a redis replica or a cron job does.
//!
//! Usage: `audit_retry_client ADDR*N [ADDR*N ...]`
//!
//! For each argument in turn, `connect`s a fresh TCP socket to ADDR N times, then
//! exits normally (through `exit`, so the library's destructor runs). Stdout, one
//! line: `eacces N other M`.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn main() {
    let (mut eacces, mut other) = (0, 0);
    for a in std::env::args().skip(1) {
        let (addr, n) = a.split_once('*').unwrap_or_else(|| {
            eprintln!("usage: audit_retry_client ADDR*N [ADDR*N ...]");
            std::process::exit(2)
        });
        let addr: SocketAddr = addr.parse().expect("ADDR");
        let n: usize = n.parse().expect("N");
        for _ in 0..n {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => eacces += 1,
                _ => other += 1,
            }
        }
    }
    println!("eacces {eacces} other {other}");
}
