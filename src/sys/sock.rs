//! Socket options and the few socket calls the hooks make themselves (socket(7),
//! tcp(7), poll(2)); all on the cold path except where a function says otherwise.

use super::{c_int, socklen_t};
use std::mem;
use std::time::Duration;

/// An `int` socket option via `getsockopt(2)`.
fn int_option(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let mut v: c_int = 0;
    let mut l = mem::size_of::<c_int>() as socklen_t;
    syscall!(getsockopt(
        fd,
        level,
        name,
        &mut v as *mut c_int as *mut libc::c_void,
        &mut l
    ))
    .ok()?;
    Some(v)
}

/// `SO_TYPE` (socket(7)): `SOCK_STREAM`, `SOCK_DGRAM`, ...
pub fn socket_type(fd: c_int) -> Option<c_int> {
    int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE)
}

/// `SO_PROTOCOL` (socket(7)): `IPPROTO_TCP` for TCP (SCTP and MPTCP are stream
/// sockets too, with other packet layouts).
pub fn socket_protocol(fd: c_int) -> Option<c_int> {
    int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)
}

/// `IPV6_V6ONLY` (ipv6(7)) of an `AF_INET6` socket; `false` when it cannot be read.
pub fn v6_only(fd: c_int) -> bool {
    int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).is_some_and(|v| v != 0)
}
/// The socket's address family via `getsockopt(SO_DOMAIN)` (socket(7)).
pub fn socket_domain(fd: c_int) -> Option<c_int> {
    int_option(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
}

/// Reset and close a connection we refuse, with zero bytes sent.
///
/// `SO_LINGER {on, 0}` then `close(2)` makes the kernel send RST and discard anything
/// queued, but only when the last descriptor of the socket closes: if another thread
/// `fork()`ed since the accept, the child holds a copy and the connection would stay
/// open in it. So first `connect(AF_UNSPEC)` (`tcp_disconnect`): it resets the
/// connection itself, whoever else holds a descriptor for it.
pub fn reset_and_close(fd: c_int) {
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = syscall!(setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_LINGER,
        &lg as *const libc::linger as *const libc::c_void,
        mem::size_of::<libc::linger>() as socklen_t
    ));
    let unspec = libc::sockaddr {
        sa_family: libc::AF_UNSPEC as libc::sa_family_t,
        sa_data: [0; 14],
    };
    // SAFETY: a valid AF_UNSPEC address of its full size; the real connect, never our
    // own hook.
    let _ =
        unsafe { super::real::connect(fd, &unspec, mem::size_of::<libc::sockaddr>() as socklen_t) };
    let _ = syscall!(close(fd));
}

/// Whether a connection is waiting on listening socket `fd` right now (`poll(2)` with
/// a zero timeout): what decides, after a refusal, whether the hook may accept again
/// without blocking longer than the real call would have.
pub fn pending(fd: c_int) -> bool {
    wait_readable(fd, 0) == Wait::Ready
}

/// Outcome of [`wait_readable`].
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    Ready,
    TimedOut,
    /// `poll` failed (`EINTR`: a signal; errno is left as poll set it).
    Failed,
}

/// `poll(2)` for `POLLIN` on `fd` for up to `ms` milliseconds (`-1`: no limit).
pub fn wait_readable(fd: c_int, ms: c_int) -> Wait {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    match syscall!(poll(&mut p, 1, ms)) {
        Ok(0) => Wait::TimedOut,
        Ok(_) => Wait::Ready,
        Err(_) => Wait::Failed,
    }
}

/// Whether the open file description has `O_NONBLOCK` (fcntl(2) `F_GETFL`).
pub fn nonblocking(fd: c_int) -> bool {
    syscall!(fcntl(fd, libc::F_GETFL)).is_ok_and(|f| f & libc::O_NONBLOCK != 0)
}

/// `SO_RCVTIMEO` (socket(7)), which also bounds a blocking accept; `None` when unset.
pub fn receive_timeout(fd: c_int) -> Option<Duration> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut l = mem::size_of::<libc::timeval>() as socklen_t;
    syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_RCVTIMEO,
        &mut tv as *mut libc::timeval as *mut libc::c_void,
        &mut l
    ))
    .ok()?;
    let d = Duration::new(tv.tv_sec.max(0) as u64, (tv.tv_usec.max(0) as u32) * 1000);
    (!d.is_zero()).then_some(d)
}

/// Bind an unbound socket to an ephemeral port on `addr` (port 0), as `listen(2)`
/// would autobind it: so the port a listen is judged on is the one it listens on.
pub fn bind_ephemeral(fd: c_int, addr: std::net::SocketAddr) -> bool {
    let mut buf = super::PeerBuf::new();
    let len = match addr {
        std::net::SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { (buf.as_mut_ptr() as *mut libc::sockaddr_in).write(sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { (buf.as_mut_ptr() as *mut libc::sockaddr_in6).write(sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    syscall!(bind(fd, buf.as_mut_ptr(), len as socklen_t)).is_ok()
}

/// Turn `IP_BIND_ADDRESS_NO_PORT` off, so a bind to port 0 picks the port now.
pub fn bind_port_now(fd: c_int) {
    let off: c_int = 0;
    let _ = syscall!(setsockopt(
        fd,
        libc::IPPROTO_IP,
        libc::IP_BIND_ADDRESS_NO_PORT,
        &off as *const c_int as *const libc::c_void,
        mem::size_of::<c_int>() as socklen_t
    ));
}
