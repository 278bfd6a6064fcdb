//! The few system calls the front makes, as raw `syscall` instructions: every libc
//! function the front imports is one more symbol the dynamic loader binds in every
//! program at every exec (about 650 instructions each, BENCHMARKS.md item 7), and
//! these need nothing of libc. Each returns the kernel's answer: a value, or
//! `-errno`.
//!
//! Also, for the installed build without the standard library, the four memory
//! functions the compiler calls on its own (`memcpy`, `memset`, `bcmp`, `strlen`),
//! defined here and hidden: not exported (programs keep libc's), not imported either.

use core::arch::asm;
use libc::{c_char, c_int, c_long};

/// A raw system call, for the stand-ins that pass a caller's arguments through.
///
/// # Safety
/// A Linux system call number and arguments valid for it.
pub unsafe fn call6(n: c_long, a: [usize; 6]) -> isize {
    let r: isize;
    // SAFETY: the x86-64 system call convention: number in rax, arguments in rdi, rsi,
    // rdx, r10, r8, r9; the kernel clobbers rcx and r11 and nothing else.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => r,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    r
}

/// [statx(2)](https://man7.org/linux/man-pages/man2/statx.2.html) of `path`
/// (NUL-terminated), following links.
pub fn statx(path: *const c_char, mask: u32) -> Option<libc::statx> {
    // SAFETY: statx is plain old data.
    let mut st: libc::statx = unsafe { core::mem::zeroed() };
    let at = libc::AT_FDCWD as usize;
    let p = &mut st as *mut libc::statx as usize;
    // SAFETY: a NUL-terminated path and our own buffer.
    let r = unsafe { call6(libc::SYS_statx, [at, path as usize, 0, mask as usize, p, 0]) };
    (r == 0).then_some(st)
}

/// `prctl(PR_GET_SECCOMP)`: 0 none, 1 strict, 2 a filter (or `-errno`).
pub fn seccomp_mode() -> i64 {
    let g = libc::PR_GET_SECCOMP as usize;
    // SAFETY: PR_GET_SECCOMP takes no pointer.
    unsafe { call6(libc::SYS_prctl, [g, 0, 0, 0, 0, 0]) as i64 }
}

/// [geteuid(2)](https://man7.org/linux/man-pages/man2/geteuid.2.html).
pub fn geteuid() -> u32 {
    // SAFETY: no arguments.
    unsafe { call6(libc::SYS_geteuid, [0; 6]) as u32 }
}

/// [write(2)](https://man7.org/linux/man-pages/man2/write.2.html), once.
pub fn write(fd: c_int, b: &[u8]) -> isize {
    // SAFETY: our own buffer and its length.
    unsafe {
        call6(
            libc::SYS_write,
            [fd as usize, b.as_ptr() as usize, b.len(), 0, 0, 0],
        )
    }
}

/// [close(2)](https://man7.org/linux/man-pages/man2/close.2.html).
pub fn close(fd: c_int) -> isize {
    // SAFETY: no pointer.
    unsafe { call6(libc::SYS_close, [fd as usize, 0, 0, 0, 0, 0]) }
}

/// [getsockname(2)](https://man7.org/linux/man-pages/man2/getsockname.2.html)'s
/// address family, 0 when there is none.
pub fn family_of(fd: c_int) -> c_int {
    // SAFETY: sockaddr_storage is plain old data.
    let mut ss: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
    let mut len = core::mem::size_of_val(&ss) as libc::socklen_t;
    let a = [
        fd as usize,
        &mut ss as *mut _ as usize,
        &mut len as *mut _ as usize,
        0,
        0,
        0,
    ];
    // SAFETY: our own buffer and its length.
    if unsafe { call6(libc::SYS_getsockname, a) } != 0 {
        return 0;
    }
    ss.ss_family as c_int
}

/// `SO_LINGER` {1, 0} on `fd`: its close resets the connection.
pub fn linger_zero(fd: c_int) -> isize {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let a = [
        fd as usize,
        libc::SOL_SOCKET as usize,
        libc::SO_LINGER as usize,
        &l as *const _ as usize,
        core::mem::size_of_val(&l),
        0,
    ];
    // SAFETY: our own option value and its length.
    unsafe { call6(libc::SYS_setsockopt, a) }
}

/// Hidden memory functions for the build without the standard library (see the module).
/// Simple loops: the front copies a few bytes at load, never anything hot.
#[cfg(panic = "abort")]
mod mem {
    core::arch::global_asm!(
        ".globl memcpy",
        ".hidden memcpy",
        ".type memcpy, @function",
        "memcpy:",
        "mov rax, rdi",
        "mov rcx, rdx",
        "rep movsb",
        "ret",
        ".size memcpy, . - memcpy",
        ".globl memmove",
        ".hidden memmove",
        ".type memmove, @function",
        // Backwards when the destination starts inside the source.
        "memmove:",
        "mov rax, rdi",
        "mov rcx, rdx",
        "cmp rdi, rsi",
        "jbe 2f",
        "lea r8, [rsi + rdx]",
        "cmp rdi, r8",
        "jae 2f",
        "lea rsi, [rsi + rdx - 1]",
        "lea rdi, [rdi + rdx - 1]",
        "std",
        "rep movsb",
        "cld",
        "ret",
        "2:",
        "rep movsb",
        "ret",
        ".size memmove, . - memmove",
        ".globl memset",
        ".hidden memset",
        ".type memset, @function",
        "memset:",
        "mov r8, rdi",
        "mov eax, esi",
        "mov rcx, rdx",
        "rep stosb",
        "mov rax, r8",
        "ret",
        ".size memset, . - memset",
        ".globl bcmp",
        ".hidden bcmp",
        ".type bcmp, @function",
        "bcmp:",
        ".globl memcmp",
        ".hidden memcmp",
        ".type memcmp, @function",
        "memcmp:",
        "xor eax, eax",
        "3:",
        "test rdx, rdx",
        "jz 4f",
        "movzx eax, byte ptr [rdi]",
        "movzx ecx, byte ptr [rsi]",
        "sub eax, ecx",
        "jnz 4f",
        "inc rdi",
        "inc rsi",
        "dec rdx",
        "jmp 3b",
        "4:",
        "ret",
        ".size bcmp, . - bcmp",
        ".size memcmp, . - memcmp",
        ".globl strlen",
        ".hidden strlen",
        ".type strlen, @function",
        "strlen:",
        "mov rax, rdi",
        "5:",
        "cmp byte ptr [rax], 0",
        "je 6f",
        "inc rax",
        "jmp 5b",
        "6:",
        "sub rax, rdi",
        "ret",
        ".size strlen, . - strlen",
    );
}

// What the C start files (not linked: build.rs) would define and the standard
// library's thread-local destructors refer to: this object's handle for
// `__cxa_thread_atexit_impl`, its own address by convention.
#[cfg(not(panic = "abort"))]
core::arch::global_asm!(
    ".section .data.rel.ro.__dso_handle, \"aw\"",
    ".globl __dso_handle",
    ".hidden __dso_handle",
    ".p2align 3",
    "__dso_handle:",
    ".quad __dso_handle",
    ".text",
);

/// The process's current environment (`environ`), null-terminated.
pub fn environ() -> *const *const c_char {
    extern "C" {
        static environ: *const *const c_char;
    }
    // SAFETY: libc's `environ`, read once per call.
    unsafe { environ }
}

/// `getauxval(AT_SECURE)`: set-user-ID and the like.
pub fn secure() -> bool {
    // SAFETY: getauxval takes a type id.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}
