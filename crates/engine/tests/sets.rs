//! Named address sets: inline lists and files (comments, blank lines), references from
//! rules, and the errors a bad or unreadable set file gives.
mod common;

use common::*;
use sockexit_engine::{Call, Policy};

#[test]
fn inline_sets_are_referenced_with_at() {
    let p = ok(&format!(
        "{HEAD}sets:
  lan: [10.0.0.0/8, \"192.168.0.0/16\", \"fd00::/8\"]
  admins: [192.0.2.10]
rules:
  - name: admin-ssh
    action: allow
    calls: [accept]
    remote: [\"@admins\"]
    local_ports: [22]
  - name: lan-web
    action: allow
    calls: [accept]
    remote: [\"@lan\", 198.51.100.1]
    local_ports: [80]
"
    ));
    let acc = |remote: &str, local: &str| decide(&p, Call::Accept, accept(remote, local));
    assert_eq!(
        acc("192.0.2.10:5000", "0.0.0.0:22"),
        (ALLOW, "admin-ssh".into())
    );
    assert_eq!(acc("192.0.2.11:5000", "0.0.0.0:22").0, DENY);
    assert_eq!(
        acc("10.9.8.7:5000", "0.0.0.0:80"),
        (ALLOW, "lan-web".into())
    );
    assert_eq!(acc("[fd12::1]:5000", "[::]:80"), (ALLOW, "lan-web".into()));
    assert_eq!(
        acc("198.51.100.1:5000", "0.0.0.0:80"),
        (ALLOW, "lan-web".into())
    );
    assert_eq!(acc("198.51.100.2:5000", "0.0.0.0:80").0, DENY);
    assert_eq!(
        acc("10.9.8.7:5000", "0.0.0.0:22").0,
        DENY,
        "LAN is not admin"
    );
}

#[test]
fn set_file_with_comments_and_blank_lines() {
    let dir = TempDir::new("setfile");
    dir.write(
        "drop.txt",
        "# feed of 2026-11-25\n\n203.0.113.0/24\n   198.51.100.7   # one host\n\n2001:db8:bad::/48\n\t# indented comment\n192.0.2.1/32\r\n",
    );
    let policy = dir.write(
        "policy.yaml",
        format!(
            "{HEAD}sets:\n  drop: {{ file: drop.txt }}\nrules:\n  - {{ name: drop-listed, action: deny, remote: [\"@drop\"] }}\n  - {{ name: rest, action: allow }}\n"
        ),
    );
    let p = Policy::load(&policy).expect("loads with the set file next to it");
    let con = |remote: &str| decide(&p, Call::Connect, connect(remote));
    for listed in [
        "203.0.113.0:1",
        "203.0.113.255:1",
        "198.51.100.7:1",
        "[2001:db8:bad:ffff::1]:1",
        "192.0.2.1:1",
        "[::ffff:203.0.113.9]:1",
    ] {
        assert_eq!(con(listed), (DENY, "drop-listed".into()), "{listed}");
    }
    for free in [
        "203.0.114.0:1",
        "198.51.100.8:1",
        "[2001:db8:bae::1]:1",
        "192.0.2.2:1",
    ] {
        assert_eq!(con(free), (ALLOW, "rest".into()), "{free}");
    }
    assert_eq!(
        p.rules()[0].remote().unwrap().v4_ranges().len(),
        3,
        "the three IPv4 entries are separate ranges"
    );
}

#[test]
fn set_file_path_absolute_and_relative_to_the_policy() {
    let dir = TempDir::new("setpath");
    std::fs::create_dir(dir.path().join("lists")).unwrap();
    let abs = dir.write("lists/abs.txt", "10.0.0.1\n");
    dir.write("lists/rel.txt", "10.0.0.2\n");
    let policy = dir.write(
        "p.yaml",
        format!(
            "{HEAD}sets:\n  a: {{ file: {} }}\n  r: {{ file: lists/rel.txt }}\nrules:\n  - {{ name: a, action: allow, remote: [\"@a\"] }}\n  - {{ name: r, action: allow, remote: [\"@r\"] }}\n",
            abs.display()
        ),
    );
    let p = Policy::load(&policy).unwrap();
    assert_eq!(decide(&p, Call::Connect, connect("10.0.0.1:80")).1, "a");
    assert_eq!(decide(&p, Call::Connect, connect("10.0.0.2:80")).1, "r");
    assert_eq!(
        decide(&p, Call::Connect, connect("10.0.0.3:80")).1,
        "default"
    );
}

#[test]
fn bad_line_in_a_set_file_names_the_file_line_and_column() {
    let dir = TempDir::new("setbad");
    let list = dir.write(
        "drop.txt",
        "# ok so far\n10.0.0.0/8\n\n  10.1.2.300  # typo\n",
    );
    let policy = dir.write(
        "p.yaml",
        format!("{HEAD}sets:\n  drop: {{ file: drop.txt }}\n"),
    );
    let e = Policy::load(&policy).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:4:3: `10.1.2.300` is not an IP address or CIDR prefix",
            list.display()
        )
    );
    assert_eq!(e.file, list);
    assert_eq!(e.location, Some((4, 3)));
}

#[test]
fn non_utf8_set_file_names_the_line() {
    let dir = TempDir::new("setutf8");
    let list = dir.write("drop.txt", b"10.0.0.1\n10.0.0.2\n10.0.0.\xff3\n");
    let policy = dir.write(
        "p.yaml",
        format!("{HEAD}sets:\n  drop: {{ file: drop.txt }}\n"),
    );
    assert_eq!(
        Policy::load(&policy).unwrap_err().to_string(),
        format!("{}:3:1: not valid UTF-8", list.display())
    );
}

#[test]
fn unreadable_set_file_names_the_file_and_where_the_policy_names_it() {
    let dir = TempDir::new("setmissing");
    let policy = dir.write(
        "p.yaml",
        format!("{HEAD}sets:\n  lan: [10.0.0.0/8]\n  drop: {{ file: missing.txt }}\n"),
    );
    let e = Policy::load(&policy).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:5:9: key `drop`: cannot read set file {}: No such file or directory (os error 2)",
            policy.display(),
            dir.path().join("missing.txt").display()
        )
    );
    // A directory where a file is expected: opened but not readable as a file.
    std::fs::create_dir(dir.path().join("d")).unwrap();
    let policy = dir.write("q.yaml", format!("{HEAD}sets:\n  drop: {{ file: d }}\n"));
    assert_eq!(
        Policy::load(&policy).unwrap_err().to_string(),
        format!(
            "{}:4:9: key `drop`: cannot read set file {}: Is a directory (os error 21)",
            policy.display(),
            dir.path().join("d").display()
        )
    );
}

#[test]
fn oversized_set_file_is_refused_before_reading() {
    let dir = TempDir::new("setbig");
    let list = dir.path().join("huge.txt");
    // Sparse: the size check happens on metadata, nothing is read.
    std::fs::File::create(&list)
        .unwrap()
        .set_len(sockexit_engine::MAX_SET_FILE_BYTES + 1)
        .unwrap();
    let policy = dir.write(
        "p.yaml",
        format!("{HEAD}sets:\n  big: {{ file: huge.txt }}\n"),
    );
    assert_eq!(
        Policy::load(&policy).unwrap_err().to_string(),
        format!(
            "{}: set file is larger than {} bytes",
            list.display(),
            sockexit_engine::MAX_SET_FILE_BYTES
        )
    );
}

#[test]
fn overlapping_and_adjacent_entries_merge() {
    let p = ok(&format!(
        "{HEAD}sets:\n  s: [10.0.0.0/9, 10.128.0.0/9, 10.1.0.0/16, 11.0.0.0/8, 12.0.0.5]\nrules:\n  - {{ name: r, action: allow, remote: [\"@s\", 10.0.0.0/8] }}\n"
    ));
    assert_eq!(
        p.rules()[0].remote().unwrap().v4_ranges(),
        &[[0x0a00_0000, 0x0bff_ffff], [0x0c00_0005, 0x0c00_0005]]
    );
}

#[test]
fn a_set_may_be_used_for_local_addresses_too() {
    let p = ok(&format!(
        "{HEAD}sets:\n  mine: [192.0.2.1, \"2001:db8::1\"]\nrules:\n  - {{ name: r, action: allow, calls: [listen], local: [\"@mine\"] }}\n"
    ));
    assert_eq!(decide(&p, Call::Listen, listen("192.0.2.1:80")).0, ALLOW);
    assert_eq!(
        decide(&p, Call::Listen, listen("[2001:db8::1]:80")).0,
        ALLOW
    );
    assert_eq!(decide(&p, Call::Listen, listen("192.0.2.2:80")).0, DENY);
}
