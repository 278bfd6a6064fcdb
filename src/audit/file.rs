//! The file target: opened at load time through a kept directory handle, checked by
//! device and inode before every write, reopened after rotation.
//!
//! The log is never opened through a symlink (`O_NOFOLLOW`, also when creating, so a
//! dangling link never makes us create a file elsewhere), only a regular file is
//! used, and the directory must be one no untrusted user can write: owned by root or
//! by this process's effective user, and not writable by group or others unless it
//! is sticky (sshd's StrictModes). A line the file cannot take — the log was rotated
//! and this process cannot reopen it (a worker that dropped privileges, a vanished
//! directory), the disk is full — goes to the fallback instead ([`super::fallback`]),
//! and the reason is said once.
//!
//! Disk full: each record is one `write(2)` on an `O_APPEND` descriptor. After a
//! short write (the last free block), the next record this process writes starts
//! with `\n`, so the cut record stays a line of its own (not valid JSON: that is its
//! mark) and the next record is whole on its own line. Truncating back with
//! `ftruncate` was not chosen: with `O_APPEND` and other processes appending to the
//! same file, the offset we would truncate to may already be followed by another
//! process's whole line, which truncating would destroy.

use super::sink::{ReopenLock, Sink};
use crate::sys::logfile::{self, Create, FdStat, Ident};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// Seconds between two attempts to reopen a log this process could not follow.
const RETRY_SECS: i64 = 1;

pub struct FileTarget {
    /// The directory, as opened at load time: reopening goes through it (chroot-proof).
    dir_path: CString,
    dir_ident: Ident,
    dir: Sink,
    name: CString,
    file: Sink,
    /// The full path, for messages.
    shown: String,
    /// The last write of this process was cut short: the next one starts with `\n`.
    cut: AtomicBool,
    /// No reopen attempt before this time (seconds since the epoch): after a failed
    /// one, lines go to the fallback and the file is tried again once a second.
    retry_at: AtomicI64,
    said_stranded: AtomicBool,
    said_short: AtomicBool,
}

/// Whether a directory is safe to (re)open the log in, as sshd's StrictModes judges:
/// owned by root or by `euid`, and not writable by group or others unless sticky.
pub fn dir_trusted(st: &FdStat, euid: u32) -> bool {
    let owner_ok = st.uid == 0 || st.uid == euid;
    let writable_by_others = st.perm & 0o022 != 0;
    let sticky = st.perm & 0o1000 != 0;
    owner_ok && (!writable_by_others || sticky)
}

fn untrusted_reason(dir: &str, st: &FdStat) -> String {
    format!(
        "directory {dir} (owner uid {}, mode {:04o}) can be written by users other than root \
         and uid {}: a symlink or file put there could redirect the log; make it owned by root \
         and not group/other-writable (e.g. root:root 0755)",
        st.uid,
        st.perm,
        crate::sys::euid()
    )
}

/// Open the log at load time. Errors are a sentence for the administrator.
pub fn open_file_target(path: &Path) -> Result<FileTarget, String> {
    let shown = path.display().to_string();
    let shown2 = shown.clone();
    let bad = &move || format!("{shown2}: not a file path");
    let name = path.file_name().ok_or_else(bad)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir_shown = dir.display().to_string();
    let dir_path = CString::new(dir.as_os_str().as_bytes()).map_err(|_| bad())?;
    let name = CString::new(name.as_bytes()).map_err(|_| bad())?;
    let dirfd = logfile::open_dir(&dir_path).map_err(|e| format!("{dir_shown}: {e}"))?;
    let Some(dst) = logfile::fd_stat(dirfd) else {
        logfile::close(dirfd);
        return Err(bad());
    };
    if !dir_trusted(&dst, crate::sys::euid()) {
        logfile::close(dirfd);
        return Err(untrusted_reason(&dir_shown, &dst));
    }
    let fd = match logfile::open_append(dirfd, &name, Create::Yes) {
        Ok(fd) => fd,
        Err(e) => {
            logfile::close(dirfd);
            return Err(open_error(&shown, &e));
        }
    };
    let t = FileTarget {
        dir_path,
        dir_ident: dst.ident,
        dir: Sink::new(),
        name,
        file: Sink::new(),
        shown,
        cut: AtomicBool::new(false),
        retry_at: AtomicI64::new(0),
        said_stranded: AtomicBool::new(false),
        said_short: AtomicBool::new(false),
    };
    t.dir.set(dirfd, dst.ident);
    let id = logfile::fd_ident(fd).ok_or_else(bad)?;
    t.file.set(fd, id);
    Ok(t)
}

fn open_error(shown: &str, e: &std::io::Error) -> String {
    match (e.raw_os_error(), e.kind()) {
        (Some(libc::ELOOP), _) => format!("{shown} is a symlink: not followed"),
        (_, std::io::ErrorKind::InvalidData) => format!("{shown} is not a regular file"),
        _ => format!("{shown}: {e}"),
    }
}

impl FileTarget {
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// Append one record. `rec` is `\n{json}\n`: written without the leading newline,
/// unless this process's previous write was cut short. Returns whether the whole
/// record reached the file; if not, the caller hands it to the fallback.
pub fn write_file(lock: &ReopenLock, t: &FileTarget, rec: &[u8], now: i64) -> bool {
    // Fast path: our descriptor, our directory, and the path still names our file.
    if let (Some(fd), Some(dirfd)) = (t.file.verified(), t.dir.verified()) {
        if logfile::path_ident(dirfd, &t.name) == Some(t.file.ident()) {
            return append(t, fd, rec);
        }
    }
    let Some(_held) = lock.acquire() else {
        // Another thread is reopening and did not finish in time: write to our
        // descriptor if it is still ours (the old file, not lost), else fall back.
        return match t.file.verified() {
            Some(fd) => append(t, fd, rec),
            None => false,
        };
    };
    match reopen_file(t, now) {
        Some(fd) => append(t, fd, rec),
        None => false,
    }
}

fn append(t: &FileTarget, fd: i32, rec: &[u8]) -> bool {
    let cut = t.cut.load(Ordering::Acquire);
    let bytes = if cut { rec } else { &rec[1..] };
    match logfile::write_once(fd, bytes) {
        Ok(n) if n == bytes.len() => {
            if cut {
                t.cut.store(false, Ordering::Release);
            }
            true
        }
        Ok(n) => {
            if n > 0 {
                t.cut.store(true, Ordering::Release);
            }
            say_once(
                &t.said_short,
                format_args!(
                    "audit: short write to {} ({n} of {} bytes: disk full or file size limit); \
                     the cut record stays on a line of its own, the next record starts on a new \
                     line, and lines the file cannot take go to the fallback",
                    t.shown,
                    bytes.len()
                ),
            );
            false
        }
        Err(e) => {
            say_once(
                &t.said_short,
                format_args!(
                    "audit: cannot write to {}: {e}; lines the file cannot take go to the \
                     fallback",
                    t.shown
                ),
            );
            false
        }
    }
}

fn say_once(flag: &AtomicBool, args: std::fmt::Arguments<'_>) {
    if !flag.swap(true, Ordering::AcqRel) {
        log::warn!("{args}");
    }
}

/// Under the reopen lock: a verified descriptor for the log, reopening as needed;
/// `None` when the line must go to the fallback.
fn reopen_file(t: &FileTarget, now: i64) -> Option<i32> {
    let dirfd = t.dir.verified().or_else(|| {
        // The program closed or reused our directory handle: reopen it by path, but
        // only if the path still names the same directory (not after a chroot).
        let d = logfile::open_dir(&t.dir_path).ok()?;
        if logfile::fd_ident(d) == Some(t.dir_ident) {
            t.dir.set(d, t.dir_ident);
            Some(d)
        } else {
            logfile::close(d);
            None
        }
    });
    let current = t.file.verified();
    let path_id = dirfd.and_then(|d| logfile::path_ident(d, &t.name));
    if let (Some(fd), Some(id)) = (current, path_id) {
        if id == t.file.ident() {
            return Some(fd); // another thread already reopened it
        }
    }
    let Some(dirfd) = dirfd else {
        return stranded(
            t,
            now,
            "its directory can no longer be reached (removed, or chrooted away)",
        );
    };
    let held_linked = current
        .and_then(logfile::fd_stat)
        .is_some_and(|st| st.nlink > 0);
    if path_id.is_none() && held_linked {
        // Renamed away and nothing there yet: logrotate's `create` is about to put
        // the new file there. Never race it; the renamed file takes this line.
        return current;
    }
    if now < t.retry_at.load(Ordering::Acquire) {
        return None;
    }
    t.retry_at.store(now + RETRY_SECS, Ordering::Release);
    match logfile::fd_stat(dirfd) {
        Some(st) if dir_trusted(&st, crate::sys::euid()) => {}
        Some(st) => {
            let why = untrusted_reason(&String::from_utf8_lossy(t.dir_path.as_bytes()), &st);
            return stranded(t, now, &why);
        }
        None => return stranded(t, now, "its directory cannot be examined"),
    }
    // Something at the path: open it, never create. Nothing there and the file we
    // held is gone too (removed, or compressed away): create it, exclusively.
    let create = if path_id.is_some() {
        Create::No
    } else {
        Create::Excl
    };
    let fresh = match logfile::open_append(dirfd, &t.name, create) {
        Err(e) if create == Create::Excl && e.raw_os_error() == Some(libc::EEXIST) => {
            logfile::open_append(dirfd, &t.name, Create::No)
        }
        r => r,
    };
    let fresh = match fresh {
        Ok(f) => f,
        Err(e) => {
            let why = format!(
                "{} (as uid {})",
                open_error(&t.shown, &e),
                crate::sys::euid()
            );
            return stranded(t, now, &why);
        }
    };
    let Some(id) = logfile::fd_ident(fresh) else {
        logfile::close(fresh);
        return None;
    };
    t.retry_at.store(0, Ordering::Release);
    if t.said_stranded.swap(false, Ordering::AcqRel) {
        log::warn!("audit: {} reopened; lines go to it again", t.shown);
    }
    match current {
        // Rotated: put the new file under our number (atomically, so threads that
        // already checked it write to one file or the other, never elsewhere).
        Some(ours) => match logfile::replace(fresh, ours) {
            Ok(()) => {
                t.file.set(ours, id);
                Some(ours)
            }
            Err(_) => None,
        },
        // Our number was closed or now belongs to the program: never touch it, use a
        // new one.
        None => {
            t.file.set(fresh, id);
            Some(fresh)
        }
    }
}

/// The log was rotated (or removed) and this process cannot follow it: say so once;
/// the caller sends the line to the fallback.
fn stranded(t: &FileTarget, now: i64, why: &str) -> Option<i32> {
    t.retry_at.store(now + RETRY_SECS, Ordering::Release);
    say_once(
        &t.said_stranded,
        format_args!(
            "audit: cannot reopen {} after rotation: {why}; lines go to the fallback until it \
             can be reopened (tried again once a second). With logrotate, use `create` and a log \
             file owned by the user this process runs as (docs/audit.md)",
            t.shown
        ),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(uid: u32, perm: u32) -> FdStat {
        FdStat {
            ident: Ident { dev: 1, ino: 2 },
            kind: libc::S_IFDIR,
            perm,
            uid,
            nlink: 2,
        }
    }

    #[test]
    fn directory_trust_follows_strict_modes() {
        assert!(dir_trusted(&st(0, 0o755), 0));
        assert!(dir_trusted(&st(0, 0o755), 65534));
        assert!(dir_trusted(&st(65534, 0o755), 65534));
        assert!(
            !dir_trusted(&st(65534, 0o755), 0),
            "root in a nobody-owned dir"
        );
        assert!(!dir_trusted(&st(0, 0o775), 0), "group-writable");
        assert!(!dir_trusted(&st(0, 0o757), 0), "world-writable");
        assert!(dir_trusted(&st(0, 0o1777), 0), "sticky, as /tmp");
        assert!(
            !dir_trusted(&st(1000, 0o1777), 0),
            "sticky but owned by a user"
        );
    }
}
