//! Property tests: whatever bytes or YAML-ish text the loader is fed, it returns a
//! policy or an error — never a panic; and compiled address/port sets agree with a
//! naive reference check.
mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::Config;
use sockexit_engine::{Call, Facts};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Pieces policies are made of, plus YAML punctuation and some junk.
const TOKENS: &[&str] = &[
    "version",
    "default",
    "mode",
    "stealth",
    "blocking_accept",
    "wait",
    "audit",
    "log",
    "events",
    "sets",
    "rules",
    "name",
    "action",
    "calls",
    "remote",
    "remote_ports",
    "local",
    "local_ports",
    "users",
    "groups",
    "programs",
    "families",
    "file",
    "allow",
    "deny",
    "accept",
    "connect",
    "listen",
    "ipv4",
    "ipv6",
    "enforce",
    "true",
    "false",
    "1",
    "0",
    "65535",
    "65536",
    "\"1024-65535\"",
    "\"9-1\"",
    "10.0.0.0/8",
    "::ffff:10.0.0.0/104",
    "2001:db8::/32",
    "\"@lan\"",
    "@x",
    "lan",
    "ftp",
    "root",
    "\"*/nginx\"",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ": ",
    "- ",
    "-",
    "&a ",
    "*a",
    "<<: ",
    "!!str ",
    "!x ",
    "|",
    ">",
    "#",
    "\"",
    "'",
    "\\",
    "~",
    "null",
    "---",
    "...",
    "\n",
    "\n  ",
    "\n    ",
    "\n      ",
    "\t",
    " ",
    "%YAML 1.2\n",
    "? ",
    "\u{feff}",
    "é",
    "\0",
];

fn yamlish() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(TOKENS), 0..120).prop_map(|v| v.concat())
}

/// A valid policy to mutate.
const SEED: &str = "version: 1
default: deny
mode: audit
stealth: true
audit: { log: stderr, events: all }
sets:
  lan: [10.0.0.0/8, \"fd00::/8\"]
rules:
  - name: ftp
    action: allow
    calls: [accept, listen]
    remote: [\"@lan\", 192.0.2.1]
    remote_ports: [\"1024-65535\"]
    local_ports: [21, \"40000-40100\"]
    users: [ftp, 0]
    groups: [root]
    programs: [\"*/vsftpd\"]
    families: [ipv4, ipv6]
  - { name: out, action: deny, calls: [connect], remote_ports: [25] }
";

fn facts() -> impl Strategy<Value = Facts> {
    let addr = prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        any::<u32>().prop_map(|a| IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())),
    ];
    let sock = (addr, any::<u16>()).prop_map(|(a, p)| SocketAddr::new(a, p));
    (
        proptest::option::of(sock.clone()),
        proptest::option::of(sock),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(proptest::sample::select(
            &["/usr/sbin/vsftpd", "/usr/sbin/nginx", "/", ""][..],
        )),
    )
        .prop_map(|(remote, local, uid, gid, program)| Facts {
            remote,
            local,
            uid,
            gid,
            program: program.map(Into::into),
            dynamic: None,
        })
}

/// Load, and when it loads, decide every call on the given facts (must not panic).
fn exercise(bytes: &[u8], f: &Facts) {
    if let Ok(p) = load(bytes) {
        for call in [Call::Accept, Call::Connect, Call::Listen] {
            let d = p.decide(call, &mut f.clone());
            assert!(d.rule == "default" || p.rules().iter().any(|r| r.name() == d.rule));
        }
        for w in p.warnings() {
            assert!(!w.to_string().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        if let Err(e) = load(&bytes) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn yaml_like_text_never_panics(text in yamlish(), f in facts()) {
        exercise(text.as_bytes(), &f);
    }

    #[test]
    fn headed_yaml_like_text_never_panics(text in yamlish(), f in facts()) {
        // Past the version/default checks, into sets and rules.
        exercise(format!("version: 1\ndefault: deny\nrules:\n  - name: r\n    {text}").as_bytes(), &f);
        exercise(format!("version: 1\ndefault: deny\nsets:\n  s: {text}").as_bytes(), &f);
    }

    #[test]
    fn mutated_valid_policy_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, proptest::sample::select(TOKENS)), 1..6),
        f in facts(),
    ) {
        let mut text = SEED.as_bytes().to_vec();
        for (at, kind, tok) in edits {
            let i = at.index(text.len() + 1);
            match kind {
                0 => { text.splice(i..i, tok.bytes()); }
                1 if i < text.len() => { text.remove(i); }
                _ => {
                    let end = (i + tok.len()).min(text.len());
                    text.splice(i..end, tok.bytes());
                }
            }
        }
        exercise(&text, &f);
    }
}

#[test]
fn the_seed_policy_loads() {
    let p = ok(SEED);
    assert_eq!(p.rule_count(), 2);
}

/// A prefix as (text for the policy, naive membership test).
fn v4_prefix() -> impl Strategy<Value = (u32, u8)> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, len)| (a, len))
}

fn in_v4(a: u32, net: u32, len: u8) -> bool {
    len == 0 || (a ^ net) >> (32 - len as u32) == 0
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn address_and_port_sets_agree_with_a_naive_check(
        nets in proptest::collection::vec(v4_prefix(), 1..12),
        ports in proptest::collection::vec((1u16..=65535, 0u16..2000), 1..6),
        probes in proptest::collection::vec((any::<u32>(), any::<u16>()), 64),
    ) {
        let list: Vec<String> = nets
            .iter()
            .map(|(a, l)| format!("\"{}/{l}\"", Ipv4Addr::from(*a)))
            .collect();
        let port_list: Vec<String> = ports
            .iter()
            .map(|(lo, span)| format!("\"{lo}-{}\"", lo.saturating_add(*span)))
            .collect();
        let p = ok(&format!(
            "{HEAD}rules:\n  - name: r\n    action: allow\n    remote: [{}]\n    remote_ports: [{}]\n",
            list.join(", "),
            port_list.join(", ")
        ));
        // Probe random addresses and the edges of every prefix.
        let mut addrs: Vec<(u32, u16)> = probes;
        for (a, l) in &nets {
            let mask = if *l == 0 { 0 } else { u32::MAX << (32 - *l as u32) };
            let lo = a & mask;
            let hi = lo | !mask;
            for x in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                addrs.push((x, ports[0].0));
            }
        }
        for (lo, span) in &ports {
            let hi = lo.saturating_add(*span);
            for x in [lo.wrapping_sub(1), *lo, hi, hi.wrapping_add(1)] {
                addrs.push((nets[0].0, x));
            }
        }
        for (a, port) in addrs {
            let want = nets.iter().any(|(n, l)| in_v4(a, *n, *l))
                && ports.iter().any(|(lo, span)| (*lo..=lo.saturating_add(*span)).contains(&port));
            for ip in [IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())] {
                let got = decide(&p, Call::Connect, Facts {
                    remote: Some(SocketAddr::new(ip, port)),
                    ..Facts::default()
                }).0 == ALLOW;
                prop_assert_eq!(got, want, "{} port {}", ip, port);
            }
        }
    }
}

/// Reference glob matcher: plain recursion over the same syntax (`*`, `?`, `[..]`,
/// `[!..]`, ranges), exponential but fine for short inputs.
fn naive_glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|k| naive_glob(&p[1..], &s[k..])),
        Some(b'?') => !s.is_empty() && naive_glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let mut i = 1;
            let neg = p.get(1) == Some(&b'!');
            if neg {
                i += 1;
            }
            let start = i;
            if p.get(i) == Some(&b']') {
                i += 1;
            }
            while p[i] != b']' {
                i += 1;
            }
            let class = &p[start..i];
            let Some(&c) = s.first() else { return false };
            let mut hit = false;
            let mut j = 0;
            while j < class.len() {
                if j + 2 < class.len() && class[j + 1] == b'-' {
                    hit |= class[j] <= c && c <= class[j + 2];
                    j += 3;
                } else {
                    hit |= class[j] == c;
                    j += 1;
                }
            }
            hit != neg && naive_glob(&p[i + 1..], &s[1..])
        }
        Some(&c) => s.first() == Some(&c) && naive_glob(&p[1..], &s[1..]),
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn program_globs_agree_with_a_naive_matcher(
        pat in proptest::collection::vec(
            proptest::sample::select(&["a", "b", "/", "*", "?", "[ab]", "[!a]", "[a-c]", "[]]", "]"][..]),
            1..8,
        ),
        s in proptest::collection::vec(proptest::sample::select(&[b'a', b'b', b'c', b'/', b']'][..]), 0..12),
    ) {
        let pat = pat.concat();
        let g = sockexit_engine::Glob::new(&pat).expect("pattern from the generator is valid");
        prop_assert_eq!(g.matches(&s), naive_glob(pat.as_bytes(), &s), "{} vs {:?}", pat, String::from_utf8_lossy(&s));
    }
}
