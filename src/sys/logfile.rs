//! Audit-log I/O: the file and syslog targets' system calls.
//!
//! Every descriptor made here is `O_CLOEXEC` and moved to a high number (>= [`HIGH_FD`])
//! so it stays out of the way of programs that count on small numbers. None of these
//! functions allocates or takes a lock: they run inside hooks, possibly in the child of
//! a multi-threaded `fork()`.

use super::{c_int, real_connect, sockaddr, socklen_t};
use std::ffi::CStr;
use std::io;
use std::mem;

/// Lowest descriptor number the audit log uses.
pub const HIGH_FD: c_int = 900;

/// What a descriptor or path refers to: device and inode (`st_dev`, `st_ino`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ident {
    pub dev: u64,
    pub ino: u64,
}

fn ident_of(st: &libc::stat) -> Ident {
    Ident {
        dev: st.st_dev,
        ino: st.st_ino,
    }
}

/// `fstat(2)` identity of `fd`, `None` if it is not open.
pub fn fd_ident(fd: c_int) -> Option<Ident> {
    if fd < 0 {
        return None;
    }
    // SAFETY: stat is plain old data; fstat fills it on success.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    syscall!(fstat(fd, &mut st)).ok()?;
    Some(ident_of(&st))
}

/// `fstatat(2)` identity of `name` inside directory `dirfd`, **not** following a
/// symlink (a link put where the log was names another inode, so the caller reopens,
/// and the reopen refuses it).
pub fn path_ident(dirfd: c_int, name: &CStr) -> Option<Ident> {
    // SAFETY: stat is plain old data; fstatat fills it on success.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    syscall!(fstatat(
        dirfd,
        name.as_ptr(),
        &mut st,
        libc::AT_SYMLINK_NOFOLLOW
    ))
    .ok()?;
    Some(ident_of(&st))
}

/// What the audit path needs to know about a descriptor: type, owner, permission
/// bits and link count (0 once the file was unlinked).
#[derive(Clone, Copy, Debug)]
pub struct FdStat {
    pub ident: Ident,
    /// `st_mode & S_IFMT`.
    pub kind: u32,
    /// `st_mode & 0o7777`.
    pub perm: u32,
    pub uid: u32,
    pub nlink: u64,
}

impl FdStat {
    pub fn is_regular(&self) -> bool {
        self.kind == libc::S_IFREG
    }
}

/// `fstat(2)` of `fd` as an [`FdStat`], `None` if it is not open.
pub fn fd_stat(fd: c_int) -> Option<FdStat> {
    if fd < 0 {
        return None;
    }
    // SAFETY: stat is plain old data; fstat fills it on success.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    syscall!(fstat(fd, &mut st)).ok()?;
    Some(FdStat {
        ident: ident_of(&st),
        kind: st.st_mode & libc::S_IFMT,
        perm: st.st_mode & 0o7777,
        uid: st.st_uid,
        nlink: st.st_nlink,
    })
}

/// Move `fd` to the lowest free number >= [`HIGH_FD`] (close-on-exec), closing the
/// original. If the limit on open files is too low for that, the original is kept.
fn move_high(fd: c_int) -> c_int {
    match syscall!(fcntl(fd, libc::F_DUPFD_CLOEXEC, HIGH_FD)) {
        Ok(hi) => {
            let _ = syscall!(close(fd));
            hi
        }
        Err(_) => fd,
    }
}

/// Open a directory as an `O_PATH` handle on a high descriptor: reopening the log
/// through it works after the program chroots, and a rename of the directory's
/// path cannot redirect us.
pub fn open_dir(path: &CStr) -> io::Result<c_int> {
    let fd = syscall!(open(
        path.as_ptr(),
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC
    ))?;
    Ok(move_high(fd))
}

/// How [`open_append`] may create the log.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Create {
    /// Only open an existing file.
    No,
    /// Open it, creating it if missing (`O_CREAT`).
    Yes,
    /// Create it, failing with `EEXIST` if anything has the name (`O_CREAT|O_EXCL`).
    Excl,
}

/// Open `name` in `dirfd` for appending, on a high descriptor: never through a
/// symlink (`O_NOFOLLOW`: `ELOOP`; with `O_CREAT` a dangling link is not followed
/// either), never blocking on a FIFO, never becoming a controlling terminal, and only
/// a regular file (anything else is closed again: `InvalidData`). Created files get
/// mode 0640 before umask.
pub fn open_append(dirfd: c_int, name: &CStr, create: Create) -> io::Result<c_int> {
    let mut flags = libc::O_WRONLY
        | libc::O_APPEND
        | libc::O_CLOEXEC
        | libc::O_NOCTTY
        | libc::O_NONBLOCK
        | libc::O_NOFOLLOW;
    match create {
        Create::No => {}
        Create::Yes => flags |= libc::O_CREAT,
        Create::Excl => flags |= libc::O_CREAT | libc::O_EXCL,
    }
    let fd = syscall!(openat(dirfd, name.as_ptr(), flags, 0o640 as libc::c_uint))?;
    if !fd_stat(fd).is_some_and(|st| st.is_regular()) {
        let _ = syscall!(close(fd));
        return Err(io::Error::from(io::ErrorKind::InvalidData));
    }
    Ok(move_high(fd))
}

/// A connectionless AF_UNIX datagram socket connected to `path` (syslog's
/// `/dev/log`), on a high descriptor.
pub fn unix_dgram_connect(path: &[u8]) -> io::Result<c_int> {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut sun: libc::sockaddr_un = unsafe { mem::zeroed() };
    if path.is_empty() || path.len() >= sun.sun_path.len() || path.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in sun.sun_path.iter_mut().zip(path) {
        *d = *s as libc::c_char;
    }
    let fd = syscall!(socket(
        libc::AF_UNIX,
        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
        0
    ))?;
    let fd = move_high(fd);
    let len = (mem::size_of::<libc::sa_family_t>() + path.len() + 1) as socklen_t;
    // SAFETY: sun is a valid sockaddr_un of at least `len` bytes. The real connect is
    // used so the library never judges (or recurses into) its own syslog socket.
    let r = unsafe { real_connect(fd, &sun as *const libc::sockaddr_un as *const sockaddr, len) };
    if r == -1 {
        let e = io::Error::last_os_error();
        let _ = syscall!(close(fd));
        return Err(e);
    }
    Ok(fd)
}

/// Make `ours` refer to what `fresh` refers to (atomically, `dup3(2)`), then close
/// `fresh`. The number `ours` stays the same, so a thread about to write to it writes
/// to the old or the new log, never to a closed or reused descriptor.
pub fn replace(fresh: c_int, ours: c_int) -> io::Result<()> {
    let r = syscall!(dup3(fresh, ours, libc::O_CLOEXEC));
    let _ = syscall!(close(fresh));
    r.map(|_| ())
}

/// `close(2)` a descriptor this module created and never handed out.
pub fn close(fd: c_int) {
    let _ = syscall!(close(fd));
}

/// One `write(2)` of the whole line (retried only when interrupted before writing
/// anything), so `O_APPEND` writers in other threads and processes never interleave.
pub fn write_once(fd: c_int, buf: &[u8]) -> io::Result<usize> {
    loop {
        match syscall!(write(fd, buf.as_ptr() as *const libc::c_void, buf.len())) {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// One datagram on a connected socket. Never blocks (a stalled syslog daemon must
/// not stall the server) and never raises SIGPIPE.
pub fn send_dgram(fd: c_int, buf: &[u8]) -> io::Result<usize> {
    loop {
        match syscall!(send(
            fd,
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL
        )) {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The host name (`gethostname(2)`: uname's nodename, no resolver), into `buf`;
/// returns the used prefix.
pub fn hostname(buf: &mut [u8; 256]) -> &[u8] {
    let r = syscall!(gethostname(
        buf.as_mut_ptr() as *mut libc::c_char,
        buf.len() - 1
    ));
    if r.is_err() {
        return &[];
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len() - 1);
    &buf[..n]
}

/// Give the CPU away while another thread of this process reopens the log.
pub fn yield_now() {
    // SAFETY: no arguments; sched_yield cannot fail on Linux.
    unsafe { libc::sched_yield() };
}

/// `getpid(2)`, as a signed value for lock words.
pub fn pid() -> i32 {
    // SAFETY: no arguments, always succeeds.
    unsafe { libc::getpid() }
}
