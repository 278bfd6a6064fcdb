//! The project's sample servers and Python servers: select(), socketserver, blocking
//! accept loops, SO_RCVTIMEO, edge-triggered epoll, threads on one socket, forks.

use crate::support::*;

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
pub(crate) fn rcvtimeo_case(mode: Option<&str>) -> (String, u128, Vec<Reply>) {
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
            || r.end == crate::common::peer::End::Failed(std::io::ErrorKind::ConnectionRefused);
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

pub(crate) fn epoll_burst(mode: Option<&str>) {
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
pub(crate) fn fork_case(children: &str) {
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
