//! The example wrapper scripts start their daemon through `sockexit run` with their
//! own policy. The daemon is replaced by `/usr/bin/env` to read what it would get.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use common::TempDir;
use support::{clean, env_value, fake_lib, install, run, wrappers_dir};

fn wrapper_gives_daemon_the_preload(script: &str, daemon_var: &str, policy: &str) {
    let d = TempDir::new("wrapper");
    let exe = install(d.path());
    let lib = fake_lib(&d.path().join("bin/libsockexit.so"));
    let policy = wrappers_dir().join(policy);
    let mut c = clean("/bin/sh");
    c.arg(wrappers_dir().join(script))
        .arg("DAEMON_ARG=passed") // env(1) sets NAME=VALUE arguments
        .env("SOCKEXIT", &exe)
        .env("SOCKEXIT_POLICY", &policy)
        .env(daemon_var, "/usr/bin/env");
    let o = run(&mut c);
    assert_eq!(o.code, Some(0), "{script}: {o:?}");
    assert_eq!(env_value(&o.stdout, "LD_PRELOAD"), lib.to_str(), "{script}");
    assert_eq!(
        env_value(&o.stdout, "SOCKEXIT_POLICY"),
        policy.to_str(),
        "{script}"
    );
    assert_eq!(
        env_value(&o.stdout, "DAEMON_ARG"),
        Some("passed"),
        "{script}: the daemon's arguments"
    );
}

#[test]
fn vsftpd_wrapper() {
    wrapper_gives_daemon_the_preload("vsftpd.sh", "VSFTPD", "vsftpd.yaml");
}

#[test]
fn nginx_wrapper() {
    wrapper_gives_daemon_the_preload("nginx.sh", "NGINX", "nginx.yaml");
}

#[test]
fn redis_wrapper() {
    wrapper_gives_daemon_the_preload("redis.sh", "REDIS_SERVER", "redis.yaml");
}

#[test]
fn wrapper_refuses_to_start_on_a_broken_policy() {
    let d = TempDir::new("wrapper-bad");
    let exe = install(d.path());
    fake_lib(&d.path().join("bin/libsockexit.so"));
    let bad = d.write(
        "bad.yaml",
        "version: 1\ndefault: deny\nrules: [ {name: x, action: alow} ]\n",
    );
    let mut c = clean("/bin/sh");
    c.arg(wrappers_dir().join("redis.sh"))
        .env("SOCKEXIT", &exe)
        .env("SOCKEXIT_POLICY", &bad)
        .env("REDIS_SERVER", "/usr/bin/env");
    let o = run(&mut c);
    assert_eq!(o.code, Some(1), "{o:?}");
    assert_eq!(o.stdout, "");
    assert!(o.stderr.contains(bad.to_str().unwrap()), "{o:?}");
}

#[test]
fn systemd_drop_in_sets_the_preload_and_policy() {
    let conf =
        std::fs::read_to_string(wrappers_dir().join("systemd/nginx.service.d/sockexit.conf"))
            .unwrap();
    let lines: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(lines.contains(&"[Service]"));
    assert!(lines.contains(&"Environment=LD_PRELOAD=/usr/lib/sockexit/libsockexit.so"));
    assert!(lines.contains(&"Environment=SOCKEXIT_POLICY=/etc/sockexit/nginx.yaml"));
    // Published before start, and applied before the service's own reload: a typo
    // fails the reload instead of reaching the running service.
    assert!(lines.contains(&"ExecStartPre=/usr/bin/sockexit apply /etc/sockexit/nginx.yaml"));
    let reload: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("ExecReload="))
        .collect();
    assert_eq!(
        reload.first().map(|l| **l),
        Some("ExecReload="),
        "the unit's own ExecReload must be reset first: {reload:?}"
    );
    assert_eq!(
        reload.get(1).map(|l| **l),
        Some("ExecReload=/usr/bin/sockexit apply /etc/sockexit/nginx.yaml")
    );
    assert!(lines.contains(&"ExecStartPre=/usr/bin/sockexit check --program /usr/sbin/nginx"));
}
