//! Every unsafe call of the supervisor: the seccomp filter, the notification
//! ioctls, pidfds, the target's memory, and the socket calls on duplicates.
//! Everything above this module is safe code.
#![allow(unsafe_code)]

use sockexit_engine::bpf::SockFilter;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

// <linux/seccomp.h>
const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_uint = 1 << 3;
const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const NOTIF_SEND: libc::c_ulong = 0xc018_2101;
const NOTIF_ID_VALID: libc::c_ulong = 0x4008_2102;
const NOTIF_ADDFD: libc::c_ulong = 0x4018_2103;
const ADDFD_FLAG_SEND: u32 = 1 << 1;
/// `SECCOMP_USER_NOTIF_FLAG_CONTINUE`.
pub const FLAG_CONTINUE: u32 = 1;
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

#[repr(C)]
#[derive(Default)]
struct SeccompData {
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

#[repr(C)]
#[derive(Default)]
struct RawNotif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}

#[repr(C)]
struct RawResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

#[repr(C)]
struct RawAddfd {
    id: u64,
    flags: u32,
    srcfd: u32,
    newfd: u32,
    newfd_flags: u32,
}

/// One notification.
#[derive(Debug, Clone, Copy)]
pub struct Notif {
    /// Cookie for the answer.
    pub id: u64,
    /// Thread id of the caller (in the supervisor's pid namespace).
    pub pid: u32,
    /// System call number.
    pub nr: i32,
    /// Its arguments.
    pub args: [u64; 6],
}

/// In the child between fork and exec (async-signal-safe: raw system calls only):
/// no_new_privs, the filter with a listener, the listener sent over `sock`.
pub fn install_filter_and_send(prog: &[SockFilter], sock: RawFd) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: plain prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } as libc::c_long)?;
    // SAFETY: SockFilter is repr(C) as struct sock_filter; fprog points at `prog`,
    // alive for the call.
    let lfd = cvt(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        )
    })? as RawFd;
    let r = send_fd(sock, lfd);
    // SAFETY: lfd was just returned to us and is owned here.
    unsafe { libc::close(lfd) };
    r
}

fn send_fd(sock: RawFd, fd: RawFd) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain data; every pointer below refers to locals alive for
    // the sendmsg call, and the cmsg macros stay within cbuf (32 bytes ≥ CMSG_SPACE(4)).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        cvt(libc::sendmsg(sock, &msg, 0) as libc::c_long)?;
    }
    Ok(())
}

/// The fd sent by [`install_filter_and_send`].
pub fn recv_fd(sock: &OwnedFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: as in send_fd; the received fd is checked before it is owned.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        cvt(n as libc::c_long)?;
        let c = libc::CMSG_FIRSTHDR(&msg);
        if n == 0 || c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::other(
                "the child sent no seccomp listener (its filter could not be installed)",
            ));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// An AF_UNIX SOCK_SEQPACKET pair, close-on-exec.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } as libc::c_long)?;
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Wait for the next notification. `Ok(None)`: no process uses the filter anymore.
pub fn notif_recv(lfd: &OwnedFd) -> io::Result<Option<Notif>> {
    loop {
        let mut p = libc::pollfd {
            fd: lfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, -1) };
        if r < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(io::Error::last_os_error());
        }
        if p.revents & libc::POLLIN == 0 && p.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            return Ok(None);
        }
        let mut n = RawNotif::default();
        // SAFETY: n is a zeroed struct seccomp_notif of the size the ioctl encodes.
        let r = unsafe { libc::ioctl(lfd.as_raw_fd(), NOTIF_RECV, &mut n as *mut RawNotif) };
        if r < 0 {
            match errno() {
                // The caller was interrupted or killed before we read it.
                libc::ENOENT | libc::EINTR => continue,
                _ => return Err(io::Error::last_os_error()),
            }
        }
        return Ok(Some(Notif {
            id: n.id,
            pid: n.pid,
            nr: n.data.nr,
            args: n.data.args,
        }));
    }
}

/// Answer: `Ok(val)` or `Err(errno)`, or let the kernel run the call (`continue`).
pub fn notif_send(lfd: &OwnedFd, id: u64, res: Result<i64, i32>, cont: bool) {
    let (val, error) = match res {
        Ok(v) => (v, 0),
        Err(e) => (0, -e),
    };
    let r = RawResp {
        id,
        val: if cont { 0 } else { val },
        error: if cont { 0 } else { error },
        flags: if cont { FLAG_CONTINUE } else { 0 },
    };
    // SAFETY: r is a struct seccomp_notif_resp; ENOENT (caller gone) is fine.
    unsafe { libc::ioctl(lfd.as_raw_fd(), NOTIF_SEND, &r as *const RawResp) };
}

/// Whether notification `id` is still pending (its caller alive, not interrupted).
pub fn notif_id_valid(lfd: &OwnedFd, id: u64) -> bool {
    // SAFETY: the ioctl reads one u64.
    unsafe { libc::ioctl(lfd.as_raw_fd(), NOTIF_ID_VALID, &id as *const u64) == 0 }
}

/// Install `src` in the caller as the system call's result (`ADDFD_FLAG_SEND`).
pub fn notif_addfd_send(lfd: &OwnedFd, id: u64, src: &OwnedFd, cloexec: bool) -> io::Result<i64> {
    let a = RawAddfd {
        id,
        flags: ADDFD_FLAG_SEND,
        srcfd: src.as_raw_fd() as u32,
        newfd: 0,
        newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
    };
    // SAFETY: a is a struct seccomp_notif_addfd.
    let r = unsafe { libc::ioctl(lfd.as_raw_fd(), NOTIF_ADDFD, &a as *const RawAddfd) };
    cvt(r as libc::c_long)
}

/// A pidfd for thread `tid` (PIDFD_THREAD, Linux 6.9), else for its thread group
/// (`tgid()` is asked only then).
pub fn pidfd_open(tid: u32, tgid: impl FnOnce() -> u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, tid as libc::pid_t, PIDFD_THREAD) };
    let r = if r < 0 {
        let g = tgid();
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_pidfd_open, g as libc::pid_t, 0) }
    } else {
        r
    };
    // SAFETY: a new fd owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(cvt(r)? as RawFd) })
}

/// A duplicate of the target's fd `fd` (same open file description).
pub fn pidfd_getfd(pidfd: &OwnedFd, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes a pidfd, a target fd number and flags 0.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    // SAFETY: a new fd owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(cvt(r)? as RawFd) })
}

/// Read the target's memory at `addr` into `buf`; the whole of it or an error.
pub fn read_mem(pid: u32, addr: u64, buf: &mut [u8]) -> Result<(), i32> {
    if buf.is_empty() {
        return Ok(());
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: local describes `buf`; the remote side is read by the kernel in the
    // target's address space, never dereferenced here.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n < 0 {
        Err(errno())
    } else if n as usize != buf.len() {
        Err(libc::EFAULT)
    } else {
        Ok(())
    }
}

/// Write `data` into the target's memory at `addr`.
pub fn write_mem(pid: u32, addr: u64, data: &[u8]) -> Result<(), i32> {
    if data.is_empty() {
        return Ok(());
    }
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: as in read_mem; the kernel writes the target, never our memory.
    let n = unsafe { libc::process_vm_writev(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n < 0 {
        Err(errno())
    } else if n as usize != data.len() {
        Err(libc::EFAULT)
    } else {
        Ok(())
    }
}

fn getsockopt_int(fd: &OwnedFd, level: i32, name: i32) -> Option<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid out-parameters of the right size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(v)
}

/// `SO_DOMAIN` (`None`: not a socket).
pub fn domain(fd: &OwnedFd) -> Option<i32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
}

/// `IPV6_V6ONLY` on an AF_INET6 socket.
pub fn v6only(fd: &OwnedFd) -> bool {
    getsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).is_some_and(|v| v != 0)
}

/// `SO_RCVTIMEO`, `None` when unset.
pub fn rcvtimeo(fd: &OwnedFd) -> Option<std::time::Duration> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: tv and len are valid out-parameters.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&mut tv as *mut libc::timeval).cast(),
            &mut len,
        )
    };
    if r != 0 || (tv.tv_sec == 0 && tv.tv_usec == 0) {
        return None;
    }
    Some(std::time::Duration::new(
        tv.tv_sec as u64,
        tv.tv_usec as u32 * 1000,
    ))
}

/// `getsockname`, raw bytes of the address.
pub fn getsockname(fd: &OwnedFd) -> Option<Vec<u8>> {
    let mut ss = [0u8; 128];
    let mut len = ss.len() as libc::socklen_t;
    // SAFETY: ss/len describe a 128-byte buffer.
    let r = unsafe { libc::getsockname(fd.as_raw_fd(), ss.as_mut_ptr().cast(), &mut len) };
    (r == 0).then(|| ss[..(len as usize).min(128)].to_vec())
}

/// Whether the file description is non-blocking.
/// Set or clear `O_NONBLOCK` (a stashed connection handed to a caller whose
/// `accept4` flags differ from the first caller's).
pub fn set_nonblocking(fd: &OwnedFd, on: bool) {
    // SAFETY: F_GETFL/F_SETFL on a valid fd we own.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if fl >= 0 {
            let want = if on {
                fl | libc::O_NONBLOCK
            } else {
                fl & !libc::O_NONBLOCK
            };
            if want != fl {
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, want);
            }
        }
    }
}

pub fn nonblocking(fd: &OwnedFd) -> bool {
    // SAFETY: F_GETFL on a valid fd.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    fl >= 0 && fl & libc::O_NONBLOCK != 0
}

/// `connect(fd, addr)`: `Ok(0)` or the errno (EINPROGRESS included).
pub fn connect(fd: &OwnedFd, addr: &[u8]) -> Result<i64, i32> {
    // SAFETY: addr is a readable buffer of the length given.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            addr.as_ptr().cast(),
            addr.len() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(0)
    }
}

/// `listen(fd, backlog)`.
pub fn listen(fd: &OwnedFd, backlog: i32) -> Result<i64, i32> {
    // SAFETY: plain call on a valid fd.
    if unsafe { libc::listen(fd.as_raw_fd(), backlog) } < 0 {
        Err(errno())
    } else {
        Ok(0)
    }
}

/// `accept4(fd, flags)`: the new connection and its peer's raw address.
pub fn accept4(fd: &OwnedFd, flags: i32) -> Result<(OwnedFd, Vec<u8>), i32> {
    let mut ss = [0u8; 128];
    let mut len = ss.len() as libc::socklen_t;
    // SAFETY: ss/len describe a 128-byte buffer.
    let r = unsafe { libc::accept4(fd.as_raw_fd(), ss.as_mut_ptr().cast(), &mut len, flags) };
    if r < 0 {
        return Err(errno());
    }
    // SAFETY: a new fd owned here.
    let c = unsafe { OwnedFd::from_raw_fd(r) };
    Ok((c, ss[..(len as usize).min(128)].to_vec()))
}

/// Reset a refused connection: SO_LINGER 0, then close (an RST, zero bytes sent).
pub fn reset_and_close(c: OwnedFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: l is a valid struct linger for the call.
    unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    drop(c);
}

/// Wait up to `ms` for `fd` to be readable (-1: forever).
pub fn readable(fd: &OwnedFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 && p.revents & libc::POLLIN != 0 }
}

/// `sendmsg` of one flat buffer to an optional raw address.
pub fn send_flat(fd: &OwnedFd, buf: &[u8], flags: i32, name: Option<&[u8]>) -> Result<i64, i32> {
    let (p, l) = match name {
        Some(n) => (n.as_ptr(), n.len()),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: buf and the name are valid for their lengths (null/0 for no name).
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            flags | libc::MSG_NOSIGNAL,
            p.cast(),
            l as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as i64)
    }
}

/// Signals forwarded to the child.
pub const FORWARDED: [i32; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

fn forwarded_set() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for sig in FORWARDED {
            libc::sigaddset(&mut s, sig);
        }
        s
    }
}

/// Block the forwarded signals in this thread (and the threads it starts).
pub fn block_forwarded() {
    let s = forwarded_set();
    // SAFETY: s is a valid sigset.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut()) };
}

/// In the child before exec: an empty signal mask.
pub fn unblock_all() {
    // SAFETY: sigset manipulation on a local; async-signal-safe.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        libc::pthread_sigmask(libc::SIG_SETMASK, &s, std::ptr::null_mut());
    }
}

/// Wait for one of the forwarded signals.
pub fn wait_forwarded() -> i32 {
    let s = forwarded_set();
    let mut sig = 0;
    // SAFETY: s and sig are valid.
    unsafe { libc::sigwait(&s, &mut sig) };
    sig
}

/// `kill(pid, sig)`.
pub fn kill(pid: u32, sig: i32) {
    // SAFETY: plain call.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Make `cmd`'s child install the filter and send its listener over `sock` before
/// it execs (the socket is close-on-exec; dropping `cmd` closes our copy).
pub fn filter_before_exec(cmd: &mut std::process::Command, prog: Vec<SockFilter>, sock: OwnedFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only makes raw,
    // async-signal-safe system calls (sigprocmask, prctl, seccomp, sendmsg, close);
    // it reads `prog` and `sock`, moved into it, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            unblock_all();
            install_filter_and_send(&prog, sock.as_raw_fd())
        });
    }
}

/// Instructions of the classic socket filter attached to `fd` (0: none).
pub fn attached_filter_len(fd: &OwnedFd) -> Option<u32> {
    let mut len: libc::socklen_t = 0;
    // SAFETY: optlen 0 asks only for the count (SO_GET_FILTER); no buffer is written.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::null_mut(),
            &mut len,
        )
    };
    (r == 0).then_some(len)
}

/// `SO_ATTACH_FILTER` of `prog` on the socket (shared with the target: same socket).
pub fn attach_filter(fd: &OwnedFd, prog: &[SockFilter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: SockFilter is repr(C) as struct sock_filter; fprog is valid for the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    cvt(r as libc::c_long).map(|_| ())
}

/// `SO_TYPE` and `SO_PROTOCOL`.
pub fn type_and_protocol(fd: &OwnedFd) -> (Option<i32>, Option<i32>) {
    (
        getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE),
        getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL),
    )
}

/// `(st_dev, st_ino)` of the file `fd` refers to (a socket's inode).
pub fn inode(fd: &OwnedFd) -> Option<(u64, u64)> {
    // SAFETY: st is a valid out-parameter for fstat.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd.as_raw_fd(), &mut st) == 0).then_some((st.st_dev, st.st_ino))
    }
}

/// `bind(fd, addr)` with a raw sockaddr.
pub fn bind(fd: &OwnedFd, addr: &[u8]) -> Result<(), i32> {
    // SAFETY: addr is a readable buffer of the length given.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            addr.as_ptr().cast(),
            addr.len() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Turn `IP_BIND_ADDRESS_NO_PORT` off, so a bind to port 0 picks the port now.
pub fn bind_port_now(fd: &OwnedFd) {
    let off: libc::c_int = 0;
    // SAFETY: off is a valid int option value.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&off as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// Map the published generation file (one page, checked by the engine's
/// `Publication::open`) read-only and shared, and return its u64 words (the
/// generation `sockexit apply` bumps, the dynamic-set revision `sockexit set` bumps,
/// each with an atomic store through its own shared mapping). Never unmapped, so the
/// words live as long as the supervisor.
pub fn map_words(
    file: &std::fs::File,
    len: usize,
) -> Option<&'static [std::sync::atomic::AtomicU64]> {
    if len == 0 || !len.is_multiple_of(8) {
        return None;
    }
    // SAFETY: a fresh shared read-only mapping of an open regular file of `len`
    // bytes; checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: a page-aligned mapping of `len` bytes, never unmapped, seen as len / 8
    // AtomicU64 (the layout of u64).
    Some(unsafe { std::slice::from_raw_parts(p as *const std::sync::atomic::AtomicU64, len / 8) })
}

/// `PR_SET_CHILD_SUBREAPER`: orphans of the supervised tree (daemons that fork
/// twice) are re-parented to us, so they stay in the tree the reload walk follows.
pub fn set_subreaper() -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } as libc::c_long)
        .map(|_| ())
}

/// Wait for any child: its pid and exit code (128 + N when killed by signal N);
/// `None` when there is no child to wait for.
pub fn wait_any() -> Option<(u32, u8)> {
    loop {
        let mut st = 0;
        // SAFETY: st is a valid out-parameter.
        let pid = unsafe { libc::waitpid(-1, &mut st, 0) };
        if pid < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return None;
        }
        let code = if libc::WIFEXITED(st) {
            libc::WEXITSTATUS(st) as u8
        } else {
            128u8.wrapping_add(libc::WTERMSIG(st) as u8)
        };
        return Some((pid as u32, code));
    }
}

/// `setsockopt(fd, SOL_SOCKET, name, &val, 4)`: `Ok(0)` or the errno.
pub fn setsockopt_int(fd: &OwnedFd, name: i32, val: i32) -> Result<i64, i32> {
    // SAFETY: val is a valid int option value for the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(0)
    }
}

/// `SO_ACCEPTCONN`: the socket is listening.
pub fn accepting(fd: &OwnedFd) -> bool {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).is_some_and(|v| v != 0)
}

/// Our own fd `raw` if it is inherited across exec (no `FD_CLOEXEC`): a duplicate
/// of it, close-on-exec, to look at.
pub fn inherited_dup(raw: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD / F_DUPFD_CLOEXEC on a number; an invalid one fails EBADF.
    let fl = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    if fl < 0 || fl & libc::FD_CLOEXEC != 0 {
        return None;
    }
    // SAFETY: as above.
    let d = unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 0) };
    // SAFETY: a new fd owned here.
    (d >= 0).then(|| unsafe { OwnedFd::from_raw_fd(d) })
}

/// A new, unbound TCP socket (close-on-exec), for probing what the kernel allows.
pub fn tcp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket call; the new fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    // SAFETY: a new fd owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(cvt(fd as libc::c_long)? as RawFd) })
}
