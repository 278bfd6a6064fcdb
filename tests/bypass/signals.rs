//! Item 5: IP calls from signal handlers, while the thread is inside a hook.

use crate::support::*;
use crate::tfo::TfoClient;

#[test]
fn signal_handler_connect_while_blocked_in_accept_is_judged() {
    let dir = TempDir::new("bypass-sig");
    let p = policy(&dir, DENY_DOT2_IN);
    let mut bad = Vec::new();
    let mut total = 0;
    for call in ["accept", "accept4"] {
        for restart in [false, true] {
            total += 1;
            let w = Watch::on(DOT2);
            let dest = w.addr.to_string();
            let mut args = vec!["sig-connect", call, &dest];
            if restart {
                args.push("--restart");
            }
            let label = format!(
                "SIGUSR1 handler connect({dest}) while blocked in {call}{}",
                if restart { " (SA_RESTART)" } else { "" }
            );
            let f = attack(&p, &args);
            let mut why = Vec::new();
            if first(&f) != "handler error EACCES 13" {
                why.push(format!("handler printed {:?} ({})", first(&f), how(&f)));
            }
            if let Some((peer, _)) = w.arrived(SETTLE) {
                why.push(format!("the refused listener got a connection from {peer}"));
            }
            if !audit_denied(&f.stderr, "connect", "no-dot2-out") {
                why.push("no audit deny line for rule no-dot2-out".into());
            }
            // The interrupted accept behaves as without the library: EINTR without
            // SA_RESTART, still waiting with it.
            let want = if restart {
                format!("{call} still blocked")
            } else {
                format!("{call} error EINTR 4")
            };
            if f.stdout.get(1) != Some(&want) {
                why.push(format!(
                    "after the signal: {:?}, want {want:?}",
                    f.stdout.get(1)
                ));
            }
            if !why.is_empty() {
                bad.push(format!(
                    "{label}: {}\n    stderr: {}",
                    why.join("; "),
                    tail(&f.stderr)
                ));
            }
        }
    }
    report(&bad, total, "signal-handler connects");
}

#[test]
fn signal_handler_tfo_send_while_blocked_in_accept_is_judged() {
    let Some(_tfo) = TfoClient::enable() else {
        return;
    };
    let dir = TempDir::new("bypass-sig-tfo");
    let p = policy(&dir, DENY_DOT2_IN);
    let w = Watch::on(DOT2);
    let f = attack(
        &p,
        &[
            "sig-connect",
            "accept",
            "--handler",
            "sendto",
            &w.addr.to_string(),
        ],
    );
    let got = w.arrived(SETTLE);
    assert!(
        first(&f) == "handler error EACCES 13" && got.is_none() && audit_denied(&f.stderr, "connect", "no-dot2-out"),
        "SIGUSR1 handler sendto(MSG_FASTOPEN) to refused {} while blocked in accept ({}): {:?}, listener got {got:?}\nstderr: {}",
        w.addr,
        how(&f),
        f.stdout,
        f.stderr
    );
}

#[test]
fn signal_handler_listen_while_blocked_in_accept_is_judged() {
    let dir = TempDir::new("bypass-sig-listen");
    let p = policy(&dir, DENY_DOT2_IN);
    let f = attack(
        &p,
        &[
            "sig-connect",
            "accept",
            "--handler",
            "listen",
            "127.0.0.3:0",
        ],
    );
    assert_eq!(
        first(&f),
        "handler error EACCES 13",
        "SIGUSR1 handler listen() on refused 127.0.0.3 while blocked in accept ({}): {f:?}",
        how(&f)
    );
    assert!(
        audit_denied(&f.stderr, "listen", "no-dot3-listen"),
        "no audit line: {}",
        f.stderr
    );
}

pub(crate) fn sigio_case(extra: &[&str]) {
    let dir = TempDir::new("bypass-sigio");
    let p = policy(&dir, DENY_DOT2_IN);
    let mut c = preloaded(example_path("attack_bypass"), &p);
    c.args(["sigio-server", "--max", "1"]).args(extra);
    let mut srv = Proc::start(c);
    let addr = srv.listening();
    let refused = talk(DOT2, addr, None);
    assert_refused(
        &refused,
        &format!("sigio-server {extra:?}: refused peer 127.0.0.2"),
    );
    let allowed = talk(LO, addr, None);
    assert_served(
        &allowed,
        ATTACK_BANNER,
        &format!("sigio-server {extra:?}: allowed peer 127.0.0.1"),
    );
    let f = srv.wait();
    assert!(f.status.success(), "sigio-server {extra:?}: {f:?}");
    let want = format!("accepted {}", allowed.local.expect("peer address"));
    assert_eq!(
        f.stdout,
        [want, "done".to_string()],
        "sigio-server {extra:?} was handed: {f:?}"
    );
    assert!(
        audit_denied(&f.stderr, "accept", "no-dot2-in"),
        "no audit line: {}",
        f.stderr
    );
}

#[test]
fn sigio_server_never_sees_a_refused_peer_while_main_is_blocked_in_accept() {
    sigio_case(&["--main", "accept"]);
}

#[test]
fn sigio_server_never_sees_a_refused_peer_while_main_is_blocked_in_accept_sa_restart() {
    sigio_case(&["--main", "accept", "--restart"]);
}

#[test]
fn sigio_server_never_sees_a_refused_peer_while_main_sleeps() {
    sigio_case(&["--main", "sleep"]);
}
