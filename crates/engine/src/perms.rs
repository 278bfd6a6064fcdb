//! Who may change the policy: sshd's StrictModes for the policy and its set files.
//!
//! The library loads the policy into root daemons. If a user other than root could
//! change the policy, a set file, or a directory on their path (and so replace the
//! file), that user would decide what a root service lets through. The rule, for the
//! file and every directory from it up to `/`, after resolving symlinks (the canonical
//! path is what the kernel really opens):
//!
//! - owned by root or by the process's effective uid, and
//! - not writable by group or others; except a directory with the sticky bit (`/tmp`,
//!   mode 1777) whose next component on the path is owned by root or the effective
//!   uid: the sticky bit stops others from removing or renaming that component.
//!
//! The file itself is judged by the metadata of the descriptor that was read (what was
//! loaded, not what the path names a moment later); the directories by their path.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One path that breaks the rule, and why, in words that say how to fix it.
#[derive(Debug)]
pub(crate) struct Violation {
    /// The offending file or directory (canonical).
    pub path: PathBuf,
    /// E.g. "writable by group (mode 0664, owner 1000): a root process must not load
    /// a policy others can change; chmod go-w".
    pub text: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.text)
    }
}

/// The uid whose files count as trusted: [`trust_uid`]'s, else the effective uid.
static TRUST_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// Judge ownership as if this process's effective uid were `uid` from now on (the
/// library records its uid at start-up and reads the system policy later: a root
/// process that dropped privileges in between must still be held to root's rules).
pub fn trust_uid(uid: u32) {
    TRUST_UID.store(uid as u64, std::sync::atomic::Ordering::Relaxed);
}

/// The effective uid of this process, or the one given to [`trust_uid`].
pub(crate) fn euid() -> u32 {
    match TRUST_UID.load(std::sync::atomic::Ordering::Relaxed) {
        u64::MAX => rustix::process::geteuid().as_raw(),
        u => u as u32,
    }
}

/// Every violation of the rule by `path` (read through a descriptor whose metadata is
/// `read`) and the directories above it; `what` names the file in messages ("a
/// policy", "a set file").
pub(crate) fn check(path: &Path, read: &Metadata, what: &str) -> Vec<Violation> {
    let euid = euid();
    let mut out = Vec::new();
    let canon = match std::fs::canonicalize(path) {
        Ok(c) => c,
        Err(e) => {
            out.push(Violation {
                path: path.to_path_buf(),
                text: format!("cannot resolve the path to check who may change it: {e}"),
            });
            return out;
        }
    };
    let ctx = Judge { euid, what };
    ctx.judge(&canon, read, None, &mut out);
    let mut child_uid = read.uid();
    for dir in canon.ancestors().skip(1) {
        match std::fs::metadata(dir) {
            Ok(m) => {
                ctx.judge(dir, &m, Some(child_uid), &mut out);
                child_uid = m.uid();
            }
            Err(e) => out.push(Violation {
                path: dir.to_path_buf(),
                text: format!("cannot check who may change this directory: {e}"),
            }),
        }
    }
    out
}

struct Judge<'a> {
    euid: u32,
    what: &'a str,
}

impl Judge<'_> {
    fn trusted(&self, uid: u32) -> bool {
        uid == 0 || uid == self.euid
    }

    /// One file (`child_uid: None`) or directory (`Some`: the owner of the next
    /// component on the path, for the sticky-bit exception).
    fn judge(&self, path: &Path, m: &Metadata, child_uid: Option<u32>, out: &mut Vec<Violation>) {
        let mode = m.mode() & 0o7777;
        let sticky_ok = mode & 0o1000 != 0 && child_uid.is_some_and(|u| self.trusted(u));
        let writable = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            _ if sticky_ok => None,
            (true, true) => Some("group and others"),
            (true, false) => Some("group"),
            (false, true) => Some("others"),
            (false, false) => None,
        };
        let foreign_owner = !self.trusted(m.uid());
        if writable.is_none() && !foreign_owner {
            return;
        }
        let mut problems = Vec::new();
        let mut fixes = Vec::new();
        if let Some(who) = writable {
            problems.push(format!("writable by {who}"));
            fixes.push("chmod go-w");
        }
        if foreign_owner {
            problems.push(if self.euid == 0 {
                "not owned by root".to_string()
            } else {
                format!("owned by neither root nor uid {}", self.euid)
            });
            fixes.push("chown root");
        }
        let place = if child_uid.is_some() {
            format!("{} from a directory others can change", self.what)
        } else {
            format!("{} others can change", self.what)
        };
        out.push(Violation {
            path: path.to_path_buf(),
            text: format!(
                "{} (mode {mode:04o}, owner {}): a root process must not load {place}; {}",
                problems.join(", "),
                m.uid(),
                fixes.join(", ")
            ),
        });
    }
}
