//! A blocking banner server: `accept(2)`, write `220 sockexit banner\r\n`, close.
//!
//! Usage: `banner_server [ADDR | fd:N] [--max N] [--addr-buf LEN|null]`
//!
//! - `ADDR` (default `127.0.0.1:0`): where to listen, e.g. `127.0.0.1:2121` for the README
//!   demo; port 0 picks a free port. `fd:N` serves an already listening socket inherited
//!   as fd N (inetd/systemd style), so `accept` can be judged without `listen` being.
//! - `--max N`: exit after serving N connections (default: serve until killed).
//! - `--addr-buf LEN`: pass an address buffer of LEN bytes to `accept` (a short buffer
//!   must get `min(LEN, real)` bytes and the real length back, nothing written past
//!   LEN); `null` passes `accept(fd, NULL, NULL)`.
//!
//! Calls the plain `accept` symbol (not `accept4`) so that entry point is covered too.
//!
//! Stdout, one line each: `listening ADDR` once ready (or `error ERRNO-NAME ERRNO` if
//! the listening socket cannot be set up, exit code 1), `accepted PEER len=L guard=ok`
//! per connection (`PEER` is `family=F port=P` when the buffer was too short for the
//! whole address; `guard=overwritten` if accept wrote past the buffer), and
//! `served N` when `--max` is reached.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::exit;

mod common;
use common::fail;

const BANNER: &[u8] = b"220 sockexit banner\r\n";
/// Bytes of the receive area: more than any sockaddr, so overruns land in the guard.
const AREA: usize = 256;
const GUARD: u8 = 0xAA;

enum AddrBuf {
    Null,
    Len(usize),
}

fn main() {
    let mut where_ = "127.0.0.1:0".to_string();
    let mut max: Option<u64> = None;
    let mut buf = AddrBuf::Len(std::mem::size_of::<libc::sockaddr_storage>());
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
            "--addr-buf" => {
                buf = match args.next().as_deref() {
                    Some("null") => AddrBuf::Null,
                    Some(n) => match n.parse::<usize>() {
                        Ok(n) if n <= AREA / 2 => AddrBuf::Len(n),
                        _ => usage(),
                    },
                    None => usage(),
                }
            }
            s if s.starts_with('-') => usage(),
            s => where_ = s.to_string(),
        }
    }

    let listener = if let Some(fd) = where_.strip_prefix("fd:") {
        let fd: i32 = fd.parse().unwrap_or_else(|_| usage());
        // SAFETY: the caller handed us fd N as a listening socket we now own.
        unsafe { TcpListener::from_raw_fd(fd) }
    } else {
        let addr: SocketAddr = where_.parse().unwrap_or_else(|_| usage());
        match TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => fail("listen", &e),
        }
    };
    match listener.local_addr() {
        Ok(a) => println!("listening {a}"),
        Err(e) => fail("getsockname", &e),
    }

    let mut served = 0u64;
    while max.is_none_or(|m| served < m) {
        let mut area = [GUARD; AREA];
        let mut len: libc::socklen_t = match buf {
            AddrBuf::Len(n) => n as libc::socklen_t,
            AddrBuf::Null => 0,
        };
        let (addr_ptr, len_ptr) = match buf {
            AddrBuf::Null => (std::ptr::null_mut(), std::ptr::null_mut()),
            AddrBuf::Len(_) => (
                area.as_mut_ptr() as *mut libc::sockaddr,
                &mut len as *mut libc::socklen_t,
            ),
        };
        // SAFETY: addr_ptr/len_ptr are null together, or point at AREA writable bytes of
        // which len (<= AREA/2) are announced.
        let fd = unsafe { libc::accept(listener.as_raw_fd(), addr_ptr, len_ptr) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::ECONNABORTED) => continue,
                _ => fail("accept", &e),
            }
        }
        // SAFETY: fd is a connected socket accept just gave us.
        let mut conn = unsafe { TcpStream::from_raw_fd(fd) };
        match buf {
            AddrBuf::Null => println!("accepted (null)"),
            AddrBuf::Len(n) => {
                let guard = if area[n..].iter().all(|&b| b == GUARD) {
                    "ok"
                } else {
                    "overwritten"
                };
                println!(
                    "accepted {} len={len} guard={guard}",
                    describe(&area[..n], len)
                );
            }
        }
        // A peer may already have gone; that is its business, not a server failure.
        let _ = conn.write_all(BANNER);
        drop(conn);
        served += 1;
    }
    println!("served {served}");
}

/// The peer address in `bytes` (what accept copied into a buffer of that size), as
/// far as the bytes go.
fn describe(bytes: &[u8], real_len: libc::socklen_t) -> String {
    if bytes.len() < 2 {
        return "family=? port=?".into();
    }
    let family = u16::from_ne_bytes([bytes[0], bytes[1]]) as i32;
    let port = (bytes.len() >= 4).then(|| u16::from_be_bytes([bytes[2], bytes[3]]));
    let whole = bytes.len() >= real_len as usize;
    match (family, port, whole) {
        (libc::AF_INET, Some(p), true) if bytes.len() >= 8 => {
            let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            SocketAddr::from((ip, p)).to_string()
        }
        (libc::AF_INET6, Some(p), true) if bytes.len() >= 24 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&bytes[8..24]);
            SocketAddr::from((Ipv6Addr::from(o), p)).to_string()
        }
        (f, Some(p), _) => format!("family={f} port={p}"),
        (f, None, _) => format!("family={f} port=?"),
    }
}

fn usage() -> ! {
    eprintln!("usage: banner_server [ADDR | fd:N] [--max N] [--addr-buf LEN|null]");
    exit(2)
}
