//! `local:`/`local_ports:` in a connect rule are the socket's bound address, and both
//! backends read it the same way: the same dynamically linked client, the same
//! policy, under the preload and under `sockexit run --supervise`. A client bound to
//! a source port inside the denied range gets EACCES and the destination sees no
//! connection; one bound outside it is served; an unbound one is judged as
//! `0.0.0.0:0` (the kernel picks its port during the connect, after the decision).

mod common;

use common::daemon::{free_port, missing, require};
use common::{cli_path, preloaded, TempDir};
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const TCPX: &str = include_str!("../crates/cli/tests/supervise/tcpx.c");

/// A loopback listener that writes `hello\n` to each connection and counts them.
fn sink() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = Arc::clone(&n);
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            n2.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(b"hello\n");
        }
    });
    (port, n)
}

fn client(
    backend: &str,
    tcpx: &Path,
    policy: &Path,
    run: &Path,
    src: Option<u16>,
    dest: u16,
) -> String {
    let mut c = if backend == "preload" {
        preloaded(tcpx, policy)
    } else {
        let mut c = Command::new(cli_path());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SOCKEXIT_") || k == "LD_PRELOAD" {
                c.env_remove(k);
            }
        }
        c.args(["run", "--supervise", "--policy"])
            .arg(policy)
            .arg("--")
            .arg(tcpx);
        c
    };
    c.env("SOCKEXIT_RUN_DIR", run)
        .args(["client", "libc", "127.0.0.1", &dest.to_string()]);
    if let Some(p) = src {
        c.env("TCPX_SRC_PORT", p.to_string());
    }
    let o = c.output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn both_backends_judge_a_connect_on_its_bound_source_port() {
    let dir = TempDir::new("connect-local");
    let Some(gcc) = require("gcc") else { return };
    let src = dir.write("tcpx.c", TCPX);
    let tcpx = dir.path().join("tcpx");
    let o = Command::new(gcc)
        .args(["-O", "-o"])
        .arg(&tcpx)
        .arg(&src)
        .arg("-lpthread")
        .output()
        .unwrap();
    if !o.status.success() {
        let _: Option<()> = missing("a C toolchain (libc6-dev)");
        return;
    }
    let (dest, conns) = sink();
    let inside = free_port();
    let policy = dir.write(
        "p.yaml",
        &format!(
            "version: 1\ndefault: allow\naudit: {{ log: off }}\nrules:\n  \
             - {{ name: no-src-port, action: deny, calls: [connect], local_ports: [\"{inside}-{inside}\"] }}\n  \
             - {{ name: no-unbound, action: deny, calls: [connect], local: [0.0.0.0], remote_ports: [{dest}] }}\n"
        ),
    );
    let run = dir.path().join("run");
    for backend in ["preload", "supervise"] {
        let before = conns.load(Ordering::SeqCst);
        let got = client(backend, &tcpx, &policy, &run, Some(inside), dest);
        assert_eq!(got, "refused:13", "{backend}: bound inside the range");
        assert_eq!(conns.load(Ordering::SeqCst), before, "{backend}: reached");
        let got = client(backend, &tcpx, &policy, &run, None, dest);
        assert_eq!(got, "refused:13", "{backend}: unbound, judged as 0.0.0.0:0");
        assert_eq!(conns.load(Ordering::SeqCst), before, "{backend}: reached");
        // A port of its own per backend: the first connection's TIME_WAIT stays.
        let got = client(backend, &tcpx, &policy, &run, Some(free_port()), dest);
        assert_eq!(got, "got:hello|", "{backend}: bound outside the range");
        assert_eq!(conns.load(Ordering::SeqCst), before + 1);
    }
}
