//! sockexit policy engine: YAML policy text in, a compiled immutable rule table out,
//! and a decision function `facts -> (verdict, rule name)`.
//!
//! Pure Rust, no `unsafe`, no I/O beyond reading the policy file and the set files it
//! names. Shared by `libsockexit.so` (the hooks) and the `sockexit` command.
//!
//! API CONTRACT (other crates code against these names; keep them stable):
//! - [`Policy::load`], [`Policy::load_with`], [`Policy::from_bytes_with`]
//! - [`Snapshot::read_deferring`] (all the I/O of a load) and [`Snapshot::compile`] (the rest)
//! - [`LoadOptions`] with [`Permissions`]; [`Policy::permission_warnings`]
//! - [`Policy::decide`] taking a lazy [`FactSource`]
//! - [`Policy::needs`], [`Policy::mode`], [`Policy::stealth`], [`Policy::blocking_accept`],
//!   [`Policy::audit`]
//! - [`audit_line`]: the audit line formatter both backends write with
//! - [`Error`] whose `Display` is `FILE[:LINE:COLUMN]: [key `K`: ]message`
#![deny(unsafe_code)]
#![warn(missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub mod audit_line;
pub mod bpf;
mod compiled;
mod dispatch;
mod dynset;
mod files;
mod forms;
mod glob;
mod image;
mod perms;
mod policy;
mod publication;
mod ranges;
mod snapshot;

pub use dynset::{
    now as unix_now, DynContent, DynEntry, DynSets, DYN_REV_OFFSET, MAX_DYNAMIC_BYTES,
};
pub use forms::{connect_target, nat64_embedded, Judged};
pub use glob::Glob;
pub use image::{
    decode_image, decode_image_in_place, fnv1a64, image_info, image_path, publication_dir,
    ImageInfo, COMPILED_SET_BYTES, GEN_FILE_BYTES, GEN_MAGIC, GEN_OFFSET, MAX_IMAGE_BYTES,
};
pub use ipnet::IpNet;
pub use perms::trust_uid;
pub use policy::{Rule, MAX_POLICY_BYTES, MAX_SET_FILE_BYTES};
pub use publication::{check_generation, Generation, Publication};
pub use ranges::{AddrSet, PortSet};
pub use snapshot::{Prepared, Snapshot};

/// The socket call being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// `accept(2)` / `accept4(2)`: remote is the peer, local is the listening socket's address.
    Accept,
    /// `connect(2)`: remote is the destination, local is usually unknown (unbound).
    Connect,
    /// `listen(2)`: local is the socket's bound address, no remote.
    Listen,
}

impl Call {
    /// The lower-case name used in policies and audit lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Accept => "accept",
            Call::Connect => "connect",
            Call::Listen => "listen",
        }
    }
}

/// Address family, after v4-mapped IPv6 addresses are turned back into IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// AF_INET, or an `::ffff:a.b.c.d` peer on an AF_INET6 socket.
    Ipv4,
    /// AF_INET6.
    Ipv6,
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Let the call through.
    Allow,
    /// Refuse the call.
    Deny,
}

impl Verdict {
    /// `"allow"` or `"deny"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// A verdict and the name of the rule that produced it (`"default"` when none matched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    /// Allow or deny.
    pub verdict: Verdict,
    /// The deciding rule's name, or `"default"`.
    pub rule: &'p str,
}

/// Where the facts about a call come from. Asked lazily, in cheap-first order, and only
/// for what a rule that could still match actually looks at. Implementations may cache.
/// `None` means "unknown": a rule that needs an unknown fact does not match.
pub trait FactSource {
    /// The peer (accept) or destination (connect). Unknown for listen.
    fn remote(&mut self) -> Option<SocketAddr>;
    /// The socket's own address (accept: the address the peer reached, i.e. the
    /// accepted connection's; listen: the bound one; connect: the source, if bound).
    fn local(&mut self) -> Option<SocketAddr>;
    /// Effective uid of the calling process.
    fn uid(&mut self) -> Option<u32>;
    /// Effective gid of the calling process.
    fn gid(&mut self) -> Option<u32>;
    /// Absolute path of the calling process's executable, as bytes.
    fn program(&mut self) -> Option<&[u8]>;
    /// The current entries of the policy's dynamic sets. `None` (unknown): a rule that
    /// names a dynamic set is taken to hold the address if it denies, not to if it
    /// allows — unknown entries fail closed.
    fn dynamic(&mut self) -> Option<&DynSets> {
        None
    }
    /// For `listen` on an IPv6 socket: whether it also accepts IPv4 (`IPV6_V6ONLY`
    /// off). Asked only for a `[::]` listener, by [`Policy::judge`].
    fn dual_stack(&mut self) -> bool {
        false
    }
}

/// Plain, already-known facts (the CLI's `explain`, tests).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// See [`FactSource::remote`].
    pub remote: Option<SocketAddr>,
    /// See [`FactSource::local`].
    pub local: Option<SocketAddr>,
    /// See [`FactSource::uid`].
    pub uid: Option<u32>,
    /// See [`FactSource::gid`].
    pub gid: Option<u32>,
    /// See [`FactSource::program`].
    pub program: Option<PathBuf>,
    /// See [`FactSource::dynamic`].
    pub dynamic: Option<std::sync::Arc<DynSets>>,
}

impl FactSource for Facts {
    fn remote(&mut self) -> Option<SocketAddr> {
        self.remote
    }
    fn local(&mut self) -> Option<SocketAddr> {
        self.local
    }
    fn uid(&mut self) -> Option<u32> {
        self.uid
    }
    fn gid(&mut self) -> Option<u32> {
        self.gid
    }
    fn program(&mut self) -> Option<&[u8]> {
        use std::os::unix::ffi::OsStrExt;
        self.program.as_deref().map(|p| p.as_os_str().as_bytes())
    }
    fn dynamic(&mut self) -> Option<&DynSets> {
        self.dynamic.as_deref()
    }
}

/// Which facts the rules for one call can ask for (so a hook can prepare them, e.g.
/// remember a listener's address at `bind` time, or skip work entirely).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// Some rule looks at the remote address, port or family.
    pub remote: bool,
    /// Some rule looks at the local address, port or (for listen) family.
    pub local: bool,
    /// Some rule has `users`.
    pub uid: bool,
    /// Some rule has `groups`.
    pub gid: bool,
    /// Some rule has `programs`.
    pub program: bool,
}

/// `mode:` — enforce (default) or audit (log would-be refusals, refuse nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Refuse what the policy refuses.
    #[default]
    Enforce,
    /// Refuse nothing; record what would have been refused.
    Audit,
}

impl Mode {
    /// `"enforce"` or `"audit"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

/// `blocking_accept:` — what a hooked `accept` on a *blocking* listening socket does
/// after it refused a connection and no other connection is pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockingAccept {
    /// Return -1 with errno `ECONNABORTED` at once (the default): no refused peer can
    /// freeze a server that `select`s or `poll`s and then accepts on a blocking socket.
    #[default]
    Return,
    /// Wait for the next connection as the real call would, never longer than the
    /// socket's `SO_RCVTIMEO` counted from the start of the call.
    Wait,
}

impl BlockingAccept {
    /// `"return"` or `"wait"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockingAccept::Return => "return",
            BlockingAccept::Wait => "wait",
        }
    }
}

/// `audit.log:` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditLog {
    /// `off`
    Off,
    /// `stderr`
    Stderr,
    /// `syslog` (the default): datagrams to `/dev/log`.
    Syslog,
    /// `journal`: native-protocol datagrams to `/run/systemd/journal/socket`, with
    /// `SOCKEXIT_*` fields ([`audit_line::journal`]).
    Journal,
    /// A file path (absolute, or relative to the policy file's directory).
    File(PathBuf),
}

/// `audit.events:`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditEvents {
    /// Record refusals only (the default).
    #[default]
    Deny,
    /// Record every decision.
    All,
}

/// The `audit:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Where lines go.
    pub log: AuditLog,
    /// Which decisions are recorded.
    pub events: AuditEvents,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            log: AuditLog::Syslog,
            events: AuditEvents::Deny,
        }
    }
}

/// Resolves user and group names in `users:` / `groups:` to ids at load time.
pub trait NameResolver {
    /// uid of a user name, if it exists.
    fn user(&self, name: &str) -> Option<u32>;
    /// gid of a group name, if it exists.
    fn group(&self, name: &str) -> Option<u32>;
}

/// Reads `/etc/passwd` and `/etc/group` (no NSS: safe inside a preload constructor).
#[derive(Debug, Clone)]
pub struct FilesResolver {
    /// Usually `/etc/passwd`.
    pub passwd: PathBuf,
    /// Usually `/etc/group`.
    pub group: PathBuf,
}

impl Default for FilesResolver {
    fn default() -> Self {
        FilesResolver {
            passwd: PathBuf::from("/etc/passwd"),
            group: PathBuf::from("/etc/group"),
        }
    }
}

/// Field 3 (the id) of the colon-separated line whose field 1 is `name`. Read like
/// the policy (a regular file, bounded, never blocking): it is read in the same
/// constructor. A file that cannot be read resolves nothing, so the name is unknown
/// and the policy fails to load.
fn lookup_id(file: &Path, name: &str) -> Option<u32> {
    let (bytes, _) = files::read_regular(file, MAX_SET_FILE_BYTES).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

impl NameResolver for FilesResolver {
    fn user(&self, name: &str) -> Option<u32> {
        lookup_id(&self.passwd, name)
    }
    fn group(&self, name: &str) -> Option<u32> {
        lookup_id(&self.group, name)
    }
}

/// Options for loading a policy.
pub struct LoadOptions<'a> {
    /// Name → id resolution for `users:` and `groups:`.
    pub resolver: &'a dyn NameResolver,
    /// What a policy or set file that others could change is: an error or a warning.
    pub permissions: Permissions,
}

/// How the rule on who may change the policy and its set files is applied (sshd's
/// StrictModes). The rule, for the file and every directory on its canonical path up
/// to `/`: owned by root or the process's effective uid, and not writable by group or
/// others, except a sticky directory (`/tmp`) whose next component is owned by root
/// or the effective uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permissions {
    /// A violation is a load error (processes running as root, or AT_SECURE).
    Strict,
    /// A violation is a [`Warning`] (see [`Policy::permission_warnings`]).
    Warn,
}

impl Permissions {
    /// `Strict` when this process's effective uid is 0, else `Warn`: what
    /// [`Policy::load`] and `sockexit check` use. (The library is also strict in
    /// AT_SECURE processes, which it knows and the engine does not.)
    pub fn for_process() -> Permissions {
        if perms::euid() == 0 {
            Permissions::Strict
        } else {
            Permissions::Warn
        }
    }
}

/// A policy load error. `Display` reads `FILE[:LINE:COLUMN]: [key `K`: ]message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The file the error is in (the policy, or a set file it names).
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub location: Option<(usize, usize)>,
    /// The offending key, when there is one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((l, c)) = self.location {
            write!(f, ":{l}:{c}")?;
        }
        f.write_str(": ")?;
        if let Some(k) = &self.key {
            write!(f, "key `{k}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// A loaded, validated, compiled, immutable policy.
#[derive(Debug)]
pub struct Policy {
    default: Verdict,
    mode: Mode,
    stealth: bool,
    blocking_accept: BlockingAccept,
    audit: AuditConfig,
    rules: Vec<Rule>,
    /// Rule indexes per call (accept, connect, listen), in policy order.
    by_call: [Vec<u32>; 3],
    needs: [Needs; 3],
    /// Rules that can still match, by peer address (big or long policies only).
    dispatch: Option<dispatch::Dispatch>,
    warnings: Vec<Warning>,
    /// How many of `warnings`, at its start, are about file permissions.
    permission_warnings: usize,
    path: PathBuf,
    /// The names of the `{ dynamic: true }` sets, sorted.
    dynamic_sets: Vec<String>,
}

fn call_index(c: Call) -> usize {
    match c {
        Call::Accept => 0,
        Call::Connect => 1,
        Call::Listen => 2,
    }
}

impl Policy {
    /// Load from a file, resolving names with [`FilesResolver`], with the permission
    /// rule applied as [`Permissions::for_process`] says (strict as root).
    pub fn load(path: &Path) -> Result<Policy, Error> {
        Self::load_with(
            path,
            &LoadOptions {
                resolver: &FilesResolver::default(),
                permissions: Permissions::for_process(),
            },
        )
    }

    /// Load from a file with explicit options.
    pub fn load_with(path: &Path, opts: &LoadOptions<'_>) -> Result<Policy, Error> {
        let (bytes, perm) = policy::read_policy_bytes(path, opts.permissions)?;
        let p = Self::from_bytes_with(&bytes, path, opts)?;
        Ok(p.with_permission_warnings(perm))
    }

    /// `warnings` (about the policy file itself, found when reading it) put first,
    /// with those about set files.
    pub(crate) fn with_permission_warnings(mut self, warnings: Vec<Warning>) -> Policy {
        self.permission_warnings += warnings.len();
        self.warnings.splice(0..0, warnings);
        self
    }

    /// Load from policy bytes; `origin` names the file in errors and anchors relative
    /// set-file paths. Set files are read, and judged by `opts.permissions`, as in
    /// [`Policy::load_with`]; the policy bytes came from no file, so nothing judges
    /// who could have changed them.
    pub fn from_bytes_with(
        bytes: &[u8],
        origin: &Path,
        opts: &LoadOptions<'_>,
    ) -> Result<Policy, Error> {
        policy::compile(bytes, origin, opts, policy::SetFiles::Disk)
    }

    /// Decide one call. No allocation, no I/O; facts are pulled lazily.
    ///
    /// The first rule for `call` that matches decides, else `default:`. For policies
    /// with many rules or big sets, `accept` and `connect` first look the peer up in
    /// an address dispatch table and check only the rules that can still match it
    /// (see `docs/engine.md`); the result is always that of [`Policy::decide_walk`].
    #[inline]
    pub fn decide(&self, call: Call, facts: &mut dyn FactSource) -> Decision<'_> {
        if let Some(d) = self.dispatch.as_ref().filter(|d| d.covers(call)) {
            if let Some(r) = facts.remote() {
                let ip = r.ip().to_canonical();
                for &c in d.candidates(call, ip) {
                    let rule = &self.rules[(c & !dispatch::IN_REMOTE) as usize];
                    if rule.matches_peer(call, r, ip, c & dispatch::IN_REMOTE != 0, facts) {
                        return Decision {
                            verdict: rule.action(),
                            rule: rule.name(),
                        };
                    }
                }
                return Decision {
                    verdict: self.default,
                    rule: "default",
                };
            }
        }
        self.decide_walk(call, facts)
    }

    /// The reference decision: every rule for `call`, in policy order, no dispatch
    /// table. Always the same result as [`Policy::decide`] (tested on generated
    /// policies); for tests and benchmarks.
    #[inline(never)]
    pub fn decide_walk(&self, call: Call, facts: &mut dyn FactSource) -> Decision<'_> {
        for &i in &self.by_call[call_index(call)] {
            let r = &self.rules[i as usize];
            if r.matches(call, facts) {
                return Decision {
                    verdict: r.action(),
                    rule: r.name(),
                };
            }
        }
        Decision {
            verdict: self.default,
            rule: "default",
        }
    }

    /// The address dispatch's arrays, for an image.
    pub(crate) fn dispatch_parts(&self) -> Option<dispatch::Parts> {
        self.dispatch.as_ref().map(|d| d.to_parts())
    }

    /// Size of the address dispatch table, if one was built: (intervals over both
    /// families, distinct candidate classes, heap bytes).
    pub fn dispatch_size(&self) -> Option<(usize, usize, usize)> {
        self.dispatch.as_ref().map(|d| {
            let (n, c) = d.size();
            (n, c, d.heap_bytes())
        })
    }

    /// What the rules for `call` can look at.
    pub fn needs(&self, call: Call) -> Needs {
        self.needs[call_index(call)]
    }

    /// `mode:`
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `stealth:`
    pub fn stealth(&self) -> bool {
        self.stealth
    }

    /// `blocking_accept:` (default `return`)
    pub fn blocking_accept(&self) -> BlockingAccept {
        self.blocking_accept
    }

    /// `audit:`
    pub fn audit(&self) -> &AuditConfig {
        &self.audit
    }

    /// Findings for `sockexit check`: under [`Permissions::Warn`], files others could
    /// change (first); then lint: shadowed rules, fields that can never apply to a
    /// rule's calls, empty sets, `default: allow` with only allow rules.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The start of [`Policy::warnings`] that is about file permissions: what the
    /// library logs at start-up (lint findings are for `sockexit check`).
    pub fn permission_warnings(&self) -> &[Warning] {
        &self.warnings[..self.permission_warnings]
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The compiled rules, in policy order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The file the policy was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `default:`
    pub fn default_verdict(&self) -> Verdict {
        self.default
    }

    /// The names of the `{ dynamic: true }` sets, sorted.
    pub fn dynamic_sets(&self) -> &[String] {
        &self.dynamic_sets
    }
}

/// A non-fatal finding about a policy that loads (see [`Policy::warnings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The rule concerned, if any.
    pub rule: Option<String>,
    /// 1-based line and column in the policy file, when known.
    pub location: Option<(usize, usize)>,
    /// Plain words, e.g. "rule `b` is shadowed by rule `a` and can never match".
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((l, c)) = self.location {
            write!(f, "{l}:{c}: ")?;
        }
        f.write_str(&self.message)
    }
}
