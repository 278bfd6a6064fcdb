//! Who may change the policy (sshd's StrictModes): a policy, set file or directory on
//! their path that someone but root or the process's own user could change is a load
//! error under `Permissions::Strict` (root processes) and a warning under `Warn`.
//! Temporary directories under /tmp (sticky, 1777) keep working.
mod common;

use common::*;
use sockexit_engine::{Error, LoadOptions, Permissions, Policy, Prepared, Snapshot};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn load(path: &Path, permissions: Permissions) -> Result<Policy, Error> {
    Policy::load_with(
        path,
        &LoadOptions {
            resolver: &TestUsers,
            permissions,
        },
    )
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// This process's effective uid (the owner of what it creates).
fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let d = TempDir::new("perm-uid");
    std::fs::metadata(d.path()).unwrap().uid()
}

/// A temporary directory (0755 whatever the umask) under /tmp, by its canonical path
/// so messages can be compared exactly.
fn dir(tag: &str) -> (TempDir, PathBuf) {
    let d = TempDir::new(tag);
    chmod(d.path(), 0o755);
    let base = std::fs::canonicalize(d.path()).unwrap();
    (d, base)
}

/// A valid policy at `path`, mode 0644.
fn policy_at(path: &Path) -> PathBuf {
    std::fs::write(
        path,
        format!("{HEAD}rules:\n  - {{ name: r, action: allow }}\n"),
    )
    .unwrap();
    chmod(path, 0o644);
    path.to_path_buf()
}

#[test]
fn a_group_writable_policy_is_an_error_when_strict_and_a_warning_otherwise() {
    let (_d, base) = dir("perm-group");
    let p = policy_at(&base.join("p.yaml"));
    chmod(&p, 0o664);
    let owner = euid();
    let text = format!(
        "writable by group (mode 0664, owner {owner}): a root process must not load a policy others can change; chmod go-w"
    );
    let e = load(&p, Permissions::Strict).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: {text}", p.display()));
    assert_eq!(e.file, p);

    let w = load(&p, Permissions::Warn).expect("loads under Warn");
    assert_eq!(w.permission_warnings().len(), 1);
    assert_eq!(w.permission_warnings()[0].message, text);
    assert_eq!(w.permission_warnings()[0].location, None);
    // The same finding is in warnings(), first, for `sockexit check`.
    assert_eq!(w.warnings()[0], w.permission_warnings()[0]);
}

#[test]
fn a_world_writable_directory_without_sticky_bit_is_refused() {
    let (_d, base) = dir("perm-dir");
    let conf = base.join("conf");
    std::fs::create_dir(&conf).unwrap();
    let p = policy_at(&conf.join("p.yaml"));
    chmod(&conf, 0o777);
    let owner = euid();
    let text = format!(
        "{}: writable by group and others (mode 0777, owner {owner}): a root process must not load a policy from a directory others can change; chmod go-w",
        conf.display()
    );
    assert_eq!(
        load(&p, Permissions::Strict).unwrap_err().to_string(),
        format!("{}: {text}", p.display())
    );
    let w = load(&p, Permissions::Warn).unwrap();
    assert_eq!(w.permission_warnings().len(), 1);
    assert_eq!(w.permission_warnings()[0].message, text);
    // Only the world-writable bit: still refused.
    chmod(&conf, 0o757);
    let e = load(&p, Permissions::Strict).unwrap_err();
    assert!(e.message.contains("writable by others (mode 0757"), "{e}");
    chmod(&conf, 0o755);
    load(&p, Permissions::Strict).expect("fixed with chmod go-w");
}

#[test]
fn a_sticky_directory_like_tmp_is_fine_when_the_next_component_is_trusted() {
    let (_d, base) = dir("perm-sticky");
    let shared = base.join("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o1777);
    let p = policy_at(&shared.join("p.yaml"));
    let ok = load(&p, Permissions::Strict).expect("a sticky 1777 directory is like /tmp");
    assert!(ok.permission_warnings().is_empty());
    // And so is the test's own temporary directory, itself under /tmp.
    let q = policy_at(&base.join("q.yaml"));
    assert!(load(&q, Permissions::Strict)
        .unwrap()
        .permission_warnings()
        .is_empty());
}

fn is_root() -> bool {
    if euid() == 0 {
        true
    } else {
        eprintln!("SKIPPED: chown to another uid needs root");
        false
    }
}

#[test]
fn a_policy_owned_by_another_user_is_refused() {
    if !is_root() {
        return;
    }
    let (_d, base) = dir("perm-owner");
    let p = policy_at(&base.join("p.yaml"));
    std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
    let text = "not owned by root (mode 0644, owner 65534): a root process must not load a policy others can change; chown root";
    assert_eq!(
        load(&p, Permissions::Strict).unwrap_err().to_string(),
        format!("{}: {text}", p.display())
    );
    let w = load(&p, Permissions::Warn).unwrap();
    assert_eq!(w.permission_warnings()[0].message, text);
}

#[test]
fn a_sticky_directory_does_not_cover_a_file_another_user_owns() {
    if !is_root() {
        return;
    }
    let (_d, base) = dir("perm-sticky-other");
    let shared = base.join("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o1777);
    let p = policy_at(&shared.join("p.yaml"));
    std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
    let e = load(&p, Permissions::Strict).unwrap_err();
    assert!(
        e.message
            .starts_with("not owned by root (mode 0644, owner 65534)"),
        "{e}"
    );
    // Under Warn both findings: the file, and the sticky directory that no longer
    // protects it (its owner could replace it).
    let w = load(&p, Permissions::Warn).unwrap();
    let msgs: Vec<&str> = w
        .permission_warnings()
        .iter()
        .map(|w| w.message.as_str())
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[1].starts_with(&format!(
            "{}: writable by group and others (mode 1777, owner 0)",
            shared.display()
        )),
        "{msgs:?}"
    );
}

#[test]
fn a_symlink_is_judged_by_its_target_path() {
    let (_d, base) = dir("perm-link");
    let bad = base.join("bad");
    std::fs::create_dir(&bad).unwrap();
    let target = policy_at(&bad.join("p.yaml"));
    chmod(&bad, 0o777);
    let link = base.join("current.yaml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let e = load(&link, Permissions::Strict).unwrap_err();
    assert_eq!(e.file, link);
    assert!(
        e.message.starts_with(&format!(
            "{}: writable by group and others (mode 0777",
            bad.display()
        )),
        "{e}"
    );
    // A link from a sloppy directory to a good file is fine: the link's own
    // directory is not on the canonical path.
    chmod(&bad, 0o755);
    load(&link, Permissions::Strict).expect("target path is clean");
}

#[test]
fn a_group_writable_set_file_is_refused_at_the_set_and_warned_in_snapshots() {
    let (_d, base) = dir("perm-set");
    let mut list = String::new();
    for i in 0..200 {
        list.push_str(&format!("10.{i}.0.0/16\n"));
    }
    let set = base.join("drop.txt");
    std::fs::write(&set, &list).unwrap();
    chmod(&set, 0o620);
    let p = base.join("p.yaml");
    std::fs::write(
        &p,
        format!("{HEAD}sets:\n  drop: {{ file: drop.txt }}\nrules:\n  - {{ name: d, action: deny, remote: [\"@drop\"] }}\n"),
    )
    .unwrap();
    chmod(&p, 0o644);
    let owner = euid();
    let text = format!(
        "set file {}: writable by group (mode 0620, owner {owner}): a root process must not load a set file others can change; chmod go-w",
        set.display()
    );
    assert_eq!(
        load(&p, Permissions::Strict).unwrap_err().to_string(),
        format!("{}:4:9: key `drop`: {text}", p.display())
    );
    let w = load(&p, Permissions::Warn).unwrap();
    assert_eq!(w.permission_warnings().len(), 1);
    assert_eq!(w.permission_warnings()[0].message, text);
    assert_eq!(w.permission_warnings()[0].location, Some((4, 9)));

    // The library's path: the set file (≈ 2.4 KB) deferred past a 1 KB limit. The
    // snapshot knows the finding before compiling, and the compiled policy has it too.
    let opts = LoadOptions {
        resolver: &TestUsers,
        permissions: Permissions::Warn,
    };
    let snap = match Snapshot::read_deferring(&p, &opts, 1024).unwrap() {
        Prepared::Deferred(s) => s,
        Prepared::Compiled(_) => panic!("drop.txt is over the limit"),
    };
    assert_eq!(snap.permission_warnings(), w.permission_warnings());
    let compiled = snap.compile().unwrap();
    assert_eq!(compiled.permission_warnings(), w.permission_warnings());
    assert_eq!(compiled.warnings(), w.warnings());
    // Strict: the read itself fails, as the library fails closed.
    let strict = LoadOptions {
        resolver: &TestUsers,
        permissions: Permissions::Strict,
    };
    assert_eq!(
        Snapshot::read_deferring(&p, &strict, 1024)
            .unwrap_err()
            .to_string(),
        format!("{}:4:9: key `drop`: {text}", p.display())
    );
}

#[test]
fn permission_warnings_exclude_lint_findings() {
    let (_d, base) = dir("perm-lint");
    let p = base.join("p.yaml");
    // `default: allow` with only allow rules: a lint warning, not a permission one.
    std::fs::write(
        &p,
        "version: 1\ndefault: allow\nrules:\n  - { name: r, action: allow }\n",
    )
    .unwrap();
    chmod(&p, 0o666);
    let w = load(&p, Permissions::Warn).unwrap();
    assert_eq!(w.warnings().len(), 2, "{:?}", w.warnings());
    assert_eq!(w.permission_warnings().len(), 1);
    assert!(w.permission_warnings()[0]
        .message
        .starts_with("writable by group and others (mode 0666"));
    assert!(w.warnings()[1].message.contains("refuses nothing"));
}
