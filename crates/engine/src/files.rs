//! The engine's own reads: the policy, its set files, `/etc/passwd` and `/etc/group`.
//!
//! They happen inside the constructor of every process the library is preloaded into,
//! often a root daemon, before `main`. So a path that names a FIFO must not block
//! (a FIFO without a writer would hang the process, and every process started after
//! it, in its constructor), a device must not be read (`/dev/zero` never ends), and no
//! read may be unbounded, not even for a regular file that grows between the size
//! check and the read. Hence: open without blocking, `fstat` the open descriptor
//! (not the path, which can be swapped in between), accept only regular files, and
//! read at most the limit plus one byte.

use std::fs::{FileType, Metadata};
use std::io::Read;
use std::path::Path;

/// Why [`read_regular`] refused or failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Opening or reading failed (missing, unreadable, a directory...).
    Io(std::io::Error),
    /// Not a regular file; says what it is instead: "a FIFO", "a character device"...
    NotRegular(&'static str),
    /// More than the limit.
    TooBig,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::NotRegular(what) => write!(f, "is {what}, not a regular file"),
            ReadError::TooBig => f.write_str("is too large"),
        }
    }
}

/// The contents of the regular file at `path` (symlinks followed: configuration tools
/// manage policies through them), at most `limit` bytes, and the metadata of the
/// descriptor they were read from (its owner and mode are what the permission rule
/// judges).
pub(crate) fn read_regular(path: &Path, limit: u64) -> Result<(Vec<u8>, Metadata), ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a
    // writer (it changes nothing for a regular file). O_NOCTTY: a terminal device
    // named as a policy must not become a session leader's controlling terminal.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match std::fs::metadata(path) {
            // A socket cannot be opened (ENXIO): say what it is, not "no such device".
            Ok(m) if !m.is_file() && !m.is_dir() => ReadError::NotRegular(kind(m.file_type())),
            _ => ReadError::Io(e),
        })?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if meta.is_dir() {
        // The words every tool uses for a directory.
        return Err(ReadError::Io(std::io::Error::from_raw_os_error(
            libc::EISDIR,
        )));
    }
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind(meta.file_type())));
    }
    if meta.len() > limit {
        return Err(ReadError::TooBig);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooBig);
    }
    Ok((bytes, meta))
}

/// What a non-regular file is, in the words of `ls -l`'s first letter.
fn kind(t: FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_dir() {
        "a directory"
    } else {
        "a file of unknown type"
    }
}
