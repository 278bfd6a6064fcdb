//! `sockexit check`: exit status, summary line, errors with file:line:col, warnings.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use common::TempDir;
use support::{run, sockexit, wrappers_dir};

const VALID: &str = "\
version: 1
default: deny
rules:
  - name: ssh-from-lan
    action: allow
    calls: [accept]
    remote: [10.0.0.0/8]
    local_ports: [22]
  - name: ssh-listen
    action: allow
    calls: [listen]
    local_ports: [22]
  - name: outgoing-https
    action: allow
    calls: [connect]
    remote_ports: [443]
";

#[test]
fn valid_policy_prints_summary_and_exits_0() {
    let d = TempDir::new("check-valid");
    let p = d.write("p.yaml", VALID);
    let o = run(sockexit(["check".as_ref(), p.as_os_str()]));
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(
        o.stdout,
        format!("ok: {}: 3 rules, default deny\n", p.display())
    );
    assert_eq!(o.stderr, "", "a clean policy has no warnings");
}

#[test]
fn one_rule_is_singular_and_default_allow_is_reported() {
    let d = TempDir::new("check-one");
    let p = d.write(
        "p.yaml",
        "version: 1\ndefault: allow\nrules:\n  - { name: no-telnet, action: deny, local_ports: [23] }\n",
    );
    let o = run(sockexit(["check".as_ref(), p.as_os_str()]));
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(
        o.stdout,
        format!("ok: {}: 1 rule, default allow\n", p.display())
    );
}

#[test]
fn invalid_policy_reports_file_line_column_on_stderr_and_exits_1() {
    let d = TempDir::new("check-invalid");
    // The typo `acton` on line 5 must be an error, never silently ignored.
    let p = d.write(
        "p.yaml",
        "version: 1\ndefault: deny\nrules:\n  - name: web\n    acton: allow\n    local_ports: [80]\n",
    );
    let o = run(sockexit(["check".as_ref(), p.as_os_str()]));
    assert_eq!(o.code, Some(1), "{o:?}");
    assert_eq!(o.stdout, "");
    let prefix = format!("error: {}:5:", p.display());
    assert!(o.stderr.starts_with(&prefix), "{:?}", o.stderr);
    let col: String = o.stderr[prefix.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(!col.is_empty(), "no column in {:?}", o.stderr);
    assert!(o.stderr.contains("acton"), "{:?}", o.stderr);
}

#[test]
fn a_list_field_left_without_value_fails_check_naming_line_and_column() {
    let d = TempDir::new("check-null");
    // The only `remote` entry commented out: without the error this rule would allow
    // every peer, and check would have said "ok".
    let p = d.write(
        "p.yaml",
        "version: 1\ndefault: deny\nrules:\n  - name: ssh-from-lan\n    action: allow\n    remote:\n    # - 10.0.0.0/8\n    local_ports: [22]\n",
    );
    let o = run(sockexit(["check".as_ref(), p.as_os_str()]));
    assert_eq!(o.code, Some(1), "{o:?}");
    assert_eq!(o.stdout, "");
    assert_eq!(
        o.stderr,
        format!(
            "error: {}:6:11: key `remote`: rule `ssh-from-lan`: empty list (`remote:` with no value): write the field out or list addresses\n",
            p.display()
        )
    );
}

#[test]
fn a_fifo_as_policy_fails_check_instead_of_hanging() {
    let d = TempDir::new("check-fifo");
    let fifo = d.path().join("p.yaml");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    // Under `timeout`: a check that blocks on the FIFO fails (status 124), not hangs.
    let o = run(support::clean("timeout").args([
        "20".as_ref(),
        support::BIN.as_ref(),
        "check".as_ref(),
        fifo.as_os_str(),
    ]));
    assert_eq!(o.code, Some(1), "{o:?}");
    assert_eq!(
        o.stderr,
        format!("error: {}: is a FIFO, not a regular file\n", fifo.display())
    );
}

/// The finding for a policy at `p` with mode 0666, owned by whoever runs the test.
fn world_writable(p: &std::path::Path) -> (u32, String) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666)).unwrap();
    let uid = std::fs::metadata(p).unwrap().uid();
    let text = format!(
        "{}: writable by group and others (mode 0666, owner {uid}): a root process must not load a policy others can change; chmod go-w",
        p.display()
    );
    (uid, text)
}

#[test]
fn a_policy_others_can_change_is_an_error_as_root_and_a_warning_otherwise() {
    let d = TempDir::new("check-perms");
    let p = d.write("p.yaml", VALID);
    let (uid, text) = world_writable(&p);
    let o = run(sockexit(["check".as_ref(), p.as_os_str()]));
    if uid == 0 {
        // The library, as root, would fail closed on it: so does check.
        assert_eq!(o.code, Some(1), "{o:?}");
        assert_eq!(o.stdout, "");
        assert_eq!(o.stderr, format!("error: {text}\n"));
    } else {
        assert_eq!(o.code, Some(0), "{o:?}");
        assert_eq!(o.stderr, format!("warning: {text}\n"));
    }
}

#[test]
fn bad_address_is_pointed_at() {
    let d = TempDir::new("check-addr");
    let p = d.write(
        "p.yaml",
        "version: 1\ndefault: deny\nrules:\n  - name: lan\n    action: allow\n    remote: [10.0.0.0/33]\n",
    );
    let o = run(sockexit(["check".as_ref(), p.as_os_str()]));
    assert_eq!(o.code, Some(1), "{o:?}");
    // The engine may point at the rule or at the value; either way a line inside
    // the rule (lines 4-6), a column, the key and the bad value.
    let rest = o
        .stderr
        .strip_prefix(&format!("error: {}:", p.display()))
        .unwrap_or_else(|| panic!("{:?}", o.stderr));
    let (line, rest) = rest.split_once(':').unwrap();
    assert!(["4", "5", "6"].contains(&line), "{:?}", o.stderr);
    assert!(
        rest.starts_with(|c: char| c.is_ascii_digit()),
        "{:?}",
        o.stderr
    );
    assert!(o.stderr.contains("`remote`"), "{:?}", o.stderr);
    assert!(o.stderr.contains("10.0.0.0/33"), "{:?}", o.stderr);
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let d = TempDir::new("check-missing");
    let p = d.path().join("nope.yaml");
    let o = run(sockexit(["check".as_ref(), p.as_os_str()]));
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(
        o.stderr.starts_with(&format!("error: {}: ", p.display())),
        "{:?}",
        o.stderr
    );
}

#[test]
fn default_path_comes_from_sockexit_policy() {
    let d = TempDir::new("check-env");
    let p = d.write("p.yaml", VALID);
    let o = run(sockexit(["check"]).env("SOCKEXIT_POLICY", &p));
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.starts_with(&format!("ok: {}:", p.display())));
}

#[test]
fn empty_sockexit_policy_means_the_default_path_as_in_the_library() {
    let o = run(sockexit(["check"]).env("SOCKEXIT_POLICY", ""));
    let all = format!("{}{}", o.stdout, o.stderr);
    assert!(all.contains("/etc/sockexit/policy.yaml"), "{o:?}");
}

/// Runs `check` on `policy`, expects exit 0 with the ok line on stdout and exactly
/// one warning on stderr, and returns that warning line.
fn one_warning(tag: &str, policy: &str) -> String {
    let d = TempDir::new(tag);
    let p = d.write("p.yaml", policy);
    let o = run(sockexit(["check".as_ref(), p.as_os_str()]));
    assert_eq!(o.code, Some(0), "warnings do not fail check: {o:?}");
    assert!(
        o.stdout.starts_with(&format!("ok: {}:", p.display())),
        "{o:?}"
    );
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one warning: {:?}", o.stderr);
    assert!(
        lines[0].starts_with(&format!("warning: {}:", p.display())),
        "{:?}",
        lines[0]
    );

    let strict = run(sockexit([
        "check".as_ref(),
        "--deny-warnings".as_ref(),
        p.as_os_str(),
    ]));
    assert_eq!(strict.code, Some(2), "--deny-warnings: {strict:?}");
    assert_eq!(strict.stdout, "");
    assert!(strict.stderr.contains(lines[0]), "{strict:?}");
    lines[0].to_owned()
}

#[test]
fn warns_about_a_shadowed_rule_naming_the_rule_that_shadows_it() {
    let w = one_warning(
        "check-shadow",
        "version: 1
default: deny
rules:
  - { name: lan, action: allow, calls: [accept], remote: [10.0.0.0/8] }
  - { name: one-subnet, action: deny, calls: [accept], remote: [10.1.0.0/16] }
  - { name: listen, action: allow, calls: [listen] }
",
    );
    assert!(w.contains("shadowed by rule"), "{w}");
    assert!(w.contains("one-subnet") && w.contains("lan"), "{w}");
}

#[test]
fn warns_about_a_field_that_cannot_apply_to_the_rules_calls() {
    let w = one_warning(
        "check-field",
        "version: 1
default: deny
rules:
  - { name: out, action: allow, calls: [connect], remote_ports: [443], local_ports: [5000] }
",
    );
    assert!(w.contains("local_ports") && w.contains("out"), "{w}");
}

#[test]
fn warns_about_an_empty_set() {
    let w = one_warning(
        "check-empty-set",
        "version: 1
default: deny
sets:
  nobody: []
rules:
  - { name: ssh, action: allow, calls: [accept], local_ports: [22] }
  - { name: listen, action: allow, calls: [listen] }
",
    );
    assert!(w.contains("nobody") && w.contains("empty"), "{w}");
}

#[test]
fn warns_about_default_allow_with_only_allow_rules() {
    let w = one_warning(
        "check-allow-only",
        "version: 1
default: allow
rules:
  - { name: web, action: allow, calls: [accept], local_ports: [80] }
",
    );
    assert!(w.contains("default") && w.contains("allow"), "{w}");
}

#[test]
fn deny_warnings_passes_a_clean_policy() {
    let d = TempDir::new("check-strict-clean");
    let p = d.write("p.yaml", VALID);
    let o = run(sockexit([
        "check".as_ref(),
        "--deny-warnings".as_ref(),
        p.as_os_str(),
    ]));
    assert_eq!(o.code, Some(0), "{o:?}");
}

#[test]
fn every_wrapper_policy_is_valid_and_clean() {
    for name in ["vsftpd.yaml", "nginx.yaml", "redis.yaml"] {
        let p = wrappers_dir().join(name);
        // From another directory: nginx.yaml's set file is relative to the policy.
        let o = run(
            sockexit(["check".as_ref(), "--deny-warnings".as_ref(), p.as_os_str()])
                .current_dir("/"),
        );
        assert_eq!(o.code, Some(0), "{name}: {o:?}");
        assert!(o.stdout.contains("default deny"), "{name}: {o:?}");
    }
}

#[test]
fn summary_says_audit_mode_and_stealth() {
    let d = TempDir::new("check-mode");
    let p = d.write(
        "p.yaml",
        "version: 1\ndefault: deny\nmode: audit\nstealth: true\nrules:\n  - { name: web, action: allow, calls: [listen], local_ports: [80] }\n",
    );
    let o = run(sockexit(["check".as_ref(), p.as_os_str()]));
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains(", mode audit"), "{o:?}");
    assert!(
        o.stdout
            .contains(", stealth (a peer dropped at the SYN leaves no audit line"),
        "{o:?}"
    );
}

const STEALTH: &str = r#"version: 1
default: deny
stealth: true
rules:
  - { name: ftp-listen, action: allow, calls: [listen], local_ports: [21, 80] }
  - { name: admins, action: allow, calls: [accept], users: [1000], remote: [192.168.0.0/16] }
  - { name: lan-ftp, action: allow, calls: [accept], remote: [10.0.0.0/8], local_ports: [21, "40000-40100"] }
  - { name: web, action: allow, calls: [accept], local_ports: [80] }
"#;

#[test]
fn stealth_lines_per_port_group_with_sizes_and_partial_rules() {
    let d = TempDir::new("check-stealth");
    let p = d.write("p.yaml", STEALTH);
    let o = run(sockexit(["check".as_ref(), p.as_os_str()]));
    assert_eq!(o.code, Some(0), "{o:?}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ok: ") && lines[0].contains(", stealth ("),
        "{o:?}"
    );
    // The sizes the engine computes for wildcard listeners on those ports.
    let pol = sockexit_engine::Policy::load(&p).expect("policy");
    let n = |local: &str| {
        let c = sockexit_engine::bpf::compile(
            &pol,
            &sockexit_engine::bpf::Listener {
                local: local.parse().unwrap(),
                v6_only: false,
                uid: None,
                gid: None,
                program: None,
            },
        );
        c.insns().expect("a filter")
    };
    assert_eq!(
        lines[1],
        format!(
            "stealth: ports 21, 40000-40100: filter of {} instructions on 0.0.0.0, {} on [::]",
            n("0.0.0.0:21"),
            n("[::]:21")
        ),
        "{o:?}"
    );
    assert_eq!(
        lines[2],
        "stealth: port 80: no filter: every peer may be allowed, so there is nothing to drop"
    );
    assert_eq!(
        lines[3],
        format!(
            "stealth: any other port: filter of {} instructions on 0.0.0.0, {} on [::]",
            n("0.0.0.0:22"),
            n("[::]:22")
        )
    );
    assert!(
        lines[4].starts_with("stealth: partial: rule `admins` looks at the user"),
        "{o:?}"
    );
    assert_eq!(lines.len(), 5, "{o:?}");
}

#[test]
fn stealth_summary_for_a_policy_without_port_rules() {
    let d = TempDir::new("check-stealth-any");
    let p = d.write(
        "p.yaml",
        "version: 1\ndefault: allow\nstealth: true\nrules:\n  - { name: no-lan, action: deny, calls: [accept], remote: [10.0.0.0/8] }\n",
    );
    let o = run(sockexit(["check".as_ref(), p.as_os_str()]));
    assert_eq!(o.code, Some(0), "{o:?}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{o:?}");
    assert!(
        lines[1].starts_with("stealth: any port: filter of "),
        "{o:?}"
    );
}
