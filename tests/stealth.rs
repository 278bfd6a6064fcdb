//! Stealth (issue 8) end to end: sample servers under the preload with `stealth: true`.
//! A refused peer's SYN is dropped by the socket filter attached at listen, so its
//! connect gets no answer at all (a timeout), where without stealth the handshake
//! completes and the connection is reset. Allowed peers are served as before.

mod common;
#[path = "../examples/common/mod.rs"]
mod sample;

use common::{example_path, preloaded, TempDir};
use sample::raw_addr;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// How long a connect may stay unanswered before we call it a timeout. Loopback
/// answers a SYN in microseconds, so a second of silence is a dropped SYN.
const SILENCE: Duration = Duration::from_secs(1);
/// Upper bound for anything that should happen promptly (server start, a banner).
const PATIENCE: Duration = Duration::from_secs(10);

const LO: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const LO2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LO6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A sample server under the preload, killed on drop.
struct Server {
    child: Child,
    out: Receiver<String>,
    addr: SocketAddr,
    /// The rest of the `listening ...` line (own_filter_server adds `filter=N`).
    extra: String,
}

impl Server {
    fn start(example: &str, policy: &Path, args: &[&str]) -> Server {
        let mut cmd: Command = preloaded(example_path(example), policy);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {example}: {e}"));
        let stdout = child.stdout.take().expect("piped");
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Server {
            child,
            out,
            addr: SocketAddr::new(LO, 0),
            extra: String::new(),
        };
        let first = s.out.recv_timeout(PATIENCE).unwrap_or_default();
        let Some(rest) = first.strip_prefix("listening ") else {
            let err = s.stop();
            panic!("{example}: expected `listening ADDR`, got {first:?}; stderr:\n{err}");
        };
        let (addr, extra) = rest.split_once(' ').unwrap_or((rest, ""));
        s.addr = addr.parse().expect("listening address");
        s.extra = extra.to_string();
        s
    }

    /// The port on `ip` (to reach a wildcard listener over a given loopback address).
    fn at(&self, ip: IpAddr) -> SocketAddr {
        SocketAddr::new(ip, self.addr.port())
    }

    /// Kill the server; its stdout lines not yet read and its stderr.
    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }

    /// `accepted ...` lines printed so far.
    fn accepted(&self) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(l) = self.out.recv_timeout(Duration::from_millis(200)) {
            if let Some(p) = l.strip_prefix("accepted ") {
                v.push(p.to_string());
            }
        }
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a peer experienced.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Handshake completed; these bytes, then EOF.
    Served(Vec<u8>),
    /// Handshake completed, then a reset or EOF with zero bytes (accept-time refusal).
    Reset,
    /// No SYN-ACK and no RST within [`SILENCE`]: the SYN was dropped.
    Timeout,
    /// Something else (the error).
    Other(String),
}

/// A socket of `dst`'s family bound to `src` (port `sport`, 0 = any).
fn bound_socket(src: IpAddr, sport: u16) -> OwnedFd {
    let family = if src.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) takes plain integers.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh socket we own from here on.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let (ss, len) = raw_addr(&SocketAddr::new(src, sport));
    // SAFETY: ss holds a sockaddr of len bytes and outlives the call.
    let r = unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) };
    assert_eq!(r, 0, "bind {src}: {}", std::io::Error::last_os_error());
    owned
}

/// Connect from `src` to `dst` (non-blocking connect, then poll for [`SILENCE`]) and
/// read what the server sends.
fn visit(src: IpAddr, dst: SocketAddr) -> Seen {
    visit_with(bound_socket(src, 0), dst)
}

fn visit_with(sock: OwnedFd, dst: SocketAddr) -> Seen {
    visit_sending(sock, dst, &[])
}

/// Like [`visit`], and once connected send `data` (from a second thread, so an echo
/// cannot deadlock) then half-close.
fn visit_sending(sock: OwnedFd, dst: SocketAddr, data: &[u8]) -> Seen {
    let fd = sock.as_raw_fd();
    let (ss, len) = raw_addr(&dst);
    // SAFETY: ss holds a sockaddr of len bytes and outlives the call.
    let r = unsafe { libc::connect(fd, (&ss as *const libc::sockaddr_storage).cast(), len) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Seen::Other(e.to_string());
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, SILENCE.as_millis() as i32) };
        if n == 0 {
            return Seen::Timeout;
        }
    }
    let mut stream = TcpStream::from(sock);
    match stream.take_error() {
        Ok(None) => {}
        Ok(Some(e)) if e.kind() == ErrorKind::ConnectionReset => return Seen::Reset,
        Ok(Some(e)) | Err(e) => return Seen::Other(e.to_string()),
    }
    stream.set_nonblocking(false).expect("blocking");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let writer = (!data.is_empty()).then(|| {
        let mut w = stream.try_clone().expect("clone");
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
            let _ = w.shutdown(std::net::Shutdown::Write);
        })
    });
    let _joined = Joined(writer);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) if bytes.is_empty() => return Seen::Reset,
            Ok(0) => return Seen::Served(bytes),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset && bytes.is_empty() => {
                return Seen::Reset
            }
            Err(e) => return Seen::Other(format!("{e} after {bytes:?}")),
        }
    }
}

/// Joins the writer thread when the visit ends, whichever way.
struct Joined(Option<std::thread::JoinHandle<()>>);

impl Drop for Joined {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

/// Whether this process may attach a socket filter. Stock kernels allow any process;
/// some hardened ones (seen on a 6.18 VM) refuse it with EPERM without CAP_NET_ADMIN.
/// Then the library logs that stealth is partial and refused peers are reset at accept.
fn filters_allowed() -> bool {
    let s = bound_socket(LO, 0);
    let mut prog = [libc::sock_filter {
        code: 0x06, // ret #k
        jt: 0,
        jf: 0,
        k: 0xffff_ffff,
    }];
    let fprog = libc::sock_fprog {
        len: 1,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: fprog points at prog, which outlives the call.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    let e = std::io::Error::last_os_error();
    assert!(
        r == 0 || e.raw_os_error() == Some(libc::EPERM),
        "probe: {e}"
    );
    r == 0
}

/// What a peer refused by a filter experiences: a timeout, or a reset at accept
/// where filters are not permitted.
fn dropped() -> Seen {
    if filters_allowed() {
        Seen::Timeout
    } else {
        Seen::Reset
    }
}

/// Stderr of a server whose listener should have got a complete filter.
fn assert_full_stealth(err: &str) {
    if filters_allowed() {
        assert!(!err.contains("stealth is partial"), "{err}");
    } else {
        assert_eq!(
            err.matches("stealth is partial").count(),
            1,
            "the EPERM fallback is logged once:\n{err}"
        );
        assert!(err.contains("Operation not permitted"), "{err}");
    }
}

const BANNER: &[u8] = b"220 sockexit banner\r\n";
const DUAL: &[u8] = b"220 sockexit dualstack\r\n";

fn served(b: &[u8]) -> Seen {
    Seen::Served(b.to_vec())
}

/// Allow 127.0.0.1 only, on accept; listen and connect allowed.
fn lo_only(stealth: bool) -> String {
    format!(
        r#"version: 1
default: deny
stealth: {stealth}
audit: {{ log: off }}
rules:
  - {{ name: listen, action: allow, calls: [listen] }}
  - {{ name: lo, action: allow, calls: [accept], remote: [127.0.0.1] }}
"#
    )
}

#[test]
fn refused_peer_times_out_on_v4_wildcard_listener_and_is_reset_without_stealth() {
    let dir = TempDir::new("stealth-v4");
    for stealth in [true, false] {
        let policy = dir.write("policy.yaml", &lo_only(stealth));
        let mut s = Server::start("banner_server", &policy, &["0.0.0.0:0"]);
        assert_eq!(
            visit(LO, s.at(LO)),
            served(BANNER),
            "stealth {stealth}: 127.0.0.1"
        );
        let refused = visit(LO2, s.at(LO)); // 127.0.0.2 -> 127.0.0.1
        let refused_other_dst = visit(LO2, s.at(LO2)); // 127.0.0.2 -> 127.0.0.2
        let expected = if stealth { dropped() } else { Seen::Reset };
        assert_eq!(refused, expected, "stealth {stealth}: 127.0.0.2");
        assert_eq!(
            refused_other_dst, expected,
            "stealth {stealth}: 127.0.0.2 to 127.0.0.2"
        );
        // Allowed again after the refusals: the filter drops only the refused peer.
        assert_eq!(
            visit(LO, s.at(LO)),
            served(BANNER),
            "stealth {stealth}: again"
        );
        let acc = s.accepted();
        assert_eq!(
            acc.len(),
            2,
            "only the allowed peer reaches the server: {acc:?}"
        );
        assert!(acc.iter().all(|a| a.starts_with("127.0.0.1:")), "{acc:?}");
        let err = s.stop();
        if stealth {
            assert_full_stealth(&err);
        } else {
            assert!(!err.contains("stealth"), "{err}");
        }
    }
}

#[test]
fn accepted_connections_inherit_the_filter_and_allowed_data_flows_both_ways() {
    let dir = TempDir::new("stealth-echo");
    let policy = dir.write("policy.yaml", &lo_only(true));
    let s = Server::start("threaded_server", &policy, &["0.0.0.0:0"]);
    // 256 KiB through the accepted socket, which carries the listener's filter: every
    // segment and ACK from the allowed peer must pass it.
    let data: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let mut expected = b"220 sockexit threaded\r\n".to_vec();
    expected.extend_from_slice(&data);
    assert_eq!(
        visit_sending(bound_socket(LO, 0), s.at(LO), &data),
        Seen::Served(expected),
        "echo from 127.0.0.1"
    );
    assert_eq!(visit(LO2, s.at(LO)), dropped(), "127.0.0.2");
}

#[test]
fn refused_peers_time_out_on_dual_stack_listener_with_ipv6_rules() {
    let dir = TempDir::new("stealth-dual");
    let policy = dir.write(
        "policy.yaml",
        r#"version: 1
default: deny
stealth: true
audit: { log: off }
rules:
  - { name: listen, action: allow, calls: [listen] }
  - { name: no-v6-loopback, action: deny, calls: [accept], remote: ["::1"] }
  - { name: lo, action: allow, calls: [accept], remote: ["127.0.0.1", "::/0"] }
"#,
    );
    let mut s = Server::start("dualstack_server", &policy, &["[::]:0"]);
    assert_eq!(visit(LO, s.at(LO)), served(DUAL), "127.0.0.1 (v4-mapped)");
    assert_eq!(
        visit(LO6, s.at(LO6)),
        dropped(),
        "::1 is denied by an IPv6 rule"
    );
    assert_eq!(visit(LO2, s.at(LO)), dropped(), "127.0.0.2: default deny");
    let acc = s.accepted();
    assert_eq!(
        acc,
        vec![acc[0].clone()],
        "one connection accepted: {acc:?}"
    );
    assert!(acc[0].starts_with("[::ffff:127.0.0.1]:"), "{acc:?}");
    let err = s.stop();
    assert_full_stealth(&err);
}

#[test]
fn allowed_ipv6_peer_is_served_and_denied_v4_times_out_on_dual_stack() {
    let dir = TempDir::new("stealth-v6ok");
    let policy = dir.write(
        "policy.yaml",
        r#"version: 1
default: allow
stealth: true
audit: { log: off }
rules:
  - { name: no-v4, action: deny, calls: [accept], families: [ipv4] }
"#,
    );
    let s = Server::start("dualstack_server", &policy, &["[::]:0"]);
    assert_eq!(visit(LO6, s.at(LO6)), served(DUAL), "::1");
    assert_eq!(
        visit(LO, s.at(LO)),
        dropped(),
        "127.0.0.1 (family ipv4 denied)"
    );
}

#[test]
fn wildcard_listener_judges_the_destination_address_in_the_filter() {
    let dir = TempDir::new("stealth-dst");
    let policy = dir.write(
        "policy.yaml",
        r#"version: 1
default: deny
stealth: true
audit: { log: off }
rules:
  - { name: listen, action: allow, calls: [listen] }
  - { name: via-lo, action: allow, calls: [accept], local: [127.0.0.1] }
"#,
    );
    let s = Server::start("banner_server", &policy, &["0.0.0.0:0"]);
    let lo3 = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    assert_eq!(visit(LO, s.at(LO)), served(BANNER), "to 127.0.0.1");
    assert_eq!(visit(LO, s.at(lo3)), dropped(), "to 127.0.0.3");
}

#[test]
fn unbound_listener_judges_the_destination_port_in_the_filter() {
    let dir = TempDir::new("stealth-dport");
    // listen() on an unbound socket: the port is chosen by the kernel after the
    // filter is compiled, so the filter itself reads the destination port. Only the
    // kernel's ephemeral range is allowed, so a filter reading the wrong bytes (the
    // random sequence number next to the port) would drop some of several SYNs.
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|n| n.parse::<u16>());
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .unwrap_or((32768, 60999));
    let policy = dir.write(
        "policy.yaml",
        &format!(
            r#"version: 1
default: deny
stealth: true
audit: {{ log: off }}
rules:
  - {{ name: listen, action: allow, calls: [listen] }}
  - {{ name: lo-ephemeral, action: allow, calls: [accept], remote: [127.0.0.1], local_ports: ["{}-{}"] }}
"#,
            range.0, range.1
        ),
    );
    let mut s = Server::start(
        "own_filter_server",
        &policy,
        &["0.0.0.0:0", "--no-filter", "--unbound"],
    );
    let attached: usize = s
        .extra
        .strip_prefix("filter=")
        .and_then(|n| n.parse().ok())
        .expect("filter=N");
    assert_eq!(
        attached > 0,
        filters_allowed(),
        "sockexit's filter: {}",
        s.extra
    );
    assert!((range.0..=range.1).contains(&s.addr.port()), "{}", s.addr);
    for i in 0..8 {
        assert_eq!(
            visit(LO, s.at(LO)),
            served(b"220 own filter\r\n"),
            "127.0.0.1, connection {i}"
        );
    }
    assert_eq!(visit(LO2, s.at(LO)), dropped(), "127.0.0.2");
    let err = s.stop();
    assert_full_stealth(&err);
}

#[test]
fn source_port_rule_is_enforced_by_the_filter() {
    let dir = TempDir::new("stealth-port");
    // The client's source port is fixed before the policy names it.
    let sock = bound_socket(LO, 0);
    let sport = local_port(&sock);
    // Bound while `sock` holds its port, so surely another one (an unbound client
    // made after `sock` is closed could be given the same port again).
    let other = bound_socket(LO, 0);
    assert_ne!(local_port(&other), sport);
    let policy = dir.write(
        "policy.yaml",
        &format!(
            "version: 1\ndefault: allow\nstealth: true\naudit: {{ log: off }}\nrules:\n  - {{ name: p, action: deny, calls: [accept], remote_ports: [{sport}] }}\n"
        ),
    );
    let s = Server::start("banner_server", &policy, &["127.0.0.1:0"]);
    assert_eq!(visit_with(sock, s.addr), dropped(), "source port {sport}");
    assert_eq!(
        visit_with(other, s.addr),
        served(BANNER),
        "any other source port"
    );
}

fn local_port(sock: &OwnedFd) -> u16 {
    // SAFETY: all-zero is a valid sockaddr_storage; getsockname writes at most sl bytes.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut sl = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: ss/sl are live locals of the sizes given.
    let r = unsafe {
        libc::getsockname(
            sock.as_raw_fd(),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut sl,
        )
    };
    assert_eq!(r, 0);
    // SAFETY: an AF_INET socket's name is a sockaddr_in.
    let sin = unsafe { &*(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
    u16::from_be(sin.sin_port)
}

/// A set file with `n` prefixes plus 127.0.0.2.
fn set_file(dir: &TempDir, nets: impl Iterator<Item = String>) -> std::path::PathBuf {
    let mut text = String::from("# generated\n127.0.0.2\n");
    for n in nets {
        text.push_str(&n);
        text.push('\n');
    }
    dir.write("drop.txt", &text)
}

fn blocklist_policy(dir: &TempDir, set: &Path) -> std::path::PathBuf {
    dir.write(
        "policy.yaml",
        &format!(
            "version: 1\ndefault: allow\nstealth: true\naudit: {{ log: off }}\nsets:\n  drop: {{ file: {} }}\nrules:\n  - {{ name: drop-listed, action: deny, calls: [accept], remote: [\"@drop\"] }}\n",
            set.display()
        ),
    )
}

#[test]
fn ten_thousand_merging_prefixes_compile_and_drop() {
    let dir = TempDir::new("stealth-10k");
    // 10,000 adjacent /24s: 10.0.0.0 - 10.39.15.255, one range once merged.
    let set = set_file(
        &dir,
        (0..10_000u32).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256)),
    );
    let policy = blocklist_policy(&dir, &set);
    let mut s = Server::start("banner_server", &policy, &["0.0.0.0:0"]);
    assert_eq!(visit(LO2, s.at(LO)), dropped(), "listed 127.0.0.2");
    assert_eq!(visit(LO, s.at(LO)), served(BANNER), "unlisted 127.0.0.1");
    let err = s.stop();
    assert_full_stealth(&err);
}

#[test]
fn a_filter_of_thousands_of_instructions_is_accepted_by_the_kernel() {
    let dir = TempDir::new("stealth-3400");
    // 3,400 scattered host addresses: a search tree ending in `jeq` chains, with `ja`
    // islands, about 3,950 instructions on a dual-stack listener: close to the
    // kernel's limit of 4,096.
    let set = set_file(
        &dir,
        (0..3_400u32).map(|i| {
            let x = i.wrapping_mul(2_654_435_761) & 0x00ff_ffff;
            Ipv4Addr::from(0x0a00_0000 | x).to_string()
        }),
    );
    let policy = blocklist_policy(&dir, &set);
    let mut s = Server::start("dualstack_server", &policy, &["[::]:0"]);
    assert_eq!(visit(LO2, s.at(LO)), dropped(), "listed 127.0.0.2");
    assert_eq!(visit(LO, s.at(LO)), served(DUAL), "unlisted 127.0.0.1");
    assert_eq!(visit(LO6, s.at(LO6)), served(DUAL), "unlisted ::1");
    let err = s.stop();
    assert_full_stealth(&err);
}

#[test]
fn ten_thousand_scattered_prefixes_fall_back_to_accept_time_reset() {
    let dir = TempDir::new("stealth-10k-scattered");
    // 10,000 distinct /32s spread over 10/8: 20,000 boundaries, far beyond 4096.
    let set = set_file(
        &dir,
        (0..10_000u32).map(|i| {
            let x = i.wrapping_mul(2_654_435_761) & 0x00ff_ffff;
            Ipv4Addr::from(0x0a00_0000 | x).to_string()
        }),
    );
    let policy = blocklist_policy(&dir, &set);
    let mut s = Server::start("banner_server", &policy, &["0.0.0.0:0"]);
    assert_eq!(
        visit(LO2, s.at(LO)),
        Seen::Reset,
        "listed 127.0.0.2: reset at accept"
    );
    assert_eq!(visit(LO, s.at(LO)), served(BANNER), "unlisted 127.0.0.1");
    let err = s.stop();
    let line = err
        .lines()
        .find(|l| l.contains("stealth is partial"))
        .unwrap_or_else(|| panic!("no partial-stealth warning in stderr:\n{err}"));
    assert!(line.contains("too large"), "{line}");
    assert_eq!(
        err.matches("stealth is partial").count(),
        1,
        "logged once per listener:\n{err}"
    );
}

/// Whether this process (and so the server it starts, which inherits its capabilities
/// when they are ambient or it is root) holds CAP_SETUID in its permitted set.
fn may_setuid() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let prm = status
        .lines()
        .find_map(|l| l.strip_prefix("CapPrm:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("CapPrm line");
    prm & (1 << 7) != 0
}

#[test]
fn users_rule_is_decided_at_listen_when_the_uid_cannot_change() {
    // SAFETY: geteuid takes no arguments and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let other = if uid == 4242 { 4243 } else { 4242 };
    let dir = TempDir::new("stealth-users");
    let policy = dir.write(
        "policy.yaml",
        &format!(
            r#"version: 1
default: deny
stealth: true
audit: {{ log: off }}
rules:
  - {{ name: listen, action: allow, calls: [listen] }}
  - {{ name: me-lo, action: allow, calls: [accept], users: [{uid}], remote: [127.0.0.1] }}
  - {{ name: other-lo2, action: allow, calls: [accept], users: [{other}], remote: [127.0.0.2] }}
"#
        ),
    );
    let mut s = Server::start("banner_server", &policy, &["0.0.0.0:0"]);
    assert_eq!(
        visit(LO, s.at(LO)),
        served(BANNER),
        "127.0.0.1: allowed for uid {uid}"
    );
    let lo2 = visit(LO2, s.at(LO));
    let lo3 = visit(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), s.at(LO));
    assert_eq!(lo3, dropped(), "127.0.0.3: no rule for any user");
    let err = s.stop();
    if uid == 0 || may_setuid() {
        // Root (or a holder of CAP_SETUID) may still switch users before accept:
        // 127.0.0.2 may be allowed then, so the filter lets it through and the
        // accept-time check resets it.
        assert_eq!(lo2, Seen::Reset, "127.0.0.2 as uid {uid}");
        assert!(
            err.contains("stealth is partial")
                && err.contains("rule `other-lo2` looks at the user"),
            "{err}"
        );
    } else {
        // A non-root process with one uid cannot change it: decided at listen.
        assert_eq!(lo2, dropped(), "127.0.0.2 as uid {uid}");
        assert_full_stealth(&err);
    }
}

#[test]
fn program_with_its_own_filter_keeps_it() {
    if !filters_allowed() {
        eprintln!("skipped: this kernel refuses socket filters to this process (EPERM)");
        return;
    }
    let dir = TempDir::new("stealth-own");
    let policy = dir.write("policy.yaml", &lo_only(true));
    let mut s = Server::start("own_filter_server", &policy, &["127.0.0.1:0"]);
    assert_eq!(
        s.extra, "filter=2",
        "the program's 2-instruction filter is still attached"
    );
    assert_eq!(
        visit(LO, s.addr),
        served(b"220 own filter\r\n"),
        "127.0.0.1"
    );
    assert_eq!(
        visit(LO2, s.addr),
        Seen::Reset,
        "127.0.0.2: refused at accept instead"
    );
    let acc = s.accepted();
    assert_eq!(acc.len(), 1, "{acc:?}");
    let err = s.stop();
    assert_eq!(
        err.matches("attached its own socket filter, which is kept")
            .count(),
        1,
        "{err}"
    );
}

#[test]
fn audit_mode_attaches_nothing() {
    let dir = TempDir::new("stealth-audit");
    let text = lo_only(true).replace("stealth: true", "stealth: true\nmode: audit");
    let policy = dir.write("policy.yaml", &text);
    let s = Server::start("banner_server", &policy, &["0.0.0.0:0"]);
    assert_eq!(
        visit(LO2, s.at(LO)),
        served(BANNER),
        "audit mode refuses nothing"
    );
}
