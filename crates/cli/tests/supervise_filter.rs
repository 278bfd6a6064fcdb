//! `sockexit run --supervise` in accept-by-filter mode (docs/supervise.md, "Accepts
//! decided by socket filters"): accepts are not notified; each listener carries the
//! supervisor's socket filter. What a user sees: the mode is named on stderr (and
//! refused, saying why, for a policy that does not qualify); a refused peer gets no
//! SYN-ACK, an allowed one is served byte-exact; the program cannot detach, replace
//! or lock its listener's filter (EPERM) but filters its UDP socket as before (also
//! with an eBPF program, SO_ATTACH_BPF); an SCTP listen is refused (EACCES); an
//! apply reaches a listener held only by an orphaned grandchild and an inherited one;
//! a later generation that does not qualify fails closed, saying so (one too large:
//! every SYN dropped, said once); the program rebinds its port at once after a
//! reload; a static Go server; nginx; and the documented residual: a listener passed out of the tree is reported at an apply.
//!
//! Built on the spot (gcc); needs root on kernels where SO_ATTACH_FILTER is
//! privileged (this project's VM): SKIPPED otherwise.

#[path = "../../../tests/common/mod.rs"]
mod common;
#[path = "supervise/harness.rs"]
mod harness;
mod support;

use common::daemon::{free_port, require, say, Proc};
use harness::*;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{clean, run, BIN};

const FSRV: &str = include_str!("supervise_filter/fsrv.c");

/// A stealth policy whose accept rules look only at the packet, plus `extra` rules.
fn policy(extra: &str) -> String {
    format!(
        "version: 1\ndefault: allow\nstealth: true\naudit: {{ log: off }}\nrules:\n  \
         - {{ name: no-127-0-0-2, action: deny, calls: [accept], remote: [127.0.0.2] }}\n{extra}"
    )
}

fn root() -> bool {
    // SAFETY: plain call.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    say("SKIPPED: accept-by-filter tests run as root (SO_ATTACH_FILTER may be privileged)");
    false
}

struct T {
    s: Setup,
    fsrv: PathBuf,
}

fn start(tag: &str) -> Option<T> {
    if !root() {
        return None;
    }
    let s = setup(tag);
    let fsrv = s.cc("fsrv", FSRV, &["-O"])?;
    Some(T { s, fsrv })
}

impl T {
    fn policy(&self, name: &str, extra: &str) -> PathBuf {
        self.s.dir.write(name, &policy(extra))
    }

    fn sup(&self, policy: &Path, args: &[&str]) -> Command {
        let mut c = self.s.sup_under(policy, &self.fsrv);
        c.args(args);
        c
    }

    /// `sockexit apply` of `policy`, which must be the file the supervisor started
    /// with (a generation is published per policy path).
    fn apply(&self, policy: &Path) {
        let mut c = clean(BIN);
        c.env("SOCKEXIT_RUN_DIR", self.s.run_dir())
            .arg("apply")
            .arg(policy);
        let o = run(c);
        assert_eq!(o.code, Some(0), "apply: {o:?}");
    }

    /// A supervised fsrv whose stderr goes to a file of its own.
    fn proc(&self, tag: &str, cmd: Command) -> Proc {
        let d = self.s.dir.path().join(tag);
        std::fs::create_dir_all(&d).unwrap();
        Proc::start(cmd, &d, Stdio::null())
    }
}

/// Whether a peer from `src` gets a SYN-ACK within a second (a non-blocking connect
/// that completes). A refused peer under a socket filter gets nothing back.
fn syn_answered(src: &str, port: u16) -> bool {
    let src: std::net::Ipv4Addr = src.parse().unwrap();
    let sock = socket2_like(src);
    let d = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
    // SAFETY: a valid sockaddr_in and a socket owned here; one pollfd.
    unsafe {
        libc::connect(
            sock.as_raw_fd(),
            (&d as *const libc::sockaddr_in).cast(),
            len,
        );
        let mut p = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        if libc::poll(&mut p, 1, 1000) != 1 {
            return false;
        }
        let (mut e, mut l) = (0i32, 4u32);
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut e as *mut i32).cast(),
            &mut l,
        );
        e == 0
    }
}

/// A non-blocking TCP socket bound to `src`.
fn socket2_like(src: std::net::Ipv4Addr) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let a = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(src).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: plain socket calls with a valid sockaddr; the fd is owned at once.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        assert!(fd >= 0);
        let o = std::os::fd::OwnedFd::from_raw_fd(fd);
        let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        assert_eq!(
            libc::bind(fd, (&a as *const libc::sockaddr_in).cast(), len),
            0
        );
        o
    }
}

/// An allowed peer from `src`: served `hello N\n` (returned).
fn served(src: &str, port: u16) -> String {
    let b = received_by(src, port, b"").unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8(b).unwrap()
}

/// Wait (bounded) until a peer from `src` gets no SYN-ACK any more.
fn until_dropped(src: &str, port: u16) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if !syn_answered(src, port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn mode_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("sockexit: note: accepts: "))
        .unwrap_or_else(|| panic!("no mode line in {stderr:?}"))
}

#[test]
fn the_mode_is_chosen_said_and_refused_when_the_policy_does_not_qualify() {
    let Some(t) = start("supf-mode") else { return };
    let ok = t.policy("ok.yaml", "");
    let o = run(t.sup(&ok, &["bogus", "0"]));
    assert!(
        mode_line(&o.stderr).contains("accept-by-filter mode: accepts are not notified"),
        "{o:?}"
    );
    // `--accept` is an option of run: before `--`.
    let mut c = t.s.sup_under(&ok, &t.fsrv);
    let args: Vec<_> = c.get_args().map(|a| a.to_owned()).collect();
    c = clean(BIN);
    c.env("SOCKEXIT_RUN_DIR", t.s.run_dir())
        .args(&args[..2])
        .arg("--accept=notify")
        .args(&args[2..])
        .args(["bogus", "0"]);
    let o = run(c);
    assert_eq!(
        mode_line(&o.stderr),
        "sockexit: note: accepts: notified accepts (--accept=notify)"
    );
    let cases = [
        (
            "users.yaml",
            policy("  - { name: admins, action: allow, calls: [accept], users: [0] }\n"),
            "rule `admins` looks at users",
        ),
        (
            "dynamic.yaml",
            policy("  - { name: banned, action: deny, calls: [accept], remote: [\"@ban\"] }\n")
                .replace("rules:", "sets:\n  ban: { dynamic: true }\nrules:"),
            "rule `banned` looks at a dynamic set",
        ),
        (
            "nostealth.yaml",
            policy("").replace("stealth: true", "stealth: false"),
            "does not set `stealth: true`",
        ),
        (
            "audit.yaml",
            policy("").replace("log: off", "log: stderr, events: all"),
            "`audit.events: all`",
        ),
        (
            "auditmode.yaml",
            policy("").replace("stealth: true", "stealth: true\nmode: audit"),
            "`mode: audit`",
        ),
    ];
    for (name, text, why) in cases {
        let p = t.s.dir.write(name, &text);
        let o = run(t.sup(&p, &["bogus", "0"]));
        let l = mode_line(&o.stderr);
        assert!(
            l.contains("notified accepts (accept-by-filter mode not chosen: ") && l.contains(why),
            "{name}: {l}"
        );
        let mut c = clean(BIN);
        c.env("SOCKEXIT_RUN_DIR", t.s.run_dir())
            .args(["run", "--supervise", "--accept=filter", "--policy"])
            .arg(&p)
            .arg("--")
            .arg(&t.fsrv)
            .args(["bogus", "0"]);
        let o = run(c);
        assert_eq!(o.code, Some(1), "{name}: {o:?}");
        assert!(
            o.stderr
                .contains("--accept=filter: accept-by-filter mode cannot be used")
                && o.stderr.contains(why),
            "{name}: {o:?}"
        );
    }
}

#[test]
fn refused_peers_get_no_syn_ack_and_the_program_cannot_remove_the_filter() {
    let Some(t) = start("supf-serve") else { return };
    let port = free_port();
    let mut p = t.proc(
        "serve",
        t.sup(&t.policy("p.yaml", ""), &["serve", &port.to_string()]),
    );
    // EPERM (1) for the listener's filter; the UDP socket's filter is performed.
    for l in [
        "detach:1",
        "attach:1",
        "lock:1",
        "mptcp:93",
        "getfd:1",
        "udp-attach:0",
        "udp-dropped:1",
        "udp-detach:0",
        "udp-received:1",
        "listening",
    ] {
        assert_eq!(p.line(T), l, "{}", p.output());
    }
    for n in 1..=3 {
        assert!(
            !syn_answered("127.0.0.2", port),
            "round {n}: refused peer answered"
        );
        assert_eq!(served("127.0.0.1", port), format!("hello {n}\n"));
    }
    assert!(mode_line(&p.output()).contains("accept-by-filter mode"));
}

/// `SO_ATTACH_BPF` (an eBPF program the program loaded itself; root may load one
/// even with unprivileged eBPF disabled) on a UDP socket is performed for it: the
/// datagram is dropped while attached, received once detached.
#[test]
fn the_program_attaches_an_ebpf_filter_to_its_udp_socket() {
    let Some(t) = start("supf-bpf") else { return };
    let mut p = t.proc("udpbpf", t.sup(&t.policy("p.yaml", ""), &["udpbpf", "0"]));
    let first = p.line(T);
    if let Some(e) = first.strip_prefix("bpf-load-error:") {
        say(&format!(
            "SKIPPED: bpf(BPF_PROG_LOAD) fails here (errno {e})"
        ));
        return;
    }
    assert_eq!(first, "bpf-loaded", "{}", p.output());
    for l in [
        "udp-bpf-attach:0",
        "udp-dropped:1",
        "udp-detach:0",
        "udp-received:1",
    ] {
        assert_eq!(p.line(T), l, "{}", p.output());
    }
    assert_eq!(p.exited_within(T).and_then(|s| s.code()), Some(0));
    assert!(mode_line(&p.output()).contains("accept-by-filter mode"));
}

/// A `listen` on an IP stream socket that is not TCP (SCTP) is refused `EACCES`:
/// no socket filter would judge its accepts. SKIPPED on a kernel without SCTP.
#[test]
fn an_sctp_listen_is_refused() {
    let Some(t) = start("supf-sctp") else { return };
    // SAFETY: plain socket call; the fd is closed at once.
    let probe = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
    if probe < 0 {
        say(&format!(
            "SKIPPED: this kernel has no SCTP ({})",
            std::io::Error::last_os_error()
        ));
        return;
    }
    // SAFETY: the fd made just above, owned here.
    unsafe { libc::close(probe) };
    let port = free_port();
    let mut p = t.proc(
        "sctp",
        t.sup(&t.policy("p.yaml", ""), &["sctp", &port.to_string()]),
    );
    assert_eq!(p.line(T), "sctp-bind:0", "{}", p.output());
    assert_eq!(
        p.line(T),
        format!("sctp-listen:{}", libc::EACCES),
        "{}",
        p.output()
    );
    assert_eq!(p.exited_within(T).and_then(|s| s.code()), Some(0));
    let err = p.output();
    assert!(mode_line(&err).contains("accept-by-filter mode"), "{err}");
    assert!(
        err.contains("listen refused on an IP stream socket that is not TCP (SCTP)"),
        "{err}"
    );
}

/// A later generation whose filter would be too large fails closed: every listener,
/// and one made after the apply, gets the drop-all filter, so a peer allowed before
/// gets no SYN-ACK; said once.
#[test]
fn a_later_generation_too_large_drops_every_syn() {
    let Some(t) = start("supf-large") else {
        return;
    };
    let port = free_port();
    let flag = t.s.dir.path().join("second");
    let args = ["late", &port.to_string(), flag.to_str().unwrap()];
    let mut p = t.proc("late", t.sup(&t.policy("p1.yaml", ""), &args));
    p.expect("listening", T);
    assert_eq!(served("127.0.0.1", port), "hello 1\n");
    assert_eq!(served("127.0.0.3", port), "hello 2\n");
    // 5000 addresses no two of which merge into a prefix: more than 4096
    // instructions.
    let many: Vec<String> = (0..5000u32)
        .map(|i| format!("10.{}.{}.{}", i / 128 % 256, i / 2 % 64, (i % 2) * 2 + 1))
        .collect();
    let big = format!(
        "  - {{ name: many, action: deny, calls: [accept], remote: [{}] }}\n",
        many.join(", ")
    );
    t.apply(&t.policy("p1.yaml", &big));
    assert!(until_dropped("127.0.0.1", port), "{}", p.output());
    assert!(!syn_answered("127.0.0.3", port));
    assert!(!syn_answered("127.0.0.1", port));
    // A listen under generation 2: the same filter, and no second line.
    std::fs::write(&flag, "").unwrap();
    let second = loop {
        let l = p.line(T);
        if let Some(n) = l.strip_prefix("second:") {
            break n.parse::<u16>().unwrap();
        }
    };
    assert!(!syn_answered("127.0.0.1", second), "{}", p.output());
    let err = p.output();
    let lines: Vec<_> = err
        .lines()
        .filter(|l| l.contains("does not qualify for accept-by-filter mode"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("generation 2") && lines[0].contains("too large"),
        "{}",
        lines[0]
    );
    p.kill();
}

#[test]
fn apply_reaches_a_listener_held_only_by_an_orphaned_grandchild() {
    let Some(t) = start("supf-fork") else { return };
    let port = free_port();
    let mut p = t.proc(
        "fork",
        t.sup(&t.policy("p1.yaml", ""), &["fork", &port.to_string()]),
    );
    p.expect("listening", T);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(p.line(T));
    }
    seen.sort();
    assert_eq!(seen, ["grandchild-serving", "parent-closed"]);
    assert_eq!(served("127.0.0.3", port), "hello 1\n");
    assert!(!syn_answered("127.0.0.2", port));
    let ban = "  - { name: no-127-0-0-3, action: deny, calls: [accept], remote: [127.0.0.3] }\n";
    t.apply(&t.policy("p1.yaml", ban));
    assert!(until_dropped("127.0.0.3", port), "{}", p.output());
    assert!(served("127.0.0.1", port).starts_with("hello "));
    p.kill();
}

#[test]
fn apply_reaches_a_listener_inherited_at_start() {
    let Some(t) = start("supf-inherit") else {
        return;
    };
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let raw = l.as_raw_fd();
    let mut c = t.sup(&t.policy("p1.yaml", ""), &["inherit", "3"]);
    use std::os::unix::process::CommandExt;
    // SAFETY: dup2 is async-signal-safe; fd 3 is then not close-on-exec, so
    // sockexit holds the listener and CMD inherits it (socket activation).
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut p = t.proc("inherit", c);
    p.expect("listening", T);
    drop(l);
    assert!(
        !syn_answered("127.0.0.2", port),
        "inherited listener unfiltered"
    );
    assert_eq!(served("127.0.0.3", port), "hello 1\n");
    let ban = "  - { name: no-127-0-0-3, action: deny, calls: [accept], remote: [127.0.0.3] }\n";
    t.apply(&t.policy("p1.yaml", ban));
    assert!(until_dropped("127.0.0.3", port), "{}", p.output());
    assert!(served("127.0.0.1", port).starts_with("hello "));
    p.kill();
}

#[test]
fn a_later_generation_that_does_not_qualify_fails_closed() {
    let Some(t) = start("supf-closed") else {
        return;
    };
    let port = free_port();
    let mut p = t.proc(
        "serve",
        t.sup(&t.policy("p1.yaml", ""), &["serve", &port.to_string()]),
    );
    while p.line(T) != "listening" {}
    assert_eq!(served("127.0.0.3", port), "hello 1\n");
    // Generation 2: 127.0.0.3 only for root (which the server is: notified accepts
    // would let it in); 127.0.0.1 for anyone; default deny.
    let g2 = policy(
        "  - { name: root-only, action: allow, calls: [accept], users: [0], remote: [127.0.0.3] }\n  \
         - { name: loopback, action: allow, calls: [accept], remote: [127.0.0.1] }\n",
    )
    .replace("default: allow", "default: deny\n");
    let g2 = g2.replace(
        "rules:\n",
        "rules:\n  - { name: listen, action: allow, calls: [listen, connect] }\n",
    );
    let path = t.s.dir.write("p1.yaml", &g2);
    t.apply(&path);
    assert!(until_dropped("127.0.0.3", port), "{}", p.output());
    assert!(served("127.0.0.1", port).starts_with("hello "));
    let err = p.output();
    let line = err
        .lines()
        .find(|l| l.contains("does not qualify for accept-by-filter mode"))
        .unwrap_or_else(|| panic!("no fail-closed line: {err}"));
    assert!(
        line.contains("generation 2") && line.contains("rule `root-only` looks at the user"),
        "{line}"
    );
    assert!(line.contains("until the service restarts"), "{line}");
    p.kill();
}

#[test]
fn the_program_rebinds_its_port_at_once_after_a_reload() {
    let Some(t) = start("supf-rebind") else {
        return;
    };
    let port = free_port();
    let mut p = t.proc(
        "rebind",
        t.sup(&t.policy("p1.yaml", ""), &["rebind", &port.to_string()]),
    );
    p.expect("listening", T);
    assert_eq!(served("127.0.0.1", port), "hello 1\n");
    p.expect("accepted", T);
    p.expect("listening", T);
    let ban = "  - { name: no-127-0-0-3, action: deny, calls: [accept], remote: [127.0.0.3] }\n";
    t.apply(&t.policy("p1.yaml", ban));
    assert!(until_dropped("127.0.0.3", port), "{}", p.output());
    // The probes of until_dropped that got through were served too.
    while p.try_line(Duration::from_millis(300)).is_some() {}
    for _ in 0..3 {
        assert!(served("127.0.0.1", port).starts_with("hello "));
        p.expect("accepted", T);
        // closed and bound again: no EADDRINUSE from a duplicate kept somewhere.
        assert_eq!(p.line(T), "listening", "{}", p.output());
    }
    p.kill();
}

/// Receive one fd over `s` (SCM_RIGHTS).
fn recv_fd(s: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr points at locals alive for the call; the cmsg macros stay in
    // cbuf; the received fd is checked before it is owned.
    unsafe {
        let mut m: libc::msghdr = std::mem::zeroed();
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        m.msg_control = cbuf.as_mut_ptr().cast();
        m.msg_controllen = std::mem::size_of_val(&cbuf);
        // Close-on-exec: the other tests' sockexit processes must not inherit it.
        assert_eq!(
            libc::recvmsg(s.as_raw_fd(), &mut m, libc::MSG_CMSG_CLOEXEC),
            1
        );
        let c = libc::CMSG_FIRSTHDR(&m);
        assert!(!c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS);
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>());
        std::os::fd::OwnedFd::from_raw_fd(fd)
    }
}

/// The residual, as documented: a listener passed out of the tree keeps the filter
/// it had at an apply, and the supervisor says so (after 10 s of looking for it).
#[test]
fn a_listener_passed_out_of_the_tree_is_reported_at_an_apply() {
    let Some(t) = start("supf-passout") else {
        return;
    };
    let port = free_port();
    let path = t.s.dir.path().join("pass.sock");
    let u = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let args = ["passout", &port.to_string(), path.to_str().unwrap()];
    let mut p = t.proc("passout", t.sup(&t.policy("p1.yaml", ""), &args));
    p.expect("listening", T);
    let (conn, _) = u.accept().unwrap();
    let held = recv_fd(&conn);
    p.expect("passed", T);
    let l = std::net::TcpListener::from(held);
    l.set_nonblocking(true).unwrap();
    assert!(
        !syn_answered("127.0.0.2", port),
        "the filter went with the socket"
    );
    assert!(syn_answered("127.0.0.3", port));
    let ban = "  - { name: no-127-0-0-3, action: deny, calls: [accept], remote: [127.0.0.3] }\n";
    t.apply(&t.policy("p1.yaml", ban));
    let started = Instant::now();
    let line = loop {
        let err = p.output();
        if let Some(l) = err
            .lines()
            .find(|l| l.contains("still listens but no process"))
        {
            break l.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not reported: {err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        line.contains("its filter stays that of generation 1"),
        "{line}"
    );
    // Held outside the tree: generation 1's filter, which let 127.0.0.3 in.
    assert!(syn_answered("127.0.0.3", port));
    p.kill();
}

#[test]
fn a_static_go_server_is_served_in_this_mode() {
    let Some(t) = start("supf-go") else { return };
    let Some(go) = t.s.go("go-server", GO_SERVER, false) else {
        return;
    };
    let port = free_port();
    let mut c = t.s.sup_under(&t.policy("p.yaml", ""), &go);
    c.args([&port.to_string(), "3"]);
    let mut p = t.proc("go", c);
    p.expect("listening", T);
    for n in 1..=3 {
        assert!(
            !syn_answered("127.0.0.2", port),
            "round {n}: refused peer answered"
        );
        assert_eq!(served("127.0.0.1", port), format!("hello {n}\n"));
    }
    assert_eq!(p.exited_within(T).and_then(|s| s.code()), Some(0));
    assert!(mode_line(&p.output()).contains("accept-by-filter mode"));
}

#[test]
fn nginx_serves_allowed_peers_and_drops_refused_ones() {
    if !root() {
        return;
    }
    let Some(nginx) = require("nginx") else {
        return;
    };
    let s = setup("supf-nginx");
    let port = free_port();
    let dir = s.dir.path().join("nginx");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let d = dir.display();
    let conf = s.dir.write(
        "nginx.conf",
        &format!(
            "daemon off;\nmaster_process on;\nworker_processes 2;\nerror_log {d}/logs/error.log;\n\
             pid {d}/nginx.pid;\nevents {{ worker_connections 64; }}\nhttp {{\n access_log off;\n \
             client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};\n \
             uwsgi_temp_path {d}; scgi_temp_path {d};\n \
             server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"page\\n\"; }} }}\n}}\n"
        ),
    );
    let pol = s.dir.write("p.yaml", &policy(""));
    let mut c = s.sup_under(&pol, &nginx);
    c.arg("-p").arg(&dir).arg("-c").arg(&conf);
    let mut p = Proc::start(c, s.dir.path(), Stdio::null());
    p.wait_listening(port, T);
    for _ in 0..5 {
        let b = received_by("127.0.0.1", port, b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let b = String::from_utf8_lossy(&b);
        assert!(
            b.starts_with("HTTP/1.1 200 OK") && b.ends_with("\r\n\r\npage\n"),
            "{b}"
        );
        assert!(!syn_answered("127.0.0.2", port), "refused peer answered");
    }
    assert!(mode_line(&p.output()).contains("accept-by-filter mode"));
    p.kill();
}
