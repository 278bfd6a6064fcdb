//! Dynamic sets (`{ dynamic: true }`): rules that name them decide by the entries
//! the backend supplies at the call, through the address dispatch as through the
//! walk; unknown entries fail closed; lint and the stealth filter stay sound.

mod common;
use common::*;
use sockexit_engine::bpf::{self, Listener, Outcome};
use sockexit_engine::{Call, DynContent, DynSets, Facts, Verdict};
use std::sync::Arc;

const POLICY: &str = r#"
version: 1
default: allow
sets:
  banned: { dynamic: true }
  trusted: { dynamic: true }
rules:
  - { name: trusted-in, action: allow, calls: [accept], remote: ["@trusted"] }
  - { name: banned-in, action: deny, calls: [accept, connect], remote: ["@banned", 192.0.2.0/24] }
"#;

fn table(entries: &[(&str, &str, Option<u64>)]) -> Arc<DynSets> {
    let mut c = DynContent::default();
    for &(set, net, exp) in entries {
        let n = net
            .parse()
            .unwrap_or_else(|_| ipnet::IpNet::from(net.parse::<std::net::IpAddr>().unwrap()));
        c.add(set, n, exp, 1);
    }
    Arc::new(DynSets::build(&c))
}

fn with(mut f: Facts, d: &Arc<DynSets>) -> Facts {
    f.dynamic = Some(d.clone());
    f
}

#[test]
fn a_dynamic_set_is_listed_and_decides_by_its_current_entries() {
    let p = ok(POLICY);
    assert_eq!(p.dynamic_sets(), ["banned", "trusted"]);
    let empty = table(&[]);
    let d = table(&[
        ("banned", "203.0.113.0/24", None),
        ("banned", "2001:db8::1", None),
    ]);
    let peer = || accept("203.0.113.9:5555", "127.0.0.1:21");
    assert_eq!(
        decide(&p, Call::Accept, with(peer(), &empty)),
        (Verdict::Allow, "default".into())
    );
    assert_eq!(
        decide(&p, Call::Accept, with(peer(), &d)),
        (Verdict::Deny, "banned-in".into())
    );
    let v6 = accept("[2001:db8::1]:5555", "[::1]:21");
    assert_eq!(decide(&p, Call::Accept, with(v6, &d)).1, "banned-in");
    // v4-mapped peer, canonicalised like every fact.
    let mapped = accept("[::ffff:203.0.113.9]:5555", "[::1]:21");
    assert_eq!(decide(&p, Call::Accept, with(mapped, &d)).1, "banned-in");
    // The static part of the same rule still matches with no dynamic entry.
    let st = accept("192.0.2.1:5555", "127.0.0.1:21");
    assert_eq!(decide(&p, Call::Accept, with(st, &empty)).1, "banned-in");
    // A connect rule too.
    assert_eq!(
        decide(&p, Call::Connect, with(connect("203.0.113.1:80"), &d)).1,
        "banned-in"
    );
}

#[test]
fn first_match_holds_across_dynamic_sets() {
    let p = ok(POLICY);
    let d = table(&[
        ("banned", "203.0.113.0/24", None),
        ("trusted", "203.0.113.9", None),
    ]);
    let f = with(accept("203.0.113.9:1", "127.0.0.1:21"), &d);
    assert_eq!(
        decide(&p, Call::Accept, f),
        (Verdict::Allow, "trusted-in".into())
    );
}

#[test]
fn an_expired_entry_stops_matching() {
    let p = ok(POLICY);
    let past = sockexit_engine::unix_now() - 1;
    let later = sockexit_engine::unix_now() + 3600;
    let gone = table(&[("banned", "203.0.113.9", Some(past))]);
    let live = table(&[("banned", "203.0.113.9", Some(later))]);
    let f = || accept("203.0.113.9:1", "127.0.0.1:21");
    assert_eq!(decide(&p, Call::Accept, with(f(), &gone)).1, "default");
    assert_eq!(decide(&p, Call::Accept, with(f(), &live)).1, "banned-in");
}

#[test]
fn unknown_entries_fail_closed() {
    let p = ok(POLICY);
    // No table: the deny rule holds every peer, the allow rule none.
    let f = accept("198.51.100.1:1", "127.0.0.1:21");
    assert_eq!(
        decide(&p, Call::Accept, f),
        (Verdict::Deny, "banned-in".into())
    );
}

/// Enough rules for the address dispatch: the dynamic rule must stay a candidate in
/// every interval, also where its static part misses.
#[test]
fn the_address_dispatch_decides_as_the_walk_with_dynamic_sets() {
    let mut y = String::from("version: 1\ndefault: allow\nsets:\n  b: { dynamic: true }\nrules:\n");
    for i in 0..10 {
        y.push_str(&format!(
            "  - {{ name: r{i}, action: allow, calls: [connect], remote: [10.{i}.0.0/16], remote_ports: [1] }}\n"
        ));
    }
    y.push_str(
        "  - { name: dyn, action: deny, calls: [connect], remote: [\"@b\", 10.3.0.0/16] }\n",
    );
    y.push_str("  - { name: tail, action: deny, calls: [connect], remote: [10.0.0.0/8] }\n");
    let p = ok(&y);
    assert!(p.dispatch_size().is_some(), "the dispatch table is built");
    let d = table(&[("b", "172.16.0.0/12", None), ("b", "10.5.1.1", None)]);
    for peer in [
        "172.16.5.5:80",
        "10.5.1.1:80",
        "10.5.1.2:80",
        "10.3.3.3:80",
        "10.3.3.3:1",
        "8.8.8.8:80",
        "10.5.1.1:1",
    ] {
        let mut a = with(connect(peer), &d);
        let mut b = a.clone();
        let x = p.decide(Call::Connect, &mut a);
        let y = p.decide_walk(Call::Connect, &mut b);
        assert_eq!(x, y, "{peer}");
    }
    let mut f = with(connect("172.16.5.5:80"), &d);
    assert_eq!(p.decide(Call::Connect, &mut f).rule, "dyn");
    let mut f = with(connect("10.5.1.1:80"), &d);
    assert_eq!(p.decide(Call::Connect, &mut f).rule, "dyn");
}

#[test]
fn a_set_is_a_list_a_file_or_dynamic_not_both() {
    let (_, e) =
        bad("version: 1\ndefault: allow\nsets:\n  b: { file: x.txt, dynamic: true }\nrules: []\n");
    assert!(
        e.contains("either `{ file: PATH }` or `{ dynamic: true }`"),
        "{e}"
    );
    let (_, e) = bad("version: 1\ndefault: allow\nsets:\n  b: { dynamic: false }\nrules: []\n");
    assert!(e.contains("`dynamic: false` is not a set"), "{e}");
    let (_, e) =
        bad("version: 1\ndefault: allow\nsets:\n  b: { dynamic: yes please }\nrules: []\n");
    assert!(e.contains(":4:"), "{e}");
}

#[test]
fn an_earlier_dynamic_rule_shadows_nothing_it_may_not_hold() {
    let p = ok(r#"
version: 1
default: allow
sets:
  b: { dynamic: true }
rules:
  - { name: dyn, action: deny, calls: [accept], remote: ["@b"] }
  - { name: later, action: allow, calls: [accept], remote: [10.0.0.0/8] }
  - { name: same, action: deny, calls: [accept], remote: ["@b"] }
"#);
    let w: Vec<String> = p.warnings().iter().map(|w| w.message.clone()).collect();
    assert!(!w.iter().any(|m| m.contains("`later`")), "{w:?}");
    assert!(
        w.iter().any(|m| m.contains("`same`")),
        "a rule naming the same set is shadowed: {w:?}"
    );
}

#[test]
fn the_stealth_filter_lets_dynamic_allow_peers_through_and_never_drops_by_a_dynamic_deny() {
    let p = ok(r#"
version: 1
default: deny
sets:
  t: { dynamic: true }
rules:
  - { name: listen, action: allow, calls: [listen] }
  - { name: t-in, action: allow, calls: [accept], remote: ["@t"] }
"#);
    let l = Listener {
        local: sa("127.0.0.1:2121"),
        v6_only: false,
        uid: Some(0),
        gid: Some(0),
        program: None,
    };
    let c = bpf::compile(&p, &l);
    assert!(
        c.partial.iter().any(|m| m.contains("dynamic set")),
        "{:?}",
        c.partial
    );
    // Any peer may be in `t`: the filter must not drop it.
    match &c.outcome {
        Outcome::AcceptAll => {}
        Outcome::Filter(f) => {
            let (pkt, off) = bpf::syn_packet(sa("203.0.113.9:4000"), sa("127.0.0.1:2121"));
            assert_ne!(bpf::run(f, &pkt, off).unwrap(), bpf::RET_DROP);
        }
        o => panic!("{o:?}"),
    }
}
