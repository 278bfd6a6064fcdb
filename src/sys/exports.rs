//! The exported C symbols. Thin on purpose: translate raw arguments into safe values,
//! call [`crate::hook`], copy results back. A panic is caught here — it must never
//! unwind into C — and turns into a refusal, never into a pass-through.

use super::{c_int, copy_peer_out, read_dest, set_errno, sockaddr, socklen_t, PeerBuf};
use crate::hook;
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
    if hook::in_hook() {
        return super::passthrough_accept(fd, addr, len, flags);
    }
    // accept(2) reports these before dequeuing anything; so do we, so a bad call
    // never consumes a connection.
    if !addr.is_null() {
        if len.is_null() {
            set_errno(libc::EFAULT);
            return -1;
        }
        if (*len as i32) < 0 {
            set_errno(libc::EINVAL);
            return -1;
        }
    }
    // A panic here must not leave a refused peer connected: the hook resets every
    // connection it has not yet decided to hand over. ECONNABORTED is an errno every
    // accept loop already retries on.
    no_unwind(libc::ECONNABORTED, || {
        let mut buf = PeerBuf::new();
        let r = hook::accept(fd, flags, &mut buf);
        if r >= 0 {
            // SAFETY: the caller's addr/len follow accept(2)'s contract (checked above).
            unsafe { copy_peer_out(&buf, addr, len) };
        }
        r
    })
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

/// Interposed `connect(2)`.
///
/// # Safety
/// Called by C code with connect(2)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    if hook::in_hook() {
        return super::real_connect(fd, addr, len);
    }
    let dest = read_dest(addr, len);
    let allowed = no_unwind(libc::EACCES, || hook::connect(fd, &dest) as c_int);
    if allowed == 1 {
        super::real_connect(fd, addr, len)
    } else {
        set_errno(libc::EACCES);
        -1
    }
}

/// Interposed `listen(2)`.
///
/// # Safety
/// Called by C code with listen(2)'s arguments (plain integers).
#[no_mangle]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    if hook::in_hook() {
        return super::real_listen(fd, backlog);
    }
    no_unwind(libc::EACCES, || hook::listen(fd, backlog))
}
