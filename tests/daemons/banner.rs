//! Banner servers: Node.js (libuv), Python asyncio, Java ServerSocket and NIO.

use crate::support::*;

/// The banner protocol of tests/daemons/banner_server.*: banner at once, then one echoed
/// line, then close.
pub(crate) fn banner_client(port: u16, banner: &[u8], i: usize) -> Result<(), String> {
    let mut s = allowed_client(port).map_err(|e| format!("connect: {e}"))?;
    let got = read_n(&mut s, banner.len());
    if got != banner {
        return Err(format!("banner: {:?}", String::from_utf8_lossy(&got)));
    }
    s.write_all(format!("ping {i}\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let (rest, end) = read_all(&mut s);
    let want = format!("echo: ping {i}\n");
    if rest != want.as_bytes() || end != End::Eof {
        return Err(format!(
            "reply {:?} ended with {end:?}, want {want:?} then EOF",
            String::from_utf8_lossy(&rest)
        ));
    }
    Ok(())
}

/// Mixed burst of 200 (100 allowed, 100 refused), then the server must be alive and
/// still serving.
pub(crate) fn banner_server_test(
    name: &'static str,
    cmd: Command,
    port: u16,
    banner: &str,
    dir: &TempDir,
) {
    let program = PathBuf::from(cmd.get_program());
    let mut d = Daemon::spawn(name, cmd, dir.path());
    d.wait_listening(port);
    let banner = banner.as_bytes();
    let failures = mixed_burst(
        200,
        |i| banner_client(port, banner, i),
        |_| refused_peer(port, b"ping\n"),
    );
    if !failures.is_empty() {
        say(&d.output());
    }
    assert_no_failures(name, &failures);
    d.assert_alive();
    banner_client(port, banner, 1000).expect("still serving after the burst");
    refused_peer(port, b"ping\n").expect("still refusing after the burst");
    assert_audited_refusals(
        dir,
        101,
        "accept",
        "refuse-127-0-0-2",
        &program,
        REFUSED_REMOTE,
    );
    d.stop();
}

#[test]
fn node_net_server_mixed_burst() {
    let Some(node) = require("node") else {
        return;
    };
    let dir = TempDir::new("node");
    let policy = write_policy(&dir);
    let port = free_port();
    let mut cmd = preloaded(&node, &policy);
    cmd.arg(daemons_dir().join("banner_server.js"))
        .arg(port.to_string());
    banner_server_test("node", cmd, port, "hello from node\n", &dir);
}

#[test]
fn python_asyncio_server_mixed_burst() {
    let Some(python) = python3() else {
        return;
    };
    let dir = TempDir::new("asyncio");
    let policy = write_policy(&dir);
    let port = free_port();
    let mut cmd = preloaded(&python, &policy);
    cmd.arg(daemons_dir().join("banner_server.py"))
        .arg(port.to_string());
    banner_server_test("python-asyncio", cmd, port, "hello from python\n", &dir);
}

/// Compile tests/daemons/BannerServer.java into the temp dir; `None` when skipped.
pub(crate) fn java_server(dir: &TempDir, mode: &str, port: u16) -> Option<Command> {
    let javac = require("javac")?;
    let java = require("java")?;
    let classes = dir.path().join("classes");
    let out = Command::new(javac)
        .arg("-d")
        .arg(&classes)
        .arg(daemons_dir().join("BannerServer.java"))
        .output()
        .expect("run javac");
    assert!(
        out.status.success(),
        "javac failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy = write_policy(dir);
    let mut cmd = preloaded(java, &policy);
    cmd.args(["-Xmx64m", "-XX:+UseSerialGC", "-cp"])
        .arg(&classes)
        .args(["BannerServer", mode, &port.to_string()]);
    Some(cmd)
}

#[test]
fn java_server_socket_mixed_burst() {
    let dir = TempDir::new("java-blocking");
    let port = free_port();
    let Some(cmd) = java_server(&dir, "blocking", port) else {
        return;
    };
    banner_server_test("java-serversocket", cmd, port, "hello from java\n", &dir);
}

#[test]
fn java_nio_selector_mixed_burst() {
    let dir = TempDir::new("java-nio");
    let port = free_port();
    let Some(cmd) = java_server(&dir, "nio", port) else {
        return;
    };
    banner_server_test("java-nio", cmd, port, "hello from java\n", &dir);
}
