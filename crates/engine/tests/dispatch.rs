//! The address dispatch (`Policy::decide` on long or big policies) must give exactly
//! the verdict and rule of the plain first-match walk (`Policy::decide_walk`), for
//! every call and peer. Policies are generated with overlapping, nested and adjacent
//! `remote` sets in a small address space, so most peers sit on or next to a boundary.
mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::Config;
use sockexit_engine::{Call, Facts, Policy};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// One `remote:` item: prefixes inside 10.0.0.0/21 and 2001:db8::/117 (so sets of
/// different rules overlap), mapped forms, and the catch-alls.
fn prefix() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u32..2048, 21u8..=32).prop_map(|(a, l)| format!("{}/{l}", Ipv4Addr::from(0x0a00_0000 | a))),
        2 => (0u128..2048, 117u8..=128).prop_map(|(a, l)| format!("\"{}/{l}\"", Ipv6Addr::from(0x2001_0db8u128 << 96 | a))),
        1 => (0u32..2048, 117u8..=128).prop_map(|(a, l)| format!("\"{}/{l}\"", Ipv4Addr::from(0x0a00_0000 | a).to_ipv6_mapped())),
        1 => proptest::sample::select(&["0.0.0.0/0", "\"::/0\"", "127.0.0.0/8", "\"::1\"", "10.0.0.0/8", "\"::ffff:0:0/96\""][..]).prop_map(str::to_owned),
    ]
}

fn opt_list(items: &[&'static str]) -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        proptest::sample::subsequence(items.to_vec(), 1..=items.len()).prop_map(|v| v.join(", ")),
    )
}

/// One rule as a YAML flow mapping.
fn rule() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        opt_list(&["accept", "connect", "listen"]),
        proptest::option::of(proptest::collection::vec(prefix(), 1..4)),
        any::<bool>(),
        opt_list(&["21", "22", "80", "\"440-450\""]),
        opt_list(&["ipv4", "ipv6"]),
        opt_list(&["21", "8080"]),
        opt_list(&["0", "107"]),
    )
        .prop_map(|(allow, calls, remote, big, rports, fams, lports, users)| {
            let mut s = format!("{{ action: {}", if allow { "allow" } else { "deny" });
            if let Some(c) = calls {
                let _ = write!(s, ", calls: [{c}]");
            }
            match (remote, big) {
                (Some(r), true) => {
                    let _ = write!(s, ", remote: [\"@big\", {}]", r.join(", "));
                }
                (Some(r), false) => {
                    let _ = write!(s, ", remote: [{}]", r.join(", "));
                }
                (None, _) => {}
            }
            for (k, v) in [
                ("remote_ports", rports),
                ("families", fams),
                ("local_ports", lports),
                ("users", users),
            ] {
                if let Some(v) = v {
                    let _ = write!(s, ", {k}: [{v}]");
                }
            }
            s + " }"
        })
}

/// A policy of 8 to 25 rules, the last one a remote rule for every call. Set `big` has
/// 300 single addresses, every other one of 10.0.2.0/22: interleaved with the generated
/// prefixes, and over the big-set threshold, so a rule naming it (`big-445`, at a
/// random place) makes both accept and connect dispatched.
fn policy() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        proptest::collection::vec(rule(), 7..24),
        any::<proptest::sample::Index>(),
    )
        .prop_map(|(deny, mut rules, at)| {
            let big: Vec<String> = (0..300)
                .map(|i| format!("{}", Ipv4Addr::from(0x0a00_0200u32 + 2 * i)))
                .collect();
            let mut s = format!(
                "version: 1\ndefault: {}\nsets:\n  big: [{}]\nrules:\n",
                if deny { "deny" } else { "allow" },
                big.join(", ")
            );
            let at = at.index(rules.len() + 1);
            rules.insert(
                at,
                "{ action: deny, remote: [\"@big\"], remote_ports: [445] }".into(),
            );
            for (i, r) in rules.iter().enumerate() {
                let _ = writeln!(s, "  - {{ name: r{i}, {}", &r[2..]);
            }
            s + "  - { name: tail, action: allow, remote: [127.0.0.0/8] }\n"
        })
}

/// Every boundary of every rule's remote set, each side of it, plus fixed peers.
fn peers(p: &Policy, seed: u64) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = [
        "127.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "::",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "192.168.1.1",
        "2001:db9::1",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    for r in p.rules() {
        if let Some(s) = r.remote() {
            for &[lo, hi] in s.v4_ranges() {
                for x in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                    out.push(Ipv4Addr::from(x).into());
                    out.push(Ipv4Addr::from(x).to_ipv6_mapped().into());
                }
            }
            for &[lo, hi] in s.v6_ranges() {
                for x in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                    out.push(Ipv6Addr::from(x).into());
                }
            }
        }
    }
    let mut x = seed | 1;
    for _ in 0..64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(Ipv4Addr::from(0x0a00_0000 | (x as u32 & 0xfff)).into());
        out.push(Ipv6Addr::from(0x2001_0db8u128 << 96 | u128::from(x & 0xfff)).into());
    }
    out
}

fn same_decisions(p: &Policy, seed: u64) -> Result<usize, TestCaseError> {
    let mut n = 0;
    for (k, ip) in peers(p, seed).into_iter().enumerate() {
        let port = [21u16, 22, 80, 445, 8080][k % 5];
        let f = Facts {
            remote: Some(SocketAddr::new(ip, port)),
            local: (k % 3 != 0).then(|| sa(["127.0.0.1:21", "[::1]:8080"][k % 2])),
            uid: (k % 4 != 0).then_some([0, 107, 5][k % 3]),
            gid: None,
            program: None,
            dynamic: None,
        };
        for call in [Call::Accept, Call::Connect, Call::Listen] {
            let fast = p.decide(call, &mut f.clone());
            let walk = p.decide_walk(call, &mut f.clone());
            prop_assert_eq!(fast, walk, "{:?} peer {} facts {:?}", call, ip, f);
            n += 1;
        }
    }
    Ok(n)
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn dispatch_decides_as_the_walk(text in policy(), seed in any::<u64>()) {
        let p = ok(&text);
        prop_assert!(p.dispatch_size().is_some(), "policy should be dispatched:\n{}", text);
        same_decisions(&p, seed)?;
    }
}

/// A peer unknown to the fact source (no remote) falls back to the walk: rules that
/// need the peer do not match, the others still do.
#[test]
fn no_peer_falls_back_to_the_walk() {
    let mut text = String::from("version: 1\ndefault: deny\nrules:\n");
    for i in 0..8 {
        let _ = writeln!(
            text,
            "  - {{ name: r{i}, action: allow, remote: [10.0.{i}.0/24] }}"
        );
    }
    text.push_str("  - { name: by-user, action: allow, users: [107] }\n");
    let p = ok(&text);
    assert!(p.dispatch_size().is_some());
    let mut f = Facts {
        uid: Some(107),
        ..Facts::default()
    };
    assert_eq!(p.decide(Call::Accept, &mut f).rule, "by-user");
    let mut f = Facts {
        remote: Some(sa("10.0.3.9:80")),
        uid: Some(107),
        ..Facts::default()
    };
    assert_eq!(p.decide(Call::Accept, &mut f).rule, "r3");
}

/// Short policies with small sets are not dispatched: the walk is as fast, and the
/// table would cost every process start-up time.
#[test]
fn small_policies_are_not_dispatched() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policy.example.yaml");
    let p = Policy::load(&path).unwrap();
    assert_eq!(p.dispatch_size(), None);
}
