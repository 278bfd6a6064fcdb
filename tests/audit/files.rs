//! Issue 14: the library's own files and messages — symbolic links, directories the
//! service user can write, rotation it cannot follow, short writes, no syslog, repeats.

use crate::support::*;

use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::os::unix::process::CommandExt;

pub(crate) const NOBODY: u32 = 65534;

/// A datagram socket standing in for `/dev/log`; `recv_all` drains what arrived.
pub(crate) struct FakeSyslog {
    sock: UnixDatagram,
    path: PathBuf,
}

impl FakeSyslog {
    pub(crate) fn new(dir: &TempDir) -> FakeSyslog {
        let path = dir.path().join("log.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        // Writable by every user, as /dev/log is.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        FakeSyslog { sock, path }
    }

    /// The JSON records of every datagram received so far.
    pub(crate) fn records(&self) -> Vec<Value> {
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

pub(crate) fn deny_second_loopback(dir: &TempDir, log: &Path) -> PathBuf {
    policy(
        dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }}\naudit:\n  log: {}\n",
            log.display()
        ),
    )
}

pub(crate) fn stderr_of(srv: &mut Server) -> String {
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
