//! Integration tests of `libsockexit.so`: the sample programs in `examples/` run as child
//! processes under the preload with a policy written into a temp dir, and the tests
//! check what a user would check — the bytes a peer receives, the errno a program
//! reports, what the server saw, its exit status and its stderr.
//!
//! Peers are made by this (unpreloaded) test process, bound to a chosen source address:
//! 127.0.0.1 and ::1 are the allowed peers, 127.0.0.2 the refused one. Every wait is
//! bounded, so a broken library fails a test instead of hanging it.

#[path = "../examples/common/mod.rs"]
mod sample;
use sample::raw_addr;
mod common;

use common::proc::{run, sample, server, Finished, Proc};
use common::tcp_peer::{assert_refused, assert_served, talk, via, End, Reply};
use common::{TempDir, IO};
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const DOT2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const V6LO: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

const BANNER: &[u8] = b"220 sockexit banner\r\n";
const THREADED: &[u8] = b"220 sockexit threaded\r\n";
const EPOLL: &[u8] = b"220 sockexit epoll\r\n";
const DUALSTACK: &[u8] = b"220 sockexit dualstack\r\n";
const FORK: &[u8] = b"220 sockexit fork child listen=ok\r\n";

/// The policy of the task description: listen allowed, 127.0.0.2 refused, the rest
/// of loopback (v4 and v6) allowed, everything else denied.
const LO_POLICY: &str = r#"version: 1
default: deny
rules:
  - {name: lo-listen, action: allow, calls: [listen]}
  - {name: refuse-dot2, action: deny, calls: [accept], remote: [127.0.0.2/32]}
  - {name: allow-lo, action: allow, calls: [accept], remote: [127.0.0.0/8, "::1/128"]}
"#;

// ---------------------------------------------------------------------------------
// Child processes (helpers in tests/common/proc.rs)
// ---------------------------------------------------------------------------------

/// Lets the child inherit `fd` as its fd 3 (inetd/systemd style).
fn pass_as_fd3(cmd: &mut Command, fd: RawFd) {
    // SAFETY: runs between fork and exec; dup2 and fcntl are async-signal-safe, touch
    // only the fd table, and last_os_error does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A local port nothing listens on, held for as long as the returned fd lives (bound
/// but not listening, so nobody else can take it meanwhile).
fn closed_port() -> (std::os::fd::OwnedFd, SocketAddr) {
    // SAFETY: raw calls on a socket created and owned here; sa/len are live locals.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let (sa, len) = raw_addr(&SocketAddr::new(LO, 0));
        assert_eq!(
            libc::bind(fd, (&sa as *const libc::sockaddr_storage).cast(), len),
            0,
            "bind"
        );
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let mut sl = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        assert_eq!(
            libc::getsockname(fd, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut sl),
            0
        );
        let sin = &*(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
        (owned, SocketAddr::new(LO, u16::from_be(sin.sin_port)))
    }
}

fn write_policy(dir: &TempDir, text: &str) -> PathBuf {
    dir.write("policy.yaml", text)
}

/// Stdout lines starting with `accepted ` (or `forked `), without the prefix.
fn seen(lines: &[String], prefix: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(prefix).map(str::to_owned))
        .collect()
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[test]
fn banner_server_serves_allowed_peer_and_resets_refused_one_unseen() {
    let dir = TempDir::new("banner");
    let policy = write_policy(&dir, LO_POLICY);
    let (mut srv, addr) = server("banner_server", &policy, &["127.0.0.1:0", "--max", "2"]);

    let a1 = talk(LO, addr, None);
    assert_served(&a1, BANNER, "allowed peer 127.0.0.1");
    for i in 0..2 {
        assert_refused(
            &talk(DOT2, addr, None),
            &format!("refused peer 127.0.0.2 #{i}"),
        );
    }
    let a2 = talk(LO, addr, None);
    assert_served(&a2, BANNER, "allowed peer 127.0.0.1 after refusals");

    // The server saw exactly the two allowed peers, never the refused ones.
    let f = srv.wait();
    assert!(f.status.success(), "banner_server: {f:?}");
    let expected: Vec<String> = [&a1, &a2]
        .iter()
        .map(|r| format!("{} len=16 guard=ok", r.local.expect("peer address")))
        .collect();
    assert_eq!(seen(&f.stdout, "accepted "), expected, "{f:?}");
    assert_eq!(f.stdout.last().map(String::as_str), Some("served 2"));
}

#[test]
fn threaded_server_serves_allowed_peer_and_resets_refused_one_unseen() {
    let dir = TempDir::new("threaded");
    let policy = write_policy(&dir, LO_POLICY);
    let mut cmd = sample("threaded_server", &policy, &["127.0.0.1:0", "--max", "2"]);
    // Diagnostics on: a refusal is explained on stderr, naming the rule.
    cmd.env("SOCKEXIT_LOG", "debug");
    let mut srv = Proc::start(cmd);
    let addr = srv.listening();

    let mut expected = Vec::new();
    for i in 0..2 {
        assert_refused(
            &talk(DOT2, addr, None),
            &format!("refused peer 127.0.0.2 #{i}"),
        );
        let r = talk(LO, addr, Some(b"ping\n"));
        let echoed = [THREADED, b"ping\n"].concat();
        assert_served(&r, &echoed, "allowed peer 127.0.0.1");
        expected.push(r.local.expect("peer address").to_string());
    }

    let f = srv.wait();
    assert!(f.status.success(), "threaded_server: {f:?}");
    assert_eq!(seen(&f.stdout, "accepted "), expected, "{f:?}");
    assert!(
        f.stderr.contains("refuse-dot2"),
        "SOCKEXIT_LOG=debug: expected the refusing rule's name on stderr, got:\n{}",
        f.stderr
    );
}

#[test]
fn accept_into_short_zero_and_null_address_buffers() {
    let dir = TempDir::new("addrbuf");
    let policy = write_policy(&dir, LO_POLICY);
    // What banner_server prints about the allowed peer for each buffer it passes:
    // accept copies min(len, real) bytes, reports the real length (16 for IPv4), and
    // writes nothing past the buffer.
    type Expected = fn(SocketAddr) -> String;
    let cases: [(&str, Expected); 3] = [
        ("4", |p| {
            format!("family=2 port={} len=16 guard=ok", p.port())
        }),
        ("0", |_| "family=? port=? len=16 guard=ok".to_string()),
        ("null", |_| "(null)".to_string()),
    ];
    for (buf, line) in cases {
        let (mut srv, addr) = server(
            "banner_server",
            &policy,
            &["127.0.0.1:0", "--max", "1", "--addr-buf", buf],
        );
        // The library must judge the peer from its own full-size buffer, not from the
        // program's truncated one.
        assert_refused(
            &talk(DOT2, addr, None),
            &format!("--addr-buf {buf}: 127.0.0.2"),
        );
        let r = talk(LO, addr, None);
        assert_served(&r, BANNER, &format!("--addr-buf {buf}: 127.0.0.1"));
        let f = srv.wait();
        assert!(f.status.success(), "--addr-buf {buf}: {f:?}");
        assert_eq!(
            seen(&f.stdout, "accepted "),
            vec![line(r.local.expect("peer address"))],
            "--addr-buf {buf}"
        );
    }
}

#[test]
fn dual_stack_server_matches_v4_mapped_peers_against_ipv4_rules() {
    let dir = TempDir::new("dual");
    let policy = write_policy(&dir, LO_POLICY);
    let (mut srv, addr) = server("dualstack_server", &policy, &["[::]:0", "--max", "2"]);

    // 127.0.0.2 arrives as ::ffff:127.0.0.2 and must hit `refuse-dot2: 127.0.0.2/32`.
    assert_refused(&talk(DOT2, via(LO, addr), None), "v4-mapped 127.0.0.2");
    let v4 = talk(LO, via(LO, addr), None);
    assert_served(&v4, DUALSTACK, "v4-mapped 127.0.0.1");
    let v6 = talk(V6LO, via(V6LO, addr), None);
    assert_served(&v6, DUALSTACK, "::1");

    let f = srv.wait();
    assert!(f.status.success(), "dualstack_server: {f:?}");
    let port = |r: &Reply| r.local.expect("peer address").port();
    assert_eq!(
        seen(&f.stdout, "accepted "),
        vec![
            format!("[::ffff:127.0.0.1]:{}", port(&v4)),
            format!("[::1]:{}", port(&v6))
        ]
    );
}

#[test]
fn dual_stack_server_refuses_by_ipv6_rule_and_serves_mapped_ipv4() {
    let dir = TempDir::new("dual6");
    let policy = write_policy(
        &dir,
        r#"version: 1
default: deny
rules:
  - {name: lo-listen, action: allow, calls: [listen]}
  - {name: no-v6-lo, action: deny, calls: [accept], remote: ["::1/128"]}
  - {name: v4-lo, action: allow, calls: [accept], remote: [127.0.0.0/8]}
"#,
    );
    let (mut srv, addr) = server("dualstack_server", &policy, &["[::]:0", "--max", "2"]);

    assert_refused(&talk(V6LO, via(V6LO, addr), None), "::1 under no-v6-lo");
    // Both v4 peers match `v4-lo` although the socket sees them as ::ffff:127.0.0.x.
    let a = talk(LO, via(LO, addr), None);
    assert_served(&a, DUALSTACK, "v4-mapped 127.0.0.1");
    let b = talk(DOT2, via(LO, addr), None);
    assert_served(&b, DUALSTACK, "v4-mapped 127.0.0.2");

    let f = srv.wait();
    assert!(f.status.success(), "dualstack_server: {f:?}");
    assert!(
        !f.stdout.iter().any(|l| l.starts_with("accepted [::1]")),
        "the refused ::1 peer reached the server: {f:?}"
    );
}

#[test]
fn refused_connect_is_eacces_and_nothing_reaches_the_network() {
    let dir = TempDir::new("connect");
    let policy = write_policy(
        &dir,
        r#"version: 1
default: allow
rules:
  - {name: no-dot3, action: deny, calls: [connect], remote: [127.0.0.3/32]}
"#,
    );
    let open = TcpListener::bind((LO, 0)).expect("listener on 127.0.0.1");
    let guarded = TcpListener::bind("127.0.0.3:0").expect("listener on 127.0.0.3");
    open.set_nonblocking(true).unwrap();
    guarded.set_nonblocking(true).unwrap();
    let open_addr = open.local_addr().unwrap().to_string();
    let guarded_addr = guarded.local_addr().unwrap().to_string();

    for mode in [None, Some("--nonblock")] {
        let mut args: Vec<&str> = mode.into_iter().collect();
        args.extend(["--no-read", guarded_addr.as_str()]);
        let (first, f) = run(sample("connect_client", &policy, &args));
        assert_eq!(first, "error EACCES 13", "connect {args:?}: {f:?}");
        assert_eq!(f.status.code(), Some(1), "connect {args:?}: {f:?}");
        // Not even a SYN: the listener has no connection to accept.
        match guarded.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("refused connect {args:?} reached 127.0.0.3: {other:?}"),
        }

        // The same program, same policy, another destination: allowed.
        let mut args: Vec<&str> = mode.into_iter().collect();
        args.extend(["--no-read", open_addr.as_str()]);
        let (first, f) = run(sample("connect_client", &policy, &args));
        assert_eq!(first, "ok", "connect {args:?}: {f:?}");
        assert!(
            open.accept().is_ok(),
            "allowed connect {args:?} never arrived"
        );
    }
}

#[test]
fn allowed_failing_connect_keeps_its_errno() {
    let dir = TempDir::new("econnrefused");
    let policy = write_policy(
        &dir,
        r#"version: 1
default: deny
rules:
  - {name: lo-connect, action: allow, calls: [connect], remote: [127.0.0.0/8]}
"#,
    );
    let (_hold, closed) = closed_port();
    let closed = closed.to_string();
    // Blocking: ECONNREFUSED straight from connect. Non-blocking: connect must still
    // say EINPROGRESS (the program then gets ECONNREFUSED from SO_ERROR).
    for mode in [None, Some("--nonblock")] {
        let mut args: Vec<&str> = mode.into_iter().collect();
        args.push(&closed);
        let (first, f) = run(sample("connect_client", &policy, &args));
        assert_eq!(first, "error ECONNREFUSED 111", "{args:?}: {f:?}");
    }
    // The same policy refuses what it does not allow: the library is in charge.
    let v6 = format!("[::1]:{}", closed.rsplit(':').next().unwrap());
    let (first, f) = run(sample("connect_client", &policy, &[&v6]));
    assert_eq!(first, "error EACCES 13", "{v6}: {f:?}");
}

#[test]
fn refused_listen_is_eacces() {
    let dir = TempDir::new("listen");
    let policy = write_policy(
        &dir,
        r#"version: 1
default: deny
rules:
  - {name: listen-lo1, action: allow, calls: [listen], local: [127.0.0.1/32]}
"#,
    );
    let (first, f) = run(sample("listen_probe", &policy, &["127.0.0.1:0"]));
    assert!(
        first.starts_with("ok 127.0.0.1:"),
        "127.0.0.1: {first} {f:?}"
    );
    let (first, f) = run(sample("listen_probe", &policy, &["127.0.0.4:0"]));
    assert_eq!(first, "error EACCES 13", "127.0.0.4: {f:?}");
    assert_eq!(f.status.code(), Some(1));
    assert!(f.stderr.contains("listen_probe: listen:"), "{f:?}");

    // A real server gets the same answer from TcpListener::bind.
    let (first, f) = run(sample("banner_server", &policy, &["127.0.0.4:0"]));
    assert_eq!(
        first, "error EACCES 13",
        "banner_server on 127.0.0.4: {f:?}"
    );
    assert_eq!(f.status.code(), Some(1));
}

#[test]
fn epoll_burst_of_200_alternating_peers() {
    let dir = TempDir::new("burst");
    let policy = write_policy(&dir, LO_POLICY);
    let (mut srv, addr) = server("epoll_server", &policy, &["127.0.0.1:0"]);

    const THREADS: usize = 8;
    const PER_THREAD: usize = 25;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| {
                        let allowed = (t * PER_THREAD + i).is_multiple_of(2);
                        let src = if allowed { LO } else { DOT2 };
                        (allowed, talk(src, addr, None))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.join().expect("peer thread"));
    }

    let (allowed, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(|(a, _)| *a);
    assert_eq!((allowed.len(), refused.len()), (100, 100));
    let bad_allowed: Vec<String> = allowed
        .iter()
        .filter(|(_, r)| !(matches!(r.end, End::Eof) && r.bytes == EPOLL))
        .map(|(_, r)| r.to_string())
        .collect();
    let leaked: Vec<String> = refused
        .iter()
        .filter(|(_, r)| !(r.bytes.is_empty() && matches!(r.end, End::Eof | End::Reset)))
        .map(|(_, r)| r.to_string())
        .collect();
    assert!(
        bad_allowed.is_empty(),
        "{} of 100 allowed peers were not greeted, e.g. {:?}",
        bad_allowed.len(),
        &bad_allowed[..bad_allowed.len().min(3)]
    );
    assert!(
        leaked.is_empty(),
        "{} of 100 refused peers got bytes or hung, e.g. {:?}",
        leaked.len(),
        &leaked[..leaked.len().min(3)]
    );

    // Still alive and serving, and it counted exactly the allowed peers.
    assert_served(&talk(LO, addr, None), EPOLL, "allowed peer after the burst");
    let f = srv.terminate();
    assert!(f.status.success(), "epoll_server: {f:?}");
    assert_eq!(f.stdout, vec!["served 101".to_string()], "{f:?}");
}

/// fork_server under the loopback policy (plus connect to loopback for `--busy`):
/// allowed, refused, allowed peers in turn, each allowed one served by a fresh child.
fn fork_server_case(extra: &[&str]) {
    let dir = TempDir::new("fork");
    let policy = write_policy(
        &dir,
        &format!(
            "{LO_POLICY}  - {{name: lo-connect, action: allow, calls: [connect], remote: [127.0.0.0/8]}}\n"
        ),
    );
    let mut args = vec!["127.0.0.1:0", "--max", "6"];
    args.extend(extra);
    let (mut srv, addr) = server("fork_server", &policy, &args);
    let mut expected = Vec::new();
    for i in 0..6 {
        if i % 2 == 1 {
            assert_refused(&talk(DOT2, addr, None), &format!("{extra:?} refused #{i}"));
        }
        let r = talk(LO, addr, None);
        assert_served(&r, FORK, &format!("{extra:?} allowed peer #{i}"));
        expected.push(r.local.expect("peer address").to_string());
    }
    let f = srv.wait();
    assert!(f.status.success(), "fork_server {extra:?}: {f:?}");
    assert_eq!(seen(&f.stdout, "forked "), expected, "{f:?}");
}

#[test]
fn fork_server_with_idle_threads_keeps_working() {
    fork_server_case(&[]);
}

#[test]
fn fork_server_forking_while_threads_are_inside_the_hook() {
    fork_server_case(&["--busy"]);
}

#[test]
fn policy_typo_fails_closed_with_one_message_naming_the_key() {
    let dir = TempDir::new("typo");
    let policy = write_policy(
        &dir,
        r#"version: 1
default: allow
rules:
  - {name: web, action: allow, calls: [accept], remote_prots: [80]}
"#,
    );
    let policy_name = policy.to_string_lossy().into_owned();
    // The library's diagnostics start with `sockexit[PID]: `; a message may run on
    // over more lines, but there must be one, and its first line names file and key.
    let messages = |f: &Finished| -> Vec<String> {
        f.stderr
            .lines()
            .filter(|l| l.starts_with("sockexit["))
            .map(str::to_owned)
            .collect()
    };

    // listen refused, although `default: allow`: the broken policy widens nothing.
    let (first, f) = run(sample("banner_server", &policy, &["127.0.0.1:0"]));
    assert_eq!(first, "error EACCES 13", "{f:?}");
    assert_eq!(f.status.code(), Some(1));
    let m = messages(&f);
    assert_eq!(m.len(), 1, "expected one library message:\n{}", f.stderr);
    assert!(
        m[0].contains(&policy_name) && m[0].contains("remote_prots"),
        "the message should name {policy_name} and `remote_prots`: {m:?}"
    );

    // accept refused too: a listening socket inherited as fd 3 (inetd/systemd style)
    // needs no listen under the preload. Refused peers get nothing, the server nothing.
    let inherited = TcpListener::bind((LO, 0)).expect("listener");
    let addr = inherited.local_addr().unwrap();
    let mut cmd = sample("banner_server", &policy, &["fd:3", "--max", "1"]);
    pass_as_fd3(&mut cmd, inherited.as_raw_fd());
    let mut srv = Proc::start(cmd);
    assert_eq!(srv.listening(), addr);
    drop(inherited);
    for i in 0..2 {
        assert_refused(
            &talk(LO, addr, None),
            &format!("127.0.0.1 under a broken policy #{i}"),
        );
    }
    let rest = srv.kill_and_collect();
    assert!(
        seen(&rest, "accepted ").is_empty(),
        "the server saw a connection under a broken policy: {rest:?}"
    );

    // SOCKEXIT_ON_ERROR=allow opts out.
    let mut cmd = sample("banner_server", &policy, &["127.0.0.1:0", "--max", "1"]);
    cmd.env("SOCKEXIT_ON_ERROR", "allow");
    let mut srv = Proc::start(cmd);
    let addr = srv.listening();
    assert_served(&talk(LO, addr, None), BANNER, "SOCKEXIT_ON_ERROR=allow");
    let f = srv.wait();
    assert!(f.status.success(), "{f:?}");
    assert_eq!(
        messages(&f).len(),
        1,
        "still says the policy is broken:\n{}",
        f.stderr
    );
}

/// A set file of `n` prefixes in 10.0.0.0/8 (none of them loopback) plus `extra`
/// lines, big enough (> 64 KiB) that the library parses it at the first IP call, not
/// at start-up.
fn big_set_file(dir: &TempDir, extra: &[&str]) -> PathBuf {
    let mut text = String::from("# generated: 10.x.y.0/24 networks\n");
    for i in 0..6000u32 {
        text.push_str(&format!("10.{}.{}.0/24\n", i >> 8, i & 255));
    }
    for l in extra {
        text.push_str(l);
        text.push('\n');
    }
    assert!(
        text.len() > 64 * 1024,
        "the set must be big enough to be deferred"
    );
    dir.write("drop.txt", &text)
}

/// `default: allow`, and the big set refused on every call.
const BIG_SET_POLICY: &str = r#"version: 1
default: allow
audit: { log: stderr, events: deny }
sets:
  drop: { file: drop.txt }
rules:
  - { name: drop-listed, action: deny, remote: ["@drop"] }
"#;

/// Debug lines of the library that say the big set was deferred and then compiled.
fn deferred_and_compiled(stderr: &str) -> bool {
    stderr.contains("bytes of set files to compile at the first IP call")
        && stderr.contains("bytes of set files compiled")
}

#[test]
fn big_set_file_is_enforced_from_the_first_call() {
    let dir = TempDir::new("bigset");
    big_set_file(&dir, &["127.0.0.2", "127.0.0.3/32"]);
    let policy = write_policy(&dir, BIG_SET_POLICY);

    // connect as the process's first IP call: the set is compiled, then decides it.
    let guarded = TcpListener::bind("127.0.0.3:0").expect("listener on 127.0.0.3");
    guarded.set_nonblocking(true).unwrap();
    let target = guarded.local_addr().unwrap().to_string();
    let mut cmd = sample("connect_client", &policy, &["--no-read", &target]);
    cmd.env("SOCKEXIT_LOG", "debug");
    let (first, f) = run(cmd);
    assert_eq!(first, "error EACCES 13", "{f:?}");
    assert!(
        matches!(guarded.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the refused connect reached 127.0.0.3"
    );
    assert!(deferred_and_compiled(&f.stderr), "{}", f.stderr);
    let audit: Vec<&str> = f.stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(audit.len(), 1, "one audit line:\n{}", f.stderr);
    assert!(
        audit[0].contains(r#""rule":"drop-listed""#)
            && audit[0].contains(&format!(r#""remote":"{target}""#)),
        "{}",
        audit[0]
    );

    // accept: a listed peer is reset unseen, an unlisted one served.
    let (mut srv, addr) = server("banner_server", &policy, &["127.0.0.1:0", "--max", "1"]);
    assert_refused(&talk(DOT2, addr, None), "127.0.0.2 in the big set");
    let r = talk(LO, addr, None);
    assert_served(&r, BANNER, "127.0.0.1 not in the big set");
    let f = srv.wait();
    assert!(f.status.success(), "{f:?}");
    assert_eq!(seen(&f.stdout, "accepted ").len(), 1, "{f:?}");
}

#[test]
fn big_set_file_is_read_at_start_and_later_changes_change_nothing() {
    let dir = TempDir::new("bigset-start");
    let set = big_set_file(&dir, &["127.0.0.3/32"]);
    let policy = write_policy(&dir, BIG_SET_POLICY);
    let guarded = TcpListener::bind("127.0.0.3:0").expect("listener on 127.0.0.3");
    guarded.set_nonblocking(true).unwrap();
    let target = guarded.local_addr().unwrap().to_string();
    let go = dir.path().join("go");
    let go_arg = go.to_string_lossy().into_owned();
    let mut p = Proc::start(sample(
        "connect_client",
        &policy,
        &["--no-read", "--after", &go_arg, &target],
    ));
    assert_eq!(p.line(), "waiting");
    // After start, before the first socket call: the set file vanishes (as after a
    // chroot) and the policy is replaced by one that allows everything. The process
    // keeps the policy it started with.
    std::fs::remove_file(&set).unwrap();
    write_policy(&dir, "version: 1\ndefault: allow\nrules: []\n");
    std::fs::write(&go, "").unwrap();
    assert_eq!(p.line(), "error EACCES 13");
    let f = p.wait();
    assert_eq!(f.status.code(), Some(1), "{f:?}");
    assert!(
        !f.stderr.contains("cannot load policy"),
        "nothing was read late:\n{}",
        f.stderr
    );
}

#[test]
fn bad_line_in_a_big_set_file_fails_closed_at_the_first_ip_call() {
    let dir = TempDir::new("bigset-bad");
    let set = big_set_file(&dir, &["  10.300.0.0/16"]);
    let policy = write_policy(&dir, BIG_SET_POLICY);
    let bad_line = 6002; // the comment, 6000 prefixes, then the typo
    let where_ = format!("{}:{bad_line}:3", set.display());
    let open = TcpListener::bind((LO, 0)).expect("listener");
    let open_addr = open.local_addr().unwrap().to_string();

    // 127.0.0.1 is not in the set and the default is allow, but the set is broken:
    // the call is refused, and the one message says where the set is broken.
    let (first, f) = run(sample(
        "connect_client",
        &policy,
        &["--no-read", &open_addr],
    ));
    assert_eq!(first, "error EACCES 13", "{f:?}");
    let msgs: Vec<&str> = f
        .stderr
        .lines()
        .filter(|l| l.starts_with("sockexit["))
        .collect();
    assert_eq!(msgs.len(), 1, "{}", f.stderr);
    assert!(
        msgs[0].contains(&where_) && msgs[0].contains("failing closed"),
        "expected {where_} in {msgs:?}"
    );

    // listen too: a broken policy widens nothing.
    let (first, f) = run(sample("banner_server", &policy, &["127.0.0.1:0"]));
    assert_eq!(first, "error EACCES 13", "{f:?}");

    // SOCKEXIT_ON_ERROR=allow opts out, and still says what is broken.
    let mut cmd = sample("connect_client", &policy, &["--no-read", &open_addr]);
    cmd.env("SOCKEXIT_ON_ERROR", "allow");
    let (first, f) = run(cmd);
    assert_eq!(first, "ok", "{f:?}");
    assert!(f.stderr.contains(&where_), "{}", f.stderr);
    assert!(open.accept().is_ok(), "the allowed connect never arrived");
}

#[test]
fn unix_sockets_pass_through_a_deny_all_policy() {
    let dir = TempDir::new("unix");
    let deny_all = write_policy(&dir, "version: 1\ndefault: deny\nrules: []\n");
    let missing = dir.path().join("no-such-policy.yaml");
    for (what, policy) in [("deny-all", &deny_all), ("missing policy", &missing)] {
        let sock = dir.path().join("s.sock");
        let arg = format!("unix:{}", sock.display());
        let (first, f) = run(sample("listen_probe", policy, &[&arg]));
        assert_eq!(
            first, "ok unix listen connect accept accept4",
            "{what}: {f:?}"
        );
        let _ = std::fs::remove_file(&sock);
        // ...while the same policy refuses IP: the library is loaded and in charge.
        let (first, f) = run(sample("listen_probe", policy, &["127.0.0.1:0"]));
        assert_eq!(first, "error EACCES 13", "{what}, IP listen: {f:?}");
    }
}

#[test]
fn diagnostics_never_reach_a_peer_through_a_socket_on_fd_2() {
    // inetd/`sshd -i` style: fd 2 is a TCP connection to someone else. The library has
    // things to say (a broken policy, debug lines about refusals) and must say none
    // of them there.
    let dir = TempDir::new("fd2");
    let broken = dir.write(
        "broken.yaml",
        "version: 1\ndefault: allow\nrules: [{name: x, action: allow, remote_prots: [1]}]\n",
    );
    let good = write_policy(&dir, LO_POLICY);
    for (what, policy, on_error) in [
        (
            "broken policy, SOCKEXIT_ON_ERROR=allow",
            &broken,
            Some("allow"),
        ),
        ("refusals under SOCKEXIT_LOG=debug", &good, None),
    ] {
        let l = TcpListener::bind((LO, 0)).expect("listener");
        let mut watcher = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
        let (fd2, _) = l.accept().expect("accept");
        let mut cmd = sample("banner_server", policy, &["127.0.0.1:0", "--max", "1"]);
        cmd.env("SOCKEXIT_LOG", "debug")
            .stderr(Stdio::from(std::os::fd::OwnedFd::from(fd2)));
        if let Some(v) = on_error {
            cmd.env("SOCKEXIT_ON_ERROR", v);
        }
        let mut srv = Proc::start_with_stderr(cmd);
        let addr = srv.listening();
        if on_error.is_none() {
            assert_refused(&talk(DOT2, addr, None), &format!("{what}: 127.0.0.2"));
        }
        assert_served(&talk(LO, addr, None), BANNER, &format!("{what}: 127.0.0.1"));
        let f = srv.wait();
        assert!(f.status.success(), "{what}: {f:?}");
        // The child held the only other end: EOF now, with whatever it wrote before.
        watcher.set_read_timeout(Some(IO)).unwrap();
        let mut leaked = Vec::new();
        let r = watcher.read_to_end(&mut leaked);
        assert!(
            r.is_ok() && leaked.is_empty(),
            "{what}: the peer on fd 2 received {:?} ({r:?})",
            leaked.escape_ascii().to_string()
        );
    }
}
