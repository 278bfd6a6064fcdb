//! What the daemon tests share: the policy, starting a daemon in its own process
//! group, allowed and refused peers (a refused peer from 127.0.0.2 must read zero
//! bytes and see the end), bursts, and the audit lines.

pub(crate) use crate::common::daemon::{
    free_port, free_port_range, listening, python3, require, say,
};
pub(crate) use crate::common::TempDir;
pub(crate) use std::io::{self, Read, Write};
pub(crate) use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
pub(crate) use std::os::fd::{FromRawFd, OwnedFd};
pub(crate) use std::os::unix::process::{CommandExt, ExitStatusExt};
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::{Child, Command, Stdio};
pub(crate) use std::sync::Barrier;
pub(crate) use std::time::{Duration, Instant};

/// Source address of every allowed client.
pub(crate) const ALLOWED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Source address of every refused client.
pub(crate) const REFUSED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Upper bound on any single client exchange; a broken library fails, never hangs.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on a daemon's start-up (the JVM is the slowest).
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The policy every daemon runs under (issue 6); refusals are audited to
/// `<dir>/audit.jsonl` (see [`assert_audited_refusals`]).
pub(crate) const POLICY: &str = r#"version: 1
default: deny
rules:
  - name: daemons-may-listen
    action: allow
    calls: [listen]
  - name: refuse-127-0-0-2
    action: deny
    calls: [accept]
    remote: [127.0.0.2/32]
  - name: loopback-clients
    action: allow
    calls: [accept]
    remote: [127.0.0.0/8, "::1"]
  - name: loopback-connect
    action: allow
    calls: [connect]
    remote: [127.0.0.0/8, "::1"]
"#;

/// `SOCKEXIT_TEST_NO_PRELOAD=1` runs the daemons without the library and leaves out the
/// refused peers, to tell a harness or daemon problem from a library one: every other
/// check must still pass.
pub(crate) fn no_preload() -> bool {
    std::env::var_os("SOCKEXIT_TEST_NO_PRELOAD").is_some_and(|v| v == "1")
}

/// `program` under the preload with `policy` (`crate::common::preloaded`).
pub(crate) fn preloaded(program: impl AsRef<std::ffi::OsStr>, policy: &Path) -> Command {
    let mut c = crate::common::preloaded(program, policy);
    if no_preload() {
        c.env_remove("LD_PRELOAD");
    }
    c
}

pub(crate) fn write_policy(dir: &TempDir) -> PathBuf {
    let audit = dir.path().join("audit.jsonl");
    dir.write(
        "policy.yaml",
        &format!(
            "{POLICY}audit:\n  log: {}\n  events: deny\n",
            audit.display()
        ),
    )
}

/// The audit log must hold exactly `n` well-formed lines (no line torn by concurrent
/// writers: several processes and threads share the file), each a refusal of `call` by
/// `rule` in `program` (the executable's real path), toward or from `remote` (address
/// prefixes such as `"127.0.0.2:"`).
pub(crate) fn assert_audited_refusals(
    dir: &TempDir,
    n: usize,
    call: &str,
    rule: &str,
    program: &Path,
    remote: &[&str],
) {
    if no_preload() {
        return;
    }
    let path = dir.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("audit log {}: {e}", path.display()));
    let mut count = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {line}"));
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        assert_eq!(field("verdict"), "deny", "{line}");
        assert_eq!(field("call"), call, "{line}");
        assert_eq!(field("rule"), rule, "{line}");
        assert_eq!(field("mode"), "enforce", "{line}");
        let exe = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
        assert_eq!(Path::new(&field("program")), exe, "program in {line}");
        assert!(
            remote.iter().any(|r| field("remote").starts_with(r)),
            "remote in {line}, want one of {remote:?}"
        );
        count += 1;
    }
    assert_eq!(count, n, "audit lines in {}", path.display());
}

/// How a refused IPv4 peer may be shown: dual-stack servers (the JVM) see it as
/// `::ffff:127.0.0.2`.
pub(crate) const REFUSED_REMOTE: &[&str] = &["127.0.0.2:", "[::ffff:127.0.0.2]:"];

pub(crate) fn daemons_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/daemons")
}

/// Fields of /proc/PID/stat after the command name: state, ppid, pgrp.
pub(crate) fn proc_stat(pid: i32) -> Option<(char, i32, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    let pgrp = it.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Live (non-zombie) processes matching `f(ppid, pgrp)`.
pub(crate) fn processes(f: impl Fn(i32, i32) -> bool) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut v: Vec<i32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| matches!(proc_stat(pid), Some((st, pp, pg)) if st != 'Z' && f(pp, pg)))
        .collect();
    v.sort_unstable();
    v
}

pub(crate) fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A daemon in its own process group; dropping it kills the whole group, so nothing is
/// left behind even when an assertion fails first.
pub(crate) struct Daemon {
    name: &'static str,
    child: Child,
    out: PathBuf,
    logs: Vec<PathBuf>,
}

impl Daemon {
    /// Start `cmd` with stdout and stderr going to `<dir>/<name>.out`.
    pub(crate) fn spawn(name: &'static str, mut cmd: Command, dir: &Path) -> Daemon {
        let out = dir.join(format!("{name}.out"));
        let f = std::fs::File::create(&out).expect("create daemon output file");
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Daemon {
            name,
            child,
            out,
            logs: Vec::new(),
        }
    }

    /// Also show this log file when the daemon fails.
    pub(crate) fn with_log(mut self, p: PathBuf) -> Daemon {
        self.logs.push(p);
        self
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its output and log files, for failure messages.
    pub(crate) fn output(&self) -> String {
        let mut s = String::new();
        for p in std::iter::once(&self.out).chain(&self.logs) {
            let t = std::fs::read_to_string(p).unwrap_or_default();
            let tail: String = t
                .chars()
                .skip(t.chars().count().saturating_sub(4000))
                .collect();
            s += &format!("--- {} ---\n{}\n", p.display(), tail);
        }
        s
    }

    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(crate) fn assert_alive(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("{} died: {st:?}\n{}", self.name, self.output());
        }
    }

    /// Wait until something listens on `port`, failing if the daemon exits first.
    pub(crate) fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !listening(port) {
            self.assert_alive();
            assert!(
                Instant::now() < deadline,
                "{} not listening on {port} after {START_TIMEOUT:?}\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.assert_alive();
    }

    /// Processes of the group still running (zombies excluded).
    pub(crate) fn group_members(&self) -> Vec<i32> {
        let pg = self.pid();
        processes(|_, pgrp| pgrp == pg)
    }

    /// SIGTERM to the group, then SIGKILL after a grace period. Returns the members
    /// still alive after that (should be none).
    pub(crate) fn terminate(&mut self) -> Vec<i32> {
        let pg = self.pid();
        // SAFETY: kill(2) with a negative pid signals the process group we created for
        // this child with process_group(0); it has no memory-safety preconditions.
        unsafe { libc::kill(-pg, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.alive() && self.group_members().is_empty() {
                return Vec::new();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-pg, libc::SIGKILL) };
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.group_members();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop the daemon and assert that none of its processes is left.
    pub(crate) fn stop(mut self) {
        let left = self.terminate();
        assert!(
            left.is_empty(),
            "{} left processes behind: {left:?}",
            self.name
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let left = self.terminate();
        if !left.is_empty() {
            say(&format!(
                "WARNING: {} left processes behind: {left:?}",
                self.name
            ));
        }
    }
}

/// How a read ended.
#[derive(Debug, PartialEq)]
pub(crate) enum End {
    Eof,
    Reset,
    Timeout,
    Error(io::ErrorKind),
}

/// Read until EOF, error or `IO_TIMEOUT` in total.
pub(crate) fn read_all(s: &mut TcpStream) -> (Vec<u8>, End) {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut v = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (v, End::Timeout);
        }
        s.set_read_timeout(Some(left)).expect("set_read_timeout");
        match s.read(&mut buf) {
            Ok(0) => return (v, End::Eof),
            Ok(n) => v.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return (v, End::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return (v, End::Reset),
            Err(e) => return (v, End::Error(e.kind())),
        }
    }
}

/// Read exactly `n` bytes (or what came before the end).
pub(crate) fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut v = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).expect("set_read_timeout");
        match s.read(&mut v[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    v.truncate(got);
    v
}

/// A TCP connection to 127.0.0.1:`port` from source address `src`.
pub(crate) fn connect_from(src: Ipv4Addr, port: u16) -> io::Result<TcpStream> {
    // SAFETY: socket(2) has no memory-safety preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a socket we just created and own exclusively.
    let s = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let one: libc::c_int = 1;
    // SAFETY: the option value points at a live c_int of the stated size. Picking the
    // port at connect time keeps 127.0.0.2's ports from running out in the soak.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    // A blocking connect honours SO_SNDTIMEO, so a full backlog cannot hang the test.
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let sin = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let local = sin(src, 0);
    // SAFETY: `local` is a valid sockaddr_in and `len` its size.
    if unsafe { libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let remote = sin(ALLOWED, port);
    loop {
        // SAFETY: `remote` is a valid sockaddr_in and `len` its size.
        if unsafe { libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) } == 0 {
            return Ok(s);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub(crate) fn allowed_client(port: u16) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(
        &SocketAddr::V4(SocketAddrV4::new(ALLOWED, port)),
        IO_TIMEOUT,
    )?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

pub(crate) fn allowed_client_v6(port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// A refused peer: connect from 127.0.0.2, send `request` (servers such as nginx and
/// redis speak only when spoken to), and require that not one byte comes back and that
/// the connection ends instead of being held open.
pub(crate) fn refused_peer(port: u16, request: &[u8]) -> Result<(), String> {
    if no_preload() {
        return Ok(());
    }
    let mut s = match connect_from(REFUSED, port) {
        Ok(s) => s,
        // The server's reset can land before connect(2) returns: still zero bytes.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
        Err(e) => return Err(format!("refused peer connect: {e}")),
    };
    // The reset may already be there: a failed write is expected, not an error.
    let _ = s.write_all(request);
    let (bytes, end) = read_all(&mut s);
    if !bytes.is_empty() {
        return Err(format!(
            "refused peer got {} bytes: {:?}",
            bytes.len(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ));
    }
    match end {
        End::Eof | End::Reset => Ok(()),
        e => Err(format!(
            "refused peer: connection not cut off but ended with {e:?} (the server held it)"
        )),
    }
}

/// Run `n` clients at once (released together by a barrier): client `i` is refused when
/// `i` is odd. Returns the failures.
pub(crate) fn mixed_burst(
    n: usize,
    allowed: impl Fn(usize) -> Result<(), String> + Sync,
    refused: impl Fn(usize) -> Result<(), String> + Sync,
) -> Vec<String> {
    let barrier = Barrier::new(n);
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, allowed, refused) = (&barrier, &allowed, &refused);
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(sc, move || {
                        barrier.wait();
                        let r = if i % 2 == 0 { allowed(i) } else { refused(i) };
                        r.map_err(|e| format!("client {i}: {e}"))
                    })
                    .expect("spawn client thread")
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("client thread panicked").err())
            .collect()
    })
}

pub(crate) fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}: {} failures, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Deterministic, incompressible-looking test data.
pub(crate) fn test_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
