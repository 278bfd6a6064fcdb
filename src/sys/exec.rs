//! The exec family: every exec carries the library and the policy to the child,
//! whatever environment the program builds for it.
//!
//! nginx re-executes itself on a binary upgrade with an environment it rebuilt; daemons
//! sanitise their children's environment; `env -i`, `clearenv()` + `exec`,
//! `posix_spawn` with an empty environment. Each would start the child without the
//! library. So when the new environment lacks our library in `LD_PRELOAD`, or names
//! another policy (or none), the hooks hand the real call an environment with
//! `LD_PRELOAD` (ours first, the program's own entries kept), `SOCKEXIT_POLICY` (the
//! policy this process runs under) and `SOCKEXIT_ON_ERROR` (as this process has it) put
//! back. Everything else in the environment is left as the program gave it.
//!
//! The hooks may run in the child of `vfork()` (which shares the parent's memory) and
//! must be as async-signal-safe as the socket hooks: the entries are prepared at load
//! ([`prepare`]), and the new environment is built on the stack — an `mmap` only for an
//! environment of more than [`STACK_ENTRIES`] entries or an `LD_PRELOAD` longer than
//! [`STACK_BYTES`] (after `vfork` that mapping stays in the parent; it is that rare).
//! No allocation, no lock.

use super::c_int;
use libc::{c_char, pid_t};
use std::ffi::{CStr, CString};
use std::sync::OnceLock;

/// What a child must carry, prepared at load (allocation is fine there).
struct Carry {
    /// Our library's absolute path.
    lib: Vec<u8>,
    /// `SOCKEXIT_POLICY=/abs/policy.yaml`.
    policy: CString,
    /// The other variables a child must have exactly as this process has them (or
    /// not at all): `SOCKEXIT_ON_ERROR`, `SOCKEXIT_RUN_DIR` (where published policies
    /// are). Each is the `KEY=` prefix and, when this process has it, the whole entry.
    same: [(&'static [u8], Option<CString>); 2],
}

static CARRY: OnceLock<Carry> = OnceLock::new();

/// Prepare the entries children get (from the load-time constructor). Before it runs
/// (another library's constructor execs), environments pass unchanged.
pub fn prepare(policy: &std::path::Path, on_error_allow: bool) {
    use std::os::unix::ffi::OsStrExt;
    let Some(lib) = own_path() else { return };
    let mut p = b"SOCKEXIT_POLICY=".to_vec();
    p.extend_from_slice(policy.as_os_str().as_bytes());
    let Ok(policy) = CString::new(p) else { return };
    let on_error = on_error_allow.then(|| c"SOCKEXIT_ON_ERROR=allow".to_owned());
    let run_dir = crate::state::env_var("SOCKEXIT_RUN_DIR")
        .filter(|d| !d.is_empty())
        .and_then(|d| CString::new(format!("SOCKEXIT_RUN_DIR={d}")).ok());
    let _ = CARRY.set(Carry {
        lib,
        policy,
        same: [
            (b"SOCKEXIT_ON_ERROR=", on_error),
            (b"SOCKEXIT_RUN_DIR=", run_dir),
        ],
    });
}

/// The preloaded library's absolute path (`dladdr` of one of its functions, canonicalised: an
/// `LD_PRELOAD=./libsockexit.so` must still be found after the child's `chdir`).
fn own_path() -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: Dl_info is plain old data; dladdr fills it for an address in a loaded
    // object and returns 0 otherwise.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // Children are given the front (`libsockexit.so`) when it loaded us.
    let me = match super::front::attach_fn() {
        0 => prepare as *const libc::c_void,
        f => f as *const libc::c_void,
    };
    // SAFETY: the address of a function in a loaded object.
    if unsafe { libc::dladdr(me, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr returned a NUL-terminated path owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(name.to_bytes()));
    let abs = std::fs::canonicalize(path).ok()?;
    Some(abs.as_os_str().as_bytes().to_vec())
}

/// Environment entries built on the stack up to this count.
pub const STACK_ENTRIES: usize = 1024;
/// Bytes of the merged `LD_PRELOAD=` entry built on the stack.
pub const STACK_BYTES: usize = 4096;

type Env = *const *const c_char;

extern "C" {
    static environ: *const *const c_char;
}

/// What the environment lacks.
struct Scan {
    count: usize,
    /// The (last) `LD_PRELOAD=` value, when there is one.
    preload: Option<&'static [u8]>,
    ok: bool,
}

fn entry_value<'a>(e: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    e.strip_prefix(key)?.strip_prefix(b"=")
}

/// # Safety
/// `env` is null or a NULL-terminated array of NUL-terminated strings.
unsafe fn scan(env: Env, c: &Carry) -> Scan {
    let (mut count, mut preload, mut has_lib) = (0, None, false);
    let (mut policy_ok, mut policy_seen) = (true, 0);
    let mut same_ok = [true; 2];
    let mut same_seen = [0usize; 2];
    if !env.is_null() {
        while !(*env.add(count)).is_null() {
            let e = CStr::from_ptr(*env.add(count)).to_bytes();
            count += 1;
            if let Some(v) = entry_value(e, b"LD_PRELOAD") {
                // The dynamic loader takes the last one.
                has_lib = v
                    .split(|&b| b == b' ' || b == b':')
                    .any(|t| t == c.lib.as_slice());
                preload = Some(std::slice::from_raw_parts(v.as_ptr(), v.len()));
            } else if e.starts_with(b"SOCKEXIT_POLICY=") {
                policy_seen += 1;
                policy_ok &= e == c.policy.as_bytes();
            } else if let Some(i) = c.same.iter().position(|(k, _)| e.starts_with(k)) {
                same_seen[i] += 1;
                same_ok[i] &= Some(e) == c.same[i].1.as_deref().map(CStr::to_bytes);
            }
        }
    }
    let same = (0..2).all(|i| same_ok[i] && same_seen[i] == usize::from(c.same[i].1.is_some()));
    Scan {
        count,
        preload,
        ok: has_lib && policy_ok && policy_seen == 1 && same,
    }
}

/// Memory for the new environment: on the stack, or mapped when too big.
struct Mapped {
    ptr: *mut u8,
    len: usize,
}

impl Mapped {
    fn new(len: usize) -> Option<Mapped> {
        // SAFETY: an anonymous private mapping; checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (p != libc::MAP_FAILED).then_some(Mapped {
            ptr: p as *mut u8,
            len,
        })
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: our own mapping of that length.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// Call `f` with the environment the child must get: `env` itself when it already
/// carries the library and the policy, else a copy with them put back.
///
/// # Safety
/// `env` is null or a NULL-terminated array of NUL-terminated strings that stays valid
/// during the call.
pub unsafe fn with_env<R>(env: Env, f: impl FnOnce(Env) -> R) -> R {
    let Some(c) = CARRY.get() else { return f(env) };
    let s = scan(env, c);
    if s.ok {
        return f(env);
    }
    // LD_PRELOAD=<lib>[ <the program's own>]\0
    let pre_len = 11 + c.lib.len() + s.preload.map_or(0, |p| p.len() + 1) + 1;
    let mut pre_stack = [0u8; STACK_BYTES];
    let pre_map;
    let pre: &mut [u8] = if pre_len <= STACK_BYTES {
        &mut pre_stack[..pre_len]
    } else {
        match Mapped::new(pre_len) {
            Some(m) => {
                pre_map = m;
                std::slice::from_raw_parts_mut(pre_map.ptr, pre_len)
            }
            None => return f(env),
        }
    };
    let mut at = 0;
    for part in [b"LD_PRELOAD=".as_slice(), &c.lib] {
        pre[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    if let Some(p) = s.preload.filter(|p| !p.is_empty()) {
        pre[at] = b' ';
        pre[at + 1..at + 1 + p.len()].copy_from_slice(p);
        at += 1 + p.len();
    }
    pre[at] = 0;

    // The program's entries but LD_PRELOAD/SOCKEXIT_POLICY/SOCKEXIT_ON_ERROR, then ours.
    let n = s.count + 5;
    let mut env_stack = [std::ptr::null::<c_char>(); STACK_ENTRIES];
    let env_map;
    let out: &mut [*const c_char] = if n <= STACK_ENTRIES {
        &mut env_stack[..n]
    } else {
        match Mapped::new(n * std::mem::size_of::<*const c_char>()) {
            Some(m) => {
                env_map = m;
                std::slice::from_raw_parts_mut(env_map.ptr as *mut *const c_char, n)
            }
            None => return f(env),
        }
    };
    let mut k = 0;
    for i in 0..s.count {
        let e = *env.add(i);
        let b = CStr::from_ptr(e).to_bytes();
        if entry_value(b, b"LD_PRELOAD").is_some()
            || b.starts_with(b"SOCKEXIT_POLICY=")
            || c.same.iter().any(|(k, _)| b.starts_with(k))
        {
            continue;
        }
        out[k] = e;
        k += 1;
    }
    out[k] = pre.as_ptr() as *const c_char;
    out[k + 1] = c.policy.as_ptr();
    k += 2;
    for o in c.same.iter().filter_map(|(_, v)| v.as_ref()) {
        out[k] = o.as_ptr();
        k += 1;
    }
    out[k] = std::ptr::null();
    f(out.as_ptr())
}

/// The process's environment (`environ`), for the exec forms that use it.
fn current() -> Env {
    // SAFETY: reading libc's `environ` pointer; a program may change it, never
    // concurrently with its own exec.
    unsafe { environ }
}

/// Whether the ELF file open on `fd` is statically linked (no `PT_INTERP`: the
/// dynamic loader, and so `LD_PRELOAD`, never runs). Scripts and unreadable files: no.
fn fd_is_static(fd: c_int) -> bool {
    let mut h = [0u8; 64];
    // SAFETY: reading into our own buffer of that size.
    let n = unsafe { libc::pread(fd, h.as_mut_ptr() as *mut libc::c_void, h.len(), 0) };
    // ELF64, little-endian (x86-64 and aarch64, the targets this library builds for).
    if n != 64 || h[..4] != *b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return false;
    }
    let phoff = u64::from_le_bytes(h[32..40].try_into().unwrap_or_default());
    let phentsize = u16::from_le_bytes([h[54], h[55]]) as usize;
    let phnum = u16::from_le_bytes([h[56], h[57]]) as usize;
    let mut ph = [0u8; 64 * 56];
    if phentsize < 56 || phnum == 0 || phnum * phentsize > ph.len() {
        return false;
    }
    let len = phnum * phentsize;
    // SAFETY: as above.
    let n = unsafe { libc::pread(fd, ph.as_mut_ptr() as *mut libc::c_void, len, phoff as i64) };
    if n != len as isize {
        return false;
    }
    const PT_INTERP: u32 = 3;
    !(0..phnum).any(|i| {
        let o = i * phentsize;
        u32::from_le_bytes([ph[o], ph[o + 1], ph[o + 2], ph[o + 3]]) == PT_INTERP
    })
}

/// Warn (once per process) when `dirfd`/`path` is a statically linked program: the
/// exec is not refused, but nothing it does will be judged. Three system calls per
/// exec, no allocation (safe after `vfork`).
///
/// # Safety
/// `path` is null or a NUL-terminated string.
unsafe fn warn_if_static(dirfd: c_int, path: *const c_char) {
    if path.is_null() || CARRY.get().is_none() {
        return;
    }
    let fd = libc::openat(
        dirfd,
        path,
        libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY,
    );
    if fd < 0 {
        return;
    }
    let st = fd_is_static(fd);
    libc::close(fd);
    if st {
        crate::hook::coverage_lost(
            crate::hook::Lost::StaticExec,
            CStr::from_ptr(path).to_bytes(),
        );
    }
}

/// The same for a `PATH`-searched name: only when it names a path (contains `/`).
///
/// # Safety
/// As [`warn_if_static`].
unsafe fn warn_if_static_file(file: *const c_char) {
    if !file.is_null() && CStr::from_ptr(file).to_bytes().contains(&b'/') {
        warn_if_static(libc::AT_FDCWD, file);
    }
}

// ---------------------------------------------------------------------------------
// The exported exec family.
// ---------------------------------------------------------------------------------

type Argv = *const *const c_char;

/// Interposed `execve(2)`.
///
/// # Safety
/// Called by C code with execve(2)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn execve(path: *const c_char, argv: Argv, envp: Env) -> c_int {
    warn_if_static(libc::AT_FDCWD, path);
    with_env(envp, |e| super::real::execve(path, argv, e))
}

/// Interposed `execv(3)`: the process's environment.
///
/// # Safety
/// Called by C code with execv(3)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: Argv) -> c_int {
    execve(path, argv, current())
}

/// Interposed `execvpe(3)`.
///
/// # Safety
/// Called by C code with execvpe(3)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: Argv, envp: Env) -> c_int {
    warn_if_static_file(file);
    with_env(envp, |e| super::real::execvpe(file, argv, e))
}

/// Interposed `execvp(3)`: the process's environment.
///
/// # Safety
/// Called by C code with execvp(3)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: Argv) -> c_int {
    execvpe(file, argv, current())
}

/// Interposed `execveat(2)`.
///
/// # Safety
/// Called by C code with execveat(2)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn execveat(
    dirfd: c_int,
    path: *const c_char,
    argv: Argv,
    envp: Env,
    flags: c_int,
) -> c_int {
    warn_if_static(dirfd, path);
    with_env(envp, |e| super::real::execveat(dirfd, path, argv, e, flags))
}

/// Interposed `fexecve(3)`.
///
/// # Safety
/// Called by C code with fexecve(3)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: Argv, envp: Env) -> c_int {
    if CARRY.get().is_some() && fd_is_static(fd) {
        crate::hook::coverage_lost(
            crate::hook::Lost::StaticExec,
            b"the program behind fexecve's descriptor",
        );
    }
    with_env(envp, |e| super::real::fexecve(fd, argv, e))
}

/// Interposed `posix_spawn(3)`.
///
/// # Safety
/// Called by C code with posix_spawn(3)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut pid_t,
    path: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: Argv,
    envp: Env,
) -> c_int {
    warn_if_static(libc::AT_FDCWD, path);
    with_env(envp, |e| {
        super::real::posix_spawn(false, pid, path, actions, attr, argv, e)
    })
}

/// Interposed `posix_spawnp(3)`.
///
/// # Safety
/// Called by C code with posix_spawnp(3)'s arguments.
#[no_mangle]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut pid_t,
    file: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: Argv,
    envp: Env,
) -> c_int {
    warn_if_static_file(file);
    with_env(envp, |e| {
        super::real::posix_spawn(true, pid, file, actions, attr, argv, e)
    })
}

// The variadic forms: `execl(path, arg0, ..., NULL)`, `execlp(file, arg0, ..., NULL)`,
// `execle(path, arg0, ..., NULL, envp)`. Stable Rust cannot define a C-variadic
// function, so a few instructions spill the register arguments next to each other and
// hand Rust both halves: rsi, rdx, rcx, r8, r9 (five), then the caller's stack
// arguments above the return address. At entry rsp is 8 mod 16; five pushes make it
// 0 mod 16 for the call.
#[cfg(target_arch = "x86_64")]
macro_rules! variadic_exec {
    ($name:ident, $imp:ident) => {
        /// Interposed variadic exec form (see the comment above).
        ///
        /// # Safety
        /// Called by C code with the exec(3) arguments it documents.
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn $name() {
            std::arch::naked_asm!(
                "push r9",
                "push r8",
                "push rcx",
                "push rdx",
                "push rsi",
                "mov rsi, rsp",
                "lea rdx, [rsp + 48]",
                "call {imp}",
                "add rsp, 40",
                "ret",
                imp = sym $imp,
            )
        }
    };
}

#[cfg(target_arch = "x86_64")]
variadic_exec!(execl, execl_impl);
#[cfg(target_arch = "x86_64")]
variadic_exec!(execlp, execlp_impl);
#[cfg(target_arch = "x86_64")]
variadic_exec!(execle, execle_impl);

/// The variadic arguments: five from registers, then the stack, in order.
struct VaArgs {
    regs: *const *const c_char,
    stack: *const *const c_char,
    i: usize,
}

impl VaArgs {
    unsafe fn next(&mut self) -> *const c_char {
        let p = if self.i < 5 {
            *self.regs.add(self.i)
        } else {
            *self.stack.add(self.i - 5)
        };
        self.i += 1;
        p
    }
}

/// Collect `arg0, ..., NULL` into an argv array and call `f` with it; for `execle`,
/// also the `envp` that follows the NULL.
///
/// # Safety
/// `regs`/`stack` are what the variadic stub passes for a call made with a
/// NULL-terminated argument list.
unsafe fn with_argv(
    regs: *const *const c_char,
    stack: *const *const c_char,
    f: impl FnOnce(Argv, Env) -> c_int,
) -> c_int {
    let mut va = VaArgs { regs, stack, i: 0 };
    let mut n = 0;
    while !va.next().is_null() {
        n += 1;
    }
    let after = va.next(); // execle's envp (read only by execle)
    let mut va = VaArgs { regs, stack, i: 0 };
    let mut argv_stack = [std::ptr::null::<c_char>(); STACK_ENTRIES];
    let argv_map;
    let argv: &mut [*const c_char] = if n < STACK_ENTRIES {
        &mut argv_stack[..n + 1]
    } else {
        match Mapped::new((n + 1) * std::mem::size_of::<*const c_char>()) {
            Some(m) => {
                argv_map = m;
                std::slice::from_raw_parts_mut(argv_map.ptr as *mut *const c_char, n + 1)
            }
            None => {
                super::set_errno(libc::E2BIG);
                return -1;
            }
        }
    };
    for slot in argv.iter_mut().take(n) {
        *slot = va.next();
    }
    argv[n] = std::ptr::null();
    f(argv.as_ptr(), after as Env)
}

unsafe extern "C" fn execl_impl(
    path: *const c_char,
    regs: *const *const c_char,
    stack: *const *const c_char,
) -> c_int {
    with_argv(regs, stack, |argv, _| execve(path, argv, current()))
}

unsafe extern "C" fn execlp_impl(
    file: *const c_char,
    regs: *const *const c_char,
    stack: *const *const c_char,
) -> c_int {
    with_argv(regs, stack, |argv, _| execvpe(file, argv, current()))
}

unsafe extern "C" fn execle_impl(
    path: *const c_char,
    regs: *const *const c_char,
    stack: *const *const c_char,
) -> c_int {
    with_argv(regs, stack, |argv, envp| execve(path, argv, envp))
}
