//! Audit trail: one JSON line per decision the policy asks to record.
//!
//! [`init`] runs once in the load-time constructor: it opens the target (a file, the
//! syslog socket, or nothing for stderr) before the program can chroot or drop
//! privileges, and pre-escapes what never changes (the program path). [`record`] runs
//! inside the hooks: it formats into a fixed stack buffer (no allocation, no lock, no
//! formatting that could allocate), checks that the descriptor is still the one it
//! opened, and writes the whole line with a single `write(2)`.
//!
//! Reopening (the program closed or reused our descriptor, or logrotate renamed the
//! file) is serialised by a lock word holding the owner's pid: a thread of this process
//! waits for it a bounded time, and a child of `fork()` that inherited it held simply
//! takes it over, so no fork can leave it stuck.

use crate::sys::logfile::{self, Ident};
use sockexit_engine::{AuditConfig, AuditEvents, AuditLog, Call, Mode, Verdict};
use std::ffi::CString;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;

/// One decision to record.
pub struct Event<'a> {
    pub call: Call,
    pub verdict: Verdict,
    pub rule: &'a str,
    pub mode: Mode,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
}

/// Bytes of the stack buffer a line (with its syslog header) is formatted into.
const LINE_MAX: usize = 1280;
/// Budget for the escaped program path and rule name; longer ones end in `...`.
const PROGRAM_MAX: usize = 480;
const RULE_MAX: usize = 200;
/// Budget for the syslog HOSTNAME field.
const HOST_MAX: usize = 64;

/// Where `/dev/log` is; `SOCKEXIT_SYSLOG_SOCKET` overrides it (tests), see [`init`].
const DEV_LOG: &[u8] = b"/dev/log";

/// syslog facility `authpriv` (10), severities `warning` (4) and `info` (6).
const PRI_DENY: u8 = 10 * 8 + 4;
const PRI_ALLOW: u8 = 10 * 8 + 6;

// ---------------------------------------------------------------------------------
// Line formatting (pure, unit-tested).
// ---------------------------------------------------------------------------------

/// A fixed-size line buffer. Writes past the end are dropped and remembered, so a
/// line that would not fit is never emitted half-formed.
pub struct LineBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
}

impl<const N: usize> LineBuf<N> {
    pub fn new() -> Self {
        LineBuf {
            buf: [0; N],
            len: 0,
            overflow: false,
        }
    }

    pub fn push(&mut self, b: &[u8]) {
        if self.overflow || self.len + b.len() > N {
            self.overflow = true;
            return;
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    /// The formatted bytes, `None` if anything did not fit.
    pub fn bytes(&self) -> Option<&[u8]> {
        (!self.overflow).then_some(&self.buf[..self.len])
    }
}

impl<const N: usize> fmt::Write for LineBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Append `s` as a JSON string (with quotes). Invalid UTF-8 becomes U+FFFD, control
/// characters are escaped, and the escaped text is cut at `max` bytes at a character
/// boundary, ending in `...` when cut.
pub fn push_json_str<const N: usize>(out: &mut LineBuf<N>, s: &[u8], max: usize) {
    const CUT: &[u8] = b"...";
    out.push(b"\"");
    let mut used = 0usize;
    let mut tmp = [0u8; 6];
    'chunks: for chunk in s.utf8_chunks() {
        let invalid: &[char] = if chunk.invalid().is_empty() {
            &[]
        } else {
            &['\u{fffd}']
        };
        for c in chunk.valid().chars().chain(invalid.iter().copied()) {
            let enc: &[u8] = match c {
                '"' => b"\\\"",
                '\\' => b"\\\\",
                '\n' => b"\\n",
                '\r' => b"\\r",
                '\t' => b"\\t",
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    let v = c as u32;
                    tmp = [
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[(v >> 4) as usize],
                        HEX[(v & 15) as usize],
                    ];
                    &tmp
                }
                c => c.encode_utf8(&mut tmp[..4]).as_bytes(),
            };
            if used + enc.len() + CUT.len() > max {
                out.push(CUT);
                break 'chunks;
            }
            out.push(enc);
            used += enc.len();
        }
    }
    out.push(b"\"");
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for seconds and milliseconds since the Unix epoch.
pub fn push_rfc3339<const N: usize>(out: &mut LineBuf<N>, secs: i64, millis: u32) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `"a.b.c.d:port"` / `"[v6]:port"` or `null`. A v4-mapped peer (`::ffff:a.b.c.d`, as a
/// dual-stack socket reports IPv4 clients) is written as IPv4, as the rules see it.
fn push_addr<const N: usize>(out: &mut LineBuf<N>, a: Option<SocketAddr>) {
    let a = match a {
        Some(SocketAddr::V6(v6)) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => Some(SocketAddr::from((v4, v6.port()))),
            None => Some(SocketAddr::V6(v6)),
        },
        other => other,
    };
    match a {
        // Only digits, hex, '.', ':', '[', ']' and '%': nothing to escape.
        Some(a) => {
            let _ = write!(out, "\"{a}\"");
        }
        None => out.push(b"null"),
    }
}

/// The clock and process facts of one line.
pub struct Stamp<'a> {
    pub secs: i64,
    pub millis: u32,
    pub pid: u32,
    pub uid: u32,
    /// Already JSON-escaped, with quotes (see [`push_json_str`]), or `null`.
    pub program_json: &'a [u8],
}

/// The JSON object of one decision, without a trailing newline.
pub fn push_json<const N: usize>(out: &mut LineBuf<N>, st: &Stamp<'_>, ev: &Event<'_>) {
    out.push(b"{\"ts\":\"");
    push_rfc3339(out, st.secs, st.millis);
    let _ = write!(out, "\",\"pid\":{},\"program\":", st.pid);
    out.push(st.program_json);
    let _ = write!(out, ",\"user\":{},\"call\":\"", st.uid);
    out.push(ev.call.as_str().as_bytes());
    out.push(b"\",\"local\":");
    push_addr(out, ev.local);
    out.push(b",\"remote\":");
    push_addr(out, ev.remote);
    out.push(b",\"verdict\":\"");
    out.push(ev.verdict.as_str().as_bytes());
    out.push(b"\",\"rule\":");
    push_json_str(out, ev.rule.as_bytes(), RULE_MAX);
    out.push(b",\"mode\":\"");
    out.push(ev.mode.as_str().as_bytes());
    out.push(b"\"}");
}

/// RFC 5424 header: `<PRI>1 TIMESTAMP HOSTNAME sockexit PROCID - - `.
pub fn push_syslog_header<const N: usize>(
    out: &mut LineBuf<N>,
    st: &Stamp<'_>,
    host: &[u8],
    verdict: Verdict,
) {
    let pri = match verdict {
        Verdict::Deny => PRI_DENY,
        Verdict::Allow => PRI_ALLOW,
    };
    let _ = write!(out, "<{pri}>1 ");
    push_rfc3339(out, st.secs, st.millis);
    out.push(b" ");
    out.push(if host.is_empty() { b"-" } else { host });
    let _ = write!(out, " sockexit {} - - ", st.pid);
}

/// RFC 5424 HOSTNAME: printable US-ASCII without spaces, at most [`HOST_MAX`] bytes.
fn sanitize_host(raw: &[u8]) -> Vec<u8> {
    raw.iter()
        .take(HOST_MAX)
        .map(|&b| if (33..=126).contains(&b) { b } else { b'-' })
        .collect()
}

// ---------------------------------------------------------------------------------
// Targets.
// ---------------------------------------------------------------------------------

/// A descriptor we opened and the identity it had, read without locks. A torn read
/// (fd of one generation, identity of another) only ever fails the check and sends the
/// caller to the locked slow path, never the other way round.
struct Sink {
    fd: AtomicI32,
    dev: AtomicU64,
    ino: AtomicU64,
}

impl Sink {
    const fn new() -> Sink {
        Sink {
            fd: AtomicI32::new(-1),
            dev: AtomicU64::new(0),
            ino: AtomicU64::new(0),
        }
    }

    fn ident(&self) -> Ident {
        Ident {
            dev: self.dev.load(Ordering::Acquire),
            ino: self.ino.load(Ordering::Acquire),
        }
    }

    /// The descriptor, if it still refers to what we opened (never a program's file).
    fn verified(&self) -> Option<i32> {
        let fd = self.fd.load(Ordering::Acquire);
        let want = self.ident();
        (logfile::fd_ident(fd)? == want).then_some(fd)
    }

    fn set(&self, fd: i32, id: Ident) {
        self.dev.store(id.dev, Ordering::Release);
        self.ino.store(id.ino, Ordering::Release);
        self.fd.store(fd, Ordering::Release);
    }
}

/// Serialises reopening. Holds the owner's pid, 0 when free: threads of this process
/// wait (bounded), a forked child takes over a word its parent's thread held.
struct ReopenLock(AtomicI32);

struct Held<'a>(&'a AtomicI32);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

impl ReopenLock {
    fn acquire(&self) -> Option<Held<'_>> {
        let me = logfile::pid();
        for _ in 0..20_000 {
            let cur = self.0.load(Ordering::Acquire);
            if cur != me
                && self
                    .0
                    .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return Some(Held(&self.0));
            }
            logfile::yield_now();
        }
        None
    }
}

struct FileTarget {
    /// The directory, as opened at load time: reopening goes through it (chroot-proof).
    dir_path: CString,
    dir_ident: Ident,
    dir: Sink,
    name: CString,
    file: Sink,
}

struct SyslogTarget {
    path: Vec<u8>,
    host: Vec<u8>,
    sock: Sink,
}

enum Target {
    Stderr,
    Syslog(SyslogTarget),
    File(FileTarget),
}

struct Audit {
    target: Target,
    program_json: Vec<u8>,
    lock: ReopenLock,
}

static AUDIT: OnceLock<Audit> = OnceLock::new();

/// Called once from the load-time constructor, after the policy loaded.
///
/// `SOCKEXIT_SYSLOG_SOCKET` (an absolute path; ignored in setuid/AT_SECURE processes
/// like every `SOCKEXIT_*` variable) replaces `/dev/log`, so tests can receive the
/// datagrams. Whoever can set it can already set `SOCKEXIT_POLICY`.
pub fn init(cfg: &AuditConfig) {
    let st = Some(crate::state::state());
    let program = st.and_then(|s| s.program.as_deref());
    let mut pj = LineBuf::<{ PROGRAM_MAX + 2 }>::new();
    match program {
        Some(p) => push_json_str(&mut pj, p, PROGRAM_MAX),
        None => pj.push(b"null"),
    }
    let program_json = pj.bytes().unwrap_or(b"null").to_vec();
    let target = match &cfg.log {
        AuditLog::Off => return,
        AuditLog::Stderr => Target::Stderr,
        AuditLog::Syslog => {
            let path = crate::state::env_var("SOCKEXIT_SYSLOG_SOCKET")
                .filter(|p| p.starts_with('/'))
                .map(String::into_bytes)
                .unwrap_or_else(|| DEV_LOG.to_vec());
            let mut hb = [0u8; 256];
            let host = sanitize_host(logfile::hostname(&mut hb));
            let t = SyslogTarget {
                path,
                host,
                sock: Sink::new(),
            };
            match connect_syslog(&t) {
                Ok(()) => {}
                Err(e) => log::warn!(
                    "audit: cannot reach syslog at {}: {e}; will retry on each line",
                    String::from_utf8_lossy(&t.path)
                ),
            }
            Target::Syslog(t)
        }
        AuditLog::File(path) => match open_file_target(path) {
            Ok(t) => Target::File(t),
            Err(e) => {
                log::error!(
                    "audit: cannot open {}: {e}; no audit lines will be written",
                    path.display()
                );
                return;
            }
        },
    };
    log::debug!(
        "audit: {:?}, events {}",
        cfg.log,
        match cfg.events {
            AuditEvents::Deny => "deny",
            AuditEvents::All => "all",
        }
    );
    let _ = AUDIT.set(Audit {
        target,
        program_json,
        lock: ReopenLock(AtomicI32::new(0)),
    });
}

fn open_file_target(path: &Path) -> std::io::Result<FileTarget> {
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

fn connect_syslog(t: &SyslogTarget) -> std::io::Result<()> {
    let fresh = logfile::unix_dgram_connect(&t.path)?;
    let id = logfile::fd_ident(fresh).ok_or_else(std::io::Error::last_os_error)?;
    match t.sock.verified() {
        // Still ours: swap in place, the number never changes hands.
        Some(ours) => {
            logfile::replace(fresh, ours)?;
            t.sock.set(ours, id);
        }
        None => t.sock.set(fresh, id),
    }
    Ok(())
}

/// Record one decision. Safe after `fork()` in a multi-threaded program and in a
/// signal handler's hooked call: no allocation, no lock that can be left held.
pub fn record(ev: &Event<'_>) {
    let Some(a) = AUDIT.get() else { return };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let st = Stamp {
        secs: now.as_secs() as i64,
        millis: now.subsec_millis(),
        pid: crate::sys::pid(),
        uid: crate::sys::euid(),
        program_json: &a.program_json,
    };
    let mut line = LineBuf::<LINE_MAX>::new();
    match &a.target {
        Target::Syslog(t) => {
            push_syslog_header(&mut line, &st, &t.host, ev.verdict);
            push_json(&mut line, &st, ev);
            if let Some(b) = line.bytes() {
                send_syslog(a, t, b);
            }
        }
        Target::File(t) => {
            push_json(&mut line, &st, ev);
            line.push(b"\n");
            if let Some(b) = line.bytes() {
                write_file(a, t, b);
            }
        }
        Target::Stderr => {
            push_json(&mut line, &st, ev);
            line.push(b"\n");
            // Never a byte into a client's socket (inetd, `sshd -i`) or a closed fd.
            if let Some(b) = line.bytes() {
                if crate::sys::is_open(2) && !crate::sys::is_socket(2) {
                    let _ = logfile::write_once(2, b);
                }
            }
        }
    }
}

fn send_syslog(a: &Audit, t: &SyslogTarget, line: &[u8]) {
    if let Some(fd) = t.sock.verified() {
        match logfile::send_dgram(fd, line) {
            Ok(_) => return,
            // The receive queue is full: drop rather than stall the server.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return,
            // syslogd restarted (ECONNREFUSED) or similar: reconnect once below.
            Err(_) => {}
        }
    }
    let Some(_held) = a.lock.acquire() else {
        return;
    };
    if connect_syslog(t).is_ok() {
        if let Some(fd) = t.sock.verified() {
            let _ = logfile::send_dgram(fd, line);
        }
    }
}

fn write_file(a: &Audit, t: &FileTarget, line: &[u8]) {
    // Fast path: our descriptor, our directory, and the path still names our file.
    if let (Some(fd), Some(dirfd)) = (t.file.verified(), t.dir.verified()) {
        if logfile::path_ident(dirfd, &t.name) == Some(t.file.ident()) {
            let _ = logfile::write_once(fd, line);
            return;
        }
    }
    let Some(_held) = a.lock.acquire() else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    fn s<const N: usize>(b: &LineBuf<N>) -> String {
        String::from_utf8(b.bytes().expect("fits").to_vec()).expect("utf-8")
    }

    fn json(b: &[u8], max: usize) -> String {
        let mut o = LineBuf::<2048>::new();
        push_json_str(&mut o, b, max);
        s(&o)
    }

    fn ts(secs: i64, ms: u32) -> String {
        let mut o = LineBuf::<64>::new();
        push_rfc3339(&mut o, secs, ms);
        s(&o)
    }

    #[test]
    fn timestamps_match_known_dates() {
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(ts(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(ts(1_709_164_799, 999), "2024-02-28T23:59:59.999Z");
        assert_eq!(ts(1_795_590_062, 345), "2026-11-25T07:01:02.345Z");
        assert_eq!(ts(4_102_444_800, 0), "2100-01-01T00:00:00.000Z");
        assert_eq!(ts(-1, 500), "1969-12-31T23:59:59.500Z");
    }

    #[test]
    fn civil_from_days_roundtrips_every_day_for_a_millennium() {
        // Walk day by day and check the calendar advances as it must.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for z in 0..365_243i64 {
            assert_eq!(civil_from_days(z), (y, m, d), "day {z}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let dim = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            d += 1;
            if d > dim[(m - 1) as usize] {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn json_strings_are_escaped_and_parse_back() {
        let raw = b"/opt/a \"b\"\\c\n\t\x01\x7f\xc3\xa9";
        let out = json(raw, 1000);
        assert_eq!(out, r#""/opt/a \"b\"\\c\n\t\u0001\u007fé""#);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back.as_bytes(), raw);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_character() {
        let out = json(b"/x\xff\xfey", 1000);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "/x\u{fffd}\u{fffd}y");
    }

    #[test]
    fn long_strings_are_cut_at_a_character_boundary() {
        let raw = "é".repeat(400);
        let out = json(raw.as_bytes(), 101);
        let back: String = serde_json::from_str(&out).unwrap();
        assert!(back.ends_with("..."), "{back}");
        assert!(back.len() <= 101, "{}", back.len());
        assert!(back.starts_with("éé"));
        // An escape sequence is never split either.
        let out = json(&[1u8; 100], 20);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "\u{1}\u{1}...");
    }

    fn ev(local: Option<SocketAddr>, remote: Option<SocketAddr>, rule: &str) -> Event<'_> {
        Event {
            call: Call::Accept,
            verdict: Verdict::Deny,
            rule,
            mode: Mode::Audit,
            local,
            remote,
        }
    }

    fn stamp(program_json: &[u8]) -> Stamp<'_> {
        Stamp {
            secs: 1_795_590_062,
            millis: 345,
            pid: 4242,
            uid: 1000,
            program_json,
        }
    }

    #[test]
    fn line_has_every_key_in_order() {
        let mut o = LineBuf::<LINE_MAX>::new();
        let l = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1), 21));
        let r = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 5555, 0, 0));
        push_json(
            &mut o,
            &stamp(br#""/usr/sbin/vsftpd""#),
            &ev(Some(l), Some(r), "no-\"x\""),
        );
        assert_eq!(
            s(&o),
            r#"{"ts":"2026-11-25T07:01:02.345Z","pid":4242,"program":"/usr/sbin/vsftpd","user":1000,"call":"accept","local":"127.0.0.1:21","remote":"[::1]:5555","verdict":"deny","rule":"no-\"x\"","mode":"audit"}"#
        );
    }

    #[test]
    fn mapped_ipv4_is_written_as_ipv4_and_unknown_as_null() {
        let mut o = LineBuf::<LINE_MAX>::new();
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:40000".parse().unwrap();
        push_json(&mut o, &stamp(b"null"), &ev(None, Some(mapped), "r"));
        let v: serde_json::Value = serde_json::from_slice(o.bytes().unwrap()).unwrap();
        assert_eq!(v["remote"], "10.1.2.3:40000");
        assert!(v["local"].is_null());
        assert!(v["program"].is_null());
    }

    #[test]
    fn worst_case_line_fits_and_parses() {
        let prog = vec![b'"'; 5000];
        let mut pj = LineBuf::<{ PROGRAM_MAX + 2 }>::new();
        push_json_str(&mut pj, &prog, PROGRAM_MAX);
        let pj = pj.bytes().expect("program budget fits its buffer").to_vec();
        let rule = "\u{1}".repeat(5000);
        let a: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe%4294967295]:65535"
            .parse()
            .unwrap();
        let mut st = stamp(&pj);
        st.pid = u32::MAX;
        st.uid = u32::MAX;
        st.secs = 253_402_300_799; // 9999-12-31T23:59:59
        let mut o = LineBuf::<LINE_MAX>::new();
        let host = sanitize_host(&[b'h'; 300]);
        push_syslog_header(&mut o, &st, &host, Verdict::Deny);
        push_json(&mut o, &st, &ev(Some(a), Some(a), &rule));
        o.push(b"\n");
        let b = o.bytes().expect("worst case fits LINE_MAX");
        let json_start = b.iter().position(|&c| c == b'{').unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b[json_start..]).unwrap();
        assert!(v["program"].as_str().unwrap().ends_with("..."));
        assert!(v["rule"].as_str().unwrap().ends_with("..."));
        assert_eq!(v["ts"], "9999-12-31T23:59:59.345Z");
    }

    #[test]
    fn syslog_header_is_rfc5424() {
        let mut o = LineBuf::<LINE_MAX>::new();
        let st = stamp(b"null");
        push_syslog_header(&mut o, &st, &sanitize_host(b"web 1"), Verdict::Deny);
        assert_eq!(
            s(&o),
            "<84>1 2026-11-25T07:01:02.345Z web-1 sockexit 4242 - - "
        );
        let mut o = LineBuf::<LINE_MAX>::new();
        push_syslog_header(&mut o, &st, b"", Verdict::Allow);
        assert_eq!(s(&o), "<86>1 2026-11-25T07:01:02.345Z - sockexit 4242 - - ");
    }

    #[test]
    fn reopen_lock_is_taken_over_from_a_forked_parent_but_not_from_a_sibling_thread() {
        let me = logfile::pid();
        // Free: taken, and released on drop.
        let l = ReopenLock(AtomicI32::new(0));
        {
            let _h = l.acquire().expect("free lock");
            assert_eq!(l.0.load(Ordering::Relaxed), me);
        }
        assert_eq!(l.0.load(Ordering::Relaxed), 0);
        // Held by another process (a thread of the parent we were forked from):
        // that holder no longer exists here, so the word is taken over.
        let stale = ReopenLock(AtomicI32::new(me.wrapping_add(1).max(1)));
        assert!(stale.acquire().is_some());
        // Held by another thread of this process: waited for, a bounded time.
        let busy = ReopenLock(AtomicI32::new(me));
        assert!(busy.acquire().is_none());
        assert_eq!(busy.0.load(Ordering::Relaxed), me);
    }

    #[test]
    fn overflow_is_reported_not_emitted_half() {
        let mut o = LineBuf::<8>::new();
        o.push(b"12345");
        o.push(b"6789");
        o.push(b"0");
        assert_eq!(o.bytes(), None);
    }
}
