use super::*;
use crate::{LoadOptions, Permissions};

fn read(p: &Path) -> Snapshot {
    Snapshot::read_with(
        p,
        &LoadOptions {
            resolver: &crate::FilesResolver::default(),
            permissions: Permissions::Warn,
        },
    )
    .unwrap()
}

fn snap(text: &str) -> (tempdir::Dir, Snapshot) {
    let d = tempdir::Dir::new();
    let p = d.0.join("p.yaml");
    std::fs::write(&p, text).unwrap();
    std::fs::write(d.0.join("b.txt"), "127.0.0.2\n10.0.0.0/8\n").unwrap();
    let s = read(&p);
    (d, s)
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "sockexit-image-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

const POLICY: &str = "version: 1\ndefault: allow\nsets:\n  b: { file: b.txt }\nrules:\n  - { name: no-b, action: deny, remote: [\"@b\"], users: [root] }\n";

#[test]
fn an_image_decides_as_the_files_did() {
    let (_d, s) = snap(POLICY);
    let img = s.to_image(7, &s.compile().unwrap());
    let (info, p) = decode_image(&img, Path::new("x.image")).unwrap();
    assert_eq!(info.generation, 7);
    assert_eq!(info.digest, s.digest());
    let mut f = crate::Facts {
        remote: Some("10.1.2.3:80".parse().unwrap()),
        uid: Some(0),
        ..Default::default()
    };
    assert_eq!(p.decide(crate::Call::Connect, &mut f).rule, "no-b");
    f.remote = Some("127.0.0.3:80".parse().unwrap());
    assert_eq!(p.decide(crate::Call::Connect, &mut f).rule, "default");
}

#[test]
fn every_truncation_and_every_flipped_byte_is_an_error_not_a_panic() {
    let (_d, s) = snap(POLICY);
    let img = s.to_image(1, &s.compile().unwrap());
    for n in 0..img.len() {
        assert!(
            decode_image(&img[..n], Path::new("x")).is_err(),
            "truncated at {n}"
        );
    }
    for i in 0..img.len() {
        let mut bad = img.clone();
        bad[i] ^= 0x41;
        // A flip in the generation field is still a valid image of another generation.
        if (16..24).contains(&i) {
            continue;
        }
        assert!(decode_image(&bad, Path::new("x")).is_err(), "flip at {i}");
    }
}

/// An image with this payload and compiled section, both checksums right.
fn assemble(p: &[u8], sec: &[u8]) -> Vec<u8> {
    let mut img = MAGIC.to_vec();
    img.extend_from_slice(&1u64.to_le_bytes());
    img.extend_from_slice(&(p.len() as u64).to_le_bytes());
    img.extend_from_slice(&fnv1a64(p).to_le_bytes());
    img.extend_from_slice(&(sec.len() as u64).to_le_bytes());
    img.extend_from_slice(&crate::compiled::fast_hash(sec).to_le_bytes());
    img.extend_from_slice(&[0; 8]);
    img.extend_from_slice(p);
    while !img.len().is_multiple_of(16) {
        img.push(0);
    }
    img.extend_from_slice(sec);
    img
}

#[test]
fn a_hostile_payload_with_a_valid_checksum_is_an_error() {
    let mut p = 7u64.to_le_bytes().to_vec();
    put(&mut p, b"/x.yaml");
    put(&mut p, b"version: 1\n");
    p.extend_from_slice(&u32::MAX.to_le_bytes()); // set-file count
    let sec = crate::compiled::Writer::section(&[], &[], None);
    assert!(decode_image(&assemble(&p, &sec), Path::new("x")).is_err());
}

/// 20 rules and a set file big enough for the compiled section and the dispatch.
fn big() -> (tempdir::Dir, Snapshot, Vec<u8>) {
    let d = tempdir::Dir::new();
    let mut set = String::new();
    for i in 0..3000u32 {
        set.push_str(&format!("10.{}.{}.0/24\n", i / 256, i % 256));
    }
    set.push_str("2001:db8::/32\n");
    std::fs::write(d.0.join("big.txt"), &set).unwrap();
    let mut y =
        String::from("version: 1\ndefault: allow\nsets:\n  big: { file: big.txt }\nrules:\n");
    y.push_str("  - { name: big, action: deny, calls: [accept, connect], remote: [\"@big\"] }\n");
    for i in 0..19 {
        y.push_str(&format!(
            "  - {{ name: r{i}, action: deny, calls: [connect], remote: [192.0.{i}.0/24], remote_ports: [{}] }}\n",
            i + 1
        ));
    }
    let p = d.0.join("p.yaml");
    std::fs::write(&p, y).unwrap();
    let s = read(&p);
    let img = s.to_image(3, &s.compile().unwrap());
    (d, s, img)
}

fn peers() -> Vec<std::net::SocketAddr> {
    let mut v = Vec::new();
    for i in (0..3200u32).step_by(37) {
        v.push(
            format!("10.{}.{}.9:{}", i / 256, i % 256, i % 25)
                .parse()
                .unwrap(),
        );
    }
    for x in [
        "192.0.3.1:4",
        "192.0.3.1:5",
        "8.8.8.8:1",
        "[2001:db8::1]:1",
        "[2001:db9::1]:1",
    ] {
        v.push(x.parse().unwrap());
    }
    v
}

#[test]
fn a_big_image_keeps_its_sets_and_dispatch_compiled_and_decides_as_the_files_did() {
    let (_d, s, img) = big();
    assert!(img.len() < s.set_file_bytes(), "the set text is not kept");
    let files = s.compile().unwrap();
    let (info, copied) = decode_image(&img, Path::new("x")).unwrap();
    let leaked: &'static [u8] = Box::leak(img.clone().into_boxed_slice());
    let (_, mapped) = decode_image_in_place(leaked, Path::new("x")).unwrap();
    assert_eq!(info.digest, s.digest());
    assert!(
        mapped.dispatch_size().is_some(),
        "the dispatch came with the image"
    );
    for peer in peers() {
        for call in [crate::Call::Accept, crate::Call::Connect] {
            let f = || crate::Facts {
                remote: Some(peer),
                local: Some("127.0.0.1:21".parse().unwrap()),
                ..Default::default()
            };
            let want = files.decide(call, &mut f());
            assert_eq!(copied.decide(call, &mut f()), want, "{peer} {call:?}");
            assert_eq!(mapped.decide(call, &mut f()), want, "{peer} {call:?}");
            assert_eq!(mapped.decide_walk(call, &mut f()), want, "{peer} {call:?}");
        }
    }
}

#[test]
fn a_big_image_cut_or_flipped_anywhere_is_an_error() {
    let (_d, _s, img) = big();
    let step = (img.len() / 1500).max(1);
    for n in (0..img.len()).step_by(step) {
        assert!(
            decode_image(&img[..n], Path::new("x")).is_err(),
            "cut at {n}"
        );
    }
    for i in (0..img.len())
        .step_by(step)
        .filter(|i| !(16..24).contains(i))
    {
        let mut bad = img.clone();
        bad[i] ^= 0x41;
        assert!(decode_image(&bad, Path::new("x")).is_err(), "flip at {i}");
    }
}

/// A compiled section changed and re-hashed (what only someone who can write the
/// publication directory could do): an error or a policy, never a panic, also when
/// the policy then decides.
#[test]
fn a_hostile_compiled_section_with_a_valid_hash_never_panics() {
    let (_d, _s, img) = big();
    let plen = u64::from_le_bytes(img[24..32].try_into().unwrap()) as usize;
    let start = (HEADER + plen).next_multiple_of(16);
    let step = ((img.len() - start) / 3000).max(1);
    let mut accepted = 0;
    for i in (start..img.len()).step_by(step) {
        for x in [0x01u8, 0x80, 0xff] {
            let mut bad = img.clone();
            bad[i] ^= x;
            let h = crate::compiled::fast_hash(&bad[start..]);
            bad[48..56].copy_from_slice(&h.to_le_bytes());
            if let Ok((_, p)) = decode_image(&bad, Path::new("x")) {
                accepted += 1;
                for peer in peers() {
                    let mut f = crate::Facts {
                        remote: Some(peer),
                        ..Default::default()
                    };
                    let _ = p.decide(crate::Call::Connect, &mut f);
                }
            }
        }
    }
    // Most changes break a check (order, bounds); changed range values may not.
    eprintln!("{accepted} hostile sections decoded");
}

/// Every field a rule and a policy can have survives the rule table unchanged.
#[test]
fn the_rule_table_keeps_every_field() {
    let (_d, s) = snap(
        r#"version: 1
default: deny
mode: audit
stealth: true
blocking_accept: wait
audit: { log: /var/log/sockexit/a.jsonl, events: all }
sets:
  b: { file: b.txt }
  dyn: { dynamic: true }
rules:
  - { name: a, action: allow, calls: [accept], remote: ["@b", "@dyn", 2001:db8::/32], local_ports: [21, "40000-40100"] }
  - { name: u, action: deny, calls: [connect], remote_ports: [25], users: [root], groups: [root], families: [ipv6] }
  - { name: p, action: allow, programs: ["/bin/*", "/usr/sbin/nginx"], local: ["@dyn", 127.0.0.0/8] }
  - { name: l, action: allow, calls: [listen] }
"#,
    );
    let files = s.compile().unwrap();
    let img = s.to_image(9, &files);
    for (how, p) in [
        ("copied", decode_image(&img, Path::new("x")).unwrap().1),
        (
            "in place",
            decode_image_in_place(Box::leak(img.clone().into_boxed_slice()), Path::new("x"))
                .unwrap()
                .1,
        ),
    ] {
        assert_eq!(
            format!("{:?}", p.rules()),
            format!("{:?}", files.rules()),
            "{how}"
        );
        assert_eq!(p.default_verdict(), files.default_verdict());
        assert_eq!(p.mode(), files.mode());
        assert_eq!(p.stealth(), files.stealth());
        assert_eq!(p.blocking_accept(), files.blocking_accept());
        assert_eq!(p.audit(), files.audit());
        assert_eq!(p.path(), files.path());
        assert_eq!(p.dynamic_sets(), files.dynamic_sets());
        for c in [
            crate::Call::Accept,
            crate::Call::Connect,
            crate::Call::Listen,
        ] {
            assert_eq!(format!("{:?}", p.needs(c)), format!("{:?}", files.needs(c)));
        }
    }
}
