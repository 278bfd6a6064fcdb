//! A policy read now and compiled later: [`Snapshot`].
//!
//! A 100,000-line set file takes milliseconds to parse, and `libsockexit.so` loads the
//! policy in every process it is preloaded into — every child of a wrapped service,
//! most of which never open a socket. A snapshot splits the load in two:
//!
//! 1. [`Snapshot::read_with`] does **all the I/O**: the policy file, every set file it
//!    names, every user and group name it resolves. It validates everything but the
//!    contents of set files. Done at start-up, before the program can `chroot`,
//!    drop privileges, install a seccomp filter, change directory or clear its
//!    environment.
//! 2. [`Snapshot::compile`] parses the captured bytes into the same [`Policy`] that
//!    [`Policy::load`] would have built from the same files, **without any I/O**, so it
//!    gives the same answer wherever and whenever it runs.

use crate::policy::{self, CapturedFile, SetFiles};
use crate::Call;
use crate::{
    AuditConfig, BlockingAccept, Error, LoadOptions, Mode, NameResolver, Needs, Permissions,
    Policy, Warning,
};
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// What [`Snapshot::read_deferring`] gives.
#[derive(Debug)]
pub enum Prepared {
    /// No set file was big enough to defer: the policy, compiled.
    Compiled(Policy),
    /// Some set files wait for [`Snapshot::compile`].
    Deferred(Snapshot),
}

/// A policy whose files have been read but whose set files are not parsed yet.
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) origin: PathBuf,
    pub(crate) policy: Vec<u8>,
    /// What the permission rule found about the policy file when it was read.
    policy_warnings: Vec<Warning>,
    pub(crate) set_files: Vec<CapturedFile>,
    pub(crate) users: Vec<(String, Option<u32>)>,
    pub(crate) groups: Vec<(String, Option<u32>)>,
    /// The policy compiled with every file set empty: what does not depend on the
    /// contents of set files (mode, blocking_accept, audit, needs, stealth) is already final here.
    outline: Policy,
}

/// Records every name lookup so that [`Snapshot::compile`] can replay it.
struct Recording<'a> {
    inner: &'a dyn NameResolver,
    users: RefCell<Vec<(String, Option<u32>)>>,
    groups: RefCell<Vec<(String, Option<u32>)>>,
}

impl NameResolver for Recording<'_> {
    fn user(&self, name: &str) -> Option<u32> {
        let id = self.inner.user(name);
        self.users.borrow_mut().push((name.to_owned(), id));
        id
    }
    fn group(&self, name: &str) -> Option<u32> {
        let id = self.inner.group(name);
        self.groups.borrow_mut().push((name.to_owned(), id));
        id
    }
}

/// Answers from a recording; a name it never saw does not exist.
pub(crate) struct Replay<'a> {
    pub(crate) users: &'a [(String, Option<u32>)],
    pub(crate) groups: &'a [(String, Option<u32>)],
}

fn find(list: &[(String, Option<u32>)], name: &str) -> Option<u32> {
    list.iter().find(|(n, _)| n == name).and_then(|(_, id)| *id)
}

impl NameResolver for Replay<'_> {
    fn user(&self, name: &str) -> Option<u32> {
        find(self.users, name)
    }
    fn group(&self, name: &str) -> Option<u32> {
        find(self.groups, name)
    }
}

impl Snapshot {
    /// Read a policy file and everything it names. Fails with the same errors as
    /// [`Policy::load_with`], except errors inside set files, which
    /// [`Snapshot::compile`] reports.
    pub fn read_with(path: &Path, opts: &LoadOptions<'_>) -> Result<Snapshot, Error> {
        Self::read_parsing(path, opts, 0)
    }

    /// Read a policy file and everything it names, and parse set files of at most
    /// `defer_over` bytes at once: when no set file is bigger, the result is the
    /// compiled [`Policy`] (one parse, errors now), else a snapshot whose
    /// [`Snapshot::compile`] parses the big ones.
    pub fn read_deferring(
        path: &Path,
        opts: &LoadOptions<'_>,
        defer_over: usize,
    ) -> Result<Prepared, Error> {
        let snap = Self::read_parsing(path, opts, defer_over)?;
        if snap.set_files.iter().any(|c| c.bytes.len() > defer_over) {
            Ok(Prepared::Deferred(snap))
        } else {
            // Every set file was parsed: the outline is the whole policy.
            Ok(Prepared::Compiled(snap.outline))
        }
    }

    fn read_parsing(
        path: &Path,
        opts: &LoadOptions<'_>,
        parse_up_to: usize,
    ) -> Result<Snapshot, Error> {
        let (policy, policy_warnings) = policy::read_policy_bytes(path, opts.permissions)?;
        let rec = Recording {
            inner: opts.resolver,
            users: RefCell::default(),
            groups: RefCell::default(),
        };
        let mut set_files = Vec::new();
        let outline = policy::compile(
            &policy,
            path,
            &LoadOptions {
                resolver: &rec,
                permissions: opts.permissions,
            },
            SetFiles::Capture {
                into: &mut set_files,
                parse_up_to,
            },
        )?
        .with_permission_warnings(policy_warnings.clone());
        Ok(Snapshot {
            origin: path.to_path_buf(),
            policy,
            policy_warnings,
            set_files,
            users: rec.users.into_inner(),
            groups: rec.groups.into_inner(),
            outline,
        })
    }

    /// Parse the captured bytes into the policy. No I/O: the result is what
    /// [`Policy::load_with`] returns for the files as they were when the snapshot was
    /// read, including the errors of set files (with file, line and column).
    pub fn compile(&self) -> Result<Policy, Error> {
        let replay = Replay {
            users: &self.users,
            groups: &self.groups,
        };
        // Replay reads nothing, so the permission rule is not applied again: its
        // findings from the read come back with the captured files.
        let p = policy::compile(
            &self.policy,
            &self.origin,
            &LoadOptions {
                resolver: &replay,
                permissions: Permissions::Warn,
            },
            SetFiles::Replay(&self.set_files),
        )?;
        Ok(p.with_permission_warnings(self.policy_warnings.clone()))
    }

    /// Total size of the set files read.
    pub fn set_file_bytes(&self) -> usize {
        self.set_files.iter().map(|c| c.bytes.len()).sum()
    }

    /// The policy file.
    pub fn path(&self) -> &Path {
        &self.origin
    }

    /// What the rules for `call` can look at (final: it does not depend on the
    /// contents of set files).
    pub fn needs(&self, call: Call) -> Needs {
        self.outline.needs(call)
    }

    /// `mode:`
    pub fn mode(&self) -> Mode {
        self.outline.mode()
    }

    /// What the permission rule found under [`Permissions::Warn`] when the files were
    /// read (final: [`Snapshot::compile`] gives the same).
    pub fn permission_warnings(&self) -> &[Warning] {
        self.outline.permission_warnings()
    }

    /// `stealth:`
    pub fn stealth(&self) -> bool {
        self.outline.stealth()
    }

    /// `blocking_accept:`
    pub fn blocking_accept(&self) -> BlockingAccept {
        self.outline.blocking_accept()
    }

    /// `audit:`
    pub fn audit(&self) -> &AuditConfig {
        self.outline.audit()
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.outline.rule_count()
    }
}
