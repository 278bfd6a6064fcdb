//! `sockexit enable|disable UNIT` (systemd drop-ins) and `sockexit system
//! enable|disable|status` (/etc/ld.so.preload), always under a temporary `--root`:
//! these tests never touch the machine's /etc.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{run, sockexit};

/// A fresh temporary root, removed on drop.
struct Root(PathBuf);
impl Root {
    fn new(tag: &str) -> Root {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "sockexit-enable-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Root(p)
    }
    fn put(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const POLICY: &str = "version: 1\ndefault: allow\nrules:\n  \
    - { name: no-dot-two, action: deny, calls: [accept], remote: [127.0.0.2] }\n";

const NGINX_UNIT: &str = "[Unit]\nDescription=nginx\n\n[Service]\nType=forking\n\
    ExecStartPre=/usr/sbin/nginx -t -q -g 'daemon on; master_process on;'\n\
    ExecStart=/usr/sbin/nginx -g 'daemon on; master_process on;'\n\
    ExecReload=/usr/sbin/nginx -g 'daemon on; master_process on;' -s reload\n\
    ExecStop=-/sbin/start-stop-daemon --quiet --stop --pidfile /run/nginx.pid\n\n\
    [Install]\nWantedBy=multi-user.target\n";

fn enable(root: &Root, unit: &str, policy: &Path, extra: &[&str]) -> support::Out {
    let lib = root.put("usr/lib/sockexit/libsockexit.so", "not really a library\n");
    let mut c = sockexit(["enable", unit, "--policy"]);
    c.arg(policy)
        .arg("--lib")
        .arg(&lib)
        .arg("--root")
        .arg(root.path());
    c.args(extra);
    run(c)
}

fn dropin(root: &Root, unit: &str) -> PathBuf {
    root.path()
        .join("etc/systemd/system")
        .join(format!("{unit}.d/sockexit.conf"))
}

#[test]
fn enable_writes_the_dropin_for_nginx_and_disable_removes_it() {
    let root = Root::new("nginx");
    root.put("usr/lib/systemd/system/nginx.service", NGINX_UNIT);
    let policy = root.put(
        "etc/sockexit/nginx.yaml",
        &format!("{POLICY}audit: {{ log: /var/log/sockexit/nginx.jsonl }}\n"),
    );
    let lib = root.path().join("usr/lib/sockexit/libsockexit.so");

    // --dry-run prints and writes nothing.
    let dry = enable(&root, "nginx", &policy, &["--dry-run"]);
    assert_eq!(dry.code, Some(0), "{dry:?}");
    assert!(!dropin(&root, "nginx.service").exists());

    let out = enable(&root, "nginx", &policy, &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = fs::read_to_string(dropin(&root, "nginx.service")).unwrap();
    assert_eq!(text, dry.stdout, "--dry-run shows what enable writes");
    let bin = fs::canonicalize(support::BIN).unwrap();
    let bin = bin.display();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let p = policy.display();
    assert_eq!(
        lines,
        [
            "[Service]".to_string(),
            format!(
                "Environment=LD_PRELOAD={} SOCKEXIT_POLICY={p}",
                lib.display()
            ),
            format!("ExecStartPre=+{bin} apply --quiet {p}"),
            format!("ExecStartPre={bin} check --program /usr/sbin/nginx"),
            "ExecReload=".to_string(),
            format!("ExecReload=+{bin} apply --quiet {p}"),
            "ExecReload=/usr/sbin/nginx -g 'daemon on; master_process on;' -s reload".to_string(),
            "LogsDirectory=sockexit".to_string(),
            "ReadWritePaths=-/var/log/sockexit".to_string(),
        ],
        "{text}"
    );
    assert!(
        text.contains("#   env LD_PRELOAD;\n#   env SOCKEXIT_POLICY;"),
        "{text}"
    );
    assert!(
        out.stderr.contains("env LD_PRELOAD;") && out.stderr.contains("env SOCKEXIT_POLICY;"),
        "the nginx advice is printed: {out:?}"
    );
    assert!(out.stdout.contains("systemctl daemon-reload"), "{out:?}");

    // An existing drop-in of the unit that resets ExecReload is followed.
    root.put(
        "etc/systemd/system/nginx.service.d/override.conf",
        "[Service]\nExecReload=\nExecReload=/bin/kill -HUP $MAINPID\n",
    );
    let out = enable(&root, "nginx.service", &policy, &["--dry-run"]);
    assert!(
        out.stdout.contains("ExecReload=/bin/kill -HUP $MAINPID\n")
            && !out.stdout.contains("-s reload"),
        "{out:?}"
    );

    let off = run(sockexit(["disable", "nginx", "--root"]).arg(root.path()));
    assert_eq!(off.code, Some(0), "{off:?}");
    assert!(off.stdout.contains("daemon-reload"), "{off:?}");
    assert!(!dropin(&root, "nginx.service").exists());
    assert!(root
        .path()
        .join("etc/systemd/system/nginx.service.d/override.conf")
        .exists());
    let again = run(sockexit(["disable", "nginx", "--root"]).arg(root.path()));
    assert_eq!(again.code, Some(0), "{again:?}");
}

#[test]
fn enable_says_what_it_could_not_read() {
    let root = Root::new("unknown");
    let policy = root.put("etc/sockexit/p.yaml", POLICY);
    let out = enable(&root, "mystery", &policy, &["--dry-run"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("cannot read the unit"), "{out:?}");
    assert!(out.stderr.contains("ExecReload="), "{out:?}");
    // No reset of the unit's unknown reload: only comments.
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("ExecReload")),
        "{out:?}"
    );
    assert!(out.stdout.contains("# ExecStartPre="), "{out:?}");

    // A unit with no ExecReload of its own: reload then only applies.
    root.put(
        "etc/systemd/system/plain.service",
        "[Service]\nExecStart=/bin/sleep 1000\n",
    );
    let out = enable(&root, "plain", &policy, &["--dry-run"]);
    assert!(
        out.stdout.contains("check --program /bin/sleep\n"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("reload now only applies the policy"),
        "{out:?}"
    );

    // A broken policy: no drop-in.
    let bad = root.put(
        "etc/sockexit/bad.yaml",
        "version: 1\ndefault: allow\nrulez: []\n",
    );
    let out = enable(&root, "plain", &bad, &[]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(!dropin(&root, "plain.service").exists());
}

/// `systemd-analyze verify` of a unit with the generated drop-in: no complaint about
/// it. Works without a running systemd (the unit path is given in
/// `SYSTEMD_UNIT_PATH`).
#[test]
fn systemd_analyze_verify_accepts_the_dropin() {
    let Ok(v) = Command::new("systemd-analyze").arg("--version").output() else {
        if std::env::var_os("CI").is_some() {
            panic!("systemd-analyze is not installed and CI is set (package systemd)");
        }
        eprintln!("SKIPPED: systemd-analyze not installed (apt-get install systemd)");
        return;
    };
    assert!(v.status.success());
    let root = Root::new("verify");
    let policy = root.put(
        "etc/sockexit/p.yaml",
        &format!("{POLICY}audit: {{ log: /var/log/sockexit/x.jsonl }}\n"),
    );
    let units = root.path().join("etc/systemd/system");
    root.put(
        "etc/systemd/system/sockexit-verify.service",
        "[Unit]\nDescription=verify\n[Service]\nExecStart=/bin/sleep 1000\n\
         ExecReload=/bin/kill -HUP $MAINPID\n",
    );
    let out = enable(&root, "sockexit-verify", &policy, &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(units.join("sockexit-verify.service"))
        .env("SYSTEMD_UNIT_PATH", format!("{}:", units.display()))
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("sockexit")).collect();
    assert!(
        o.status.success() && ours.is_empty(),
        "systemd-analyze verify: {}\n{err}",
        o.status
    );
}

fn system(root: &Root, args: &[&str], run_dir: &Path) -> support::Out {
    let mut c = sockexit(["system"]);
    c.args(args)
        .arg("--root")
        .arg(root.path())
        .env("SOCKEXIT_RUN_DIR", run_dir);
    run(c)
}

#[test]
fn system_mode_edits_ld_so_preload_only_with_an_applied_valid_policy() {
    let root = Root::new("system");
    let run_dir = root.path().join("run/sockexit");
    fs::create_dir_all(root.path().join("run")).unwrap();
    let preload = root.path().join("etc/ld.so.preload");
    root.put("usr/lib/sockexit/libsockexit.so", "stand-in\n");
    let core = root.put("usr/lib/sockexit/libsockexit_core.so", "stand-in\n");
    let lib = "/usr/lib/sockexit/libsockexit.so";

    // No policy at all.
    let out = system(&root, &["enable"], &run_dir);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(!preload.exists());

    // A broken policy.
    let policy = root.put(
        "etc/sockexit/policy.yaml",
        "version: 1\ndefault: allow\nrulez: []\n",
    );
    let out = system(&root, &["enable"], &run_dir);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("does not load"), "{out:?}");
    assert!(!preload.exists());

    // Valid but never applied.
    fs::write(&policy, POLICY).unwrap();
    let out = system(&root, &["enable"], &run_dir);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("never applied"), "{out:?}");
    assert!(!preload.exists());

    // Applied: enabled, an existing entry kept after ours.
    let ap = run(sockexit(["apply"])
        .arg(&policy)
        .env("SOCKEXIT_RUN_DIR", &run_dir));
    assert_eq!(ap.code, Some(0), "{ap:?}");
    root.put("etc/ld.so.preload", "/usr/lib/other.so\n");
    let out = system(&root, &["enable"], &run_dir);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        fs::read_to_string(&preload).unwrap(),
        format!("{lib}\n/usr/lib/other.so\n")
    );
    let st = system(&root, &["status"], &run_dir);
    assert!(st.stdout.contains("system-wide mode: on"), "{st:?}");
    assert!(st.stdout.contains("valid, applied"), "{st:?}");
    let again = system(&root, &["enable"], &run_dir);
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(again.stdout.contains("already lists"), "{again:?}");

    // An edit not yet applied: status says so; a fresh enable would refuse.
    fs::write(
        &policy,
        format!(
            "{POLICY}  - {{ name: more, action: deny, calls: [connect], remote_ports: [25] }}\n"
        ),
    )
    .unwrap();
    let st = system(&root, &["status"], &run_dir);
    assert!(
        st.stdout.contains("differs from what is published"),
        "{st:?}"
    );

    // Disable removes ours only; with nothing left the file goes.
    let out = system(&root, &["disable"], &run_dir);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(fs::read_to_string(&preload).unwrap(), "/usr/lib/other.so\n");
    let out = system(&root, &["enable"], &run_dir);
    assert_eq!(
        out.code,
        Some(1),
        "refuses: the edit is not applied: {out:?}"
    );
    assert_eq!(fs::read_to_string(&preload).unwrap(), "/usr/lib/other.so\n");

    fs::write(&preload, format!("{lib}\n")).unwrap();
    let out = system(&root, &["disable"], &run_dir);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!preload.exists());
    let st = system(&root, &["status"], &run_dir);
    assert!(st.stdout.contains("system-wide mode: off"), "{st:?}");

    // A library others can replace is never listed.
    use std::os::unix::fs::PermissionsExt;
    let libdir = root.path().join("usr/lib/sockexit");
    fs::set_permissions(&libdir, fs::Permissions::from_mode(0o777)).unwrap();
    let ap = run(sockexit(["apply"])
        .arg(&policy)
        .env("SOCKEXIT_RUN_DIR", &run_dir));
    assert_eq!(ap.code, Some(0), "{ap:?}");
    let out = system(&root, &["enable"], &run_dir);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("chmod go-w"), "{out:?}");
    assert!(!preload.exists());
    fs::set_permissions(&libdir, fs::Permissions::from_mode(0o755)).unwrap();

    // Nor one whose core (which the front loads from its directory) others can
    // replace, or which is missing.
    fs::set_permissions(&core, fs::Permissions::from_mode(0o666)).unwrap();
    let out = system(&root, &["enable"], &run_dir);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("libsockexit_core.so") && out.stderr.contains("chmod go-w"),
        "{out:?}"
    );
    assert!(!preload.exists());
    fs::remove_file(&core).unwrap();
    let out = system(&root, &["enable"], &run_dir);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("libsockexit_core.so: no such file"),
        "{out:?}"
    );
    assert!(!preload.exists());

    // A library that is not there is never listed.
    fs::remove_file(root.path().join("usr/lib/sockexit/libsockexit.so")).unwrap();
    let ap = run(sockexit(["apply"])
        .arg(&policy)
        .env("SOCKEXIT_RUN_DIR", &run_dir));
    assert_eq!(ap.code, Some(0), "{ap:?}");
    let out = system(&root, &["enable"], &run_dir);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("no such file"), "{out:?}");
    assert!(!preload.exists());
}

/// The commands of `key =` in a fail2ban action file, continuation lines included,
/// with the tags replaced.
fn action(text: &str, key: &str, tags: &[(&str, String)]) -> String {
    let mut out = String::new();
    let mut on = false;
    for l in text.lines() {
        if let Some((k, v)) = l
            .split_once('=')
            .filter(|_| !l.starts_with([' ', '\t', '#']))
        {
            on = k.trim() == key;
            if on {
                out.push_str(v.trim());
                out.push('\n');
            }
        } else if on && l.starts_with([' ', '\t']) {
            out.push_str(l.trim());
            out.push('\n');
        } else {
            on = false;
        }
    }
    for (t, v) in tags {
        out = out.replace(&format!("<{t}>"), v);
    }
    out
}

/// The shipped fail2ban action, run as fail2ban would (each value as one shell
/// script) against the shipped default policy: start checks the policy is published
/// with the dynamic set; ban adds the address to it (no new generation); the address
/// is then refused; unban removes it.
#[test]
fn fail2ban_action_bans_and_unbans_through_the_dynamic_set() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = fs::read_to_string(repo.join("contrib/fail2ban/action.d/sockexit.conf")).unwrap();
    let root = Root::new("f2b");
    let run_dir = root.path().join("run");
    fs::create_dir_all(&run_dir).unwrap();
    let policy = root.put(
        "etc/sockexit/policy.yaml",
        &fs::read_to_string(repo.join("contrib/policy.yaml")).unwrap(),
    );
    let tags = |ip: &str| {
        vec![
            ("ip", ip.to_string()),
            ("set", "fail2ban".to_string()),
            ("policy", policy.display().to_string()),
            ("sockexit", support::BIN.to_string()),
        ]
    };
    let sh = |key: &str, ip: &str| {
        let script = action(&text, key, &tags(ip));
        assert!(!script.trim().is_empty(), "no {key} in the action");
        let mut c = support::clean("sh");
        c.arg("-ec").arg(&script).env("SOCKEXIT_RUN_DIR", &run_dir);
        run(c)
    };
    let sh_ok = |key: &str, ip: &str| {
        let o = sh(key, ip);
        assert_eq!(o.code, Some(0), "{key}: {o:?}");
    };
    let verdict = |ip: &str| {
        let o = run(sockexit(["explain"])
            .arg(&policy)
            .args(["--call", "accept", "--remote", &format!("{ip}:40000")])
            .args(["--local", "127.0.0.1:22"])
            .env("SOCKEXIT_RUN_DIR", &run_dir));
        assert_eq!(o.code, Some(0), "{o:?}");
        o.stdout
    };

    // Never applied: the jail does not start, and says why.
    let o = sh("actionstart", "");
    assert_ne!(o.code, Some(0), "{o:?}");
    assert!(o.stderr.contains("never applied"), "{o:?}");
    let ap = run(sockexit(["apply"])
        .arg(&policy)
        .env("SOCKEXIT_RUN_DIR", &run_dir));
    assert_eq!(ap.code, Some(0), "{ap:?}");
    sh_ok("actionstart", "");

    sh_ok("actionban", "203.0.113.9");
    sh_ok("actionban", "203.0.113.9"); // twice: one entry
    sh_ok("actionban", "198.51.100.7");
    let list = run(sockexit(["set", "list"])
        .arg(&policy)
        .arg("fail2ban")
        .env("SOCKEXIT_RUN_DIR", &run_dir));
    assert_eq!(list.stdout.lines().count(), 2, "{}", list.stdout);
    assert!(verdict("203.0.113.9").starts_with("deny  rule=fail2ban-banned"));
    let st = run(sockexit(["status"])
        .arg(&policy)
        .env("SOCKEXIT_RUN_DIR", &run_dir))
    .stdout;
    assert!(
        st.contains("generation 1,") && st.contains("unchanged"),
        "a ban needs no new generation: {st}"
    );

    sh_ok("actionunban", "203.0.113.9");
    assert!(verdict("203.0.113.9").starts_with("allow rule=default"));
    assert!(verdict("198.51.100.7").starts_with("deny"));
}
