//! The neighbours of the holes: the forked child, UDP, Fast Open to an unspecified
//! address, a signal during a blocking connect, an exec with a rebuilt environment.

use crate::sockaddr::check_short;
use crate::support::*;
use crate::tfo::TfoClient;

#[test]
fn forked_child_gets_the_same_judgement() {
    let Some(_tfo) = TfoClient::enable() else {
        return;
    };
    let dir = TempDir::new("bypass-fork");
    let p = policy(&dir, DENY_DOT2_AND_V6LO);
    let mut bad = Vec::new();
    let cases: Vec<(&str, Vec<String>, IpAddr)> = vec![
        ("plain connect", vec!["connect".into()], DOT2),
        (
            "connect via dlopen+dlsym",
            vec!["door".into(), "dlopen".into(), "connect".into()],
            DOT2,
        ),
        (
            "connect via __connect",
            vec!["door".into(), "__connect".into(), "connect".into()],
            DOT2,
        ),
        (
            "sendto(MSG_FASTOPEN)",
            vec!["tfo".into(), "sendto".into()],
            DOT2,
        ),
        (
            "sendmmsg(MSG_FASTOPEN)",
            vec!["tfo".into(), "sendmmsg".into()],
            DOT2,
        ),
        (
            "24-byte sockaddr_in6 to ::1",
            vec!["connect".into(), "--len".into(), "24".into()],
            V6LO,
        ),
    ];
    for (label, head, ip) in &cases {
        let w = Watch::on(*ip);
        let mut args: Vec<String> = vec!["--fork".into()];
        args.extend(head.iter().cloned());
        args.push(w.addr.to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let f = attack(&p, &args);
        check_refused(
            &format!("forked child: {label} to {}", w.addr),
            &f,
            &w,
            "no-dot2",
            &mut bad,
        );
    }
    report(&bad, cases.len(), "calls made in a forked child");
}

#[test]
fn udp_connect_to_an_unspecified_address_is_judged_as_loopback() {
    let dir = TempDir::new("bypass-udp-any");
    let p = policy(&dir, DENY_LOOPBACK);
    let mut bad = Vec::new();
    let u4 = std::net::UdpSocket::bind((LO, 0)).expect("udp bind");
    let u6 = std::net::UdpSocket::bind((V6LO, 0)).expect("udp6 bind");
    u4.set_read_timeout(Some(SETTLE)).unwrap();
    u6.set_read_timeout(Some(SETTLE)).unwrap();
    let p4 = u4.local_addr().unwrap().port();
    let p6 = u6.local_addr().unwrap().port();
    let cases = [
        (format!("127.0.0.1:{p4}"), &u4),
        (format!("0.0.0.0:{p4}"), &u4),
        (format!("[::]:{p6}"), &u6),
        (format!("[::ffff:0.0.0.0]:{p4}"), &u4),
    ];
    for (dest, u) in &cases {
        let f = attack(&p, &["udp-connect", dest]);
        let mut buf = [0u8; 64];
        let got = u.recv_from(&mut buf).ok();
        if first(&f) != EACCES
            || got.is_some()
            || !audit_denied(&f.stderr, "connect", "no-loopback")
        {
            bad.push(format!(
                "UDP connect {dest}: printed {:?} ({}), datagram received: {:?}",
                first(&f),
                how(&f),
                got.map(|(n, from)| (from, buf[..n].escape_ascii().to_string()))
            ));
        }
    }
    report(&bad, cases.len(), "UDP connects under a loopback deny");
}

#[test]
fn tfo_to_an_unspecified_address_or_with_a_short_sockaddr_is_refused() {
    let Some(_tfo) = TfoClient::enable() else {
        return;
    };
    let dir = TempDir::new("bypass-tfo-any");
    let p = policy(&dir, DENY_LOOPBACK);
    let mut bad = Vec::new();
    let v4 = Watch::on(LO);
    let v6 = Watch::on(V6LO);
    let cases = [
        (
            vec!["tfo", "sendto"],
            format!("0.0.0.0:{}", v4.port()),
            None,
            &v4,
        ),
        (
            vec!["tfo", "sendmsg"],
            format!("[::]:{}", v6.port()),
            None,
            &v6,
        ),
        (
            vec!["tfo", "sendmmsg"],
            format!("[::ffff:0.0.0.0]:{}", v4.port()),
            None,
            &v4,
        ),
        (
            vec!["tfo", "sendto"],
            format!("[::1]:{}", v6.port()),
            Some("20"),
            &v6,
        ),
        (
            vec!["tfo", "sendto"],
            format!("127.0.0.1:{}", v4.port()),
            Some("8"),
            &v4,
        ),
    ];
    for (head, dest, len, w) in &cases {
        let mut args = head.clone();
        args.push(dest);
        if let Some(l) = len {
            args.extend(["--len", l]);
        }
        let f = attack(&p, &args);
        let label = format!(
            "{} {dest}{}",
            head[1],
            len.map(|l| format!(" ({l}-byte sockaddr)"))
                .unwrap_or_default()
        );
        if len.is_some() {
            // Too short to decode: refused, whatever the policy says of the address.
            check_short(&label, &f, w, &mut bad);
        } else {
            check_refused(&label, &f, w, "no-loopback", &mut bad);
        }
    }
    report(
        &bad,
        cases.len(),
        "MSG_FASTOPEN sends to unspecified / undecodable destinations",
    );
}

/// A listener on 127.0.0.1 with backlog 0 whose queue is full: a further SYN is
/// dropped, so a blocking connect to it waits in the kernel. Returns the listener,
/// the fillers (keep them alive) and the address.
pub(crate) fn full_listener() -> (std::os::fd::OwnedFd, Vec<std::net::TcpStream>, SocketAddr) {
    use std::os::fd::{AsRawFd, OwnedFd};
    let l = TcpListener::bind((LO, 0)).expect("bind");
    let addr = l.local_addr().unwrap();
    // SAFETY: listen(2) again on our own listening socket, to shrink its backlog.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let fd: OwnedFd = l.into();
    let mut fillers = Vec::new();
    for _ in 0..2 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            fillers.push(s);
        }
    }
    (fd, fillers, addr)
}

#[test]
fn signal_handler_connect_while_blocked_in_connect_is_judged() {
    let dir = TempDir::new("bypass-sig-connect");
    let p = policy(&dir, DENY_DOT2_IN);
    let (_l, _fillers, full) = full_listener();
    let w = Watch::on(DOT2);
    let f = attack(
        &p,
        &[
            "sig-connect",
            "connect",
            "--block-on",
            &full.to_string(),
            &w.addr.to_string(),
        ],
    );
    let mut why = Vec::new();
    if first(&f) != "handler error EACCES 13" {
        why.push(format!("handler printed {:?} ({})", first(&f), how(&f)));
    }
    if let Some((peer, _)) = w.arrived(SETTLE) {
        why.push(format!("the refused listener got a connection from {peer}"));
    }
    if !audit_denied(&f.stderr, "connect", "no-dot2-out") {
        why.push("no audit deny line for rule no-dot2-out".into());
    }
    assert!(
        why.is_empty(),
        "SIGUSR1 handler connect({}) while blocked in connect({full}): {}\nstdout {:?}\nstderr {}",
        w.addr,
        why.join("; "),
        f.stdout,
        f.stderr
    );
}

/// Issue 15 and DESIGN.md's hazard "every exec carries the library and the policy to
/// the child, whatever environment the program builds for it": a program that
/// re-executes itself without LD_PRELOAD, or with a policy of its own, is still judged
/// by the policy it runs under.
#[test]
fn exec_with_a_rebuilt_environment_keeps_the_library_and_the_policy() {
    let dir = TempDir::new("bypass-exec");
    let p = policy(&dir, DENY_DOT2);
    let allow_all = dir.write("allow-all.yaml", "version: 1\ndefault: allow\nrules: []\n");
    let swap = format!("policy={}", allow_all.display());
    let mut bad = Vec::new();
    let forms = [
        "execve",
        "execle",
        "execvpe",
        "fexecve",
        "execveat",
        "posix_spawn",
        "vfork",
        "execv-environ",
    ];
    let envs = ["empty", "no-preload", swap.as_str()];
    for form in forms {
        for env in envs {
            let w = Watch::on(DOT2);
            let f = attack(&p, &["exec", form, env, "connect", &w.addr.to_string()]);
            check_short(
                &format!("{form} with env {env}, then connect {}", w.addr),
                &f,
                &w,
                &mut bad,
            );
        }
    }
    report(
        &bad,
        forms.len() * envs.len(),
        "connects after an exec with a rebuilt environment",
    );
}
