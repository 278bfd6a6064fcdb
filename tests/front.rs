//! The front (`libsockexit.so`, crates/front) without its core: a broken installation
//! must fail closed like a broken policy — IP calls refused, everything else working,
//! one message naming what is missing — and `SOCKEXIT_ON_ERROR=allow` must let it all
//! through.

mod common;

use common::{preload_path, TempDir};
use std::process::Command;

/// Connects to a closed loopback port, then to a unix socket path that does not exist,
/// and listens on a loopback TCP socket; prints each outcome.
const PROBE: &str = r#"
import errno, socket
def show(what, f):
    try:
        f()
        print(what, "ok")
    except OSError as e:
        print(what, errno.errorcode[e.errno])
s = socket.socket()
show("connect-ip", lambda: s.connect(("127.0.0.1", 9)))
u = socket.socket(socket.AF_UNIX)
show("connect-unix", lambda: u.connect("/nonexistent/sockexit-front-test"))
l = socket.socket()
l.bind(("127.0.0.1", 0))
show("listen-ip", lambda: l.listen(1))
"#;

fn probe(front: &std::path::Path, policy: &std::path::Path, allow: bool) -> (String, String) {
    let mut c = Command::new("python3");
    c.arg("-c")
        .arg(PROBE)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LD_PRELOAD", front)
        .env("SOCKEXIT_POLICY", policy);
    if allow {
        c.env("SOCKEXIT_ON_ERROR", "allow");
    }
    let out = c.output().expect("python3");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_front_without_its_core_fails_closed_on_ip_calls_only_and_says_why() {
    if Command::new("python3").arg("-V").output().is_err() {
        return common::daemon::missing::<()>("python3").unwrap_or(());
    }
    let dir = TempDir::new("front-alone");
    let front = dir.path().join("libsockexit.so");
    std::fs::copy(preload_path(), &front).unwrap();
    let policy = dir.write("policy.yaml", "version: 1\ndefault: allow\nrules: []\n");

    let (out, err) = probe(&front, &policy, false);
    assert_eq!(
        out, "connect-ip EACCES\nconnect-unix ENOENT\nlisten-ip EACCES\n",
        "{err}"
    );
    assert_eq!(err.matches("cannot load").count(), 1, "{err}");
    assert!(
        err.contains(&*dir.path().join("libsockexit_core.so").to_string_lossy())
            && err.contains("failing closed"),
        "{err}"
    );

    let (out, err) = probe(&front, &policy, true);
    assert_eq!(
        out, "connect-ip ECONNREFUSED\nconnect-unix ENOENT\nlisten-ip ok\n",
        "{err}"
    );

    // With its core beside it, the same front judges by the policy (allow: all pass).
    std::fs::copy(
        preload_path().with_file_name("libsockexit_core.so"),
        dir.path().join("libsockexit_core.so"),
    )
    .unwrap();
    let (out, err) = probe(&front, &policy, false);
    assert_eq!(
        out, "connect-ip ECONNREFUSED\nconnect-unix ENOENT\nlisten-ip ok\n",
        "{err}"
    );
    assert!(!err.contains("cannot load"), "{err}");
}
