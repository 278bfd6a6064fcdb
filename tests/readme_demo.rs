//! The README's first set-up command, as a user runs it: `sockexit run --policy
//! policy.example.yaml -- banner_server 127.0.0.1:2121`, then `nc` from 127.0.0.1
//! (banner) and from 127.0.0.2 (nothing). Port 2121 is the one the README and the
//! example policy name; the test fails loudly if something else holds it.

mod common;
#[path = "../examples/common/mod.rs"]
mod sample;

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const IO: Duration = Duration::from_secs(3);
const DEMO: &str = "127.0.0.1:2121";

/// What a peer from `src` reads before EOF, reset or silence (never blocks past IO).
fn read_all_from(src: Ipv4Addr, dst: SocketAddr) -> (Vec<u8>, String) {
    // SAFETY: socket(2) takes plain integers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh socket; the stream owns and closes it.
    let mut stream = unsafe { TcpStream::from_raw_fd(fd) };
    let (sa, len) = sample::raw_addr(&SocketAddr::new(IpAddr::V4(src), 0));
    // SAFETY: sa holds a sockaddr of len bytes and outlives the call.
    let r = unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_storage).cast(), len) };
    assert_eq!(r, 0, "bind {src}: {}", std::io::Error::last_os_error());
    let (sa, len) = sample::raw_addr(&dst);
    // SAFETY: as above. Loopback: the handshake completes at once or is refused.
    if unsafe { libc::connect(fd, (&sa as *const libc::sockaddr_storage).cast(), len) } != 0 {
        return (
            Vec::new(),
            format!("connect: {}", std::io::Error::last_os_error()),
        );
    }
    stream.set_read_timeout(Some(IO)).unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 512];
    let end = loop {
        match stream.read(&mut buf) {
            Ok(0) => break "eof".to_string(),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break "reset".to_string(),
            Err(e) => break format!("error: {e}"),
        }
    };
    (bytes, end)
}

#[test]
fn readme_demo_serves_the_lan_and_refuses_the_blocklisted_peer_before_the_banner() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policy = repo.join("policy.example.yaml");
    let cli = common::cli_path();

    // `sockexit check` first, as an administrator would: valid, no warnings.
    let out = Command::new(&cli)
        .arg("check")
        .arg(&policy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check failed: {err}");
    assert!(
        !err.contains("warning"),
        "example policy has warnings: {err}"
    );

    let mut child = Command::new(&cli)
        .args(["run", "--policy"])
        .arg(&policy)
        .arg("--")
        .arg(common::example_path("banner_server"))
        .args([DEMO, "--max", "2"])
        .current_dir(repo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    if !first.starts_with("listening ") {
        let _ = child.kill();
        let mut e = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut e);
        panic!("demo server did not start on {DEMO} (port taken?): {first:?}\n{e}");
    }
    let dst: SocketAddr = DEMO.parse().unwrap();

    let (refused, how) = read_all_from(Ipv4Addr::new(127, 0, 0, 2), dst);
    let (served, _) = read_all_from(Ipv4Addr::new(127, 0, 0, 1), dst);

    // The refused peer did not count: --max 2 needs one more allowed connection.
    let (served2, _) = read_all_from(Ipv4Addr::new(127, 0, 0, 1), dst);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();

    assert!(
        refused.is_empty(),
        "127.0.0.2 read {:?} ({how}); it is on the example's block list",
        refused.escape_ascii().to_string()
    );
    assert_eq!(served, b"220 sockexit banner\r\n", "127.0.0.1 (in @lan)");
    assert_eq!(served2, b"220 sockexit banner\r\n", "127.0.0.1, second");
    assert!(
        status.success(),
        "banner_server exit: {status}; stderr:\n{err}"
    );

    // The example policy audits to stderr: one deny line naming the rule and the peer.
    let lines: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 1, "audit lines on stderr:\n{err}");
    let a = &lines[0];
    assert_eq!(a["verdict"], "deny");
    assert_eq!(a["rule"], "drop-blocklisted");
    assert_eq!(a["call"], "accept");
    assert_eq!(a["local"], DEMO);
    assert!(
        a["remote"].as_str().unwrap().starts_with("127.0.0.2:"),
        "{a}"
    );
    assert!(
        a["program"].as_str().unwrap().ends_with("/banner_server"),
        "{a}"
    );
}
