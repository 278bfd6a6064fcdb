//! `sockexit explain`: verdict and deciding rule for given facts, text and JSON.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use common::TempDir;
use support::{run, sockexit, Out};

const POLICY: &str = r#"version: 1
default: deny
sets:
  blocklist: [127.0.0.2/32]
rules:
  - { name: drop-listed, action: deny, calls: [accept], remote: ["@blocklist"] }
  - name: local-clients
    action: allow
    calls: [accept]
    remote: [127.0.0.0/8, "::1/128"]
    local_ports: [5000]
  - { name: docs-https, action: allow, calls: [connect], remote: ["2001:db8::/32"], remote_ports: [443] }
  - { name: root-smtp, action: allow, calls: [connect], users: [0], remote_ports: [25] }
  - { name: wheel-dns, action: allow, calls: [connect], groups: [0], remote_ports: [53] }
  - { name: nginx-upstream, action: allow, calls: [connect], programs: ["*/nginx"], remote_ports: [8080] }
  - { name: web-listen, action: allow, calls: [listen], local_ports: [80] }
"#;

fn explain(args: &[&str]) -> (TempDir, Out) {
    let d = TempDir::new("explain");
    let p = d.write("p.yaml", POLICY);
    let mut c = sockexit(["explain".as_ref(), p.as_os_str()]);
    c.args(args);
    let o = run(&mut c);
    (d, o)
}

/// The first line of a successful explain.
fn first_line(args: &[&str]) -> String {
    let (_d, o) = explain(args);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(o.stderr, "", "{o:?}");
    o.stdout.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn deny_by_a_named_rule() {
    let l = first_line(&[
        "--call",
        "accept",
        "--remote",
        "127.0.0.2:5000",
        "--local",
        "127.0.0.1:5000",
    ]);
    assert_eq!(
        l,
        "deny  rule=drop-listed  (call=accept remote=127.0.0.2:5000 local=127.0.0.1:5000)"
    );
}

#[test]
fn allow_by_a_named_rule() {
    let l = first_line(&[
        "--call",
        "accept",
        "--remote",
        "127.0.0.1:40000",
        "--local",
        "127.0.0.1:5000",
    ]);
    assert!(
        l.starts_with("allow rule=local-clients  (call=accept "),
        "{l}"
    );
}

#[test]
fn no_rule_matches_so_the_default_decides() {
    let l = first_line(&[
        "--call",
        "accept",
        "--remote",
        "127.0.0.1:40000",
        "--local",
        "127.0.0.1:6000",
    ]);
    assert!(l.starts_with("deny  rule=default  "), "{l}");
}

#[test]
fn ipv6_addresses_in_brackets() {
    let l = first_line(&["--call", "connect", "--remote", "[2001:db8::7]:443"]);
    assert!(l.starts_with("allow rule=docs-https "), "{l}");
    assert!(l.contains("remote=[2001:db8::7]:443"), "{l}");
    let l = first_line(&["--call", "connect", "--remote", "[2001:db9::7]:443"]);
    assert!(l.starts_with("deny  rule=default "), "{l}");
}

#[test]
fn v4_mapped_peers_match_ipv4_rules() {
    let l = first_line(&[
        "--call",
        "accept",
        "--remote",
        "[::ffff:127.0.0.2]:5000",
        "--local",
        "[::]:5000",
    ]);
    assert!(l.starts_with("deny  rule=drop-listed "), "{l}");
    let l = first_line(&[
        "--call",
        "accept",
        "--remote",
        "[::ffff:127.0.0.1]:40000",
        "--local",
        "[::ffff:127.0.0.1]:5000",
    ]);
    assert!(l.starts_with("allow rule=local-clients "), "{l}");
}

#[test]
fn an_unknown_fact_does_not_match_and_is_named_in_a_note() {
    // local-clients needs the local port; without --local it cannot match.
    let (_d, o) = explain(&["--call", "accept", "--remote", "127.0.0.1:40000"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let mut lines = o.stdout.lines();
    assert!(
        lines.next().unwrap().starts_with("deny  rule=default "),
        "{o:?}"
    );
    let note = lines.next().unwrap_or_default();
    assert!(
        note.starts_with("note: ") && note.contains("local"),
        "{o:?}"
    );
}

#[test]
fn users_by_name_or_uid() {
    for user in ["root", "0"] {
        let l = first_line(&[
            "--call",
            "connect",
            "--remote",
            "127.0.0.1:25",
            "--user",
            user,
        ]);
        assert!(l.starts_with("allow rule=root-smtp "), "--user {user}: {l}");
    }
    let l = first_line(&[
        "--call",
        "connect",
        "--remote",
        "127.0.0.1:25",
        "--user",
        "65534",
    ]);
    assert!(l.starts_with("deny  rule=default "), "{l}");
}

#[test]
fn groups_by_name_or_gid() {
    for group in ["root", "0"] {
        let l = first_line(&[
            "--call",
            "connect",
            "--remote",
            "127.0.0.1:53",
            "--group",
            group,
        ]);
        assert!(
            l.starts_with("allow rule=wheel-dns "),
            "--group {group}: {l}"
        );
    }
}

#[test]
fn unknown_user_name_is_a_usage_error() {
    let (_d, o) = explain(&["--call", "connect", "--user", "no-such-user-sockexit"]);
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(o.stderr.contains("no-such-user-sockexit"), "{o:?}");
    assert!(o.stderr.contains("/etc/passwd"), "{o:?}");
}

#[test]
fn programs_match_by_glob() {
    let args = [
        "--call",
        "connect",
        "--remote",
        "127.0.0.1:8080",
        "--program",
    ];
    let l = first_line(&[&args[..], &["/usr/sbin/nginx"]].concat());
    assert!(l.starts_with("allow rule=nginx-upstream "), "{l}");
    let l = first_line(&[&args[..], &["/usr/sbin/apache2"]].concat());
    assert!(l.starts_with("deny  rule=default "), "{l}");
}

#[test]
fn listen_is_decided_on_the_local_address() {
    let l = first_line(&["--call", "listen", "--local", "0.0.0.0:80"]);
    assert!(l.starts_with("allow rule=web-listen "), "{l}");
    let l = first_line(&["--call", "listen", "--local", "[::]:8081"]);
    assert!(l.starts_with("deny  rule=default "), "{l}");
}

#[test]
fn remote_with_listen_is_refused() {
    let (_d, o) = explain(&[
        "--call",
        "listen",
        "--remote",
        "127.0.0.1:1",
        "--local",
        "0.0.0.0:80",
    ]);
    // A bad argument: 2, as docs/cli.md says (1 is an invalid policy).
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(
        o.stderr.starts_with("error: ") && o.stderr.contains("--remote"),
        "{o:?}"
    );
}

#[test]
fn bare_address_without_port_is_refused_with_a_hint() {
    let (_d, o) = explain(&["--call", "connect", "--remote", "127.0.0.1"]);
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(o.stderr.contains("127.0.0.1:22"), "{o:?}");
    let (_d, o) = explain(&["--call", "connect", "--remote", "2001:db8::1"]);
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(o.stderr.contains("[2001:db8::1]:22"), "{o:?}");
}

#[test]
fn json_output_is_one_object_with_the_decision_and_facts() {
    let (_d, o) = explain(&[
        "--call",
        "accept",
        "--remote",
        "[::ffff:127.0.0.2]:5000",
        "--local",
        "127.0.0.1:5000",
        "--user",
        "root",
        "--json",
    ]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(o.stdout.lines().count(), 1, "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("valid JSON");
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["rule"], "drop-listed");
    assert_eq!(v["call"], "accept");
    assert_eq!(v["remote"], "127.0.0.2:5000");
    assert_eq!(v["local"], "127.0.0.1:5000");
    assert_eq!(v["family"], "ipv4");
    assert_eq!(v["uid"], 0);
    assert_eq!(v["user"], "root");
    assert_eq!(v["gid"], serde_json::Value::Null);
    assert_eq!(v["mode"], "enforce");
    assert_eq!(v["refused"], true);
}

#[test]
fn json_allow_and_unknown_facts() {
    let (_d, o) = explain(&[
        "--call",
        "connect",
        "--remote",
        "[2001:db8::1]:443",
        "--json",
    ]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("valid JSON");
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["rule"], "docs-https");
    assert_eq!(v["remote"], "[2001:db8::1]:443");
    assert_eq!(v["family"], "ipv6");
    assert_eq!(v["refused"], false);
    // Later connect rules look at users, groups and programs, none of which was given.
    let unknown: Vec<&str> = v["unknown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    for f in ["user", "group", "program"] {
        assert!(unknown.contains(&f), "{unknown:?}");
    }
}

#[test]
fn invalid_policy_is_an_error() {
    let d = TempDir::new("explain-invalid");
    let p = d.write("p.yaml", "version: 1\ndefault: maybe\n");
    let o = run(sockexit([
        "explain".as_ref(),
        p.as_os_str(),
        "--call".as_ref(),
        "connect".as_ref(),
    ]));
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(
        o.stderr.starts_with(&format!("error: {}:2:", p.display())),
        "{o:?}"
    );
}

#[test]
fn audit_mode_deny_is_not_refused() {
    let d = TempDir::new("explain-audit");
    let p = d.write(
        "p.yaml",
        "version: 1\ndefault: deny\nmode: audit\nrules:\n  - { name: web, action: allow, calls: [listen], local_ports: [80] }\n",
    );
    let args = |json: bool| {
        let mut c = sockexit(["explain".as_ref(), p.as_os_str()]);
        c.args(["--call", "listen", "--local", "0.0.0.0:81"]);
        if json {
            c.arg("--json");
        }
        run(c)
    };
    let o = args(false);
    assert_eq!(o.code, Some(0), "{o:?}");
    let mut lines = o.stdout.lines();
    assert!(
        lines.next().unwrap().starts_with("deny  rule=default "),
        "{o:?}"
    );
    assert!(
        lines.any(|l| l.starts_with("note: ") && l.contains("audit mode")),
        "{o:?}"
    );
    let o = args(true);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("valid JSON");
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["mode"], "audit");
    assert_eq!(v["refused"], false);
}

// ---------------------------------------------------------------------------------
// Stealth: whether a listener's accept rules compile to a socket filter.
// ---------------------------------------------------------------------------------

const STEALTH: &str = r#"version: 1
default: deny
stealth: true
sets:
  lan: [10.0.0.0/8, "2001:db8::/32"]
rules:
  - { name: ftp-listen, action: allow, calls: [listen], local_ports: [21, 80] }
  - { name: admins, action: allow, calls: [accept], users: [1000], remote: [192.168.0.0/16] }
  - { name: lan-ftp, action: allow, calls: [accept], remote: ["@lan"], local_ports: [21] }
  - { name: web, action: allow, calls: [accept], local_ports: [80] }
"#;

fn explain_stealth(policy: &str, args: &[&str]) -> Out {
    let d = TempDir::new("explain-stealth");
    let p = d.write("p.yaml", policy);
    let mut c = sockexit(["explain".as_ref(), p.as_os_str()]);
    c.args(args);
    let o = run(&mut c);
    assert_eq!(o.code, Some(0), "{o:?}");
    o
}

/// The engine's own count for the same listener, to compare with what is printed.
fn engine_insns(policy: &str, local: &str, uid: Option<u32>) -> usize {
    let d = TempDir::new("explain-stealth-engine");
    let p = d.write("p.yaml", policy);
    let pol = sockexit_engine::Policy::load(&p).expect("policy");
    let c = sockexit_engine::bpf::compile(
        &pol,
        &sockexit_engine::bpf::Listener {
            local: local.parse().unwrap(),
            v6_only: false,
            uid,
            gid: None,
            program: None,
        },
    );
    c.insns().expect("a filter")
}

#[test]
fn stealth_listen_reports_the_filter_and_its_size() {
    let o = explain_stealth(STEALTH, &["--call", "listen", "--local", "0.0.0.0:21"]);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(lines[0].starts_with("allow rule=ftp-listen "), "{o:?}");
    let n = engine_insns(STEALTH, "0.0.0.0:21", None);
    assert_eq!(
        lines[1],
        format!("stealth: filter: {n} instructions"),
        "{o:?}"
    );
    // Without --user the users rule cannot be decided at listen.
    assert!(
        lines[2].starts_with("stealth: partial: rule `admins` looks at the user"),
        "{o:?}"
    );
    assert_eq!(lines.len(), 3, "{o:?}");
}

#[test]
fn stealth_with_a_fixed_user_is_exact_and_root_is_not() {
    let o = explain_stealth(
        STEALTH,
        &["--call", "listen", "--local", "[::]:21", "--user", "1000"],
    );
    let n = engine_insns(STEALTH, "[::]:21", Some(1000));
    assert_eq!(
        o.stdout.lines().nth(1),
        Some(format!("stealth: filter: {n} instructions").as_str()),
        "{o:?}"
    );
    assert!(!o.stdout.contains("partial"), "{o:?}");
    // root can still switch users before accept.
    let o = explain_stealth(
        STEALTH,
        &["--call", "listen", "--local", "[::]:21", "--user", "0"],
    );
    assert!(
        o.stdout.contains("stealth: partial: rule `admins`"),
        "{o:?}"
    );
}

#[test]
fn stealth_reports_nothing_to_drop_and_refused_listens() {
    let o = explain_stealth(STEALTH, &["--call", "listen", "--local", "[::]:80"]);
    assert_eq!(
        o.stdout.lines().nth(1),
        Some("stealth: no filter: every peer may be allowed, so there is nothing to drop"),
        "{o:?}"
    );
    let o = explain_stealth(STEALTH, &["--call", "listen", "--local", "0.0.0.0:22"]);
    assert!(o.stdout.starts_with("deny  rule=default "), "{o:?}");
    assert_eq!(
        o.stdout.lines().nth(1),
        Some("stealth: no filter: the listen is refused"),
        "{o:?}"
    );
}

#[test]
fn stealth_too_large_set_is_reported() {
    let d = TempDir::new("explain-stealth-big");
    let list: String = (0..10_000u32)
        .map(|i| format!("10.{}.{}.{}\n", i >> 10, (i >> 2) & 0xff, (i & 3) * 60 + 1))
        .collect();
    let set = d.write("drop.txt", &list);
    let policy = format!(
        "version: 1\ndefault: allow\nstealth: true\nsets:\n  drop: {{ file: {} }}\nrules:\n  - {{ name: drop, action: deny, calls: [accept], remote: [\"@drop\"] }}\n",
        set.display()
    );
    let o = explain_stealth(&policy, &["--call", "listen", "--local", "0.0.0.0:80"]);
    let l = o.stdout.lines().nth(1).unwrap_or_default();
    // 10,000 separate addresses need at least 9,999 comparisons.
    assert!(
        l.starts_with("stealth: no filter: too large (9999+ instructions, the kernel allows 4096)"),
        "{o:?}"
    );
    let o = explain_stealth(
        &policy,
        &["--call", "listen", "--local", "0.0.0.0:80", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("valid JSON");
    assert_eq!(v["stealth"]["outcome"], "too-large", "{o:?}");
    assert_eq!(v["stealth"]["instructions"], serde_json::Value::Null);
}

#[test]
fn stealth_json_and_no_stealth_lines_without_stealth() {
    let o = explain_stealth(
        STEALTH,
        &["--call", "listen", "--local", "0.0.0.0:21", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("valid JSON");
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["stealth"]["outcome"], "filter");
    assert_eq!(
        v["stealth"]["instructions"],
        engine_insns(STEALTH, "0.0.0.0:21", None)
    );
    assert_eq!(v["stealth"]["partial"].as_array().map(Vec::len), Some(1));
    // A connect under the same policy, and a listen or accept without stealth: as
    // before.
    let o = explain_stealth(
        STEALTH,
        &["--call", "connect", "--remote", "10.1.1.1:4000", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("valid JSON");
    assert!(v.get("stealth").is_none(), "{o:?}");
    let plain = STEALTH.replace("stealth: true\n", "");
    let o = explain_stealth(&plain, &["--call", "listen", "--local", "0.0.0.0:21"]);
    assert!(!o.stdout.contains("stealth"), "{o:?}");
    let o = explain_stealth(
        &plain,
        &[
            "--call",
            "accept",
            "--remote",
            "8.8.8.8:1",
            "--local",
            "0.0.0.0:21",
        ],
    );
    assert!(!o.stdout.contains("stealth"), "{o:?}");
}

#[test]
fn stealth_accept_says_what_the_filter_does_with_the_syn() {
    let second = |args: &[&str]| {
        let o = explain_stealth(STEALTH, args);
        o.stdout
            .lines()
            .find(|l| l.starts_with("stealth: "))
            .unwrap_or_else(|| panic!("no stealth line: {o:?}"))
            .to_owned()
    };
    // Refused by default: dropped before the handshake, on IPv4 and dual-stack.
    for local in ["0.0.0.0:21", "[::]:21"] {
        assert_eq!(
            second(&["--call", "accept", "--remote", "8.8.8.8:5000", "--local", local]),
            "stealth: the listener's filter drops this SYN: no SYN-ACK, the peer's connect times out",
            "{local}"
        );
    }
    assert_eq!(
        second(&[
            "--call",
            "accept",
            "--remote",
            "[2001:db9::1]:5000",
            "--local",
            "[::]:21"
        ]),
        "stealth: the listener's filter drops this SYN: no SYN-ACK, the peer's connect times out"
    );
    // Allowed.
    assert_eq!(
        second(&[
            "--call",
            "accept",
            "--remote",
            "[2001:db8::1]:5000",
            "--local",
            "[::]:21"
        ]),
        "stealth: the SYN passes the listener's filter"
    );
    // A users rule may allow it when the user is unknown: left to accept.
    assert_eq!(
        second(&[
            "--call",
            "accept",
            "--remote",
            "192.168.1.1:5000",
            "--local",
            "0.0.0.0:21"
        ]),
        "stealth: the SYN passes the listener's filter; refused at accept (reset)"
    );
    assert_eq!(
        second(&[
            "--call",
            "accept",
            "--remote",
            "[::ffff:192.168.1.1]:5000",
            "--local",
            "[::]:21",
            "--user",
            "1000",
        ]),
        "stealth: the SYN passes the listener's filter"
    );
    let o = explain_stealth(
        STEALTH,
        &[
            "--call",
            "accept",
            "--remote",
            "8.8.8.8:5000",
            "--local",
            "0.0.0.0:21",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("valid JSON");
    assert_eq!(v["refused"], true);
    assert_eq!(v["stealth"]["syn"], "dropped", "{o:?}");
}
