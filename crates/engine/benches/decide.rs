//! Decision and load time of compiled policies: 10 rules, 1,000 rules, and 20 rules
//! whose first rule checks the peer against a 100,000-prefix set file.
//!
//! Targets (issue 2): ≤ 100 ns median per decision with the 100k set; load of that
//! policy (YAML + set file) ≤ 20 ms. Inputs are generated into a temporary directory.
use criterion::{criterion_group, criterion_main, Criterion};
use sockexit_engine::{Call, Facts, Policy, Verdict};
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// xorshift64*: deterministic inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 100,000 prefixes, one a line, like a threat feed: 90% IPv4 (/32 hosts, /24s, a few
/// /16../23), 10% IPv6 (/48../128) in global unicast space. None covers loopback.
fn set_file_text(n: usize) -> String {
    let mut rng = Rng(0x5eed_50c4_e717);
    let mut s = String::with_capacity(n * 20);
    s.push_str("# generated feed for the decide benchmark\n\n");
    let mut written = 0;
    while written < n {
        if rng.below(10) < 9 {
            let a = rng.next() as u32;
            let first = a >> 24;
            if first == 127 || first == 0 || first >= 224 {
                continue;
            }
            let len = match rng.below(100) {
                0..=54 => 32,
                55..=94 => 24,
                _ => 16 + rng.below(8) as u8,
            };
            let _ = writeln!(s, "{}/{len}", Ipv4Addr::from(a));
        } else {
            let a = (0x2000u128 + rng.below(0x1fff) as u128) << 112 | (rng.next() as u128) << 48;
            let len = [48u8, 56, 64, 128][rng.below(4) as usize];
            let _ = writeln!(s, "{}/{len}", Ipv6Addr::from(a));
        }
        if written % 1000 == 0 {
            s.push_str("# section\n");
        }
        written += 1;
    }
    s
}

/// Rules 2..=19 of the 20-rule policy: a realistic mix, none of which matches a
/// loopback peer on port 40000 into local port 8080.
const MIDDLE_RULES: &str = r#"
  - { name: ftp-lan, action: allow, calls: [accept], remote: ["@lan"], local_ports: [21, "40000-40100"], programs: ["*/vsftpd"] }
  - { name: ssh-admins, action: allow, calls: [accept], remote: ["@admins"], local_ports: [22] }
  - { name: ssh-others, action: deny, calls: [accept], local_ports: [22] }
  - { name: smb, action: deny, local_ports: [139, 445] }
  - { name: legacy, action: deny, calls: [accept], local_ports: [23, 513, 514] }
  - { name: vpn, action: allow, calls: [accept], remote: [100.64.0.0/10], local_ports: [1194] }
  - { name: mail-relay, action: allow, calls: [connect], remote: [192.0.2.25], remote_ports: [25, 587] }
  - { name: no-smtp, action: deny, calls: [connect], remote_ports: [25] }
  - { name: dns, action: allow, calls: [connect], remote_ports: [53], families: [ipv4, ipv6] }
  - { name: https, action: allow, calls: [connect], remote_ports: [443] }
  - { name: ntp, action: allow, calls: [connect], remote: [192.0.2.123], remote_ports: [123] }
  - { name: backup, action: allow, calls: [connect], remote: ["2001:db8:b::/48"], users: [0] }
  - { name: monitoring, action: allow, calls: [accept], remote: [198.51.100.0/28], local_ports: [9100] }
  - { name: web, action: allow, calls: [accept], local_ports: [80, 443] }
  - { name: db-local, action: allow, calls: [accept], remote: [10.20.0.0/16], local_ports: [5432], users: [0, 999] }
  - { name: redis, action: deny, local_ports: [6379] }
  - { name: v6-only-api, action: allow, calls: [accept], families: [ipv6], remote: ["2001:db8:a::/48"], local_ports: [8443] }
  - { name: high-ports-lan, action: allow, calls: [accept], remote: ["@lan"], local_ports: ["49152-65535"] }
"#;

const HEAD: &str = "version: 1\ndefault: deny\naudit: { log: off }\nsets:\n  lan: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16]\n  admins: [192.0.2.10, 192.0.2.11]\n";

fn policy_20(set_file: &Path) -> String {
    format!(
        "{HEAD}  blocklist: {{ file: {} }}\nrules:\n  - {{ name: drop-listed, action: deny, calls: [accept], remote: [\"@blocklist\"] }}{MIDDLE_RULES}  - {{ name: loopback, action: allow, remote: [127.0.0.0/8, \"::1\"] }}\n",
        set_file.display()
    )
}

fn policy_10() -> String {
    let middle: Vec<&str> = MIDDLE_RULES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(8)
        .collect();
    format!(
        "{HEAD}rules:\n  - {{ name: drop-host, action: deny, remote: [203.0.113.9] }}\n{}\n  - {{ name: loopback, action: allow, remote: [127.0.0.0/8, \"::1\"] }}\n",
        middle.join("\n")
    )
}

/// 999 one-network deny rules, then the loopback allow: the worst case of a long list.
fn policy_1000() -> String {
    let mut s = format!("{HEAD}rules:\n");
    for i in 0..999u32 {
        let net = Ipv4Addr::from(0x0a00_0000 | (i << 8));
        let _ = writeln!(
            s,
            "  - {{ name: deny-{i}, action: deny, calls: [accept], remote: [{net}/24], local_ports: [{}] }}",
            1 + i % 1000
        );
    }
    s.push_str("  - { name: loopback, action: allow, remote: [127.0.0.0/8, \"::1\"] }\n");
    s
}

struct Inputs {
    dir: PathBuf,
    p20: PathBuf,
}

impl Inputs {
    fn new() -> Inputs {
        let dir = std::env::temp_dir().join(format!("sockexit-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let set = dir.join("blocklist.txt");
        std::fs::write(&set, set_file_text(100_000)).expect("write set");
        let p20 = dir.join("p20.yaml");
        std::fs::write(&p20, policy_20(&set)).expect("write policy");
        std::fs::write(dir.join("p10.yaml"), policy_10()).expect("write policy");
        std::fs::write(dir.join("p1000.yaml"), policy_1000()).expect("write policy");
        Inputs { dir, p20 }
    }
    fn load(&self, name: &str) -> Policy {
        Policy::load(&self.dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

impl Drop for Inputs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn facts(peer: &str, local: &str) -> Facts {
    Facts {
        remote: Some(peer.parse::<SocketAddr>().unwrap()),
        local: Some(local.parse::<SocketAddr>().unwrap()),
        uid: Some(1000),
        gid: Some(1000),
        program: Some("/usr/sbin/nginx".into()),
        dynamic: None,
    }
}

fn benches(c: &mut Criterion) {
    let inputs = Inputs::new();
    let p10 = inputs.load("p10.yaml");
    let p1000 = inputs.load("p1000.yaml");
    let p20 = inputs.load("p20.yaml");
    assert_eq!(p10.rule_count(), 10);
    assert_eq!(p1000.rule_count(), 1000);
    assert_eq!(p20.rule_count(), 20);
    let set = p20.rules()[0].remote().unwrap();
    eprintln!(
        "100k set compiled to {} IPv4 and {} IPv6 ranges",
        set.v4_ranges().len(),
        set.v6_ranges().len()
    );

    // The allowed path: a loopback peer walks every rule (and, with the set, the whole
    // 100k index) before the last rule allows it.
    let loopback = facts("127.0.0.1:40000", "127.0.0.1:8080");
    let loopback6 = facts("[::1]:40000", "[::1]:8080");
    for (p, rule) in [(&p10, "loopback"), (&p1000, "loopback"), (&p20, "loopback")] {
        let d = p.decide(Call::Accept, &mut loopback.clone());
        assert_eq!((d.verdict, d.rule), (Verdict::Allow, rule));
    }
    // A listed peer: refused by rule 1 (first /32 of the generated feed).
    let first = set_file_text(1)
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let listed = facts(&format!("{first}:40000"), "127.0.0.1:8080");
    let d = p20.decide(Call::Accept, &mut listed.clone());
    assert_eq!((d.verdict, d.rule), (Verdict::Deny, "drop-listed"));

    let mut g = c.benchmark_group("decide");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    let cases: [(&str, &Policy, &Facts); 5] = [
        ("10_rules/allow_last", &p10, &loopback),
        ("1000_rules/allow_last", &p1000, &loopback),
        ("20_rules_100k_set/allow_last_v4", &p20, &loopback),
        ("20_rules_100k_set/allow_last_v6", &p20, &loopback6),
        ("20_rules_100k_set/deny_listed", &p20, &listed),
    ];
    for (name, p, f) in cases {
        let mut f = f.clone();
        g.bench_function(name, |b| {
            b.iter(|| black_box(p).decide(black_box(Call::Accept), &mut f).verdict)
        });
    }
    g.finish();

    let mut g = c.benchmark_group("load");
    g.sample_size(20);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("20_rules_100k_set", |b| {
        b.iter(|| Policy::load(black_box(&inputs.p20)).unwrap())
    });
    g.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
