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
    assert_eq!(ls.len(), 4000);
    let pid = ls[0]["pid"].as_u64().unwrap();
    for v in &ls {
        check_common(v, pid, &prog);
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
    std::fs::rename(&log, &rotated).unwrap();
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    let old = lines(&rotated);
    let new = lines(&log);
    assert_eq!(old.len(), 1, "before rotation: {old:?}");
    assert_eq!(new.len(), 2, "after rotation: {new:?}");
    for v in old.iter().chain(&new) {
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
fn stderr_target_writes_to_a_pipe_but_never_into_a_socket() {
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

    // fd 2 a socket (inetd, `sshd -i`): not one byte.
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
    assert!(
        !String::from_utf8_lossy(&got).contains("\"verdict\""),
        "audit line written into a socket: {:?}",
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
