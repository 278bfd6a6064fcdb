//! A policy or set file that is not a regular file (a FIFO, a device) is a load error
//! naming the file and what it is — never a hang in every preloaded process's
//! constructor, never a read until memory runs out. A symlink to a regular file is
//! fine: configuration tools manage policies through them.
mod common;

use common::*;
use sockexit_engine::{Error, LoadOptions, Policy, Prepared, Snapshot};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on its own thread and gives up after 20 s, so a regression (a blocking
/// open of a FIFO, an endless read of a device) fails the test instead of hanging it.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the load did not return within 20 s: it blocked or read without bound")
}

fn load_file(path: &Path) -> Result<Policy, Error> {
    let path = path.to_path_buf();
    bounded(move || {
        Policy::load_with(
            &path,
            &LoadOptions {
                resolver: &TestUsers,
                permissions: sockexit_engine::Permissions::Warn,
            },
        )
    })
}

fn read_deferring(path: &Path) -> Result<Prepared, Error> {
    let path = path.to_path_buf();
    bounded(move || {
        Snapshot::read_deferring(
            &path,
            &LoadOptions {
                resolver: &TestUsers,
                permissions: sockexit_engine::Permissions::Warn,
            },
            1024,
        )
    })
}

fn mkfifo(path: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(st.success(), "mkfifo {}", path.display());
}

/// A policy naming `file` as set `drop`, on line 4 column 9.
fn policy_with_set_file(dir: &TempDir, file: &Path) -> PathBuf {
    dir.write(
        "p.yaml",
        format!(
            "{HEAD}sets:\n  drop: {{ file: {} }}\nrules:\n  - {{ name: d, action: deny, remote: [\"@drop\"] }}\n",
            file.display()
        ),
    )
}

#[test]
fn a_fifo_as_policy_is_an_error_not_a_hang() {
    let dir = TempDir::new("fifo-policy");
    let fifo = dir.path().join("policy.yaml");
    mkfifo(&fifo);
    let want = format!("{}: is a FIFO, not a regular file", fifo.display());
    assert_eq!(load_file(&fifo).unwrap_err().to_string(), want);
    assert_eq!(read_deferring(&fifo).unwrap_err().to_string(), want);
}

#[test]
fn a_fifo_as_set_file_is_an_error_not_a_hang() {
    let dir = TempDir::new("fifo-set");
    let fifo = dir.path().join("drop.txt");
    mkfifo(&fifo);
    let policy = policy_with_set_file(&dir, &fifo);
    let want = format!(
        "{}:4:9: key `drop`: cannot read set file {}: is a FIFO, not a regular file",
        policy.display(),
        fifo.display()
    );
    assert_eq!(load_file(&policy).unwrap_err().to_string(), want);
    // The library's path: every set file is read at start-up, whatever its size.
    assert_eq!(read_deferring(&policy).unwrap_err().to_string(), want);
}

#[test]
fn devices_as_policy_are_errors() {
    for dev in ["/dev/zero", "/dev/null"] {
        assert_eq!(
            load_file(Path::new(dev)).unwrap_err().to_string(),
            format!("{dev}: is a character device, not a regular file")
        );
    }
}

#[test]
fn devices_as_set_file_are_errors() {
    let dir = TempDir::new("dev-set");
    for dev in ["/dev/zero", "/dev/null"] {
        let policy = policy_with_set_file(&dir, Path::new(dev));
        let want = format!(
            "{}:4:9: key `drop`: cannot read set file {dev}: is a character device, not a regular file",
            policy.display()
        );
        assert_eq!(load_file(&policy).unwrap_err().to_string(), want);
        assert_eq!(read_deferring(&policy).unwrap_err().to_string(), want);
    }
}

#[test]
fn a_symlink_to_a_regular_policy_and_set_file_still_loads() {
    let dir = TempDir::new("symlink");
    let real_set = dir.write("drop-real.txt", "192.0.2.0/24\n");
    let set_link = dir.path().join("drop.txt");
    std::os::unix::fs::symlink(&real_set, &set_link).unwrap();
    let real_policy = policy_with_set_file(&dir, &set_link);
    let link = dir.path().join("current.yaml");
    std::os::unix::fs::symlink(&real_policy, &link).unwrap();
    let p = load_file(&link).expect("a symlinked policy loads");
    assert_eq!(
        decide(&p, sockexit_engine::Call::Connect, connect("192.0.2.7:80")),
        (DENY, "d".into())
    );
    assert!(matches!(read_deferring(&link), Ok(Prepared::Compiled(_))));
}

#[test]
fn a_directory_as_policy_says_so() {
    let dir = TempDir::new("dir-policy");
    assert_eq!(
        load_file(dir.path()).unwrap_err().to_string(),
        format!("{}: Is a directory (os error 21)", dir.path().display())
    );
}

#[test]
fn a_fifo_as_passwd_or_group_resolves_nothing_instead_of_hanging() {
    let dir = TempDir::new("fifo-passwd");
    let fifo = dir.path().join("passwd");
    mkfifo(&fifo);
    let policy = dir.write(
        "p.yaml",
        format!("{HEAD}rules:\n  - {{ name: f, action: allow, users: [ftp] }}\n"),
    );
    let e = bounded(move || {
        let files = sockexit_engine::FilesResolver {
            passwd: fifo.clone(),
            group: fifo,
        };
        Policy::load_with(
            &policy,
            &LoadOptions {
                resolver: &files,
                permissions: sockexit_engine::Permissions::Warn,
            },
        )
    })
    .unwrap_err();
    assert_eq!(e.message, "rule `f`: unknown user `ftp`");
}
