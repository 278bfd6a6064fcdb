//! The compiled filter against the engine: on many random and boundary peers, the
//! filter drops a packet exactly when `Policy::decide` refuses the accept (or, for a
//! partial filter, only when it refuses it).

use super::*;
use crate::{Call, Facts, FilesResolver, LoadOptions};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::path::Path;

fn policy(text: &str) -> Policy {
    Policy::from_bytes_with(
        text.as_bytes(),
        Path::new("/nonexistent/policy.yaml"),
        &LoadOptions {
            resolver: &FilesResolver::default(),
            permissions: crate::Permissions::Warn,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// splitmix64: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

fn listener(local: &str, uid: Option<u32>) -> Listener<'static> {
    Listener {
        local: local.parse().unwrap(),
        v6_only: false,
        uid,
        gid: Some(100),
        program: Some(b"/usr/sbin/ftpd"),
    }
}

fn filter_of(c: &Compiled) -> &[SockFilter] {
    match &c.outcome {
        Outcome::Filter(f) => f,
        o => panic!("expected a filter, got {o:?}"),
    }
}

/// Addresses near the edges of every range of every set in the policy, plus random
/// ones: where a wrong comparison would show.
fn interesting(p: &Policy) -> (Vec<u32>, Vec<u128>, Vec<u16>) {
    let (mut v4, mut v6, mut ports) = (Vec::new(), Vec::new(), vec![0, 1, 21, 65535]);
    for r in p.rules() {
        for s in [r.remote(), r.local()].into_iter().flatten() {
            for &[lo, hi] in s.v4_ranges() {
                v4.extend([lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)]);
            }
            for &[lo, hi] in s.v6_ranges() {
                v6.extend([lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)]);
                // Same high word, different lower words.
                v6.push(lo ^ 1 << 40);
            }
        }
        for s in [r.remote_ports(), r.local_ports()].into_iter().flatten() {
            for &(lo, hi) in s.ranges() {
                ports.extend([lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)]);
            }
        }
    }
    (v4, v6, ports)
}

/// The engine's view of one packet: the peer and local address as accept reports them
/// (v4-mapped on an AF_INET6 listener).
fn facts(src: SocketAddr, dst: SocketAddr, l: &Listener<'_>, uid: u32) -> Facts {
    let map = |a: SocketAddr| match (a, l.local) {
        (SocketAddr::V4(a), SocketAddr::V6(_)) => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        _ => a,
    };
    Facts {
        remote: Some(map(src)),
        local: Some(map(dst)),
        uid: Some(uid),
        gid: l.gid,
        program: l.program.map(|p| std::str::from_utf8(p).unwrap().into()),
        dynamic: None,
    }
}

/// Compare filter and engine on `n` random packets (plus boundary values) that can
/// reach listener `l`. With `exact`, they must agree; otherwise a drop must be a
/// refusal for every uid in `uids`. Returns (allowed, dropped) counts.
fn agree(p: &Policy, l: &Listener<'_>, n: usize, exact: bool, uids: &[u32]) -> (usize, usize) {
    agree_with(p, l, n, exact, uids, false)
}

/// [`agree`], or with `conservative` for [`compile_conservative`]: then, with
/// `exact` false, the check is turned round: a packet it passes must be allowed
/// for every uid in `uids`.
fn agree_with(
    p: &Policy,
    l: &Listener<'_>,
    n: usize,
    exact: bool,
    uids: &[u32],
    conservative: bool,
) -> (usize, usize) {
    let c = compile_as(p, l, conservative);
    let f = filter_of(&c).to_vec();
    assert!(f.len() <= MAX_INSNS);
    validate(&f).unwrap();
    assert_eq!(exact, c.partial.is_empty(), "partial: {:?}", c.partial);
    let (b4, b6, bports) = interesting(p);
    let mut rng = Rng(0x5eed ^ n as u64 ^ f.len() as u64);
    let (v4_ok, v6_ok) = match l.local {
        SocketAddr::V4(_) => (true, false),
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some() => (true, false),
        SocketAddr::V6(a) => (!l.v6_only && a.ip().is_unspecified(), true),
    };
    let (mut allowed, mut dropped) = (0, 0);
    for i in 0..n {
        let v6 = v6_ok && (!v4_ok || rng.below(2) == 0);
        let port = |rng: &mut Rng| {
            if rng.below(3) == 0 {
                rng.pick(&bports)
            } else {
                rng.below(65536) as u16
            }
        };
        let sport = port(&mut rng);
        let dport = if l.local.port() != 0 {
            l.local.port()
        } else {
            port(&mut rng)
        };
        let (src, dst) = if v6 {
            let addr = |rng: &mut Rng| -> Ipv6Addr {
                if !b6.is_empty() && rng.below(2) == 0 {
                    rng.pick(&b6).into()
                } else {
                    (((rng.next() as u128) << 64) | rng.next() as u128).into()
                }
            };
            let s = addr(&mut rng);
            let d = match l.local.ip() {
                IpAddr::V6(a) if !a.is_unspecified() => a,
                _ => addr(&mut rng),
            };
            (
                SocketAddr::V6(SocketAddrV6::new(s, sport, 0, 0)),
                SocketAddr::V6(SocketAddrV6::new(d, dport, 0, 0)),
            )
        } else {
            let addr = |rng: &mut Rng| -> Ipv4Addr {
                if !b4.is_empty() && rng.below(2) == 0 {
                    rng.pick(&b4).into()
                } else {
                    (rng.next() as u32).into()
                }
            };
            let s = addr(&mut rng);
            let d = match l.local.ip().to_canonical() {
                IpAddr::V4(a) if !a.is_unspecified() => a,
                _ => addr(&mut rng),
            };
            (
                SocketAddr::V4(SocketAddrV4::new(s, sport)),
                SocketAddr::V4(SocketAddrV4::new(d, dport)),
            )
        };
        if let IpAddr::V6(s) = src.ip() {
            if s.to_ipv4_mapped().is_some() {
                continue; // never a real peer; the filter drops it (tested below)
            }
        }
        let (pkt, off) = syn_packet(src, dst);
        let pass = run(&f, &pkt, off).unwrap() != 0;
        let verdicts: Vec<bool> = uids
            .iter()
            .map(|&u| p.decide(Call::Accept, &mut facts(src, dst, l, u)).verdict == Verdict::Allow)
            .collect();
        if exact {
            assert_eq!(
                pass, verdicts[0],
                "sample {i}: {src} -> {dst}: filter {pass}, engine {}",
                verdicts[0]
            );
        } else if conservative {
            assert!(
                !pass || verdicts.iter().all(|v| *v),
                "sample {i}: filter passed {src} -> {dst}, which uids {uids:?} may refuse ({verdicts:?})"
            );
        } else if !pass {
            assert!(
                verdicts.iter().all(|v| !v),
                "sample {i}: filter dropped {src} -> {dst}, which uids {uids:?} may allow ({verdicts:?})"
            );
        }
        if pass {
            allowed += 1
        } else {
            dropped += 1
        }
    }
    (allowed, dropped)
}

const MIXED: &str = r#"
version: 1
default: deny
stealth: true
sets:
  lan: [10.0.0.0/8, 192.168.0.0/16, "2001:db8:1::/48", "fd00::/8"]
  bad: [10.9.0.0/16, "2001:db8:1:9::/64", "::ffff:192.168.66.0/120"]
rules:
  - { name: never-listen, action: deny, calls: [listen], local_ports: [1] }
  - { name: bad-peers, action: deny, calls: [accept], remote: ["@bad"] }
  - { name: low-ports, action: deny, calls: [accept], remote_ports: ["1-1023"] }
  - { name: v6-only-admin, action: allow, calls: [accept], families: [ipv6], remote: ["2001:db8:ad::/48", "2001:db8:ae::1"] }
  - { name: other-program, action: allow, calls: [accept], programs: ["*/nginx"] }
  - { name: other-user, action: allow, calls: [accept], users: [4242] }
  - { name: lan-to-ftp, action: allow, calls: [accept], remote: ["@lan"], local_ports: [21, "40000-40100"] }
  - { name: loopback-dst, action: allow, calls: [accept], local: [127.0.0.0/8, "::1"], remote_ports: ["30000-39999"] }
  - { name: odd-v6, action: allow, calls: [accept], remote: ["2001:db8:2::8000:0:0:0/81", "2001:db8:3::1:2:3:0/112", "2001:db8:3:0:8000::/66"] }
"#;

#[test]
fn agrees_with_engine_on_v4_listeners() {
    let p = policy(MIXED);
    for local in ["0.0.0.0:21", "10.1.2.3:21", "127.0.0.1:8080", "0.0.0.0:0"] {
        let (a, d) = agree(&p, &listener(local, Some(1000)), 20_000, true, &[1000]);
        assert!(
            a > 100 && d > 100,
            "{local}: both outcomes sampled ({a}, {d})"
        );
    }
}

#[test]
fn agrees_with_engine_on_dual_stack_and_v6_listeners() {
    let p = policy(MIXED);
    for local in [
        "[::]:21",
        "[::]:0",
        "[::1]:8080",
        "[2001:db8:1::5]:21",
        "[::ffff:10.1.2.3]:21",
    ] {
        let (a, d) = agree(&p, &listener(local, Some(1000)), 20_000, true, &[1000]);
        assert!(
            a > 100 && d > 100,
            "{local}: both outcomes sampled ({a}, {d})"
        );
    }
    let mut l = listener("[::]:21", Some(1000));
    l.v6_only = true;
    agree(&p, &l, 5_000, true, &[1000]);
}

#[test]
fn v6_packet_from_v4_mapped_source_is_dropped() {
    let p = policy("version: 1\ndefault: allow\nrules:\n  - {name: x, action: deny, calls: [accept], remote: [\"2001:db8::/32\"]}\n");
    let c = compile(&p, &listener("[::]:80", Some(1)));
    let f = filter_of(&c);
    let (pkt, off) = syn_packet(
        "[::ffff:10.0.0.1]:5000".parse().unwrap(),
        "[2001:db8::1]:80".parse().unwrap(),
    );
    assert_eq!(run(f, &pkt, off).unwrap(), RET_DROP);
    let (pkt, off) = syn_packet(
        "10.0.0.1:5000".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    );
    assert_eq!(run(f, &pkt, off).unwrap(), RET_ACCEPT);
}

#[test]
fn uid_that_can_change_gives_a_sound_partial_filter() {
    let p = policy(
        r#"
version: 1
default: deny
rules:
  - { name: not-root, action: deny, calls: [accept], users: [0], remote: [10.0.0.0/8] }
  - { name: ftp-lan, action: allow, calls: [accept], users: [1000], remote: [10.0.0.0/8, 172.16.0.0/12] }
  - { name: web, action: allow, calls: [accept], remote: [192.168.0.0/16] }
"#,
    );
    // Known uid: exact.
    agree(
        &p,
        &listener("0.0.0.0:21", Some(1000)),
        5_000,
        true,
        &[1000],
    );
    agree(&p, &listener("0.0.0.0:21", Some(0)), 5_000, true, &[0]);
    // Unknown uid: never drops a peer some uid may be allowed.
    let l = listener("0.0.0.0:21", None);
    let c = compile(&p, &l);
    assert_eq!(c.partial.len(), 2, "{:?}", c.partial);
    assert!(c.partial[0].contains("rule `not-root` looks at the user"));
    assert!(c.describe().contains("partial"), "{}", c.describe());
    let (a, d) = agree(&p, &l, 10_000, false, &[0, 1000, 7]);
    assert!(a > 100 && d > 100, "({a}, {d})");
}

#[test]
fn conservative_filter_refuses_all_any_uid_may_refuse() {
    let p = policy(
        r#"
version: 1
default: deny
rules:
  - { name: not-root, action: deny, calls: [accept], users: [0], remote: [10.0.0.0/8] }
  - { name: ftp-lan, action: allow, calls: [accept], users: [1000], remote: [10.0.0.0/8, 172.16.0.0/12] }
  - { name: web, action: allow, calls: [accept], remote: [192.168.0.0/16, 10.1.0.0/16] }
"#,
    );
    let mut l = listener("0.0.0.0:21", None);
    l.gid = None;
    l.program = None;
    let c = compile_conservative(&p, &l);
    assert_eq!(c.partial.len(), 2, "{:?}", c.partial);
    assert!(
        c.partial[0].starts_with("rule `not-root` looks at the user")
            && c.partial[0].contains("counted as matching")
    );
    assert!(
        c.partial[1].starts_with("rule `ftp-lan`") && c.partial[1].contains("counted as never")
    );
    let (a, d) = agree_with(&p, &l, 10_000, false, &[0, 1000, 7], true);
    assert!(a > 100 && d > 100, "({a}, {d})");
    // 10.1.2.3 is allowed by `web` for uid 1000 but refused for root: dropped.
    let f = filter_of(&c);
    let (pkt, off) = syn_packet(
        "10.1.2.3:5000".parse().unwrap(),
        "10.0.0.1:21".parse().unwrap(),
    );
    assert_eq!(run(f, &pkt, off).unwrap(), RET_DROP);
    let (pkt, off) = syn_packet(
        "192.168.1.1:5000".parse().unwrap(),
        "10.0.0.1:21".parse().unwrap(),
    );
    assert_eq!(run(f, &pkt, off).unwrap(), RET_ACCEPT);
    // Dual stack too; and the MIXED policy (programs, users) with nothing known.
    agree_with(
        &p,
        &listener("[::]:0", None),
        5_000,
        false,
        &[0, 1000],
        true,
    );
    let m = policy(MIXED);
    let mut l = listener("[::]:0", None);
    l.program = None;
    agree_with(&m, &l, 10_000, false, &[0, 4242, 1000], true);
}

#[test]
fn conservative_filter_enforces_an_audit_mode_policy() {
    let p = policy("version: 1\nmode: audit\ndefault: allow\nrules:\n  - {name: x, action: deny, calls: [accept], remote: [10.0.0.0/8]}\n");
    assert_eq!(
        compile(&p, &listener("0.0.0.0:80", None)).outcome,
        Outcome::AuditMode
    );
    let c = compile_conservative(&p, &listener("0.0.0.0:80", None));
    let (pkt, off) = syn_packet(
        "10.0.0.1:5000".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    );
    assert_eq!(run(filter_of(&c), &pkt, off).unwrap(), RET_DROP);
}

#[test]
fn program_rule_is_decided_at_listen() {
    let p = policy(
        "version: 1\ndefault: deny\nrules:\n  - {name: ftp, action: allow, calls: [accept], programs: [\"*/ftpd\"], remote: [10.0.0.0/8]}\n",
    );
    let c = compile(&p, &listener("0.0.0.0:21", Some(1)));
    assert!(c.partial.is_empty());
    let mut other = listener("0.0.0.0:21", Some(1));
    other.program = Some(b"/usr/bin/other");
    // Nothing is allowed for another program: drop every packet.
    assert_eq!(
        filter_of(&compile(&p, &other)),
        &[SockFilter {
            code: op::RET | op::K,
            jt: 0,
            jf: 0,
            k: RET_DROP
        }]
    );
}

#[test]
fn nothing_to_drop_and_audit_mode_attach_nothing() {
    let p = policy("version: 1\ndefault: allow\nrules:\n  - {name: x, action: deny, calls: [connect], remote: [10.0.0.0/8]}\n");
    assert_eq!(
        compile(&p, &listener("0.0.0.0:1", Some(1))).outcome,
        Outcome::AcceptAll
    );
    // default deny, but an unconditional allow for this port comes first.
    let p = policy("version: 1\ndefault: deny\nrules:\n  - {name: x, action: allow, calls: [accept], local_ports: [80]}\n");
    assert_eq!(
        compile(&p, &listener("[::]:80", Some(1))).outcome,
        Outcome::AcceptAll
    );
    assert!(matches!(
        compile(&p, &listener("[::]:81", Some(1))).outcome,
        Outcome::Filter(_)
    ));
    let p = policy("version: 1\ndefault: deny\nmode: audit\nrules: []\n");
    assert_eq!(
        compile(&p, &listener("0.0.0.0:1", Some(1))).outcome,
        Outcome::AuditMode
    );
}

fn big_policy(nets: impl Iterator<Item = String>, action: &str, default: &str) -> Policy {
    let list: Vec<String> = nets.map(|n| format!("\"{n}\"")).collect();
    policy(&format!(
        "version: 1\ndefault: {default}\nsets:\n  big: [{}]\nrules:\n  - {{name: big, action: {action}, calls: [accept], remote: [\"@big\"]}}\n",
        list.join(", ")
    ))
}

#[test]
fn ten_thousand_prefixes_that_merge_compile() {
    // 10,000 adjacent /24s (10.0.0.0 - 10.39.15.255) merge into one range.
    let p = big_policy(
        (0..10_000u32).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256)),
        "allow",
        "deny",
    );
    let c = compile(&p, &listener("0.0.0.0:80", Some(1)));
    assert!(c.insns().unwrap() < 10, "{}", c.describe());
    agree(&p, &listener("0.0.0.0:80", Some(1)), 5_000, true, &[1]);
}

#[test]
fn thousands_of_scattered_prefixes_compile_with_islands() {
    // 800 scattered v4 /28s and 200 scattered v6 /64s: trees far beyond 255 jumps.
    let mut rng = Rng(7);
    let mut nets: Vec<String> = (0..800)
        .map(|_| format!("{}/28", Ipv4Addr::from(rng.next() as u32 & !0xf)))
        .collect();
    nets.extend((0..200).map(|_| {
        let a = Ipv6Addr::from((rng.next() as u128) << 64);
        format!("{a}/64")
    }));
    let p = big_policy(nets.into_iter(), "deny", "allow");
    for local in ["0.0.0.0:80", "[::]:80"] {
        let l = listener(local, Some(1));
        let c = compile(&p, &l);
        let n = c.insns().unwrap_or_else(|| panic!("{}", c.describe()));
        assert!(n > 1000, "{n}");
        let (_, d) = agree(&p, &l, 30_000, true, &[1]);
        assert!(d > 1000, "boundary samples are dropped: {d}");
    }
}

#[test]
fn ten_thousand_scattered_prefixes_are_too_large() {
    let mut rng = Rng(11);
    let p = big_policy(
        (0..10_000).map(|_| format!("{}/32", Ipv4Addr::from(rng.next() as u32))),
        "deny",
        "allow",
    );
    let c = compile(&p, &listener("0.0.0.0:80", Some(1)));
    match c.outcome {
        Outcome::TooLarge { insns } => assert!(insns > MAX_INSNS),
        o => panic!("{o:?}"),
    }
    assert!(
        c.describe().starts_with("no filter: too large"),
        "{}",
        c.describe()
    );
}

#[test]
fn interpreter_reads_ports_after_ip_options() {
    // A source-port check must read the TCP header wherever it starts.
    let p = policy("version: 1\ndefault: allow\nrules:\n  - {name: x, action: deny, calls: [accept], remote_ports: [7]}\n");
    let f = filter_of(&compile(&p, &listener("0.0.0.0:80", Some(1)))).to_vec();
    let (mut pkt, _) = syn_packet(
        "10.0.0.1:7".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    );
    pkt[0] = 0x46; // 24-byte header with 4 bytes of options
    pkt.splice(20..20, [1, 1, 1, 0]);
    assert_eq!(run(&f, &pkt, 24).unwrap(), RET_DROP);
    pkt[24 + 1] = 8;
    assert_eq!(run(&f, &pkt, 24).unwrap(), RET_ACCEPT);
}

#[test]
fn hundreds_of_random_rules_agree_with_engine() {
    // Many rules with mixed fields: jumps to the next rule cross large trees, so the
    // layout needs islands between rules as well as inside sets.
    let mut rng = Rng(99);
    let mut largest = 0;
    for round in 0..4 {
        let mut text = format!(
            "version: 1\ndefault: {}\nrules:\n",
            if round % 2 == 0 { "deny" } else { "allow" }
        );
        for i in 0..150 {
            let mut f = vec![format!(
                "name: r{i}, action: {}, calls: [accept]",
                if rng.below(2) == 0 { "allow" } else { "deny" }
            )];
            let has_remote = rng.below(20) > 0;
            if has_remote {
                let nets: Vec<String> = (0..1 + rng.below(6))
                    .map(|_| {
                        if rng.below(3) == 0 {
                            let a = Ipv6Addr::from(
                                (0x2001_0db8u128 << 96) | (rng.next() as u128) << 40,
                            );
                            format!("\"{a}/{}\"", 40 + rng.below(50))
                        } else {
                            let a = Ipv4Addr::from(rng.next() as u32);
                            format!("\"{a}/{}\"", 12 + rng.below(21))
                        }
                    })
                    .collect();
                f.push(format!("remote: [{}]", nets.join(", ")));
            }
            if rng.below(4) == 0 || !has_remote {
                let lo = 1 + rng.below(60000);
                f.push(format!("remote_ports: [\"{lo}-{}\"]", lo + rng.below(5000)));
            }
            if rng.below(6) == 0 {
                f.push(format!("local_ports: [{}, 8080]", 1 + rng.below(100)));
            }
            if rng.below(8) == 0 {
                f.push("local: [\"127.0.0.0/8\", \"::1\"]".to_string());
            }
            if rng.below(10) == 0 {
                f.push(format!("families: [{}]", rng.pick(&["ipv4", "ipv6"])));
            }
            text.push_str(&format!("  - {{ {} }}\n", f.join(", ")));
        }
        let p = policy(&text);
        for local in ["0.0.0.0:0", "[::]:8080", "127.0.0.1:8080"] {
            let l = listener(local, Some(1));
            let c = compile(&p, &l);
            largest = largest.max(c.insns().unwrap_or(0));
            if c.insns().is_some() {
                agree(&p, &l, 10_000, true, &[1]);
            } else {
                assert!(
                    matches!(c.outcome, Outcome::TooLarge { .. } | Outcome::AcceptAll),
                    "{c:?}"
                );
            }
        }
    }
    assert!(largest > 1000, "some program needs islands: {largest}");
}

#[test]
fn host_address_lists_compile_to_jeq_chains_and_agree() {
    // 2,500 scattered IPv4 hosts (about 1.2 instructions a host) and 50 IPv6 hosts.
    let mut rng = Rng(5);
    let mut nets: Vec<String> = (0..2500)
        .map(|_| Ipv4Addr::from(rng.next() as u32).to_string())
        .collect();
    nets.extend((0..50).map(|_| Ipv6Addr::from(((rng.next() as u128) << 64) | 7).to_string()));
    let p = big_policy(nets.into_iter(), "deny", "allow");
    let l = listener("0.0.0.0:80", Some(1));
    let n = compile(&p, &l).insns().expect("fits");
    assert!(n < 3100, "{n} instructions for 2,500 hosts");
    let (_, d) = agree(&p, &l, 30_000, true, &[1]);
    assert!(d > 1000, "boundary samples are dropped: {d}");
    let l = listener("[::]:80", Some(1));
    agree(&p, &l, 30_000, true, &[1]);
}
