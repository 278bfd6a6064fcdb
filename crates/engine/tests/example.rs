//! The shipped `policy.example.yaml` loads cleanly (no error, no lint warning) and
//! decides the cases its comments describe.
mod common;

use common::*;
use sockexit_engine::{AuditEvents, AuditLog, Call, Mode, Policy};
use std::path::PathBuf;

fn example() -> Policy {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policy.example.yaml");
    Policy::load(&path).unwrap_or_else(|e| panic!("policy.example.yaml must load: {e}"))
}

#[test]
fn loads_cleanly_with_its_top_level_settings() {
    let p = example();
    let w: Vec<String> = p.warnings().iter().map(|w| w.to_string()).collect();
    assert!(w.is_empty(), "lint findings: {w:?}");
    assert_eq!(p.default_verdict(), DENY);
    assert_eq!(p.mode(), Mode::Enforce);
    assert!(!p.stealth());
    assert_eq!(p.audit().log, AuditLog::Stderr);
    assert_eq!(p.audit().events, AuditEvents::Deny);
    let names: Vec<&str> = p.rules().iter().map(|r| r.name()).collect();
    assert_eq!(
        names,
        [
            "services-listen",
            "drop-blocklisted",
            "ftp-from-lan",
            "web-from-anywhere",
            "dns-out",
            "https-out"
        ]
    );
}

#[test]
fn listen_only_on_the_service_ports() {
    let p = example();
    for port in [21, 2121, 40000, 40100, 80, 443] {
        assert_eq!(
            decide(&p, Call::Listen, listen(&format!("0.0.0.0:{port}"))),
            (ALLOW, "services-listen".into()),
            "port {port}"
        );
    }
    for port in [22, 8080, 39999, 40101] {
        assert_eq!(
            decide(&p, Call::Listen, listen(&format!("[::]:{port}"))),
            (DENY, "default".into()),
            "port {port}"
        );
    }
}

#[test]
fn ftp_from_the_lan_into_the_ftp_server_only() {
    let p = example();
    let ftp = |peer: &str, local: &str, prog: &str| {
        decide(&p, Call::Accept, by(accept(peer, local), 107, 113, prog))
    };
    for peer in [
        "10.1.2.3:50000",
        "192.168.1.20:50000",
        "172.16.0.9:50000",
        "127.0.0.1:50000",
        "[::ffff:192.168.1.20]:50000",
        "[fd00::5]:50000",
    ] {
        assert_eq!(
            ftp(peer, "10.0.0.1:21", "/usr/sbin/vsftpd"),
            (ALLOW, "ftp-from-lan".into()),
            "{peer}"
        );
    }
    assert_eq!(
        ftp("10.1.2.3:50000", "10.0.0.1:40050", "/usr/sbin/vsftpd"),
        (ALLOW, "ftp-from-lan".into()),
        "passive data port"
    );
    assert_eq!(
        ftp(
            "127.0.0.1:50000",
            "127.0.0.1:2121",
            "/home/u/target/debug/examples/banner_server"
        ),
        (ALLOW, "ftp-from-lan".into()),
        "the README demo"
    );
    assert_eq!(
        ftp("8.8.8.8:50000", "10.0.0.1:21", "/usr/sbin/vsftpd"),
        (DENY, "default".into()),
        "FTP from the internet"
    );
    assert_eq!(
        ftp("10.1.2.3:50000", "10.0.0.1:21", "/usr/bin/python3"),
        (DENY, "default".into()),
        "another program on port 21"
    );
}

#[test]
fn the_blocklist_wins_over_every_later_rule() {
    let p = example();
    for peer in [
        "127.0.0.2:40000",
        "203.0.113.7:40000",
        "[2001:db8:bad::1]:40000",
        "[::ffff:198.51.100.1]:1",
    ] {
        for local in ["127.0.0.1:2121", "0.0.0.0:80"] {
            assert_eq!(
                decide(
                    &p,
                    Call::Accept,
                    by(accept(peer, local), 0, 0, "/usr/sbin/vsftpd")
                ),
                (DENY, "drop-blocklisted".into()),
                "{peer} -> {local}"
            );
        }
    }
    // Its neighbours are not listed.
    assert_eq!(
        decide(
            &p,
            Call::Accept,
            by(
                accept("127.0.0.3:40000", "127.0.0.1:2121"),
                0,
                0,
                "/usr/sbin/vsftpd"
            )
        ),
        (ALLOW, "ftp-from-lan".into())
    );
}

#[test]
fn the_web_server_is_public() {
    let p = example();
    for peer in ["8.8.8.8:1234", "[2a00::1]:1234"] {
        assert_eq!(
            decide(&p, Call::Accept, accept(peer, "0.0.0.0:443")),
            (ALLOW, "web-from-anywhere".into())
        );
    }
}

#[test]
fn outbound_only_dns_and_https() {
    let p = example();
    let out = |dst: &str| decide(&p, Call::Connect, connect(dst));
    assert_eq!(out("9.9.9.9:53"), (ALLOW, "dns-out".into()));
    assert_eq!(out("[2620:fe::fe]:53"), (ALLOW, "dns-out".into()));
    assert_eq!(out("93.184.216.34:443"), (ALLOW, "https-out".into()));
    assert_eq!(out("[2606:2800::1]:443"), (ALLOW, "https-out".into()));
    assert_eq!(out("93.184.216.34:80"), (DENY, "default".into()));
    assert_eq!(out("10.0.0.5:25"), (DENY, "default".into()));
}
