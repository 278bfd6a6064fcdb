//! Items 2 and 3: short IPv6 (and IPv4) sockaddrs, and unspecified destinations.

use crate::support::*;

#[test]
fn connect_with_a_24_byte_sockaddr_in6_to_refused_v6_and_v4_mapped_is_eacces() {
    let dir = TempDir::new("bypass-sin6-24");
    let p = policy(&dir, DENY_DOT2_AND_V6LO);
    let mut bad = Vec::new();
    let mut total = 0;
    for len in ["24", "25", "26", "27", "28", "32", "128"] {
        let v6 = Watch::on(V6LO);
        let f = attack(&p, &["connect", &v6.addr.to_string(), "--len", len]);
        check_refused(
            &format!("connect [::1] with a {len}-byte sockaddr_in6"),
            &f,
            &v6,
            "no-dot2",
            &mut bad,
        );
        let v4 = Watch::on(DOT2);
        let dest = format!("[::ffff:127.0.0.2]:{}", v4.port());
        let f = attack(&p, &["connect", &dest, "--len", len]);
        check_refused(
            &format!("connect {dest} with a {len}-byte sockaddr_in6"),
            &f,
            &v4,
            "no-dot2",
            &mut bad,
        );
        total += 2;
    }
    report(
        &bad,
        total,
        "connects with 24..128-byte sockaddr_in6 to refused destinations",
    );
}

/// Lengths too short to hold an address of the family: the library cannot decode
/// them, so it must refuse them (the kernel would say EINVAL; the rule is "never
/// passed unjudged").
pub(crate) fn short_sockaddr_cases(
    policy_text: &str,
    v6_dest_ip: IpAddr,
    v4_dest_ip: IpAddr,
    tag: &str,
) {
    let dir = TempDir::new(tag);
    let p = policy(&dir, policy_text);
    let mut bad = Vec::new();
    let mut total = 0;
    let v6 = Watch::on(v6_dest_ip);
    let v4 = Watch::on(v4_dest_ip);
    for len in ["8", "16", "20", "23"] {
        let f = attack(&p, &["connect", &v6.addr.to_string(), "--len", len]);
        total += 1;
        check_short(
            &format!("AF_INET6 {} with {len} bytes", v6.addr),
            &f,
            &v6,
            &mut bad,
        );
    }
    for len in ["2", "4", "8", "15"] {
        let f = attack(&p, &["connect", &v4.addr.to_string(), "--len", len]);
        total += 1;
        check_short(
            &format!("AF_INET {} with {len} bytes", v4.addr),
            &f,
            &v4,
            &mut bad,
        );
    }
    report(
        &bad,
        total,
        "connects with IP sockaddrs too short to decode",
    );
}

pub(crate) fn check_short(label: &str, f: &Finished, w: &Watch, bad: &mut Vec<String>) {
    let mut why = Vec::new();
    if first(f) != EACCES {
        why.push(format!(
            "program printed {:?} ({}), want {EACCES:?}",
            first(f),
            how(f)
        ));
    }
    if let Some((peer, _)) = w.arrived(SETTLE) {
        why.push(format!("the listener got a connection from {peer}"));
    }
    if !why.is_empty() {
        bad.push(format!("{label}: {}", why.join("; ")));
    }
}

#[test]
fn connect_with_an_ip_sockaddr_too_short_to_decode_is_eacces_to_a_refused_destination() {
    short_sockaddr_cases(DENY_DOT2_AND_V6LO, V6LO, DOT2, "bypass-short-refused");
}

#[test]
fn connect_with_an_ip_sockaddr_too_short_to_decode_is_eacces_even_to_an_allowed_destination() {
    short_sockaddr_cases(DENY_DOT2, V6LO, LO, "bypass-short-allowed");
}

#[test]
fn connect_with_28_and_24_byte_sockaddr_in6_to_an_allowed_destination_works() {
    let dir = TempDir::new("bypass-sin6-ok");
    let p = policy(&dir, DENY_DOT2);
    let mut bad = Vec::new();
    let lens = ["28", "24", "128"];
    for len in lens {
        let w = Watch::on(V6LO);
        let f = attack(&p, &["connect", &w.addr.to_string(), "--len", len]);
        let got = w.arrived(Duration::from_secs(3));
        if first(&f) != "ok" || !matches!(&got, Some((_, b)) if b == b"hello\n") {
            bad.push(format!(
                "{len}-byte sockaddr_in6 to allowed {}: program printed {:?} ({}), listener got {got:?}",
                w.addr,
                first(&f),
                how(&f)
            ));
        }
    }
    report(&bad, lens.len(), "connects to an allowed ::1");
}

// ---------------------------------------------------------------------------------
// Item 3: unspecified destinations
// ---------------------------------------------------------------------------------

#[test]
fn connect_to_an_unspecified_address_is_judged_as_the_loopback_it_reaches() {
    let dir = TempDir::new("bypass-any");
    let p = policy(&dir, DENY_LOOPBACK);
    let mut bad = Vec::new();
    let v4 = Watch::on(LO);
    let v6 = Watch::on(V6LO);
    let cases = [
        (format!("0.0.0.0:{}", v4.port()), &v4),
        (format!("[::]:{}", v6.port()), &v6),
        (format!("[::ffff:0.0.0.0]:{}", v4.port()), &v4),
    ];
    for (dest, w) in &cases {
        let f = attack(&p, &["connect", dest]);
        check_refused(
            &format!("connect {dest} (reaches {})", w.addr),
            &f,
            w,
            "no-loopback",
            &mut bad,
        );
        // The 24-byte form of the same.
        if dest.starts_with('[') {
            let f = attack(&p, &["connect", dest, "--len", "24"]);
            check_refused(
                &format!("connect {dest} (24-byte sockaddr_in6)"),
                &f,
                w,
                "no-loopback",
                &mut bad,
            );
        }
    }
    report(
        &bad,
        5,
        "connects to 0.0.0.0 / :: / ::ffff:0.0.0.0 under a loopback deny",
    );
}

#[test]
fn connect_to_an_unspecified_address_from_a_bound_socket_is_judged_as_its_source() {
    let dir = TempDir::new("bypass-any-bound");
    let p = policy(
        &dir,
        r#"version: 1
default: allow
audit: {log: stderr, events: deny}
rules:
  - {name: lo-one, action: allow, calls: [connect], remote: [127.0.0.1/32]}
  - {name: no-dot5, action: deny, calls: [connect], remote: [127.0.0.5/32]}
"#,
    );
    let mut bad = Vec::new();
    // Bound to 127.0.0.5, 0.0.0.0 means 127.0.0.5 (the kernel routes to the source).
    let w5 = Watch::on(DOT5);
    let f = attack(
        &p,
        &[
            "connect",
            &format!("0.0.0.0:{}", w5.port()),
            "--bind",
            "127.0.0.5",
        ],
    );
    check_refused(
        "connect 0.0.0.0 from a socket bound to 127.0.0.5",
        &f,
        &w5,
        "no-dot5",
        &mut bad,
    );
    let f = attack(
        &p,
        &[
            "connect",
            &format!("[::ffff:0.0.0.0]:{}", w5.port()),
            "--bind",
            "::ffff:127.0.0.5",
        ],
    );
    check_refused(
        "connect [::ffff:0.0.0.0] from an AF_INET6 socket bound to ::ffff:127.0.0.5",
        &f,
        &w5,
        "no-dot5",
        &mut bad,
    );
    // Unbound, 0.0.0.0 means 127.0.0.1, which this policy allows.
    let w1 = Watch::on(LO);
    let f = attack(&p, &["connect", &format!("0.0.0.0:{}", w1.port())]);
    let got = w1.arrived(Duration::from_secs(3));
    if first(&f) != "ok" || !matches!(&got, Some((_, b)) if b == b"hello\n") {
        bad.push(format!(
            "unbound connect 0.0.0.0 (= allowed 127.0.0.1): program printed {:?} ({}), listener got {got:?}",
            first(&f),
            how(&f)
        ));
    }
    report(
        &bad,
        3,
        "connects to an unspecified address from bound/unbound sockets",
    );
}

pub(crate) fn explain(policy: &Path, remote: &str) -> String {
    let out = Command::new(cli_path())
        .args(["explain"])
        .arg(policy)
        .args(["--call", "connect", "--remote", remote])
        .output()
        .expect("run sockexit explain");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The verdict word is the first of the output (`deny  rule=NAME ...`); the exact
/// wording of the rest is the CLI's.
pub(crate) fn says(out: &str, verdict: &str, rule: &str) -> bool {
    out.split_whitespace().next() == Some(verdict) && out.contains(rule)
}

#[test]
fn explain_reports_the_deny_for_unspecified_destinations() {
    let dir = TempDir::new("bypass-explain-any");
    let p = policy(&dir, DENY_LOOPBACK);
    let mut bad = Vec::new();
    let remotes = ["0.0.0.0:80", "[::]:80", "[::ffff:0.0.0.0]:80"];
    for remote in remotes {
        let out = explain(&p, remote);
        if !says(&out, "deny", "no-loopback") {
            bad.push(format!("explain --call connect --remote {remote}: {out:?}"));
        }
    }
    report(
        &bad,
        remotes.len(),
        "explain answers (want `deny` and rule no-loopback)",
    );
}
