//! Test peers: TCP connections made by the (unpreloaded) test process from a chosen
//! source address, and what they received.

use super::sample::raw_addr;
use super::IO;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;

/// How a peer's conversation ended.
#[derive(Debug)]
pub enum End {
    Eof,
    Reset,
    TimedOut,
    Failed(std::io::Error),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Eof => f.write_str("EOF"),
            End::Reset => f.write_str("reset"),
            End::TimedOut => write!(f, "{IO:?} of silence"),
            End::Failed(e) => write!(f, "error: {e}"),
        }
    }
}

/// What a peer received.
#[derive(Debug)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub end: End,
    /// The peer's own address (to match against what the server printed).
    pub local: Option<SocketAddr>,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes {:?} then {} (peer {:?})",
            self.bytes.len(),
            self.bytes.escape_ascii().to_string(),
            self.end,
            self.local
        )
    }
}

/// A TCP connection from `src` (port 0) to `dst`, connect bounded by [`IO`].
pub fn connect_from(src: IpAddr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let family = if dst.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) takes plain integers.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own; the stream closes it on every path.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let (sa, len) = raw_addr(&SocketAddr::new(src, 0));
    // SAFETY: sa holds a sockaddr of len bytes and outlives the call.
    if unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_storage).cast(), len) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (sa, len) = raw_addr(&dst);
    // SAFETY: as above.
    if unsafe { libc::connect(fd, (&sa as *const libc::sockaddr_storage).cast(), len) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, IO.as_millis() as i32) };
        if n <= 0 {
            return Err(std::io::Error::from(ErrorKind::TimedOut));
        }
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Connects from `src` to `dst`, optionally sends `send` and half-closes, then reads
/// until EOF, reset or [`IO`] of silence.
pub fn talk(src: IpAddr, dst: SocketAddr, send: Option<&[u8]>) -> Reply {
    let mut stream = match connect_from(src, dst) {
        Ok(s) => s,
        Err(e) => {
            // The handshake completed, but a refusing hook reset the connection before
            // the peer got round to checking SO_ERROR: a reset with zero bytes.
            let end = if e.kind() == ErrorKind::ConnectionReset {
                End::Reset
            } else {
                End::Failed(e)
            };
            return Reply {
                bytes: Vec::new(),
                end,
                local: None,
            };
        }
    };
    let local = stream.local_addr().ok();
    let mut bytes = Vec::new();
    if let Some(data) = send {
        // A refused peer may already have been reset: that shows up in the read.
        if stream.write_all(data).is_ok() {
            let _ = stream.shutdown(Shutdown::Write);
        }
    }
    let _ = stream.set_read_timeout(Some(IO));
    let mut buf = [0u8; 4096];
    let end = loop {
        match stream.read(&mut buf) {
            Ok(0) => break End::Eof,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break End::Reset,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break End::TimedOut
            }
            Err(e) => break End::Failed(e),
        }
    };
    Reply { bytes, end, local }
}

/// The peer got exactly `expected` and then an orderly close.
pub fn assert_served(r: &Reply, expected: &[u8], what: &str) {
    assert!(
        matches!(r.end, End::Eof) && r.bytes == expected,
        "{what}: expected {:?} then EOF, got {r}",
        expected.escape_ascii().to_string()
    );
}

/// The peer was connected (the kernel completes the handshake) and then got not a
/// single byte: EOF or reset.
pub fn assert_refused(r: &Reply, what: &str) {
    assert!(
        r.bytes.is_empty() && matches!(r.end, End::Eof | End::Reset),
        "{what}: expected 0 bytes then EOF/reset, got {r}"
    );
}

/// `addr` with its IP replaced (to reach a `[::]` server over 127.0.0.1 or ::1).
pub fn via(ip: IpAddr, addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(ip, addr.port())
}
