//! Issue 18: what `check` and `explain` say about the mistakes administrators make —
//! symlinked program paths, no listen rule, `0.0.0.0` as "any", bare program names,
//! partial shadowing, errors at the value and plain YAML sentences, explain's exit
//! codes and usage, stealth drops that leave no audit line.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use common::TempDir;
use support::{run, sockexit, Out};

fn check(tag: &str, policy: &str) -> (TempDir, std::path::PathBuf, Out) {
    let d = TempDir::new(tag);
    let p = d.write("p.yaml", policy);
    let o = run(sockexit(["check".as_ref(), p.as_os_str()]));
    (d, p, o)
}

const LISTEN: &str = "  - { name: listen, action: allow, calls: [listen] }\n";

// 1. Symlinked program paths.

#[test]
fn a_symlinked_program_path_is_shown_resolved_and_explained_as_the_library_sees_it() {
    let d = TempDir::new("find-symlink");
    let target = d.write("python3.11", "#!/bin/sh\n");
    let link = d.path().join("python3");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let p = d.write(
        "p.yaml",
        &format!(
            "version: 1\ndefault: allow\nrules:\n  - {{ name: no-python, action: deny, programs: [\"{}\"] }}\n",
            link.display()
        ),
    );
    let o = run(sockexit(["check".as_ref(), p.as_os_str()]));
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(
        o.stdout.contains(&format!(
            "program: {}:4:5: rule `no-python`: {} resolves to {}; the rule matches both",
            p.display(),
            link.display(),
            target.display()
        )),
        "{o:?}"
    );
    // The library sees the target (/proc/self/exe): explain --program with either path
    // answers deny, and says what the given path resolved to.
    for (given, note) in [(&link, true), (&target, false)] {
        let o = run(sockexit([
            "explain".as_ref(),
            p.as_os_str(),
            "--call".as_ref(),
            "connect".as_ref(),
            "--remote".as_ref(),
            "192.0.2.1:80".as_ref(),
            "--program".as_ref(),
            given.as_os_str(),
        ]));
        assert_eq!(o.code, Some(0), "{o:?}");
        assert!(o.stdout.starts_with("deny  rule=no-python"), "{o:?}");
        assert_eq!(
            o.stdout
                .contains(&format!("resolves to {}", target.display())),
            note,
            "{o:?}"
        );
    }
    // A pattern naming the target matches a program started through the link.
    let q = d.write(
        "q.yaml",
        &format!(
            "version: 1\ndefault: allow\nrules:\n  - {{ name: no-python, action: deny, programs: [\"{}\"] }}\n",
            target.display()
        ),
    );
    let o = run(sockexit([
        "explain".as_ref(),
        q.as_os_str(),
        "--call".as_ref(),
        "connect".as_ref(),
        "--remote".as_ref(),
        "192.0.2.1:80".as_ref(),
        "--program".as_ref(),
        link.as_os_str(),
        "--json".as_ref(),
    ]));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["rule"], "no-python", "{o:?}");
    assert_eq!(v["program"], link.display().to_string());
    assert_eq!(v["program_resolved"], target.display().to_string());
}

// 2. No listen rule.

#[test]
fn default_deny_with_accept_rules_and_no_listen_rule_is_a_warning() {
    let (_d, p, o) = check(
        "find-listen",
        "version: 1\ndefault: deny\nrules:\n  - { name: ftp, action: allow, calls: [accept], local_ports: [21] }\n",
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(
        o.stderr.contains(&format!(
            "warning: {}:4:5: rule `ftp` allows accept, but with `default: deny` no rule allows listen",
            p.display()
        )),
        "{o:?}"
    );
    assert!(o.stderr.contains("calls: [listen]"), "{o:?}");
    // With a listen rule: no warning.
    let (_d, _p, o) = check(
        "find-listen-ok",
        &format!("version: 1\ndefault: deny\nrules:\n  - {{ name: ftp, action: allow, calls: [accept], local_ports: [21] }}\n{LISTEN}"),
    );
    assert_eq!(o.stderr, "", "{o:?}");
}

// 3. `0.0.0.0` meant as "any".

#[test]
fn unspecified_addresses_meant_as_any_are_warned_at_the_item_with_the_fix() {
    let (_d, p, o) = check(
        "find-any",
        &format!(
            "version: 1\ndefault: deny\nrules:\n  - {{ name: any, action: allow, calls: [accept], remote: [0.0.0.0, \"::\"] }}\n{LISTEN}"
        ),
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{o:?}");
    assert!(
        lines[0].starts_with(&format!(
            "warning: {}:4:59: rule `any`: `remote: 0.0.0.0` matches only the unspecified address",
            p.display()
        )),
        "{o:?}"
    );
    assert!(lines[0].contains("write `0.0.0.0/0`"), "{o:?}");
    assert!(lines[1].contains("`remote: ::`") && lines[1].contains("write `::/0`"));
    // The prefixes are fine; so is `local: 0.0.0.0` on a listen rule (a wildcard listener).
    let (_d, _p, o) = check(
        "find-any-ok",
        "version: 1\ndefault: deny\nrules:\n  - { name: any, action: allow, calls: [accept], remote: [0.0.0.0/0, \"::/0\"] }\n  - { name: listen, action: allow, calls: [listen], local: [0.0.0.0] }\n",
    );
    assert_eq!(o.stderr, "", "{o:?}");
}

// 4. Bare program names.

#[test]
fn a_bare_program_name_is_warned_with_the_likely_pattern() {
    let (_d, p, o) = check(
        "find-bare",
        "version: 1\ndefault: allow\nrules:\n  - name: no-sshd-out\n    action: deny\n    calls: [connect]\n    programs: [sshd, \"*/nginx\", /usr/sbin/vsftpd]\n",
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(
        o.stderr.trim_end(),
        format!(
            "warning: {}:7:16: rule `no-sshd-out`: program `sshd` never matches: patterns match the executable's absolute path; write `*/sshd` for any program named sshd, or its full path",
            p.display()
        ),
        "{o:?}"
    );
}

// 5. Partial shadowing.

#[test]
fn a_deny_partly_decided_by_an_earlier_allow_names_the_part() {
    let (_d, p, o) = check(
        "find-partial",
        &format!(
            "version: 1\ndefault: deny\nsets:\n  block: [203.0.113.0/24]\nrules:\n  - {{ name: web, action: allow, calls: [accept], local_ports: [80] }}\n  - {{ name: drop-listed, action: deny, calls: [accept], remote: [\"@block\"] }}\n{LISTEN}"
        ),
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(
        o.stderr.trim_end(),
        format!(
            "warning: {}:7:5: rule `drop-listed` can never apply to accept with local_ports 80: rule `web` comes first and allows those calls; move `drop-listed` above `web` if it should refuse them",
            p.display()
        ),
        "{o:?}"
    );
    // The block list first: no finding (an allow after a deny is the usual exception).
    let (_d, _p, o) = check(
        "find-partial-ok",
        &format!(
            "version: 1\ndefault: deny\nsets:\n  block: [203.0.113.0/24]\nrules:\n  - {{ name: drop-listed, action: deny, calls: [accept], remote: [\"@block\"] }}\n  - {{ name: web, action: allow, calls: [accept], local_ports: [80] }}\n{LISTEN}"
        ),
    );
    assert_eq!(o.stderr, "", "{o:?}");
    // A deny for more calls than the allow before it: the calls it can never apply to.
    let (_d, _p, o) = check(
        "find-partial-calls",
        "version: 1\ndefault: allow\nrules:\n  - { name: in, action: allow, calls: [accept] }\n  - { name: no-lan, action: deny, remote: [10.0.0.0/8] }\n",
    );
    assert!(
        o.stderr
            .contains("rule `no-lan` can never apply to accept: rule `in` comes first"),
        "{o:?}"
    );
}

// 6. Error positions and YAML mistakes.

fn error_of(tag: &str, policy: &str) -> String {
    let (_d, p, o) = check(tag, policy);
    assert_eq!(o.code, Some(1), "{o:?}");
    let prefix = format!("error: {}:", p.display());
    assert!(o.stderr.starts_with(&prefix), "{o:?}");
    assert_eq!(o.stderr.lines().count(), 1, "one sentence: {o:?}");
    o.stderr[prefix.len()..].trim_end().to_string()
}

#[test]
fn bad_values_are_reported_at_the_value() {
    let head = "version: 1\ndefault: deny\nrules:\n  - name: r\n";
    assert_eq!(
        error_of("find-alow", &format!("{head}    action: alow\n")),
        "5:13: key `action`: rule `r`: `alow` is not allow or deny"
    );
    assert_eq!(
        error_of(
            "find-calls",
            &format!("{head}    action: allow\n    calls: [accept, conect]\n")
        ),
        "6:21: key `calls`: rule `r`: `conect` is not accept, connect or listen"
    );
    assert_eq!(
        error_of(
            "find-fam",
            &format!("{head}    action: allow\n    families:\n      - ipv4\n      - inet\n")
        ),
        "8:9: key `families`: rule `r`: `inet` is not ipv4 or ipv6"
    );
}

#[test]
fn common_yaml_mistakes_are_one_plain_sentence_with_line_and_column() {
    let tab = error_of(
        "find-tab",
        "version: 1\ndefault: deny\nrules:\n\t- name: r\n    action: allow\n",
    );
    assert!(
        tab.starts_with("4:") && tab.contains("a tab in the indentation"),
        "{tab}"
    );
    let level = error_of(
        "find-level",
        "version: 1\ndefault: deny\nrules:\n  - name: r\n    action: allow\n  calls: [accept]\n",
    );
    assert!(
        level.starts_with("6:3: indentation: this line does not line up"),
        "{level}"
    );
    let deeper = error_of(
        "find-deeper",
        "version: 1\ndefault: deny\nrules:\n- name: a\n  action: allow\n    - name: b\n",
    );
    assert!(
        deeper.starts_with("6:") && deeper.contains("indentation"),
        "{deeper}"
    );
    let item = error_of(
        "find-item",
        "version: 1\ndefault: deny\nrules:\n  - name: a\n    action: allow\n    calls:\n    - accept\n  - listen\n",
    );
    assert!(
        item.starts_with("8:5: expected a mapping") && item.contains("wrong indentation level"),
        "{item}"
    );
    assert_eq!(
        error_of(
            "find-at",
            "version: 1\ndefault: deny\nrules:\n  - name: a\n    action: allow\n    remote: [@lan]\n"
        ),
        "6:14: `@` cannot start a plain YAML value; quote set references (\"@lan\")"
    );
    assert_eq!(
        error_of(
            "find-star",
            "version: 1\ndefault: deny\nrules:\n  - name: a\n    action: allow\n    programs: [*/nginx]\n"
        ),
        "6:16: unknown YAML alias: `*` starts an alias; quote a program glob (\"*/nginx\")"
    );
}

// 7. explain's exit codes and usage.

#[test]
fn explain_exit_codes_match_the_docs_and_usage_shows_optional_flags_as_optional() {
    let d = TempDir::new("find-exit");
    let p = d.write(
        "p.yaml",
        "version: 1\ndefault: deny\nrules:\n  - { name: web, action: allow, calls: [accept], local_ports: [80] }\n",
    );
    let bad = d.write("bad.yaml", "version: 1\ndefault: dney\n");
    let code = |args: &[&std::ffi::OsStr]| run(sockexit(args)).code;
    let e = |s: &'static str| std::ffi::OsStr::new(s);
    // 0: judged, whatever the verdict.
    assert_eq!(
        code(&[
            e("explain"),
            p.as_os_str(),
            e("--call"),
            e("connect"),
            e("--remote"),
            e("192.0.2.1:1")
        ]),
        Some(0)
    );
    // 1: invalid or unreadable policy.
    assert_eq!(
        code(&[e("explain"), bad.as_os_str(), e("--call"), e("listen")]),
        Some(1)
    );
    assert_eq!(
        code(&[
            e("explain"),
            e("/nonexistent.yaml"),
            e("--call"),
            e("listen")
        ]),
        Some(1)
    );
    // 2: bad arguments.
    assert_eq!(code(&[e("explain"), p.as_os_str()]), Some(2));
    assert_eq!(
        code(&[
            e("explain"),
            p.as_os_str(),
            e("--call"),
            e("accept"),
            e("--remote"),
            e("nonsense")
        ]),
        Some(2)
    );
    assert_eq!(
        code(&[
            e("explain"),
            p.as_os_str(),
            e("--call"),
            e("listen"),
            e("--remote"),
            e("192.0.2.1:1")
        ]),
        Some(2)
    );
    // Usage: only --call is required.
    let o = run(sockexit([
        e("explain"),
        p.as_os_str(),
        e("--remote"),
        e("192.0.2.1:1"),
    ]));
    let usage = o
        .stderr
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap_or_else(|| panic!("{o:?}"))
        .to_string();
    assert!(usage.contains(" --call <CALL> "), "{usage}");
    for flag in [
        "--remote <ADDR:PORT>",
        "--local <ADDR:PORT>",
        "--user",
        "--program",
        "--json",
    ] {
        let at = usage
            .find(flag)
            .unwrap_or_else(|| panic!("{flag}: {usage}"));
        assert_eq!(&usage[at - 1..at], "[", "{flag} shown as optional: {usage}");
    }
    let help = run(sockexit(["explain", "--help"]));
    assert!(
        help.stdout
            .contains("Exit status: 0 when the call was judged"),
        "{help:?}"
    );
}

// 8. Stealth drops leave no audit line.

#[test]
fn check_says_stealth_drops_leave_no_audit_line() {
    let (_d, _p, o) = check(
        "find-stealth",
        &format!("version: 1\ndefault: deny\nstealth: true\nrules:\n  - {{ name: lan, action: allow, calls: [accept], remote: [10.0.0.0/8] }}\n{LISTEN}"),
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    let first = o.stdout.lines().next().unwrap();
    assert!(
        first.ends_with(
            ", stealth (a peer dropped at the SYN leaves no audit line: the kernel drops it before the library sees it)"
        ),
        "{o:?}"
    );
    assert!(o.stdout.contains("stealth: any port: filter of"), "{o:?}");
}
