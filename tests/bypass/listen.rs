//! Item 11: listen forms — dual-stack, and the port the kernel picks.

use crate::support::*;

pub(crate) fn listen_cases(policy_text: &str, tag: &str, cases: &[(&[&str], bool, &str)]) {
    let dir = TempDir::new(tag);
    let p = policy(&dir, policy_text);
    let mut bad = Vec::new();
    for (args, allowed, rule) in cases {
        let mut a = vec!["listen"];
        a.extend_from_slice(args);
        let f = attack(&p, &a);
        let ok = if *allowed {
            first(&f).starts_with("ok ")
        } else {
            first(&f) == EACCES && audit_denied(&f.stderr, "listen", rule)
        };
        if !ok {
            bad.push(format!(
                "listen {args:?}: printed {:?} ({}), want {}; stderr: {}",
                first(&f),
                how(&f),
                if *allowed {
                    "ok".to_string()
                } else {
                    format!("{EACCES} + audit rule={rule}")
                },
                tail(&f.stderr)
            ));
        }
    }
    report(&bad, cases.len(), "listens");
}

#[test]
fn dual_stack_listener_is_judged_as_ipv4_any_too() {
    let dual_by_default = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")
        .map(|s| s.trim() == "0")
        .unwrap_or(true);
    let deny = r#"version: 1
default: deny
audit: {log: stderr, events: deny}
rules:
  - {name: no-any-v4, action: deny, calls: [listen], local: [0.0.0.0/32]}
  - {name: other-listens, action: allow, calls: [listen]}
"#;
    let r = "no-any-v4";
    listen_cases(
        deny,
        "bypass-listen-dual",
        &[
            (&["[::]:0", "--v6only", "0"], false, r),
            (&["[::]:0"], !dual_by_default, r),
            (&["unbound6", "--v6only", "0"], false, r),
            (&["[::ffff:0.0.0.0]:0"], false, r),
            (&["[::]:0", "--v6only", "1"], true, r),
            (&["unbound6", "--v6only", "1"], true, r),
            (&["0.0.0.0:0"], false, r),
            (&["unbound4"], false, r),
            (&["127.0.0.1:0"], true, r),
            (&["[::1]:0"], true, r),
        ],
    );
}

/// A free port in `range` (below 1024) on 127.0.0.1 (we run as root in CI), or None.
/// Each test takes its own range: tests run in parallel.
pub(crate) fn free_low_port(range: std::ops::Range<u16>) -> Option<u16> {
    range.rev().find(|p| TcpListener::bind((LO, *p)).is_ok())
}

#[test]
fn unbound_listen_is_judged_by_the_port_the_kernel_autobinds_deny() {
    let deny = r#"version: 1
default: deny
audit: {log: stderr, events: deny}
rules:
  - {name: no-high-ports, action: deny, calls: [listen], local_ports: ["1024-65535"]}
  - {name: other-listens, action: allow, calls: [listen]}
"#;
    let low = free_low_port(700..850).map(|p| format!("127.0.0.1:{p}"));
    let r = "no-high-ports";
    let mut cases: Vec<(&[&str], bool, &str)> = vec![
        (&["unbound4"], false, r),
        (&["unbound6"], false, r),
        (&["unbound6", "--v6only", "1"], false, r),
        (&["127.0.0.1:0"], false, r),
    ];
    let low_args;
    if let Some(l) = &low {
        low_args = [l.as_str()];
        cases.push((&low_args, true, r));
    } else {
        eprintln!("SKIPPED (this case only): no free port below 1024 (not root?) to show other listens stay allowed");
    }
    listen_cases(deny, "bypass-listen-autobind-deny", &cases);
}

#[test]
fn unbound_listen_is_judged_by_the_port_the_kernel_autobinds_allow() {
    let allow = r#"version: 1
default: deny
audit: {log: stderr, events: deny}
rules:
  - {name: high-ports, action: allow, calls: [listen], local_ports: ["1024-65535"]}
"#;
    let r = "default";
    let mut cases: Vec<(&[&str], bool, &str)> = vec![
        (&["unbound4"], true, r),
        (&["unbound6"], true, r),
        (&["unbound6", "--v6only", "1"], true, r),
        (&["127.0.0.1:0"], true, r),
    ];
    let low = free_low_port(850..1000).map(|p| format!("127.0.0.1:{p}"));
    let low_args;
    if let Some(l) = &low {
        low_args = [l.as_str()];
        cases.push((&low_args, false, r));
    }
    listen_cases(allow, "bypass-listen-autobind-allow", &cases);
}
