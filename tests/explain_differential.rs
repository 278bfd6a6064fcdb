//! Differential test: `sockexit explain` and the library (a real program under the
//! preload) give the same verdict and the same rule for generated policies and calls.
//!
//! The library's verdict and rule are read from its audit log (`events: all`); the
//! command's from `explain --json`. Covered: connect (`examples/connect_client`) to
//! loopback, a second loopback address, IPv6 loopback, v4-mapped destinations and
//! unspecified destinations (`0.0.0.0`, `[::]`); listen (`examples/listen_probe`) on
//! specific, wildcard and dual-stack `[::]` addresses; accept (`examples/banner_server`)
//! from IPv4 and IPv6 peers and v4-mapped peers on a dual-stack listener; programs
//! named through a symlink, by their target, by a glob and by a bare name; and a null
//! field, which both refuse (the library fails closed, explain exits 1).

mod common;

use common::proc::Proc;
use common::{cli_path, example_path, preloaded, TempDir};
use serde_json::Value;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A small deterministic generator (no dependency, same cases on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.next() as usize % xs.len()]
    }
    fn chance(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

fn ipv6() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// A port with nothing listening on it (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn ids() -> (u32, u32) {
    // SAFETY: geteuid/getegid cannot fail and touch no memory.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// The program paths a case runs and names: the example itself, and a symlink to it.
struct Programs {
    real: PathBuf,
    link: PathBuf,
}

impl Programs {
    fn new(dir: &TempDir, example: &str) -> Programs {
        let real = std::fs::canonicalize(example_path(example)).expect("example path");
        let link = dir.path().join(format!("{example}-link"));
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        Programs { real, link }
    }
    /// A `programs:` item: the symlink, its target, a glob, a bare name, another glob.
    fn patterns(&self, name: &str) -> Vec<String> {
        vec![
            format!("\"{}\"", self.link.display()),
            format!("\"{}\"", self.real.display()),
            format!("\"*/{name}\""),
            name.to_string(),
            "\"*/not-this-program\"".to_string(),
        ]
    }
}

/// `version: 1` ... with the audit log and `rules`, each a flow mapping.
fn policy_text(default: &str, rules: &[String], log: &Path) -> String {
    let mut s = format!(
        "version: 1\ndefault: {default}\naudit:\n  log: {}\n  events: all\nrules:\n",
        log.display()
    );
    for r in rules {
        s.push_str(&format!("  - {r}\n"));
    }
    s
}

/// One generated rule: name, action, calls and one to three fields from `fields`.
fn gen_rule(g: &mut Lcg, i: usize, calls: &[&str], fields: &[(&str, Vec<String>)]) -> String {
    let action = *g.pick(&["allow", "deny"]);
    let mut parts = vec![format!("name: r{i}"), format!("action: {action}")];
    let c = *g.pick(calls);
    if !c.is_empty() {
        parts.push(format!("calls: [{c}]"));
    }
    let n = 1 + g.next() as usize % 3;
    let mut used = Vec::new();
    for _ in 0..n {
        let (k, vals) = g.pick(fields);
        if used.contains(k) {
            continue;
        }
        used.push(*k);
        parts.push(format!("{k}: [{}]", g.pick(vals)));
    }
    format!("{{ {} }}", parts.join(", "))
}

/// The audit lines of `call` in the log, parsed.
fn audit_lines(log: &Path, call: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["call"] == call)
        .collect()
}

/// Waits (a little) for the library's audit line of `call`.
fn library_decision(log: &Path, call: &str) -> Option<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = audit_lines(log, call).first() {
            return Some((
                v["verdict"].as_str().unwrap_or("?").to_string(),
                v["rule"].as_str().unwrap_or("?").to_string(),
            ));
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `sockexit explain POLICY --json ARGS`: (verdict, rule), or the exit code and
/// stderr when it did not judge.
fn explain(policy: &Path, args: &[String]) -> Result<(String, String), (i32, String)> {
    let o = Command::new(cli_path())
        .arg("explain")
        .arg(policy)
        .arg("--json")
        .args(args)
        .env_remove("SOCKEXIT_POLICY")
        .output()
        .expect("run sockexit explain");
    if !o.status.success() {
        return Err((
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ));
    }
    let v: Value = serde_json::from_slice(&o.stdout).expect("explain --json");
    Ok((
        v["verdict"].as_str().unwrap().to_string(),
        v["rule"].as_str().unwrap().to_string(),
    ))
}

fn id_args(program: &Path) -> Vec<String> {
    let (uid, gid) = ids();
    vec![
        "--user".into(),
        uid.to_string(),
        "--group".into(),
        gid.to_string(),
        "--program".into(),
        program.display().to_string(),
    ]
}

#[test]
fn connect_verdicts_agree() {
    let dir = TempDir::new("diff-connect");
    let progs = Programs::new(&dir, "connect_client");
    let port = free_port();
    let (uid, _) = ids();
    let v6 = ipv6();
    let mut dests = vec![
        format!("127.0.0.1:{port}"),
        format!("127.0.0.2:{port}"),
        format!("0.0.0.0:{port}"),
    ];
    if v6 {
        dests.extend([
            format!("[::1]:{port}"),
            format!("[::ffff:127.0.0.1]:{port}"),
            format!("[::]:{port}"),
        ]);
    }
    let fields: Vec<(&str, Vec<String>)> = vec![
        (
            "remote",
            [
                "127.0.0.1",
                "127.0.0.0/8",
                "127.0.0.2",
                "0.0.0.0",
                "0.0.0.0/0",
                "\"::1\"",
                "\"::/0\"",
                "\"::ffff:127.0.0.1\"",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ("remote_ports", vec![port.to_string(), "\"1-1024\"".into()]),
        ("programs", progs.patterns("connect_client")),
        ("families", vec!["ipv4".into(), "ipv6".into()]),
        ("users", vec![uid.to_string(), (uid + 1).to_string()]),
    ];
    let mut g = Lcg(0x5eed_c0ec);
    let mut compared = 0;
    for case in 0..16 {
        let n = 2 + g.next() as usize % 4;
        let rules: Vec<String> = (0..n)
            .map(|i| {
                gen_rule(
                    &mut g,
                    i,
                    &["connect", "", "connect, accept", "accept"],
                    &fields,
                )
            })
            .collect();
        let default = *g.pick(&["allow", "deny"]);
        for (k, dest) in dests.iter().enumerate() {
            if !g.chance(2) && k > 0 {
                continue;
            }
            let via_link = g.chance(2);
            let program = if via_link { &progs.link } else { &progs.real };
            let log = dir.path().join(format!("c{case}-{k}.jsonl"));
            let p = dir.write(
                &format!("c{case}-{k}.yaml"),
                &policy_text(default, &rules, &log),
            );
            let mut cmd = preloaded(program, &p);
            cmd.args(["--no-read", dest]);
            let out = cmd.output().expect("run connect_client");
            let lib = library_decision(&log, "connect").unwrap_or_else(|| {
                panic!(
                    "case {case} {dest}: no audit line; policy:\n{}\nstdout {} stderr {}",
                    std::fs::read_to_string(&p).unwrap(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            });
            let mut args = vec!["--call".to_string(), "connect".into(), "--remote".into()];
            args.push(dest.clone());
            args.extend(id_args(program));
            let cli = explain(&p, &args).expect("explain judges");
            assert_eq!(
                cli,
                lib,
                "case {case}: connect {dest} as {} (explain, library); policy:\n{}",
                program.display(),
                std::fs::read_to_string(&p).unwrap()
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            if lib.0 == "deny" {
                assert!(stdout.contains("EACCES"), "refused, so EACCES: {stdout}");
            }
            compared += 1;
        }
    }
    assert!(compared >= 20, "only {compared} calls compared");
}

#[test]
fn listen_verdicts_agree() {
    let dir = TempDir::new("diff-listen");
    let progs = Programs::new(&dir, "listen_probe");
    let (uid, _) = ids();
    let v6 = ipv6();
    let fields: Vec<(&str, Vec<String>)> = vec![
        (
            "local",
            [
                "127.0.0.1",
                "0.0.0.0",
                "\"::\"",
                "0.0.0.0/0",
                "\"::1\"",
                "127.0.0.0/8",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ("local_ports", vec!["PORT".into(), "\"1-1024\"".into()]),
        ("programs", progs.patterns("listen_probe")),
        ("families", vec!["ipv4".into(), "ipv6".into()]),
        ("users", vec![uid.to_string(), (uid + 1).to_string()]),
    ];
    let mut g = Lcg(0x1157e2);
    let mut compared = 0;
    for case in 0..14 {
        let port = free_port();
        let n = 2 + g.next() as usize % 4;
        let rules: Vec<String> = (0..n)
            .map(|i| {
                gen_rule(
                    &mut g,
                    i,
                    &["listen", "", "listen, accept", "accept"],
                    &fields,
                )
                .replace("PORT", &port.to_string())
            })
            .collect();
        let default = *g.pick(&["allow", "deny"]);
        let mut addrs = vec![format!("127.0.0.1:{port}"), format!("0.0.0.0:{port}")];
        if v6 {
            addrs.extend([format!("[::]:{port}"), format!("[::1]:{port}")]);
        }
        let local = g.pick(&addrs).clone();
        let program = if g.chance(2) {
            &progs.link
        } else {
            &progs.real
        };
        let log = dir.path().join(format!("l{case}.jsonl"));
        let p = dir.write(
            &format!("l{case}.yaml"),
            &policy_text(default, &rules, &log),
        );
        let out = preloaded(program, &p)
            .arg(&local)
            .output()
            .expect("run listen_probe");
        let lib = library_decision(&log, "listen").unwrap_or_else(|| {
            panic!(
                "case {case} {local}: no audit line ({})",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        let mut args = vec!["--call".to_string(), "listen".into(), "--local".into()];
        args.push(local.clone());
        args.extend(id_args(program));
        let cli = explain(&p, &args).expect("explain judges");
        assert_eq!(
            cli,
            lib,
            "case {case}: listen {local} as {} (explain, library); policy:\n{}",
            program.display(),
            std::fs::read_to_string(&p).unwrap()
        );
        compared += 1;
    }
    assert_eq!(compared, 14);
}

#[test]
fn accept_verdicts_agree() {
    let dir = TempDir::new("diff-accept");
    let progs = Programs::new(&dir, "banner_server");
    let v6 = ipv6();
    let fields: Vec<(&str, Vec<String>)> = vec![
        (
            "remote",
            [
                "127.0.0.1",
                "127.0.0.0/8",
                "0.0.0.0",
                "0.0.0.0/0",
                "\"::1\"",
                "\"::ffff:127.0.0.1\"",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "local",
            ["127.0.0.1", "\"::1\"", "\"::\"", "\"::ffff:127.0.0.1\""]
                .map(String::from)
                .to_vec(),
        ),
        ("programs", progs.patterns("banner_server")),
        ("families", vec!["ipv4".into(), "ipv6".into()]),
    ];
    let mut g = Lcg(0xacce97);
    for case in 0..10 {
        let n = 2 + g.next() as usize % 3;
        let mut rules = vec!["{ name: listen-ok, action: allow, calls: [listen] }".to_string()];
        rules.extend((1..=n).map(|i| gen_rule(&mut g, i, &["accept", ""], &fields)));
        let default = *g.pick(&["allow", "deny"]);
        // (listen on, connect from the peer to)
        let mut shapes = vec![("127.0.0.1:0", "127.0.0.1")];
        if v6 {
            shapes.extend([
                ("[::]:0", "127.0.0.1"),
                ("[::]:0", "::1"),
                ("[::1]:0", "::1"),
            ]);
        }
        let (listen_on, to) = *g.pick(&shapes);
        let program = if g.chance(2) {
            &progs.link
        } else {
            &progs.real
        };
        let log = dir.path().join(format!("a{case}.jsonl"));
        let p = dir.write(
            &format!("a{case}.yaml"),
            &policy_text(default, &rules, &log),
        );
        let mut cmd = preloaded(program, &p);
        cmd.args([listen_on, "--max", "1"]);
        let mut srv = Proc::start(cmd);
        let bound = srv.listening();
        let dest = SocketAddr::new(to.parse().unwrap(), bound.port());
        // A refused peer may be reset before a non-blocking connect reads its result:
        // then its port is the one the library's audit line names.
        let peer = TcpStream::connect(dest);
        let me = match &peer {
            Ok(s) => s.local_addr().unwrap(),
            Err(_) => {
                let _ = library_decision(&log, "accept");
                let v = audit_lines(&log, "accept");
                let r: SocketAddr = v[0]["remote"].as_str().unwrap().parse().unwrap();
                SocketAddr::new(r.ip().to_canonical(), r.port())
            }
        };
        // The address the peer reached, as the accepted socket names it.
        let reached = match (bound, dest) {
            (SocketAddr::V6(_), SocketAddr::V4(d)) => {
                SocketAddr::new(d.ip().to_ipv6_mapped().into(), d.port())
            }
            _ => dest,
        };
        let peer_as_seen = match (bound, me) {
            (SocketAddr::V6(_), SocketAddr::V4(m)) => {
                SocketAddr::new(m.ip().to_ipv6_mapped().into(), m.port())
            }
            _ => me,
        };
        let lib = library_decision(&log, "accept");
        srv.kill();
        let lib = lib.unwrap_or_else(|| panic!("case {case}: no accept audit line"));
        let mut args = vec!["--call".to_string(), "accept".into()];
        args.extend([
            "--remote".into(),
            fmt(peer_as_seen),
            "--local".into(),
            fmt(reached),
        ]);
        args.extend(id_args(program));
        let cli = explain(&p, &args).expect("explain judges");
        assert_eq!(
            cli,
            lib,
            "case {case}: accept {peer_as_seen} on {reached} (listener {listen_on}) as {} \
             (explain, library); policy:\n{}",
            program.display(),
            std::fs::read_to_string(&p).unwrap()
        );
        drop(peer);
    }
}

fn fmt(a: SocketAddr) -> String {
    a.to_string()
}

#[test]
fn a_symlinked_program_path_is_matched_by_both() {
    // The rule names the symlink; the library sees the resolved executable.
    let dir = TempDir::new("diff-symlink");
    let progs = Programs::new(&dir, "connect_client");
    let port = free_port();
    let log = dir.path().join("s.jsonl");
    let rules = vec![format!(
        "{{ name: no-client, action: deny, calls: [connect], programs: [\"{}\"] }}",
        progs.link.display()
    )];
    let p = dir.write("s.yaml", &policy_text("allow", &rules, &log));
    for program in [&progs.link, &progs.real] {
        let _ = std::fs::remove_file(&log);
        let out = preloaded(program, &p)
            .args(["--no-read", &format!("127.0.0.1:{port}")])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("EACCES"),
            "{}: {out:?}",
            program.display()
        );
        let lib = library_decision(&log, "connect").expect("audit line");
        assert_eq!(lib, ("deny".to_string(), "no-client".to_string()));
        let mut args = vec![
            "--call".to_string(),
            "connect".into(),
            "--remote".into(),
            format!("127.0.0.1:{port}"),
        ];
        args.extend(id_args(program));
        assert_eq!(explain(&p, &args).unwrap(), lib, "{}", program.display());
    }
}

#[test]
fn a_null_field_is_refused_by_both() {
    let dir = TempDir::new("diff-null");
    let progs = Programs::new(&dir, "connect_client");
    let port = free_port();
    for field in ["remote", "programs", "users", "local_ports", "calls"] {
        let log = dir.path().join(format!("{field}.jsonl"));
        let p = dir.write(
            &format!("{field}.yaml"),
            &format!(
                "version: 1\ndefault: allow\naudit:\n  log: {}\n  events: all\nrules:\n  - name: r\n    action: deny\n    {field}:\n",
                log.display()
            ),
        );
        let out = preloaded(&progs.real, &p)
            .args(["--no-read", &format!("127.0.0.1:{port}")])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("error EACCES"),
            "{field}: the library fails closed: {out:?}"
        );
        let mut args = vec![
            "--call".to_string(),
            "connect".into(),
            "--remote".into(),
            format!("127.0.0.1:{port}"),
        ];
        args.extend(id_args(&progs.real));
        match explain(&p, &args) {
            Err((1, e)) => assert!(e.contains("no value"), "{field}: {e}"),
            other => panic!("{field}: explain must refuse the policy: {other:?}"),
        }
    }
}
