//! The only place that talks to libc. Everything above this module is safe Rust.
//!
//! Like socket2's `sys` layer: one [`syscall!`] macro turns `-1` into [`io::Error`],
//! and each wrapper documents the man page it follows. The hooked functions are never
//! called through the `libc` crate (that would bind to our own exports and recurse);
//! they go through [`real`], resolved with `dlsym(RTLD_NEXT, ..)`.
//!
//! Modules: [`real`] (libc's functions), [`addr`] and [`accept`] (socket addresses and
//! the program's pointers), `sock` (socket options, reset, poll), `filter` (stealth's
//! BPF), `dl` (`dlsym`/`dlvsym`), [`exports`] (the C symbols), [`logfile`] (audit).
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

pub use libc::{c_int, sockaddr, sockaddr_storage, socklen_t};

/// Call a libc function, turning `-1` into `io::Error::last_os_error()`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // SAFETY: every caller passes valid pointers/lengths as the man page requires.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(::std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

// Declared after `syscall!` so they can use it (macro_rules scope is textual).
pub mod accept;
pub mod addr;
mod confine;
mod dl;
mod exec;
pub mod exports;
mod filter;
mod fini;
pub mod front;
pub mod logfile;
mod rcmd;
pub mod real;
pub mod shared;
mod sock;
pub mod stderr;

pub use addr::{local_addr, Addr, PeerBuf};
pub use exec::prepare as prepare_exec;
pub use filter::{attach_filter, attached_filter, AttachedFilter};
pub use real::{connect as real_connect, listen as real_listen, resolve_all, resolve_exec};
pub use sock::*;

// ---------------------------------------------------------------------------------
// Process facts.
// ---------------------------------------------------------------------------------

/// The effective uid and gid, each only when this process cannot change it any more:
/// real, effective and saved ids equal, not root (a root server may still drop
/// privileges before it accepts), and no `CAP_SETUID`/`CAP_SETGID` in the permitted
/// capability set. `None` means "may change".
pub fn fixed_ids() -> (Option<u32>, Option<u32>) {
    let (set_uid, set_gid) = may_set_ids();
    let (mut r, mut e, mut s) = (0, 0, 0);
    if set_uid || syscall!(getresuid(&mut r, &mut e, &mut s)).is_err() || e == 0 || r != e || s != e
    {
        return (None, None);
    }
    let uid = e;
    let (mut r, mut e, mut s) = (0, 0, 0);
    if set_gid || syscall!(getresgid(&mut r, &mut e, &mut s)).is_err() || r != e || s != e {
        return (Some(uid), None);
    }
    (Some(uid), Some(e))
}

/// Whether `CAP_SETUID` / `CAP_SETGID` are in this process's permitted set
/// (`capget(2)`, version 3); both `true` when that cannot be read.
fn may_set_ids() -> (bool, bool) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_SETGID: u32 = 6;
    const CAP_SETUID: u32 = 7;
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // capget writes two Data entries for version 3, which `d` holds.
    match syscall!(syscall(
        libc::SYS_capget,
        &mut h as *mut Header,
        d.as_mut_ptr()
    )) {
        Ok(_) => (
            d[0].permitted & (1 << CAP_SETUID) != 0,
            d[0].permitted & (1 << CAP_SETGID) != 0,
        ),
        Err(_) => (true, true),
    }
}

/// `geteuid(2)`: cannot fail.
pub fn euid() -> u32 {
    // SAFETY: no arguments, always succeeds.
    unsafe { libc::geteuid() }
}

/// `getegid(2)`: cannot fail.
pub fn egid() -> u32 {
    // SAFETY: no arguments, always succeeds.
    unsafe { libc::getegid() }
}

/// `getpid(2)`.
pub fn pid() -> u32 {
    // SAFETY: no arguments, always succeeds.
    unsafe { libc::getpid() as u32 }
}

/// `getauxval(AT_SECURE)`: true for setuid/setgid/capability-raising execs, where the
/// environment belongs to a less privileged user and must not be trusted.
pub fn at_secure() -> bool {
    // SAFETY: getauxval takes a type id and returns 0 when absent.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Where this process sees the file system from: its root directory's device, inode
/// and mount (a bind mount of `/` is another mount). A new mount namespace (unshare,
/// setns, clone) gives the process a new root mount — its mounts are copies, with ids
/// of their own — so this also tells a namespace change, without `/proc/self/ns/mnt`
/// (a path walk in procfs: about 6 µs, at every exec, in the front). The mount id is
/// the kernel's never-reused one where it has it (`STATX_MNT_ID_UNIQUE`, Linux 6.8),
/// else the classic one (unique among live mounts: the start's root mount is still
/// mounted when a copy is made). `None` when it cannot be read.
pub fn place() -> Option<[u64; 3]> {
    // SAFETY: statx is plain old data.
    let mut r: libc::statx = unsafe { std::mem::zeroed() };
    let mask = libc::STATX_INO | libc::STATX_MNT_ID | STATX_MNT_ID_UNIQUE;
    // SAFETY: a NUL-terminated path and our own buffer.
    syscall!(statx(libc::AT_FDCWD, c"/".as_ptr(), 0, mask, &mut r)).ok()?;
    let unique = r.stx_mask & STATX_MNT_ID_UNIQUE != 0;
    if !unique && r.stx_mask & libc::STATX_MNT_ID == 0 {
        return None;
    }
    let dev = |s: &libc::statx| (s.stx_dev_major as u64) << 32 | s.stx_dev_minor as u64;
    Some([dev(&r), r.stx_ino, r.stx_mnt_id])
}

/// statx(2): the 64-bit mount id that is never reused (Linux 6.8; older kernels
/// ignore the bit and answer `STATX_MNT_ID`).
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// `prctl(PR_GET_SECCOMP)`: 0 none, 1 strict, 2 a filter (as a raw call: `prctl` is
/// one of our hooks).
pub fn seccomp_mode() -> i64 {
    // SAFETY: PR_GET_SECCOMP takes no pointer.
    unsafe { libc::syscall(libc::SYS_prctl, libc::PR_GET_SECCOMP) }
}

/// `/proc/self/exe` into a caller's buffer, without allocating (safe after `vfork`):
/// the bytes read, empty when it cannot be read.
pub fn exe_path_into(buf: &mut [u8]) -> &[u8] {
    match syscall!(readlink(
        c"/proc/self/exe".as_ptr(),
        buf.as_mut_ptr() as *mut libc::c_char,
        buf.len()
    )) {
        Ok(n) => &buf[..n as usize],
        Err(_) => &[],
    }
}

/// The executable's path (`/proc/self/exe`), read once at load time.
pub fn exe_path() -> Option<OsString> {
    std::fs::read_link("/proc/self/exe")
        .ok()
        .map(|p| p.into_os_string())
        .or_else(|| std::env::current_exe().ok().map(|p| p.into_os_string()))
        .map(|s| OsString::from_vec(s.into_vec()))
}

// ---------------------------------------------------------------------------------
// errno.
// ---------------------------------------------------------------------------------

/// The calling thread's errno.
pub fn errno() -> c_int {
    // SAFETY: __errno_location always returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Set the calling thread's errno.
pub fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e }
}

// ---------------------------------------------------------------------------------
// Load-time constructor.
// ---------------------------------------------------------------------------------

extern "C" fn sockexit_init() {
    // Before anything can call one of our exports through the front.
    front::attach();
    // Not in the library's own unit-test binary: there the test harness is the "host
    // process", has no policy, and would print a fail-closed error on every run.
    if cfg!(test) {
        return;
    }
    crate::init();
}

/// Runs when the dynamic loader maps the library (before `main`), so policy errors are
/// reported at start-up and no hook ever has to load anything lazily.
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = sockexit_init;
