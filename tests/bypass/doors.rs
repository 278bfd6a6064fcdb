//! Item 4: libc's side doors — aliases, `dlsym`, `rcmd`/`rexec`, Python ctypes.

use crate::support::*;

pub(crate) const DOORS: &[&str] = &[
    "libc",
    "__connect",
    "dlopen",
    "dlsym-__name",
    "dlopen-null",
    "dlopen-path",
    "dlopen-deepbind",
    "dlmopen",
    "dlmopen-dlsym-of-dlsym",
    "dlmopen-dlvsym",
    "dlvsym-of-dlvsym",
    "dlvsym-default",
    "dlvsym-libc",
    "rtld-next",
    "rtld-default",
    "dlsym-of-dlsym",
    "dlvsym-of-dlsym",
];

#[test]
fn connect_through_every_libc_door_is_judged() {
    let dir = TempDir::new("bypass-door-connect");
    let p = policy(&dir, DENY_DOT2);
    let mut bad = Vec::new();
    for door in DOORS {
        let w = Watch::on(DOT2);
        let f = attack(&p, &["door", door, "connect", &w.addr.to_string()]);
        check_refused(&format!("connect via {door}"), &f, &w, "no-dot2", &mut bad);
    }
    report(
        &bad,
        DOORS.len(),
        "connects to a refused 127.0.0.2 through libc doors",
    );
}

#[test]
fn accept_and_accept4_through_every_libc_door_are_judged() {
    let dir = TempDir::new("bypass-door-accept");
    let p = policy(&dir, DENY_DOT2_IN);
    let mut bad = Vec::new();
    let mut total = 0;
    for call in ["accept", "accept4"] {
        for door in DOORS {
            let mut c = preloaded(example_path("attack_bypass"), &p);
            c.args(["door", door, call, "127.0.0.1:0", "--max", "1"]);
            let mut srv = Proc::start(c);
            let l = srv.line();
            if l == "nosym" {
                continue; // glibc has no __accept / __accept4
            }
            total += 1;
            let Some(addr) = l
                .strip_prefix("listening ")
                .and_then(|a| a.parse::<SocketAddr>().ok())
            else {
                bad.push(format!(
                    "{call} via {door}: expected `listening ADDR`, got {l:?}"
                ));
                continue;
            };
            let refused = talk(DOT2, addr, None);
            let allowed = talk(LO, addr, None);
            let f = srv.wait();
            let mut why = Vec::new();
            if !refused.bytes.is_empty() {
                why.push(format!("refused peer 127.0.0.2 got {refused}"));
            }
            if allowed.bytes != ATTACK_BANNER {
                why.push(format!("allowed peer 127.0.0.1 got {allowed}"));
            }
            let accepted: Vec<&String> = f
                .stdout
                .iter()
                .filter(|l| l.starts_with("accepted "))
                .collect();
            if accepted.iter().any(|l| l.contains("127.0.0.2")) {
                why.push(format!(
                    "the program was handed the refused peer: {accepted:?}"
                ));
            }
            if !audit_denied(&f.stderr, "accept", "no-dot2-in") {
                why.push("no audit line with call=accept verdict=deny rule=no-dot2-in".into());
            }
            if !why.is_empty() {
                bad.push(format!(
                    "{call} via {door}: {} ({})",
                    why.join("; "),
                    how(&f)
                ));
            }
        }
    }
    report(&bad, total, "servers accepting through libc doors");
}

#[test]
fn listen_through_every_libc_door_is_judged() {
    let dir = TempDir::new("bypass-door-listen");
    let p = policy(&dir, DENY_DOT2_IN);
    let mut bad = Vec::new();
    let mut total = 0;
    for door in DOORS {
        let f = attack(&p, &["door", door, "listen", "127.0.0.3:0"]);
        if first(&f) == "nosym" {
            continue; // glibc has no __listen
        }
        total += 1;
        if first(&f) != EACCES || !audit_denied(&f.stderr, "listen", "no-dot3-listen") {
            bad.push(format!(
                "listen on 127.0.0.3 via {door}: program printed {:?} ({}); stderr: {}",
                first(&f),
                how(&f),
                tail(&f.stderr)
            ));
        }
    }
    report(
        &bad,
        total,
        "listens on a refused 127.0.0.3 through libc doors",
    );
}

#[test]
fn dlsym_of_unhooked_names_and_dlerror_keep_working() {
    let dir = TempDir::new("bypass-dlsym-sanity");
    let p = policy(&dir, DENY_DOT2);
    let f = attack(&p, &["dlsym-sanity"]);
    let failed: Vec<&String> = f
        .stdout
        .iter()
        .filter(|l| !l.ends_with(" ok") && *l != "done")
        .collect();
    assert!(
        f.status.success()
            && failed.is_empty()
            && f.stdout.last().map(String::as_str) == Some("done"),
        "dlsym/dlvsym/dlerror under the preload ({}): {failed:?}\nall: {:?}\nstderr: {}",
        how(&f),
        f.stdout,
        f.stderr
    );
    // And the same program without the library agrees (the checks themselves are right).
    let f = attack_unpreloaded(&["dlsym-sanity"]);
    assert!(
        f.status.success() && f.stdout.iter().all(|l| l.ends_with(" ok") || l == "done"),
        "dlsym-sanity without the library: {:?}",
        f.stdout
    );
}

/// glibc's remote-command helpers open their TCP connection themselves, through libc's
/// internal connect (no PLT entry a preload can take): `rcmd`/`rcmd_af` (root: they
/// bind a reserved source port) and `rexec`/`rexec_af`. A refused destination must
/// not get a connection, let alone the user name and command they send.
#[test]
fn glibc_rcmd_and_rexec_cannot_reach_a_refused_destination() {
    let dir = TempDir::new("bypass-rcmd");
    let p = policy(&dir, DENY_DOT2_AND_V6LO);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cases = vec![("rexec", DOT2), ("rexec_af", DOT2), ("rexec_af", V6LO)];
    if root {
        cases.extend([("rcmd", DOT2), ("rcmd_af", DOT2), ("rcmd_af", V6LO)]);
    } else {
        eprintln!("SKIPPED (these cases only): not root, so rcmd/rcmd_af (reserved source port) not tried");
    }
    let mut bad = Vec::new();
    for (kind, ip) in &cases {
        let w = Watch::on(*ip);
        let mut c = preloaded(example_path("attack_bypass"), &p);
        c.args(["rcmd", kind, &ip.to_string(), &w.port().to_string()]);
        let mut prog = Proc::start(c);
        // Read what arrives (they wait for the server's first byte; EOF ends them).
        let got = w.arrived(Duration::from_secs(2));
        let f = prog.wait();
        if let Some((peer, bytes)) = got {
            bad.push(format!(
                "{kind} to {}: the refused listener got a connection from {peer} carrying {:?}; program printed {:?} ({})",
                w.addr,
                bytes.escape_ascii().to_string(),
                first(&f),
                how(&f)
            ));
        } else if !first(&f).starts_with("error ") {
            bad.push(format!(
                "{kind} to {}: printed {:?} ({})",
                w.addr,
                first(&f),
                how(&f)
            ));
        }
    }
    report(
        &bad,
        cases.len(),
        "rcmd/rexec connections to refused destinations",
    );
}

pub(crate) fn python3() -> Option<String> {
    let ok = Command::new("python3")
        .arg("-c")
        .arg("import ctypes")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some("python3".into())
    } else {
        skip("python3 (with ctypes) is not installed: the ctypes side door is not tested");
        None
    }
}

pub(crate) fn ctypes_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/attack_ctypes.py")
}

#[test]
fn python_ctypes_connect_listen_and_accept_are_judged() {
    let Some(py) = python3() else { return };
    let dir = TempDir::new("bypass-ctypes");
    let p = policy(&dir, DENY_DOT2_IN);
    let script = ctypes_script();
    let mut bad = Vec::new();
    let mut total = 0;
    for handle in ["libc", "__connect", "default"] {
        total += 1;
        let w = Watch::on(DOT2);
        let mut c = preloaded(&py, &p);
        c.arg(&script)
            .args(["connect", handle, "127.0.0.2", &w.port().to_string()]);
        let f = Proc::start(c).wait();
        check_refused(
            &format!("ctypes {handle}.connect"),
            &f,
            &w,
            "no-dot2-out",
            &mut bad,
        );
    }
    for handle in ["libc", "default"] {
        total += 1;
        let mut c = preloaded(&py, &p);
        c.arg(&script).args(["listen", handle, "127.0.0.3"]);
        let f = Proc::start(c).wait();
        if first(&f) != EACCES || !audit_denied(&f.stderr, "listen", "no-dot3-listen") {
            bad.push(format!(
                "ctypes {handle}.listen on 127.0.0.3: {:?} ({}); stderr: {}",
                f.stdout,
                how(&f),
                tail(&f.stderr)
            ));
        }
    }
    for handle in ["libc", "default"] {
        total += 1;
        let mut c = preloaded(&py, &p);
        c.arg(&script).args(["accept", handle, "127.0.0.1", "1"]);
        let mut srv = Proc::start(c);
        let addr = srv.listening();
        let refused = talk(DOT2, addr, None);
        let allowed = talk(LO, addr, None);
        let f = srv.wait();
        let mut why = Vec::new();
        if !refused.bytes.is_empty() {
            why.push(format!("refused peer 127.0.0.2 got {refused}"));
        }
        if allowed.bytes != ATTACK_BANNER {
            why.push(format!("allowed peer 127.0.0.1 got {allowed}"));
        }
        if f.stdout.iter().any(|l| l.starts_with("accepted 127.0.0.2")) {
            why.push(format!(
                "the program was handed the refused peer: {:?}",
                f.stdout
            ));
        }
        if !why.is_empty() {
            bad.push(format!(
                "ctypes {handle}.accept: {} ({}); stderr: {}",
                why.join("; "),
                how(&f),
                tail(&f.stderr)
            ));
        }
    }
    report(&bad, total, "ctypes calls");
}
