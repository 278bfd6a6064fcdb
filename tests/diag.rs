//! The library's own diagnostics, end to end (issue 14, items 5–7): where they go
//! under systemd (fd 2 an AF_UNIX stream, as the journal's), that they never reach an
//! IP socket or a file the daemon put on fd 2, and that a forked child of a
//! multi-threaded program never hangs in them.

mod common;

use common::{example_path, preloaded, TempDir};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(20);

/// Everything readable on `s` until the writer side is closed (bounded wait).
fn drain(mut s: impl Read) -> String {
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v);
    String::from_utf8_lossy(&v).into_owned()
}

fn run_bounded(mut c: Command) -> std::process::Output {
    let mut child = c.spawn().expect("spawn");
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("program did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn fail_closed_error_reaches_an_af_unix_stderr_and_syslog_but_never_an_ip_socket() {
    let dir = TempDir::new("diag-journal");
    let missing = dir.path().join("no-such-policy.yaml");
    let sock_path = dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&sock_path).unwrap();
    syslog.set_read_timeout(Some(PATIENCE)).unwrap();
    let prog = example_path("listen_probe");
    let probe_arg = "127.0.0.1:0";

    // fd 2 an AF_UNIX stream socket, as systemd connects it to the journal.
    let (ours, theirs) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut c = preloaded(&prog, &missing);
    c.arg(probe_arg);
    c.env("SOCKEXIT_SYSLOG_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(OwnedFd::from(theirs)));
    let _ = run_bounded(c);
    let journal = drain(&ours);
    assert!(
        journal.contains("ERROR: cannot load policy") && journal.contains("failing closed"),
        "the journal (AF_UNIX stderr) got: {journal:?}"
    );
    let mut buf = [0u8; 2048];
    let n = syslog.recv(&mut buf).expect("a syslog datagram");
    let msg = String::from_utf8_lossy(&buf[..n]);
    assert!(
        msg.starts_with("<83>sockexit[") && msg.contains("cannot load policy"),
        "{msg}"
    );

    // fd 2 a TCP connection (inetd, `sshd -i`): not one byte; syslog still says it.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (peer, _) = l.accept().unwrap();
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut c = preloaded(&prog, &missing);
    c.arg(probe_arg);
    c.env("SOCKEXIT_SYSLOG_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(OwnedFd::from(client)));
    let _ = run_bounded(c);
    let got = drain(&peer);
    assert!(
        !got.contains("sockexit"),
        "library text reached a TCP peer: {got:?}"
    );
    let n = syslog.recv(&mut buf).expect("a syslog datagram");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("cannot load policy"));
}

#[test]
fn a_daemon_that_reopens_fd_2_on_its_own_file_gets_none_of_our_bytes() {
    let dir = TempDir::new("diag-stdio-reuse");
    let own = dir.path().join("own.dat");
    let p = dir.write(
        "policy.yaml",
        "version: 1\ndefault: allow\nrules:\n  - { name: no-second-loopback, action: deny, calls: [accept], remote: [127.0.0.2/32] }\naudit:\n  log: stderr\n",
    );
    let prog = example_path("stdio_reuse_server");
    let mut c = preloaded(&prog, &p);
    c.arg(&own)
        .env("SOCKEXIT_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut l = String::new();
    std::io::BufRead::read_line(&mut out, &mut l).unwrap();
    let addr = l.trim().strip_prefix("listening ").unwrap().to_string();
    let talk = |src: &str| {
        let o = Command::new(example_path("connect_client"))
            .args(["--bind", src, &addr])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim_end().to_string()
    };
    assert!(
        !talk("127.0.0.2").starts_with("ok 220"),
        "refused peer served"
    );
    assert!(talk("127.0.0.1").starts_with("ok 220 stdio-reuse"));
    let deadline = Instant::now() + PATIENCE;
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(st.success(), "{st}");
    assert_eq!(
        std::fs::read_to_string(&own).unwrap(),
        "own data\n",
        "library bytes in the daemon's own file"
    );
    // What fd 2 was at start (a pipe) got the load-time debug lines, nothing after.
    let err = drain(child.stderr.take().unwrap());
    assert!(err.contains("DEBUG: policy"), "{err}");
    assert!(!err.contains("\"verdict\""), "{err}");
}

#[test]
fn forty_children_forked_while_threads_log_refusals_at_debug_all_exit() {
    let dir = TempDir::new("diag-fork");
    let p = dir.write(
        "policy.yaml",
        "version: 1\ndefault: allow\nrules:\n  - { name: no-discard, action: deny, calls: [connect], remote: [127.0.0.1/32], remote_ports: [9] }\naudit:\n  log: off\n",
    );
    let errlog = dir.path().join("stderr.txt");
    let mut c = preloaded(example_path("diag_fork_storm"), &p);
    c.args(["4", "40", "127.0.0.1:9"])
        .env("SOCKEXIT_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&errlog).unwrap());
    let out = run_bounded(c);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "exited 40 hung 0",
        "children hung in a diagnostic path"
    );
    let err = std::fs::read_to_string(&errlog).unwrap();
    assert!(
        err.contains("refused by rule no-discard"),
        "no debug lines at all?"
    );
    for l in err.lines() {
        assert!(l.starts_with("sockexit["), "torn or glued message: {l:?}");
    }
}

#[test]
fn when_fd_2_is_the_journal_the_error_is_not_sent_to_syslog_twice() {
    use std::os::fd::AsRawFd;
    let dir = TempDir::new("diag-journal-stream");
    let missing = dir.path().join("no-such-policy.yaml");
    let sock_path = dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&sock_path).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(PATIENCE)).unwrap();
    // What systemd sets: JOURNAL_STREAM=DEV:INO of the stream it put on fd 2.
    // SAFETY: stat is plain old data; fstat fills it for an open descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `theirs` is open and `st` is valid for writing.
    assert_eq!(unsafe { libc::fstat(theirs.as_raw_fd(), &mut st) }, 0);
    let mut c = preloaded(example_path("listen_probe"), &missing);
    c.arg("127.0.0.1:0")
        .env("SOCKEXIT_SYSLOG_SOCKET", &sock_path)
        .env("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(OwnedFd::from(theirs)));
    let _ = run_bounded(c);
    let journal = drain(&ours);
    assert!(journal.contains("cannot load policy"), "{journal:?}");
    let mut buf = [0u8; 2048];
    assert!(
        syslog.recv(&mut buf).is_err(),
        "the journal already has it: no second copy through /dev/log"
    );
}
