//! What the audit tests share: a server under the preload, a peer, the audit file's
//! lines and the checks every line must pass.

pub(crate) use crate::common::{example_path, preloaded, TempDir};
pub(crate) use serde_json::Value;
pub(crate) use std::io::{BufRead, BufReader, Read};
pub(crate) use std::net::SocketAddr;
pub(crate) use std::os::unix::net::UnixDatagram;
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::{Child, ChildStdout, Command, Stdio};
pub(crate) use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// A child process killed on drop, so a failing test never leaves a server behind.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) out: BufReader<ChildStdout>,
}

impl Server {
    pub(crate) fn start(mut cmd: Command) -> (Server, SocketAddr) {
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

    pub(crate) fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).expect("read stdout");
        l.trim_end().to_string()
    }

    pub(crate) fn pid(&self) -> u64 {
        u64::from(self.child.id())
    }

    /// Waits (bounded) for the program to exit by itself and checks it succeeded.
    pub(crate) fn finish(&mut self) {
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
pub(crate) fn talk(src: &str, dst: SocketAddr) -> String {
    let out = Command::new(example_path("connect_client"))
        .args(["--bind", src, &dst.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run connect_client");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

pub(crate) fn served(reply: &str) -> bool {
    reply.starts_with("ok 220")
}

pub(crate) fn policy(dir: &TempDir, body: &str) -> PathBuf {
    dir.write("policy.yaml", &format!("version: 1\n{body}"))
}

/// Every line of the audit file, parsed; panics on a line that is not one JSON object.
pub(crate) fn lines(path: &Path) -> Vec<Value> {
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
pub(crate) fn parse_ts(ts: &str) -> i64 {
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

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub(crate) fn euid() -> u64 {
    // SAFETY: geteuid has no arguments and cannot fail.
    u64::from(unsafe { libc::geteuid() })
}

/// Checks the keys every line must have, with the values common to one process.
pub(crate) fn check_common(v: &Value, pid: u64, program: &Path) {
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

pub(crate) fn port_of(v: &Value, key: &str) -> (String, u16) {
    let a: SocketAddr = v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .parse()
        .unwrap();
    (a.ip().to_string(), a.port())
}
