//! `sockexit run`: refuses an invalid policy, then execs CMD with the preload set.
//!
//! CMD is mostly `/usr/bin/env`, so the test reads exactly the environment the
//! service would get. The binary is copied into a temporary directory so each test
//! decides what library lies beside it.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use common::TempDir;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;
use support::{clean, env_value, fake_lib, install, run, Out};

const POLICY: &str = "version: 1
default: deny
rules:
  - { name: web, action: allow, calls: [listen], local_ports: [80] }
";

/// A temp dir holding `bin/sockexit`, `bin/libsockexit.so` and `policy.yaml`.
struct Setup {
    dir: TempDir,
    exe: std::path::PathBuf,
    lib: std::path::PathBuf,
}

fn setup(tag: &str) -> Setup {
    let dir = TempDir::new(tag);
    let exe = install(dir.path());
    let lib = fake_lib(&dir.path().join("bin/libsockexit.so"));
    dir.write("policy.yaml", POLICY);
    Setup { dir, exe, lib }
}

/// `sockexit run ARGS...` from inside the temp dir (so relative paths are relative
/// to it), with a clean environment plus `env`.
fn run_in(s: &Setup, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = clean(&s.exe);
    c.current_dir(s.dir.path()).arg("run").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

#[test]
fn execs_cmd_with_absolute_preload_and_policy() {
    let s = setup("run-env");
    let o = run_in(&s, &["--policy", "policy.yaml", "--", "/usr/bin/env"], &[]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(
        env_value(&o.stdout, "LD_PRELOAD"),
        Some(s.lib.to_str().unwrap())
    );
    let policy = s.dir.path().join("policy.yaml");
    assert_eq!(
        env_value(&o.stdout, "SOCKEXIT_POLICY"),
        Some(policy.to_str().unwrap()),
        "policy path made absolute"
    );
    assert_eq!(env_value(&o.stdout, "SOCKEXIT_ON_ERROR"), None);
}

#[test]
fn policy_defaults_to_sockexit_policy_made_absolute() {
    let s = setup("run-env-default");
    let o = run_in(
        &s,
        &["--", "/usr/bin/env"],
        &[("SOCKEXIT_POLICY", "./policy.yaml")],
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    let v = env_value(&o.stdout, "SOCKEXIT_POLICY").unwrap();
    assert!(v.starts_with('/') && v.ends_with("policy.yaml"), "{v}");
    assert_eq!(
        std::fs::canonicalize(v).unwrap(),
        std::fs::canonicalize(s.dir.path().join("policy.yaml")).unwrap()
    );
}

#[test]
fn existing_ld_preload_is_kept_after_the_library() {
    let s = setup("run-preload-list");
    let lib = s.lib.to_str().unwrap();
    let o = run_in(
        &s,
        &["--policy", "policy.yaml", "--", "/usr/bin/env"],
        &[("LD_PRELOAD", "/nonexistent/a.so /nonexistent/b.so")],
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(
        env_value(&o.stdout, "LD_PRELOAD"),
        Some(format!("{lib} /nonexistent/a.so /nonexistent/b.so").as_str())
    );
    let o = run_in(
        &s,
        &["--policy", "policy.yaml", "--", "/usr/bin/env"],
        &[("LD_PRELOAD", "/nonexistent/a.so:/nonexistent/b.so")],
    );
    assert_eq!(
        env_value(&o.stdout, "LD_PRELOAD"),
        Some(format!("{lib}:/nonexistent/a.so:/nonexistent/b.so").as_str())
    );
}

#[test]
fn on_error_is_passed_on_when_given() {
    let s = setup("run-on-error");
    for v in ["allow", "deny"] {
        let o = run_in(
            &s,
            &[
                "--policy",
                "policy.yaml",
                "--on-error",
                v,
                "--",
                "/usr/bin/env",
            ],
            &[],
        );
        assert_eq!(o.code, Some(0), "{o:?}");
        assert_eq!(env_value(&o.stdout, "SOCKEXIT_ON_ERROR"), Some(v));
    }
    let o = run_in(
        &s,
        &[
            "--policy",
            "policy.yaml",
            "--on-error",
            "maybe",
            "--",
            "/usr/bin/env",
        ],
        &[],
    );
    assert_eq!(o.code, Some(2), "{o:?}");
    assert_eq!(o.stdout, "");
}

#[test]
fn cmd_replaces_sockexit_same_pid_and_exit_status() {
    let s = setup("run-exec");
    let mut c = clean(&s.exe);
    c.current_dir(s.dir.path())
        .args(["run", "--policy", "policy.yaml", "--"])
        .args(["/bin/sh", "-c", "echo $$; exit 7"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut tries = 0;
    let child = loop {
        match c.spawn() {
            Ok(ch) => break ch,
            // ETXTBSY right after the copy: see support::run.
            Err(e) if e.raw_os_error() == Some(26) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("spawn: {e}"),
        }
    };
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), pid.to_string());
}

#[test]
fn cmd_arguments_starting_with_dashes_reach_cmd() {
    let s = setup("run-args");
    let o = run_in(
        &s,
        &[
            "--policy",
            "policy.yaml",
            "--",
            "/bin/echo",
            "-n",
            "--policy",
            "x",
        ],
        &[],
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(o.stdout, "--policy x");
}

#[test]
fn invalid_policy_refuses_to_start_cmd() {
    let s = setup("run-invalid");
    let bad = s
        .dir
        .write("bad.yaml", "version: 1\ndefault: deny\nrulez: []\n");
    let marker = s.dir.path().join("started");
    let o = run_in(
        &s,
        &[
            "--policy",
            "bad.yaml",
            "--",
            "/usr/bin/touch",
            marker.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(!marker.exists(), "CMD ran despite an invalid policy");
    assert!(
        o.stderr
            .starts_with(&format!("sockexit: error: {}:3:", bad.display())),
        "{o:?}"
    );
    assert!(o.stderr.contains("not starting /usr/bin/touch"), "{o:?}");
}

#[test]
fn a_policy_others_can_change_refuses_to_start_cmd_as_root() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let s = setup("run-perms");
    let policy = s.dir.path().join("policy.yaml");
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o666)).unwrap();
    let uid = std::fs::metadata(&policy).unwrap().uid();
    let marker = s.dir.path().join("started");
    let o = run_in(
        &s,
        &[
            "--policy",
            "policy.yaml",
            "--",
            "/usr/bin/touch",
            marker.to_str().unwrap(),
        ],
        &[],
    );
    let text = format!(
        "{}: writable by group and others (mode 0666, owner {uid}): a root process must not load a policy others can change; chmod go-w",
        policy.display()
    );
    if uid == 0 {
        assert_eq!(o.code, Some(1), "{o:?}");
        assert!(!marker.exists(), "CMD ran under a policy others can change");
        assert_eq!(
            o.stderr,
            format!("sockexit: error: {text}\nsockexit: not starting /usr/bin/touch: fix the policy first\n")
        );
    } else {
        assert_eq!(o.code, Some(0), "{o:?}");
        assert!(marker.exists());
        assert_eq!(o.stderr, format!("sockexit: warning: {text}\n"));
    }
}

#[test]
fn missing_policy_refuses_to_start_cmd() {
    let s = setup("run-missing-policy");
    let o = run_in(&s, &["--policy", "nope.yaml", "--", "/usr/bin/env"], &[]);
    assert_eq!(o.code, Some(1), "{o:?}");
    assert_eq!(o.stdout, "");
    assert!(o.stderr.contains("nope.yaml"), "{o:?}");
}

#[test]
fn missing_library_is_an_error_naming_where_it_was_looked_for() {
    let dir = TempDir::new("run-nolib");
    let exe = install(dir.path());
    dir.write("policy.yaml", POLICY);
    let mut c = clean(&exe);
    c.current_dir(dir.path())
        .args(["run", "--policy", "policy.yaml", "--", "/usr/bin/env"]);
    let o = run(&mut c);
    assert_eq!(o.code, Some(1), "{o:?}");
    assert_eq!(o.stdout, "", "CMD must not run without the library");
    let beside = dir.path().join("bin/libsockexit.so");
    assert!(o.stderr.contains(beside.to_str().unwrap()), "{o:?}");
}

#[test]
fn library_in_prefix_lib_is_found() {
    // /usr/bin/sockexit with /usr/lib/libsockexit.so
    let dir = TempDir::new("run-prefix-lib");
    let exe = install(dir.path());
    let lib = fake_lib(&dir.path().join("lib/libsockexit.so"));
    dir.write("policy.yaml", POLICY);
    let mut c = clean(&exe);
    c.current_dir(dir.path())
        .args(["run", "--policy", "policy.yaml", "--", "/usr/bin/env"]);
    let o = run(&mut c);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(
        env_value(&o.stdout, "LD_PRELOAD"),
        Some(lib.to_str().unwrap())
    );
}

#[test]
fn explicit_lib_is_used_and_must_exist() {
    let s = setup("run-explicit-lib");
    let other = fake_lib(&s.dir.path().join("other/libsockexit.so"));
    let o = run_in(
        &s,
        &[
            "--policy",
            "policy.yaml",
            "--lib",
            "other/libsockexit.so",
            "--",
            "/usr/bin/env",
        ],
        &[],
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(
        env_value(&o.stdout, "LD_PRELOAD"),
        Some(other.to_str().unwrap())
    );
    let o = run_in(
        &s,
        &[
            "--policy",
            "policy.yaml",
            "--lib",
            "missing.so",
            "--",
            "/usr/bin/env",
        ],
        &[],
    );
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(o.stderr.contains("missing.so"), "{o:?}");
}

#[test]
fn cmd_not_found_exits_127() {
    let s = setup("run-nocmd");
    let o = run_in(
        &s,
        &[
            "--policy",
            "policy.yaml",
            "--",
            "/nonexistent/sockexit-test-daemon",
        ],
        &[],
    );
    assert_eq!(o.code, Some(127), "{o:?}");
    assert!(
        o.stderr.contains("/nonexistent/sockexit-test-daemon"),
        "{o:?}"
    );
}

#[test]
fn under_inetd_not_one_byte_reaches_the_client() {
    // inetd hands the service the client's socket as fds 0-2: an error about the
    // policy must not be written to it.
    let s = setup("run-inetd");
    s.dir.write("bad.yaml", "version: 1\ndefault: nope\n");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (server, _) = listener.accept().unwrap();
    let mut c = clean(&s.exe);
    c.current_dir(s.dir.path())
        .args(["run", "--policy", "bad.yaml", "--", "/usr/bin/env"])
        .stdout(OwnedFd::from(server.try_clone().unwrap()))
        .stderr(OwnedFd::from(server));
    let o = run(&mut c);
    drop(c); // the parent's copies of the socket
    assert_eq!(o.code, Some(1), "refused to start");
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(
        got,
        b"",
        "bytes reached the client: {:?}",
        String::from_utf8_lossy(&got)
    );
}
