//! Diagnostics (`SOCKEXIT_LOG`, env_logger filter syntax, default `warn`).
//!
//! The library's own [`log::Log`]: the filter is parsed once at load time (by
//! `env_filter`, the parser behind env_logger: `warn`, `off`, `sockexit::audit=debug`,
//! `info,sockexit::stealth=trace`, ...), and each message is formatted into a fixed
//! stack buffer (cut with a ` [...]` mark when longer) and written with **one
//! `write(2)`**. No lock, no allocation of ours: a child forked while another thread
//! was logging can log too (env_logger's writer takes a Mutex, which a `fork()` can
//! leave held forever in the child).
//!
//! Where messages go:
//!
//! - fd 2, but only while it is the fd 2 the process started with (file type, device,
//!   inode recorded at load time: daemons close 0–2 and reopen the numbers on their
//!   own files), and never when that was an IP socket (inetd, xinetd, `sshd -i`: fd 2
//!   is the client's connection). An AF_UNIX socket is fine: under systemd fd 2 is the
//!   journal's stream socket.
//! - errors (a policy that cannot be loaded, an internal error) also to syslog
//!   (`/dev/log`, one datagram on a socket of our own, not libc's `syslog(3)`, which
//!   takes a lock), unless fd 2 is already the journal (`JOURNAL_STREAM`); warnings
//!   to syslog when fd 2 cannot take them.

use crate::sys::{self, logfile, stderr::FdId};
use log::{Level, Log, Metadata, Record};
use std::fmt::{self, Write as _};
use std::sync::OnceLock;

/// Where `/dev/log` is; `SOCKEXIT_SYSLOG_SOCKET` (absolute; ignored under AT_SECURE,
/// like every `SOCKEXIT_*` variable) replaces it, so tests can receive the datagrams.
const DEV_LOG: &[u8] = b"/dev/log";

/// Bytes of one message, prefix and newline included.
const MSG_MAX: usize = 1024;

/// syslog facility `authpriv` (10), severity `err` (3): a policy that cannot be
/// loaded makes the service refuse everything, which is a security event.
const PRI_ERR: u8 = 10 * 8 + 3;
/// `authpriv.warning`, for warnings fd 2 could not take.
const PRI_WARNING: u8 = 10 * 8 + 4;

struct Diag {
    filter: env_filter::Filter,
    /// fd 2 as it was at load time, `None` when it must never be written (closed, or
    /// an IP socket).
    fd2: Option<FdId>,
    /// Errors also go to syslog (not when fd 2 is the journal already).
    errors_to_syslog: bool,
}

static DIAG: OnceLock<Diag> = OnceLock::new();
static SYSLOG_PATH: OnceLock<Vec<u8>> = OnceLock::new();

struct Logger;
static LOGGER: Logger = Logger;

/// The syslog socket path: `SOCKEXIT_SYSLOG_SOCKET` or `/dev/log`.
pub fn syslog_path() -> &'static [u8] {
    SYSLOG_PATH.get_or_init(|| {
        crate::state::env_var("SOCKEXIT_SYSLOG_SOCKET")
            .filter(|p| p.starts_with('/'))
            .map(String::into_bytes)
            .unwrap_or_else(|| DEV_LOG.to_vec())
    })
}

/// fd 2 at load time, if it may be written at all.
fn usable_fd2() -> Option<FdId> {
    let id = sys::stderr::fd_id(2)?;
    if id.is_socket() && sys::socket_domain(2) != Some(libc::AF_UNIX) {
        return None; // a TCP/UDP peer: never a byte of ours
    }
    Some(id)
}

/// Whether `JOURNAL_STREAM` (set by systemd: `DEV:INO` of the stream it connected to
/// fd 2) names fd 2: then fd 2 is the journal, and syslog would only duplicate.
fn fd2_is_journal(id: Option<FdId>) -> bool {
    let (Some(id), Ok(v)) = (id, std::env::var("JOURNAL_STREAM")) else {
        return false;
    };
    let mut it = v.splitn(2, ':').map(|s| s.parse::<u64>().ok());
    matches!((it.next(), it.next()), (Some(Some(d)), Some(Some(i))) if d == id.dev && i == id.ino)
}

/// Install the logger for this library's own `log` facade (separate from any the
/// host program has: the cdylib carries its own copy of `log`).
pub fn init() {
    // As the process started: the front's record when it loaded us later.
    let spec = match crate::sys::front::start() {
        Some(f) if f.secure == 0 => crate::sys::front::start_env(f.log),
        Some(_) => None,
        None => crate::state::env_var("SOCKEXIT_LOG"),
    }
    .unwrap_or_else(|| "warn".into());
    let mut b = env_filter::Builder::new();
    let bad = b.try_parse(&spec).is_err();
    if bad {
        b = env_filter::Builder::new();
        b.filter_level(log::LevelFilter::Warn);
    }
    let filter = b.build();
    let max = filter.filter();
    let fd2 = usable_fd2();
    let d = Diag {
        filter,
        fd2,
        errors_to_syslog: !fd2_is_journal(fd2),
    };
    syslog_path();
    if DIAG.set(d).is_ok() && log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(max);
    }
    if bad {
        log::warn!("SOCKEXIT_LOG={spec:?} is not a filter (e.g. `warn`, `debug`, `sockexit::audit=debug`); using `warn`");
    }
}

/// Whether fd 2 is still the one this process started with (and may be written).
/// One `fstat(2)`; checked before every write, as daemons reuse numbers at any time.
pub fn stderr_ok() -> bool {
    let Some(want) = DIAG.get().and_then(|d| d.fd2) else {
        return false;
    };
    sys::stderr::fd_id(2) == Some(want)
}

/// Write `bytes` to fd 2 with one `write(2)` if [`stderr_ok`]; whether it was written.
pub fn write_stderr(bytes: &[u8]) -> bool {
    stderr_ok() && logfile::write_once(2, bytes).is_ok_and(|n| n == bytes.len())
}

/// One datagram to syslog on a socket of our own (made, used and closed here).
pub fn send_syslog(bytes: &[u8]) -> bool {
    let Ok(fd) = logfile::unix_dgram_connect(syslog_path()) else {
        return false;
    };
    let ok = logfile::send_dgram(fd, bytes).is_ok();
    logfile::close(fd);
    ok
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        DIAG.get().is_some_and(|d| d.filter.enabled(m))
    }

    fn log(&self, r: &Record<'_>) {
        let Some(d) = DIAG.get() else { return };
        if !d.filter.matches(r) {
            return;
        }
        let pid = sys::pid();
        let mut b = MsgBuf::<MSG_MAX>::new();
        let _ = write!(b, "sockexit[{pid}]: {}: {}", r.level(), r.args());
        let on_stderr = write_stderr(b.line());
        // Errors always reach syslog too (not when fd 2 is the journal already);
        // warnings when fd 2 cannot take them (a daemon put its own file there), so
        // a "said once" message is said somewhere.
        let to_syslog = match r.level() {
            Level::Error => d.errors_to_syslog || !on_stderr,
            Level::Warn => !on_stderr,
            _ => false,
        };
        if to_syslog {
            let mut s = MsgBuf::<MSG_MAX>::new();
            let pri = if r.level() == Level::Error {
                PRI_ERR
            } else {
                PRI_WARNING
            };
            let _ = write!(s, "<{pri}>sockexit[{pid}]: {}: {}", r.level(), r.args());
            send_syslog(s.text());
        }
    }

    fn flush(&self) {}
}

/// A fixed-size message buffer: text past the end is dropped at a character boundary
/// and the message ends in [`MsgBuf::MARK`], so a cut message says it was cut.
pub struct MsgBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    cut: bool,
}

impl<const N: usize> MsgBuf<N> {
    pub const MARK: &'static [u8] = b" [...]";

    pub fn new() -> Self {
        MsgBuf {
            buf: [0; N],
            len: 0,
            cut: false,
        }
    }

    fn room(&self) -> usize {
        N - Self::MARK.len() - 1 - self.len
    }

    fn push(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    /// The text, with the mark if cut, without a newline.
    pub fn text(&mut self) -> &[u8] {
        if self.cut {
            self.push(Self::MARK);
            self.cut = false;
        }
        &self.buf[..self.len]
    }

    /// The text and a newline.
    pub fn line(&mut self) -> &[u8] {
        let n = self.text().len();
        self.buf[n] = b'\n';
        &self.buf[..n + 1]
    }
}

impl<const N: usize> fmt::Write for MsgBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.cut {
            return Ok(());
        }
        let room = self.room();
        if s.len() <= room {
            self.push(s.as_bytes());
        } else {
            let mut take = room;
            while !s.is_char_boundary(take) {
                take -= 1;
            }
            self.push(&s.as_bytes()[..take]);
            self.cut = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::LevelFilter;

    #[test]
    fn short_message_is_whole_with_one_newline() {
        let mut b = MsgBuf::<64>::new();
        let _ = write!(b, "sockexit[{}]: {}: hello", 7, Level::Warn);
        assert_eq!(b.line(), b"sockexit[7]: WARN: hello\n");
    }

    #[test]
    fn long_message_is_cut_at_a_character_boundary_with_a_mark() {
        let mut b = MsgBuf::<32>::new();
        let _ = write!(b, "{}", "é".repeat(100));
        let l = b.line().to_vec();
        assert!(l.len() <= 32 && l.len() >= 31, "{}", l.len());
        let s = std::str::from_utf8(&l).expect("cut at a boundary");
        assert!(s.ends_with(" [...]\n"), "{s}");
        assert!(s.starts_with("éé"));
        let mut b = MsgBuf::<32>::new();
        let _ = write!(b, "{}", "x".repeat(25));
        assert_eq!(b.line().len(), 26, "exactly at the limit: not cut");
    }

    #[test]
    fn env_logger_filter_syntax_is_honoured() {
        let f = env_filter::Builder::new()
            .try_parse("warn,sockexit::audit=debug")
            .unwrap()
            .build();
        let m = |target: &str, level| {
            f.enabled(&Metadata::builder().target(target).level(level).build())
        };
        assert!(m("sockexit::audit", Level::Debug));
        assert!(m("sockexit::audit::file", Level::Debug));
        assert!(!m("sockexit::hook", Level::Debug));
        assert!(m("sockexit::hook", Level::Warn));
        let off = env_filter::Builder::new().try_parse("off").unwrap().build();
        assert_eq!(off.filter(), LevelFilter::Off);
    }
}
