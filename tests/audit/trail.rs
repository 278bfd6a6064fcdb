//! The audit trail and audit mode: every key of a line, a refused peer let through and
//! recorded, a program that reuses every descriptor, rotation, stderr, chroot, fork.

use crate::support::*;

#[test]
fn deny_and_allow_lines_carry_every_key_with_correct_values() {
    let dir = TempDir::new("audit-keys");
    let log = dir.path().join("audit.jsonl");
    let p = policy(
        &dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }}\naudit:\n  log: {}\n  events: all\n",
            log.display()
        ),
    );
    let prog = example_path("banner_server");
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"]);
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)), "refused peer was served");
    assert!(served(&talk("127.0.0.1", addr)), "allowed peer not served");
    srv.finish();

    let ls = lines(&log);
    for v in &ls {
        check_common(v, srv.pid(), &prog);
        assert_eq!(v["mode"], "enforce", "{v}");
    }
    let listen: Vec<_> = ls.iter().filter(|v| v["call"] == "listen").collect();
    assert_eq!(listen.len(), 1, "{ls:?}");
    assert_eq!(listen[0]["verdict"], "allow");
    assert_eq!(listen[0]["rule"], "default");
    assert_eq!(listen[0]["local"], addr.to_string());
    assert!(listen[0]["remote"].is_null());

    let accepts: Vec<_> = ls.iter().filter(|v| v["call"] == "accept").collect();
    assert_eq!(accepts.len(), 2, "{ls:?}");
    let (deny, allow) = (accepts[0], accepts[1]);
    assert_eq!(deny["verdict"], "deny");
    assert_eq!(deny["rule"], "no-second-loopback");
    assert_eq!(port_of(deny, "remote").0, "127.0.0.2");
    assert_ne!(port_of(deny, "remote").1, 0);
    assert_eq!(deny["local"], addr.to_string());
    assert_eq!(allow["verdict"], "allow");
    assert_eq!(allow["rule"], "default");
    assert_eq!(port_of(allow, "remote").0, "127.0.0.1");
    assert_eq!(allow["local"], addr.to_string());
}

#[test]
fn audit_mode_lets_a_refused_peer_through_and_records_it() {
    let dir = TempDir::new("audit-mode");
    let log = dir.path().join("audit.jsonl");
    let p = policy(
        &dir,
        &format!(
            "default: allow\nmode: audit\nrules:\n  - {{ name: no-loopback, action: deny, calls: [accept], remote: [127.0.0.0/8] }}\naudit:\n  log: {}\n",
            log.display()
        ),
    );
    let prog = example_path("banner_server");
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"]);
        c
    });
    let reply = talk("127.0.0.1", addr);
    assert!(served(&reply), "audit mode refused the peer: {reply}");
    srv.finish();
    let ls = lines(&log);
    assert_eq!(ls.len(), 1, "{ls:?}");
    check_common(&ls[0], srv.pid(), &prog);
    assert_eq!(ls[0]["call"], "accept");
    assert_eq!(ls[0]["verdict"], "deny");
    assert_eq!(ls[0]["mode"], "audit");
    assert_eq!(ls[0]["rule"], "no-loopback");
    assert_eq!(port_of(&ls[0], "remote").0, "127.0.0.1");
}

#[test]
fn program_that_closes_and_reuses_every_fd_keeps_its_file_and_the_line_is_logged() {
    let dir = TempDir::new("audit-fdreuse");
    let log = dir.path().join("audit.jsonl");
    let own = dir.path().join("own.txt");
    let p = policy(
        &dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }}\naudit:\n  log: {}\n",
            log.display()
        ),
    );
    let prog = example_path("audit_fd_reuse_server");
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.arg(&own);
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)), "refused peer was served");
    let reply = talk("127.0.0.1", addr);
    assert!(reply.starts_with("ok 220 fd-reuse"), "{reply}");
    assert_eq!(srv.line(), "served 1");
    srv.finish();
    assert_eq!(
        std::fs::read(&own).unwrap(),
        b"own data\n",
        "the program's own file was written to by someone else"
    );
    let ls = lines(&log);
    assert_eq!(ls.len(), 1, "{ls:?}");
    check_common(&ls[0], srv.pid(), &prog);
    assert_eq!(ls[0]["verdict"], "deny");
    assert_eq!(ls[0]["rule"], "no-second-loopback");
    assert_eq!(port_of(&ls[0], "remote").0, "127.0.0.2");
}

#[test]
fn eight_threads_times_500_decisions_make_4000_whole_lines() {
    let dir = TempDir::new("audit-threads");
    let log = dir.path().join("audit.jsonl");
    let p = policy(
        &dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-outbound, action: deny, calls: [connect], remote: [127.0.0.1/32] }}\naudit:\n  log: {}\n",
            log.display()
        ),
    );
    let prog = example_path("audit_connect_storm");
    let out = preloaded(&prog, &p)
        .args(["8", "500", "127.0.0.1:9"])
        .stdin(Stdio::null())
        .output()
        .expect("run storm");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "eacces 4000 other 0"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.ends_with('\n'));
    let ls = lines(&log);
    // Identical refusals are collapsed: each line stands for itself or, with
    // `repeated`, for that many; nothing is lost.
    let total: u64 = ls
        .iter()
        .map(|v| v.get("repeated").map_or(1, |n| n.as_u64().unwrap()))
        .sum();
    assert_eq!(total, 4000, "{} lines", ls.len());
    assert!(ls.len() < 4000, "nothing collapsed");
    let pid = ls[0]["pid"].as_u64().unwrap();
    for v in &ls {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("repeated");
            o.remove("until");
        }
        check_common(&v, pid, &prog);
        assert_eq!(v["call"], "connect", "{v}");
        assert_eq!(v["verdict"], "deny", "{v}");
        assert_eq!(v["rule"], "no-outbound", "{v}");
        assert_eq!(v["remote"], "127.0.0.1:9", "{v}");
    }
}

#[test]
fn rotated_log_is_reopened_and_the_new_file_receives_lines() {
    let dir = TempDir::new("audit-rotate");
    let log = dir.path().join("audit.jsonl");
    let rotated = dir.path().join("audit.jsonl.1");
    let p = policy(
        &dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }}\naudit:\n  log: {}\n",
            log.display()
        ),
    );
    let prog = example_path("banner_server");
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"]);
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    // What logrotate's `create` does: rename, then a new empty file.
    std::fs::rename(&log, &rotated).unwrap();
    std::fs::write(&log, b"").unwrap();
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(!served(&talk("127.0.0.2", addr)));
    let old = lines(&rotated);
    let new = lines(&log);
    assert_eq!(old.len(), 1, "before rotation: {old:?}");
    assert_eq!(new.len(), 2, "after rotation: {new:?}");
    for v in old.iter().chain(&new) {
        check_common(v, srv.pid(), &prog);
    }
    // Removed altogether (the renamed one too): the library creates it again.
    std::fs::remove_file(&rotated).unwrap();
    std::fs::remove_file(&log).unwrap();
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    let new = lines(&log);
    assert_eq!(new.len(), 1, "after removal: {new:?}");
    for v in &new {
        check_common(v, srv.pid(), &prog);
        assert_eq!(v["verdict"], "deny");
    }
}

#[test]
fn syslog_target_sends_an_rfc5424_datagram() {
    let dir = TempDir::new("audit-syslog");
    let sock_path = dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let p = policy(
        &dir,
        "default: allow\nrules:\n  - { name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }\naudit:\n  log: syslog\n",
    );
    let prog = example_path("banner_server");
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"])
            .env("SOCKEXIT_SYSLOG_SOCKET", &sock_path);
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a datagram");
    let msg = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(msg.starts_with("<84>1 "), "{msg}"); // authpriv.warning
    let json_at = msg.find('{').unwrap();
    let header: Vec<&str> = msg[..json_at].split(' ').collect();
    // PRI+VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD, then MSG.
    assert_eq!(header.len(), 8, "{msg}");
    parse_ts(header[1]);
    assert_eq!(header[3], "sockexit");
    assert_eq!(header[4], srv.pid().to_string());
    assert_eq!(&header[5..], ["-", "-", ""]);
    let v: Value = serde_json::from_str(&msg[json_at..]).unwrap();
    check_common(&v, srv.pid(), &prog);
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["ts"], header[1]);
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
}

#[test]
fn stderr_target_writes_to_a_pipe_and_the_journal_but_never_into_an_ip_socket() {
    let dir = TempDir::new("audit-stderr");
    let p = policy(
        &dir,
        "default: allow\nrules:\n  - { name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }\naudit:\n  log: stderr\n",
    );
    let prog = example_path("banner_server");

    // fd 2 a pipe: the line arrives.
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"]).stderr(Stdio::piped());
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    let mut err = String::new();
    srv.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let json: Vec<&str> = err.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(json.len(), 1, "{err}");
    let v: Value = serde_json::from_str(json[0]).unwrap();
    check_common(&v, srv.pid(), &prog);
    assert_eq!(v["verdict"], "deny");

    // fd 2 an AF_UNIX stream (systemd's journal): the line arrives.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"])
            .stderr(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    drop(srv);
    ours.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = Vec::new();
    (&ours).read_to_end(&mut got).unwrap();
    let got = String::from_utf8_lossy(&got);
    assert_eq!(got.matches("\"verdict\":\"deny\"").count(), 1, "{got}");

    // fd 2 a TCP connection (inetd, `sshd -i`): not one byte.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let theirs = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (ours, _) = l.accept().unwrap();
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "1"])
            .stderr(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
        c
    });
    assert!(!served(&talk("127.0.0.2", addr)));
    assert!(served(&talk("127.0.0.1", addr)));
    srv.finish();
    drop(srv);
    ours.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = Vec::new();
    (&ours).read_to_end(&mut got).unwrap();
    assert!(
        !String::from_utf8_lossy(&got).contains("\"verdict\""),
        "audit line written into a TCP socket: {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn after_chroot_a_rotated_log_is_reopened_in_the_real_directory_never_in_the_jail() {
    if euid() != 0 {
        eprintln!("skipped: chroot needs root");
        return;
    }
    let dir = TempDir::new("audit-chroot");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("audit.jsonl");
    let rotated = logs.join("audit.jsonl.1");
    // The jail holds the same path, so a reopen by path after chroot would land there.
    let jail = dir.path().join("jail");
    let jailed_logs = jail.join(logs.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&jailed_logs).unwrap();
    let p = policy(
        &dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }}\naudit:\n  log: {}\n",
            log.display()
        ),
    );
    let prog = example_path("audit_chroot_server");
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.arg(&jail);
        c
    });
    assert_eq!(srv.line(), "chrooted");
    assert!(!served(&talk("127.0.0.2", addr)));
    std::fs::rename(&log, &rotated).unwrap();
    std::fs::write(&log, b"").unwrap();
    assert!(!served(&talk("127.0.0.2", addr)));
    let reply = talk("127.0.0.1", addr);
    assert!(reply.starts_with("ok 220 chrooted"), "{reply}");
    assert_eq!(srv.line(), "served 1");
    srv.finish();
    assert_eq!(lines(&rotated).len(), 1);
    let new = lines(&log);
    assert_eq!(new.len(), 1, "{new:?}");
    check_common(&new[0], srv.pid(), &prog);
    assert_eq!(new[0]["verdict"], "deny");
    assert_eq!(
        std::fs::read_dir(&jailed_logs).unwrap().count(),
        0,
        "audit log created inside the jail"
    );
}

#[test]
fn children_forked_while_threads_record_lines_still_record_their_own() {
    let dir = TempDir::new("audit-fork");
    let log = dir.path().join("audit.jsonl");
    let p = policy(
        &dir,
        &format!(
            "default: allow\nrules:\n  - {{ name: no-testnet, action: deny, remote: [192.0.2.0/24] }}\naudit:\n  log: {}\n  events: all\n",
            log.display()
        ),
    );
    let prog = example_path("fork_server");
    // Busy workers connect (and so record a line) every millisecond while the main
    // thread forks: a lock or allocation held across the record path would leave a
    // child stuck before its banner.
    let (mut srv, addr) = Server::start({
        let mut c = preloaded(&prog, &p);
        c.args(["--max", "20", "--workers", "3", "--busy"]);
        c
    });
    for i in 0..20 {
        let reply = talk("127.0.0.1", addr);
        assert!(
            reply.starts_with("ok 220 sockexit fork child listen=ok"),
            "child {i}: {reply}"
        );
    }
    srv.finish();
    let ls = lines(&log);
    let parent = srv.pid();
    let mut children: Vec<u64> = ls
        .iter()
        .filter(|v| v["call"] == "listen" && v["pid"].as_u64() != Some(parent))
        .map(|v| {
            check_common(v, v["pid"].as_u64().unwrap(), &prog);
            assert_eq!(v["verdict"], "allow", "{v}");
            v["pid"].as_u64().unwrap()
        })
        .collect();
    children.sort_unstable();
    children.dedup();
    assert_eq!(
        children.len(),
        20,
        "one listen line per child: {children:?}"
    );
    let worker_connects = ls
        .iter()
        .filter(|v| v["call"] == "connect" && v["pid"].as_u64() == Some(parent))
        .count();
    assert!(worker_connects > 0, "busy workers recorded nothing");
}
