//! Audit trail and audit mode, end to end: programs run under the preload as child
//! processes, and the tests read what an administrator would read — the audit file,
//! the syslog datagram, the program's own file, what the peer received.

mod common;

use common::{example_path, preloaded, TempDir};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PATIENCE: Duration = Duration::from_secs(20);

/// A child process killed on drop, so a failing test never leaves a server behind.
struct Server {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Server {
    fn start(mut cmd: Command) -> (Server, SocketAddr) {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut s = Server { child, out };
        let l = s.line();
        let addr = l
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("expected `listening ADDR`, got {l:?}"));
        (s, addr)
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).expect("read stdout");
        l.trim_end().to_string()
    }

    fn pid(&self) -> u64 {
        u64::from(self.child.id())
    }

    /// Waits (bounded) for the program to exit by itself and checks it succeeded.
    fn finish(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                assert!(st.success(), "program failed: {st}");
                return;
            }
            assert!(Instant::now() < deadline, "program did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a client from `src` receives from `dst` (connect_client's one-line report).
fn talk(src: &str, dst: SocketAddr) -> String {
    let out = Command::new(example_path("connect_client"))
        .args(["--bind", src, &dst.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run connect_client");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn served(reply: &str) -> bool {
    reply.starts_with("ok 220")
}

fn policy(dir: &TempDir, body: &str) -> PathBuf {
    dir.write("policy.yaml", &format!("version: 1\n{body}"))
}

/// Every line of the audit file, parsed; panics on a line that is not one JSON object.
fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` → seconds since the epoch (strict format check).
fn parse_ts(ts: &str) -> i64 {
    let b = ts.as_bytes();
    assert_eq!(b.len(), 24, "{ts}");
    for (i, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        assert_eq!(b[i], c, "{ts}");
    }
    let n = |r: std::ops::Range<usize>| -> i64 { ts[r].parse().unwrap() };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let _ms = n(20..23);
    // days_from_civil (H. Hinnant), independent of the library's inverse.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn euid() -> u64 {
    // SAFETY: geteuid has no arguments and cannot fail.
    u64::from(unsafe { libc::geteuid() })
}

/// Checks the keys every line must have, with the values common to one process.
fn check_common(v: &Value, pid: u64, program: &Path) {
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "call", "local", "mode", "pid", "program", "remote", "rule", "ts", "user", "verdict",
    ];
    let mut got = keys.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "{v}");
    let ts = parse_ts(v["ts"].as_str().unwrap());
    assert!((ts - now()).abs() < 3600, "ts {} far from now", v["ts"]);
    assert_eq!(v["pid"].as_u64(), Some(pid), "{v}");
    assert_eq!(
        v["program"].as_str().map(PathBuf::from),
        Some(std::fs::canonicalize(program).unwrap()),
        "{v}"
    );
    assert_eq!(v["user"].as_u64(), Some(euid()), "{v}");
}

fn port_of(v: &Value, key: &str) -> (String, u16) {
    let a: SocketAddr = v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .parse()
        .unwrap();
    (a.ip().to_string(), a.port())
}

#[test]
fn deny_and_allow_lines_carry_every_key_with_correct_values() {
    let dir = TempDir::new("audit-keys");
    let log = dir.path().join("audit.jsonl");
    let p = policy(
        &dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }}\naudit:\n  log: {}\n  events: all\n",
            log.display()
        ),
    );
    let prog = example_path("banner_server");
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"]);
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)), "refused peer was served");
    assert!(served(&talk("127.0.0.1", addr)), "allowed peer not served");
    srv.finish();

    let ls = lines(&log);
    for v in &ls {
        check_common(v, srv.pid(), &prog);
        assert_eq!(v["mode"], "enforce", "{v}");
    }
    let listen: Vec<_> = ls.iter().filter(|v| v["call"] == "listen").collect();
    assert_eq!(listen.len(), 1, "{ls:?}");
    assert_eq!(listen[0]["verdict"], "allow");
    assert_eq!(listen[0]["rule"], "default");
    assert_eq!(listen[0]["local"], addr.to_string());
    assert!(listen[0]["remote"].is_null());

    let accepts: Vec<_> = ls.iter().filter(|v| v["call"] == "accept").collect();
    assert_eq!(accepts.len(), 2, "{ls:?}");
    let (deny, allow) = (accepts[0], accepts[1]);
    assert_eq!(deny["verdict"], "deny");
    assert_eq!(deny["rule"], "no-second-loopback");
    assert_eq!(port_of(deny, "remote").0, "127.0.0.2");
    assert_ne!(port_of(deny, "remote").1, 0);
    assert_eq!(deny["local"], addr.to_string());
    assert_eq!(allow["verdict"], "allow");
    assert_eq!(allow["rule"], "default");
    assert_eq!(port_of(allow, "remote").0, "127.0.0.1");
    assert_eq!(allow["local"], addr.to_string());
}

#[test]
fn audit_mode_lets_a_refused_peer_through_and_records_it() {
    let dir = TempDir::new("audit-mode");
    let log = dir.path().join("audit.jsonl");
    let p = policy(
        &dir,
        &format!(
            "default: allow\nmode: audit\nrules:\n  - {{ name: no-loopback, action: deny, calls: [accept], remote: [127.0.0.0/8] }}\naudit:\n  log: {}\n",
            log.display()
        ),
    );
    let prog = example_path("banner_server");
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"]);
        c
    });
    let reply = talk("127.0.0.1", addr);
    assert!(served(&reply), "audit mode refused the peer: {reply}");
    srv.finish();
    let ls = lines(&log);
    assert_eq!(ls.len(), 1, "{ls:?}");
    check_common(&ls[0], srv.pid(), &prog);
    assert_eq!(ls[0]["call"], "accept");
    assert_eq!(ls[0]["verdict"], "deny");
    assert_eq!(ls[0]["mode"], "audit");
    assert_eq!(ls[0]["rule"], "no-loopback");
    assert_eq!(port_of(&ls[0], "remote").0, "127.0.0.1");
}

#[test]
fn program_that_closes_and_reuses_every_fd_keeps_its_file_and_the_line_is_logged() {
    let dir = TempDir::new("audit-fdreuse");
    let log = dir.path().join("audit.jsonl");
    let own = dir.path().join("own.txt");
    let p = policy(
        &dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }}\naudit:\n  log: {}\n",
            log.display()
        ),
    );
    let prog = example_path("audit_fd_reuse_server");
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.arg(&own);
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)), "refused peer was served");
    let reply = talk("127.0.0.1", addr);
    assert!(reply.starts_with("ok 220 fd-reuse"), "{reply}");
    assert_eq!(srv.line(), "served 1");
    srv.finish();
    assert_eq!(
        std::fs::read(&own).unwrap(),
        b"own data\n",
        "the program's own file was written to by someone else"
    );
    let ls = lines(&log);
    assert_eq!(ls.len(), 1, "{ls:?}");
    check_common(&ls[0], srv.pid(), &prog);
    assert_eq!(ls[0]["verdict"], "deny");
    assert_eq!(ls[0]["rule"], "no-second-loopback");
    assert_eq!(port_of(&ls[0], "remote").0, "127.0.0.2");
}

#[test]
fn eight_threads_times_500_decisions_make_4000_whole_lines() {
    let dir = TempDir::new("audit-threads");
    let log = dir.path().join("audit.jsonl");
    let p = policy(
        &dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-outbound, action: deny, calls: [connect], remote: [127.0.0.1/32] }}\naudit:\n  log: {}\n",
            log.display()
        ),
    );
    let prog = example_path("audit_connect_storm");
    let out = preloaded(&prog, &p)
        .args(["8", "500", "127.0.0.1:9"])
        .stdin(Stdio::null())
        .output()
        .expect("run storm");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "eacces 4000 other 0"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.ends_with('\n'));
    let ls = lines(&log);
    // Identical refusals are collapsed: each line stands for itself or, with
    // `repeated`, for that many; nothing is lost.
    let total: u64 = ls
        .iter()
        .map(|v| v.get("repeated").map_or(1, |n| n.as_u64().unwrap()))
        .sum();
    assert_eq!(total, 4000, "{} lines", ls.len());
    assert!(ls.len() < 4000, "nothing collapsed");
    let pid = ls[0]["pid"].as_u64().unwrap();
    for v in &ls {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("repeated");
            o.remove("until");
        }
        check_common(&v, pid, &prog);
        assert_eq!(v["call"], "connect", "{v}");
        assert_eq!(v["verdict"], "deny", "{v}");
        assert_eq!(v["rule"], "no-outbound", "{v}");
        assert_eq!(v["remote"], "127.0.0.1:9", "{v}");
    }
}

#[test]
fn rotated_log_is_reopened_and_the_new_file_receives_lines() {
    let dir = TempDir::new("audit-rotate");
    let log = dir.path().join("audit.jsonl");
    let rotated = dir.path().join("audit.jsonl.1");
    let p = policy(
        &dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }}\naudit:\n  log: {}\n",
            log.display()
        ),
    );
    let prog = example_path("banner_server");
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"]);
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    // What logrotate's `create` does: rename, then a new empty file.
    std::fs::rename(&log, &rotated).unwrap();
    std::fs::write(&log, b"").unwrap();
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(!served(&talk("127.0.0.2", addr)));
    let old = lines(&rotated);
    let new = lines(&log);
    assert_eq!(old.len(), 1, "before rotation: {old:?}");
    assert_eq!(new.len(), 2, "after rotation: {new:?}");
    for v in old.iter().chain(&new) {
        check_common(v, srv.pid(), &prog);
    }
    // Removed altogether (the renamed one too): the library creates it again.
    std::fs::remove_file(&rotated).unwrap();
    std::fs::remove_file(&log).unwrap();
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    let new = lines(&log);
    assert_eq!(new.len(), 1, "after removal: {new:?}");
    for v in &new {
        check_common(v, srv.pid(), &prog);
        assert_eq!(v["verdict"], "deny");
    }
}

#[test]
fn syslog_target_sends_an_rfc5424_datagram() {
    let dir = TempDir::new("audit-syslog");
    let sock_path = dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let p = policy(
        &dir,
        "default: allow\nrules:\n  - { name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }\naudit:\n  log: syslog\n",
    );
    let prog = example_path("banner_server");
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"])
            .env("SOCKEXIT_SYSLOG_SOCKET", &sock_path);
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a datagram");
    let msg = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(msg.starts_with("<84>1 "), "{msg}"); // authpriv.warning
    let json_at = msg.find('{').unwrap();
    let header: Vec<&str> = msg[..json_at].split(' ').collect();
    // PRI+VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD, then MSG.
    assert_eq!(header.len(), 8, "{msg}");
    parse_ts(header[1]);
    assert_eq!(header[3], "sockexit");
    assert_eq!(header[4], srv.pid().to_string());
    assert_eq!(&header[5..], ["-", "-", ""]);
    let v: Value = serde_json::from_str(&msg[json_at..]).unwrap();
    check_common(&v, srv.pid(), &prog);
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["ts"], header[1]);
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
}

#[test]
fn stderr_target_writes_to_a_pipe_and_the_journal_but_never_into_an_ip_socket() {
    let dir = TempDir::new("audit-stderr");
    let p = policy(
        &dir,
        "default: allow\nrules:\n  - { name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }\naudit:\n  log: stderr\n",
    );
    let prog = example_path("banner_server");

    // fd 2 a pipe: the line arrives.
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"]).stderr(Stdio::piped());
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    let mut err = String::new();
    srv.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let json: Vec<&str> = err.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(json.len(), 1, "{err}");
    let v: Value = serde_json::from_str(json[0]).unwrap();
    check_common(&v, srv.pid(), &prog);
    assert_eq!(v["verdict"], "deny");

    // fd 2 an AF_UNIX stream (systemd's journal): the line arrives.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"])
            .stderr(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    drop(srv);
    ours.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = Vec::new();
    (&ours).read_to_end(&mut got).unwrap();
    let got = String::from_utf8_lossy(&got);
    assert_eq!(got.matches("\"verdict\":\"deny\"").count(), 1, "{got}");

    // fd 2 a TCP connection (inetd, `sshd -i`): not one byte.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let theirs = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (ours, _) = l.accept().unwrap();
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"])
            .stderr(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    drop(srv);
    ours.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = Vec::new();
    (&ours).read_to_end(&mut got).unwrap();
    assert!(
        !String::from_utf8_lossy(&got).contains("\"verdict\""),
        "audit line written into a TCP socket: {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn after_chroot_a_rotated_log_is_reopened_in_the_real_directory_never_in_the_jail() {
    if euid() != 0 {
        eprintln!("skipped: chroot needs root");
        return;
    }
    let dir = TempDir::new("audit-chroot");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("audit.jsonl");
    let rotated = logs.join("audit.jsonl.1");
    // The jail holds the same path, so a reopen by path after chroot would land there.
    let jail = dir.path().join("jail");
    let jailed_logs = jail.join(logs.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&jailed_logs).unwrap();
    let p = policy(
        &dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }}\naudit:\n  log: {}\n",
            log.display()
        ),
    );
    let prog = example_path("audit_chroot_server");
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.arg(&jail);
        c
    });
    assert_eq!(srv.line(), "chrooted");
    assert!(!served(&talk("127.0.0.2", addr)));
    std::fs::rename(&log, &rotated).unwrap();
    std::fs::write(&log, b"").unwrap();
    assert!(!served(&talk("127.0.0.2", addr)));
    let reply = talk("127.0.0.1", addr);
    assert!(reply.starts_with("ok 220 chrooted"), "{reply}");
    assert_eq!(srv.line(), "served 1");
    srv.finish();
    assert_eq!(lines(&rotated).len(), 1);
    let new = lines(&log);
    assert_eq!(new.len(), 1, "{new:?}");
    check_common(&new[0], srv.pid(), &prog);
    assert_eq!(new[0]["verdict"], "deny");
    assert_eq!(
        std::fs::read_dir(&jailed_logs).unwrap().count(),
        0,
        "audit log created inside the jail"
    );
}

#[test]
fn children_forked_while_threads_record_lines_still_record_their_own() {
    let dir = TempDir::new("audit-fork");
    let log = dir.path().join("audit.jsonl");
    let p = policy(
        &dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-testnet, action: deny, remote: [192.0.2.0/24] }}\naudit:\n  log: {}\n  events: all\n",
            log.display()
        ),
    );
    let prog = example_path("fork_server");
    // Busy workers connect (and so record a line) every millisecond while the main
    // thread forks: a lock or allocation held across the record path would leave a
    // child stuck before its banner.
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "20", "--workers", "3", "--busy"]);
        c
    });
    for i in 0..20 {
        let reply = talk("127.0.0.1", addr);
        assert!(
            reply.starts_with("ok 220 sockexit fork child listen=ok"),
            "child {i}: {reply}"
        );
    }
    srv.finish();
    let ls = lines(&log);
    let parent = srv.pid();
    let mut children: Vec<u64> = ls
        .iter()
        .filter(|v| v["call"] == "listen" && v["pid"].as_u64() != Some(parent))
        .map(|v| {
            check_common(v, v["pid"].as_u64().unwrap(), &prog);
            assert_eq!(v["verdict"], "allow", "{v}");
            v["pid"].as_u64().unwrap()
        })
        .collect();
    children.sort_unstable();
    children.dedup();
    assert_eq!(
        children.len(),
        20,
        "one listen line per child: {children:?}"
    );
    let worker_connects = ls
        .iter()
        .filter(|v| v["call"] == "connect" && v["pid"].as_u64() == Some(parent))
        .count();
    assert!(worker_connects > 0, "busy workers recorded nothing");
}

// ---------------------------------------------------------------------------------
// Issue 14: the library's own files and messages.
// ---------------------------------------------------------------------------------

use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::os::unix::process::CommandExt;

const NOBODY: u32 = 65534;

/// A datagram socket standing in for `/dev/log`; `recv_all` drains what arrived.
struct FakeSyslog {
    sock: UnixDatagram,
    path: PathBuf,
}

impl FakeSyslog {
    fn new(dir: &TempDir) -> FakeSyslog {
        let path = dir.path().join("log.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        // Writable by every user, as /dev/log is.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        FakeSyslog { sock, path }
    }

    /// The JSON records of every datagram received so far.
    fn records(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if let Some(i) = msg.find('{') {
                if let Ok(v) = serde_json::from_str::<Value>(&msg[i..]) {
                    out.push(v);
                }
            }
        }
        out
    }
}

fn deny_second_loopback(dir: &TempDir, log: &Path) -> PathBuf {
    policy(
        dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }}\naudit:\n  log: {}\n",
            log.display()
        ),
    )
}

fn stderr_of(srv: &mut Server) -> String {
    let mut err = String::new();
    if let Some(mut e) = srv.child.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    err
}

#[test]
fn a_symlink_put_where_the_log_was_is_never_followed_and_a_dangling_one_creates_nothing() {
    if euid() != 0 {
        eprintln!("skipped: the hijack matters in a root process");
        return;
    }
    let dir = TempDir::new("audit-symlink");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("audit.jsonl");
    let victim = dir.path().join("shadow");
    std::fs::write(&victim, "root:secret\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let planted = dir.path().join("planted-by-attacker");
    let syslog = FakeSyslog::new(&dir);
    let p = deny_second_loopback(&dir, &log);
    let prog = example_path("banner_server");

    // At load: a dangling symlink where the log goes creates nothing.
    symlink(&planted, &log).unwrap();
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"])
            .env("SOCKEXIT_SYSLOG_SOCKET", &syslog.path)
            .stderr(Stdio::piped());
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    assert!(
        !planted.exists(),
        "a file was created through a dangling link at load"
    );
    assert!(stderr_of(&mut srv).contains("is a symlink: not followed"));
    assert_eq!(syslog.records().len(), 1);
    std::fs::remove_file(&log).unwrap();

    // At load: the log path is already a symlink to a root-only file.
    symlink(&victim, &log).unwrap();
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"])
            .env("SOCKEXIT_SYSLOG_SOCKET", &syslog.path)
            .stderr(Stdio::piped());
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    let err = stderr_of(&mut srv);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:secret\n");
    assert!(err.contains("is a symlink: not followed"), "{err}");
    let fell_back = syslog.records();
    assert_eq!(
        fell_back.len(),
        1,
        "the refusal goes to syslog instead: {err}"
    );
    assert_eq!(fell_back[0]["rule"], "no-second-loopback");

    // After load: the log is replaced by a symlink (rotation-time hijack), then by a
    // dangling one pointing where the attacker wants a root-owned file created.
    std::fs::remove_file(&log).unwrap();
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"])
            .env("SOCKEXIT_SYSLOG_SOCKET", &syslog.path)
            .stderr(Stdio::piped());
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    std::fs::rename(&log, logs.join("audit.jsonl.1")).unwrap();
    symlink(&victim, &log).unwrap();
    assert!(!served(&talk("127.0.0.2", addr)));
    std::fs::remove_file(&log).unwrap();
    symlink(&planted, &log).unwrap();
    std::thread::sleep(Duration::from_millis(1100)); // past the once-a-second retry
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    let err = stderr_of(&mut srv);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:secret\n");
    assert!(
        !planted.exists(),
        "a file was created through a dangling link"
    );
    assert_eq!(lines(&logs.join("audit.jsonl.1")).len(), 1);
    assert_eq!(
        syslog.records().len(),
        2,
        "both later lines reach syslog: {err}"
    );
    assert_eq!(err.matches("cannot reopen").count(), 1, "said once: {err}");
}

#[test]
fn a_log_directory_the_service_user_can_write_is_refused_in_a_root_process() {
    if euid() != 0 {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let dir = TempDir::new("audit-untrusted-dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("audit.jsonl");
    let syslog = FakeSyslog::new(&dir);
    let p = deny_second_loopback(&dir, &log);
    let prog = example_path("banner_server");

    // At load: a directory owned by the service user (the old advice) is refused.
    chown(&logs, Some(NOBODY), Some(NOBODY)).unwrap();
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"])
            .env("SOCKEXIT_SYSLOG_SOCKET", &syslog.path)
            .stderr(Stdio::piped());
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    let err = stderr_of(&mut srv);
    assert!(!log.exists(), "log created in an untrusted directory");
    assert!(
        err.contains("can be written by users other than root"),
        "{err}"
    );
    assert_eq!(syslog.records().len(), 1, "{err}");

    // At reopen: trusted at load, made writable by others later, then rotated.
    chown(&logs, Some(0), Some(0)).unwrap();
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"])
            .env("SOCKEXIT_SYSLOG_SOCKET", &syslog.path)
            .stderr(Stdio::piped());
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::rename(&log, logs.join("audit.jsonl.1")).unwrap();
    std::fs::write(&log, b"").unwrap();
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    let err = stderr_of(&mut srv);
    assert_eq!(lines(&logs.join("audit.jsonl.1")).len(), 1);
    assert_eq!(
        lines(&log).len(),
        0,
        "reopened in a world-writable directory"
    );
    assert!(err.contains("mode 0777"), "{err}");
    assert_eq!(syslog.records().len(), 1, "{err}");
}

#[test]
fn an_unprivileged_server_that_cannot_follow_a_rotation_falls_back_to_syslog_and_says_so() {
    if euid() != 0 {
        eprintln!("skipped: needs root to run the server as nobody");
        return;
    }
    let dir = TempDir::new("audit-nobody-rotate");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("audit.jsonl");
    std::fs::write(&log, b"").unwrap();
    chown(&log, Some(NOBODY), Some(NOBODY)).unwrap();
    let syslog = FakeSyslog::new(&dir);
    let p = deny_second_loopback(&dir, &log);
    let prog = example_path("banner_server");
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"])
            .env("SOCKEXIT_SYSLOG_SOCKET", &syslog.path)
            .stderr(Stdio::piped())
            .uid(NOBODY)
            .gid(NOBODY);
        c
    });
    for _ in 0..3 {
        assert!(!served(&talk("127.0.0.2", addr)));
    }
    // Rotated with a new file the server's user cannot open (`create 0600 root root`).
    std::fs::rename(&log, logs.join("audit.jsonl.1")).unwrap();
    std::fs::write(&log, b"").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
    for _ in 0..4 {
        assert!(!served(&talk("127.0.0.2", addr)));
    }
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    let err = stderr_of(&mut srv);
    assert_eq!(lines(&logs.join("audit.jsonl.1")).len(), 3);
    assert_eq!(lines(&log).len(), 0);
    let fell_back = syslog.records();
    assert_eq!(fell_back.len(), 4, "every later line reaches syslog: {err}");
    for v in &fell_back {
        assert_eq!(v["user"], NOBODY);
    }
    assert_eq!(err.matches("cannot reopen").count(), 1, "said once: {err}");
    assert!(
        err.contains("Permission denied") && err.contains("uid 65534"),
        "{err}"
    );
}

#[test]
fn a_short_write_at_the_size_limit_never_glues_two_records_and_nothing_else_is_lost() {
    let dir = TempDir::new("audit-fsize");
    let log = dir.path().join("audit.jsonl");
    let syslog = FakeSyslog::new(&dir);
    let p = policy(
        &dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-outbound, action: deny, calls: [connect], remote: [127.0.0.1/32] }}\naudit:\n  log: {}\n",
            log.display()
        ),
    );
    // One line's length (a calibration run), so the limit falls mid-line: 3.5 lines.
    let calibrate = preloaded(example_path("audit_fsize_client"), &p)
        .args(["1000000000", "1", "0", "127.0.0.1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(calibrate.status.success(), "{calibrate:?}");
    let one = std::fs::metadata(&log).unwrap().len();
    std::fs::remove_file(&log).unwrap();
    let limit = (one * 7 / 2).to_string();
    let out = preloaded(example_path("audit_fsize_client"), &p)
        .args([limit.as_str(), "6", "3", "127.0.0.1"])
        .env("SOCKEXIT_SYSLOG_SOCKET", &syslog.path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "eacces 9 other 0"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.ends_with('\n'));
    let mut whole = Vec::new();
    let mut cut = 0;
    for l in text.lines() {
        assert!(
            l.matches("\"ts\"").count() <= 1,
            "two records on one line: {l:?}"
        );
        match serde_json::from_str::<Value>(l) {
            Ok(v) => whole.push(v),
            Err(_) => {
                assert!(
                    l.starts_with("{\"ts\":"),
                    "a cut record, on a line of its own: {l:?}"
                );
                cut += 1;
            }
        }
    }
    assert_eq!(cut, 1, "{text}");
    let fell_back = syslog.records();
    let mut ports: Vec<u64> = whole
        .iter()
        .chain(&fell_back)
        .map(|v| port_of(v, "remote").1.into())
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, (1001..=1009).collect::<Vec<u64>>(), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("short write").count(), 1, "{err}");
}

#[test]
fn no_audit_section_and_no_dev_log_is_silent_until_a_line_cannot_be_delivered() {
    let dir = TempDir::new("audit-quiet");
    let nowhere = dir.path().join("no-dev-log");
    let p = policy(
        &dir,
        "default: allow\nrules:\n  - { name: no-outbound, action: deny, calls: [connect], remote: [127.0.0.1/32], remote_ports: [9] }\n",
    );
    // A pipeline of ordinary programs that never open a socket: not a word.
    let out = preloaded("/bin/sh", &p)
        .args(["-c", "echo x | tr x y | cat | wc -c"])
        .env("SOCKEXIT_SYSLOG_SOCKET", &nowhere)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "noise at start");

    // Refusals that cannot reach syslog: the lines go to stderr, said once.
    let out = preloaded(example_path("audit_connect_storm"), &p)
        .args(["1", "1", "127.0.0.1:9"])
        .env("SOCKEXIT_SYSLOG_SOCKET", &nowhere)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("WARN").count(), 1, "{err}");
    assert!(
        err.contains("audit: { log: FILE }"),
        "names what to configure: {err}"
    );
    let json: Vec<&str> = err.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(json.len(), 1, "{err}");
}

#[test]
fn identical_refusals_collapse_into_one_repeated_line_with_exact_counts() {
    let dir = TempDir::new("audit-repeat");
    let log = dir.path().join("audit.jsonl");
    let p = policy(
        &dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-outbound, action: deny, calls: [connect], remote: [127.0.0.1/32] }}\naudit:\n  log: {}\n",
            log.display()
        ),
    );
    let prog = example_path("audit_retry_client");
    let out = preloaded(&prog, &p)
        .args(["127.0.0.1:6379*10", "127.0.0.1:6380*1", "127.0.0.1:6379*15"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "eacces 26 other 0"
    );
    let ls = lines(&log);
    let shape: Vec<(String, Option<u64>)> = ls
        .iter()
        .map(|v| {
            (
                v["remote"].as_str().unwrap().to_string(),
                v.get("repeated").map(|n| n.as_u64().unwrap()),
            )
        })
        .collect();
    let a = "127.0.0.1:6379".to_string();
    let b = "127.0.0.1:6380".to_string();
    assert_eq!(
        shape,
        [
            (a.clone(), None),
            (a.clone(), Some(9)),
            (b, None),
            (a.clone(), None),
            (a, Some(14)),
        ],
        "{ls:?}"
    );
    for v in &ls {
        assert_eq!(v["rule"], "no-outbound");
        assert_eq!(v["pid"].as_u64(), ls[0]["pid"].as_u64());
        if v.get("repeated").is_some() {
            assert!(parse_ts(v["until"].as_str().unwrap()) >= parse_ts(v["ts"].as_str().unwrap()));
        }
    }
}
