//! The shipped fail2ban action with a real fail2ban: a jail watching a log file bans
//! a peer after two failures, and a running server under the shipped default policy
//! refuses it at once (0 bytes); an unban serves it again. fail2ban runs with its own
//! configuration directory, socket and in-memory database: nothing of the host's.

mod common;

use common::daemon::require;
use common::live::{served, within, Live};
use common::tcp_peer::talk;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const DOT2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const BANNER: &[u8] = b"220 sockexit banner\r\n";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// fail2ban's configuration: the shipped action, a jail on `auth.log`.
fn configure(dir: &Path, policy: &Path) {
    for d in ["action.d", "filter.d", "jail.d"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(
        repo().join("contrib/fail2ban/action.d/sockexit.conf"),
        dir.join("action.d/sockexit.conf"),
    )
    .unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("fail2ban.conf"),
        format!(
            "[Definition]\nloglevel = INFO\nlogtarget = {d}/fail2ban.log\nsocket = {d}/f2b.sock\n\
             pidfile = {d}/f2b.pid\ndbfile = :memory:\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("filter.d/sockexit-test.conf"),
        "[Definition]\nfailregex = ^authentication failure from <HOST>$\ndatepattern = {NONE}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("jail.conf"),
        format!(
            "[sockexit-test]\nenabled = true\nfilter = sockexit-test\nlogpath = {d}/auth.log\n\
             backend = polling\nmaxretry = 2\nfindtime = 600\nbantime = 600\n\
             action = sockexit[policy={}, sockexit={}]\n",
            policy.display(),
            common::cli_path().display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("auth.log"), "").unwrap();
}

struct Fail2ban<'a> {
    dir: &'a Path,
    run: &'a Path,
}

impl Fail2ban<'_> {
    fn client(&self, args: &[&str]) -> std::process::Output {
        Command::new("fail2ban-client")
            .arg("-c")
            .arg(self.dir)
            .args(args)
            .env("SOCKEXIT_RUN_DIR", self.run)
            .output()
            .expect("fail2ban-client")
    }
}

impl Drop for Fail2ban<'_> {
    fn drop(&mut self) {
        let _ = self.client(&["stop"]);
    }
}

#[test]
fn a_real_fail2ban_jail_bans_a_peer_of_a_running_server_and_unbans_it() {
    if require("fail2ban-server").is_none() || require("fail2ban-client").is_none() {
        return;
    }
    let l = Live::new("f2b-real", "");
    l.apply_ok(&std::fs::read_to_string(repo().join("contrib/policy.yaml")).unwrap());
    let (mut srv, addr) = l.server("banner_server");
    assert!(served(&talk(DOT2, addr, None), BANNER));

    let dir = l.dir.path().join("fail2ban");
    configure(&dir, &l.policy);
    let f2b = Fail2ban {
        dir: &dir,
        run: &l.run,
    };
    // `start` daemonises the server with this environment (SOCKEXIT_RUN_DIR for the
    // action's commands) and returns once it answers.
    let o = Command::new("fail2ban-client")
        .arg("-c")
        .arg(&dir)
        .args(["-x", "start"])
        .env("SOCKEXIT_RUN_DIR", &l.run)
        .stdin(Stdio::null())
        .output()
        .expect("fail2ban-client start");
    assert!(o.status.success(), "fail2ban start: {o:?}");
    let log = || std::fs::read_to_string(dir.join("fail2ban.log")).unwrap_or_default();

    let mut auth = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("auth.log"))
        .unwrap();
    for _ in 0..2 {
        writeln!(auth, "authentication failure from 127.0.0.2").unwrap();
    }
    auth.flush().unwrap();
    assert!(
        within(Duration::from_secs(20), || talk(DOT2, addr, None)
            .bytes
            .is_empty())
        .is_some(),
        "127.0.0.2 still served 20 s after its second failure; fail2ban log:\n{}",
        log()
    );
    assert!(
        served(&talk(LO, addr, None), BANNER),
        "127.0.0.1 was not banned"
    );
    assert!(log().contains("Ban 127.0.0.2"), "{}", log());

    let o = f2b.client(&["set", "sockexit-test", "unbanip", "127.0.0.2"]);
    assert!(o.status.success(), "unbanip: {o:?}");
    assert!(
        within(Duration::from_secs(5), || served(
            &talk(DOT2, addr, None),
            BANNER
        ))
        .is_some(),
        "127.0.0.2 still refused after the unban; fail2ban log:\n{}",
        log()
    );
    drop(f2b);
    srv.kill();
}
