//! The real functions behind our exports, resolved with `dlsym(RTLD_NEXT, ..)`.
//!
//! Stored as `usize` in atomics: resolved in the constructor, and lazily if another
//! library's constructor makes a socket call before ours runs. A symbol that cannot be
//! resolved makes the call fail with `ENOSYS` rather than crash.

use super::{c_int, set_errno, sockaddr, socklen_t};
use std::ffi::CStr;
use std::mem;
use std::sync::atomic::{AtomicUsize, Ordering};

type AcceptFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
type ConnectFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
type ListenFn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type SendtoFn = unsafe extern "C" fn(
    c_int,
    *const libc::c_void,
    libc::size_t,
    c_int,
    *const sockaddr,
    socklen_t,
) -> libc::ssize_t;
type SendmsgFn = unsafe extern "C" fn(c_int, *const libc::msghdr, c_int) -> libc::ssize_t;
type SendmmsgFn = unsafe extern "C" fn(c_int, *mut libc::mmsghdr, libc::c_uint, c_int) -> c_int;

type Argv = *const *const libc::c_char;
type ExecveFn = unsafe extern "C" fn(*const libc::c_char, Argv, Argv) -> c_int;
type ExecveatFn = unsafe extern "C" fn(c_int, *const libc::c_char, Argv, Argv, c_int) -> c_int;
type FexecveFn = unsafe extern "C" fn(c_int, Argv, Argv) -> c_int;
type SpawnFn = unsafe extern "C" fn(
    *mut libc::pid_t,
    *const libc::c_char,
    *const libc::posix_spawn_file_actions_t,
    *const libc::posix_spawnattr_t,
    Argv,
    Argv,
) -> c_int;

/// One resolved-on-demand function pointer.
pub struct Slot {
    addr: AtomicUsize,
    name: &'static CStr,
}

impl Slot {
    pub const fn new(name: &'static CStr) -> Slot {
        Slot {
            addr: AtomicUsize::new(0),
            name,
        }
    }

    /// The next definition of the symbol after this library (libc's), or 0.
    pub fn get(&self) -> usize {
        let p = self.addr.load(Ordering::Acquire);
        if p != 0 {
            return p;
        }
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name is always sound; it
        // returns null when the symbol does not exist. It goes through our own `dlsym`
        // export, which hands RTLD_NEXT lookups to libc's unchanged (sys::dl).
        let p = match super::front::next(self.name) {
            Some(p) => p,
            // SAFETY: as above.
            None => (unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) }) as usize,
        };
        self.addr.store(p, Ordering::Release);
        p
    }
}

pub static ACCEPT: Slot = Slot::new(c"accept");
pub static ACCEPT4: Slot = Slot::new(c"accept4");
pub static CONNECT: Slot = Slot::new(c"connect");
pub static LISTEN: Slot = Slot::new(c"listen");
pub static SENDTO: Slot = Slot::new(c"sendto");
pub static SENDMSG: Slot = Slot::new(c"sendmsg");
pub static SENDMMSG: Slot = Slot::new(c"sendmmsg");
pub static EXECVE: Slot = Slot::new(c"execve");
pub static EXECVPE: Slot = Slot::new(c"execvpe");
pub static EXECVEAT: Slot = Slot::new(c"execveat");
pub static FEXECVE: Slot = Slot::new(c"fexecve");
pub static POSIX_SPAWN: Slot = Slot::new(c"posix_spawn");
pub static POSIX_SPAWNP: Slot = Slot::new(c"posix_spawnp");

/// Resolve every real function now (the constructor, or the deferred policy load).
pub fn resolve_all() {
    resolve_exec();
    for s in [
        &ACCEPT, &ACCEPT4, &CONNECT, &LISTEN, &SENDTO, &SENDMSG, &SENDMMSG,
    ] {
        s.get();
    }
}

/// Resolve the exec family now: its hooks may run in the child of a `vfork()`, where
/// `dlsym` must not be called. The socket functions may wait for the first call.
pub fn resolve_exec() {
    for s in [
        &EXECVE,
        &EXECVPE,
        &EXECVEAT,
        &FEXECVE,
        &POSIX_SPAWN,
        &POSIX_SPAWNP,
    ] {
        s.get();
    }
}

fn missing() -> c_int {
    set_errno(libc::ENOSYS);
    -1
}

/// `accept4(2)` (or `accept(2)` when `flags` is `None`), with the given pointers.
///
/// # Safety
/// `addr`/`len` are passed to the kernel as they are: they must be what accept(2)
/// allows (null, or pointers the kernel may fault on and report as `EFAULT`).
pub unsafe fn accept(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: Option<c_int>,
) -> c_int {
    match flags {
        None => match ACCEPT.get() {
            0 => missing(),
            p => mem::transmute::<usize, AcceptFn>(p)(fd, addr, len),
        },
        Some(f) => match ACCEPT4.get() {
            0 => missing(),
            p => mem::transmute::<usize, Accept4Fn>(p)(fd, addr, len, f),
        },
    }
}

/// The real `connect(2)`.
///
/// # Safety
/// `addr`/`len` as connect(2) takes them (the kernel reports bad ones as `EFAULT`).
pub unsafe fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    match CONNECT.get() {
        0 => missing(),
        p => mem::transmute::<usize, ConnectFn>(p)(fd, addr, len),
    }
}

/// The real `listen(2)`.
pub fn listen(fd: c_int, backlog: c_int) -> c_int {
    match LISTEN.get() {
        0 => missing(),
        // SAFETY: p is libc's listen, which takes two integers.
        p => unsafe { mem::transmute::<usize, ListenFn>(p)(fd, backlog) },
    }
}

/// The real `sendto(2)`.
///
/// # Safety
/// Arguments as sendto(2) takes them, straight from the caller.
pub unsafe fn sendto(
    fd: c_int,
    buf: *const libc::c_void,
    n: libc::size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> libc::ssize_t {
    match SENDTO.get() {
        0 => missing() as libc::ssize_t,
        p => mem::transmute::<usize, SendtoFn>(p)(fd, buf, n, flags, addr, len),
    }
}

/// The real `sendmsg(2)`.
///
/// # Safety
/// Arguments as sendmsg(2) takes them, straight from the caller.
pub unsafe fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> libc::ssize_t {
    match SENDMSG.get() {
        0 => missing() as libc::ssize_t,
        p => mem::transmute::<usize, SendmsgFn>(p)(fd, msg, flags),
    }
}

/// The real `sendmmsg(2)`.
///
/// # Safety
/// Arguments as sendmmsg(2) takes them, straight from the caller.
pub unsafe fn sendmmsg(
    fd: c_int,
    msgs: *mut libc::mmsghdr,
    n: libc::c_uint,
    flags: c_int,
) -> c_int {
    match SENDMMSG.get() {
        0 => missing(),
        p => mem::transmute::<usize, SendmmsgFn>(p)(fd, msgs, n, flags),
    }
}

/// The real `execve(2)`.
///
/// # Safety
/// Arguments as execve(2) takes them.
pub unsafe fn execve(path: *const libc::c_char, argv: Argv, envp: Argv) -> c_int {
    match EXECVE.get() {
        0 => missing(),
        p => mem::transmute::<usize, ExecveFn>(p)(path, argv, envp),
    }
}

/// The real `execvpe(3)`.
///
/// # Safety
/// Arguments as execvpe(3) takes them.
pub unsafe fn execvpe(file: *const libc::c_char, argv: Argv, envp: Argv) -> c_int {
    match EXECVPE.get() {
        0 => missing(),
        p => mem::transmute::<usize, ExecveFn>(p)(file, argv, envp),
    }
}

/// The real `execveat(2)`.
///
/// # Safety
/// Arguments as execveat(2) takes them.
pub unsafe fn execveat(
    dirfd: c_int,
    path: *const libc::c_char,
    argv: Argv,
    envp: Argv,
    flags: c_int,
) -> c_int {
    match EXECVEAT.get() {
        0 => missing(),
        p => mem::transmute::<usize, ExecveatFn>(p)(dirfd, path, argv, envp, flags),
    }
}

/// The real `fexecve(3)`.
///
/// # Safety
/// Arguments as fexecve(3) takes them.
pub unsafe fn fexecve(fd: c_int, argv: Argv, envp: Argv) -> c_int {
    match FEXECVE.get() {
        0 => missing(),
        p => mem::transmute::<usize, FexecveFn>(p)(fd, argv, envp),
    }
}

/// The real `posix_spawn(3)` (`posix_spawnp` with `search`). Returns an error number,
/// as they do.
///
/// # Safety
/// Arguments as posix_spawn(3) takes them.
pub unsafe fn posix_spawn(
    search: bool,
    pid: *mut libc::pid_t,
    path: *const libc::c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: Argv,
    envp: Argv,
) -> c_int {
    match if search {
        POSIX_SPAWNP.get()
    } else {
        POSIX_SPAWN.get()
    } {
        0 => libc::ENOSYS,
        p => mem::transmute::<usize, SpawnFn>(p)(pid, path, actions, attr, argv, envp),
    }
}
