//! The file target: opened at load time through a kept directory handle, checked by
//! device and inode before every write, reopened after rotation.

use super::sink::{ReopenLock, Sink};
use crate::sys::logfile::{self, Ident};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub struct FileTarget {
    /// The directory, as opened at load time: reopening goes through it (chroot-proof).
    dir_path: CString,
    dir_ident: Ident,
    dir: Sink,
    name: CString,
    file: Sink,
}

pub fn open_file_target(path: &Path) -> std::io::Result<FileTarget> {
    let bad = || std::io::Error::from_raw_os_error(libc::EINVAL);
    let name = path.file_name().ok_or_else(bad)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir_path = CString::new(dir.as_os_str().as_bytes()).map_err(|_| bad())?;
    let name = CString::new(name.as_bytes()).map_err(|_| bad())?;
    let dirfd = logfile::open_dir(&dir_path)?;
    let dir_ident = logfile::fd_ident(dirfd).ok_or_else(bad)?;
    let fd = match logfile::open_append(dirfd, &name) {
        Ok(fd) => fd,
        Err(e) => {
            logfile::close(dirfd);
            return Err(e);
        }
    };
    let t = FileTarget {
        dir_path,
        dir_ident,
        dir: Sink::new(),
        name,
        file: Sink::new(),
    };
    t.dir.set(dirfd, dir_ident);
    t.file.set(fd, logfile::fd_ident(fd).ok_or_else(bad)?);
    Ok(t)
}

pub fn write_file(lock: &ReopenLock, t: &FileTarget, line: &[u8]) {
    // Fast path: our descriptor, our directory, and the path still names our file.
    if let (Some(fd), Some(dirfd)) = (t.file.verified(), t.dir.verified()) {
        if logfile::path_ident(dirfd, &t.name) == Some(t.file.ident()) {
            let _ = logfile::write_once(fd, line);
            return;
        }
    }
    let Some(_held) = lock.acquire() else {
        // Another thread is reopening and did not finish in time: write to our
        // descriptor if it is still ours (the old file, not lost), else drop.
        if let Some(fd) = t.file.verified() {
            let _ = logfile::write_once(fd, line);
        }
        return;
    };
    if let Some(fd) = reopen_file(t) {
        let _ = logfile::write_once(fd, line);
    }
}

/// Under the reopen lock: a verified descriptor for the log, reopening as needed.
fn reopen_file(t: &FileTarget) -> Option<i32> {
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
    let fresh = dirfd.and_then(|d| logfile::open_append(d, &t.name).ok());
    let (Some(fresh), cur) = (fresh, current) else {
        // Cannot reopen (directory gone or not reachable): keep the old file if ours.
        return current;
    };
    let Some(id) = logfile::fd_ident(fresh) else {
        logfile::close(fresh);
        return current;
    };
    match cur {
        // Rotated: put the new file under our number (atomically, so threads that
        // already checked it write to one file or the other, never elsewhere).
        Some(ours) => match logfile::replace(fresh, ours) {
            Ok(()) => {
                t.file.set(ours, id);
                Some(ours)
            }
            Err(_) => Some(ours),
        },
        // Our number was closed or now belongs to the program: never touch it, use a
        // new one.
        None => {
            t.file.set(fresh, id);
            Some(fresh)
        }
    }
}
