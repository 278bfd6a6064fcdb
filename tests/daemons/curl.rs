//! Outbound: curl refused and allowed.

use crate::support::*;

/// Serve one HTTP response on `l` (non-blocking accept, bounded wait).
pub(crate) fn serve_one(l: TcpListener, body: &'static [u8]) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + IO_TIMEOUT;
        while Instant::now() < deadline {
            match l.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    let mut req = Vec::new();
                    let mut b = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut b) {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => req.extend_from_slice(&b[..n]),
                        }
                    }
                    let head = format!(
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    return s.write_all(head.as_bytes()).is_ok() && s.write_all(body).is_ok();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => return false,
            }
        }
        false
    })
}

#[test]
fn curl_refused_connect_fails_cleanly_and_allowed_connect_works() {
    let Some(curl) = require("curl") else {
        return;
    };
    let dir = TempDir::new("curl");
    // A real listener on the refused port: without the library curl would reach it.
    let blocked = TcpListener::bind((ALLOWED, 0)).unwrap();
    blocked.set_nonblocking(true).unwrap();
    let blocked_port = blocked.local_addr().unwrap().port();
    let open = TcpListener::bind((ALLOWED, 0)).unwrap();
    let open_port = open.local_addr().unwrap().port();
    let policy = dir.write(
        "policy.yaml",
        &format!(
            "version: 1\ndefault: deny\nrules:\n\
             \x20 - name: no-discard\n    action: deny\n    calls: [connect]\n\
             \x20   remote_ports: [9, {blocked_port}]\n\
             \x20 - name: loopback-connect\n    action: allow\n    calls: [connect]\n\
             \x20   remote: [127.0.0.0/8, \"::1\"]\n\
             audit:\n  log: {}\n  events: deny\n",
            dir.path().join("audit.jsonl").display()
        ),
    );
    let run = |port: u16| {
        let mut cmd = preloaded(&curl, &policy);
        for v in [
            "http_proxy",
            "HTTP_PROXY",
            "all_proxy",
            "ALL_PROXY",
            "CURL_HOME",
        ] {
            cmd.env_remove(v);
        }
        cmd.args(["-sS", "--noproxy", "*", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{port}/"))
            .stdin(Stdio::null())
            .output()
            .expect("run curl")
    };

    let refused_ports: &[u16] = if no_preload() {
        &[]
    } else {
        &[9, blocked_port]
    };
    for &port in refused_ports {
        let out = run(port);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            None,
            "curl crashed on a refused connect to port {port}: {stderr}"
        );
        assert_eq!(
            out.status.code(),
            Some(7),
            "curl to refused port {port}: want exit 7 (couldn't connect), stderr: {stderr}"
        );
        assert!(
            stderr.contains("Failed to connect") || stderr.contains("Couldn't connect"),
            "curl's message for port {port}: {stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    assert!(
        matches!(blocked.accept(), Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "a refused connect reached the network"
    );

    let server = serve_one(open, b"allowed through\n");
    let out = run(open_port);
    assert!(
        out.status.success(),
        "curl to an allowed port: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"allowed through\n");
    assert!(server.join().unwrap(), "local server did not serve curl");
    let refused_remotes: Vec<String> = refused_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let refused_remotes: Vec<&str> = refused_remotes.iter().map(String::as_str).collect();
    // One line per refused connect; no line for the allowed one.
    if !refused_ports.is_empty() {
        assert_audited_refusals(&dir, 2, "connect", "no-discard", &curl, &refused_remotes);
    }
}
