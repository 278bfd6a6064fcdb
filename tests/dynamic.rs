//! Dynamic sets: `sockexit set add|del` changes what running processes refuse within a
//! second, with no restart and no new policy generation; TTLs expire in every process;
//! entries survive an apply; broken entries fail closed on the rules that name them.
//!
//! Every test publishes into its own `SOCKEXIT_RUN_DIR`. Peers: 127.0.0.1 and
//! 127.0.0.2 from the test process.

mod common;

use common::live::{served, within, Live};
use common::proc::Proc;
use common::tcp_peer::talk;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const DOT2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const BANNER: &[u8] = b"220 sockexit banner\r\n";
const THREADED: &[u8] = b"220 sockexit threaded\r\n";
const SECOND: Duration = Duration::from_secs(1);

/// Refuses the peers in the dynamic set `banned` at accept, and connects to it.
fn policy(audit: Option<&std::path::Path>) -> String {
    let mut p = String::from(
        "version: 1\ndefault: allow\nsets:\n  banned: { dynamic: true }\nrules:\n  \
         - { name: banned-peer, action: deny, calls: [accept, connect], remote: [\"@banned\"] }\n",
    );
    if let Some(log) = audit {
        p.push_str(&format!(
            "audit: {{ log: {}, events: deny }}\n",
            log.display()
        ));
    }
    p
}

fn published(tag: &str) -> Live {
    let l = Live::new(tag, "");
    l.apply_ok(&policy(None));
    l
}

fn refused(l: &Live, addr: std::net::SocketAddr, who: IpAddr) -> bool {
    let _ = l;
    talk(who, addr, None).bytes.is_empty()
}

#[test]
fn set_add_refuses_a_peer_of_a_running_threaded_server_within_a_second_and_del_serves_it_again() {
    let l = Live::new("dyn-threaded", "");
    let log = l.dir.path().join("audit.jsonl");
    l.apply_ok(&policy(Some(&log)));
    let (mut p, addr) = l.server("threaded_server");
    assert!(served(&talk(DOT2, addr, None), THREADED));

    let out = l.set_ok("add", &["banned", "127.0.0.2"]);
    assert!(
        out.contains("added to banned: 127.0.0.2/32") && out.contains("revision 1"),
        "{out}"
    );
    assert!(
        within(SECOND, || refused(&l, addr, DOT2)).is_some(),
        "127.0.0.2 still served a second after set add"
    );
    assert!(
        served(&talk(LO, addr, None), THREADED),
        "127.0.0.1 is not banned"
    );
    // No new policy generation was needed.
    let st = String::from_utf8_lossy(&l.sockexit(&["status"]).stdout).into_owned();
    assert!(st.contains("generation 1,"), "{st}");

    l.set_ok("del", &["banned", "127.0.0.2"]);
    assert!(
        within(SECOND, || served(&talk(DOT2, addr, None), THREADED)).is_some(),
        "127.0.0.2 still refused a second after set del"
    );
    p.kill();
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["rule"] == "banned-peer")
        .expect("an audit line for the banned peer");
    assert!(
        line["remote"].as_str().unwrap().starts_with("127.0.0.2:"),
        "{text}"
    );
    // Which version decided: the policy's generation and the dynamic sets' revision.
    assert_eq!(
        (line["policy"].as_u64(), line["sets"].as_u64()),
        (Some(1), Some(1)),
        "{text}"
    );
}

#[test]
fn a_ttl_entry_stops_matching_when_it_expires_and_list_shows_what_is_left() {
    let l = published("dyn-ttl");
    let (mut p, addr) = l.server("banner_server");
    l.set_ok("add", &["banned", "127.0.0.2", "--ttl", "2s"]);
    l.set_ok("add", &["banned", "192.0.2.0/24"]);
    assert!(within(SECOND, || refused(&l, addr, DOT2)).is_some());
    let list = l.set_ok("list", &["banned"]);
    assert!(list.contains("127.0.0.2/32\texpires in 0h00m0"), "{list}");
    assert!(list.contains("192.0.2.0/24\tnever expires"), "{list}");
    // Nothing is rewritten when it expires: the process compares with the clock.
    assert!(
        within(Duration::from_secs(4), || served(
            &talk(DOT2, addr, None),
            BANNER
        ))
        .is_some(),
        "127.0.0.2 still refused after its TTL"
    );
    let list = l.set_ok("list", &["banned"]);
    assert!(!list.contains("127.0.0.2"), "{list}");
    assert!(list.contains("192.0.2.0/24"), "{list}");
    p.kill();
}

#[test]
fn a_connect_from_a_running_client_is_refused_after_set_add() {
    let l = published("dyn-connect");
    let (mut srv, addr) = l.server("banner_server");
    let go = l.dir.path().join("go");
    let dest = format!("127.0.0.2:{}", addr.port());
    // The client loads the library (and the published policy) now, connects later.
    let mut c = Proc::start(l.cmd("connect_client", &["--after", go.to_str().unwrap(), &dest]));
    assert_eq!(c.line(), "waiting");
    l.set_ok("add", &["banned", "127.0.0.2"]);
    std::fs::write(&go, "").unwrap();
    let f = c.wait();
    assert!(
        f.stdout.iter().any(|l| l == "error EACCES 13"),
        "{:?} {}",
        f.stdout,
        f.stderr
    );
    srv.kill();
}

#[test]
fn a_forked_child_judges_with_entries_added_after_its_parent_started() {
    let l = Live::new("dyn-fork", "");
    l.apply_ok(
        "version: 1\ndefault: allow\nsets:\n  nolisten: { dynamic: true }\nrules:\n  \
         - { name: no-listen, action: deny, calls: [listen], local: [\"@nolisten\"] }\n",
    );
    let (mut p, addr) = l.server("fork_server");
    let r = talk(LO, addr, None);
    assert!(r.bytes.ends_with(b"listen=ok\r\n"), "{:?}", r.bytes);
    l.set_ok("add", &["nolisten", "127.0.0.1"]);
    assert!(
        within(SECOND, || talk(LO, addr, None)
            .bytes
            .ends_with(b"listen=EACCES\r\n"))
        .is_some(),
        "the forked children still listen after set add"
    );
    p.kill();
}

#[test]
fn entries_survive_an_apply_and_a_restart() {
    let l = published("dyn-apply");
    l.set_ok("add", &["banned", "127.0.0.2"]);
    // A new generation (an extra rule) keeps the entries, for running and new processes.
    let (mut p, addr) = l.server("banner_server");
    let mut text = policy(None);
    text.push_str("  - { name: lo, action: allow, remote: [127.0.0.0/8] }\n");
    l.apply_ok(&text);
    assert!(refused(&l, addr, DOT2));
    assert!(served(&talk(LO, addr, None), BANNER));
    let (mut q, addr2) = l.server("banner_server");
    assert!(refused(&l, addr2, DOT2));
    assert!(served(&talk(LO, addr2, None), BANNER));
    p.kill();
    q.kill();
}

#[test]
fn parallel_adds_lose_nothing() {
    let l = published("dyn-parallel");
    let cli = common::cli_path();
    let kids: Vec<_> = (1..=16)
        .map(|i| {
            std::process::Command::new(&cli)
                .args(["set", "add"])
                .arg(&l.policy)
                .args(["banned", &format!("198.51.100.{i}")])
                .env("SOCKEXIT_RUN_DIR", &l.run)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    let list = l.set_ok("list", &["banned"]);
    for i in 1..=16 {
        assert!(list.contains(&format!("198.51.100.{i}/32")), "{i}: {list}");
    }
}

#[test]
fn wrong_use_is_an_error_that_says_what_to_do() {
    let l = Live::new("dyn-errors", "");
    std::fs::write(&l.policy, policy(None)).unwrap();
    let o = l.set("add", &["banned", "127.0.0.2"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        e.contains("never applied") && e.contains("sockexit apply"),
        "{e}"
    );

    l.apply_ok(&policy(None));
    for (args, want) in [
        (
            &["nosuch", "127.0.0.2"][..],
            "`nosuch` is not a dynamic set",
        ),
        (
            &["banned", "127.0.0.300"][..],
            "`127.0.0.300` is not an IP address",
        ),
        (
            &["banned", "127.0.0.2", "--ttl", "1y"][..],
            "--ttl 1y: not a duration",
        ),
    ] {
        let o = l.set("add", args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(e.contains(want), "{args:?}: {e}");
    }
    l.set_ok("add", &["banned", "10.0.0.0/8"]);
    let o = l.set("del", &["banned", "10.1.2.3"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("not in banned: 10.1.2.3/32"), "{e}");
    // A failed del changes nothing.
    assert!(l.set_ok("list", &["banned"]).contains("10.0.0.0/8"));
}

#[test]
fn corrupt_entries_fail_closed_on_the_rules_that_name_them_and_are_never_overwritten() {
    let l = Live::new("dyn-corrupt", "");
    l.apply_ok(
        "version: 1\ndefault: allow\nsets:\n  banned: { dynamic: true }\nrules:\n  \
         - { name: banned-any, action: deny, calls: [accept], remote: [\"@banned\"] }\n",
    );
    l.set_ok("add", &["banned", "192.0.2.1"]);
    let (mut p, addr) = l.server("banner_server");
    assert!(served(&talk(DOT2, addr, None), BANNER));
    let dynamic = l.publication().join("dynamic");
    let mut bytes = std::fs::read(&dynamic).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x55;
    std::fs::write(&dynamic, &bytes).unwrap();
    // Announce it as a new revision, as `sockexit set` would.
    l.store_word(24, 2);
    // The entries in use stay (the process had revision 1).
    assert!(served(&talk(DOT2, addr, None), BANNER));
    // A process started now cannot know the entries: the deny rule holds every peer.
    let (mut q, addr2) = l.server("banner_server");
    assert!(refused(&l, addr2, LO), "unknown entries must fail closed");
    let o = l.set("add", &["banned", "192.0.2.2"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("corrupt dynamic-set file") && e.contains("remove"),
        "{e}"
    );
    assert_eq!(std::fs::read(&dynamic).unwrap(), bytes, "overwritten");
    let f = p.terminate();
    assert!(
        f.stderr
            .contains("dynamic sets revision 2 cannot be loaded")
            && f.stderr.contains("keeping the entries in use"),
        "{}",
        f.stderr
    );
    let f = q.terminate();
    assert!(f.stderr.contains("fail closed"), "{}", f.stderr);
}

#[test]
fn explain_decides_with_the_published_entries() {
    let l = published("dyn-explain");
    let explain = || {
        let o = std::process::Command::new(common::cli_path())
            .arg("explain")
            .arg(&l.policy)
            .args([
                "--call",
                "accept",
                "--remote",
                "127.0.0.2:5000",
                "--local",
                "127.0.0.1:21",
            ])
            .env("SOCKEXIT_RUN_DIR", &l.run)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let before = explain();
    assert!(before.contains("default"), "{before}");
    l.set_ok("add", &["banned", "127.0.0.0/30"]);
    let after = explain();
    assert!(
        after.contains("banned-peer") && after.contains("deny"),
        "{after}"
    );
}

#[test]
fn check_and_status_say_how_many_entries_are_in_force() {
    let l = Live::new("dyn-status", "");
    std::fs::write(&l.policy, policy(None)).unwrap();
    let out = String::from_utf8_lossy(&l.sockexit(&["check"]).stdout).into_owned();
    assert!(
        out.contains("dynamic sets banned: empty until the policy is applied"),
        "{out}"
    );
    l.apply_ok(&policy(None));
    l.set_ok("add", &["banned", "192.0.2.1", "192.0.2.2"]);
    l.set_ok("add", &["banned", "192.0.2.3", "--ttl", "1h"]);
    for sub in ["check", "status"] {
        let out = String::from_utf8_lossy(&l.sockexit(&[sub]).stdout).into_owned();
        assert!(
            out.contains("dynamic set banned: 3 entries in force (revision 2)"),
            "{sub}: {out}"
        );
    }
}
