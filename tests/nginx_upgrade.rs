//! A real nginx binary upgrade under the preload (issue 15, part 1).
//!
//! On `SIGUSR2` the nginx master re-executes its own binary with an environment it
//! rebuilds, keeping only `TZ` (plus its `NGINX` variable that hands the listening
//! sockets over), unless nginx.conf has `env` directives — this test has none. The
//! new master and its workers must still run under the library and the *same* policy:
//! after the old master is told `WINCH` (stop its workers) and `QUIT`, so that only the
//! new master's workers accept, a refused peer (127.0.0.2) still gets 0 bytes, an
//! allowed one still gets the page, the new master and its worker have the library
//! mapped, and the refusal is audited by the new worker under the policy's own rule
//! (not a fail-closed refusal). Their `/proc/PID/environ` cannot be checked: nginx
//! writes its process title (`nginx: master process ...`) over the memory of its
//! environment, and the kernel reads `environ` from there.
//!
//! This holds only once the library's exec-family hooks put the library and the policy
//! back into an environment that lacks them. Without them the refused peer gets
//! `200 OK` after the upgrade.

mod common;

use common::daemon::{free_port, require};
use common::peer::{self, talk_for, Reply, DOT2, LO};
use common::{preloaded, TempDir};
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::{Duration, Instant};

const POLICY: &str = r#"version: 1
default: deny
rules:
  - { name: daemons-may-listen, action: allow, calls: [listen] }
  - { name: refuse-127-0-0-2,   action: deny,  calls: [accept],  remote: [127.0.0.2/32] }
  - { name: loopback-clients,   action: allow, calls: [accept],  remote: [127.0.0.0/8, "::1"] }
  - { name: loopback-connect,   action: allow, calls: [connect], remote: [127.0.0.0/8, "::1"] }
"#;

const PAGE: &[u8] = b"<html><body>sockexit nginx upgrade test</body></html>\n";
const REQUEST: &[u8] = b"GET / HTTP/1.0\r\nHost: test\r\n\r\n";
const WAIT: Duration = Duration::from_secs(15);

/// (ppid, session) of `pid`, from /proc/PID/stat; None when gone or a zombie.
fn stat(pid: i32) -> Option<(i32, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
    (f.first() != Some(&"Z")).then_some(())?;
    Some((f.get(1)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// Live processes matching `f(ppid, session)`.
fn processes(f: impl Fn(i32, i32) -> bool) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| stat(pid).is_some_and(|(ppid, sid)| f(ppid, sid)))
        .collect();
    v.sort_unstable();
    v
}

/// The daemonized nginx: its master leads a session of its own (setsid), which the
/// new master of an upgrade shares. Dropping it kills every process of that session,
/// so a failed assertion leaves nothing running.
struct Session {
    sid: i32,
    error_log: std::path::PathBuf,
}

impl Session {
    fn members(&self) -> Vec<i32> {
        processes(|_, sid| sid == self.sid)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }

    /// Polls `f` every 20 ms until it gives `Some`; fails the test with `what` after
    /// [`WAIT`].
    fn wait_for<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "nginx: no {what} within {WAIT:?}\n--- error log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for _ in 0..50 {
            let left = self.members();
            if left.is_empty() {
                return;
            }
            for pid in left {
                // SAFETY: kill(2) on a process of nginx's own session.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn read_pid(p: &Path) -> Option<i32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Whether `pid` has the library mapped.
fn has_lib(pid: i32) -> bool {
    let lib = common::lib_path();
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.ends_with(lib.to_str().unwrap()))
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) on an nginx master of this test, checked alive just before.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

fn get(port: u16, from: std::net::Ipv4Addr) -> Reply {
    talk_for(from, SocketAddrV4::new(LO, port), REQUEST, None, peer::IO)
}

fn served(r: &Reply) -> bool {
    r.end == peer::End::Eof && r.bytes.starts_with(b"HTTP/1.1 200 ") && r.bytes.ends_with(PAGE)
}

/// The issue's case: nginx.conf without `env` directives; only the library's exec
/// hooks can carry the preload and the policy to the new master.
#[test]
fn nginx_binary_upgrade_keeps_the_policy() {
    upgrade(false);
}

/// The same upgrade with `env LD_PRELOAD; env SOCKEXIT_POLICY;` in nginx.conf, the
/// belt-and-braces setting docs/daemons.md recommends: nginx itself keeps them. This
/// also shows the test's own steps work on a library without exec hooks.
#[test]
fn nginx_binary_upgrade_with_env_directives() {
    upgrade(true);
}

fn upgrade(env_directives: bool) {
    let Some(nginx) = require("nginx") else {
        return;
    };
    let dir = TempDir::new(if env_directives {
        "nginx-upgrade-env"
    } else {
        "nginx-upgrade"
    });
    let policy = dir.write(
        "policy.yaml",
        &format!(
            "{POLICY}audit: {{ log: {}, events: deny }}\n",
            dir.path().join("audit.jsonl").display()
        ),
    );
    let p = dir.path().display().to_string();
    for d in ["www", "tmp", "logs"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    std::fs::write(dir.path().join("www/index.html"), PAGE).unwrap();
    let port = free_port();
    let env = if env_directives {
        "env LD_PRELOAD;\nenv SOCKEXIT_POLICY;\n"
    } else {
        ""
    };
    // Daemonized as a packaged nginx runs (WINCH is honoured only then). Without an
    // `env` directive nginx keeps only TZ across the upgrade's exec.
    let conf = dir.write(
        "nginx.conf",
        &format!(
            "daemon on;\nmaster_process on;\nworker_processes 1;\n{env}\
             pid {p}/nginx.pid;\nerror_log {p}/logs/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
               access_log {p}/logs/access.log;\n\
               client_body_temp_path {p}/tmp/body;\n\
               proxy_temp_path {p}/tmp/proxy;\n\
               fastcgi_temp_path {p}/tmp/fastcgi;\n\
               uwsgi_temp_path {p}/tmp/uwsgi;\n\
               scgi_temp_path {p}/tmp/scgi;\n\
               server {{ listen 127.0.0.1:{port}; root {p}/www; location / {{ }} }}\n\
             }}\n"
        ),
    );
    let error_log = dir.path().join("logs/error.log");
    let pidfile = dir.path().join("nginx.pid");
    let oldbin = dir.path().join("nginx.pid.oldbin");
    let out = preloaded(&nginx, &policy)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(&error_log)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("start nginx");
    assert!(out.status.success(), "nginx did not start: {out:?}");
    // The daemon's master leads its own session.
    let first = Instant::now();
    let old = loop {
        if let Some(pid) = read_pid(&pidfile) {
            break pid;
        }
        assert!(first.elapsed() < WAIT, "no nginx.pid within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let nginx = Session {
        sid: old,
        error_log: error_log.clone(),
    };
    nginx.wait_for("old master's worker, listening", || {
        (stat(old).is_some_and(|(_, sid)| sid == old)
            && !processes(|pp, _| pp == old).is_empty()
            && common::daemon::listening(port))
        .then_some(())
    });

    // Before the upgrade: the library judges the first master's worker.
    let r = get(port, LO);
    assert!(served(&r), "allowed peer before the upgrade: {r}");
    let r = get(port, DOT2);
    assert!(r.refused(), "refused peer before the upgrade: {r}");

    // USR2: the old master execs nginx again; the new one writes nginx.pid, the old
    // one's moves to nginx.pid.oldbin.
    kill(old, libc::SIGUSR2);
    let new = nginx.wait_for("new master (nginx.pid + nginx.pid.oldbin)", || {
        let new = read_pid(&pidfile)?;
        (new != old && read_pid(&oldbin) == Some(old)).then_some(new)
    });
    nginx.wait_for("worker of the new master", || {
        (!processes(|pp, _| pp == new).is_empty()).then_some(())
    });

    // WINCH: the old workers stop; QUIT: the old master exits. Only the new master
    // and its workers are left to accept.
    kill(old, libc::SIGWINCH);
    // (The new master is a child of the old one too.)
    nginx.wait_for("exit of the old master's workers", || {
        (processes(|pp, _| pp == old) == [new]).then_some(())
    });
    kill(old, libc::SIGQUIT);
    nginx.wait_for("exit of the old master", || {
        stat(old).is_none().then_some(())
    });
    let workers = processes(|pp, _| pp == new);
    let mut expected = workers.clone();
    expected.push(new);
    expected.sort_unstable();
    assert_eq!(
        nginx.members(),
        expected,
        "only the new master and its workers are left"
    );

    let r = get(port, DOT2);
    assert!(
        r.refused(),
        "refused peer (127.0.0.2) after the binary upgrade must get 0 bytes, got {r}\n\
         (libsockexit.so mapped in the new master {new}: {})\n--- error log ---\n{}",
        has_lib(new),
        nginx.log()
    );
    let r = get(port, LO);
    assert!(
        served(&r),
        "allowed peer after the upgrade: {r}\n{}",
        nginx.log()
    );

    // The new master and its worker have the library mapped...
    for pid in std::iter::once(new).chain(workers.iter().copied()) {
        assert!(
            has_lib(pid),
            "process {pid} (new master {new}) does not have {} mapped",
            common::lib_path().display()
        );
    }
    // ... and judge by the same policy, not a fail-closed one: the refusal after the
    // upgrade is the new worker's, by the policy's rule, in the policy's audit log.
    // (Their /proc/PID/environ cannot show it: nginx writes its process title over
    // the environment's memory, in the first master too.)
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default();
    let by_new: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .filter(|v: &serde_json::Value| workers.iter().any(|w| v["pid"] == *w))
        .collect();
    assert_eq!(
        by_new.len(),
        1,
        "one refusal audited by the new worker {workers:?}:\n{audit}"
    );
    assert_eq!(by_new[0]["rule"], "refuse-127-0-0-2", "{audit}");
    assert_eq!(by_new[0]["verdict"], "deny", "{audit}");
    let log = nginx.log();
    for bad in ["[alert]", "[emerg]", "exited on signal"] {
        assert!(!log.contains(bad), "nginx error log has {bad}:\n{log}");
    }
    // Shut down in order; the guard kills whatever is left.
    kill(new, libc::SIGQUIT);
    nginx.wait_for("exit of the new master", || {
        nginx.members().is_empty().then_some(())
    });
}

/// Issue 17: a running nginx with two workers follows `sockexit apply` within a
/// second, without a restart and without a signal: the same worker pids before and
/// after.
#[test]
fn nginx_two_workers_follow_an_apply_without_restart() {
    let Some(nginx) = require("nginx") else {
        return;
    };
    let dir = TempDir::new("nginx-live");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let policy = dir.write("policy.yaml", POLICY);
    let apply = |text: &str| {
        std::fs::write(&policy, text).unwrap();
        let o = std::process::Command::new(common::cli_path())
            .arg("apply")
            .arg(&policy)
            .env("SOCKEXIT_RUN_DIR", &run)
            .output()
            .unwrap();
        assert!(o.status.success(), "apply: {o:?}");
    };
    apply(POLICY);
    let p = dir.path().display().to_string();
    for d in ["www", "tmp", "logs"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    std::fs::write(dir.path().join("www/index.html"), PAGE).unwrap();
    let port = free_port();
    let conf = dir.write(
        "nginx.conf",
        &format!(
            "daemon on;\nmaster_process on;\nworker_processes 2;\n\
             pid {p}/nginx.pid;\nerror_log {p}/logs/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
               access_log {p}/logs/access.log;\n\
               client_body_temp_path {p}/tmp/body;\n\
               proxy_temp_path {p}/tmp/proxy;\n\
               fastcgi_temp_path {p}/tmp/fastcgi;\n\
               uwsgi_temp_path {p}/tmp/uwsgi;\n\
               scgi_temp_path {p}/tmp/scgi;\n\
               server {{ listen 127.0.0.1:{port}; root {p}/www; location / {{ }} }}\n\
             }}\n"
        ),
    );
    let error_log = dir.path().join("logs/error.log");
    let out = preloaded(&nginx, &policy)
        .env("SOCKEXIT_RUN_DIR", &run)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(&error_log)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("start nginx");
    assert!(out.status.success(), "nginx did not start: {out:?}");
    let pidfile = dir.path().join("nginx.pid");
    let t0 = Instant::now();
    let master = loop {
        if let Some(pid) = read_pid(&pidfile) {
            break pid;
        }
        assert!(t0.elapsed() < WAIT, "no nginx.pid");
        std::thread::sleep(Duration::from_millis(20));
    };
    let nginx = Session {
        sid: master,
        error_log,
    };
    let workers = nginx.wait_for("two workers, listening", || {
        let w = processes(|pp, _| pp == master);
        (w.len() == 2 && common::daemon::listening(port)).then_some(w)
    });
    for _ in 0..6 {
        assert!(served(&get(port, LO)), "127.0.0.1 before the apply");
        assert!(
            get(port, DOT2).bytes.is_empty(),
            "127.0.0.2 before the apply"
        );
    }
    // Now 127.0.0.1 is refused and 127.0.0.2 allowed.
    apply(&POLICY.replace("127.0.0.2/32", "127.0.0.1/32"));
    let t = Instant::now();
    while !get(port, LO).bytes.is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "127.0.0.1 still served a second after the apply"
        );
    }
    // Both workers: every connection, whichever worker takes it.
    for _ in 0..12 {
        assert!(get(port, LO).bytes.is_empty(), "127.0.0.1 after the apply");
        assert!(served(&get(port, DOT2)), "127.0.0.2 after the apply");
    }
    assert_eq!(
        processes(|pp, _| pp == master),
        workers,
        "workers were restarted"
    );
    drop(nginx);
}
