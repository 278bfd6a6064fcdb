//! Running the real `sockexit` binary from the CLI's integration tests.
#![allow(dead_code)]

pub mod programs;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The binary under test, as cargo built it.
pub const BIN: &str = env!("CARGO_BIN_EXE_sockexit");

/// `examples/wrappers/` of this repository.
pub fn wrappers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/wrappers")
}

/// A command for `program` with nothing inherited that changes sockexit's behaviour:
/// no `SOCKEXIT_*` variable and no `LD_PRELOAD`.
pub fn clean(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SOCKEXIT_") || k == "LD_PRELOAD" {
            c.env_remove(k);
        }
    }
    c.stdin(Stdio::null());
    c
}

/// `sockexit ARGS...` with a clean environment.
pub fn sockexit<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = clean(BIN);
    c.args(args);
    c
}

/// What a user sees: exit code, stdout, stderr.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Run to completion. A binary that was just copied can briefly fail with ETXTBSY
/// while another test thread's fork still holds the copy's write descriptor; retry
/// that (bounded) rather than fail the test for it.
pub fn run(mut c: impl std::borrow::BorrowMut<Command>) -> Out {
    let c = c.borrow_mut();
    let mut tries = 0;
    let o = loop {
        match c.output() {
            Ok(o) => break o,
            Err(e) if e.raw_os_error() == Some(26) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("cannot run {:?}: {e}", c.get_program()),
        }
    };
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Put a copy of the sockexit binary at `dir/bin/sockexit`, so a test decides what
/// lies beside it (the library `run` preloads is looked up there).
pub fn install(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = bin.join("sockexit");
    // A hard link, not a copy: a copy holds a write descriptor that a child forked by
    // another test thread at that moment inherits until it execs, and exec'ing a file
    // open for writing fails with ETXTBSY. Copy only across filesystems.
    if std::fs::hard_link(BIN, &exe).is_err() {
        std::fs::copy(BIN, &exe).unwrap();
    }
    exe
}

/// A stand-in `libsockexit.so` at `path`: `run` only needs it to exist. (ld.so will
/// complain that it cannot preload it and go on, which the tests ignore.)
pub fn fake_lib(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"").unwrap();
    path.to_path_buf()
}

/// The value of `NAME=` in `env` output, if present.
pub fn env_value<'a>(env_output: &'a str, name: &str) -> Option<&'a str> {
    env_output
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}
