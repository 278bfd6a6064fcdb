//! Test peers (this process, never preloaded): TCP clients bound to a chosen loopback
//! source address — 127.0.0.1 allowed, 127.0.0.2 refused by the tests' policies — and
//! what they received, with how long the conversation took. Every wait is bounded.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The allowed peer.
pub const LO: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// The refused peer.
pub const DOT2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Upper bound on a peer's connect and on its silence while reading.
pub const IO: Duration = Duration::from_secs(5);

/// How a peer's conversation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Eof,
    Reset,
    /// The server held the connection open, silent, for the whole wait.
    TimedOut,
    /// connect or read failed otherwise (e.g. ECONNREFUSED).
    Failed(ErrorKind),
}

/// What a peer received.
#[derive(Debug)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub end: End,
    /// From the start of connect to the end of the conversation.
    pub took: Duration,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes {:?} then {:?} after {} ms",
            self.bytes.len(),
            self.bytes.escape_ascii().to_string(),
            self.end,
            self.took.as_millis()
        )
    }
}

impl Reply {
    /// Exactly `expected`, then an orderly close.
    pub fn served(&self, expected: &[u8]) -> bool {
        self.end == End::Eof && self.bytes == expected
    }
    /// Connected (the kernel completes the handshake), then not one byte: EOF or reset.
    pub fn refused(&self) -> bool {
        self.bytes.is_empty() && matches!(self.end, End::Eof | End::Reset)
    }
}

/// A TCP connection from `src` (port chosen by the kernel) to `dst`, bounded by [`IO`].
pub fn connect_from(src: Ipv4Addr, dst: SocketAddrV4) -> io::Result<TcpStream> {
    // SAFETY: socket(2) takes plain integers.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket owned from here on; the stream closes it.
    let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let sin = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let local = sin(SocketAddrV4::new(src, 0));
    // SAFETY: `local` is a valid sockaddr_in of `len` bytes.
    if unsafe { libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let remote = sin(dst);
    // SAFETY: as above.
    if unsafe { libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, IO.as_millis() as i32) } <= 0 {
            return Err(ErrorKind::TimedOut.into());
        }
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(IO))?;
    Ok(stream)
}

/// Connects from `src` to `dst`, sends `send` (if any, without closing), then reads
/// until EOF, reset, `want` bytes, or `wait` of silence.
pub fn talk_for(
    src: Ipv4Addr,
    dst: SocketAddrV4,
    send: &[u8],
    want: Option<usize>,
    wait: Duration,
) -> Reply {
    let t0 = Instant::now();
    let mut s = match connect_from(src, dst) {
        Ok(s) => s,
        // The refusing hook's reset can land before connect() returns: 0 bytes. A FIN
        // then a reset (a shutdown before the reset) reads as EPIPE there.
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
            return Reply {
                bytes: Vec::new(),
                end: End::Reset,
                took: t0.elapsed(),
            }
        }
        Err(e) => {
            return Reply {
                bytes: Vec::new(),
                end: End::Failed(e.kind()),
                took: t0.elapsed(),
            }
        }
    };
    // A refused peer may already have been reset: that shows in the read.
    let _ = s.write_all(send);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if want.is_some_and(|n| bytes.len() >= n) {
            break End::Eof;
        }
        let _ = s.set_read_timeout(Some(wait));
        match s.read(&mut buf) {
            Ok(0) => break End::Eof,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                break End::Reset
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break End::TimedOut
            }
            Err(e) => break End::Failed(e.kind()),
        }
    };
    let _ = s.shutdown(Shutdown::Both);
    Reply {
        bytes,
        end,
        took: t0.elapsed(),
    }
}

/// [`talk_for`] sending nothing, reading to the end with [`IO`] of patience.
pub fn talk(src: Ipv4Addr, dst: SocketAddrV4) -> Reply {
    talk_for(src, dst, b"", None, IO)
}

/// Panics unless `r` is `expected` then EOF.
pub fn assert_served(r: &Reply, expected: &[u8], what: &str) {
    assert!(
        r.served(expected),
        "{what}: expected {:?} then EOF, got {r}",
        expected.escape_ascii().to_string()
    );
}

/// Panics unless `r` got 0 bytes and then EOF or reset.
pub fn assert_refused(r: &Reply, what: &str) {
    assert!(
        r.refused(),
        "{what}: expected 0 bytes then EOF/reset, got {r}"
    );
}
