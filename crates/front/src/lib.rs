//! `libsockexit.so`: the front of the library, the object `LD_PRELOAD` and
//! `/etc/ld.so.preload` name.
//!
//! Every dynamically linked program on a machine in system-wide mode loads it, and the
//! dynamic loader's work for an object grows with what it imports: the Rust library
//! (`libsockexit_core.so`, the hooks, the engine, the audit sinks) imports 78 libc
//! functions, about 87 k instructions of symbol binding at every exec (BENCHMARKS.md,
//! item 7). This object exports the same hooked symbols, imports a handful, and does
//! almost nothing at load: each export jumps through one table entry, which starts
//! empty; the first call of any of them `dlopen`s the core (`RTLD_LOCAL`), whose
//! constructor fills the table with its own functions ([`sockexit_front_attach`]),
//! and from then on every call is one indirect jump more than before.
//!
//! When the core is needed at once: with `SOCKEXIT_POLICY` set, or with `LD_PRELOAD`
//! in use (the exec hooks must give children the library back, whatever file name it
//! has), or when the start cannot be recorded, the constructor loads it, exactly as a
//! single library would have loaded. Otherwise (the system policy) the constructor
//! records the start ([`FrontStart`]: root, mount namespace, seccomp mode, uid, the
//! `SOCKEXIT_*` variables) for the core to use whenever it loads, the exec family goes
//! to the next definition after us until then (children get the library from
//! `/etc/ld.so.preload` anyway, and an exec after `vfork` must never `dlopen`), and
//! everything else loads the core at its first call. The core resolves its real
//! functions through [`sockexit_front_next`], the next definition after the front, so
//! an interposer preloaded after us is reached as it was with a single library. A
//! second copy of the front (another path) forwards to the first.
//!
//! If the core cannot be loaded, the IP calls fail closed (`closed`), as the core
//! does for a policy that does not load: one message, every IP accept, connect and
//! listen refused, unless `SOCKEXIT_ON_ERROR=allow`.
// Built for installation with the `front` profile (panic = "abort"), it links no
// standard library: std's panic runtime alone would import a few dozen functions that
// every program would pay to bind. Built with any other profile (the tests) it is an
// ordinary std cdylib, larger and identical in behaviour.
#![cfg_attr(panic = "abort", no_std)]
#![allow(clippy::missing_safety_doc)]

mod abi;
mod closed;
mod elf;

use abi::{for_each_hook, ABI, HOOKS};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use libc::{c_char, c_int, c_void};

macro_rules! define_hooks {
    ($($n:ident)*) => {
        /// One jump target per hooked symbol: 0 until known.
        #[repr(C)]
        pub struct Table {
            $($n: AtomicUsize,)*
        }

        static TABLE: Table = Table {
            $($n: AtomicUsize::new(0),)*
        };

        /// The hooked names, in table order.
        const NAMES: [&str; HOOKS] = [$(stringify!($n),)*];

        /// Our own exports, in table order.
        fn exports() -> [usize; HOOKS] {
            [$($n as *const () as usize,)*]
        }

        impl Table {
            fn slots(&self) -> [&AtomicUsize; HOOKS] {
                [$(&self.$n,)*]
            }
        }

        $(
            /// Jump to the table's entry, loading it first when it is empty. `r11` (not
            /// an argument register) carries the target; `rax` (the vector register
            /// count of a variadic call: `execl`, `prctl`) and every argument register
            /// are kept, and the caller's stack is untouched, so the core's function
            /// sees exactly the call the program made.
            #[unsafe(naked)]
            #[no_mangle]
            pub unsafe extern "C" fn $n() {
                core::arch::naked_asm!(
                    "mov r11, qword ptr [rip + {table} + {off}]",
                    "test r11, r11",
                    "jz 2f",
                    "jmp r11",
                    "2:",
                    // Entry rsp is 8 mod 16; seven pushes make it 0 mod 16 for the call.
                    "push rax",
                    "push rdi",
                    "push rsi",
                    "push rdx",
                    "push rcx",
                    "push r8",
                    "push r9",
                    "lea rdi, [rip + {table} + {off}]",
                    "call {fill}",
                    "pop r9",
                    "pop r8",
                    "pop rcx",
                    "pop rdx",
                    "pop rsi",
                    "pop rdi",
                    "pop rax",
                    "jmp qword ptr [rip + {table} + {off}]",
                    table = sym TABLE,
                    off = const core::mem::offset_of!(Table, $n),
                    fill = sym fill,
                )
            }
        )*
    };
}

for_each_hook!(define_hooks);

/// Our export for a hooked `name`, 0 for any other name.
pub(crate) fn our_export(name: &[u8]) -> usize {
    NAMES
        .iter()
        .zip(exports())
        .find(|(n, _)| n.as_bytes() == name)
        .map_or(0, |(_, p)| p)
}

/// The exec family: straight to libc's until the core is loaded (see the module).
const EXEC_FAMILY: [&str; 11] = [
    "execve",
    "execv",
    "execvp",
    "execvpe",
    "execveat",
    "fexecve",
    "execl",
    "execle",
    "execlp",
    "posix_spawn",
    "posix_spawnp",
];

/// 0: the core not tried; 1: attached; 2: it could not be loaded.
static CORE: AtomicU8 = AtomicU8::new(0);

/// Called by the core's constructor, before it runs anything else, with its own
/// functions in [`abi::for_each_hook`] order. Returns 0, or -1 for a core built for
/// another front (which then leaves the table as it is).
#[no_mangle]
pub unsafe extern "C" fn sockexit_front_attach(abi: usize, table: *const usize, n: usize) -> c_int {
    if abi != ABI || n != HOOKS || table.is_null() {
        return -1;
    }
    for (i, slot) in TABLE.slots().into_iter().enumerate() {
        // SAFETY: the core passes `n` == HOOKS entries.
        let p = unsafe { *table.add(i) };
        if p != 0 {
            slot.store(p, Ordering::Release);
        }
    }
    CORE.store(1, Ordering::Release);
    0
}

/// From an export whose entry is empty: load the core; if that fails, the stand-ins.
/// Returns with `slot` non-zero.
extern "C" fn fill(slot: &AtomicUsize) {
    if CORE.load(Ordering::Acquire) == 0 {
        load_core();
    }
    if slot.load(Ordering::Acquire) == 0 {
        closed::install(&TABLE.slots(), &NAMES);
    }
}

/// `dlopen` the core beside this file. Racing threads both call `dlopen`, which the
/// loader serialises; the second finds it loaded.
fn load_core() {
    let Some(libc) = elf::Libc::find() else {
        CORE.store(2, Ordering::Release);
        return;
    };
    let dlopen = libc.lookup(b"dlopen");
    let mut path = [0u8; 4096];
    if dlopen == 0 || !core_path(&mut path) {
        CORE.store(2, Ordering::Release);
        return;
    }
    type DlopenFn = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;
    // SAFETY: libc's dlopen, found by name; `path` is NUL-terminated.
    let dlopen: DlopenFn = unsafe { core::mem::transmute(dlopen) };
    // SAFETY: dlopen with a NUL-terminated path and valid flags.
    let h = unsafe {
        dlopen(
            path.as_ptr() as *const c_char,
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        )
    };
    if h.is_null() || CORE.load(Ordering::Acquire) != 1 {
        closed::say_failed(&libc, &path);
        CORE.store(2, Ordering::Release);
    }
}

/// Where this object is loaded and its file name (as the loader has it).
fn me() -> Option<(usize, *const c_char)> {
    // SAFETY: Dl_info is plain old data; dladdr fills it for an address in a loaded
    // object (one of our own functions).
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: the address of one of our own functions, and our Dl_info.
    if unsafe { libc::dladdr(fill as *const c_void, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    Some((info.dli_fbase as usize, info.dli_fname))
}

/// `DIR/libsockexit_core.so`, where DIR holds this library's file (symbolic links
/// resolved: the core is installed beside the real file), NUL-terminated.
fn core_path(out: &mut [u8; 4096]) -> bool {
    const CORE_NAME: &[u8] = b"libsockexit_core.so\0";
    let Some((_, name)) = me() else {
        return false;
    };
    let mut real = [0u8; 4096];
    // SAFETY: a NUL-terminated path and a PATH_MAX buffer.
    let r = unsafe { libc::realpath(name, real.as_mut_ptr() as *mut c_char) };
    let me: &[u8] = if r.is_null() {
        // SAFETY: dladdr returned a NUL-terminated path owned by the loader.
        unsafe { core::ffi::CStr::from_ptr(name) }.to_bytes()
    } else {
        let n = real.iter().position(|&c| c == 0).unwrap_or(0);
        real.get(..n).unwrap_or_default()
    };
    let dir: &[u8] = match me.iter().rposition(|&c| c == b'/') {
        Some(i) => me.get(..=i).unwrap_or(b"./"),
        None => b"./",
    };
    let mut n = 0;
    for (o, &c) in out.iter_mut().zip(dir.iter().chain(CORE_NAME)) {
        *o = c;
        n += 1;
    }
    n == dir.len() + CORE_NAME.len()
}

/// `name`'s value when set and not empty (never under AT_SECURE).
fn env(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: getauxval takes a type id; getenv a NUL-terminated name and returns null
    // or a string in the environment, which the constructor reads before anything can
    // change it.
    unsafe {
        if libc::getauxval(libc::AT_SECURE) != 0 {
            return None;
        }
        let v = libc::getenv(name.as_ptr());
        (!v.is_null())
            .then(|| core::ffi::CStr::from_ptr(v).to_bytes())
            .filter(|v| !v.is_empty())
    }
}

/// What the process was at exec, for a core loaded later: `src/state.rs` reads it
/// through [`sockexit_front_start`] instead of looking at a process the program may
/// have changed by then (its namespace, root, privileges, seccomp mode, environment).
#[repr(C)]
pub struct FrontStart {
    pub abi: usize,
    /// 0: nothing recorded (the core was loaded at start and reads its own).
    pub valid: usize,
    /// Root directory (device, inode, mount id) and mount namespace (device, inode).
    pub place: [u64; 5],
    pub seccomp: i64,
    pub euid: u32,
    pub secure: u32,
    /// `SOCKEXIT_RUN_DIR`, `SOCKEXIT_ON_ERROR`, `SOCKEXIT_LOG` as they were (strings of
    /// the initial environment, which `setenv` never frees), or null.
    pub run_dir: *const c_char,
    pub on_error: *const c_char,
    pub log: *const c_char,
}

struct StartCell(core::cell::UnsafeCell<FrontStart>);
// SAFETY: written once, by the constructor, before the program runs; read after.
unsafe impl Sync for StartCell {}

static START: StartCell = StartCell(core::cell::UnsafeCell::new(FrontStart {
    abi: ABI,
    valid: 0,
    place: [0; 5],
    seccomp: 0,
    euid: 0,
    secure: 0,
    run_dir: core::ptr::null(),
    on_error: core::ptr::null(),
    log: core::ptr::null(),
}));

/// For the core (weak symbol): the start the front recorded.
#[no_mangle]
pub extern "C" fn sockexit_front_start() -> *const FrontStart {
    START.0.get()
}

/// For the core (weak symbol): `dlsym(RTLD_NEXT, name)` as asked from the front —
/// the next definition after the object programs preload, so interposers listed
/// after us are reached as they were with a single library. 0 if none.
#[no_mangle]
pub unsafe extern "C" fn sockexit_front_next(name: *const c_char) -> usize {
    match me() {
        // SAFETY: the core passes a NUL-terminated name.
        Some((base, _)) if !name.is_null() => {
            elf::next_after(base, unsafe { core::ffi::CStr::from_ptr(name) }.to_bytes())
        }
        _ => 0,
    }
}

/// Root (device, inode, mount id) and mount namespace (device, inode), as
/// `src/sys/mod.rs::place` reads them.
fn place() -> Option<[u64; 5]> {
    // SAFETY: statx with NUL-terminated paths and our own buffers.
    let mut r: libc::statx = unsafe { core::mem::zeroed() };
    let mut n: libc::statx = unsafe { core::mem::zeroed() };
    let mask = libc::STATX_INO | libc::STATX_MNT_ID;
    // SAFETY: as above.
    if unsafe { libc::statx(libc::AT_FDCWD, c"/".as_ptr(), 0, mask, &mut r) } != 0
        || unsafe {
            libc::statx(
                libc::AT_FDCWD,
                c"/proc/self/ns/mnt".as_ptr(),
                0,
                libc::STATX_INO,
                &mut n,
            )
        } != 0
        || r.stx_mask & libc::STATX_MNT_ID == 0
    {
        return None;
    }
    let dev = |s: &libc::statx| ((s.stx_dev_major as u64) << 32) | s.stx_dev_minor as u64;
    Some([dev(&r), r.stx_ino, r.stx_mnt_id, dev(&n), n.stx_ino])
}

/// (device, inode) of the file at `path` (NUL-terminated), following links.
fn file_id(path: *const c_char) -> Option<(u32, u32, u64)> {
    // SAFETY: statx with a NUL-terminated path and our own buffer.
    let mut st: libc::statx = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::statx(libc::AT_FDCWD, path, 0, libc::STATX_INO, &mut st) } == 0).then_some((
        st.stx_dev_major,
        st.stx_dev_minor,
        st.stx_ino,
    ))
}

/// Whether an `LD_PRELOAD` entry is this very file (by device and inode, so a
/// symbolic link or a copy under another name counts as the name it resolves to; by
/// file name for a bare name the loader searched for). Only looked at when
/// `LD_PRELOAD` is set.
fn preloaded_by_env() -> bool {
    let Some(list) = env(c"LD_PRELOAD") else {
        return false;
    };
    let Some((_, name)) = me() else {
        return true;
    };
    // SAFETY: dladdr's NUL-terminated path.
    let my_name = unsafe { core::ffi::CStr::from_ptr(name) }.to_bytes();
    let my_base = my_name.rsplit(|&c| c == b'/').next().unwrap_or_default();
    let Some(mine) = file_id(name) else {
        return true;
    };
    list.split(|&c| c == b':' || c == b' ').any(|e| {
        if !e.contains(&b'/') {
            return e == my_base;
        }
        let mut buf = [0u8; 4096];
        let mut n = 0;
        for (o, &c) in buf.iter_mut().zip(e) {
            *o = c;
            n += 1;
        }
        n == e.len() && n < buf.len() && file_id(buf.as_ptr() as *const c_char) == Some(mine)
    })
}

/// Record the start for a core loaded later; false when it cannot be (then the core
/// is loaded now).
fn record_start() -> bool {
    let Some(place) = place() else {
        return false;
    };
    let raw =
        |c: &core::ffi::CStr| env(c).map_or(core::ptr::null(), |v| v.as_ptr() as *const c_char);
    // SAFETY: the constructor is the only writer, before the program runs.
    let st = unsafe { &mut *START.0.get() };
    st.place = place;
    // SAFETY: raw system calls without pointers; getauxval takes a type id.
    st.seccomp = unsafe { libc::syscall(libc::SYS_prctl, libc::PR_GET_SECCOMP) };
    st.euid = unsafe { libc::syscall(libc::SYS_geteuid) } as u32;
    st.secure = (unsafe { libc::getauxval(libc::AT_SECURE) } != 0) as u32;
    st.run_dir = raw(c"SOCKEXIT_RUN_DIR");
    st.on_error = raw(c"SOCKEXIT_ON_ERROR");
    st.log = raw(c"SOCKEXIT_LOG");
    st.valid = 1;
    true
}

extern "C" fn front_init() {
    let Some((base, _)) = me() else {
        return;
    };
    // A second copy (another path in LD_PRELOAD, or also in /etc/ld.so.preload)
    // forwards to the first, whose core serves both: two cores would both attach to
    // the first front.
    let objects = elf::Objects::read();
    let first = objects.first_definer(b"sockexit_front_attach");
    if first != 0 && first != base {
        for (slot, name) in TABLE.slots().into_iter().zip(NAMES) {
            let p = elf::in_object(first, name.as_bytes());
            if p != 0 {
                slot.store(p, Ordering::Release);
            }
        }
        CORE.store(1, Ordering::Release);
        return;
    }
    // Loaded at once when a policy is named, when LD_PRELOAD names this file (its exec
    // hooks must give children the library back, under whatever name it is given), or
    // when the start cannot be recorded for a later load.
    if env(c"SOCKEXIT_POLICY").is_some() || preloaded_by_env() || !record_start() {
        load_core();
        return;
    }
    for (slot, name) in TABLE.slots().into_iter().zip(NAMES) {
        if EXEC_FAMILY.contains(&name) {
            let p = objects.next_after(base, name.as_bytes());
            // A concurrent attach (another library's constructor made a call) wins.
            let _ = slot.compare_exchange(0, p, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = front_init;

/// No code here panics (no allocation, no formatting, no indexing); if a check ever
/// failed, stop rather than unwind into C.
#[cfg(panic = "abort")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: abort(3) takes no arguments and does not return.
    unsafe { libc::abort() }
}
