//! A refused peer must never harm the service (issue 13, items 6, 7 and 8).
//!
//! After the policy refused a connection (reset, 0 bytes sent) the hooked
//! `accept`/`accept4` takes the next connection only if one is already pending. With
//! nothing pending, a **blocking** listener gets -1/`ECONNABORTED` at once (policy
//! `blocking_accept: return`, the default), or, with `blocking_accept: wait`, a wait
//! for the next connection that never outlasts the socket's `SO_RCVTIMEO` counted from
//! the start of the call (then -1/`EAGAIN`); a **non-blocking** listener gets
//! -1/`EAGAIN` exactly when the real accept would. A refused connection is reset at
//! once even if another thread forks at that moment.
//!
//! Sample servers (`examples/select_server`, `accept_loop_server`,
//! `fork_thread_server`, `epoll_server`; Python scripts in `tests/stall/`) and real
//! daemons (xinetd, PostgreSQL) run as child processes under the preload; peers are
//! made by this process from 127.0.0.1 (allowed) and 127.0.0.2 (refused). Every wait
//! is bounded, so a server frozen by a refused peer fails a test instead of hanging
//! it. A missing xinetd, PostgreSQL or Python is a loud `SKIPPED` locally and a
//! failure when `CI` is set.

mod common;

use common::daemon::{self, account, free_port, python3, require, Proc};
use common::peer::{assert_refused, assert_served, talk, talk_for, Reply, DOT2, IO, LO};
use common::{example_path, preloaded, TempDir};
use std::io::Write;
use std::net::SocketAddrV4;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// How long a program may take to start or to print an expected line.
const PATIENCE: Duration = Duration::from_secs(20);
/// How long an allowed peer may wait for its answer from a server that must not be
/// stalled (seconds on an idle loopback are milliseconds; the machine is shared).
const PROMPT: Duration = Duration::from_secs(3);

/// listen allowed, 127.0.0.2 refused, the rest of loopback allowed.
const RULES: &str = r#"rules:
  - {name: lo-listen, action: allow, calls: [listen]}
  - {name: refuse-dot2, action: deny, calls: [accept], remote: [127.0.0.2/32]}
  - {name: allow-lo, action: allow, calls: [accept], remote: [127.0.0.0/8, "::1/128"]}
"#;

/// The loopback policy, with `blocking_accept: MODE` when `mode` is given.
fn policy(dir: &TempDir, mode: Option<&str>) -> PathBuf {
    let key = mode
        .map(|m| format!("blocking_accept: {m}\n"))
        .unwrap_or_default();
    dir.write(
        "policy.yaml",
        &format!("version: 1\ndefault: deny\n{key}{RULES}"),
    )
}

/// Starts `cmd` and returns it with the address of its `listening ADDR` line.
fn start(cmd: Command, dir: &TempDir, stdin: Stdio) -> (Proc, SocketAddrV4) {
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
fn sample(name: &str, policy: &Path, args: &[&str]) -> Command {
    let mut c = preloaded(example_path(name), policy);
    c.args(args);
    c
}

/// A script from `tests/stall/` under the preloaded Python, or `None` (skipped).
fn python_script(script: &str, policy: &Path, args: &[&str]) -> Option<Command> {
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
fn lines_with<'a>(lines: &'a [String], prefix: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(prefix))
        .collect()
}

/// A refused peer: 0 bytes, then EOF or reset.
fn refused(addr: SocketAddrV4, what: &str) {
    assert_refused(&talk(DOT2, addr), what);
}

/// Runs `n` peers at once (released together), peer `i` refused when `refused(i)`;
/// returns `(refused?, reply)` per peer.
fn burst(addr: SocketAddrV4, n: usize, refused: fn(usize) -> bool) -> Vec<(bool, Reply)> {
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
fn assert_burst(results: &[(bool, Reply)], greeting: &[u8]) {
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

// ---------------------------------------------------------------------------------
// 1. select() + blocking listeners
// ---------------------------------------------------------------------------------

#[test]
fn select_server_serves_socket_b_after_refused_peers_on_socket_a() {
    let dir = TempDir::new("stall-select");
    let policy = policy(&dir, None);
    let mut p = Proc::start(
        sample("select_server", &policy, &[]),
        dir.path(),
        Stdio::null(),
    );
    let addr = |p: &mut Proc, name: &str| -> SocketAddrV4 {
        let a = p.expect(&format!("listening {name} "), PATIENCE);
        a.parse()
            .unwrap_or_else(|_| p.die(&format!("bad address {a:?}")))
    };
    let a = addr(&mut p, "A");
    let b = addr(&mut p, "B");

    assert_served(
        &talk(LO, a),
        b"220 sockexit select A\r\n",
        "allowed peer on A",
    );
    for i in 0..3 {
        refused(a, &format!("refused peer #{i} on A"));
        std::thread::sleep(Duration::from_millis(100));
    }
    // The refused peers left A readable-then-empty: select() must come back to B.
    let r = talk_for(LO, b, b"", None, PROMPT);
    if !r.served(b"220 sockexit select B\r\n") {
        p.die(&format!(
            "allowed peer on B after refused peers on A: expected the B greeting within \
             {PROMPT:?}, got {r} (the server is frozen in accept() on A)"
        ));
    }
    assert_served(
        &talk(LO, a),
        b"220 sockexit select A\r\n",
        "allowed peer on A, after",
    );

    p.kill();
    let lines = p.rest(IO);
    assert!(
        lines_with(&lines, "accepted ")
            .iter()
            .all(|l| !l.contains("127.0.0.2")),
        "the server saw a refused peer: {lines:?}"
    );
    assert_eq!(
        lines_with(&lines, "aborted A ").len(),
        3,
        "each refused peer on A, with nothing else pending, must end its accept() with \
         one ECONNABORTED: {lines:?}"
    );
}

// ---------------------------------------------------------------------------------
// 2. Python socketserver
// ---------------------------------------------------------------------------------

#[test]
fn python_socketserver_shutdown_returns_after_a_refused_peer() {
    let dir = TempDir::new("stall-socketserver");
    let policy = policy(&dir, None);
    let Some(cmd) = python_script("socketserver_shutdown.py", &policy, &["5"]) else {
        return;
    };
    let (mut p, addr) = start(cmd, &dir, Stdio::piped());
    const HI: &[u8] = b"220 sockexit socketserver\r\n";

    assert_served(&talk(LO, addr), HI, "allowed peer");
    refused(addr, "refused peer");
    std::thread::sleep(Duration::from_millis(200));
    let r = talk_for(LO, addr, b"", None, PROMPT);
    assert!(
        r.served(HI),
        "allowed peer after a refused one: {r}\n{}",
        p.output()
    );
    refused(addr, "second refused peer");
    std::thread::sleep(Duration::from_millis(300));

    let _ = writeln!(p.stdin(), "shutdown");
    let l = p.line(PATIENCE);
    if !l.starts_with("shutdown returned") {
        p.die(&format!(
            "after a refused peer, TCPServer.shutdown() must return: got {l:?} \
             (serve_forever() is stuck in accept())"
        ));
    }
    assert!(
        p.exited_within(PATIENCE).is_some_and(|s| s.success()),
        "{}",
        p.output()
    );
}

// ---------------------------------------------------------------------------------
// 3. Plain blocking accept loops
// ---------------------------------------------------------------------------------

#[test]
fn blocking_accept_loop_gets_econnaborted_per_refusal_and_serves_allowed_peers() {
    let dir = TempDir::new("stall-loop");
    let policy = policy(&dir, None);
    let (mut p, addr) = start(
        sample("accept_loop_server", &policy, &[]),
        &dir,
        Stdio::piped(),
    );
    const HI: &[u8] = b"220 sockexit loop\r\n";

    let mut lone = 0;
    for round in 0..2 {
        for i in 0..2 {
            refused(addr, &format!("round {round}: refused peer #{i}"));
            lone += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        for i in 0..2 {
            assert_served(
                &talk(LO, addr),
                HI,
                &format!("round {round}: allowed peer #{i}"),
            );
        }
    }
    let _ = writeln!(p.stdin(), "stop");
    let lines = p.rest(PATIENCE);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("joined 1"),
        "the accept loop did not stop: {lines:?}\n{}",
        p.output()
    );
    let accepted = lines_with(&lines, "accepted 0 ");
    assert_eq!(accepted.len(), 4, "{lines:?}");
    assert!(
        accepted.iter().all(|l| l.starts_with("127.0.0.1:")),
        "{lines:?}"
    );
    assert_eq!(
        lines_with(&lines, "aborted 0 ECONNABORTED").len(),
        lone,
        "a refusal with nothing else pending must end the blocking accept() with \
         ECONNABORTED (one per lone refused peer): {lines:?}"
    );
}

#[test]
fn python_naive_accept_loop_keeps_serving_under_blocking_accept_wait() {
    let dir = TempDir::new("stall-naive-wait");
    let policy = policy(&dir, Some("wait"));
    let Some(cmd) = python_script("naive_accept.py", &policy, &[]) else {
        return;
    };
    let (mut p, addr) = start(cmd, &dir, Stdio::null());
    const HI: &[u8] = b"220 sockexit naive\r\n";
    for i in 0..3 {
        refused(addr, &format!("refused peer #{i}"));
        std::thread::sleep(Duration::from_millis(100));
        let r = talk(LO, addr);
        assert!(
            r.served(HI),
            "allowed peer #{i} after a refused one: {r}\n{}",
            p.output()
        );
    }
    p.assert_alive();
}

/// The documented trade-off of the default: a loop that retries nothing ends.
#[test]
fn python_naive_accept_loop_sees_connection_aborted_under_the_default() {
    let dir = TempDir::new("stall-naive-default");
    let policy = policy(&dir, None);
    let Some(cmd) = python_script("naive_accept.py", &policy, &[]) else {
        return;
    };
    let (mut p, addr) = start(cmd, &dir, Stdio::null());
    assert_served(&talk(LO, addr), b"220 sockexit naive\r\n", "allowed peer");
    refused(addr, "refused peer");
    let Some(status) = p.exited_within(Duration::from_secs(5)) else {
        p.die(
            "under `blocking_accept: return` (the default) a refused peer with nothing else \
             pending must end the naive loop's accept() with ConnectionAbortedError, but the \
             script is still in accept()",
        )
    };
    let err = p.output();
    assert!(
        !status.success() && err.contains("ConnectionAbortedError"),
        "expected an exit by ConnectionAbortedError, got {status:?}\n{err}"
    );
}

// ---------------------------------------------------------------------------------
// 4. SO_RCVTIMEO keeps its meaning
// ---------------------------------------------------------------------------------

/// One accept call with SO_RCVTIMEO 1 s while refused peers arrive every 0.4 s for
/// 3.2 s: the server's `result` line (after its words) and the peers' replies.
fn rcvtimeo_case(mode: Option<&str>) -> (String, u128, Vec<Reply>) {
    let dir = TempDir::new("stall-rcvtimeo");
    let policy = policy(&dir, mode);
    let cmd = sample(
        "accept_loop_server",
        &policy,
        &["--rcvtimeo", "1000", "--once"],
    );
    let (mut p, addr) = start(cmd, &dir, Stdio::null());
    p.expect("accepting", PATIENCE);
    let peers = std::thread::spawn(move || {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                std::thread::sleep(if i == 0 {
                    Duration::from_millis(100)
                } else {
                    Duration::from_millis(400)
                });
                std::thread::spawn(move || talk(DOT2, addr))
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("peer"))
            .collect::<Vec<_>>()
    });
    let l = p.expect("result ", Duration::from_secs(15));
    let replies = peers.join().expect("peers");
    let (what, ms) = l
        .rsplit_once(" ms=")
        .unwrap_or_else(|| p.die(&format!("bad line {l:?}")));
    let ms: u128 = ms
        .parse()
        .unwrap_or_else(|_| p.die(&format!("bad line {l:?}")));
    for (i, r) in replies.iter().enumerate() {
        // Peers after the server's exit are refused by the kernel: also 0 bytes.
        let ok = r.refused()
            || r.end == common::peer::End::Failed(std::io::ErrorKind::ConnectionRefused);
        assert!(ok, "refused peer #{i}: {r}");
    }
    (what.to_string(), ms, replies)
}

#[test]
fn rcvtimeo_is_not_stretched_by_refused_peers_under_blocking_accept_wait() {
    let (what, ms, _) = rcvtimeo_case(Some("wait"));
    assert!(
        what == "error EAGAIN" && (900..2500).contains(&ms),
        "blocking_accept: wait, SO_RCVTIMEO 1 s, refused peers every 0.4 s: accept must \
         return -1/EAGAIN about 1 s after the call began (900-2500 ms); got {what} after \
         {ms} ms"
    );
}

#[test]
fn rcvtimeo_listener_gets_econnaborted_at_the_first_refusal_by_default() {
    for mode in [None, Some("return")] {
        let (what, ms, _) = rcvtimeo_case(mode);
        assert!(
            what == "error ECONNABORTED" && ms < 900,
            "blocking_accept: {}, SO_RCVTIMEO 1 s, first refused peer after 0.1 s: accept \
             must return -1/ECONNABORTED at that refusal (< 900 ms), not wait for the \
             timeout; got {what} after {ms} ms",
            mode.unwrap_or("(default)")
        );
    }
}

// ---------------------------------------------------------------------------------
// 5. Edge-triggered epoll, non-blocking listener
// ---------------------------------------------------------------------------------

fn epoll_burst(mode: Option<&str>) {
    let dir = TempDir::new("stall-epoll");
    let policy = policy(&dir, mode);
    let (mut p, addr) = start(sample("epoll_server", &policy, &[]), &dir, Stdio::null());
    const HI: &[u8] = b"220 sockexit epoll\r\n";
    let mut allowed = 0;
    for round in 0..3 {
        // Two of every three peers refused, all arriving at once.
        let results = burst(addr, 60, |i| i % 3 != 0);
        assert_burst(&results, HI);
        allowed += results.iter().filter(|(r, _)| !r).count();
        // Refused peers alone: the edge they raise must not leave the loop stuck.
        let results = burst(addr, 10, |_| true);
        assert_burst(&results, HI);
        let r = talk_for(LO, addr, b"", None, PROMPT);
        assert!(
            r.served(HI),
            "round {round}: allowed peer after the burst: {r}\n{}",
            p.output()
        );
        allowed += 1;
    }
    p.signal(libc::SIGTERM);
    let lines = p.rest(PATIENCE);
    assert_eq!(lines, vec![format!("served {allowed}")], "{}", p.output());
}

#[test]
fn epoll_edge_triggered_burst_of_refused_and_allowed_peers() {
    epoll_burst(None);
}

#[test]
fn epoll_edge_triggered_burst_under_blocking_accept_wait() {
    // The setting is about blocking listeners: a non-blocking one is unchanged.
    epoll_burst(Some("wait"));
}

// ---------------------------------------------------------------------------------
// 6. Several threads accepting on one blocking socket
// ---------------------------------------------------------------------------------

#[test]
fn threads_accepting_on_one_blocking_socket_none_stuck() {
    let dir = TempDir::new("stall-threads");
    let policy = policy(&dir, None);
    let cmd = sample("accept_loop_server", &policy, &["--threads", "4"]);
    let (mut p, addr) = start(cmd, &dir, Stdio::piped());
    const HI: &[u8] = b"220 sockexit loop\r\n";

    for i in 0..4 {
        refused(addr, &format!("lone refused peer #{i}"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let results = burst(addr, 40, |i| i % 2 == 1);
    assert_burst(&results, HI);
    let r = talk_for(LO, addr, b"", None, PROMPT);
    assert!(
        r.served(HI),
        "allowed peer after the burst: {r}\n{}",
        p.output()
    );

    let _ = writeln!(p.stdin(), "stop");
    let lines = p.rest(PATIENCE);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("joined 4"),
        "not every accepting thread ended: {lines:?}\n{}",
        p.output()
    );
    assert_eq!(lines_with(&lines, "done ").len(), 4, "{lines:?}");
    let accepted: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("accepted "))
        .filter_map(|l| l.split_once(' ').map(|(_, peer)| peer))
        .collect();
    assert_eq!(accepted.len(), 21, "{lines:?}");
    assert!(
        accepted.iter().all(|a| a.starts_with("127.0.0.1:")),
        "{lines:?}"
    );
    let aborted = lines
        .iter()
        .filter(|l| l.starts_with("aborted ") && l.ends_with(" ECONNABORTED"))
        .count();
    assert!(
        aborted >= 4,
        "each lone refused peer must end one thread's accept() with ECONNABORTED; got \
         {aborted}: {lines:?}"
    );
}

// ---------------------------------------------------------------------------------
// 7. A thread forks while refused peers arrive
// ---------------------------------------------------------------------------------

/// fork_thread_server with `children`: refused peers, 6 at a time for 3 s (hundreds),
/// each must see the end (0 bytes) within 1 s although children live 1.5 s.
fn fork_case(children: &str) {
    let dir = TempDir::new("stall-fork");
    let policy = policy(&dir, None);
    let cmd = sample("fork_thread_server", &policy, &["--children", children]);
    let (mut p, addr) = start(cmd, &dir, Stdio::null());
    p.expect("forking", PATIENCE);
    let until = Instant::now() + Duration::from_secs(3);
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(move || {
                    let mut v = Vec::new();
                    while Instant::now() < until {
                        v.push(talk(DOT2, addr));
                    }
                    v
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("peer thread"))
            .collect()
    });
    let late: Vec<String> = replies
        .iter()
        .filter(|r| !r.refused() || r.took >= Duration::from_secs(1))
        .map(|r| r.to_string())
        .collect();
    assert!(
        late.is_empty(),
        "children {children}: {} of {} refused peers were not cut off within 1 s (a forked \
         child held the refused connection), e.g.:\n{}",
        late.len(),
        replies.len(),
        late[..late.len().min(5)].join("\n")
    );
    let r = talk(LO, addr);
    assert!(
        r.served(b"220 sockexit forker\r\n"),
        "allowed peer: {r}\n{}",
        p.output()
    );
    p.assert_alive();
}

#[test]
fn refused_peers_are_cut_off_at_once_while_a_thread_forks_sleeping_children() {
    fork_case("sleep");
}

#[test]
fn refused_peers_are_cut_off_at_once_while_a_thread_forks_and_execs() {
    fork_case("exec");
}

// ---------------------------------------------------------------------------------
// 8. Real xinetd: a refused peer on one service must not stall another
// ---------------------------------------------------------------------------------

#[test]
fn xinetd_refused_peer_on_one_service_does_not_stall_the_other() {
    let Some(xinetd) = require("xinetd") else {
        return;
    };
    let dir = TempDir::new("stall-xinetd");
    let policy = policy(&dir, None);
    let log = dir.path().join("xinetd.log");
    // SAFETY: geteuid(2) cannot fail.
    let user = match unsafe { libc::geteuid() } {
        0 => "root".to_string(),
        uid => std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
                })
            })
            .expect("own account in /etc/passwd"),
    };
    let ports = [free_port(), free_port()];
    let mut conf = format!(
        "defaults\n{{\n    log_type = FILE {}\n    log_on_success =\n    log_on_failure =\n}}\n",
        log.display()
    );
    for (name, port) in ["one", "two"].iter().zip(ports) {
        conf += &format!(
            "service sockexit-{name}\n{{\n    type = UNLISTED\n    id = sockexit-{name}\n    \
             socket_type = stream\n    protocol = tcp\n    wait = no\n    user = {user}\n    \
             server = /bin/echo\n    server_args = sockexit {name}\n    port = {port}\n    \
             bind = 127.0.0.1\n    flags = REUSE NOLIBWRAP\n}}\n"
        );
    }
    let conf = dir.write("xinetd.conf", &conf);
    let mut cmd = preloaded(&xinetd, &policy);
    cmd.arg("-f")
        .arg(&conf)
        .arg("-dontfork")
        .arg("-pidfile")
        .arg(dir.path().join("xinetd.pid"));
    let mut x = Proc::start(cmd, dir.path(), Stdio::null()).with_log(log);
    for p in ports {
        x.wait_listening(p, PATIENCE);
    }
    let one = SocketAddrV4::new(LO, ports[0]);
    let two = SocketAddrV4::new(LO, ports[1]);

    assert_served(
        &talk(LO, one),
        b"sockexit one\n",
        "allowed client of service one",
    );
    assert_served(
        &talk(LO, two),
        b"sockexit two\n",
        "allowed client of service two",
    );
    for (svc, refused_at, other, answer) in [
        ("one", one, two, &b"sockexit two\n"[..]),
        ("two", two, one, &b"sockexit one\n"[..]),
    ] {
        let r = talk(DOT2, refused_at);
        if !r.refused() {
            x.die(&format!(
                "refused peer of service {svc}: expected 0 bytes then EOF/reset, got {r}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
        let r = talk_for(LO, other, b"", None, PROMPT);
        if !r.served(answer) {
            x.die(&format!(
                "after one refused peer of service {svc}, an allowed client of the other \
                 service must get {:?} within {PROMPT:?}: got {r} (xinetd is stuck in \
                 accept() on service {svc})",
                answer.escape_ascii().to_string()
            ));
        }
    }
    assert_served(&talk(LO, one), b"sockexit one\n", "service one at the end");
    assert_served(&talk(LO, two), b"sockexit two\n", "service two at the end");
    x.assert_alive();
    x.signal(libc::SIGTERM);
    if x.exited_within(Duration::from_secs(10)).is_none() {
        x.die("did not stop within 10 s of SIGTERM");
    }
}

// ---------------------------------------------------------------------------------
// 9. Real PostgreSQL: Unix-socket clients and fast shutdown after refused TCP peers
// ---------------------------------------------------------------------------------

/// An SSLRequest: length 8, code 80877103. The postmaster itself answers it with one
/// byte, `S` or `N`, before any authentication.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The newest `/usr/lib/postgresql/*/bin` with `initdb` and `postgres`.
fn pg_bindir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file()).then_some((v, bin))
        })
        .collect();
    dirs.sort();
    match dirs.pop() {
        Some((_, bin)) => Some(bin),
        None => daemon::missing("postgresql (/usr/lib/postgresql/*/bin/postgres)"),
    }
}

/// The SSLRequest over a Unix socket, bounded: the one-byte answer.
fn pg_unix_ssl_request(path: &Path) -> Result<u8, String> {
    use std::io::Read;
    let mut s =
        std::os::unix::net::UnixStream::connect(path).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(PROMPT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(PROMPT))
        .map_err(|e| e.to_string())?;
    s.write_all(&SSL_REQUEST)
        .map_err(|e| format!("write: {e}"))?;
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(1) => Ok(b[0]),
        Ok(_) => Err("EOF".into()),
        Err(e) => Err(format!("no answer within {PROMPT:?}: {e}")),
    }
}

#[test]
fn postgresql_serves_unix_socket_and_stops_on_sigint_after_refused_tcp_peers() {
    let Some(bin) = pg_bindir() else {
        return;
    };
    // postgres refuses to run as root: as root, initdb and run it as `postgres`.
    // SAFETY: geteuid(2) cannot fail.
    let ids = if unsafe { libc::geteuid() } == 0 {
        match account("postgres") {
            Some(ids) => Some(ids),
            None => {
                daemon::missing::<()>("the postgres account (package postgresql)");
                return;
            }
        }
    } else {
        None
    };
    let as_pg = |mut c: Command| {
        if let Some((uid, gid)) = ids {
            c.uid(uid).gid(gid);
        }
        c
    };
    let dir = TempDir::new("stall-pg");
    let policy = policy(&dir, None);
    let data = dir.path().join("data");
    let sock = dir.path().join("sock");
    for d in [&data, &sock] {
        std::fs::create_dir(d).expect("mkdir");
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(d, Some(uid), Some(gid)).expect("chown");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let mut initdb = as_pg(Command::new(bin.join("initdb")));
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null());
    let out = initdb.output().expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let port = free_port();
    let mut cmd = as_pg(preloaded(bin.join("postgres"), &policy));
    cmd.arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", sock.display()))
        .args([
            "-c",
            "fsync=off",
            "-c",
            "logging_collector=off",
            "-c",
            "max_connections=10",
        ])
        .current_dir(dir.path());
    let mut pg = Proc::start(cmd, dir.path(), Stdio::null());
    pg.wait_listening(port, Duration::from_secs(60));
    let unix = sock.join(format!(".s.PGSQL.{port}"));
    let deadline = Instant::now() + PATIENCE;
    while !unix.exists() {
        pg.assert_alive();
        if Instant::now() > deadline {
            pg.die(&format!("no Unix socket {}", unix.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let tcp = SocketAddrV4::new(LO, port);
    let answered = |r: &Reply| r.bytes.len() == 1 && matches!(r.bytes[0], b'N' | b'S');

    let r = talk_for(LO, tcp, &SSL_REQUEST, Some(1), IO);
    assert!(
        answered(&r),
        "allowed TCP client's SSLRequest: {r}\n{}",
        pg.output()
    );
    match pg_unix_ssl_request(&unix) {
        Ok(b'N') => {}
        other => pg.die(&format!(
            "Unix-socket SSLRequest before any refusal: {other:?}"
        )),
    }
    for i in 0..3 {
        let r = talk_for(DOT2, tcp, &SSL_REQUEST, None, IO);
        if !r.refused() {
            pg.die(&format!(
                "refused TCP peer #{i}: expected 0 bytes then EOF/reset, got {r}"
            ));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    match pg_unix_ssl_request(&unix) {
        Ok(b'N') => {}
        other => pg.die(&format!(
            "after refused TCP peers, a Unix-socket client's SSLRequest must be answered \
             `N` within {PROMPT:?}: got {other:?} (the postmaster is stuck in accept() on \
             its TCP socket)"
        )),
    }
    let isready = bin.join("pg_isready");
    if isready.is_file() {
        let out = Command::new(&isready)
            .arg("-h")
            .arg(&sock)
            .args(["-p", &port.to_string(), "-t", "5"])
            .stdin(Stdio::null())
            .output()
            .expect("run pg_isready");
        if !out.status.success() {
            pg.die(&format!(
                "pg_isready over the Unix socket after refused TCP peers: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    let r = talk_for(LO, tcp, &SSL_REQUEST, Some(1), PROMPT);
    assert!(
        answered(&r),
        "allowed TCP client after the refusals: {r}\n{}",
        pg.output()
    );

    // A refused peer last, then a fast shutdown: the postmaster must act on it.
    let r = talk_for(DOT2, tcp, &SSL_REQUEST, None, IO);
    assert!(r.refused(), "last refused TCP peer: {r}");
    std::thread::sleep(Duration::from_millis(300));
    pg.signal(libc::SIGINT);
    if pg.exited_within(Duration::from_secs(15)).is_none() {
        pg.die("SIGINT (fast shutdown) after a refused TCP peer: the postmaster did not stop within 15 s");
    }
}
