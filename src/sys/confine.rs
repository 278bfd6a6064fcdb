//! Calls after which a deferred policy could no longer be read as the process started:
//! `chroot`, `unshare`, `setns`, and `prctl(PR_SET_SECCOMP)`.
//!
//! Without `SOCKEXIT_POLICY` (the system policy, `/etc/ld.so.preload`) the policy is
//! read at the first IP call, not at start-up ([`crate::state::Start`]). A server
//! that chroots into a directory its users can write (an FTP server's session) and
//! then connects would read `/etc/sockexit/policy.yaml` *inside* that directory; a
//! process that enters another mount namespace would read that namespace's files; a
//! seccomp filter may forbid reading at all. So these hooks load the policy first,
//! then make the real call. A root changed by any other means (a raw system call) is
//! caught at the load, which then fails closed.

use super::c_int;
use super::real::Slot;
use libc::{c_char, c_ulong};

static CHROOT: Slot = Slot::new(c"chroot");
static UNSHARE: Slot = Slot::new(c"unshare");
static SETNS: Slot = Slot::new(c"setns");
static PRCTL: Slot = Slot::new(c"prctl");

fn missing() -> c_int {
    super::set_errno(libc::ENOSYS);
    -1
}

fn pin() {
    // Never unwind into C; a failed load fails closed at the IP call instead.
    let _ = std::panic::catch_unwind(crate::state::pin);
}

/// Interposed `chroot(2)`.
///
/// # Safety
/// Called by C code with chroot(2)'s argument.
#[no_mangle]
pub unsafe extern "C" fn chroot(path: *const c_char) -> c_int {
    pin();
    match CHROOT.get() {
        0 => missing(),
        // SAFETY: libc's chroot, resolved by name; the argument is the caller's.
        p => unsafe {
            std::mem::transmute::<usize, unsafe extern "C" fn(*const c_char) -> c_int>(p)(path)
        },
    }
}

/// Interposed `unshare(2)`.
///
/// # Safety
/// Called by C code with unshare(2)'s argument.
#[no_mangle]
pub unsafe extern "C" fn unshare(flags: c_int) -> c_int {
    pin();
    match UNSHARE.get() {
        0 => missing(),
        // SAFETY: libc's unshare, resolved by name.
        p => unsafe {
            std::mem::transmute::<usize, unsafe extern "C" fn(c_int) -> c_int>(p)(flags)
        },
    }
}

/// Interposed `setns(2)`.
///
/// # Safety
/// Called by C code with setns(2)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn setns(fd: c_int, nstype: c_int) -> c_int {
    pin();
    match SETNS.get() {
        0 => missing(),
        // SAFETY: libc's setns, resolved by name.
        p => unsafe {
            std::mem::transmute::<usize, unsafe extern "C" fn(c_int, c_int) -> c_int>(p)(fd, nstype)
        },
    }
}

/// Interposed `prctl(2)`: variadic in C, but on x86-64 its integer arguments travel in
/// the same registers as these five, and glibc's `prctl` reads all four.
///
/// # Safety
/// Called by C code with prctl(2)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn prctl(
    option: c_int,
    a2: c_ulong,
    a3: c_ulong,
    a4: c_ulong,
    a5: c_ulong,
) -> c_int {
    if option == libc::PR_SET_SECCOMP {
        pin();
    }
    match PRCTL.get() {
        0 => missing(),
        // SAFETY: libc's prctl, resolved by name, given the caller's arguments.
        p => unsafe {
            std::mem::transmute::<usize, unsafe extern "C" fn(c_int, ...) -> c_int>(p)(
                option, a2, a3, a4, a5,
            )
        },
    }
}
