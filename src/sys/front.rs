//! The front (`libsockexit.so`, crates/front): the small object programs preload,
//! which `dlopen`s this library at the first call that needs it and jumps to our
//! functions through its table. Our constructor hands it that table before anything
//! else runs, so our own first calls (`dlsym` for the real functions) already reach
//! us through the front's exports.
//!
//! The front's entry point is a weak symbol: without a front (this library preloaded
//! by itself, or the unit tests) it is 0 and nothing changes.

#[path = "../../crates/front/src/abi.rs"]
#[allow(dead_code)]
mod abi;

use std::ffi::c_void;

std::arch::global_asm!(
    ".weak sockexit_front_attach",
    ".weak sockexit_front_next",
    ".weak sockexit_front_start"
);

/// Reads the GOT entry of a weak symbol: its address, or 0 without a front.
macro_rules! weak {
    ($sym:literal) => {{
        let p: usize;
        // SAFETY: the loader sets the entry to the symbol's address or leaves 0.
        unsafe {
            std::arch::asm!(
                concat!("mov {}, qword ptr [rip + ", $sym, "@GOTPCREL]"),
                out(reg) p,
                options(nostack, readonly, pure)
            )
        };
        p
    }};
}

/// The front's `sockexit_front_attach`, or 0 when no front is loaded.
pub fn attach_fn() -> usize {
    weak!("sockexit_front_attach")
}

/// `dlsym(RTLD_NEXT, name)` as the front sees it (the next definition after the
/// object programs preload: an interposer listed after it is reached, as with a single
/// library), `None` without a front. Loaded `RTLD_LOCAL`, our own `RTLD_NEXT` would
/// search only our dependencies.
pub fn next(name: &std::ffi::CStr) -> Option<usize> {
    match weak!("sockexit_front_next") {
        0 => None,
        f => {
            type NextFn = unsafe extern "C" fn(*const libc::c_char) -> usize;
            // SAFETY: the front's function, with a NUL-terminated name.
            Some(unsafe { std::mem::transmute::<usize, NextFn>(f)(name.as_ptr()) })
        }
    }
}

/// What the front recorded at exec (`crates/front` `FrontStart`; same layout).
#[repr(C)]
pub struct FrontStart {
    pub abi: usize,
    pub valid: usize,
    pub place: [u64; 3],
    pub seccomp: i64,
    pub euid: u32,
    pub secure: u32,
    pub run_dir: *const libc::c_char,
    pub on_error: *const libc::c_char,
    pub log: *const libc::c_char,
}

/// The front's record of the start, when it made one (a core loaded after exec).
pub fn start() -> Option<&'static FrontStart> {
    match weak!("sockexit_front_start") {
        0 => None,
        f => {
            type StartFn = unsafe extern "C" fn() -> *const FrontStart;
            // SAFETY: the front's function returns a pointer to its static record,
            // written once before the program ran.
            let p = unsafe { std::mem::transmute::<usize, StartFn>(f)() };
            // SAFETY: as above: valid for the life of the process.
            unsafe { p.as_ref() }.filter(|s| s.abi == abi::ABI && s.valid != 0)
        }
    }
}

/// A recorded environment value as an owned string.
pub fn start_env(p: *const libc::c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the front recorded a string of the initial environment.
    let s = unsafe { std::ffi::CStr::from_ptr(p) };
    Some(s.to_string_lossy().into_owned()).filter(|v| !v.is_empty())
}

/// Our function for each hooked name.
fn ours(name: &str) -> usize {
    use super::{confine as c, dl as d, exec as e, exports as x, rcmd as r};
    let f: *const c_void = match name {
        "accept" => x::accept as *const c_void,
        "accept4" => x::accept4 as *const c_void,
        "connect" => x::connect as *const c_void,
        "__connect" => x::__connect as *const c_void,
        "listen" => x::listen as *const c_void,
        "sendto" => x::sendto as *const c_void,
        "sendmsg" => x::sendmsg as *const c_void,
        "sendmmsg" => x::sendmmsg as *const c_void,
        "dlsym" => d::dlsym as *const c_void,
        "dlvsym" => d::dlvsym as *const c_void,
        "dlopen" => d::dlopen as *const c_void,
        "dlmopen" => d::dlmopen as *const c_void,
        "execve" => e::execve as *const c_void,
        "execv" => e::execv as *const c_void,
        "execvp" => e::execvp as *const c_void,
        "execvpe" => e::execvpe as *const c_void,
        "execveat" => e::execveat as *const c_void,
        "fexecve" => e::fexecve as *const c_void,
        "execl" => e::execl as *const c_void,
        "execle" => e::execle as *const c_void,
        "execlp" => e::execlp as *const c_void,
        "posix_spawn" => e::posix_spawn as *const c_void,
        "posix_spawnp" => e::posix_spawnp as *const c_void,
        "rcmd" => r::rcmd as *const c_void,
        "rcmd_af" => r::rcmd_af as *const c_void,
        "rexec" => r::rexec as *const c_void,
        "rexec_af" => r::rexec_af as *const c_void,
        "chroot" => c::chroot as *const c_void,
        "unshare" => c::unshare as *const c_void,
        "setns" => c::setns as *const c_void,
        "prctl" => c::prctl as *const c_void,
        _ => std::ptr::null(),
    };
    f as usize
}

macro_rules! names {
    ($($n:ident)*) => { [$(stringify!($n),)*] };
}

/// The hooked names in the front's table order.
const NAMES: [&str; abi::HOOKS] = abi::for_each_hook!(names);

/// Give the front our functions (from the constructor, first thing).
pub fn attach() {
    let f = attach_fn();
    if f == 0 {
        return;
    }
    let table = NAMES.map(ours);
    type AttachFn = unsafe extern "C" fn(usize, *const usize, usize) -> libc::c_int;
    // SAFETY: the front's entry point, with the table it expects (abi.rs).
    unsafe { std::mem::transmute::<usize, AttachFn>(f)(abi::ABI, table.as_ptr(), table.len()) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_hooked_name_is_ours() {
        for n in super::NAMES {
            assert_ne!(super::ours(n), 0, "{n}");
        }
    }
}
