//! Item 12: NAT64 and IPv4-compatible destinations.

use crate::sockaddr::{explain, says};
use crate::support::*;

/// Whether this process may bind a socket to `lo` (CAP_NET_RAW), which keeps the
/// non-local destinations below from leaving the host.
pub(crate) fn can_bind_to_lo() -> bool {
    // SAFETY: a fresh socket of ours, an option value of the given length, closed after.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0);
        let dev = b"lo";
        let ok = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            dev.as_ptr().cast(),
            dev.len() as libc::socklen_t,
        ) == 0;
        libc::close(fd);
        ok
    }
}

/// connect DEST on a socket bound to `lo`, non-blocking with a bounded wait.
pub(crate) fn connect_on_lo(p: &Path, dest: &str) -> Finished {
    attack(
        p,
        &["connect", dest, "--device", "lo", "--nonblock-ms", "1500"],
    )
}

#[test]
fn nat64_destination_is_judged_as_itself_and_as_the_embedded_ipv4() {
    if !can_bind_to_lo() {
        skip("cannot SO_BINDTODEVICE lo (needs CAP_NET_RAW): NAT64 destinations not tested");
        return;
    }
    let mut bad = Vec::new();
    let cases = [
        // (policy, destination, refused?, rule)
        (DENY_LOOPBACK, "[64:ff9b::7f00:2]:9", true, "no-loopback"),
        (DENY_LOOPBACK, "[64:ff9b::127.0.0.1]:9", true, "no-loopback"),
        (
            "version: 1\ndefault: allow\naudit: {log: stderr, events: deny}\nrules:\n  - {name: lo-ok, action: allow, calls: [connect], remote: [127.0.0.0/8]}\n  - {name: no-nat64, action: deny, calls: [connect], remote: [\"64:ff9b::/96\"]}\n",
            "[64:ff9b::7f00:2]:9",
            true,
            "no-nat64",
        ),
        (
            "version: 1\ndefault: allow\naudit: {log: stderr, events: deny}\nrules:\n  - {name: nat64-ok, action: allow, calls: [connect], remote: [\"64:ff9b::/96\"]}\n  - {name: no-loopback, action: deny, calls: [connect], remote: [127.0.0.0/8]}\n",
            "[64:ff9b::7f00:2]:9",
            true,
            "no-loopback",
        ),
        (DENY_LOOPBACK, "[64:ff9b::a00:1]:9", false, ""),
        (DENY_LOOPBACK, "[64:ff9b::7f00:2]:9 --len 24", true, "no-loopback"),
    ];
    for (i, (text, dest, refused, rule)) in cases.iter().enumerate() {
        let dir = TempDir::new(&format!("bypass-nat64-{i}"));
        let p = policy(&dir, text);
        let mut parts = dest.split(' ');
        let d = parts.next().unwrap();
        let mut args = vec!["connect", d, "--device", "lo", "--nonblock-ms", "1500"];
        args.extend(parts);
        let f = attack(&p, &args);
        let ok = if *refused {
            first(&f) == EACCES && audit_denied(&f.stderr, "connect", rule)
        } else {
            first(&f).starts_with("error ") && first(&f) != EACCES
        };
        if !ok {
            bad.push(format!(
                "connect {dest} (policy #{i}): printed {:?} ({}), want {}",
                first(&f),
                how(&f),
                if *refused {
                    format!("{EACCES} + audit rule={rule}")
                } else {
                    "the kernel's own error (ENETUNREACH...)".into()
                }
            ));
        }
    }
    report(&bad, cases.len(), "NAT64 destinations");
}

#[test]
fn ipv4_compatible_destination_is_judged_as_the_plain_ipv6_address_it_is() {
    if !can_bind_to_lo() {
        skip("cannot SO_BINDTODEVICE lo (needs CAP_NET_RAW): IPv4-compatible destinations not tested");
        return;
    }
    let mut bad = Vec::new();
    // A loopback deny does not apply: the kernel does not translate ::a.b.c.d.
    let dir = TempDir::new("bypass-v4compat");
    let p = policy(&dir, DENY_LOOPBACK);
    for dest in ["[::127.0.0.2]:9", "[::7f00:1]:9"] {
        let f = connect_on_lo(&p, dest);
        if !(first(&f).starts_with("error ") && first(&f) != EACCES) {
            bad.push(format!("connect {dest} under a 127.0.0.0/8 deny: printed {:?} ({}), want the kernel's own error", first(&f), how(&f)));
        }
    }
    // A rule on the IPv6 address itself does.
    let dir = TempDir::new("bypass-v4compat-6");
    let p = policy(
        &dir,
        "version: 1\ndefault: allow\naudit: {log: stderr, events: deny}\nrules:\n  - {name: no-compat, action: deny, calls: [connect], remote: [\"::7f00:2/128\"]}\n",
    );
    let f = connect_on_lo(&p, "[::127.0.0.2]:9");
    if !(first(&f) == EACCES && audit_denied(&f.stderr, "connect", "no-compat")) {
        bad.push(format!(
            "connect [::127.0.0.2] under a ::7f00:2/128 deny: printed {:?} ({})",
            first(&f),
            how(&f)
        ));
    }
    report(&bad, 3, "IPv4-compatible destinations");
}

#[test]
fn explain_shows_how_nat64_and_ipv4_compatible_destinations_are_judged() {
    let dir = TempDir::new("bypass-explain-nat64");
    let p = policy(&dir, DENY_LOOPBACK);
    let mut bad = Vec::new();
    let out = explain(&p, "[64:ff9b::7f00:2]:80");
    if !says(&out, "deny", "no-loopback") {
        bad.push(format!(
            "explain --remote [64:ff9b::7f00:2]:80 (want deny by no-loopback): {out:?}"
        ));
    }
    let out = explain(&p, "[::127.0.0.2]:80");
    if !says(&out, "allow", "default") {
        bad.push(format!(
            "explain --remote [::127.0.0.2]:80 (want allow by default): {out:?}"
        ));
    }
    report(&bad, 2, "explain answers");
}
