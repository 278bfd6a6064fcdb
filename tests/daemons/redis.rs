//! redis-server: PING, a refusal, and a 10,000-command pipeline.

use crate::support::*;

pub(crate) fn redis_info_field(port: u16, field: &str) -> String {
    let mut s = allowed_client(port).expect("connect redis");
    s.write_all(b"INFO stats\r\n").unwrap();
    // Bulk reply: $LEN\r\n<LEN bytes>\r\n
    let head = read_line(&mut s);
    let len: usize = head
        .strip_prefix('$')
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO reply header {head:?}"));
    let body = String::from_utf8(read_n(&mut s, len)).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO"))
        .trim()
        .to_string()
}

pub(crate) fn read_line(s: &mut TcpStream) -> String {
    let mut v = Vec::new();
    while !v.ends_with(b"\n") && v.len() < 1024 {
        let b = read_n(s, 1);
        if b.is_empty() {
            break;
        }
        v.extend(b);
    }
    String::from_utf8_lossy(&v).into_owned()
}

#[test]
fn redis_ping_refusal_and_10000_command_pipeline() {
    let Some(redis) = require("redis-server") else {
        return;
    };
    let dir = TempDir::new("redis");
    let policy = write_policy(&dir);
    let port = free_port();
    let log = dir.path().join("redis.log");
    let mut cmd = preloaded(&redis, &policy);
    cmd.args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--daemonize", "no"])
        .arg("--dir")
        .arg(dir.path())
        .arg("--logfile")
        .arg(&log);
    let mut d = Daemon::spawn("redis", cmd, dir.path()).with_log(log);
    d.wait_listening(port);

    let mut s = allowed_client(port).expect("connect redis");
    s.write_all(b"PING\r\n").unwrap();
    assert_eq!(
        read_n(&mut s, 7),
        b"+PONG\r\n",
        "PING from an allowed client"
    );
    drop(s);

    for _ in 0..3 {
        if let Err(e) = refused_peer(port, b"PING\r\n") {
            panic!("redis: {e}\n{}", d.output());
        }
    }

    const N: usize = 10_000;
    let mut s = allowed_client(port).expect("connect redis");
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let cmds: Vec<u8> = (0..N).flat_map(|_| *b"INCR sockexit\r\n").collect();
        w.write_all(&cmds)
    });
    let want: Vec<u8> = (1..=N)
        .flat_map(|i| format!(":{i}\r\n").into_bytes())
        .collect();
    let got = read_n(&mut s, want.len());
    writer.join().unwrap().expect("send pipeline");
    let replies = got.iter().filter(|&&b| b == b'\n').count();
    assert!(
        got == want,
        "pipeline: {replies} of {N} replies, {} of {} bytes, in order: {}",
        got.len(),
        want.len(),
        got.len() <= want.len() && got == want[..got.len()]
    );
    drop(s);

    // The refused peers never reached redis: it counted exactly our allowed clients
    // (PING, pipeline, this INFO).
    assert_eq!(redis_info_field(port, "total_connections_received"), "3");
    d.assert_alive();
    assert_audited_refusals(
        &dir,
        3,
        "accept",
        "refuse-127-0-0-2",
        &redis,
        REFUSED_REMOTE,
    );
    d.stop();
}
