//! `programs:` paths that go through a symlink also match what they resolve to, as the
//! library sees `/proc/self/exe`: resolved when the policy is read, recorded in a
//! snapshot and replayed by its compile without any I/O.
mod common;

use common::*;
use sockexit_engine::{Call, LoadOptions, Permissions, Policy, Snapshot, Verdict};
use std::path::Path;

fn opts() -> LoadOptions<'static> {
    LoadOptions {
        resolver: &TestUsers,
        permissions: Permissions::Warn,
    }
}

fn policy(dir: &Path, pattern: &str) -> std::path::PathBuf {
    let p = dir.join("p.yaml");
    std::fs::write(
        &p,
        format!("version: 1\ndefault: allow\nrules:\n  - {{ name: no-py, action: deny, calls: [connect], programs: [\"{pattern}\"] }}\n"),
    )
    .unwrap();
    p
}

fn verdict(p: &Policy, program: &Path) -> (Verdict, String) {
    decide(
        p,
        Call::Connect,
        by(connect("192.0.2.1:80"), 1, 1, program.to_str().unwrap()),
    )
}

#[test]
fn a_symlink_pattern_matches_its_target_and_a_snapshot_replays_it() {
    let d = TempDir::new("links");
    let target = d.path().join("python3.11");
    std::fs::write(&target, "").unwrap();
    let target = std::fs::canonicalize(&target).unwrap();
    let link = d.path().join("python3");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let p = policy(d.path(), link.to_str().unwrap());

    let loaded = Policy::load_with(&p, &opts()).unwrap();
    let deny = (Verdict::Deny, "no-py".to_string());
    assert_eq!(
        verdict(&loaded, &target),
        deny,
        "the target (what the library sees)"
    );
    assert_eq!(verdict(&loaded, &link), deny, "the path as written");
    assert_eq!(
        loaded.rules()[0].program_links(),
        &[(link.to_str().unwrap().to_string(), target.clone())]
    );
    assert!(loaded.warnings().is_empty(), "{:?}", loaded.warnings());

    // Read now, compiled after the link is gone: the resolution is replayed.
    let snap = Snapshot::read_with(&p, &opts()).unwrap();
    std::fs::remove_file(&link).unwrap();
    let compiled = snap.compile().unwrap();
    assert_eq!(verdict(&compiled, &target), deny);
    assert_eq!(compiled.rules()[0].program_links().len(), 1);
    // Loaded now (no link any more): only the path as written.
    let now = Policy::load_with(&p, &opts()).unwrap();
    assert_eq!(
        verdict(&now, &target),
        (Verdict::Allow, "default".to_string())
    );
}

#[test]
fn globs_and_canonical_paths_are_matched_as_written() {
    let d = TempDir::new("links-glob");
    let target = d.path().join("python3.11");
    std::fs::write(&target, "").unwrap();
    let target = std::fs::canonicalize(&target).unwrap();
    let link = d.path().join("python3");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // A glob naming the link's name does not follow it.
    let glob = policy(d.path(), "*/python3");
    let p = Policy::load_with(&glob, &opts()).unwrap();
    assert!(p.rules()[0].program_links().is_empty());
    assert_eq!(
        verdict(&p, &target),
        (Verdict::Allow, "default".to_string())
    );
    // A canonical path has nothing to resolve.
    let canon = policy(d.path(), target.to_str().unwrap());
    let p = Policy::load_with(&canon, &opts()).unwrap();
    assert!(p.rules()[0].program_links().is_empty());
    assert_eq!(verdict(&p, &target), (Verdict::Deny, "no-py".to_string()));
}
