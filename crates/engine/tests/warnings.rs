//! Lint warnings (`sockexit check`): each finding the engine reports, with its rule and
//! location, and none for a sound policy.
mod common;

use common::*;

fn messages(p: &sockexit_engine::Policy) -> Vec<String> {
    p.warnings().iter().map(|w| w.to_string()).collect()
}

#[test]
fn a_sound_policy_has_no_warnings() {
    let p = ok(&format!(
        "{HEAD}sets:\n  lan: [10.0.0.0/8]\nrules:
  - name: drop-host
    action: deny
    remote: [10.6.6.6]
  - name: lan
    action: allow
    calls: [accept]
    remote: [\"@lan\"]
  - name: listen-web
    action: allow
    calls: [listen]
    local_ports: [80]
  - name: dns
    action: allow
    calls: [connect]
    remote_ports: [53]
"
    ));
    assert!(p.warnings().is_empty(), "{:?}", messages(&p));
}

#[test]
fn shadowed_rule() {
    let p = ok(&format!(
        "{HEAD}rules:
  - name: lan
    action: allow
    remote: [10.0.0.0/8]
  - name: one-host
    action: deny
    calls: [accept]
    remote: [10.1.2.3]
    local_ports: [22]
  - name: listen
    action: allow
    calls: [listen]
"
    ));
    let w = p.warnings();
    assert_eq!(w.len(), 1, "{:?}", messages(&p));
    assert_eq!(w[0].rule.as_deref(), Some("one-host"));
    assert_eq!(w[0].location, Some((7, 5)));
    assert_eq!(
        w[0].to_string(),
        "7:5: rule `one-host` can never match: it is shadowed by rule `lan`, which comes first and matches every case it covers"
    );
    // The narrower rule first: no finding.
    let q = ok(&format!(
        "{HEAD}rules:
  - name: one-host
    action: deny
    remote: [10.1.2.3]
  - name: lan
    action: allow
    remote: [10.0.0.0/8]
  - name: listen
    action: allow
    calls: [listen]
"
    ));
    assert!(q.warnings().is_empty(), "{:?}", messages(&q));
}

#[test]
fn shadowing_needs_every_field_covered() {
    // Each pair differs in one field where the later rule is NOT inside the earlier
    // one; `wider` marks pairs where the later one is wider, so that swapping them
    // shadows.
    for (earlier, later, wider) in [
        ("calls: [accept]", "calls: [accept, connect]", true),
        ("remote: [10.0.0.0/8]", "remote: [11.0.0.0/8]", false),
        ("remote: [10.1.0.0/16]", "remote: [10.0.0.0/8]", true),
        (
            "remote_ports: [\"1-1024\"]",
            "remote_ports: [\"1000-2000\"]",
            false,
        ),
        (
            "remote_ports: [\"1-1024\"]",
            "remote_ports: [\"1-2000\"]",
            true,
        ),
        ("local: [10.0.0.0/8]", "local: [\"::1\"]", false),
        ("local_ports: [21]", "local_ports: [21, 22]", true),
        ("users: [ftp]", "users: [ftp, root]", true),
        ("groups: [ftp]", "groups: [root]", false),
        (
            "programs: [\"*/vsftpd\"]",
            "programs: [\"/usr/sbin/nginx\"]",
            false,
        ),
        ("families: [ipv4]", "families: [ipv4, ipv6]", true),
        ("remote: [10.0.0.0/8]", "local_ports: [21]", false),
    ] {
        let p = ok(&format!(
            "{HEAD}rules:\n  - {{ name: a, action: allow, {earlier} }}\n  - {{ name: b, action: deny, {later} }}\n"
        ));
        // Only full shadowing here (partial shadowing: tests/lint_more.rs).
        let full = |p: &sockexit_engine::Policy| -> Vec<String> {
            messages(p)
                .into_iter()
                .filter(|m| m.contains("can never match"))
                .collect()
        };
        assert!(
            full(&p).is_empty(),
            "{earlier} / {later}: {:?}",
            messages(&p)
        );
        let swapped = ok(&format!(
            "{HEAD}rules:\n  - {{ name: a, action: allow, {later} }}\n  - {{ name: b, action: deny, {earlier} }}\n"
        ));
        let found: Vec<_> = swapped
            .warnings()
            .iter()
            .filter(|w| w.message.contains("can never match"))
            .map(|w| w.rule.as_deref())
            .collect();
        let want = if wider { vec![Some("b")] } else { vec![] };
        assert_eq!(found, want, "{later} / {earlier}: {:?}", messages(&swapped));
    }
    // `programs: ["*"]` covers every program.
    let p = ok(&format!(
        "{HEAD}rules:\n  - {{ name: a, action: allow, programs: [\"*\"] }}\n  - {{ name: b, action: deny, programs: [\"/bin/x\"] }}\n"
    ));
    assert_eq!(p.warnings().len(), 1, "{:?}", messages(&p));
}

#[test]
fn remote_fields_on_a_listen_only_rule() {
    let p = ok(&format!(
        "{HEAD}rules:\n  - name: odd\n    action: deny\n    calls: [listen]\n    remote: [10.0.0.0/8]\n    remote_ports: [21]\n"
    ));
    let m = messages(&p);
    assert_eq!(
        m,
        [
            "4:5: rule `odd`: `remote` can never apply: the rule is only for listen, which has no remote peer, so the rule never matches",
            "4:5: rule `odd`: `remote_ports` can never apply: the rule is only for listen, which has no remote peer, so the rule never matches",
        ]
    );
    // And indeed it never matches a listen.
    assert_eq!(
        decide(&p, sockexit_engine::Call::Listen, listen("10.0.0.1:21")),
        (DENY, "default".into())
    );
}

#[test]
fn local_ports_on_a_connect_only_rule() {
    let p = ok(&format!(
        "{HEAD}rules:\n  - name: src-port\n    action: allow\n    calls: [connect]\n    local_ports: [5000]\n"
    ));
    let w = p.warnings();
    assert_eq!(w.len(), 1, "{:?}", messages(&p));
    assert_eq!(w[0].rule.as_deref(), Some("src-port"));
    assert_eq!(
        w[0].to_string(),
        "4:5: rule `src-port`: `local_ports` on a connect-only rule: an outgoing socket usually has no local port until connect has run, so the rule will rarely match"
    );
}

#[test]
fn empty_set() {
    let dir = TempDir::new("emptyset");
    dir.write("none.txt", "# nothing listed yet\n\n");
    let policy = dir.write(
        "p.yaml",
        format!(
            "{HEAD}sets:\n  feed: {{ file: none.txt }}\n  later: []\nrules:\n  - {{ name: r, action: deny, remote: [\"@feed\"] }}\n"
        ),
    );
    let p = sockexit_engine::Policy::load(&policy).unwrap();
    assert_eq!(
        messages(&p),
        [
            "4:9: set `feed` is empty: rules naming only it match no address",
            "5:10: set `later` is empty: rules naming only it match no address",
        ]
    );
    assert!(p.warnings().iter().all(|w| w.rule.is_none()));
}

#[test]
fn default_allow_with_only_allow_rules_refuses_nothing() {
    let p = ok("version: 1\ndefault: allow\nrules:\n  - { name: a, action: allow, remote: [10.0.0.0/8] }\n");
    let w = p.warnings();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].location, None);
    assert_eq!(
        w[0].to_string(),
        "`default: allow` with only allow rules: this policy refuses nothing"
    );
    assert_eq!(messages(&ok("version: 1\ndefault: allow\n")).len(), 1);
    // One deny rule: the policy refuses something.
    let q = ok(
        "version: 1\ndefault: allow\nrules:\n  - { name: a, action: deny, remote: [10.0.0.0/8] }\n",
    );
    assert!(q.warnings().is_empty());
}
