//! `sockexit check --listeners PID`: which listening sockets of a running process carry
//! the stealth filter, and its size, as the kernel reports it (issue 18, item 8).

mod common;

use common::{cli_path, example_path, preloaded, TempDir};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

fn policy(stealth: bool) -> String {
    format!(
        "version: 1\ndefault: deny\nstealth: {stealth}\naudit: {{ log: off }}\nrules:\n  - {{ name: listen, action: allow, calls: [listen] }}\n  - {{ name: lo, action: allow, calls: [accept], remote: [127.0.0.1] }}\n"
    )
}

fn listeners(pid: u32) -> (Option<i32>, String) {
    let o = Command::new(cli_path())
        .args(["check", "--listeners", &pid.to_string()])
        .env_remove("SOCKEXIT_POLICY")
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn a_stealth_listener_shows_its_filter_and_a_plain_one_none() {
    let dir = TempDir::new("listeners");
    for stealth in [true, false] {
        let p = dir.write(&format!("p-{stealth}.yaml"), &policy(stealth));
        let mut c = preloaded(example_path("banner_server"), &p);
        c.arg("0.0.0.0:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut srv = c.spawn().unwrap();
        let mut first = String::new();
        BufReader::new(srv.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr: SocketAddr = first
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{first:?}"));
        let pid = srv.id();
        let (code, out) = listeners(pid);
        let _ = srv.kill();
        let _ = srv.wait();
        assert_eq!(code, Some(0), "{out}");
        let line = out
            .lines()
            .find(|l| l.contains(&format!("0.0.0.0:{}", addr.port())))
            .unwrap_or_else(|| panic!("listener {addr} not listed: {out}"));
        assert!(
            line.starts_with(&format!("listener: {pid} (banner_server) fd ")),
            "{line}"
        );
        if stealth {
            // Some hardened kernels refuse filters without CAP_NET_ADMIN: then the
            // library runs without one, and that is what must be shown.
            assert!(
                line.contains(": socket filter of ") && line.contains(" instructions")
                    || line.contains("no socket filter"),
                "{line}"
            );
            assert!(!line.contains("socket filter of 0 "), "{line}");
        } else {
            assert!(
                line.ends_with("no socket filter: every SYN reaches the accept-time check"),
                "{line}"
            );
        }
    }
}

#[test]
fn a_process_that_does_not_exist_is_an_error() {
    let (code, _) = listeners(u32::MAX / 2);
    assert_eq!(code, Some(1));
}
