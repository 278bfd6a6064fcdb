//! `dlsym` and `dlvsym`: hand back our hooks for the names we hook.
//!
//! `dlsym(dlopen("libc.so.6"), "connect")`, `dlvsym(RTLD_DEFAULT, "connect",
//! "GLIBC_2.2.5")` and Python's `ctypes.CDLL("libc.so.6").connect` look libc's
//! function up by name and would call it unjudged. So for a hooked name whose lookup
//! succeeds, our `dlsym`/`dlvsym` return our own hook instead.
//!
//! Everything else must behave exactly as glibc's: `RTLD_NEXT` and `RTLD_DEFAULT`
//! depend on *which object calls* (glibc reads the caller's return address), so a
//! Rust wrapper that calls the real function would change the answer for every other
//! interposer (`LD_PRELOAD=libjemalloc.so` resolving `malloc` with `RTLD_NEXT` would
//! find itself and recurse). Our exports are therefore a few instructions of assembly
//! that ask Rust only "is this a hooked name?" and otherwise *jump* to glibc's
//! function with the caller's stack untouched. `RTLD_NEXT` is never rewritten: the
//! next definition after a program is our hook anyway (we are preloaded), and after a
//! library loaded later than us it is libc's, which that library asked for.
//!
//! The real functions cannot be found with `dlsym` (that is us), so they are looked up
//! once in libc's own dynamic symbol table (`dl_iterate_phdr`, GNU hash:
//! crates/front/src/elf.rs, shared with the front).
//!
//! x86-64 only; elsewhere `dlsym` is not interposed (README, "what is not covered").
#![cfg(target_arch = "x86_64")]

use super::c_int;
use libc::{c_char, c_void};
use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};

/// glibc's `dlsym`, or the lazy resolver until it is known. Read by the assembly.
static SOCKEXIT_REAL_DLSYM: AtomicPtr<c_void> = AtomicPtr::new(dlsym_lazy as *mut c_void);
/// glibc's `dlvsym`, likewise.
static SOCKEXIT_REAL_DLVSYM: AtomicPtr<c_void> = AtomicPtr::new(dlvsym_lazy as *mut c_void);

// Calling convention: rdi = handle, rsi = name, rdx = version (dlvsym). At entry rsp
// is 8 mod 16; three pushes realign it for the call. `dlsym_hooked` returns our hook
// (the lookup succeeded and the name is hooked) or 0: then jump to glibc's function,
// which sets dlerror() as it always does. Naked functions: exported like every other
// hook, with no prologue between the caller and glibc.

/// The body of `dlsym`/`dlvsym`: ask `$hooked` (our hook, or 0), and when it says 0
/// — or for `RTLD_NEXT` — jump to the real function in `$real` with the caller's
/// stack untouched.
macro_rules! hook_or_jump {
    ($hooked:path, $real:path) => {
        std::arch::naked_asm!(
            "cmp rdi, -1", // RTLD_NEXT: glibc's answer, untouched
            "je 2f",
            "push rdi",
            "push rsi",
            "push rdx",
            "call {hooked}",
            "pop rdx",
            "pop rsi",
            "pop rdi",
            "test rax, rax",
            "jz 2f",
            "ret",
            "2:",
            "jmp qword ptr [rip + {real}]",
            hooked = sym $hooked,
            real = sym $real,
        )
    };
}

/// The body of a stub that calls `$prep` with its own arguments, then jumps to the
/// address `$prep` returns with the caller's stack as it was.
macro_rules! prep_then_jump {
    ($prep:path) => {
        std::arch::naked_asm!(
            "push rdi",
            "push rsi",
            "push rdx",
            "call {prep}",
            "pop rdx",
            "pop rsi",
            "pop rdi",
            "jmp rax",
            prep = sym $prep,
        )
    };
}

/// Interposed `dlsym(3)`.
///
/// # Safety
/// Called by C code with dlsym(3)'s arguments.
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn dlsym(_handle: *mut c_void, _name: *const c_char) -> *mut c_void {
    hook_or_jump!(dlsym_hooked, SOCKEXIT_REAL_DLSYM)
}

/// Interposed `dlvsym(3)`.
///
/// # Safety
/// Called by C code with dlvsym(3)'s arguments.
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn dlvsym(
    _handle: *mut c_void,
    _name: *const c_char,
    _version: *const c_char,
) -> *mut c_void {
    hook_or_jump!(dlvsym_hooked, SOCKEXIT_REAL_DLVSYM)
}

/// Until glibc's `dlsym` is known: resolve it, then jump to it with the caller's
/// stack as it was.
#[unsafe(naked)]
unsafe extern "C" fn dlsym_lazy() {
    prep_then_jump!(dlsym_lazy_prep)
}

/// Likewise for `dlvsym`.
#[unsafe(naked)]
unsafe extern "C" fn dlvsym_lazy() {
    prep_then_jump!(dlvsym_lazy_prep)
}

/// Our definition for a hooked name, `None` for every other name.
fn hook_for(name: &[u8]) -> Option<*mut c_void> {
    use super::exports as x;
    let f: *mut c_void = match name {
        b"connect" | b"__connect" => x::connect as *mut c_void,
        b"accept" => x::accept as *mut c_void,
        b"accept4" => x::accept4 as *mut c_void,
        b"listen" => x::listen as *mut c_void,
        b"sendto" => x::sendto as *mut c_void,
        b"sendmsg" => x::sendmsg as *mut c_void,
        b"sendmmsg" | b"__sendmmsg" => x::sendmmsg as *mut c_void,
        b"execve" => super::exec::execve as *mut c_void,
        b"execv" => super::exec::execv as *mut c_void,
        b"execvp" => super::exec::execvp as *mut c_void,
        b"execvpe" => super::exec::execvpe as *mut c_void,
        b"execveat" => super::exec::execveat as *mut c_void,
        b"fexecve" => super::exec::fexecve as *mut c_void,
        b"posix_spawn" => super::exec::posix_spawn as *mut c_void,
        b"posix_spawnp" => super::exec::posix_spawnp as *mut c_void,
        b"execl" => super::exec::execl as *mut c_void,
        b"execlp" => super::exec::execlp as *mut c_void,
        b"execle" => super::exec::execle as *mut c_void,
        b"dlsym" => dlsym as *mut c_void,
        b"dlvsym" => dlvsym as *mut c_void,
        b"chroot" => super::confine::chroot as *mut c_void,
        b"unshare" => super::confine::unshare as *mut c_void,
        b"setns" => super::confine::setns as *mut c_void,
        b"prctl" => super::confine::prctl as *mut c_void,
        _ => return None,
    };
    Some(f)
}

type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;
type DlvsymFn = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> *mut c_void;

/// # Safety
/// Called from the assembly with dlsym(3)'s arguments.
unsafe extern "C" fn dlsym_hooked(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    if name.is_null() {
        return std::ptr::null_mut();
    }
    let Some(hook) = hook_for(CStr::from_ptr(name).to_bytes()) else {
        return std::ptr::null_mut();
    };
    resolve();
    let real: DlsymFn = std::mem::transmute(SOCKEXIT_REAL_DLSYM.load(Ordering::Acquire));
    if real(handle, name).is_null() {
        return std::ptr::null_mut();
    }
    hook
}

/// # Safety
/// Called from the assembly with dlvsym(3)'s arguments.
unsafe extern "C" fn dlvsym_hooked(
    handle: *mut c_void,
    name: *const c_char,
    version: *const c_char,
) -> *mut c_void {
    if name.is_null() {
        return std::ptr::null_mut();
    }
    let Some(hook) = hook_for(CStr::from_ptr(name).to_bytes()) else {
        return std::ptr::null_mut();
    };
    resolve();
    let real: DlvsymFn = std::mem::transmute(SOCKEXIT_REAL_DLVSYM.load(Ordering::Acquire));
    if real(handle, name, version).is_null() {
        return std::ptr::null_mut();
    }
    hook
}

/// Look glibc's `dlsym` and `dlvsym` up in libc's symbol table (once; racing threads
/// find the same addresses). Without them every lookup fails cleanly (null).
extern "C" fn resolve() {
    if SOCKEXIT_REAL_DLSYM.load(Ordering::Acquire) != dlsym_lazy as *mut c_void {
        return;
    }
    let (s, v) = match libc_symbols() {
        Some(found) => found,
        None => (missing_dlsym as *mut c_void, missing_dlvsym as *mut c_void),
    };
    SOCKEXIT_REAL_DLVSYM.store(v, Ordering::Release);
    SOCKEXIT_REAL_DLSYM.store(s, Ordering::Release);
}

/// For the lazy stubs: resolve, then glibc's `dlsym` (or the stand-in).
extern "C" fn dlsym_lazy_prep() -> *mut c_void {
    resolve();
    SOCKEXIT_REAL_DLSYM.load(Ordering::Acquire)
}

/// Likewise for `dlvsym`.
extern "C" fn dlvsym_lazy_prep() -> *mut c_void {
    resolve();
    SOCKEXIT_REAL_DLVSYM.load(Ordering::Acquire)
}

extern "C" fn missing_dlsym(_: *mut c_void, _: *const c_char) -> *mut c_void {
    std::ptr::null_mut()
}

extern "C" fn missing_dlvsym(_: *mut c_void, _: *const c_char, _: *const c_char) -> *mut c_void {
    std::ptr::null_mut()
}

/// libc's `dlsym` and `dlvsym`, looked up in libc's dynamic symbol table with the
/// front's reader (the same GNU-hash walk, default versions only).
fn libc_symbols() -> Option<(*mut c_void, *mut c_void)> {
    let l = elf::Libc::find()?;
    let (s, v) = (l.lookup(b"dlsym"), l.lookup(b"dlvsym"));
    (s != 0 && v != 0).then_some((s as *mut c_void, v as *mut c_void))
}

#[path = "../../crates/front/src/elf.rs"]
#[allow(dead_code, unsafe_op_in_unsafe_fn)]
mod elf;

/// glibc's `dlopen` and `dlmopen`, found through `dlsym(RTLD_NEXT, ..)` (ours hands it
/// to glibc unchanged).
static DLOPEN: super::real::Slot = super::real::Slot::new(c"dlopen");
static DLMOPEN: super::real::Slot = super::real::Slot::new(c"dlmopen");

/// Interposed `dlopen(3)`: unchanged (glibc reads the caller's return address to pick
/// its namespace and `RUNPATH`, so the stub jumps to it with the caller's stack), but a
/// plugin loaded with `RTLD_DEEPBIND` binds its own calls to libc before us: say so,
/// once per process.
///
/// # Safety
/// Called by C code with dlopen(3)'s arguments.
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn dlopen(_file: *const c_char, _flags: c_int) -> *mut c_void {
    prep_then_jump!(dlopen_prep)
}

/// Interposed `dlmopen(3)`: a new namespace loads its own copy of libc, which the
/// library does not hook: say so, once per process.
///
/// # Safety
/// Called by C code with dlmopen(3)'s arguments.
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn dlmopen(
    _lmid: libc::c_long,
    _file: *const c_char,
    _flags: c_int,
) -> *mut c_void {
    prep_then_jump!(dlmopen_prep)
}

/// # Safety
/// Called from the `dlopen` stub with its arguments; returns glibc's `dlopen`.
unsafe extern "C" fn dlopen_prep(file: *const c_char, flags: c_int) -> usize {
    if flags & libc::RTLD_DEEPBIND != 0 {
        crate::hook::coverage_lost(crate::hook::Lost::DeepBind, name_of(file));
    }
    match DLOPEN.get() {
        0 => missing_dlopen as *const () as usize,
        p => p,
    }
}

/// # Safety
/// Called from the `dlmopen` stub with its arguments; returns glibc's `dlmopen`.
unsafe extern "C" fn dlmopen_prep(lmid: libc::c_long, file: *const c_char) -> usize {
    if lmid != libc::LM_ID_BASE {
        crate::hook::coverage_lost(crate::hook::Lost::Namespace, name_of(file));
    }
    match DLMOPEN.get() {
        0 => missing_dlopen as *const () as usize,
        p => p,
    }
}

/// # Safety
/// `file` is null or a NUL-terminated string.
unsafe fn name_of<'a>(file: *const c_char) -> &'a [u8] {
    if file.is_null() {
        b"(the program)"
    } else {
        CStr::from_ptr(file).to_bytes()
    }
}

extern "C" fn missing_dlopen() -> *mut c_void {
    std::ptr::null_mut()
}
