//! The exported C symbols. Thin on purpose: turn raw arguments into safe values, call
//! [`crate::hook`], act on the answer. A panic is caught here — it must never unwind
//! into C — and turns into a refusal, never into a pass-through.
//!
//! Every exported alias of a hooked call in glibc 2.28–2.40 is covered: `connect` and
//! `__connect`; `sendmmsg`'s `__sendmmsg` is GLIBC_PRIVATE and reachable only through
//! `dlsym`, which [`super::dl`] answers with our hook.

use super::accept::Target;
use super::addr::{plausible, read_dest, Addr, Dest};
use super::{c_int, set_errno, sockaddr, socklen_t};
use crate::hook;
use libc::{c_uint, c_void, mmsghdr, msghdr, size_t, ssize_t};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn no_unwind<F: FnOnce() -> c_int>(deny_errno: c_int, f: F) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            set_errno(deny_errno);
            -1
        }
    }
}

fn fail(errno: c_int) -> c_int {
    set_errno(errno);
    -1
}

/// Shared body of accept and accept4.
///
/// # Safety
/// Arguments as given to accept(2) by the program.
unsafe fn accept_common(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: Option<c_int>,
) -> c_int {
    let mut target = Target::new(addr, len);
    // A panic must not leave a refused peer connected: the hook resets every
    // connection it has not yet decided to hand over. ECONNABORTED is an errno every
    // accept loop already retries on.
    no_unwind(libc::ECONNABORTED, || hook::accept(fd, flags, &mut target))
}

/// Interposed `accept(2)`.
///
/// # Safety
/// Called by C code with accept(2)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    accept_common(fd, addr, len, None)
}

/// Interposed `accept4(2)`; `flags` pass through unchanged.
///
/// # Safety
/// Called by C code with accept4(2)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    accept_common(fd, addr, len, Some(flags))
}

/// What to do with a call that names a destination: 0 = let the kernel have it,
/// otherwise the errno to fail with. Judged as `connect`.
fn judge_dest(fd: c_int, dest: Dest) -> c_int {
    match dest {
        // Null, or a length the kernel rejects: nothing can connect.
        Dest::KernelRejects => 0,
        Dest::Fault => libc::EFAULT,
        // AF_UNIX, AF_UNSPEC (a disconnect), netlink, ...: not ours to judge.
        Dest::Addr(Addr::Other) => 0,
        // Too short for its family: refused, never passed unjudged.
        Dest::Addr(Addr::Undecodable) => libc::EACCES,
        Dest::Addr(Addr::Ip(a)) => {
            match no_unwind(libc::EACCES, || hook::connect(fd, a) as c_int) {
                1 => 0,
                _ => libc::EACCES,
            }
        }
    }
}

/// Interposed `connect(2)`.
///
/// # Safety
/// Called by C code with connect(2)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    match judge_dest(fd, read_dest(addr, len)) {
        0 => super::real::connect(fd, addr, len),
        e => fail(e),
    }
}

/// glibc's exported alias of `connect` (`__connect@GLIBC_2.2.5`).
///
/// # Safety
/// As [`connect`].
#[no_mangle]
pub unsafe extern "C" fn __connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    connect(fd, addr, len)
}

/// Interposed `listen(2)`.
///
/// # Safety
/// Called by C code with listen(2)'s arguments (plain integers).
#[no_mangle]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    no_unwind(libc::EACCES, || hook::listen(fd, backlog))
}

/// Interposed `sendto(2)`: with `MSG_FASTOPEN` and a destination it connects (TCP Fast
/// Open), so it is judged as `connect`. Every other send goes straight through.
///
/// # Safety
/// Called by C code with sendto(2)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    if flags & libc::MSG_FASTOPEN != 0 && !addr.is_null() {
        let e = judge_dest(fd, read_dest(addr, len));
        if e != 0 {
            return fail(e) as ssize_t;
        }
    }
    super::real::sendto(fd, buf, n, flags, addr, len)
}

/// The destination a `msghdr` names, when its flags make the send a connect.
///
/// # Safety
/// `msg` is the program's sendmsg(2) argument; read only when plausible.
unsafe fn msg_dest(msg: *const msghdr) -> Dest {
    if msg.is_null() {
        return Dest::KernelRejects;
    }
    if !plausible(msg, std::mem::size_of::<msghdr>()) {
        return Dest::Fault;
    }
    let mut m: msghdr = std::mem::zeroed();
    let raw = std::slice::from_raw_parts_mut(
        &mut m as *mut msghdr as *mut u8,
        std::mem::size_of::<msghdr>(),
    );
    if !super::addr::read_user(msg as *const u8, raw) {
        return Dest::Fault;
    }
    if m.msg_name.is_null() {
        return Dest::KernelRejects;
    }
    read_dest(m.msg_name as *const sockaddr, m.msg_namelen)
}

/// Interposed `sendmsg(2)`: judged as `connect` with `MSG_FASTOPEN` and a `msg_name`.
///
/// # Safety
/// Called by C code with sendmsg(2)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    if flags & libc::MSG_FASTOPEN != 0 {
        let e = judge_dest(fd, msg_dest(msg));
        if e != 0 {
            return fail(e) as ssize_t;
        }
    }
    super::real::sendmsg(fd, msg, flags)
}

/// Interposed `sendmmsg(2)`: with `MSG_FASTOPEN`, every message's `msg_name` is judged
/// as `connect` before anything is sent; one refused fails the whole call.
///
/// # Safety
/// Called by C code with sendmmsg(2)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn sendmmsg(fd: c_int, msgs: *mut mmsghdr, n: c_uint, flags: c_int) -> c_int {
    if flags & libc::MSG_FASTOPEN != 0 && !msgs.is_null() {
        // The kernel sends at most UIO_MAXIOV messages per call and ignores the rest.
        let count = n.min(libc::UIO_MAXIOV as c_uint) as usize;
        if !plausible(msgs, count * std::mem::size_of::<mmsghdr>()) {
            return fail(libc::EFAULT);
        }
        for i in 0..count {
            let e = judge_dest(fd, msg_dest(std::ptr::addr_of!((*msgs.add(i)).msg_hdr)));
            if e != 0 {
                return fail(e);
            }
        }
    }
    super::real::sendmmsg(fd, msgs, n, flags)
}
