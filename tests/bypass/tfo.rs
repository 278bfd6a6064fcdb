//! Item 1: TCP Fast Open — data in the SYN, by every send form, judged as a connect.

use crate::support::*;

pub(crate) static TFO_LOCK: Mutex<()> = Mutex::new(());
pub(crate) const TFO_SYSCTL: &str = "/proc/sys/net/ipv4/tcp_fastopen";

/// Client-side TFO (bit 1 of net.ipv4.tcp_fastopen) switched on for as long as this
/// lives, and restored after; `None` (after a loud skip) when it cannot be.
pub(crate) struct TfoClient {
    restore: Option<String>,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl TfoClient {
    pub(crate) fn enable() -> Option<TfoClient> {
        TfoClient::enable_bits(1)
    }

    /// `bits` of net.ipv4.tcp_fastopen on (1 client, 2 server for listeners that ask
    /// with the TCP_FASTOPEN option): other listeners on the host are unaffected.
    pub(crate) fn enable_bits(bits: u32) -> Option<TfoClient> {
        let lock = TFO_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let now = match std::fs::read_to_string(TFO_SYSCTL) {
            Ok(s) => s.trim().to_string(),
            Err(e) => {
                skip(&format!(
                    "TCP Fast Open tests: cannot read {TFO_SYSCTL}: {e}"
                ));
                return None;
            }
        };
        let v: u32 = now.parse().unwrap_or(0);
        if v & bits == bits {
            return Some(TfoClient {
                restore: None,
                _lock: lock,
            });
        }
        if let Err(e) = std::fs::write(TFO_SYSCTL, format!("{}", v | bits)) {
            skip(&format!(
                "TCP Fast Open tests: {TFO_SYSCTL}={now} lacks bits {bits} and cannot be changed: {e}"
            ));
            return None;
        }
        Some(TfoClient {
            restore: Some(now),
            _lock: lock,
        })
    }
}

impl Drop for TfoClient {
    fn drop(&mut self) {
        if let Some(v) = &self.restore {
            let _ = std::fs::write(TFO_SYSCTL, v);
        }
    }
}

pub(crate) fn tfo_refused_cases(kinds: &[&str], what: &str) {
    let Some(_tfo) = TfoClient::enable() else {
        return;
    };
    let dir = TempDir::new("bypass-tfo");
    let p = policy(&dir, DENY_DOT2_AND_V6LO);
    let mut bad = Vec::new();
    let mut total = 0;
    for kind in kinds {
        let w = Watch::on(DOT2);
        let dest = w.addr.to_string();
        let f = attack(&p, &["tfo", kind, &dest]);
        if first(&f) == "nosym" {
            skip(&format!("{kind}: no such symbol in this libc"));
            continue;
        }
        total += 1;
        check_refused(
            &format!("{kind}(MSG_FASTOPEN) to {dest}"),
            &f,
            &w,
            "no-dot2",
            &mut bad,
        );
    }
    report(&bad, total, what);
}

#[test]
fn tfo_sendto_sendmsg_sendmmsg_to_a_refused_destination_are_eacces_and_send_nothing() {
    tfo_refused_cases(
        &["sendto", "sendmsg", "sendmmsg", "sendmmsg2"],
        "MSG_FASTOPEN sends to a refused 127.0.0.2",
    );
}

#[test]
fn tfo_sends_through_dlsym_and_glibc_private_alias_are_judged() {
    tfo_refused_cases(
        &["dl-sendto", "dl-sendmsg", "dl-sendmmsg", "__sendmmsg"],
        "MSG_FASTOPEN sends via dlsym(libc) / __sendmmsg",
    );
}

#[test]
fn tfo_to_refused_ipv6_v4_mapped_and_short_sockaddr_destinations() {
    let Some(_tfo) = TfoClient::enable() else {
        return;
    };
    let dir = TempDir::new("bypass-tfo6");
    let p = policy(&dir, DENY_DOT2_AND_V6LO);
    let mut bad = Vec::new();
    let v6 = Watch::on(V6LO);
    let v4 = Watch::on(DOT2);
    let cases: Vec<(String, Vec<String>, &Watch)> = vec![
        (
            "sendto [::1] (28 bytes)".into(),
            vec!["tfo".into(), "sendto".into(), v6.addr.to_string()],
            &v6,
        ),
        (
            "sendto [::1] (24-byte sockaddr_in6)".into(),
            vec![
                "tfo".into(),
                "sendto".into(),
                v6.addr.to_string(),
                "--len".into(),
                "24".into(),
            ],
            &v6,
        ),
        (
            "sendmsg [::1] (24-byte sockaddr_in6)".into(),
            vec![
                "tfo".into(),
                "sendmsg".into(),
                v6.addr.to_string(),
                "--len".into(),
                "24".into(),
            ],
            &v6,
        ),
        (
            "sendto [::ffff:127.0.0.2] on an AF_INET6 socket".into(),
            vec![
                "tfo".into(),
                "sendto".into(),
                format!("[::ffff:127.0.0.2]:{}", v4.port()),
            ],
            &v4,
        ),
        (
            "sendmmsg [::ffff:127.0.0.2] (24-byte sockaddr_in6)".into(),
            vec![
                "tfo".into(),
                "sendmmsg".into(),
                format!("[::ffff:127.0.0.2]:{}", v4.port()),
                "--len".into(),
                "24".into(),
            ],
            &v4,
        ),
    ];
    let total = cases.len();
    for (label, args, w) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let f = attack(&p, &args);
        check_refused(label, &f, w, "no-dot2", &mut bad);
    }
    report(
        &bad,
        total,
        "MSG_FASTOPEN sends to refused IPv6 / v4-mapped destinations",
    );
}

#[test]
fn tfo_on_mptcp_sockets_is_judged_too() {
    let Some(_tfo) = TfoClient::enable() else {
        return;
    };
    if !std::fs::read_to_string("/proc/sys/net/mptcp/enabled").is_ok_and(|v| v.trim() == "1") {
        skip("MPTCP is not enabled (net.mptcp.enabled): TFO on MPTCP sockets not tested");
        return;
    }
    let dir = TempDir::new("bypass-tfo-mptcp");
    let p = policy(&dir, DENY_DOT2_AND_V6LO);
    let mut bad = Vec::new();
    let kinds = ["sendto", "sendmsg", "sendmmsg"];
    for kind in kinds {
        let w = Watch::on(DOT2);
        let dest = w.addr.to_string();
        let f = attack(&p, &["tfo", kind, &dest, "--mptcp"]);
        check_refused(
            &format!("{kind}(MSG_FASTOPEN) on an MPTCP socket to {dest}"),
            &f,
            &w,
            "no-dot2",
            &mut bad,
        );
    }
    report(
        &bad,
        kinds.len(),
        "MSG_FASTOPEN sends on IPPROTO_MPTCP sockets",
    );
}

#[test]
fn tfo_to_an_allowed_destination_delivers_the_data() {
    let Some(_tfo) = TfoClient::enable() else {
        return;
    };
    let dir = TempDir::new("bypass-tfo-ok");
    let p = policy(&dir, DENY_DOT2_AND_V6LO);
    let mut bad = Vec::new();
    let kinds = ["sendto", "sendmsg", "sendmmsg"];
    for kind in kinds {
        let w = Watch::on(LO);
        let f = attack(&p, &["tfo", kind, &w.addr.to_string()]);
        let got = w.arrived(Duration::from_secs(3));
        if first(&f) != "ok sent 8" || !matches!(&got, Some((_, b)) if b == b"tfo-data") {
            bad.push(format!(
                "{kind} to allowed {}: program printed {:?} ({}), listener got {:?}\n    stderr: {}",
                w.addr,
                first(&f),
                how(&f),
                got.map(|(p, b)| (p, b.escape_ascii().to_string())),
                tail(&f.stderr)
            ));
        }
    }
    report(
        &bad,
        kinds.len(),
        "MSG_FASTOPEN sends to an allowed 127.0.0.1",
    );
}

/// A listener that accepts data in the SYN (server-side TFO on this socket).
pub(crate) fn tfo_watch(ip: IpAddr) -> Watch {
    use std::os::fd::AsRawFd;
    let w = Watch::on(ip);
    let qlen: libc::c_int = 16;
    // SAFETY: setsockopt on our own listener with a live c_int.
    let r = unsafe {
        libc::setsockopt(
            w.l.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_FASTOPEN,
            (&qlen as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "TCP_FASTOPEN on the test listener: {}",
        std::io::Error::last_os_error()
    );
    w
}

#[test]
fn tfo_with_a_cached_cookie_data_in_the_syn_is_still_refused() {
    let Some(_tfo) = TfoClient::enable_bits(3) else {
        return;
    };
    let dir = TempDir::new("bypass-tfo-cookie");
    let p = policy(&dir, DENY_DOT2_AND_V6LO);
    let w = tfo_watch(DOT2);
    let dest = w.addr.to_string();
    // Without the library: the first send asks for a cookie, the next ones carry
    // their data in the SYN (the kernel caches the cookie per destination).
    for i in 0..2 {
        let f = attack_unpreloaded(&["tfo", "sendto", &dest]);
        let got = w.arrived(Duration::from_secs(3));
        assert!(
            first(&f) == "ok sent 8" && matches!(&got, Some((_, b)) if b == b"tfo-data"),
            "unpreloaded TFO warm-up #{i} to {dest}: {f:?}, listener got {got:?}"
        );
    }
    let metrics = Command::new("ip")
        .args(["tcp_metrics", "show", "127.0.0.2"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !metrics.contains("fo_cookie") {
        eprintln!("note: no TFO cookie cached for 127.0.0.2 (ip tcp_metrics: {metrics:?}); the sends below may be plain SYNs");
    }
    let mut bad = Vec::new();
    let kinds = ["sendto", "sendmsg", "sendmmsg", "dl-sendto"];
    for kind in kinds {
        let f = attack(&p, &["tfo", kind, &dest]);
        check_refused(
            &format!("{kind}(MSG_FASTOPEN) with a cached cookie to {dest}"),
            &f,
            &w,
            "no-dot2",
            &mut bad,
        );
    }
    // Allowed, with a cookie: still delivered.
    let ok = tfo_watch(LO);
    for i in 0..3 {
        let f = attack(&p, &["tfo", "sendto", &ok.addr.to_string()]);
        let got = ok.arrived(Duration::from_secs(3));
        if first(&f) != "ok sent 8" || !matches!(&got, Some((_, b)) if b == b"tfo-data") {
            bad.push(format!(
                "allowed TFO #{i} to {}: {:?} ({}), listener got {got:?}",
                ok.addr,
                first(&f),
                how(&f)
            ));
        }
    }
    report(&bad, kinds.len() + 3, "TFO sends with a cached cookie");
}

#[test]
fn tcp_fastopen_connect_goes_through_the_connect_hook() {
    let Some(_tfo) = TfoClient::enable() else {
        return;
    };
    let dir = TempDir::new("bypass-tfoc");
    let p = policy(&dir, DENY_DOT2_AND_V6LO);

    let w = Watch::on(DOT2);
    let f = attack(&p, &["tfo-connect", &w.addr.to_string()]);
    assert_eq!(
        first(&f),
        "connect error EACCES 13",
        "TCP_FASTOPEN_CONNECT + connect to refused {}: {f:?}",
        w.addr
    );
    assert!(
        w.arrived(SETTLE).is_none(),
        "the refused listener got a connection after TCP_FASTOPEN_CONNECT: {f:?}"
    );
    assert!(
        audit_denied(&f.stderr, "connect", "no-dot2"),
        "no audit deny line: {}",
        f.stderr
    );

    // Allowed: connect returns at once, the first write carries the data.
    let w = Watch::on(LO);
    let f = attack(&p, &["tfo-connect", &w.addr.to_string()]);
    assert_eq!(
        f.stdout,
        ["connect ok", "write ok"],
        "TCP_FASTOPEN_CONNECT to allowed {}: {f:?}",
        w.addr
    );
    let got = w.arrived(Duration::from_secs(3));
    assert!(
        matches!(&got, Some((_, b)) if b == b"tfo-data"),
        "allowed TCP_FASTOPEN_CONNECT: listener got {got:?}"
    );
}
