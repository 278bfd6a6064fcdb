//! `sockexit explain` judges a call as the kernel carries it out, as the library does:
//! unspecified connect destinations, NAT64 addresses, dual-stack listeners.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use common::TempDir;
use support::{run, sockexit, Out};

const POLICY: &str = r#"version: 1
default: allow
rules:
  - { name: no-loopback, action: deny, calls: [connect], remote: [127.0.0.0/8, "::1/128"] }
  - { name: no-v4-any-listen, action: deny, calls: [listen], local: [0.0.0.0/32] }
"#;

fn explain(args: &[&str]) -> Out {
    let d = TempDir::new("explain-forms");
    let p = d.write("p.yaml", POLICY);
    let mut c = sockexit(["explain".as_ref(), p.as_os_str()]);
    c.args(args);
    let o = run(&mut c);
    assert_eq!(o.code, Some(0), "{o:?}");
    o
}

fn connect(remote: &str, extra: &[&str]) -> Out {
    let mut a = vec!["--call", "connect", "--remote", remote];
    a.extend_from_slice(extra);
    explain(&a)
}

#[test]
fn unspecified_destinations_are_judged_as_the_loopback_they_reach() {
    for (given, judged) in [
        ("0.0.0.0:80", "127.0.0.1:80"),
        ("[::]:80", "[::1]:80"),
        ("[::ffff:0.0.0.0]:80", "127.0.0.1:80"),
    ] {
        let o = connect(given, &[]);
        let first = o.stdout.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("deny  rule=no-loopback"),
            "{given}: {o:?}"
        );
        assert!(
            o.stdout.contains(&format!("note: judged as {judged}")),
            "{given}: {o:?}"
        );
    }
}

#[test]
fn unspecified_destination_of_a_bound_socket_is_its_own_address() {
    let o = connect("0.0.0.0:80", &["--local", "10.1.2.3:0"]);
    assert!(o.stdout.starts_with("allow rule=default"), "{o:?}");
    assert!(o.stdout.contains("note: judged as 10.1.2.3:80"), "{o:?}");
    let o = connect("0.0.0.0:80", &["--local", "127.0.0.5:0"]);
    assert!(o.stdout.starts_with("deny  rule=no-loopback"), "{o:?}");
    assert!(o.stdout.contains("note: judged as 127.0.0.5:80"), "{o:?}");
}

#[test]
fn nat64_destination_is_judged_as_its_ipv4_host_too() {
    let o = connect("[64:ff9b::7f00:2]:80", &[]);
    assert!(o.stdout.starts_with("deny  rule=no-loopback"), "{o:?}");
    assert!(o.stdout.contains("judged as 127.0.0.2:80"), "{o:?}");
    assert!(o.stdout.contains("NAT64"), "{o:?}");
    // Outside the well-known prefix, and IPv4-compatible addresses: plain IPv6.
    for plain in ["[64:ff9b:1::7f00:2]:80", "[::127.0.0.2]:80"] {
        let o = connect(plain, &[]);
        assert!(o.stdout.starts_with("allow rule=default"), "{plain}: {o:?}");
        assert!(!o.stdout.contains("judged as"), "{plain}: {o:?}");
    }
}

#[test]
fn dual_stack_listener_is_judged_as_both_families() {
    let o = explain(&["--call", "listen", "--local", "[::]:8080"]);
    assert!(o.stdout.starts_with("deny  rule=no-v4-any-listen"), "{o:?}");
    assert!(o.stdout.contains("dual-stack"), "{o:?}");
    let o = explain(&["--call", "listen", "--local", "[::]:8080", "--v6-only"]);
    assert!(o.stdout.starts_with("allow rule=default"), "{o:?}");
    let o = explain(&["--call", "listen", "--local", "[::1]:8080"]);
    assert!(o.stdout.starts_with("allow rule=default"), "{o:?}");
}

#[test]
fn json_names_the_judged_form() {
    let o = connect("0.0.0.0:80", &["--json"]);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).expect("one JSON object");
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["rule"], "no-loopback");
    assert_eq!(v["remote"], "0.0.0.0:80");
    assert_eq!(v["judged"]["remote"], "127.0.0.1:80");
    let o = connect("127.0.0.9:80", &["--json"]);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).expect("one JSON object");
    assert!(v.get("judged").is_none(), "{v}");
}
