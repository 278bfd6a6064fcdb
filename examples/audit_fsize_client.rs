//! Refused connects while the file size limit makes the audit log's writes short, as
//! a full disk does at its last free block.
//!
//! Usage: `audit_fsize_client LIMIT BEFORE AFTER IP`
//!
//! Ignores SIGXFSZ, sets `RLIMIT_FSIZE` to LIMIT bytes, makes BEFORE `connect`s to
//! IP on ports 1001, 1002, ... (each a different destination, so each is a line of
//! its own), lifts the limit again ("space freed"), makes AFTER more on the next
//! ports, and prints `eacces N other M`. The service must keep working throughout.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

fn set_fsize(limit: libc::rlim_t) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_FSIZE, &mut r);
        r.rlim_cur = limit.min(r.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &r), 0, "setrlimit");
    }
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 4 {
        eprintln!("usage: audit_fsize_client LIMIT BEFORE AFTER IP");
        std::process::exit(2);
    }
    let limit: libc::rlim_t = a[0].parse().expect("LIMIT");
    let before: u16 = a[1].parse().expect("BEFORE");
    let after: u16 = a[2].parse().expect("AFTER");
    let ip: IpAddr = a[3].parse().expect("IP");
    // SAFETY: setting a signal disposition to SIG_IGN.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let (mut eacces, mut other) = (0, 0);
    let mut attempt = |port: u16| match TcpStream::connect_timeout(
        &SocketAddr::new(ip, port),
        Duration::from_secs(2),
    ) {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => eacces += 1,
        _ => other += 1,
    };
    set_fsize(limit);
    for i in 0..before {
        attempt(1001 + i);
    }
    set_fsize(libc::RLIM_INFINITY);
    for i in 0..after {
        attempt(1001 + before + i);
    }
    println!("eacces {eacces} other {other}");
}
