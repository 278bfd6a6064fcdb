//! What fd 2 is, so diagnostics and `audit: stderr` write only to the fd 2 the process
//! started with (daemons close 0–2 and reopen the numbers on their own files), and
//! never into an IP socket (inetd, `sshd -i`: fd 2 is the client's connection).

use super::c_int;
use std::mem;

/// A descriptor's identity: file type (`st_mode & S_IFMT`), device and inode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FdId {
    pub kind: u32,
    pub dev: u64,
    pub ino: u64,
}

impl FdId {
    pub fn is_socket(&self) -> bool {
        self.kind == libc::S_IFSOCK
    }
}

/// `fstat(2)` identity of `fd`, `None` when it is not open.
pub fn fd_id(fd: c_int) -> Option<FdId> {
    // SAFETY: stat is plain old data; fstat fills it on success.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    syscall!(fstat(fd, &mut st)).ok()?;
    Some(FdId {
        kind: st.st_mode & libc::S_IFMT,
        dev: st.st_dev,
        ino: st.st_ino,
    })
}
