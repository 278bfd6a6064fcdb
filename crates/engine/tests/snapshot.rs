//! `Snapshot`: all the I/O of a load now, the parsing of set files later. What it
//! compiles must decide exactly as `Policy::load` of the same files; its errors must be
//! the same errors; and compiling must not touch the disk or the name resolver.
mod common;

use common::*;
use sockexit_engine::{
    BlockingAccept, Call, Error, LoadOptions, NameResolver, Policy, Prepared, Snapshot,
};
use std::cell::Cell;
use std::path::Path;

fn read(path: &Path) -> Result<Snapshot, Error> {
    Snapshot::read_with(
        path,
        &LoadOptions {
            resolver: &TestUsers,
            permissions: sockexit_engine::Permissions::Warn,
        },
    )
}

fn load_file(path: &Path) -> Result<Policy, Error> {
    Policy::load_with(
        path,
        &LoadOptions {
            resolver: &TestUsers,
            permissions: sockexit_engine::Permissions::Warn,
        },
    )
}

/// A policy with two set files, an inline set, users, groups, programs and ports.
fn write_policy(dir: &TempDir) -> std::path::PathBuf {
    // Deterministic pseudo-random prefixes: enough that a set built wrongly (or not at
    // all) shows up in the comparison below.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut drop = String::from("# generated\n");
    for _ in 0..5000 {
        let v = next();
        let a = (v >> 32) as u32 | 0x0100_0000;
        let len = 16 + (v % 17) as u32;
        drop.push_str(&format!(
            "{}.{}.{}.{}/{len}\n",
            a >> 24,
            (a >> 16) & 255,
            (a >> 8) & 255,
            a & 255
        ));
    }
    drop.push_str("2001:db8:bad::/48\n");
    dir.write("drop.txt", drop);
    dir.write("partners.txt", "198.51.100.0/24\n2001:db8:1::/48\n");
    dir.write(
        "policy.yaml",
        "version: 1
default: deny
mode: audit
stealth: true
blocking_accept: wait
audit: { log: stderr, events: all }
sets:
  drop: { file: drop.txt }
  partners: { file: partners.txt }
  lan: [10.0.0.0/8, 192.168.0.0/16]
rules:
  - { name: drop-listed, action: deny, remote: [\"@drop\"] }
  - { name: ftp-users, action: allow, calls: [accept], remote: [\"@lan\"], local_ports: [21], users: [ftp] }
  - { name: partners-web, action: allow, calls: [accept], remote: [\"@partners\", 203.0.113.9], local_ports: [443] }
  - { name: web-group, action: allow, calls: [connect], remote_ports: [80, 443], groups: [www-data] }
  - { name: servers, action: allow, calls: [listen], programs: [\"/usr/sbin/*\"] }
",
    )
}

/// Peers to compare on: every address of the policy's sets and their neighbours,
/// plus a spread of others.
fn peers() -> Vec<String> {
    let mut v = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..5000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let a = ((x >> 32) as u32) | 0x0100_0000;
        for d in [0u32, 1, 255, 256, 65535] {
            let b = a.wrapping_add(d);
            v.push(format!(
                "{}.{}.{}.{}",
                b >> 24,
                (b >> 16) & 255,
                (b >> 8) & 255,
                b & 255
            ));
        }
    }
    for s in [
        "10.1.2.3",
        "192.168.9.9",
        "198.51.100.7",
        "198.51.101.7",
        "203.0.113.9",
        "203.0.113.10",
        "127.0.0.1",
        "[2001:db8:bad::1]",
        "[2001:db8:bae::1]",
        "[2001:db8:1::5]",
        "[::ffff:198.51.100.7]",
    ] {
        v.push(s.to_string());
    }
    v
}

#[test]
fn compiled_snapshot_decides_like_policy_load() {
    let dir = TempDir::new("snap-equiv");
    let path = write_policy(&dir);
    let eager = load_file(&path).expect("policy loads");
    let snap = read(&path).expect("snapshot reads");
    assert!(snap.set_file_bytes() > 50_000, "both set files were read");
    let lazy = snap.compile().expect("snapshot compiles");

    assert_eq!(lazy.rule_count(), eager.rule_count());
    assert_eq!(lazy.warnings(), eager.warnings());
    let mut compared = 0;
    for peer in peers() {
        for (call, local, uid, gid, prog) in [
            (Call::Accept, "0.0.0.0:21", 107, 113, "/usr/sbin/vsftpd"),
            (Call::Accept, "0.0.0.0:443", 33, 33, "/usr/sbin/nginx"),
            (Call::Connect, "0.0.0.0:0", 33, 33, "/usr/bin/curl"),
            (Call::Connect, "0.0.0.0:0", 0, 0, "/usr/bin/curl"),
        ] {
            for port in [21u16, 80, 443] {
                let remote = format!("{peer}:{port}");
                let f = || match call {
                    Call::Accept => by(accept(&remote, local), uid, gid, prog),
                    _ => by(connect(&remote), uid, gid, prog),
                };
                assert_eq!(
                    decide(&lazy, call, f()),
                    decide(&eager, call, f()),
                    "{call:?} {remote} uid {uid}"
                );
                compared += 1;
            }
        }
    }
    let l = || by(listen("0.0.0.0:21"), 0, 0, "/usr/sbin/vsftpd");
    assert_eq!(
        decide(&lazy, Call::Listen, l()),
        decide(&eager, Call::Listen, l())
    );
    // The set file really is in the compiled policy, not an empty placeholder.
    let listed = decide(
        &lazy,
        Call::Accept,
        accept("[2001:db8:bad::1]:5", "[::]:443"),
    );
    assert_eq!(listed, (DENY, "drop-listed".into()));
    assert!(compared > 100_000);
}

#[test]
fn outline_settings_are_final_before_compiling() {
    let dir = TempDir::new("snap-settings");
    let path = write_policy(&dir);
    let snap = read(&path).unwrap();
    let p = snap.compile().unwrap();
    assert_eq!(snap.mode(), p.mode());
    assert_eq!(snap.stealth(), p.stealth());
    // A non-default value, so a snapshot that dropped it would show.
    assert_eq!(snap.blocking_accept(), BlockingAccept::Wait);
    assert_eq!(snap.blocking_accept(), p.blocking_accept());
    assert_eq!(snap.audit(), p.audit());
    assert_eq!(snap.rule_count(), p.rule_count());
    assert_eq!(snap.path(), path.as_path());
    for c in [Call::Accept, Call::Connect, Call::Listen] {
        assert_eq!(snap.needs(c), p.needs(c), "{c:?}");
    }
}

#[test]
fn compile_reads_nothing_from_disk() {
    let dir = TempDir::new("snap-noio");
    let path = write_policy(&dir);
    let snap = read(&path).unwrap();
    // The files change (or vanish, as after a chroot) between read and compile: the
    // snapshot still compiles the policy as it was read.
    std::fs::remove_file(dir.path().join("drop.txt")).unwrap();
    dir.write("partners.txt", "not an address\n");
    dir.write("policy.yaml", "garbage: [");
    let p = snap.compile().expect("compiles from the captured bytes");
    assert_eq!(
        decide(&p, Call::Accept, accept("198.51.100.7:5", "0.0.0.0:443")),
        (ALLOW, "partners-web".into())
    );
    assert_eq!(
        decide(&p, Call::Accept, accept("[2001:db8:bad::1]:5", "[::]:443")),
        (DENY, "drop-listed".into())
    );
}

/// Counts lookups, answering like `TestUsers`.
struct Counting(Cell<usize>);

impl NameResolver for Counting {
    fn user(&self, name: &str) -> Option<u32> {
        self.0.set(self.0.get() + 1);
        TestUsers.user(name)
    }
    fn group(&self, name: &str) -> Option<u32> {
        self.0.set(self.0.get() + 1);
        TestUsers.group(name)
    }
}

#[test]
fn names_are_resolved_once_when_read() {
    let dir = TempDir::new("snap-names");
    let path = write_policy(&dir);
    let counting = Counting(Cell::new(0));
    let snap = Snapshot::read_with(
        &path,
        &LoadOptions {
            resolver: &counting,
            permissions: sockexit_engine::Permissions::Warn,
        },
    )
    .unwrap();
    let after_read = counting.0.get();
    assert_eq!(after_read, 2, "one user and one group in the policy");
    let p = snap.compile().unwrap();
    assert_eq!(
        counting.0.get(),
        after_read,
        "compile must not look names up"
    );
    // ... and still knows them.
    let f = by(accept("10.1.2.3:5", "0.0.0.0:21"), 107, 113, "/x");
    assert_eq!(decide(&p, Call::Accept, f), (ALLOW, "ftp-users".into()));
    let f = by(accept("10.1.2.3:5", "0.0.0.0:21"), 108, 113, "/x");
    assert_eq!(decide(&p, Call::Accept, f).0, DENY);
}

#[test]
fn a_bad_set_file_fails_at_compile_with_the_same_error_as_load() {
    let dir = TempDir::new("snap-badset");
    let path = write_policy(&dir);
    dir.write(
        "partners.txt",
        "198.51.100.0/24\n\n  2001:db8:zz::/48  # typo\n",
    );
    let want = load_file(&path).expect_err("Policy::load refuses it");
    assert_eq!(want.file, dir.path().join("partners.txt"));
    assert_eq!(want.location, Some((3, 3)));
    let snap = read(&path).expect("the snapshot does not parse set files");
    let got = snap.compile().expect_err("compile refuses it");
    assert_eq!(got, want);
    assert!(got.to_string().contains("partners.txt:3:3"), "{got}");
}

#[test]
fn io_and_policy_errors_fail_at_read_with_the_same_error_as_load() {
    let dir = TempDir::new("snap-readerr");
    let path = write_policy(&dir);
    // A missing set file.
    std::fs::remove_file(dir.path().join("drop.txt")).unwrap();
    let want = load_file(&path).unwrap_err();
    assert_eq!(read(&path).unwrap_err(), want);
    assert!(want.to_string().contains("drop.txt"), "{want}");
    // An unknown user.
    let path = write_policy(&dir);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("users: [ftp]", "users: [nosuchuser]");
    dir.write("policy.yaml", text);
    let want = load_file(&path).unwrap_err();
    assert_eq!(read(&path).unwrap_err(), want);
    assert!(want.to_string().contains("nosuchuser"), "{want}");
    // A typo'd key.
    dir.write("policy.yaml", "version: 1\ndefault: deny\nrulez: []\n");
    let want = load_file(&path).unwrap_err();
    assert_eq!(read(&path).unwrap_err(), want);
    // No policy at all.
    let gone = dir.path().join("nope.yaml");
    assert_eq!(read(&gone).unwrap_err(), load_file(&gone).unwrap_err());
}

#[test]
fn read_deferring_parses_small_set_files_at_once_and_defers_big_ones() {
    let dir = TempDir::new("snap-defer");
    let path = write_policy(&dir); // drop.txt ≈ 80 KB, partners.txt 32 bytes
    let eager = load_file(&path).unwrap();
    let opts = LoadOptions {
        resolver: &TestUsers,
        permissions: sockexit_engine::Permissions::Warn,
    };
    let big = std::fs::metadata(dir.path().join("drop.txt"))
        .unwrap()
        .len() as usize;

    // Every file at or under the limit: one parse, the whole policy.
    match Snapshot::read_deferring(&path, &opts, big).unwrap() {
        Prepared::Compiled(p) => {
            let f = || accept("[2001:db8:bad::1]:5", "[::]:443");
            assert_eq!(decide(&p, Call::Accept, f()), (DENY, "drop-listed".into()));
            assert_eq!(p.warnings(), eager.warnings());
        }
        Prepared::Deferred(_) => panic!("nothing is over the limit"),
    }
    // drop.txt over the limit: deferred, and a bad line in it shows only at compile...
    dir.write(
        "drop.txt",
        std::fs::read_to_string(dir.path().join("drop.txt")).unwrap() + "bad\n",
    );
    let snap = match Snapshot::read_deferring(&path, &opts, 1024).unwrap() {
        Prepared::Deferred(s) => s,
        Prepared::Compiled(_) => panic!("drop.txt is over the limit"),
    };
    // The deferred snapshot already carries the settings the hooks act on at start-up.
    assert_eq!(snap.blocking_accept(), BlockingAccept::Wait);
    assert_eq!(snap.compile().unwrap_err().location, Some((5003, 1)));
    // ... while a bad line in a small file fails the read itself.
    dir.write("partners.txt", "198.51.100.0/24\nbad\n");
    let e = Snapshot::read_deferring(&path, &opts, 1024).unwrap_err();
    assert_eq!(e.file, dir.path().join("partners.txt"));
    assert_eq!(e.location, Some((2, 1)));
}
