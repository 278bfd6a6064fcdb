//! Output helpers shared by the subcommands.

use std::fmt::Display;
use std::io::Write;
use std::process::ExitCode;

/// Print one line to stdout. A closed pipe (`sockexit check | head -0`) is not an
/// error worth a panic: the caller's exit code already says what happened.
pub fn say(line: impl Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Print `error: MSG` to stderr and return exit code 1.
pub fn fail(msg: impl Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

/// True when fd 2 is an IPv4/IPv6 socket. Under inetd/xinetd (and `sshd -i`) fds 0-2
/// are the client's connection: a wrapper started there must not send the peer a
/// single byte of its own diagnostics. A systemd journal stream (AF_UNIX) is fine.
pub fn stderr_is_ip_socket() -> bool {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `ss`, which is that large;
    // fd 2 is only inspected, never read, written or closed.
    let rc = unsafe {
        libc::getsockname(
            libc::STDERR_FILENO,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    rc == 0 && matches!(i32::from(ss.ss_family), libc::AF_INET | libc::AF_INET6)
}

/// Replace `to` with `bytes` all at once: written to a temporary name beside it
/// (mode 0644, never through a symlink), synced, then renamed over it; the temporary
/// file is removed if any step fails. Readers see the old file or the new one.
pub fn write_atomically(to: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| format!("cannot write {}: {e}", to.display());
    let tmp = to.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(err)?;
    if let Err(e) = f
        .write_all(bytes)
        .and_then(|_| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, to))
    {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}
