//! What the stall tests share: the policy, starting a sample server, bursts of allowed
//! and refused peers and what each must get.

pub(crate) use crate::common::daemon::{self, account, free_port, python3, require, Proc};
pub(crate) use crate::common::peer::{
    assert_refused, assert_served, talk, talk_for, Reply, DOT2, IO, LO,
};
pub(crate) use crate::common::{example_path, preloaded, TempDir};
pub(crate) use std::io::Write;
pub(crate) use std::net::SocketAddrV4;
pub(crate) use std::os::unix::process::CommandExt;
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::{Command, Stdio};
pub(crate) use std::sync::Barrier;
pub(crate) use std::time::{Duration, Instant};

/// How long a program may take to start or to print an expected line.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);
/// How long an allowed peer may wait for its answer from a server that must not be
/// stalled (seconds on an idle loopback are milliseconds; the machine is shared).
pub(crate) const PROMPT: Duration = Duration::from_secs(3);

/// listen allowed, 127.0.0.2 refused, the rest of loopback allowed.
pub(crate) const RULES: &str = r#"rules:
  - {name: lo-listen, action: allow, calls: [listen]}
  - {name: refuse-dot2, action: deny, calls: [accept], remote: [127.0.0.2/32]}
  - {name: allow-lo, action: allow, calls: [accept], remote: [127.0.0.0/8, "::1/128"]}
"#;

/// The loopback policy, with `blocking_accept: MODE` when `mode` is given.
pub(crate) fn policy(dir: &TempDir, mode: Option<&str>) -> PathBuf {
    let key = mode
        .map(|m| format!("blocking_accept: {m}\n"))
        .unwrap_or_default();
    dir.write(
        "policy.yaml",
        &format!("version: 1\ndefault: deny\n{key}{RULES}"),
    )
}

/// Starts `cmd` and returns it with the address of its `listening ADDR` line.
pub(crate) fn start(cmd: Command, dir: &TempDir, stdin: Stdio) -> (Proc, SocketAddrV4) {
    let mut p = Proc::start(cmd, dir.path(), stdin);
    let l = p.line(PATIENCE);
    match l.strip_prefix("listening ").and_then(|a| a.parse().ok()) {
        Some(a) => (p, a),
        None => p.die(&format!(
            "expected `listening ADDR`, got {l:?}{}",
            if l.starts_with("error EACCES") {
                " (listen refused: the library failed closed — does it know the policy key \
                 `blocking_accept`?)"
            } else {
                ""
            }
        )),
    }
}

/// A sample program under the preload.
pub(crate) fn sample(name: &str, policy: &Path, args: &[&str]) -> Command {
    let mut c = preloaded(example_path(name), policy);
    c.args(args);
    c
}

/// A script from `tests/stall/` under the preloaded Python, or `None` (skipped).
pub(crate) fn python_script(script: &str, policy: &Path, args: &[&str]) -> Option<Command> {
    let py = python3()?;
    let mut c = preloaded(py, policy);
    c.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/stall")
            .join(script),
    )
    .args(args);
    Some(c)
}

/// Lines starting with `prefix`, without it.
pub(crate) fn lines_with<'a>(lines: &'a [String], prefix: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(prefix))
        .collect()
}

/// A refused peer: 0 bytes, then EOF or reset.
pub(crate) fn refused(addr: SocketAddrV4, what: &str) {
    assert_refused(&talk(DOT2, addr), what);
}

/// Runs `n` peers at once (released together), peer `i` refused when `refused(i)`;
/// returns `(refused?, reply)` per peer.
pub(crate) fn burst(
    addr: SocketAddrV4,
    n: usize,
    refused: fn(usize) -> bool,
) -> Vec<(bool, Reply)> {
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let r = refused(i);
                    (r, talk(if r { DOT2 } else { LO }, addr))
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("peer thread"))
            .collect()
    })
}

/// Every refused peer of a burst got 0 bytes and an end, every allowed one `greeting`.
pub(crate) fn assert_burst(results: &[(bool, Reply)], greeting: &[u8]) {
    let bad: Vec<String> = results
        .iter()
        .enumerate()
        .filter(|(_, (r, rep))| {
            if *r {
                !rep.refused()
            } else {
                !rep.served(greeting)
            }
        })
        .map(|(i, (r, rep))| {
            format!(
                "peer {i} ({}): {rep}",
                if *r { "refused" } else { "allowed" }
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} peers of the burst got the wrong answer:\n{}",
        bad.len(),
        results.len(),
        bad.join("\n")
    );
}
