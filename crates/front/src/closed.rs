//! When the core cannot be loaded: the IP calls fail closed, as the core does for a
//! policy that does not load (one message; every IP accept, connect and listen
//! refused; `SOCKEXIT_ON_ERROR=allow` lets everything through), and every other hooked
//! call goes to libc's own function.

use crate::elf::Libc;
use core::sync::atomic::{AtomicUsize, Ordering};
use libc::{c_char, c_int, c_uint, c_void, sockaddr, socklen_t};

/// libc's functions the stand-ins call.
static REAL: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];
const ACCEPT4: usize = 0;
const CONNECT: usize = 1;
const LISTEN: usize = 2;
const SENDTO: usize = 3;

/// libc's `__errno_location`, found by name (see `sys`: one import fewer).
static ERRNO: AtomicUsize = AtomicUsize::new(0);

/// libc's `dlsym` and `dlvsym`, for the stand-ins below.
static REAL_DLSYM: AtomicUsize = AtomicUsize::new(0);
static REAL_DLVSYM: AtomicUsize = AtomicUsize::new(0);

/// For the stand-ins: our export for a hooked name (the fail-closed path), else 0.
unsafe extern "C" fn hooked(name: *const c_char) -> usize {
    if name.is_null() {
        return 0;
    }
    // SAFETY: dlsym's caller passes a NUL-terminated name.
    crate::our_export(unsafe { core::ffi::CStr::from_ptr(name) }.to_bytes())
}

/// `dlsym`/`dlvsym` while the core is missing: a hooked name gets our export (which
/// fails closed); anything else goes to libc's with the caller's stack untouched
/// (glibc reads the caller's return address for `RTLD_NEXT`). Entry rsp is 8 mod 16;
/// three pushes make it 0 mod 16 for the call.
macro_rules! closed_dl {
    ($name:ident, $real:ident) => {
        #[unsafe(naked)]
        unsafe extern "C" fn $name() {
            core::arch::naked_asm!(
                "push rdi",
                "push rsi",
                "push rdx",
                "mov rdi, rsi",
                "call {hooked}",
                "pop rdx",
                "pop rsi",
                "pop rdi",
                "test rax, rax",
                "jz 2f",
                "ret",
                "2:",
                "mov r11, qword ptr [rip + {real}]",
                "test r11, r11",
                "jz 3f",
                "jmp r11",
                "3:",
                "xor eax, eax",
                "ret",
                hooked = sym hooked,
                real = sym $real,
            )
        }
    };
}
closed_dl!(dlsym, REAL_DLSYM);
closed_dl!(dlvsym, REAL_DLVSYM);

/// Fill every empty entry: a stand-in for the IP calls, libc's function for the rest.
pub fn install(slots: &[&AtomicUsize], names: &[&str]) {
    let libc = Libc::find();
    let real = |name: &str| libc.map_or(0, |l| l.lookup(name.as_bytes()));
    ERRNO.store(real("__errno_location"), Ordering::Release);
    for (i, n) in ["accept4", "connect", "listen", "sendto"]
        .into_iter()
        .enumerate()
    {
        REAL[i].store(real(n), Ordering::Release);
    }
    let allow = crate::on_error_allow();
    for (slot, &name) in slots.iter().zip(names) {
        let p = match name {
            _ if allow => real(name),
            "accept" => accept as *const () as usize,
            "accept4" => accept4 as *const () as usize,
            "connect" | "__connect" => connect as *const () as usize,
            "listen" => listen as *const () as usize,
            "sendto" => sendto as *const () as usize,
            "sendmsg" => sendmsg as *const () as usize,
            "sendmmsg" => sendmmsg as *const () as usize,
            "rcmd" | "rcmd_af" | "rexec" | "rexec_af" => refused as *const () as usize,
            // Never libc's own: `dlsym(dlopen("libc.so.6"), "connect")` would hand out
            // the unjudged function.
            "dlsym" => {
                REAL_DLSYM.store(real(name), Ordering::Release);
                dlsym as *const () as usize
            }
            "dlvsym" => {
                REAL_DLVSYM.store(real(name), Ordering::Release);
                dlvsym as *const () as usize
            }
            _ => real(name),
        };
        let p = if p == 0 {
            missing as *const () as usize
        } else {
            p
        };
        let _ = slot.compare_exchange(0, p, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Say once, on fd 2, why the IP calls are refused.
pub fn say_failed(libc: &Libc, path: &[u8]) {
    let mut line = [0u8; 8192];
    let mut n = 0;
    // Without indexing: see `core_path`.
    let mut put = |b: &[u8]| {
        for (o, &c) in line.iter_mut().skip(n).zip(b) {
            *o = c;
            n += 1;
        }
    };
    put(b"sockexit: ERROR: cannot load ");
    put(path.split(|&c| c == 0).next().unwrap_or_default());
    let dlerror = libc.lookup(b"dlerror");
    if dlerror != 0 {
        type DlerrorFn = unsafe extern "C" fn() -> *const c_char;
        // SAFETY: libc's dlerror, found by name: null or a NUL-terminated message.
        let e = unsafe { core::mem::transmute::<usize, DlerrorFn>(dlerror)() };
        if !e.is_null() {
            put(b": ");
            // SAFETY: non-null: dlerror's NUL-terminated message.
            put(unsafe { core::ffi::CStr::from_ptr(e) }.to_bytes());
        }
    }
    put(b"; failing closed: every IP accept, connect and listen is refused\n");
    // A failure is ignored: there is nowhere else to say it.
    let _ = crate::sys::write(2, line.get(..n).unwrap_or_default());
}

fn fail(errno: c_int) -> c_int {
    type ErrnoFn = unsafe extern "C" fn() -> *mut c_int;
    let f = ERRNO.load(Ordering::Acquire);
    if f != 0 {
        // SAFETY: libc's __errno_location, found by name: this thread's errno.
        unsafe { *core::mem::transmute::<usize, ErrnoFn>(f)() = errno };
    }
    -1
}

/// A raw system call's answer as a libc function gives it: -1 and errno on failure.
fn libc_style(r: isize) -> isize {
    if (-4095..0).contains(&r) {
        fail(-r as c_int) as isize
    } else {
        r
    }
}

fn is_ip(family: c_int) -> bool {
    family == libc::AF_INET || family == libc::AF_INET6
}

/// The address family of the socket `fd` is bound to (0 if unknown).
fn family_of(fd: c_int) -> c_int {
    crate::sys::family_of(fd)
}

/// # Safety
/// `addr` is null or `len` readable bytes.
unsafe fn dest_is_ip(addr: *const sockaddr, len: socklen_t) -> bool {
    !addr.is_null() && len >= 2 && is_ip((*addr).sa_family as c_int)
}

fn real(i: usize) -> usize {
    REAL[i].load(Ordering::Acquire)
}

unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    accept4(fd, addr, len, 0)
}

/// A connection on an IP listener is reset unseen; `ECONNABORTED` is an errno every
/// accept loop retries on.
unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    type F = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
    let Some(f) = core::mem::transmute::<usize, Option<F>>(real(ACCEPT4)) else {
        return fail(libc::ENOSYS);
    };
    if !is_ip(family_of(fd)) {
        return f(fd, addr, len, flags);
    }
    let c = f(
        fd,
        core::ptr::null_mut(),
        core::ptr::null_mut(),
        libc::SOCK_CLOEXEC,
    );
    if c < 0 {
        return c;
    }
    crate::sys::linger_zero(c);
    crate::sys::close(c);
    fail(libc::ECONNABORTED)
}

unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    type F = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
    match core::mem::transmute::<usize, Option<F>>(real(CONNECT)) {
        _ if dest_is_ip(addr, len) => fail(libc::EACCES),
        Some(f) => f(fd, addr, len),
        None => fail(libc::ENOSYS),
    }
}

unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    type F = unsafe extern "C" fn(c_int, c_int) -> c_int;
    match core::mem::transmute::<usize, Option<F>>(real(LISTEN)) {
        _ if is_ip(family_of(fd)) => fail(libc::EACCES),
        Some(f) => f(fd, backlog),
        None => fail(libc::ENOSYS),
    }
}

/// TCP Fast Open connects in its first send: refused like `connect`. Other sends pass
/// (on an IP socket they need a connect, which was refused).
unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: libc::size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> libc::ssize_t {
    type F = unsafe extern "C" fn(
        c_int,
        *const c_void,
        libc::size_t,
        c_int,
        *const sockaddr,
        socklen_t,
    ) -> libc::ssize_t;
    if flags & libc::MSG_FASTOPEN != 0 && is_ip(family_of(fd)) {
        return fail(libc::EACCES) as libc::ssize_t;
    }
    match core::mem::transmute::<usize, Option<F>>(real(SENDTO)) {
        Some(f) => f(fd, buf, n, flags, addr, len),
        None => fail(libc::ENOSYS) as libc::ssize_t,
    }
}

unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> libc::ssize_t {
    if flags & libc::MSG_FASTOPEN != 0 && is_ip(family_of(fd)) {
        return fail(libc::EACCES) as libc::ssize_t;
    }
    let r = crate::sys::call6(
        libc::SYS_sendmsg,
        [fd as usize, msg as usize, flags as usize, 0, 0, 0],
    );
    libc_style(r)
}

unsafe extern "C" fn sendmmsg(fd: c_int, v: *mut libc::mmsghdr, n: c_uint, flags: c_int) -> c_int {
    if flags & libc::MSG_FASTOPEN != 0 && is_ip(family_of(fd)) {
        return fail(libc::EACCES);
    }
    let r = crate::sys::call6(
        libc::SYS_sendmmsg,
        [fd as usize, v as usize, n as usize, flags as usize, 0, 0],
    );
    libc_style(r) as c_int
}

extern "C" fn refused() -> c_int {
    fail(libc::EACCES)
}

extern "C" fn missing() -> c_int {
    fail(libc::ENOSYS)
}
