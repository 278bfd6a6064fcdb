//! Every rule field, first-match order, the default verdict, IPv4-mapped peers, port
//! range edges, the top-level `mode`/`stealth`/`audit` keys, and lazy fact gathering.
mod common;

use common::*;
use sockexit_engine::{AuditEvents, AuditLog, BlockingAccept, Call, Facts, Mode};

fn one_rule(fields: &str) -> sockexit_engine::Policy {
    ok(&format!(
        "{HEAD}rules:\n  - name: r\n    action: allow\n{fields}"
    ))
}

#[test]
fn name_and_action_are_reported_and_default_is_named_default() {
    let p = ok(&format!(
        "{HEAD}rules:\n  - name: refuse-nine\n    action: deny\n    remote: [9.9.9.9]\n  - name: let-ten\n    action: allow\n    remote: [10.0.0.0/8]\n"
    ));
    assert_eq!(
        decide(&p, Call::Connect, connect("9.9.9.9:53")),
        (DENY, "refuse-nine".into())
    );
    assert_eq!(
        decide(&p, Call::Connect, connect("10.1.1.1:53")),
        (ALLOW, "let-ten".into())
    );
    assert_eq!(
        decide(&p, Call::Connect, connect("11.1.1.1:53")),
        (DENY, "default".into())
    );
    let names: Vec<&str> = p.rules().iter().map(|r| r.name()).collect();
    assert_eq!(names, ["refuse-nine", "let-ten"]);
    assert_eq!(p.rules()[0].location().0, 4, "rule 1 starts on line 4");
    assert_eq!(p.rules()[1].location().0, 7, "rule 2 starts on line 7");
    assert_eq!(p.rule_count(), 2);
}

#[test]
fn default_verdict_applies_when_nothing_matches() {
    for (default, want) in [("allow", ALLOW), ("deny", DENY)] {
        let p = ok(&format!(
            "version: 1\ndefault: {default}\nrules:\n  - name: r\n    action: deny\n    remote: [10.0.0.1]\n"
        ));
        assert_eq!(p.default_verdict(), want);
        for call in [Call::Accept, Call::Connect] {
            assert_eq!(
                decide(&p, call, accept("10.0.0.2:4000", "10.0.0.9:21")),
                (want, "default".into())
            );
        }
        assert_eq!(
            decide(&p, Call::Listen, listen("0.0.0.0:21")),
            (want, "default".into())
        );
    }
    let empty = ok("version: 1\ndefault: allow\n");
    assert_eq!(empty.rule_count(), 0);
    assert_eq!(
        decide(&empty, Call::Connect, connect("1.2.3.4:80")),
        (ALLOW, "default".into())
    );
}

#[test]
fn first_matching_rule_wins() {
    let p = ok(&format!(
        "{HEAD}rules:
  - name: deny-host
    action: deny
    remote: [10.0.0.66]
  - name: allow-lan
    action: allow
    remote: [10.0.0.0/8]
  - name: deny-lan-again
    action: deny
    remote: [10.0.0.0/8]
"
    ));
    assert_eq!(
        decide(&p, Call::Accept, accept("10.0.0.66:5000", "10.0.0.1:21")),
        (DENY, "deny-host".into())
    );
    assert_eq!(
        decide(&p, Call::Accept, accept("10.0.0.67:5000", "10.0.0.1:21")),
        (ALLOW, "allow-lan".into())
    );
    // Same rules in the opposite order: the broad allow now decides for the host too.
    let q = ok(&format!(
        "{HEAD}rules:
  - name: allow-lan
    action: allow
    remote: [10.0.0.0/8]
  - name: deny-host
    action: deny
    remote: [10.0.0.66]
"
    ));
    assert_eq!(
        decide(&q, Call::Accept, accept("10.0.0.66:5000", "10.0.0.1:21")),
        (ALLOW, "allow-lan".into())
    );
}

#[test]
fn calls_limits_the_rule_to_the_named_calls_and_absent_means_every_call() {
    let p = one_rule("    calls: [accept, listen]\n");
    assert_eq!(
        decide(&p, Call::Accept, accept("1.2.3.4:5", "5.6.7.8:80")).0,
        ALLOW
    );
    assert_eq!(decide(&p, Call::Listen, listen("0.0.0.0:80")).0, ALLOW);
    assert_eq!(
        decide(&p, Call::Connect, connect("1.2.3.4:80")),
        (DENY, "default".into())
    );
    assert!(p.rules()[0].applies_to(Call::Accept));
    assert!(!p.rules()[0].applies_to(Call::Connect));

    let every = one_rule("");
    for call in [Call::Accept, Call::Connect, Call::Listen] {
        assert_eq!(
            decide(&every, call, accept("1.2.3.4:5", "5.6.7.8:80")),
            (ALLOW, "r".into()),
            "{call:?}"
        );
    }
}

#[test]
fn remote_matches_v4_and_v6_prefixes_and_single_addresses() {
    let p = one_rule(
        "    remote: [10.0.0.0/8, \"192.168.1.0/24\", 2001:db8::/32, 203.0.113.7, \"::1\"]\n",
    );
    let yes = [
        "10.0.0.0:1",
        "10.255.255.255:1",
        "192.168.1.0:1",
        "192.168.1.255:1",
        "[2001:db8::1]:1",
        "[2001:db8:ffff:ffff::]:1",
        "203.0.113.7:1",
        "[::1]:1",
    ];
    let no = [
        "9.255.255.255:1",
        "11.0.0.0:1",
        "192.168.0.255:1",
        "192.168.2.0:1",
        "[2001:db9::]:1",
        "[2001:db7:ffff::]:1",
        "203.0.113.6:1",
        "203.0.113.8:1",
        "[::2]:1",
    ];
    for a in yes {
        assert_eq!(decide(&p, Call::Connect, connect(a)).0, ALLOW, "{a}");
    }
    for a in no {
        assert_eq!(decide(&p, Call::Connect, connect(a)).0, DENY, "{a}");
    }
    // Host bits in a prefix are ignored, as `ip route` does.
    let q = one_rule("    remote: [10.1.2.3/16]\n");
    assert_eq!(decide(&q, Call::Connect, connect("10.1.200.1:80")).0, ALLOW);
    assert_eq!(decide(&q, Call::Connect, connect("10.2.0.1:80")).0, DENY);
}

#[test]
fn ipv4_mapped_ipv6_peers_match_ipv4_prefixes() {
    let p = one_rule("    remote: [10.0.0.0/8]\n");
    assert_eq!(
        decide(
            &p,
            Call::Accept,
            accept("[::ffff:10.1.2.3]:4000", "[::]:21")
        ),
        (ALLOW, "r".into())
    );
    assert_eq!(
        decide(
            &p,
            Call::Accept,
            accept("[::ffff:11.1.2.3]:4000", "[::]:21")
        )
        .0,
        DENY
    );
    // A mapped prefix in the policy is the same IPv4 prefix.
    let q = one_rule("    remote: [\"::ffff:10.0.0.0/104\"]\n");
    assert_eq!(decide(&q, Call::Connect, connect("10.9.9.9:1")).0, ALLOW);
    assert_eq!(
        decide(&q, Call::Connect, connect("[::ffff:10.9.9.9]:1")).0,
        ALLOW
    );
    assert_eq!(decide(&q, Call::Connect, connect("11.0.0.0:1")).0, DENY);
    // A mapped peer is an IPv4 peer for `families` too.
    let f = one_rule("    families: [ipv4]\n");
    assert_eq!(
        decide(
            &f,
            Call::Accept,
            accept("[::ffff:10.1.2.3]:4000", "[::]:21")
        )
        .0,
        ALLOW
    );
    assert_eq!(
        decide(&f, Call::Accept, accept("[2001:db8::1]:4000", "[::]:21")).0,
        DENY
    );
}

#[test]
fn remote_ports_single_and_range_edges() {
    let p = one_rule("    remote_ports: [21, \"1024-2048\", \"65000-65535\", 1]\n");
    let check = |port: u16| decide(&p, Call::Connect, connect(&format!("1.2.3.4:{port}"))).0;
    assert_eq!(check(21), ALLOW);
    assert_eq!(check(20), DENY);
    assert_eq!(check(22), DENY);
    assert_eq!(check(1023), DENY, "lo-1");
    assert_eq!(check(1024), ALLOW, "lo");
    assert_eq!(check(1500), ALLOW);
    assert_eq!(check(2048), ALLOW, "hi");
    assert_eq!(check(2049), DENY, "hi+1");
    assert_eq!(check(64999), DENY);
    assert_eq!(check(65535), ALLOW, "top port");
    assert_eq!(check(1), ALLOW, "bottom port");
    assert_eq!(check(2), DENY);
    assert_eq!(
        p.rules()[0].remote_ports().unwrap().ranges(),
        &[(1, 1), (21, 21), (1024, 2048), (65000, 65535)]
    );
}

#[test]
fn local_and_local_ports_look_at_the_sockets_own_address() {
    let p = one_rule(
        "    calls: [accept, listen]\n    local: [192.168.1.10, \"fe80::/10\"]\n    local_ports: [\"40000-40100\"]\n",
    );
    let acc = |local: &str| decide(&p, Call::Accept, accept("8.8.8.8:5000", local)).0;
    assert_eq!(acc("192.168.1.10:40000"), ALLOW, "lo");
    assert_eq!(acc("192.168.1.10:40100"), ALLOW, "hi");
    assert_eq!(acc("192.168.1.10:40101"), DENY, "hi+1");
    assert_eq!(acc("192.168.1.10:39999"), DENY, "lo-1");
    assert_eq!(acc("192.168.1.11:40000"), DENY, "other local address");
    assert_eq!(acc("[fe80::1]:40050"), ALLOW);
    assert_eq!(
        decide(&p, Call::Listen, listen("192.168.1.10:40001")).0,
        ALLOW
    );
    assert_eq!(decide(&p, Call::Listen, listen("0.0.0.0:40001")).0, DENY);
    // The peer's port is not the local port.
    assert_eq!(
        decide(&p, Call::Accept, accept("8.8.8.8:40000", "192.168.1.10:80")).0,
        DENY
    );
}

#[test]
fn users_by_name_and_id() {
    let p = one_rule("    users: [ftp, 0, \"1000\"]\n");
    assert_eq!(p.rules()[0].users(), Some(&[107, 0, 1000][..]));
    let as_uid = |uid| {
        decide(
            &p,
            Call::Connect,
            by(connect("1.1.1.1:443"), uid, 9999, "/bin/x"),
        )
        .0
    };
    assert_eq!(as_uid(107), ALLOW);
    assert_eq!(as_uid(0), ALLOW);
    assert_eq!(as_uid(1000), ALLOW);
    assert_eq!(as_uid(33), DENY);
    // Unknown uid: a rule that needs it does not match.
    assert_eq!(decide(&p, Call::Connect, connect("1.1.1.1:443")).0, DENY);
}

#[test]
fn groups_by_name_and_id() {
    let p = one_rule("    groups: [www-data, 5000]\n");
    assert_eq!(p.rules()[0].groups(), Some(&[33, 5000][..]));
    let as_gid = |gid| {
        decide(
            &p,
            Call::Accept,
            by(accept("1.1.1.1:5", "2.2.2.2:80"), 0, gid, "/bin/x"),
        )
        .0
    };
    assert_eq!(as_gid(33), ALLOW);
    assert_eq!(as_gid(5000), ALLOW);
    assert_eq!(as_gid(0), DENY, "uid 0 does not make gid 0 match");
    assert_eq!(as_gid(113), DENY);
}

#[test]
fn users_resolved_from_passwd_and_group_files() {
    let dir = TempDir::new("resolver");
    let passwd = dir.write(
        "passwd",
        "root:x:0:0:root:/root:/bin/sh\nftp:x:107:65534::/srv/ftp:/usr/sbin/nologin\n",
    );
    let group = dir.write("group", "root:x:0:\nwheel:x:10:alice\n");
    let resolver = sockexit_engine::FilesResolver { passwd, group };
    let yaml = format!(
        "{HEAD}rules:\n  - name: r\n    action: allow\n    users: [ftp]\n    groups: [wheel]\n"
    );
    let p = sockexit_engine::Policy::from_bytes_with(
        yaml.as_bytes(),
        std::path::Path::new(ORIGIN),
        &sockexit_engine::LoadOptions {
            resolver: &resolver,
            permissions: sockexit_engine::Permissions::Warn,
        },
    )
    .expect("loads");
    assert_eq!(p.rules()[0].users(), Some(&[107][..]));
    assert_eq!(p.rules()[0].groups(), Some(&[10][..]));
    let e = sockexit_engine::Policy::from_bytes_with(
        format!("{HEAD}rules:\n  - name: r\n    action: allow\n    users: [alice]\n").as_bytes(),
        std::path::Path::new(ORIGIN),
        &sockexit_engine::LoadOptions {
            resolver: &resolver,
            permissions: sockexit_engine::Permissions::Warn,
        },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{ORIGIN}:6:13: key `users`: rule `r`: unknown user `alice`")
    );
}

#[test]
fn programs_glob_on_the_executable_path() {
    let p =
        one_rule("    programs: [\"/usr/sbin/vsftpd\", \"*/nginx\", \"/opt/app-[0-9]/bin/*\"]\n");
    let run = |prog: &str| decide(&p, Call::Listen, by(listen("0.0.0.0:21"), 0, 0, prog)).0;
    assert_eq!(run("/usr/sbin/vsftpd"), ALLOW);
    assert_eq!(run("/usr/sbin/vsftpd.real"), DENY);
    assert_eq!(run("/usr/sbin/nginx"), ALLOW);
    assert_eq!(run("/usr/local/nginx/sbin/nginx"), ALLOW);
    assert_eq!(run("/usr/sbin/nginx-debug"), DENY);
    assert_eq!(run("/opt/app-3/bin/server"), ALLOW);
    assert_eq!(run("/opt/app-x/bin/server"), DENY);
    // Unknown program: no match.
    assert_eq!(decide(&p, Call::Listen, listen("0.0.0.0:21")).0, DENY);
    let globs: Vec<&str> = p.rules()[0]
        .programs()
        .unwrap()
        .iter()
        .map(|g| g.as_str())
        .collect();
    assert_eq!(
        globs,
        ["/usr/sbin/vsftpd", "*/nginx", "/opt/app-[0-9]/bin/*"]
    );
}

#[test]
fn families_look_at_the_peer_or_for_listen_the_local_address() {
    let v6 = one_rule("    families: [ipv6]\n");
    assert_eq!(v6.rules()[0].families(), Some((false, true)));
    assert_eq!(
        decide(&v6, Call::Connect, connect("[2001:db8::1]:80")).0,
        ALLOW
    );
    assert_eq!(decide(&v6, Call::Connect, connect("192.0.2.1:80")).0, DENY);
    assert_eq!(decide(&v6, Call::Listen, listen("[::]:80")).0, ALLOW);
    assert_eq!(decide(&v6, Call::Listen, listen("0.0.0.0:80")).0, DENY);
    let both = one_rule("    families: [ipv4, ipv6]\n");
    assert_eq!(both.rules()[0].families(), Some((true, true)));
    assert_eq!(
        decide(&both, Call::Connect, connect("192.0.2.1:80")).0,
        ALLOW
    );
    assert_eq!(decide(&both, Call::Connect, connect("[::1]:80")).0, ALLOW);
}

#[test]
fn fields_combine_with_and_and_list_entries_with_or() {
    let p = one_rule(
        "    calls: [accept]\n    remote: [10.0.0.0/8, 172.16.0.0/12]\n    local_ports: [21, 2121]\n    users: [ftp]\n    programs: [\"*/vsftpd\"]\n",
    );
    let ftp = |remote: &str, local: &str, uid: u32, prog: &str| {
        decide(&p, Call::Accept, by(accept(remote, local), uid, 0, prog)).0
    };
    assert_eq!(
        ftp("10.1.1.1:4000", "0.0.0.0:21", 107, "/usr/sbin/vsftpd"),
        ALLOW
    );
    assert_eq!(
        ftp("172.20.1.1:4000", "0.0.0.0:2121", 107, "/usr/sbin/vsftpd"),
        ALLOW
    );
    assert_eq!(
        ftp("8.8.8.8:4000", "0.0.0.0:21", 107, "/usr/sbin/vsftpd"),
        DENY
    );
    assert_eq!(
        ftp("10.1.1.1:4000", "0.0.0.0:22", 107, "/usr/sbin/vsftpd"),
        DENY
    );
    assert_eq!(
        ftp("10.1.1.1:4000", "0.0.0.0:21", 0, "/usr/sbin/vsftpd"),
        DENY
    );
    assert_eq!(
        ftp("10.1.1.1:4000", "0.0.0.0:21", 107, "/usr/sbin/sshd"),
        DENY
    );
}

#[test]
fn a_rule_needing_an_unknown_fact_does_not_match() {
    let p = one_rule("    local: [0.0.0.0/0]\n");
    // connect from an unbound socket: no local address.
    assert_eq!(decide(&p, Call::Connect, connect("1.2.3.4:80")).0, DENY);
    // listen has no remote.
    let q = one_rule("    remote: [0.0.0.0/0]\n");
    assert_eq!(decide(&q, Call::Listen, listen("0.0.0.0:80")).0, DENY);
    assert_eq!(decide(&q, Call::Connect, Facts::default()).0, DENY);
}

#[test]
fn mode_stealth_and_audit_are_parsed_and_exposed() {
    let plain = ok(HEAD);
    assert_eq!(plain.mode(), Mode::Enforce);
    assert!(!plain.stealth());
    assert_eq!(plain.audit().log, AuditLog::Syslog);
    assert_eq!(plain.audit().events, AuditEvents::Deny);

    let p = ok(&format!(
        "{HEAD}mode: audit\nstealth: true\naudit:\n  log: /var/log/sockexit/audit.jsonl\n  events: all\n"
    ));
    assert_eq!(p.mode(), Mode::Audit);
    assert!(p.stealth());
    assert_eq!(
        p.audit().log,
        AuditLog::File("/var/log/sockexit/audit.jsonl".into())
    );
    assert_eq!(p.audit().events, AuditEvents::All);

    // A relative log path is relative to the policy file's directory.
    let r = ok(&format!("{HEAD}audit:\n  log: logs/a.jsonl\n"));
    assert_eq!(
        r.audit().log,
        AuditLog::File("/etc/sockexit/logs/a.jsonl".into())
    );
    for (word, want) in [
        ("off", AuditLog::Off),
        ("stderr", AuditLog::Stderr),
        ("syslog", AuditLog::Syslog),
        ("journal", AuditLog::Journal),
    ] {
        let q = ok(&format!(
            "{HEAD}mode: enforce\nstealth: false\naudit:\n  log: {word}\n  events: deny\n"
        ));
        assert_eq!(q.audit().log, want);
        assert_eq!(q.mode(), Mode::Enforce);
        assert!(!q.stealth());
    }
    // mode does not change decisions: the verdict is what enforce would do.
    let a = ok("version: 1\ndefault: deny\nmode: audit\n");
    assert_eq!(decide(&a, Call::Connect, connect("1.2.3.4:80")).0, DENY);
    assert_eq!(a.path(), std::path::Path::new(ORIGIN));
}

#[test]
fn blocking_accept_is_parsed_and_defaults_to_return() {
    assert_eq!(ok(HEAD).blocking_accept(), BlockingAccept::Return);
    let w = ok(&format!("{HEAD}blocking_accept: wait\n"));
    assert_eq!(w.blocking_accept(), BlockingAccept::Wait);
    assert_eq!(w.blocking_accept().as_str(), "wait");
    let r = ok(&format!("{HEAD}blocking_accept: return\n"));
    assert_eq!(r.blocking_accept(), BlockingAccept::Return);
    assert_eq!(r.blocking_accept().as_str(), "return");
    assert_eq!(BlockingAccept::default(), BlockingAccept::Return);
    // It does not change decisions either: acting on it is the hook's job.
    assert_eq!(decide(&w, Call::Connect, connect("1.2.3.4:80")).0, DENY);
}

#[test]
fn a_policy_not_looking_at_process_facts_never_asks_for_them() {
    let p = ok(&format!(
        "{HEAD}rules:
  - name: lan
    action: allow
    remote: [10.0.0.0/8]
    remote_ports: [\"1-65535\"]
  - name: web
    action: allow
    calls: [accept, listen]
    local_ports: [80]
"
    ));
    for call in [Call::Accept, Call::Connect, Call::Listen] {
        let n = p.needs(call);
        assert!(!n.uid && !n.gid && !n.program, "{call:?}: {n:?}");
    }
    assert!(p.needs(Call::Connect).remote);
    assert!(
        !p.needs(Call::Connect).local,
        "no connect rule looks at local"
    );
    assert!(p.needs(Call::Listen).local);
    assert!(
        !p.needs(Call::Listen).remote,
        "only `web` applies to listen"
    );

    for (call, facts) in [
        (
            Call::Accept,
            by(accept("8.8.8.8:1", "1.1.1.1:80"), 0, 0, "/x"),
        ),
        (
            Call::Accept,
            by(accept("8.8.8.8:1", "1.1.1.1:81"), 0, 0, "/x"),
        ),
        (Call::Connect, by(connect("10.0.0.1:1"), 0, 0, "/x")),
        (Call::Listen, by(listen("0.0.0.0:22"), 0, 0, "/x")),
    ] {
        let mut r = Recorder::new(facts);
        p.decide(call, &mut r);
        assert!(
            !r.asked("uid") && !r.asked("gid") && !r.asked("program"),
            "{call:?} asked {:?}",
            r.asked
        );
    }
    // listen never asks for a remote when no listen rule looks at one.
    let mut r = Recorder::new(listen("0.0.0.0:22"));
    p.decide(Call::Listen, &mut r);
    assert_eq!(r.asked.iter().filter(|a| **a == "remote").count(), 0);
}

#[test]
fn process_facts_are_asked_only_after_cheaper_fields_pass() {
    let p = ok(&format!(
        "{HEAD}rules:
  - name: ftp
    action: allow
    calls: [accept]
    remote: [10.0.0.0/8]
    users: [ftp]
    groups: [ftp]
    programs: [\"*/vsftpd\"]
"
    ));
    let n = p.needs(Call::Accept);
    assert!(n.remote && n.uid && n.gid && n.program && !n.local);
    assert_eq!(p.needs(Call::Connect), sockexit_engine::Needs::default());

    // The peer is not in the LAN: the user and program are never looked up.
    let mut r = Recorder::new(by(
        accept("8.8.8.8:1", "1.1.1.1:21"),
        107,
        113,
        "/usr/sbin/vsftpd",
    ));
    assert_eq!(p.decide(Call::Accept, &mut r).verdict, DENY);
    assert_eq!(r.asked, ["remote"]);

    // Wrong user: the program is not looked up.
    let mut r = Recorder::new(by(
        accept("10.0.0.1:1", "1.1.1.1:21"),
        0,
        113,
        "/usr/sbin/vsftpd",
    ));
    assert_eq!(p.decide(Call::Accept, &mut r).verdict, DENY);
    assert!(!r.asked("program") && !r.asked("gid"), "{:?}", r.asked);

    let mut r = Recorder::new(by(
        accept("10.0.0.1:1", "1.1.1.1:21"),
        107,
        113,
        "/usr/sbin/vsftpd",
    ));
    assert_eq!(p.decide(Call::Accept, &mut r).verdict, ALLOW);
    assert!(r.asked("program") && r.asked("uid") && r.asked("gid"));

    // A connect has no rule at all: nothing is asked.
    let mut r = Recorder::new(by(connect("10.0.0.1:1"), 107, 113, "/usr/sbin/vsftpd"));
    assert_eq!(p.decide(Call::Connect, &mut r).rule, "default");
    assert!(r.asked.is_empty(), "{:?}", r.asked);
}
