//! `sockexit run --supervise` follows the published policy as a preloaded process
//! does: a running supervised static server refuses a peer after `sockexit apply` of
//! a policy that denies it, with no restart; a broken apply changes nothing; a
//! published image that cannot be loaded keeps the last good policy and is reported
//! once; every audit line names the generation that decided.
//!
//! Built on the spot like tests/supervise.rs (gcc); SKIPPED locally when missing.

#[path = "../../../tests/common/mod.rs"]
mod common;
#[path = "supervise/harness.rs"]
mod harness;
mod support;

use common::daemon::{free_port, Proc};
use harness::*;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{clean, run, BIN};

fn policy_text(audit: &Path, deny_127_0_0_2: bool) -> String {
    let mut p = format!(
        "version: 1\ndefault: allow\naudit: {{ log: {}, events: all }}\nrules:\n  \
         - {{ name: no-127-0-0-9, action: deny, calls: [accept], remote: [127.0.0.9] }}\n",
        audit.display()
    );
    if deny_127_0_0_2 {
        p.push_str(
            "  - { name: no-127-0-0-2, action: deny, calls: [accept], remote: [127.0.0.2] }\n",
        );
    }
    p
}

/// What a peer from `src` receives before the server closes (or resets) it.
fn received(src: &str, port: u16) -> Vec<u8> {
    received_by(src, port, b"").unwrap_or_else(|e| panic!("{e}"))
}

fn apply(s: &Setup, policy: &Path) -> support::Out {
    let mut c = clean(BIN);
    c.env("SOCKEXIT_RUN_DIR", s.run_dir())
        .arg("apply")
        .arg(policy);
    run(c)
}

/// The audit lines of accepts from `src`.
fn accepts_from(s: &Setup, src: &str) -> Vec<serde_json::Value> {
    s.audit_lines()
        .into_iter()
        .filter(|v| {
            v["call"] == "accept"
                && v["remote"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&format!("{src}:")))
        })
        .collect()
}

#[test]
fn a_running_supervised_server_follows_apply_and_keeps_its_policy_on_bad_ones() {
    let s = setup("sup-live");
    let Some(x) = s.cc("tcpx", TCPX, &["-static", "-O"]) else {
        return;
    };
    let policy = s.dir.write("live.yaml", &policy_text(&s.audit, false));
    let port = free_port();
    let mut c = s.sup_under(&policy, &x);
    c.args(["server", "block", &port.to_string(), "100"]);
    let mut p = Proc::start(c, s.dir.path(), Stdio::null());
    p.expect("listening", T);

    // Generation 1 (run applied it): 127.0.0.2 is served.
    assert!(received("127.0.0.2", port).starts_with(b"hello "));
    let first = accepts_from(&s, "127.0.0.2");
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        (first[0]["verdict"].as_str(), first[0]["policy"].as_u64()),
        (Some("allow"), Some(1))
    );

    // Generation 2 denies it: refused from the next connections on, no restart.
    std::fs::write(&policy, policy_text(&s.audit, true)).unwrap();
    let o = apply(&s, &policy);
    assert_eq!(o.code, Some(0), "{o:?}");
    let applied = Instant::now();
    let mut tries = 0;
    while !received("127.0.0.2", port).is_empty() {
        tries += 1;
        assert!(
            tries < 50 && applied.elapsed() < Duration::from_secs(1),
            "still served {tries} times after the apply"
        );
    }
    assert!(received("127.0.0.1", port).starts_with(b"hello "));
    let deny = accepts_from(&s, "127.0.0.2")
        .into_iter()
        .find(|v| v["verdict"] == "deny")
        .expect("the refusal is audited");
    assert_eq!(
        (deny["rule"].as_str(), deny["policy"].as_u64()),
        (Some("no-127-0-0-2"), Some(2))
    );
    assert_eq!(deny["backend"], "supervise");

    // A broken apply publishes nothing: the server still decides with generation 2.
    std::fs::write(&policy, "version: 1\ndefualt: allow\n").unwrap();
    let o = apply(&s, &policy);
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(o.stderr.contains("not applied"), "{o:?}");
    assert!(received("127.0.0.2", port).is_empty());
    assert!(received("127.0.0.1", port).starts_with(b"hello "));

    // A published generation whose image is corrupt (apply never writes one: a disk
    // or a hand did) keeps generation 2, and says so once.
    let dir = std::fs::read_dir(s.run_dir())
        .unwrap()
        .next()
        .expect("a publication directory")
        .unwrap()
        .path();
    std::fs::write(dir.join("3.image"), b"SOCKEXIT-IMAGE\0\x01 not really").unwrap();
    bump_generation(&dir.join("generation"), 3);
    for _ in 0..3 {
        assert!(received("127.0.0.2", port).is_empty());
        assert!(received("127.0.0.1", port).starts_with(b"hello "));
    }
    let last = accepts_from(&s, "127.0.0.2").pop().unwrap();
    assert_eq!(
        (last["verdict"].as_str(), last["policy"].as_u64()),
        (Some("deny"), Some(2))
    );
    p.signal(libc::SIGTERM);
    assert!(p.exited_within(T).is_some(), "SIGTERM forwarded");
    let err = std::fs::read_to_string(s.dir.path().join("sockexit.err")).unwrap();
    let said = "published policy generation 3 cannot be loaded";
    assert_eq!(err.matches(said).count(), 1, "{err}");
    assert!(err.contains("keeping generation 2"), "{err}");
}

/// Publish generation `g` by hand, as `apply` does (the word at offset 16).
fn bump_generation(path: &Path, g: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&g.to_le_bytes(), 16).unwrap();
}

#[test]
fn an_untrusted_publication_starts_nothing() {
    let s = setup("sup-live-untrusted");
    let policy = s.dir.write("p.yaml", &policy_text(&s.audit, false));
    assert_eq!(apply(&s, &policy).code, Some(0));
    let dir = std::fs::read_dir(s.run_dir())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // Anyone may now replace its images: as the preload at start-up, fail closed.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let marker = s.dir.path().join("started");
    let mut c = s.sup_under(&policy, Path::new("/usr/bin/touch"));
    c.arg(&marker);
    let o = run(c);
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(o.stderr.contains("published policy"), "{o:?}");
    assert!(
        !marker.exists(),
        "the command ran under an untrusted publication"
    );
}

/// A dynamic set under `--supervise`: `sockexit set add` refuses a peer of a running
/// supervised static server within a second, `del` serves it again, no new generation.
#[test]
fn a_running_supervised_server_follows_set_add_and_del() {
    let s = setup("sup-dyn");
    let Some(x) = s.cc("tcpx", TCPX, &["-static", "-O"]) else {
        return;
    };
    let policy = s.dir.write(
        "dyn.yaml",
        &format!(
            "version: 1\ndefault: allow\naudit: {{ log: {}, events: deny }}\nsets:\n  \
             banned: {{ dynamic: true }}\nrules:\n  \
             - {{ name: banned-peer, action: deny, calls: [accept], remote: [\"@banned\"] }}\n",
            s.audit.display()
        ),
    );
    let port = free_port();
    let mut c = s.sup_under(&policy, &x);
    c.args(["server", "block", &port.to_string(), "100"]);
    let mut p = Proc::start(c, s.dir.path(), Stdio::null());
    p.expect("listening", T);
    assert!(received("127.0.0.2", port).starts_with(b"hello "));

    let set = |op: &str| {
        let mut c = clean(BIN);
        c.env("SOCKEXIT_RUN_DIR", s.run_dir())
            .args(["set", op])
            .arg(&policy)
            .args(["banned", "127.0.0.2"]);
        let o = run(c);
        assert_eq!(o.code, Some(0), "set {op}: {o:?}");
    };
    let within_a_second = |want_served: bool| {
        let t0 = Instant::now();
        let mut tries = 0;
        while received("127.0.0.2", port).starts_with(b"hello ") != want_served {
            tries += 1;
            assert!(
                tries < 50 && t0.elapsed() < Duration::from_secs(1),
                "127.0.0.2 not {} a second after the change",
                if want_served { "served" } else { "refused" }
            );
        }
    };
    set("add");
    within_a_second(false);
    assert!(received("127.0.0.1", port).starts_with(b"hello "));
    let deny = accepts_from(&s, "127.0.0.2")
        .into_iter()
        .find(|v| v["verdict"] == "deny")
        .expect("the refusal is audited");
    assert_eq!(
        (
            deny["rule"].as_str(),
            deny["policy"].as_u64(),
            deny["sets"].as_u64()
        ),
        (Some("banned-peer"), Some(1), Some(1))
    );
    set("del");
    within_a_second(true);
    p.signal(libc::SIGTERM);
    assert!(p.exited_within(T).is_some());
}
