//! `libsockexit.so`: the front of the library, the object `LD_PRELOAD` and
//! `/etc/ld.so.preload` name.
//!
//! Every dynamically linked program on a machine in system-wide mode loads it, and the
//! dynamic loader's work for an object grows with what it imports: the Rust library
//! (`libsockexit_core.so`, the hooks, the engine, the audit sinks) imports 78 libc
//! functions, about 87 k instructions of symbol binding at every exec (BENCHMARKS.md,
//! item 7). This object exports the same hooked symbols, imports three names
//! (`dl_iterate_phdr`, `getauxval`, `environ`: its system calls are its own, `sys`,
//! and what else it needs of libc it finds by name when it needs it), and does almost
//! nothing at load: each export jumps through one table entry, which starts
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
//! to the next definition after us until then, looked up at its first call in the
//! objects the constructor listed, without the loader's lock (children get the library
//! from `/etc/ld.so.preload` anyway, and an exec after `vfork` or in a signal handler
//! must never `dlopen`), and
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
mod sys;

use abi::{for_each_hook, ABI, HOOKS};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
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

/// From an export whose entry is empty: for the exec family while the core waits
/// (system-wide, see the module), the next definition after us; otherwise load the
/// core, and if that fails, the stand-ins. Returns with `slot` non-zero.
extern "C" fn fill(slot: &AtomicUsize) {
    if CORE.load(Ordering::Acquire) == 0 && DEFERRED.load(Ordering::Acquire) {
        if let Some(name) = exec_name(slot) {
            let p = with_objects(|o| {
                o.me()
                    .map_or(0, |me| o.next_after(me.base, name.as_bytes()))
            });
            // A concurrent attach (the core loaded meanwhile) wins.
            if p != 0
                && slot
                    .compare_exchange(0, p, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                || slot.load(Ordering::Acquire) != 0
            {
                return;
            }
        }
    }
    if CORE.load(Ordering::Acquire) == 0 {
        load_core();
    }
    if slot.load(Ordering::Acquire) == 0 {
        closed::install(&TABLE.slots(), &NAMES);
    }
}

/// The name of `slot` when it is one of the exec family's.
fn exec_name(slot: &AtomicUsize) -> Option<&'static str> {
    let i = TABLE.slots().iter().position(|s| core::ptr::eq(*s, slot))?;
    NAMES.get(i).copied().filter(|n| EXEC_FAMILY.contains(n))
}

struct ObjectsCell(core::cell::UnsafeCell<elf::Objects>);
// SAFETY: written once, by whoever wins OBJECTS_STATE's 0 -> 1, before it says 2; read
// only after 2.
unsafe impl Sync for ObjectsCell {}
static OBJECTS: ObjectsCell = ObjectsCell(core::cell::UnsafeCell::new(elf::Objects::EMPTY));
/// 0: not read; 1: being read; 2: read.
static OBJECTS_STATE: AtomicU8 = AtomicU8::new(0);

/// `f` over the objects loaded at start (our constructor reads them), so that later
/// lookups (an exec from a signal handler) never take the loader's lock. A caller that
/// finds them being read (another thread, a signal handler) reads its own copy.
fn with_objects<R>(f: impl FnOnce(&elf::Objects) -> R) -> R {
    match OBJECTS_STATE.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // SAFETY: we won 0 -> 1: nobody else reads or writes until we say 2.
            unsafe { (*OBJECTS.0.get()).read_into(fill as *const () as usize) };
            OBJECTS_STATE.store(2, Ordering::Release);
            // SAFETY: written above, never again.
            f(unsafe { &*OBJECTS.0.get() })
        }
        // SAFETY: 2: written once, never again.
        Err(2) => f(unsafe { &*OBJECTS.0.get() }),
        Err(_) => f(&elf::Objects::read(fill as *const () as usize)),
    }
}

/// `dlopen` the core beside this file. Racing threads both call `dlopen`, which the
/// loader serialises; the second finds it loaded.
fn load_core() {
    let Some(libc) = elf::Libc::find() else {
        let _ = sys::write(
            2,
            b"sockexit: ERROR: libc.so.6 not found among the loaded objects; failing closed: \
              every IP accept, connect and listen is refused\n",
        );
        CORE.store(2, Ordering::Release);
        return;
    };
    let dlopen = libc.lookup(b"dlopen");
    let mut path = [0u8; 4096];
    if dlopen == 0 || !core_path(&libc, &mut path) {
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
    with_objects(|o| o.me())
        .filter(|m| !m.name.is_null())
        .map(|m| (m.base, m.name))
}

/// `DIR/libsockexit_core.so`, where DIR holds this library's file (symbolic links
/// resolved: the core is installed beside the real file), NUL-terminated.
fn core_path(libc: &elf::Libc, out: &mut [u8; 4096]) -> bool {
    const CORE_NAME: &[u8] = b"libsockexit_core.so\0";
    let Some((_, name)) = me() else {
        return false;
    };
    let mut real = [0u8; 4096];
    type RealpathFn = unsafe extern "C" fn(*const c_char, *mut c_char) -> *mut c_char;
    let r = match libc.lookup(b"realpath") {
        0 => core::ptr::null_mut(),
        // SAFETY: libc's realpath, found by name, with a NUL-terminated path and a
        // PATH_MAX buffer.
        f => unsafe {
            core::mem::transmute::<usize, RealpathFn>(f)(name, real.as_mut_ptr() as *mut c_char)
        },
    };
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

/// `name`'s value in the current environment when set and not empty (never under
/// AT_SECURE), read from `environ` as `getenv` would.
fn env(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    let name = name.to_bytes();
    let mut v = None;
    each_env(|e| match value_of(e, name) {
        Some(x) => {
            v = x;
            false
        }
        None => true,
    });
    v
}

/// For `NAME=value` at `e` and `NAME`: `Some(the value, None when empty)`; `None` for
/// another variable. Only the bytes that match are read: a variable is passed over
/// without measuring it (some are kilobytes long).
fn value_of(e: *const u8, name: &[u8]) -> Option<Option<&'static [u8]>> {
    // SAFETY: `e` is a NUL-terminated string of the environment; the comparison stops
    // at its first differing byte, at the latest its NUL (`name` holds none).
    unsafe {
        for (i, &c) in name.iter().enumerate() {
            if *e.add(i) != c {
                return None;
            }
        }
        if *e.add(name.len()) != b'=' {
            return None;
        }
        let v = core::ffi::CStr::from_ptr(e.add(name.len() + 1) as *const c_char).to_bytes();
        Some(Some(v).filter(|v| !v.is_empty()))
    }
}

/// `f` over each `NAME=value` string of the environment until it returns false;
/// nothing under AT_SECURE.
fn each_env(mut f: impl FnMut(*const u8) -> bool) {
    if sys::secure() {
        return;
    }
    let mut p = sys::environ();
    if p.is_null() {
        return;
    }
    // SAFETY: `environ` is a null-terminated array of NUL-terminated strings, which the
    // constructor reads before the program can change it; later callers read it as
    // getenv does (the strings of the initial environment are never freed).
    unsafe {
        while !(*p).is_null() {
            if !f(*p as *const u8) {
                return;
            }
            p = p.add(1);
        }
    }
}

/// The variables the constructor looks at, from one pass over the environment (the
/// first of a name counts, as for `getenv`; an empty value is none).
#[derive(Default)]
struct StartEnv {
    policy: Seen,
    preload: Seen,
    run_dir: Seen,
    on_error: Seen,
    log: Seen,
}

/// A variable: not met yet (`None`), met empty (`Some(None)`), or its value.
type Seen = Option<Option<&'static [u8]>>;

impl StartEnv {
    fn read() -> StartEnv {
        let mut s = StartEnv::default();
        each_env(|e| {
            // SAFETY: a NUL-terminated string has a first byte.
            let first = unsafe { *e };
            // Most variables are passed over at their first byte.
            if first != b'S' && first != b'L' {
                return true;
            }
            let fields: [(&mut Seen, &[u8]); 5] = [
                (&mut s.policy, b"SOCKEXIT_POLICY"),
                (&mut s.preload, b"LD_PRELOAD"),
                (&mut s.run_dir, b"SOCKEXIT_RUN_DIR"),
                (&mut s.on_error, b"SOCKEXIT_ON_ERROR"),
                (&mut s.log, b"SOCKEXIT_LOG"),
            ];
            for (field, name) in fields {
                if field.is_none() {
                    *field = value_of(e, name);
                }
            }
            true
        });
        s
    }
}

/// A recorded value: the string in the environment, NUL-terminated there, or null.
fn raw(v: Seen) -> *const c_char {
    v.flatten()
        .map_or(core::ptr::null(), |v| v.as_ptr() as *const c_char)
}

/// What the process was at exec, for a core loaded later: `src/state.rs` reads it
/// through [`sockexit_front_start`] instead of looking at a process the program may
/// have changed by then (its namespace, root, privileges, seccomp mode, environment).
#[repr(C)]
pub struct FrontStart {
    pub abi: usize,
    /// 0: nothing recorded (the core was loaded at start and reads its own).
    pub valid: usize,
    /// Root directory (device, inode, mount id: see `place`).
    pub place: [u64; 3],
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
    place: [0; 3],
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

/// Root directory (device, inode, mount id), as `src/sys/mod.rs::place` reads it
/// (which says why that also tells a new mount namespace).
fn place() -> Option<[u64; 3]> {
    const STATX_MNT_ID_UNIQUE: u32 = 0x4000;
    let r = sys::statx(
        c"/".as_ptr(),
        libc::STATX_INO | libc::STATX_MNT_ID | STATX_MNT_ID_UNIQUE,
    )?;
    if r.stx_mask & (STATX_MNT_ID_UNIQUE | libc::STATX_MNT_ID) == 0 {
        return None;
    }
    let dev = ((r.stx_dev_major as u64) << 32) | r.stx_dev_minor as u64;
    Some([dev, r.stx_ino, r.stx_mnt_id])
}

/// (device, inode) of the file at `path` (NUL-terminated), following links.
fn file_id(path: *const c_char) -> Option<(u32, u32, u64)> {
    sys::statx(path, libc::STATX_INO).map(|st| (st.stx_dev_major, st.stx_dev_minor, st.stx_ino))
}

/// Whether an entry of `LD_PRELOAD` (`list`) is this very file (by device and inode,
/// so a symbolic link or a copy under another name counts as the name it resolves to;
/// by file name for a bare name the loader searched for).
fn preloaded_by_env(list: &[u8], my_name: *const c_char) -> bool {
    // SAFETY: the loader's NUL-terminated path.
    let name = unsafe { core::ffi::CStr::from_ptr(my_name) }.to_bytes();
    let my_base = name.rsplit(|&c| c == b'/').next().unwrap_or_default();
    let Some(mine) = file_id(my_name) else {
        return true;
    };
    list.split(|&c| c == b':' || c == b' ').any(|e| {
        if !e.contains(&b'/') {
            return e == my_base;
        }
        // Not zeroed: only the entry and its NUL are written, and read.
        let mut buf = [core::mem::MaybeUninit::<u8>::uninit(); 4096];
        if e.len() >= buf.len() {
            return false;
        }
        for (o, &c) in buf.iter_mut().zip(e.iter().chain(b"\0")) {
            o.write(c);
        }
        file_id(buf.as_ptr() as *const c_char) == Some(mine)
    })
}

/// Record the start for a core loaded later; false when it cannot be (then the core
/// is loaded now).
fn record_start(e: &StartEnv) -> bool {
    let Some(place) = place() else {
        return false;
    };
    // SAFETY: the constructor is the only writer, before the program runs.
    let st = unsafe { &mut *START.0.get() };
    st.place = place;
    st.seccomp = sys::seccomp_mode();
    st.euid = sys::geteuid();
    st.secure = sys::secure() as u32;
    st.run_dir = raw(e.run_dir);
    st.on_error = raw(e.on_error);
    st.log = raw(e.log);
    st.valid = 1;
    true
}

/// `SOCKEXIT_ON_ERROR=allow` as the constructor found it (0: not read yet, 1: allow,
/// 2: refuse): the fail-closed stand-ins go by the start's environment, as the core
/// does, never by what the program has put there since.
static ON_ERROR: AtomicU8 = AtomicU8::new(0);

/// Whether a core that cannot load lets every call through (`SOCKEXIT_ON_ERROR=allow`
/// at start).
pub(crate) fn on_error_allow() -> bool {
    match ON_ERROR.load(Ordering::Acquire) {
        0 => env(c"SOCKEXIT_ON_ERROR") == Some(b"allow".as_slice()),
        v => v == 1,
    }
}

/// Set once the start is recorded and the core left for later (see [`fill`]).
static DEFERRED: AtomicBool = AtomicBool::new(false);

extern "C" fn front_init() {
    // One read of the loaded objects serves the constructor and every later lookup.
    let Some((me, first)) = with_objects(|o| {
        let me = o.me()?;
        Some((me, o.first_before(me.base, b"sockexit_front_attach")))
    }) else {
        return;
    };
    // A second copy (another path in LD_PRELOAD, or also in /etc/ld.so.preload)
    // forwards to the first, whose core serves both: two cores would both attach to
    // the first front.
    if first != 0 {
        for (slot, name) in TABLE.slots().into_iter().zip(NAMES) {
            let p = with_objects(|o| {
                o.iter()
                    .find(|x| x.base == first)
                    .map_or(0, |x| x.lookup(name.as_bytes()))
            });
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
    let e = StartEnv::read();
    let allow = e.on_error.flatten() == Some(b"allow".as_slice());
    ON_ERROR.store(if allow { 1 } else { 2 }, Ordering::Release);
    let preloaded = match e.preload.flatten() {
        Some(list) => me.name.is_null() || preloaded_by_env(list, me.name),
        None => false,
    };
    if e.policy.flatten().is_some() || preloaded || !record_start(&e) {
        load_core();
        return;
    }
    DEFERRED.store(true, Ordering::Release);
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = front_init;

/// No code here panics (no allocation, no formatting, no indexing); if a check ever
/// failed, stop rather than unwind into C.
#[cfg(panic = "abort")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // An invalid instruction (SIGILL): abort(3) would be one more import to bind.
    loop {
        // SAFETY: ud2 raises SIGILL and never returns normally.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
    }
}
