//! What the supervised-mode tests share: the C and Go programs built on the spot,
//! loopback sinks outside the supervisor, peers from a chosen source address, and the
//! checks a user makes (bytes received, errno, audit lines). Used by
//! `tests/supervise.rs` and `tests/supervise_live.rs`.
#![allow(dead_code)]

use crate::common::daemon::{missing, require, Proc};
use crate::common::TempDir;
use crate::support::{clean, programs, run, BIN};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const TCPX: &str = include_str!("tcpx.c");
pub const URING: &str = include_str!("uring.c");
pub const GO_CLIENT: &str = include_str!("client.go");
pub const GO_SERVER: &str = include_str!("server.go");
pub const T: Duration = Duration::from_secs(10);

pub struct Setup {
    pub dir: TempDir,
    pub policy: PathBuf,
    pub audit: PathBuf,
    /// A listener the policy lets clients reach, and one it refuses (by port).
    pub allowed: Sink,
    pub refused: Sink,
}

/// A loopback server outside the supervisor: sends `hello\n`, counts connections
/// and the bytes it received.
pub struct Sink {
    pub port: u16,
    pub conns: Arc<AtomicUsize>,
    pub received: Arc<std::sync::Mutex<Vec<u8>>>,
}

pub fn sink() -> Sink {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind sink");
    let port = l.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c2, r2) = (Arc::clone(&conns), Arc::clone(&received));
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            c2.fetch_add(1, Ordering::SeqCst);
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let mut b = [0u8; 64];
            if let Ok(n) = s.read(&mut b) {
                r2.lock().unwrap().extend_from_slice(&b[..n]);
            }
            let _ = s.write_all(b"hello\n");
        }
    });
    Sink {
        port,
        conns,
        received,
    }
}

pub fn setup(tag: &str) -> Setup {
    let dir = TempDir::new(tag);
    let (allowed, refused) = (sink(), sink());
    let audit = dir.path().join("audit.jsonl");
    let policy = dir.write(
        "policy.yaml",
        &format!(
            "version: 1\ndefault: allow\naudit: {{ log: {}, events: all }}\nrules:\n  \
             - {{ name: no-refused-port, action: deny, calls: [connect], remote_ports: [{}] }}\n  \
             - {{ name: no-127-0-0-2, action: deny, calls: [accept], remote: [127.0.0.2] }}\n",
            audit.display(),
            refused.port
        ),
    );
    Setup {
        dir,
        policy,
        audit,
        allowed,
        refused,
    }
}

impl Setup {
    pub fn sup(&self, program: &Path) -> Command {
        self.sup_under(&self.policy, program)
    }

    /// `sockexit run --supervise --policy POLICY -- PROGRAM`, publishing into this
    /// test's own run directory (`apply` and the supervisor's live policy use it).
    pub fn sup_under(&self, policy: &Path, program: &Path) -> Command {
        self.sup_with(policy, program, &[])
    }

    /// [`Setup::sup_under`] with more options of `run` (e.g. `--accept=notify`).
    pub fn sup_with(&self, policy: &Path, program: &Path, opts: &[&str]) -> Command {
        let mut c = clean(BIN);
        c.env("SOCKEXIT_RUN_DIR", self.run_dir())
            .args(["run", "--supervise"])
            .args(opts)
            .arg("--policy")
            .arg(policy)
            .arg("--")
            .arg(program);
        c
    }

    /// This test's `SOCKEXIT_RUN_DIR`.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// `name` built from `src` with gcc, `extra` flags, pthread (and liburing for a
    /// `uring*` name), or None (skipped) without a C toolchain that builds it.
    pub fn cc(&self, name: &str, src: &str, extra: &[&str]) -> Option<PathBuf> {
        let gcc = require("gcc")?;
        let libs: &[&str] = if name.starts_with("uring") {
            &["-lpthread", "-luring"]
        } else {
            &["-lpthread"]
        };
        match programs::gcc(&gcc, self.dir.path(), name, src, extra, libs) {
            Ok(p) => Some(p),
            Err(out) => missing(&format!(
                "a C toolchain for {name} (libc6-dev, liburing-dev: {})",
                programs::stderr(&out)
            )),
        }
    }

    /// `name` built from `src` by `go build`, or None (skipped) without Go.
    pub fn go(&self, name: &str, src: &str, cgo: bool) -> Option<PathBuf> {
        let go = require("go")?;
        Some(programs::go(&go, self.dir.path(), name, src, cgo))
    }

    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    /// A supervised client: reaches the allowed sink (served byte-exact), is
    /// refused EACCES for the refused one, which never sees a connection.
    pub fn clients(&self, program: &Path, pre: &[&str], post: impl Fn(&str, u16) -> Vec<String>) {
        let before = self.allowed.conns.load(Ordering::SeqCst);
        let o = run(self
            .sup(program)
            .args(pre)
            .args(post("127.0.0.1", self.allowed.port)));
        assert!(
            o.stdout.lines().any(|l| l == "got:hello|"),
            "allowed destination not served: {o:?}"
        );
        assert_eq!(o.code, Some(0), "{o:?}");
        assert_eq!(self.allowed.conns.load(Ordering::SeqCst), before + 1);
        let o = run(self
            .sup(program)
            .args(pre)
            .args(post("127.0.0.1", self.refused.port)));
        assert!(
            o.stdout.lines().any(|l| l == "refused:13"),
            "refused destination must fail EACCES: {o:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            self.refused.conns.load(Ordering::SeqCst),
            0,
            "the refused destination was reached"
        );
        let lines = self.audit_lines();
        let deny = lines
            .iter()
            .find(|v| v["verdict"] == "deny" && v["call"] == "connect")
            .expect("the refusal is audited");
        assert_eq!(deny["backend"], "supervise");
        assert_eq!(deny["rule"], "no-refused-port");
        assert_eq!(
            deny["remote"],
            format!("127.0.0.1:{}", self.refused.port).as_str()
        );
    }

    /// A supervised server on `port`: per round a refused peer (127.0.0.2) gets zero
    /// bytes, an allowed one (127.0.0.1) exactly `hello N\n`, and the server reports
    /// the allowed peer's address as accept wrote it back.
    pub fn server(&self, mut cmd: Command, port: u16, rounds: usize) -> Proc {
        let mut p = Proc::start(
            {
                cmd.stdout(Stdio::piped());
                cmd
            },
            self.dir.path(),
            Stdio::null(),
        );
        p.expect("listening", T);
        for n in 1..=rounds {
            assert_eq!(
                refused_peer_bytes(port),
                Ok(0),
                "round {n}: refused peer got bytes"
            );
            let (got, local) = allowed_peer(port);
            assert_eq!(got, format!("hello {n}\n"), "round {n}");
            let line = loop {
                let l = p.line(T);
                if l.starts_with("accepted:") {
                    break l;
                }
                assert!(l.starts_with("accept-error:"), "unexpected line {l:?}");
            };
            assert_eq!(line, format!("accepted:127.0.0.1:{}:16", local.port()));
        }
        let lines = self.audit_lines();
        let denied = lines
            .iter()
            .filter(|v| v["verdict"] == "deny" && v["call"] == "accept")
            .count();
        assert!(denied >= rounds, "{lines:?}");
        p
    }
}

/// Bytes a peer from 127.0.0.2 receives (0: reset or closed before any byte).
pub fn refused_peer_bytes(port: u16) -> Result<usize, String> {
    received_by("127.0.0.2", port, b"").map(|b| b.len())
}

/// What a peer from `src` receives after sending `request`, until the server closes
/// or resets the connection. A reset that came before the peer's `connect` returned
/// (on a busy machine the supervisor can refuse the connection first, and `connect`
/// then fails `ECONNRESET`) is zero bytes too: that is what the peer got.
pub fn received_by(src: &str, port: u16, request: &[u8]) -> Result<Vec<u8>, String> {
    let s = match socket_from(src, port) {
        Ok(s) => s,
        Err(e) if e.contains("(os error 104)") => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    s.set_read_timeout(Some(T)).unwrap();
    let _ = (&s).write_all(request);
    let mut b = Vec::new();
    match (&s).read_to_end(&mut b) {
        Ok(_) => Ok(b),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(b),
        Err(e) => Err(format!("peer from {src}: {e}")),
    }
}

pub fn allowed_peer(port: u16) -> (String, SocketAddr) {
    let s = socket_from("127.0.0.1", port).expect("allowed peer connects");
    s.set_read_timeout(Some(T)).unwrap();
    let local = s.local_addr().unwrap();
    let mut b = String::new();
    (&s).read_to_string(&mut b).expect("allowed peer reads");
    (b, local)
}

/// A connection from source address `src` (bound with a raw socket call).
pub fn socket_from(src: &str, port: u16) -> Result<TcpStream, String> {
    use std::os::fd::FromRawFd;
    let src: std::net::Ipv4Addr = src.parse().unwrap();
    let sa = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
    // SAFETY: plain socket calls on a socket owned here, with valid sockaddrs.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let s = TcpStream::from_raw_fd(fd);
        let a = sa(src, 0);
        if libc::bind(fd, (&a as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(format!("bind {src}: {}", std::io::Error::last_os_error()));
        }
        let d = sa(std::net::Ipv4Addr::LOCALHOST, port);
        if libc::connect(fd, (&d as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(format!("connect: {}", std::io::Error::last_os_error()));
        }
        Ok(s)
    }
}

pub fn tcpx_args(mode: &'static str) -> impl Fn(&str, u16) -> Vec<String> {
    move |h, p| vec!["client".into(), mode.into(), h.into(), p.to_string()]
}
