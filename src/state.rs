//! Configuration from the environment and the loaded policy, built once.
//!
//! With `SOCKEXIT_POLICY` set (`sockexit run`, a unit's drop-in) everything is *read*
//! in the constructor: the environment, the policy, every set file, every user and
//! group name. Only the parsing of big set files waits for the first IP call
//! ([`Loaded::Deferred`]), so a child that never opens a socket does not pay for a
//! 100,000-line block list, and nothing the program does after start-up (`chroot`,
//! seccomp, `chdir`, `clearenv`) can change which policy it runs under.
//!
//! Without it — the system policy, in every program `/etc/ld.so.preload` reaches —
//! the constructor only records the start ([`Start`]: the environment, whether the
//! process is privileged, its root directory) and the policy is read at the first
//! call that needs it, so a program that never makes an IP call reads nothing. What
//! could change the answer after start-up is closed off: the recorded environment and
//! privilege are used, not the current ones; `chroot`, `unshare`, `setns` and
//! `prctl(PR_SET_SECCOMP)` load first (`sys::confine`); a root changed past those
//! hooks makes the load fail closed.

use crate::live::Live;
use crate::sys;
use once_cell::race::OnceBox;
use sockexit_engine::{
    AuditConfig, AuditLog, Call, FilesResolver, LoadOptions, Needs, Permissions, Policy, Prepared,
    Snapshot,
};
use std::path::PathBuf;

/// Where the policy lives when `SOCKEXIT_POLICY` is unset or untrusted.
pub const DEFAULT_POLICY: &str = "/etc/sockexit/policy.yaml";

/// A set file larger than this is parsed at the first IP call rather than at
/// start-up: about 4,000 prefixes, 0.4 ms of parsing that every started process would
/// pay whether or not it ever opens a socket (BENCHMARKS.md, item 4). Smaller ones are
/// parsed at once, so their errors show at start-up.
pub const DEFER_SET_BYTES: usize = 64 * 1024;

/// The outcome of loading the policy.
pub enum Loaded {
    /// A valid policy, compiled at start-up.
    Policy(Policy),
    /// Read at start-up (every file, every name: nothing is read later, so a later
    /// chroot, seccomp filter, chdir or cleared environment changes nothing), its big
    /// set files compiled at the first IP call, before that call is decided.
    Deferred {
        snapshot: Snapshot,
        /// Lock-free and race-tolerant: a thread that finds it empty compiles and
        /// publishes, a racing thread's copy is dropped. No lock to leave held in a
        /// `fork()` child, nothing to wait on in a signal handler.
        compiled: OnceBox<Option<Policy>>,
    },
    /// Published by `sockexit apply`: the image in use, reloaded when the published
    /// generation changes (`crate::live`).
    Live(Box<Live>),
    /// Loading failed: refuse every IP call unless `SOCKEXIT_ON_ERROR=allow`.
    Failed,
}

/// Everything the hooks need, immutable after load.
pub struct State {
    pub loaded: Loaded,
    /// `SOCKEXIT_ON_ERROR=allow`, read at load time like every other variable.
    pub on_error_allow: bool,
    /// `/proc/self/exe`, read at load time when rules or audit lines need it.
    pub program: Option<Vec<u8>>,
    pub audit_enabled: bool,
    /// The policy path this process runs under, absolute (resolved against the working
    /// directory at load), for the children it execs.
    pub policy_path: PathBuf,
}

impl State {
    /// The policy to decide with, compiling a deferred one on first use; `None` when
    /// there is none (the caller fails closed unless [`State::on_error_allow`]).
    pub fn policy(&self) -> Option<&Policy> {
        match &self.loaded {
            Loaded::Policy(p) => Some(p),
            Loaded::Deferred { snapshot, compiled } => match compiled.get() {
                Some(p) => p.as_ref(),
                None => self.compile_deferred(snapshot, compiled),
            },
            Loaded::Live(l) => l.current().map(|c| &c.policy),
            Loaded::Failed => None,
        }
    }

    /// The revision of the dynamic sets' entries in force, for audit lines: `None`
    /// when the policy in use has no dynamic set (or their entries cannot be read),
    /// 0 for a policy that was never applied (nothing can have been added).
    pub fn sets_revision(&self) -> Option<u64> {
        if self.policy()?.dynamic_sets().is_empty() {
            return None;
        }
        match &self.loaded {
            Loaded::Live(l) => l.dynamic().map(|d| d.revision()),
            _ => Some(0),
        }
    }

    /// The live state, when the policy path was applied.
    pub fn live(&self) -> Option<&Live> {
        match &self.loaded {
            Loaded::Live(l) => Some(l),
            _ => None,
        }
    }

    /// The published generation deciding now, when the policy path was applied.
    pub fn generation(&self) -> Option<u64> {
        match &self.loaded {
            Loaded::Live(l) => l.current().map(|c| c.generation),
            _ => None,
        }
    }

    /// Once per process (per racing thread at most): out of line, so the hot path
    /// through the hooks stays small.
    #[cold]
    #[inline(never)]
    fn compile_deferred<'a>(
        &self,
        snapshot: &Snapshot,
        compiled: &'a OnceBox<Option<Policy>>,
    ) -> Option<&'a Policy> {
        compiled
            .get_or_init(|| match snapshot.compile() {
                Ok(p) => {
                    log::debug!(
                        "policy {}: {} bytes of set files compiled",
                        snapshot.path().display(),
                        snapshot.set_file_bytes()
                    );
                    Box::new(Some(p))
                }
                Err(e) => {
                    log_failure(&e, self.on_error_allow);
                    Box::new(None)
                }
            })
            .as_ref()
    }

    /// The audit settings, known at load time even when the sets are deferred.
    pub fn audit_config(&self) -> Option<&AuditConfig> {
        self.loaded.audit()
    }
}

impl Loaded {
    /// `audit:` — final at load time, deferred sets or not.
    fn audit(&self) -> Option<&AuditConfig> {
        match self {
            Loaded::Policy(p) => Some(p.audit()),
            Loaded::Deferred { snapshot, .. } => Some(snapshot.audit()),
            Loaded::Live(l) => l.current().map(|c| c.policy.audit()),
            Loaded::Failed => None,
        }
    }

    /// What the rules for `call` can look at — final at load time too.
    fn needs(&self, call: Call) -> Needs {
        match self {
            Loaded::Policy(p) => p.needs(call),
            Loaded::Deferred { snapshot, .. } => snapshot.needs(call),
            Loaded::Live(l) => l
                .current()
                .map(|c| c.policy.needs(call))
                .unwrap_or_default(),
            Loaded::Failed => Needs::default(),
        }
    }
}

/// Published once by the first load ([`load_now`] serialises loads without a lock a
/// `fork()` child could inherit).
static STATE: OnceBox<State> = OnceBox::new();

/// The pid of the process one of whose threads is loading, 0 when none.
static LOADER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// What the constructor saw, which the load must use even when it runs later.
static START: OnceBox<Start> = OnceBox::new();

/// The environment and identity of the process as it started. With `SOCKEXIT_POLICY`
/// set the policy is loaded in the constructor; without it (the system policy, e.g.
/// from `/etc/ld.so.preload`) it is loaded at the first call that needs it, so a
/// program that never makes an IP call reads nothing (issue 19). Either way the load
/// uses what is recorded here, never what the program changed since.
pub struct Start {
    /// `SOCKEXIT_POLICY` was set: load now.
    pub eager: bool,
    policy: PathBuf,
    run_dir: Option<String>,
    pub on_error_allow: bool,
    /// Root, or setuid/setgid, at start: a root daemon that drops privileges before its
    /// first IP call is still held to a root's file permissions (and to its uid as the
    /// owner files may have: `sockexit_engine::trust_uid`).
    strict: bool,
    pub uid: u32,
    /// For a deferred load: where the process saw the file system from at start
    /// (`sys::place`) and its seccomp mode. A process that changed either by a means
    /// the hooks did not see (`sys::confine`) fails closed rather than read a policy
    /// others may have put in its new view, or die of a filter that forbids reading.
    place: Option<[u64; 3]>,
    seccomp: i64,
}

impl Start {
    fn read() -> Start {
        if let Some(f) = sys::front::start() {
            return Start::recorded(f);
        }
        let policy = env_var("SOCKEXIT_POLICY").filter(|s| !s.is_empty());
        // Deferred only when the start can be recorded; otherwise loaded now, as with
        // SOCKEXIT_POLICY.
        let place = if policy.is_none() { sys::place() } else { None };
        let uid = sys::euid();
        Start {
            eager: place.is_none(),
            policy: policy
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_POLICY)),
            run_dir: env_var("SOCKEXIT_RUN_DIR").filter(|s| !s.is_empty()),
            on_error_allow: env_var("SOCKEXIT_ON_ERROR").as_deref() == Some("allow"),
            strict: uid == 0 || sys::at_secure(),
            uid,
            place,
            seccomp: if place.is_some() {
                sys::seccomp_mode()
            } else {
                0
            },
        }
    }

    /// What the front recorded at exec (it loads us later, at the first call that
    /// needs us; only the system policy is read that way).
    fn recorded(f: &sys::front::FrontStart) -> Start {
        let trusted = f.secure == 0;
        let env = |p| trusted.then(|| sys::front::start_env(p)).flatten();
        Start {
            eager: false,
            policy: PathBuf::from(DEFAULT_POLICY),
            run_dir: env(f.run_dir),
            on_error_allow: env(f.on_error).as_deref() == Some("allow"),
            strict: f.euid == 0 || f.secure != 0,
            uid: f.euid,
            place: Some(f.place),
            seccomp: f.seccomp,
        }
    }

    /// Why a deferred load must not read anything now, if it must not.
    fn moved(&self) -> Option<&'static str> {
        if self.eager {
            return None;
        }
        if self.seccomp == 0 && sys::seccomp_mode() != 0 {
            return Some("installed a seccomp filter");
        }
        (sys::place() != self.place).then_some("changed its root directory or mount namespace")
    }

    /// The absolute policy path, for the children this process execs.
    pub fn policy_path(&self) -> PathBuf {
        std::path::absolute(&self.policy).unwrap_or_else(|_| self.policy.clone())
    }
}

/// Record the start (the constructor; also whoever comes first, if another library's
/// constructor makes a socket call before ours runs).
pub fn start() -> &'static Start {
    START.get_or_init(|| Box::new(Start::read()))
}

/// The state, loading it on first use (in the constructor when `SOCKEXIT_POLICY` is
/// set, else at the first call that needs it).
pub fn state() -> &'static State {
    match STATE.get() {
        Some(s) => s,
        None => load_now(),
    }
}

/// The state if it is loaded; never loads (for paths that may run after `vfork`).
pub fn loaded() -> Option<&'static State> {
    STATE.get()
}

#[cold]
#[inline(never)]
fn load_now() -> &'static State {
    use std::sync::atomic::Ordering;
    // A hooked call from a signal handler while this very thread loads must not wait
    // for itself: it loads a copy of its own (`hook::check` refuses such calls before
    // they get here; other paths may not).
    let nested = crate::hook::loading();
    let _loading = crate::hook::Loading::enter();
    sys::resolve_all();
    let me = sys::pid();
    loop {
        if let Some(s) = STATE.get() {
            return s;
        }
        let owner = LOADER.load(Ordering::Acquire);
        // Free, or left set by the process this one was forked from.
        if nested
            || ((owner == 0 || owner != me)
                && LOADER
                    .compare_exchange(owner, me, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok())
        {
            let s = STATE.get_or_init(|| Box::new(load(start())));
            if !nested {
                LOADER.store(0, Ordering::Release);
            }
            return s;
        }
        // Another thread of this process is loading: a bounded read of files.
        std::thread::yield_now();
    }
}

/// Load the policy now if it is deferred: called before the process confines itself
/// (`chroot`, `unshare`, `setns`, a seccomp filter), after which the files may be out
/// of its reach or replaced by others.
pub fn pin() {
    if !crate::hook::loading() {
        let _ = state();
    }
}

/// Whether `SOCKEXIT_*` variables may be trusted: not in setuid/setgid processes,
/// whose environment belongs to a less privileged user.
pub fn env_trusted() -> bool {
    !sys::at_secure()
}

/// A `SOCKEXIT_*` variable, or `None` when unset or untrusted.
pub fn env_var(name: &str) -> Option<String> {
    if env_trusted() {
        std::env::var(name).ok()
    } else {
        None
    }
}

fn log_failure(e: &dyn std::fmt::Display, allow: bool) {
    log::error!(
        "cannot load policy: {e}; {}",
        if allow {
            "SOCKEXIT_ON_ERROR=allow: every call is allowed"
        } else {
            "failing closed: every IP accept, connect and listen is refused"
        }
    );
}

/// A root process, or a setuid/setgid one (AT_SECURE), must not run under a policy
/// that someone else can change: there a policy or set file others could write is a
/// load error (the library fails closed). Elsewhere the process can only hurt its own
/// user, so it is a warning.
fn permissions(start: &Start) -> Permissions {
    if start.strict {
        Permissions::Strict
    } else {
        Permissions::Warn
    }
}

/// Lint findings are for `sockexit check`; who may change the policy matters to
/// whoever runs the service, at every start.
fn log_permission_warnings(path: &std::path::Path, warnings: &[sockexit_engine::Warning]) {
    for w in warnings {
        match w.location {
            Some((l, c)) => log::warn!("policy {}:{l}:{c}: {}", path.display(), w.message),
            None => log::warn!("policy {}: {}", path.display(), w.message),
        }
    }
}

fn load(start: &Start) -> State {
    let on_error_allow = start.on_error_allow;
    let path = start.policy.clone();
    let opts = LoadOptions {
        resolver: &FilesResolver::default(),
        permissions: permissions(start),
    };
    let loaded = if let Some(why) = start.moved() {
        log_failure(
            &format_args!("{}: not read before this process {why}", path.display()),
            on_error_allow,
        );
        Loaded::Failed
    } else {
        match published(&path, start) {
            Some(Ok(live)) => Loaded::Live(Box::new(live)),
            Some(Err(e)) => {
                log_failure(
                    &format_args!("{}: published policy: {e}", path.display()),
                    on_error_allow,
                );
                Loaded::Failed
            }
            None => read(&path, &opts, on_error_allow),
        }
    };
    // A published policy's program and audit needs are those of the generation in use
    // at start-up: an apply that turns the audit log on takes effect at the next start.
    let live = matches!(loaded, Loaded::Live(_));
    let needs_program = live
        || [Call::Accept, Call::Connect, Call::Listen]
            .into_iter()
            .any(|c| loaded.needs(c).program);
    let audit_enabled = loaded.audit().is_some_and(|a| a.log != AuditLog::Off);
    // A process may always read its own `/proc/self/exe`, even after dropping
    // privileges (the kernel exempts the thread group itself); after a chroot the load
    // has already happened (`sys::confine`) or fails closed.
    let program = if needs_program || audit_enabled {
        use std::os::unix::ffi::OsStringExt;
        sys::exe_path().map(|s| s.into_vec())
    } else {
        None
    };
    let st = State {
        loaded,
        on_error_allow,
        program,
        audit_enabled,
        policy_path: start.policy_path(),
    };
    if let (true, Some(cfg)) = (st.audit_enabled, st.audit_config()) {
        crate::audit::init(cfg, st.program.as_deref(), &st.policy_path);
    }
    st
}

/// The live state when `sockexit apply` published this policy path (see
/// [`crate::live`]); `None` when it never was.
fn published(path: &std::path::Path, start: &Start) -> Option<Result<Live, String>> {
    let run_dir = start
        .run_dir
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::live::RUN_DIR));
    let canonical = std::fs::canonicalize(path).ok()?;
    Live::open(&canonical, &run_dir)
}

/// Today's load: the policy file and everything it names, read now.
fn read(path: &std::path::Path, opts: &LoadOptions<'_>, on_error_allow: bool) -> Loaded {
    match Snapshot::read_deferring(path, opts, DEFER_SET_BYTES) {
        Ok(Prepared::Compiled(p)) => {
            log_permission_warnings(path, p.permission_warnings());
            log::debug!("policy {} loaded: {} rules", path.display(), p.rule_count());
            Loaded::Policy(p)
        }
        Ok(Prepared::Deferred(snap)) => {
            log_permission_warnings(path, snap.permission_warnings());
            log::debug!(
                "policy {} read: {} rules, {} bytes of set files to compile at the first IP call",
                path.display(),
                snap.rule_count(),
                snap.set_file_bytes()
            );
            Loaded::Deferred {
                snapshot: snap,
                compiled: OnceBox::new(),
            }
        }
        Err(e) => {
            log_failure(&e, on_error_allow);
            Loaded::Failed
        }
    }
}
