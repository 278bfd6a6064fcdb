//! A thread-per-connection echo server: each connection gets its own thread, which
//! writes `220 sockexit threaded\r\n` and then echoes what the peer sends until EOF.
//!
//! Usage: `threaded_server [ADDR] [--max N]`
//!
//! - `ADDR` (default `127.0.0.1:0`): where to listen; port 0 picks a free port.
//! - `--max N`: stop accepting after N connections, wait for their threads, exit.
//!
//! Accepts with std's `TcpListener::accept` (`accept4` with `SOCK_CLOEXEC` underneath).
//! Stdout: `listening ADDR` once ready (or `error ERRNO-NAME ERRNO`, exit code 1),
//! `accepted PEER` per connection, `served N` when `--max` is reached.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::exit;
use std::time::Duration;

mod common;
use common::fail;

const GREETING: &[u8] = b"220 sockexit threaded\r\n";
/// An idle peer must not pin a thread forever.
const IDLE: Duration = Duration::from_secs(10);

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

    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => fail("listen", &e),
    };
    match listener.local_addr() {
        Ok(a) => println!("listening {a}"),
        Err(e) => fail("getsockname", &e),
    }

    let mut workers = Vec::new();
    let mut served = 0u64;
    while max.is_none_or(|m| served < m) {
        let (conn, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::ECONNABORTED) => continue,
                _ => fail("accept", &e),
            },
        };
        println!("accepted {peer}");
        workers.push(std::thread::spawn(move || serve(conn)));
        served += 1;
        // Without --max the list would only grow; finished threads need no joining.
        if max.is_none() {
            workers.retain(|w| !w.is_finished());
        }
    }
    for w in workers {
        let _ = w.join();
    }
    println!("served {served}");
}

fn serve(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(IDLE));
    if conn.write_all(GREETING).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: threaded_server [ADDR] [--max N]");
    exit(2)
}
