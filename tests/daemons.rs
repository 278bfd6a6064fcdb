//! Real daemons under the preload (issue 6): vsftpd, nginx, redis-server, a Node.js `net`
//! server, a Python asyncio server, Java (`ServerSocket` and NIO), and curl outbound.
//!
//! Each daemon runs as a child process in its own process group, on a free loopback port,
//! with its config, logs and pid files in a temp dir, under a policy that allows accepts
//! from 127.0.0.0/8 and ::1 but refuses 127.0.0.2. A refused peer connects from
//! 127.0.0.2 and must read zero bytes and see the connection end (EOF or reset), never a
//! timeout: a held-open connection means the server got it.
//!
//! Nothing is installed here (`.ci/packages.txt` lists the packages). A missing daemon is
//! a failure when `CI` is set; otherwise the test prints `SKIPPED: <daemon> not installed`
//! to the real stderr and returns.

mod common;

use common::daemon::{free_port, free_port_range, listening, python3, require, say};
use common::TempDir;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Source address of every allowed client.
const ALLOWED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Source address of every refused client.
const REFUSED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Upper bound on any single client exchange; a broken library fails, never hangs.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on a daemon's start-up (the JVM is the slowest).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The policy every daemon runs under (issue 6); refusals are audited to
/// `<dir>/audit.jsonl` (see [`assert_audited_refusals`]).
const POLICY: &str = r#"version: 1
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
fn no_preload() -> bool {
    std::env::var_os("SOCKEXIT_TEST_NO_PRELOAD").is_some_and(|v| v == "1")
}

/// `program` under the preload with `policy` (`common::preloaded`).
fn preloaded(program: impl AsRef<std::ffi::OsStr>, policy: &Path) -> Command {
    let mut c = common::preloaded(program, policy);
    if no_preload() {
        c.env_remove("LD_PRELOAD");
    }
    c
}

fn write_policy(dir: &TempDir) -> PathBuf {
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
fn assert_audited_refusals(
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
const REFUSED_REMOTE: &[&str] = &["127.0.0.2:", "[::ffff:127.0.0.2]:"];

fn daemons_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/daemons")
}

/// Fields of /proc/PID/stat after the command name: state, ppid, pgrp.
fn proc_stat(pid: i32) -> Option<(char, i32, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    let pgrp = it.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Live (non-zombie) processes matching `f(ppid, pgrp)`.
fn processes(f: impl Fn(i32, i32) -> bool) -> Vec<i32> {
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

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A daemon in its own process group; dropping it kills the whole group, so nothing is
/// left behind even when an assertion fails first.
struct Daemon {
    name: &'static str,
    child: Child,
    out: PathBuf,
    logs: Vec<PathBuf>,
}

impl Daemon {
    /// Start `cmd` with stdout and stderr going to `<dir>/<name>.out`.
    fn spawn(name: &'static str, mut cmd: Command, dir: &Path) -> Daemon {
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
    fn with_log(mut self, p: PathBuf) -> Daemon {
        self.logs.push(p);
        self
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its output and log files, for failure messages.
    fn output(&self) -> String {
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

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn assert_alive(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("{} died: {st:?}\n{}", self.name, self.output());
        }
    }

    /// Wait until something listens on `port`, failing if the daemon exits first.
    fn wait_listening(&mut self, port: u16) {
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
    fn group_members(&self) -> Vec<i32> {
        let pg = self.pid();
        processes(|_, pgrp| pgrp == pg)
    }

    /// SIGTERM to the group, then SIGKILL after a grace period. Returns the members
    /// still alive after that (should be none).
    fn terminate(&mut self) -> Vec<i32> {
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
    fn stop(mut self) {
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
enum End {
    Eof,
    Reset,
    Timeout,
    Error(io::ErrorKind),
}

/// Read until EOF, error or `IO_TIMEOUT` in total.
fn read_all(s: &mut TcpStream) -> (Vec<u8>, End) {
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
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
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
fn connect_from(src: Ipv4Addr, port: u16) -> io::Result<TcpStream> {
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

fn allowed_client(port: u16) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(
        &SocketAddr::V4(SocketAddrV4::new(ALLOWED, port)),
        IO_TIMEOUT,
    )?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

fn allowed_client_v6(port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// A refused peer: connect from 127.0.0.2, send `request` (servers such as nginx and
/// redis speak only when spoken to), and require that not one byte comes back and that
/// the connection ends instead of being held open.
fn refused_peer(port: u16, request: &[u8]) -> Result<(), String> {
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
fn mixed_burst(
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

fn assert_no_failures(what: &str, failures: &[String]) {
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
fn test_bytes(n: usize) -> Vec<u8> {
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

// ---------------------------------------------------------------------------------------
// vsftpd

#[test]
fn vsftpd_refuses_before_banner_and_serves_pasv_download() {
    let Some(vsftpd) = require("vsftpd") else {
        return;
    };
    let Some(python) = python3() else {
        return;
    };
    let dir = TempDir::new("vsftpd");
    let policy = write_policy(&dir);
    let root = dir.path().join("ftproot");
    let empty = dir.path().join("empty");
    // vsftpd refuses a chroot it or the ftp user could write to; do not depend on umask.
    use std::os::unix::fs::PermissionsExt;
    for d in [dir.path(), &root, &empty] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let data = test_bytes(300_000);
    std::fs::write(root.join("data.bin"), &data).unwrap();

    let port = free_port();
    let pasv = free_port_range(10);
    let log = dir.path().join("vsftpd.log");
    // As root vsftpd drops to the `ftp` user and chroots into anon_root for anonymous
    // sessions; as another user it can only run as that user.
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    let root_user = unsafe { libc::geteuid() } == 0;
    let conf = format!(
        "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
         background=NO\nanonymous_enable=YES\nlocal_enable=NO\nwrite_enable=NO\n\
         no_anon_password=YES\nanon_root={root}\nsecure_chroot_dir={empty}\n\
         pasv_enable=YES\npasv_address=127.0.0.1\npasv_min_port={pasv}\npasv_max_port={pmax}\n\
         port_enable=NO\nseccomp_sandbox=NO\nisolate=NO\nisolate_network=NO\n\
         xferlog_enable=YES\nxferlog_std_format=NO\nlog_ftp_protocol=YES\n\
         vsftpd_log_file={log}\nsyslog_enable=NO\nuse_localtime=NO\n\
         ftpd_banner=sockexit test ftpd ready\n{user}",
        root = root.display(),
        empty = empty.display(),
        pmax = pasv + 9,
        log = log.display(),
        user = if root_user {
            ""
        } else {
            "run_as_launching_user=YES\n"
        },
    );
    let conf_path = dir.write("vsftpd.conf", &conf);
    let mut cmd = preloaded(&vsftpd, &policy);
    cmd.arg(&conf_path);
    let mut d = Daemon::spawn("vsftpd", cmd, dir.path()).with_log(log.clone());
    d.wait_listening(port);

    // vsftpd greets at once, so a single `2` reaching the peer would show.
    for _ in 0..3 {
        if let Err(e) = refused_peer(port, b"") {
            panic!("vsftpd: {e}\n{}", d.output());
        }
    }

    let script = "import ftplib, sys\n\
        f = ftplib.FTP()\n\
        sys.stderr.write(f.connect('127.0.0.1', int(sys.argv[1]), timeout=10) + '\\n')\n\
        f.login()\n\
        f.set_pasv(True)\n\
        out = sys.stdout.buffer\n\
        f.retrbinary('RETR data.bin', out.write)\n\
        out.flush()\n\
        f.quit()\n";
    let out = Command::new(&python)
        .args(["-c", script, &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run python3 ftplib");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ftplib download failed: {:?}\n{stderr}\n{}",
        out.status,
        d.output()
    );
    assert!(
        stderr.starts_with("220 sockexit test ftpd ready"),
        "allowed client's greeting: {stderr}"
    );
    assert!(
        out.stdout == data,
        "PASV download not byte-exact: got {} bytes, want {}",
        out.stdout.len(),
        data.len()
    );
    d.assert_alive();

    // A second, unrelated client: lftp, over EPSV this time.
    let mut downloads = 1;
    if let Some(lftp) = require("lftp") {
        downloads += 1;
        let got = dir.path().join("lftp-data.bin");
        let script = format!(
            "set net:timeout 10; set net:max-retries 1; set ftp:passive-mode on; \
             set ftp:prefer-epsv yes; open -u anonymous,x ftp://127.0.0.1:{port}; \
             get data.bin -o {}",
            got.display()
        );
        let out = Command::new(lftp)
            .args(["-c", &script])
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run lftp");
        assert!(
            out.status.success(),
            "lftp download failed: {:?} {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            d.output()
        );
        assert!(
            std::fs::read(&got).is_ok_and(|b| b == data),
            "lftp's EPSV download not byte-exact"
        );
        d.assert_alive();
    }

    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        log_text.matches("OK DOWNLOAD").count(),
        downloads,
        "vsftpd log: one download per client:\n{log_text}"
    );
    assert!(
        !log_text.contains("127.0.0.2"),
        "vsftpd saw a refused peer:\n{log_text}"
    );
    assert_audited_refusals(
        &dir,
        3,
        "accept",
        "refuse-127-0-0-2",
        &vsftpd,
        REFUSED_REMOTE,
    );
    d.stop();
}

// ---------------------------------------------------------------------------------------
// nginx

struct Nginx {
    daemon: Daemon,
    port: u16,
    page: Vec<u8>,
    access_log: PathBuf,
    error_log: PathBuf,
}

fn start_nginx(dir: &TempDir, nginx: &Path) -> Nginx {
    let policy = write_policy(dir);
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let mut page = b"<html><body><h1>sockexit nginx test</h1>\n".to_vec();
    for i in 0..100 {
        page.extend_from_slice(format!("<p>line {i} of the page</p>\n").as_bytes());
    }
    page.extend_from_slice(b"</body></html>\n");
    std::fs::write(www.join("index.html"), &page).unwrap();

    let port = free_port();
    let p = dir.path().display().to_string();
    let access_log = dir.path().join("logs/access.log");
    let error_log = dir.path().join("logs/error.log");
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 2;\n\
         pid {p}/nginx.pid;\nerror_log {p}/logs/error.log info;\n\
         events {{ worker_connections 4096; multi_accept on; use epoll; }}\n\
         http {{\n\
           access_log {p}/logs/access.log;\n\
           client_body_temp_path {p}/tmp/body;\n\
           proxy_temp_path {p}/tmp/proxy;\n\
           fastcgi_temp_path {p}/tmp/fastcgi;\n\
           uwsgi_temp_path {p}/tmp/uwsgi;\n\
           scgi_temp_path {p}/tmp/scgi;\n\
           server {{\n\
             listen 127.0.0.1:{port} backlog=4096;\n\
             listen [::1]:{port} backlog=4096;\n\
             root {p}/www;\n\
             location / {{ }}\n\
           }}\n\
         }}\n"
    );
    let conf_path = dir.write("nginx.conf", &conf);
    let mut cmd = preloaded(nginx, &policy);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(&error_log);
    let mut daemon = Daemon::spawn("nginx", cmd, dir.path()).with_log(error_log.clone());
    daemon.wait_listening(port);
    let master = daemon.pid();
    let deadline = Instant::now() + START_TIMEOUT;
    while processes(|ppid, _| ppid == master).len() < 2 {
        daemon.assert_alive();
        assert!(
            Instant::now() < deadline,
            "nginx workers did not start\n{}",
            daemon.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx {
        daemon,
        port,
        page,
        access_log,
        error_log,
    }
}

impl Nginx {
    fn workers(&self) -> Vec<i32> {
        let master = self.daemon.pid();
        processes(|ppid, _| ppid == master)
    }

    /// One allowed `GET /` that must return exactly the page; every eighth client comes
    /// over IPv6 from ::1.
    fn get(&self, i: usize) -> Result<(), String> {
        let mut s = if i.is_multiple_of(8) {
            allowed_client_v6(self.port)
        } else {
            allowed_client(self.port)
        }
        .map_err(|e| format!("connect: {e}"))?;
        s.write_all(format!("GET /?c={i} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
            .map_err(|e| format!("send request: {e}"))?;
        let (resp, end) = read_all(&mut s);
        if end != End::Eof {
            return Err(format!(
                "response ended with {end:?} after {} bytes",
                resp.len()
            ));
        }
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("no header end in {} bytes", resp.len()))?;
        let head = String::from_utf8_lossy(&resp[..split]);
        if !head.starts_with("HTTP/1.1 200 ") {
            return Err(format!("status: {}", head.lines().next().unwrap_or("")));
        }
        if resp[split + 4..] != self.page[..] {
            return Err(format!(
                "body differs: {} bytes, want {}",
                resp.len() - split - 4,
                self.page.len()
            ));
        }
        Ok(())
    }

    fn refused(&self) -> Result<(), String> {
        refused_peer(self.port, b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
    }

    /// Master and the same workers alive, nothing alarming in the error log, and no
    /// request from a refused peer in the access log.
    fn assert_healthy(&mut self, workers: &[i32]) {
        self.daemon.assert_alive();
        assert_eq!(
            self.workers(),
            workers,
            "nginx workers changed (one died and was respawned?)\n{}",
            self.daemon.output()
        );
        let err = std::fs::read_to_string(&self.error_log).unwrap_or_default();
        for bad in ["[alert]", "[emerg]", "[crit]", "exited on signal"] {
            assert!(!err.contains(bad), "nginx error log has {bad}:\n{err}");
        }
        let access = std::fs::read_to_string(&self.access_log).unwrap_or_default();
        assert!(
            !access.contains("127.0.0.2"),
            "nginx logged a request from a refused peer"
        );
    }

    fn access_lines(&self) -> usize {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .count()
    }
}

#[test]
fn nginx_400_mixed_concurrent_clients() {
    let Some(nginx) = require("nginx") else {
        return;
    };
    let dir = TempDir::new("nginx");
    let mut n = start_nginx(&dir, &nginx);
    let workers = n.workers();
    assert_eq!(workers.len(), 2, "want 2 nginx workers");

    let failures = mixed_burst(400, |i| n.get(i), |_| n.refused());
    assert_no_failures("nginx burst", &failures);
    n.assert_healthy(&workers);
    assert_eq!(
        n.access_lines(),
        200,
        "access log: one line per allowed client"
    );
    n.get(400).expect("nginx still serves after the burst");
    // Two worker processes append to one audit file at once.
    assert_audited_refusals(
        &dir,
        200,
        "accept",
        "refuse-127-0-0-2",
        &nginx,
        REFUSED_REMOTE,
    );
    n.daemon.stop();
}

#[test]
fn nginx_soak_10000_alternating_connections() {
    let Some(nginx) = require("nginx") else {
        return;
    };
    const TOTAL: usize = 10_000;
    const THREADS: usize = 8;
    let dir = TempDir::new("nginx-soak");
    let mut n = start_nginx(&dir, &nginx);
    let workers = n.workers();
    n.get(0).expect("warm-up request");
    // Counted once the worker has closed the warm-up connection (the client's close
    // reaches it a moment later): settled when two counts 100 ms apart agree.
    let count = || workers.iter().map(|&w| fd_count(w)).collect::<Vec<usize>>();
    let settle = Instant::now() + Duration::from_secs(3);
    let mut fds_before = count();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let again = count();
        if again == fds_before || Instant::now() > settle {
            break;
        }
        fds_before = again;
    }

    let start = Instant::now();
    // A broken library could make every client wait out its timeout: stop early.
    const GIVE_UP_AFTER: usize = 8;
    let failed = std::sync::atomic::AtomicUsize::new(0);
    let per_thread: Vec<(usize, usize, Vec<String>)> = std::thread::scope(|sc| {
        let (n, failed) = (&n, &failed);
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                sc.spawn(move || {
                    let (mut ok, mut cut, mut fails) = (0, 0, Vec::new());
                    for i in (t..TOTAL).step_by(THREADS) {
                        if failed.load(std::sync::atomic::Ordering::Relaxed) >= GIVE_UP_AFTER {
                            break;
                        }
                        let before = fails.len();
                        if i % 2 == 0 {
                            match n.get(i) {
                                Ok(()) => ok += 1,
                                Err(e) => fails.push(format!("allowed {i}: {e}")),
                            }
                        } else {
                            match n.refused() {
                                Ok(()) => cut += 1,
                                Err(e) => fails.push(format!("refused {i}: {e}")),
                            }
                        }
                        if fails.len() > before {
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    (ok, cut, fails)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("soak thread"))
            .collect()
    });
    let elapsed = start.elapsed();
    let served: usize = per_thread.iter().map(|r| r.0).sum();
    let cut: usize = per_thread.iter().map(|r| r.1).sum();
    let failures: Vec<String> = per_thread.into_iter().flat_map(|r| r.2).collect();

    // Workers close finished connections asynchronously; give them a bounded moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fds_after: Vec<usize> = workers.iter().map(|&w| fd_count(w)).collect();
    while fds_after != fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        fds_after = workers.iter().map(|&w| fd_count(w)).collect();
    }
    let logged = n.access_lines() - 1;
    let skipped = if no_preload() {
        " (SOCKEXIT_TEST_NO_PRELOAD: refused peers not run)"
    } else {
        ""
    };
    say(&format!(
        "nginx soak{skipped}: {TOTAL} connections in {:.1}s: {served} allowed served byte-exact, \
         {cut} refused cut off with 0 bytes, {} failures; worker fds before {fds_before:?} \
         after {fds_after:?}; access log lines {logged}",
        elapsed.as_secs_f64(),
        failures.len()
    ));
    assert_no_failures("nginx soak", &failures);
    assert_eq!(served, TOTAL / 2, "allowed responses lost");
    assert_eq!(cut, TOTAL / 2, "refused peers not cut off");
    assert_eq!(
        fds_after, fds_before,
        "nginx worker file descriptors leaked"
    );
    assert_eq!(logged, TOTAL / 2, "nginx saw exactly the allowed requests");
    n.assert_healthy(&workers);
    assert_audited_refusals(
        &dir,
        TOTAL / 2,
        "accept",
        "refuse-127-0-0-2",
        &nginx,
        REFUSED_REMOTE,
    );
    n.daemon.stop();
}

// ---------------------------------------------------------------------------------------
// redis-server

fn redis_info_field(port: u16, field: &str) -> String {
    let mut s = allowed_client(port).expect("connect redis");
    s.write_all(b"INFO stats\r\n").unwrap();
    // Bulk reply: $LEN\r\n<LEN bytes>\r\n
    let head = read_line(&mut s);
    let len: usize = head
        .strip_prefix('$')
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO reply header {head:?}"));
    let body = String::from_utf8(read_n(&mut s, len)).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO"))
        .trim()
        .to_string()
}

fn read_line(s: &mut TcpStream) -> String {
    let mut v = Vec::new();
    while !v.ends_with(b"\n") && v.len() < 1024 {
        let b = read_n(s, 1);
        if b.is_empty() {
            break;
        }
        v.extend(b);
    }
    String::from_utf8_lossy(&v).into_owned()
}

#[test]
fn redis_ping_refusal_and_10000_command_pipeline() {
    let Some(redis) = require("redis-server") else {
        return;
    };
    let dir = TempDir::new("redis");
    let policy = write_policy(&dir);
    let port = free_port();
    let log = dir.path().join("redis.log");
    let mut cmd = preloaded(&redis, &policy);
    cmd.args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--daemonize", "no"])
        .arg("--dir")
        .arg(dir.path())
        .arg("--logfile")
        .arg(&log);
    let mut d = Daemon::spawn("redis", cmd, dir.path()).with_log(log);
    d.wait_listening(port);

    let mut s = allowed_client(port).expect("connect redis");
    s.write_all(b"PING\r\n").unwrap();
    assert_eq!(
        read_n(&mut s, 7),
        b"+PONG\r\n",
        "PING from an allowed client"
    );
    drop(s);

    for _ in 0..3 {
        if let Err(e) = refused_peer(port, b"PING\r\n") {
            panic!("redis: {e}\n{}", d.output());
        }
    }

    const N: usize = 10_000;
    let mut s = allowed_client(port).expect("connect redis");
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let cmds: Vec<u8> = (0..N).flat_map(|_| *b"INCR sockexit\r\n").collect();
        w.write_all(&cmds)
    });
    let want: Vec<u8> = (1..=N)
        .flat_map(|i| format!(":{i}\r\n").into_bytes())
        .collect();
    let got = read_n(&mut s, want.len());
    writer.join().unwrap().expect("send pipeline");
    let replies = got.iter().filter(|&&b| b == b'\n').count();
    assert!(
        got == want,
        "pipeline: {replies} of {N} replies, {} of {} bytes, in order: {}",
        got.len(),
        want.len(),
        got.len() <= want.len() && got == want[..got.len()]
    );
    drop(s);

    // The refused peers never reached redis: it counted exactly our allowed clients
    // (PING, pipeline, this INFO).
    assert_eq!(redis_info_field(port, "total_connections_received"), "3");
    d.assert_alive();
    assert_audited_refusals(
        &dir,
        3,
        "accept",
        "refuse-127-0-0-2",
        &redis,
        REFUSED_REMOTE,
    );
    d.stop();
}

// ---------------------------------------------------------------------------------------
// Banner servers: Node.js, Python asyncio, Java

/// The banner protocol of tests/daemons/banner_server.*: banner at once, then one echoed
/// line, then close.
fn banner_client(port: u16, banner: &[u8], i: usize) -> Result<(), String> {
    let mut s = allowed_client(port).map_err(|e| format!("connect: {e}"))?;
    let got = read_n(&mut s, banner.len());
    if got != banner {
        return Err(format!("banner: {:?}", String::from_utf8_lossy(&got)));
    }
    s.write_all(format!("ping {i}\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let (rest, end) = read_all(&mut s);
    let want = format!("echo: ping {i}\n");
    if rest != want.as_bytes() || end != End::Eof {
        return Err(format!(
            "reply {:?} ended with {end:?}, want {want:?} then EOF",
            String::from_utf8_lossy(&rest)
        ));
    }
    Ok(())
}

/// Mixed burst of 200 (100 allowed, 100 refused), then the server must be alive and
/// still serving.
fn banner_server_test(name: &'static str, cmd: Command, port: u16, banner: &str, dir: &TempDir) {
    let program = PathBuf::from(cmd.get_program());
    let mut d = Daemon::spawn(name, cmd, dir.path());
    d.wait_listening(port);
    let banner = banner.as_bytes();
    let failures = mixed_burst(
        200,
        |i| banner_client(port, banner, i),
        |_| refused_peer(port, b"ping\n"),
    );
    if !failures.is_empty() {
        say(&d.output());
    }
    assert_no_failures(name, &failures);
    d.assert_alive();
    banner_client(port, banner, 1000).expect("still serving after the burst");
    refused_peer(port, b"ping\n").expect("still refusing after the burst");
    assert_audited_refusals(
        dir,
        101,
        "accept",
        "refuse-127-0-0-2",
        &program,
        REFUSED_REMOTE,
    );
    d.stop();
}

#[test]
fn node_net_server_mixed_burst() {
    let Some(node) = require("node") else {
        return;
    };
    let dir = TempDir::new("node");
    let policy = write_policy(&dir);
    let port = free_port();
    let mut cmd = preloaded(&node, &policy);
    cmd.arg(daemons_dir().join("banner_server.js"))
        .arg(port.to_string());
    banner_server_test("node", cmd, port, "hello from node\n", &dir);
}

#[test]
fn python_asyncio_server_mixed_burst() {
    let Some(python) = python3() else {
        return;
    };
    let dir = TempDir::new("asyncio");
    let policy = write_policy(&dir);
    let port = free_port();
    let mut cmd = preloaded(&python, &policy);
    cmd.arg(daemons_dir().join("banner_server.py"))
        .arg(port.to_string());
    banner_server_test("python-asyncio", cmd, port, "hello from python\n", &dir);
}

/// Compile tests/daemons/BannerServer.java into the temp dir; `None` when skipped.
fn java_server(dir: &TempDir, mode: &str, port: u16) -> Option<Command> {
    let javac = require("javac")?;
    let java = require("java")?;
    let classes = dir.path().join("classes");
    let out = Command::new(javac)
        .arg("-d")
        .arg(&classes)
        .arg(daemons_dir().join("BannerServer.java"))
        .output()
        .expect("run javac");
    assert!(
        out.status.success(),
        "javac failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy = write_policy(dir);
    let mut cmd = preloaded(java, &policy);
    cmd.args(["-Xmx64m", "-XX:+UseSerialGC", "-cp"])
        .arg(&classes)
        .args(["BannerServer", mode, &port.to_string()]);
    Some(cmd)
}

#[test]
fn java_server_socket_mixed_burst() {
    let dir = TempDir::new("java-blocking");
    let port = free_port();
    let Some(cmd) = java_server(&dir, "blocking", port) else {
        return;
    };
    banner_server_test("java-serversocket", cmd, port, "hello from java\n", &dir);
}

#[test]
fn java_nio_selector_mixed_burst() {
    let dir = TempDir::new("java-nio");
    let port = free_port();
    let Some(cmd) = java_server(&dir, "nio", port) else {
        return;
    };
    banner_server_test("java-nio", cmd, port, "hello from java\n", &dir);
}

// ---------------------------------------------------------------------------------------
// Outbound: curl

/// Serve one HTTP response on `l` (non-blocking accept, bounded wait).
fn serve_one(l: TcpListener, body: &'static [u8]) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + IO_TIMEOUT;
        while Instant::now() < deadline {
            match l.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    let mut req = Vec::new();
                    let mut b = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut b) {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => req.extend_from_slice(&b[..n]),
                        }
                    }
                    let head = format!(
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    return s.write_all(head.as_bytes()).is_ok() && s.write_all(body).is_ok();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => return false,
            }
        }
        false
    })
}

#[test]
fn curl_refused_connect_fails_cleanly_and_allowed_connect_works() {
    let Some(curl) = require("curl") else {
        return;
    };
    let dir = TempDir::new("curl");
    // A real listener on the refused port: without the library curl would reach it.
    let blocked = TcpListener::bind((ALLOWED, 0)).unwrap();
    blocked.set_nonblocking(true).unwrap();
    let blocked_port = blocked.local_addr().unwrap().port();
    let open = TcpListener::bind((ALLOWED, 0)).unwrap();
    let open_port = open.local_addr().unwrap().port();
    let policy = dir.write(
        "policy.yaml",
        &format!(
            "version: 1\ndefault: deny\nrules:\n\
             \x20 - name: no-discard\n    action: deny\n    calls: [connect]\n\
             \x20   remote_ports: [9, {blocked_port}]\n\
             \x20 - name: loopback-connect\n    action: allow\n    calls: [connect]\n\
             \x20   remote: [127.0.0.0/8, \"::1\"]\n\
             audit:\n  log: {}\n  events: deny\n",
            dir.path().join("audit.jsonl").display()
        ),
    );
    let run = |port: u16| {
        let mut cmd = preloaded(&curl, &policy);
        for v in [
            "http_proxy",
            "HTTP_PROXY",
            "all_proxy",
            "ALL_PROXY",
            "CURL_HOME",
        ] {
            cmd.env_remove(v);
        }
        cmd.args(["-sS", "--noproxy", "*", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{port}/"))
            .stdin(Stdio::null())
            .output()
            .expect("run curl")
    };

    let refused_ports: &[u16] = if no_preload() {
        &[]
    } else {
        &[9, blocked_port]
    };
    for &port in refused_ports {
        let out = run(port);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            None,
            "curl crashed on a refused connect to port {port}: {stderr}"
        );
        assert_eq!(
            out.status.code(),
            Some(7),
            "curl to refused port {port}: want exit 7 (couldn't connect), stderr: {stderr}"
        );
        assert!(
            stderr.contains("Failed to connect") || stderr.contains("Couldn't connect"),
            "curl's message for port {port}: {stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    assert!(
        matches!(blocked.accept(), Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "a refused connect reached the network"
    );

    let server = serve_one(open, b"allowed through\n");
    let out = run(open_port);
    assert!(
        out.status.success(),
        "curl to an allowed port: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"allowed through\n");
    assert!(server.join().unwrap(), "local server did not serve curl");
    let refused_remotes: Vec<String> = refused_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let refused_remotes: Vec<&str> = refused_remotes.iter().map(String::as_str).collect();
    // One line per refused connect; no line for the allowed one.
    if !refused_ports.is_empty() {
        assert_audited_refusals(&dir, 2, "connect", "no-discard", &curl, &refused_remotes);
    }
}
