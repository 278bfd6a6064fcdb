//! Classic BPF socket filters (stealth): attach one, read back what a socket carries.

use super::{c_int, socklen_t};
use sockexit_engine::bpf::SockFilter;
use std::io;
use std::mem;

fn from_libc(f: &libc::sock_filter) -> SockFilter {
    SockFilter {
        code: f.code,
        jt: f.jt,
        jf: f.jf,
        k: f.k,
    }
}

fn to_libc(f: &SockFilter) -> libc::sock_filter {
    libc::sock_filter {
        code: f.code,
        jt: f.jt,
        jf: f.jf,
        k: f.k,
    }
}

/// `SO_ATTACH_FILTER` (socket(7)): attach a classic BPF program. No privilege needed;
/// the kernel copies the program. Fails with `EPERM` when the socket's filter is
/// locked (`SO_LOCK_FILTER`), `EINVAL` when the kernel rejects the program.
pub fn attach_filter(fd: c_int, prog: &[SockFilter]) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> = prog.iter().map(to_libc).collect();
    let len = u16::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = libc::sock_fprog {
        len,
        filter: insns.as_mut_ptr(),
    };
    syscall!(setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &fprog as *const libc::sock_fprog as *const libc::c_void,
        mem::size_of::<libc::sock_fprog>() as socklen_t
    ))
    .map(|_| ())
}

/// What filter a socket carries.
pub enum AttachedFilter {
    /// None.
    None,
    /// A classic program, as attached.
    Classic(Vec<SockFilter>),
    /// One that cannot be read back (an eBPF program: `SO_GET_FILTER` gives `EACCES`).
    Unreadable,
}

/// `SO_GET_FILTER` (socket(7)): the socket's classic filter. The option's length is
/// counted in instructions; asked with 0, the kernel only reports the count.
pub fn attached_filter(fd: c_int) -> io::Result<AttachedFilter> {
    let mut one = [libc::sock_filter {
        code: 0,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let mut n: socklen_t = 0;
    let get = |buf: *mut libc::sock_filter, n: &mut socklen_t| {
        syscall!(getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            buf as *mut libc::c_void,
            n
        ))
    };
    match get(one.as_mut_ptr(), &mut n) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => return Ok(AttachedFilter::Unreadable),
        Err(e) => return Err(e),
    }
    if n == 0 {
        return Ok(AttachedFilter::None);
    }
    let mut buf = vec![one[0]; n as usize];
    let mut len = n;
    match get(buf.as_mut_ptr(), &mut len) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => return Ok(AttachedFilter::Unreadable),
        // Replaced by a longer one in between (another thread): not ours either way.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(AttachedFilter::Unreadable),
        Err(e) => return Err(e),
    }
    buf.truncate(len as usize);
    Ok(AttachedFilter::Classic(buf.iter().map(from_libc).collect()))
}
