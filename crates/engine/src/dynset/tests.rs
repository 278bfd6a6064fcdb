use super::*;
use proptest::prelude::*;

fn net(s: &str) -> IpNet {
    s.parse()
        .unwrap_or_else(|_| IpNet::from(s.parse::<IpAddr>().unwrap()))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn content() -> DynContent {
    let mut c = DynContent::default();
    c.add("banned", net("203.0.113.7/32"), None, 100);
    c.add("banned", net("198.51.100.0/24"), Some(500), 100);
    c.add("banned", net("2001:db8::/48"), Some(300), 100);
    c.add("other", net("10.0.0.0/8"), None, 100);
    c.revision = 9;
    c
}

#[test]
fn a_file_decodes_to_what_was_encoded() {
    let c = content();
    let back = DynContent::decode(&c.encode(), Path::new("d")).unwrap();
    assert_eq!(back, c);
}

#[test]
fn every_truncation_and_flipped_byte_is_an_error_not_a_panic() {
    let b = content().encode();
    for n in 0..b.len() {
        assert!(
            DynContent::decode(&b[..n], Path::new("d")).is_err(),
            "cut at {n}"
        );
    }
    for i in (0..b.len()).filter(|i| !(16..24).contains(i)) {
        let mut bad = b.clone();
        bad[i] ^= 0x41;
        assert!(
            DynContent::decode(&bad, Path::new("d")).is_err(),
            "flip at {i}"
        );
    }
}

#[test]
fn a_hostile_count_with_a_valid_checksum_is_an_error() {
    for payload in [
        u32::MAX.to_le_bytes().to_vec(),
        [1u32.to_le_bytes(), 1u32.to_le_bytes()].concat(),
        [
            &1u32.to_le_bytes()[..],
            &1u32.to_le_bytes(),
            b"x",
            &u32::MAX.to_le_bytes(),
        ]
        .concat(),
    ] {
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&1u64.to_le_bytes());
        f.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        f.extend_from_slice(&fnv1a64(&payload).to_le_bytes());
        f.extend_from_slice(&payload);
        let e = DynContent::decode(&f, Path::new("/run/x/dynamic")).unwrap_err();
        assert!(e.to_string().contains("/run/x/dynamic"), "{e}");
    }
}

#[test]
fn entries_match_until_they_expire() {
    let t = DynSets::build(&content());
    assert_eq!(t.revision(), 9);
    assert!(t.contains_at("banned", ip("203.0.113.7"), u64::MAX - 1));
    assert!(!t.contains_at("banned", ip("203.0.113.8"), 0));
    assert!(t.contains_at("banned", ip("198.51.100.200"), 499));
    assert!(!t.contains_at("banned", ip("198.51.100.200"), 500));
    assert!(t.contains_at("banned", ip("2001:db8:0:ffff::1"), 299));
    assert!(!t.contains_at("banned", ip("2001:db8:0:ffff::1"), 300));
    assert!(
        !t.contains_at("banned", ip("10.1.1.1"), 0),
        "another set's entry"
    );
    assert!(t.contains_at("other", ip("10.1.1.1"), 0));
    assert!(!t.contains_at("nosuch", ip("10.1.1.1"), 0));
}

#[test]
fn a_v4_mapped_entry_matches_the_canonical_ipv4_peer() {
    let mut c = DynContent::default();
    c.add("b", net("::ffff:192.0.2.0/120"), None, 1);
    let t = DynSets::build(&c);
    assert!(t.contains_at("b", ip("192.0.2.9"), 2));
}

#[test]
fn add_renews_del_removes_only_the_exact_entry_and_expired_ones_are_pruned() {
    let mut c = DynContent::default();
    c.add("b", net("192.0.2.1"), Some(10), 1);
    c.add("b", net("192.0.2.1/32"), Some(50), 2);
    assert_eq!(c.sets["b"].len(), 1);
    assert_eq!(c.sets["b"][0].expires, Some(50));
    c.add("b", net("192.0.2.0/24"), None, 3);
    assert!(!c.del("b", net("192.0.2.9"), 4), "covered but not an entry");
    assert!(c.del("b", net("192.0.2.0/24"), 4));
    c.add("b", net("198.51.100.1"), None, 60);
    assert_eq!(c.sets["b"].len(), 1, "the expired entry went at the add");
    assert!(!c.del("nosuch", net("198.51.100.1"), 60));
}

#[test]
fn the_top_of_the_address_space_is_covered() {
    let mut c = DynContent::default();
    c.add("b", net("255.255.255.0/24"), None, 1);
    c.add("b", net("::/0"), Some(9), 1);
    let t = DynSets::build(&c);
    assert!(t.contains_at("b", ip("255.255.255.255"), 5));
    assert!(t.contains_at("b", ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 5));
    assert!(!t.contains_at("b", ip("ffff::1"), 9));
}

proptest! {
    /// The sweep's table answers exactly as a scan of the entries does.
    #[test]
    fn the_table_answers_as_a_scan_of_the_entries(
        es in proptest::collection::vec((any::<u8>(), 24u8..=32, prop_oneof![Just(0u64), 1u64..8]), 0..40),
        probes in proptest::collection::vec((any::<u8>(), any::<u8>(), 0u64..9), 1..60),
    ) {
        let mut c = DynContent::default();
        for &(b, len, exp) in &es {
            let n = IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 0, b, 0)), len).unwrap().trunc();
            let v = c.sets.entry("s".into()).or_default();
            // Duplicates are kept here (unlike add) to exercise overlapping expiries.
            v.push(DynEntry { net: n, expires: (exp != 0).then_some(exp), added: 0 });
        }
        let t = DynSets::build(&c);
        for &(b, h, now) in &probes {
            let a = IpAddr::V4(Ipv4Addr::new(10, 0, b, h));
            let scan = c.sets.get("s").is_some_and(|v| v.iter().any(|e| {
                e.net.contains(&a) && e.expires.is_none_or(|x| x > now)
            }));
            prop_assert_eq!(t.contains_at("s", a, now), scan, "{} at {}", a, now);
        }
    }
}
