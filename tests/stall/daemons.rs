//! Real daemons: xinetd (a refused peer on one service must not stall another) and
//! PostgreSQL (Unix-socket clients and fast shutdown after refused TCP peers).

use crate::support::*;

#[test]
fn xinetd_refused_peer_on_one_service_does_not_stall_the_other() {
    let Some(xinetd) = require("xinetd") else {
        return;
    };
    let dir = TempDir::new("stall-xinetd");
    let policy = policy(&dir, None);
    let log = dir.path().join("xinetd.log");
    // SAFETY: geteuid(2) cannot fail.
    let user = match unsafe { libc::geteuid() } {
        0 => "root".to_string(),
        uid => std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
                })
            })
            .expect("own account in /etc/passwd"),
    };
    let ports = [free_port(), free_port()];
    let mut conf = format!(
        "defaults\n{{\n    log_type = FILE {}\n    log_on_success =\n    log_on_failure =\n}}\n",
        log.display()
    );
    for (name, port) in ["one", "two"].iter().zip(ports) {
        conf += &format!(
            "service sockexit-{name}\n{{\n    type = UNLISTED\n    id = sockexit-{name}\n    \
             socket_type = stream\n    protocol = tcp\n    wait = no\n    user = {user}\n    \
             server = /bin/echo\n    server_args = sockexit {name}\n    port = {port}\n    \
             bind = 127.0.0.1\n    flags = REUSE NOLIBWRAP\n}}\n"
        );
    }
    let conf = dir.write("xinetd.conf", &conf);
    let mut cmd = preloaded(&xinetd, &policy);
    cmd.arg("-f")
        .arg(&conf)
        .arg("-dontfork")
        .arg("-pidfile")
        .arg(dir.path().join("xinetd.pid"));
    let mut x = Proc::start(cmd, dir.path(), Stdio::null()).with_log(log);
    for p in ports {
        x.wait_listening(p, PATIENCE);
    }
    let one = SocketAddrV4::new(LO, ports[0]);
    let two = SocketAddrV4::new(LO, ports[1]);

    assert_served(
        &talk(LO, one),
        b"sockexit one\n",
        "allowed client of service one",
    );
    assert_served(
        &talk(LO, two),
        b"sockexit two\n",
        "allowed client of service two",
    );
    for (svc, refused_at, other, answer) in [
        ("one", one, two, &b"sockexit two\n"[..]),
        ("two", two, one, &b"sockexit one\n"[..]),
    ] {
        let r = talk(DOT2, refused_at);
        if !r.refused() {
            x.die(&format!(
                "refused peer of service {svc}: expected 0 bytes then EOF/reset, got {r}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
        let r = talk_for(LO, other, b"", None, PROMPT);
        if !r.served(answer) {
            x.die(&format!(
                "after one refused peer of service {svc}, an allowed client of the other \
                 service must get {:?} within {PROMPT:?}: got {r} (xinetd is stuck in \
                 accept() on service {svc})",
                answer.escape_ascii().to_string()
            ));
        }
    }
    assert_served(&talk(LO, one), b"sockexit one\n", "service one at the end");
    assert_served(&talk(LO, two), b"sockexit two\n", "service two at the end");
    x.assert_alive();
    x.signal(libc::SIGTERM);
    if x.exited_within(Duration::from_secs(10)).is_none() {
        x.die("did not stop within 10 s of SIGTERM");
    }
}

// ---------------------------------------------------------------------------------
// 9. Real PostgreSQL: Unix-socket clients and fast shutdown after refused TCP peers
// ---------------------------------------------------------------------------------

/// An SSLRequest: length 8, code 80877103. The postmaster itself answers it with one
/// byte, `S` or `N`, before any authentication.
pub(crate) const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The newest `/usr/lib/postgresql/*/bin` with `initdb` and `postgres`.
pub(crate) fn pg_bindir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file()).then_some((v, bin))
        })
        .collect();
    dirs.sort();
    match dirs.pop() {
        Some((_, bin)) => Some(bin),
        None => daemon::missing("postgresql (/usr/lib/postgresql/*/bin/postgres)"),
    }
}

/// The SSLRequest over a Unix socket, bounded: the one-byte answer.
pub(crate) fn pg_unix_ssl_request(path: &Path) -> Result<u8, String> {
    use std::io::Read;
    let mut s =
        std::os::unix::net::UnixStream::connect(path).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(PROMPT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(PROMPT))
        .map_err(|e| e.to_string())?;
    s.write_all(&SSL_REQUEST)
        .map_err(|e| format!("write: {e}"))?;
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(1) => Ok(b[0]),
        Ok(_) => Err("EOF".into()),
        Err(e) => Err(format!("no answer within {PROMPT:?}: {e}")),
    }
}

#[test]
fn postgresql_serves_unix_socket_and_stops_on_sigint_after_refused_tcp_peers() {
    let Some(bin) = pg_bindir() else {
        return;
    };
    // postgres refuses to run as root: as root, initdb and run it as `postgres`.
    // SAFETY: geteuid(2) cannot fail.
    let ids = if unsafe { libc::geteuid() } == 0 {
        match account("postgres") {
            Some(ids) => Some(ids),
            None => {
                daemon::missing::<()>("the postgres account (package postgresql)");
                return;
            }
        }
    } else {
        None
    };
    let as_pg = |mut c: Command| {
        if let Some((uid, gid)) = ids {
            c.uid(uid).gid(gid);
        }
        c
    };
    let dir = TempDir::new("stall-pg");
    let policy = policy(&dir, None);
    let data = dir.path().join("data");
    let sock = dir.path().join("sock");
    for d in [&data, &sock] {
        std::fs::create_dir(d).expect("mkdir");
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(d, Some(uid), Some(gid)).expect("chown");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let mut initdb = as_pg(Command::new(bin.join("initdb")));
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null());
    let out = initdb.output().expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let port = free_port();
    let mut cmd = as_pg(preloaded(bin.join("postgres"), &policy));
    cmd.arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", sock.display()))
        .args([
            "-c",
            "fsync=off",
            "-c",
            "logging_collector=off",
            "-c",
            "max_connections=10",
        ])
        .current_dir(dir.path());
    let mut pg = Proc::start(cmd, dir.path(), Stdio::null());
    pg.wait_listening(port, Duration::from_secs(60));
    let unix = sock.join(format!(".s.PGSQL.{port}"));
    let deadline = Instant::now() + PATIENCE;
    while !unix.exists() {
        pg.assert_alive();
        if Instant::now() > deadline {
            pg.die(&format!("no Unix socket {}", unix.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let tcp = SocketAddrV4::new(LO, port);
    let answered = |r: &Reply| r.bytes.len() == 1 && matches!(r.bytes[0], b'N' | b'S');

    let r = talk_for(LO, tcp, &SSL_REQUEST, Some(1), IO);
    assert!(
        answered(&r),
        "allowed TCP client's SSLRequest: {r}\n{}",
        pg.output()
    );
    match pg_unix_ssl_request(&unix) {
        Ok(b'N') => {}
        other => pg.die(&format!(
            "Unix-socket SSLRequest before any refusal: {other:?}"
        )),
    }
    for i in 0..3 {
        let r = talk_for(DOT2, tcp, &SSL_REQUEST, None, IO);
        if !r.refused() {
            pg.die(&format!(
                "refused TCP peer #{i}: expected 0 bytes then EOF/reset, got {r}"
            ));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    match pg_unix_ssl_request(&unix) {
        Ok(b'N') => {}
        other => pg.die(&format!(
            "after refused TCP peers, a Unix-socket client's SSLRequest must be answered \
             `N` within {PROMPT:?}: got {other:?} (the postmaster is stuck in accept() on \
             its TCP socket)"
        )),
    }
    let isready = bin.join("pg_isready");
    if isready.is_file() {
        let out = Command::new(&isready)
            .arg("-h")
            .arg(&sock)
            .args(["-p", &port.to_string(), "-t", "5"])
            .stdin(Stdio::null())
            .output()
            .expect("run pg_isready");
        if !out.status.success() {
            pg.die(&format!(
                "pg_isready over the Unix socket after refused TCP peers: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    let r = talk_for(LO, tcp, &SSL_REQUEST, Some(1), PROMPT);
    assert!(
        answered(&r),
        "allowed TCP client after the refusals: {r}\n{}",
        pg.output()
    );

    // A refused peer last, then a fast shutdown: the postmaster must act on it.
    let r = talk_for(DOT2, tcp, &SSL_REQUEST, None, IO);
    assert!(r.refused(), "last refused TCP peer: {r}");
    std::thread::sleep(Duration::from_millis(300));
    pg.signal(libc::SIGINT);
    if pg.exited_within(Duration::from_secs(15)).is_none() {
        pg.die("SIGINT (fast shutdown) after a refused TCP peer: the postmaster did not stop within 15 s");
    }
}
