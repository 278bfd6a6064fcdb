//! What every attack here shares: the policies, running an attack program under the
//! preload, watching a listener, and reporting every failed case at once.

pub(crate) use crate::common::proc::{Finished, Proc};
pub(crate) use crate::common::tcp_peer::{assert_refused, assert_served, talk};
pub(crate) use crate::common::{cli_path, example_path, preloaded, TempDir};
pub(crate) use std::io::{ErrorKind, Read};
pub(crate) use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
pub(crate) use std::os::unix::process::ExitStatusExt;
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::Command;
pub(crate) use std::sync::Mutex;
pub(crate) use std::time::{Duration, Instant};

pub(crate) const LO: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
pub(crate) const DOT2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
pub(crate) const DOT5: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5));
pub(crate) const V6LO: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

pub(crate) const ATTACK_BANNER: &[u8] = b"220 sockexit attack\r\n";
pub(crate) const EACCES: &str = "error EACCES 13";

/// How long after the attack program exited a connection it made could still be on
/// its way into the listener's queue (loopback: none; the margin is for a busy box).
pub(crate) const SETTLE: Duration = Duration::from_millis(300);

/// connect to 127.0.0.2 and ::1 refused (the v4-mapped form of 127.0.0.2 must match
/// the IPv4 entry), everything else allowed.
pub(crate) const DENY_DOT2_AND_V6LO: &str = r#"version: 1
default: allow
audit: {log: stderr, events: deny}
rules:
  - {name: no-dot2, action: deny, calls: [connect], remote: [127.0.0.2/32, "::1/128"]}
"#;

/// Only connect to 127.0.0.2 refused.
pub(crate) const DENY_DOT2: &str = r#"version: 1
default: allow
audit: {log: stderr, events: deny}
rules:
  - {name: no-dot2, action: deny, calls: [connect], remote: [127.0.0.2/32]}
"#;

/// The usual guard against SSRF into local services.
pub(crate) const DENY_LOOPBACK: &str = r#"version: 1
default: allow
audit: {log: stderr, events: deny}
rules:
  - {name: no-loopback, action: deny, calls: [connect], remote: [127.0.0.0/8, "::1/128"]}
"#;

/// accept from 127.0.0.2 refused, listen on 127.0.0.3 refused, the rest allowed.
pub(crate) const DENY_DOT2_IN: &str = r#"version: 1
default: allow
audit: {log: stderr, events: deny}
rules:
  - {name: no-dot2-in, action: deny, calls: [accept], remote: [127.0.0.2/32]}
  - {name: no-dot3-listen, action: deny, calls: [listen], local: [127.0.0.3/32]}
  - {name: no-dot2-out, action: deny, calls: [connect], remote: [127.0.0.2/32]}
"#;

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

pub(crate) fn policy(dir: &TempDir, text: &str) -> PathBuf {
    dir.write("policy.yaml", text)
}

/// `attack_bypass ARGS` under the preload with `policy`, run to completion.
pub(crate) fn attack(policy: &Path, args: &[&str]) -> Finished {
    let mut c = preloaded(example_path("attack_bypass"), policy);
    c.args(args);
    Proc::start(c).wait()
}

/// `attack_bypass ARGS` without the library: what the kernel alone says.
pub(crate) fn attack_unpreloaded(args: &[&str]) -> Finished {
    let mut c = Command::new(example_path("attack_bypass"));
    c.env_remove("LD_PRELOAD");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SOCKEXIT_") {
            c.env_remove(k);
        }
    }
    c.args(args);
    Proc::start(c).wait()
}

pub(crate) fn first(f: &Finished) -> &str {
    f.stdout
        .first()
        .map(String::as_str)
        .unwrap_or("<no output>")
}

/// How a program ended, for failure messages.
pub(crate) fn how(f: &Finished) -> String {
    match f.status.signal() {
        Some(s) => format!("killed by signal {s}"),
        None => format!("exit {}", f.status.code().unwrap_or(-1)),
    }
}

pub(crate) fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(6)..].join("\n    ")
}

/// Whether stderr holds an audit line `verdict: deny` for `call` by `rule`.
pub(crate) fn audit_denied(stderr: &str, call: &str, rule: &str) -> bool {
    stderr.lines().any(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|v| v["verdict"] == "deny" && v["call"] == call && v["rule"] == rule)
    })
}

/// A listener of this (unpreloaded) process that records what reaches it.
pub(crate) struct Watch {
    pub(crate) l: TcpListener,
    pub(crate) addr: SocketAddr,
}

impl Watch {
    pub(crate) fn on(ip: IpAddr) -> Watch {
        let l = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("listen on {ip}: {e}"));
        l.set_nonblocking(true).expect("nonblocking listener");
        let addr = l.local_addr().expect("local_addr");
        Watch { l, addr }
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A connection that reached the listener within `wait`, with the bytes it
    /// carried (read until EOF or 1 s of silence).
    pub(crate) fn arrived(&self, wait: Duration) -> Option<(SocketAddr, Vec<u8>)> {
        let deadline = Instant::now() + wait;
        loop {
            match self.l.accept() {
                Ok((mut s, peer)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                    let mut bytes = Vec::new();
                    let mut buf = [0u8; 512];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => bytes.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                            Err(_) => break,
                        }
                    }
                    return Some((peer, bytes));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept on {}: {e}", self.addr),
            }
        }
    }
}

/// A refused connect-like call: the program printed `error EACCES 13`, nothing reached
/// the listener, and an audit line names `rule`.
pub(crate) fn check_refused(
    label: &str,
    f: &Finished,
    watch: &Watch,
    rule: &str,
    bad: &mut Vec<String>,
) {
    let mut why = Vec::new();
    if first(f) != EACCES {
        why.push(format!(
            "program printed {:?} ({}), want {EACCES:?}",
            first(f),
            how(f)
        ));
    }
    if let Some((peer, bytes)) = watch.arrived(SETTLE) {
        why.push(format!(
            "the listener {} got a connection from {peer} carrying {:?}",
            watch.addr,
            bytes.escape_ascii().to_string()
        ));
    }
    if !audit_denied(&f.stderr, "connect", rule) {
        why.push(format!(
            "no audit line with call=connect verdict=deny rule={rule}"
        ));
    }
    if !why.is_empty() {
        bad.push(format!(
            "{label}: {}\n    stderr: {}",
            why.join("; "),
            tail(&f.stderr)
        ));
    }
}

pub(crate) fn report(bad: &[String], total: usize, what: &str) {
    assert!(
        bad.is_empty(),
        "{} of {total} {what} went wrong:\n  {}",
        bad.len(),
        bad.join("\n  ")
    );
}

/// Prints a loud SKIPPED line; under CI a missing prerequisite is a failure.
pub(crate) fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set and a prerequisite is missing: {why}");
    }
    eprintln!("SKIPPED: {why}");
}
