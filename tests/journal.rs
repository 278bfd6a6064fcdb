//! `audit: { log: journal }`, end to end (root): a real preloaded banner server runs in
//! a private mount namespace (`unshare -m`) whose `/run/systemd/journal` is a directory
//! of this test, where the test has bound its own datagram socket at `socket` — what
//! journald would receive, read as journald reads it (the native protocol). The host's
//! `/run` is never touched: the mounts die with the namespace.

mod common;

use common::daemon::{missing, require, say};
use common::peer::{assert_refused, assert_served, talk, DOT2, LO};
use common::proc::Proc;
use common::{cli_path, example_path, preload_path, TempDir};
use serde_json::Value;
use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BANNER: &[u8] = b"220 sockexit banner\r\n";
/// The keys of an audit line, in their order (docs/audit.md).
const KEYS: [&str; 10] = [
    "ts", "pid", "program", "user", "call", "local", "remote", "verdict", "rule", "mode",
];

/// Mounts a tmpfs on `/run/systemd` (or `/run` where that does not exist), makes
/// `/run/systemd/journal` in it, bind-mounts `$SX_JOURNAL` there when set, then runs
/// the program — with `LD_PRELOAD=$SX_PRELOAD`, so `unshare`, `sh` and `mount` are not
/// preloaded themselves.
const SCRIPT: &str = "t=/run/systemd; [ -d $t ] || t=/run
mount -t tmpfs sockexit-test $t && mkdir -p /run/systemd/journal || exit 97
if [ -n \"$SX_JOURNAL\" ]; then mount --bind \"$SX_JOURNAL\" /run/systemd/journal || exit 98; fi
LD_PRELOAD=\"$SX_PRELOAD\" exec \"$@\"";

/// Root, else a loud skip; as root a missing `unshare` fails under `CI`.
fn can_run() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        say("SKIPPED: tests/journal.rs needs root (unshare -m, mount)");
        return false;
    }
    require("unshare").is_some() || missing::<()>("unshare (util-linux)").is_some()
}

/// The journal's side: a datagram socket bound at `DIR/socket`.
struct Journal {
    dir: TempDir,
    sock: UnixDatagram,
}

impl Journal {
    fn new() -> Journal {
        let dir = TempDir::new("journal");
        let sock = UnixDatagram::bind(dir.path().join("socket")).expect("bind journal socket");
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Journal { dir, sock }
    }

    /// Every datagram received so far (after the senders exited: nothing is waited for
    /// but the queue).
    fn entries(&self) -> Vec<Vec<u8>> {
        self.sock.set_nonblocking(true).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = self.sock.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }
}

/// A native-protocol datagram as journald parses it: `KEY=value\n`, or `KEY\n`, a
/// little-endian u64 length, the value, `\n`. Panics on anything else.
fn parse(mut d: &[u8]) -> HashMap<String, Vec<u8>> {
    let mut f = HashMap::new();
    while !d.is_empty() {
        let nl = d
            .iter()
            .position(|&b| b == b'\n')
            .expect("field ends in \\n");
        let line = &d[..nl];
        let (key, value, rest) = match line.iter().position(|&b| b == b'=') {
            Some(eq) => (&line[..eq], line[eq + 1..].to_vec(), &d[nl + 1..]),
            None => {
                let r = &d[nl + 1..];
                let len = u64::from_le_bytes(r[..8].try_into().unwrap()) as usize;
                assert_eq!(r[8 + len], b'\n', "binary field {:?}", line.escape_ascii());
                (line, r[8..8 + len].to_vec(), &r[9 + len..])
            }
        };
        let key = String::from_utf8(key.to_vec()).expect("ASCII key");
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "{key}"
        );
        assert!(f.insert(key, value).is_none(), "a field twice");
        d = rest;
    }
    f
}

fn text(f: &HashMap<String, Vec<u8>>, k: &str) -> String {
    String::from_utf8(f.get(k).unwrap_or_else(|| panic!("{k} missing")).clone()).unwrap()
}

/// `program ARGS` in the namespace, with the library preloaded (`preload`) and the
/// policy; `journal`: what `/run/systemd/journal` is (none: an empty directory).
fn in_namespace(
    program: &Path,
    args: &[&str],
    policy: &Path,
    journal: Option<&Path>,
    preload: bool,
) -> Command {
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", SCRIPT, "sh"])
        .arg(program)
        .args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SOCKEXIT_") || k == "LD_PRELOAD" {
            c.env_remove(k);
        }
    }
    c.env("SOCKEXIT_POLICY", policy)
        .env(
            "SX_JOURNAL",
            journal.map(Path::as_os_str).unwrap_or_default(),
        )
        .env(
            "SX_PRELOAD",
            if preload {
                preload_path().into_os_string()
            } else {
                "".into()
            },
        );
    c
}

fn policy(dir: &Path, events: &str) -> PathBuf {
    let p = dir.join("policy.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\ndefault: allow\nrules:\n  - {{ name: no-dot2, action: deny, calls: [accept], \
             remote: [127.0.0.2/32] }}\naudit:\n  log: journal\n  events: {events}\n"
        ),
    )
    .unwrap();
    p
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        other => panic!("not IPv4: {other}"),
    }
}

/// Refuses 127.0.0.2, serves 127.0.0.1, exits: the server in `cmd` (`--max 1`).
fn refuse_then_serve(cmd: Command) -> (u32, common::proc::Finished) {
    let mut srv = Proc::start(cmd);
    let addr = v4(srv.listening());
    assert_refused(&talk(DOT2, addr), "127.0.0.2");
    assert_served(&talk(LO, addr), BANNER, "127.0.0.1");
    let pid = srv.pid();
    let f = srv.wait();
    assert!(f.status.success(), "server: {f:?}");
    (pid, f)
}

/// The one entry with `SOCKEXIT_VERDICT=deny` among `raw`, parsed, and its MESSAGE
/// parsed.
fn the_refusal(raw: &[Vec<u8>]) -> (HashMap<String, Vec<u8>>, Value) {
    let deny: Vec<_> = raw
        .iter()
        .map(|d| parse(d))
        .filter(|f| f.get("SOCKEXIT_VERDICT").map(Vec::as_slice) == Some(b"deny"))
        .collect();
    assert_eq!(deny.len(), 1, "{deny:?}");
    let f = deny.into_iter().next().unwrap();
    let msg: Value = serde_json::from_slice(&f["MESSAGE"]).expect("MESSAGE is the JSON line");
    (f, msg)
}

#[test]
fn every_decision_is_one_entry_with_its_fields_and_message_is_the_json_line() {
    if !can_run() {
        return;
    }
    let j = Journal::new();
    let p = policy(j.dir.path(), "all");
    let prog = example_path("banner_server");
    let (pid, _) = refuse_then_serve(in_namespace(
        &prog,
        &["--max", "1"],
        &p,
        Some(j.dir.path()),
        true,
    ));
    let all: Vec<_> = j.entries().iter().map(|d| parse(d)).collect();
    let calls: Vec<(String, String)> = all
        .iter()
        .map(|f| (text(f, "SOCKEXIT_CALL"), text(f, "SOCKEXIT_VERDICT")))
        .collect();
    let want = [("listen", "allow"), ("accept", "deny"), ("accept", "allow")];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(calls, want);
    let exe = std::fs::canonicalize(&prog).unwrap();
    for f in &all {
        let msg: Value = serde_json::from_slice(&f["MESSAGE"]).expect("MESSAGE is the JSON line");
        // The line as the other targets write it: one object, keys in the documented
        // order, no newline.
        let raw = std::str::from_utf8(&f["MESSAGE"]).unwrap();
        assert!(
            !raw.contains('\n') && raw.starts_with("{\"ts\":\""),
            "{raw}"
        );
        let at: Vec<usize> = KEYS
            .iter()
            .map(|k| {
                raw.find(&format!("\"{k}\":"))
                    .unwrap_or_else(|| panic!("{k} in {raw}"))
            })
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "key order: {raw}");
        // MESSAGE is the line the other targets write; every field says what it says.
        assert_eq!(msg["verdict"], text(f, "SOCKEXIT_VERDICT"));
        assert_eq!(msg["rule"], text(f, "SOCKEXIT_RULE"));
        assert_eq!(msg["call"], text(f, "SOCKEXIT_CALL"));
        assert_eq!(msg["mode"], "enforce");
        assert_eq!(text(f, "SOCKEXIT_MODE"), "enforce");
        assert_eq!(msg["pid"], u64::from(pid));
        assert_eq!(text(f, "SOCKEXIT_PID"), pid.to_string());
        assert_eq!(msg["user"], 0);
        assert_eq!(text(f, "SOCKEXIT_USER"), "0");
        assert_eq!(msg["program"], exe.to_str().unwrap());
        assert_eq!(f["SOCKEXIT_PROGRAM"], exe.as_os_str().as_bytes());
        assert_eq!(f["SOCKEXIT_POLICY"], p.as_os_str().as_bytes());
        assert_eq!(text(f, "SYSLOG_IDENTIFIER"), "sockexit");
        assert_eq!(text(f, "SYSLOG_FACILITY"), "10");
        assert_eq!(text(f, "SOCKEXIT_BACKEND"), "preload");
        let pri = if msg["verdict"] == "deny" { "4" } else { "6" };
        assert_eq!(text(f, "PRIORITY"), pri, "{msg}");
        // Never published: no generation, in the line or the entry.
        assert!(msg.get("policy").is_none() && !f.contains_key("SOCKEXIT_GENERATION"));
        let local = format!(
            "{}:{}",
            text(f, "SOCKEXIT_LOCAL"),
            text(f, "SOCKEXIT_LOCAL_PORT")
        );
        assert_eq!(msg["local"], local);
        if msg["call"] == "listen" {
            assert!(msg["remote"].is_null() && !f.contains_key("SOCKEXIT_REMOTE"));
        } else {
            let remote = format!(
                "{}:{}",
                text(f, "SOCKEXIT_REMOTE"),
                text(f, "SOCKEXIT_REMOTE_PORT")
            );
            assert_eq!(msg["remote"], remote);
        }
    }
    assert_eq!(text(&all[1], "SOCKEXIT_REMOTE"), "127.0.0.2");
    assert_eq!(text(&all[1], "SOCKEXIT_RULE"), "no-dot2");
    assert_eq!(text(&all[2], "SOCKEXIT_REMOTE"), "127.0.0.1");
    assert_eq!(text(&all[2], "SOCKEXIT_RULE"), "default");
}

#[test]
fn a_program_path_with_a_newline_goes_in_the_binary_form() {
    if !can_run() {
        return;
    }
    let j = Journal::new();
    let p = policy(j.dir.path(), "deny");
    let bin = TempDir::new("journal-bin");
    let prog = bin.path().join("banner\nserver");
    std::fs::copy(example_path("banner_server"), &prog).unwrap();
    refuse_then_serve(in_namespace(
        &prog,
        &["--max", "1"],
        &p,
        Some(j.dir.path()),
        true,
    ));
    let raw = j.entries();
    assert_eq!(raw.len(), 1, "events: deny: the refusal only");
    let path = prog.as_os_str().as_bytes();
    let mut want = b"\nSOCKEXIT_PROGRAM\n".to_vec();
    want.extend_from_slice(&(path.len() as u64).to_le_bytes());
    want.extend_from_slice(path);
    want.push(b'\n');
    assert!(
        raw[0].windows(want.len()).any(|w| w == want),
        "{}",
        raw[0].escape_ascii()
    );
    let (f, msg) = the_refusal(&raw);
    assert_eq!(f["SOCKEXIT_PROGRAM"], path);
    assert_eq!(
        msg["program"],
        prog.to_str().unwrap(),
        "the line escapes it"
    );
}

#[test]
fn without_a_journal_socket_the_server_is_unharmed_and_says_where_lines_went_once() {
    if !can_run() {
        return;
    }
    let j = Journal::new();
    let p = policy(j.dir.path(), "deny");
    let mut c = in_namespace(
        &example_path("banner_server"),
        &["--max", "1"],
        &p,
        None,
        true,
    );
    // No syslog either: the fallback is stderr.
    c.env("SOCKEXIT_SYSLOG_SOCKET", j.dir.path().join("no-syslog"));
    let (_, f) = refuse_then_serve(c);
    assert_eq!(
        f.stderr.matches("/run/systemd/journal/socket").count(),
        1,
        "said once: {}",
        f.stderr
    );
    let lines: Vec<Value> = f
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 1, "the refusal's line on stderr: {}", f.stderr);
    assert_eq!(lines[0]["verdict"], "deny");
    assert!(j.entries().is_empty());
}

#[test]
fn the_supervisor_sends_the_same_fields() {
    if !can_run() {
        return;
    }
    let j = Journal::new();
    let p = policy(j.dir.path(), "deny");
    let prog = example_path("banner_server");
    let sup = cli_path();
    let mut c = in_namespace(
        &sup,
        &["run", "--supervise", "--policy"],
        &p,
        Some(j.dir.path()),
        false,
    );
    c.arg(&p).arg("--").arg(&prog).args(["--max", "1"]);
    refuse_then_serve(c);
    let (f, msg) = the_refusal(&j.entries());
    assert_eq!(text(&f, "SOCKEXIT_BACKEND"), "supervise");
    assert_eq!(msg["backend"], "supervise");
    assert_eq!(text(&f, "SOCKEXIT_RULE"), "no-dot2");
    assert_eq!(text(&f, "SOCKEXIT_REMOTE"), "127.0.0.2");
    assert_eq!(
        msg["remote"],
        format!("127.0.0.2:{}", text(&f, "SOCKEXIT_REMOTE_PORT"))
    );
    assert_eq!(text(&f, "PRIORITY"), "4");
    assert_eq!(msg["pid"].to_string(), text(&f, "SOCKEXIT_PID"));
    let exe = std::fs::canonicalize(&prog).unwrap();
    assert_eq!(f["SOCKEXIT_PROGRAM"], exe.as_os_str().as_bytes());
    assert_eq!(f["SOCKEXIT_POLICY"], p.as_os_str().as_bytes());
}

/// Run by `unshare -m sh -c` for the real journald: a tmpfs on `/run` (its sockets and
/// runtime journal) and on `/var/log/journal` when that exists (so nothing reaches the
/// host's journal), journald started, the program run, then `journalctl` asked — as an
/// administrator would — for the refusals, until it has one (bounded).
const REAL: &str = r#"
mount -t tmpfs -o mode=0755 sx-run /run || exit 97
if [ -d /var/log/journal ]; then mount -t tmpfs sx-journal /var/log/journal || exit 97; fi
"$SX_JOURNALD" >/dev/null 2>&1 &
jd=$!
trap 'kill $jd 2>/dev/null' EXIT
i=0; while [ ! -S /run/systemd/journal/socket ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
LD_PRELOAD="$SX_PRELOAD" "$@"
i=0; while [ $i -lt 100 ]; do
    out=$(journalctl --no-pager -o json SOCKEXIT_VERDICT=deny 2>/dev/null)
    [ -n "$out" ] && break; sleep 0.1; i=$((i+1))
done
echo "$out"
"#;

#[test]
fn journalctl_finds_the_refusal_by_its_fields_in_a_real_journal() {
    if !can_run() {
        return;
    }
    let Some(journald) = [
        "/lib/systemd/systemd-journald",
        "/usr/lib/systemd/systemd-journald",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .or_else(|| missing("systemd-journald (systemd)")) else {
        return;
    };
    let d = TempDir::new("journal-real");
    let p = d.path().join("policy.yaml");
    std::fs::write(
        &p,
        "version: 1\ndefault: allow\nrules:\n  - { name: no-dot3, action: deny, calls: [connect], \
         remote: [127.0.0.3/32] }\naudit: { log: journal }\n",
    )
    .unwrap();
    let client = example_path("connect_client");
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", REAL, "sh"])
        .arg(&client)
        .arg("127.0.0.3:9")
        .env_remove("LD_PRELOAD")
        .env("SOCKEXIT_POLICY", &p)
        .env("SX_PRELOAD", preload_path())
        .env("SX_JOURNALD", journald)
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("error EACCES 13"), "{out:?}");
    let entries: Vec<Value> = lines
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(entries.len(), 1, "{stdout}");
    let e = &entries[0];
    assert_eq!(e["SOCKEXIT_RULE"], "no-dot3");
    assert_eq!(e["SOCKEXIT_REMOTE"], "127.0.0.3");
    assert_eq!(e["SOCKEXIT_REMOTE_PORT"], "9");
    assert_eq!(e["SYSLOG_IDENTIFIER"], "sockexit");
    assert_eq!(e["PRIORITY"], "4");
    let msg: Value = serde_json::from_str(e["MESSAGE"].as_str().unwrap()).unwrap();
    assert_eq!(msg["rule"], "no-dot3");
    assert_eq!(msg["remote"], "127.0.0.3:9");
    // journald's own field: it took the datagram as a native-protocol entry. (Its
    // `_EXE`/`_COMM` are read from /proc when it gets there, and are missing when the
    // client has exited by then: not asserted.)
    assert_eq!(e["_TRANSPORT"], "journal");
}
