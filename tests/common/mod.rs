//! Shared helpers for integration tests: locate the built artifacts, write policies,
//! run programs under the preload as child processes.
#![allow(dead_code)]

pub mod daemon;
pub mod peer;

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>/`, derived from this test binary's own path
/// (`target/<profile>/deps/<test>-<hash>`), so any CARGO_TARGET_DIR works.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The preload library, built (or brought up to date) on first use, together with the
/// sample programs (so `cargo test --test NAME` works on its own too).
///
/// `cargo test` does not build a `cdylib`-only library for integration tests: without
/// this, a fresh clone would have no `libsockexit.so`, and a working tree would test a
/// stale one. One `cargo build` per test binary, a no-op when nothing changed.
pub fn lib_path() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            // The core (`libsockexit_core.so`) and the front that loads it
            // (`libsockexit.so`, crates/front), which is what programs preload.
            cargo_build(
                &["-p", "sockexit", "--lib", "--examples"],
                "libsockexit_core.so",
            );
            cargo_build(&["-p", "sockexit-front", "--lib"], "libsockexit.so")
        })
        .clone()
}

/// The front as installed (`make install`, the package): built with the `front`
/// profile, without the standard library. A copy in a directory of its own with the
/// core of [`lib_path`] beside it, which it loads.
pub fn installed_front() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let core = lib_path().with_file_name("libsockexit_core.so");
            let target = profile_dir().parent().expect("target").to_path_buf();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let out = Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "--profile",
                    "front",
                    "-p",
                    "sockexit-front",
                ])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .env("CARGO_TARGET_DIR", &target)
                .output()
                .expect("run cargo build");
            assert!(
                out.status.success(),
                "cargo build --profile front failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let dir = target.join("installed-front");
            std::fs::create_dir_all(&dir).expect("mkdir");
            let front = dir.join("libsockexit.so");
            // Replaced, not rewritten: a running test may have it mapped.
            for (from, to) in [
                (target.join("front/libsockexit.so"), front.clone()),
                (core, dir.join("libsockexit_core.so")),
            ] {
                let tmp = to.with_extension(format!("tmp{}", std::process::id()));
                std::fs::copy(&from, &tmp).expect("copy");
                std::fs::rename(&tmp, &to).expect("rename");
            }
            front
        })
        .clone()
}

/// The `sockexit` command, built beside the library (as `sockexit run` expects it).
pub fn cli_path() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            lib_path(); // `run` refuses to start without the library beside it
            cargo_build(&["-p", "sockexit-cli", "--bin", "sockexit"], "sockexit")
        })
        .clone()
}

/// The library the programs under test get in `LD_PRELOAD`: [`lib_path`], or
/// `SOCKEXIT_TEST_LIB` (an older build, to check that a test fails without a fix).
pub fn preload_path() -> PathBuf {
    let built = lib_path();
    std::env::var_os("SOCKEXIT_TEST_LIB")
        .map(PathBuf::from)
        .unwrap_or(built)
}

/// `cargo build ARGS` into this test's own target directory and profile; returns the
/// path of `artifact` in the profile directory.
fn cargo_build(args: &[&str], artifact: &str) -> PathBuf {
    let profile = profile_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env(
            "CARGO_TARGET_DIR",
            profile.parent().expect("target/<profile>"),
        );
    if profile.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let p = profile.join(artifact);
    assert!(p.exists(), "{} missing after cargo build", p.display());
    p
}

/// A Cargo example binary (`examples/<name>.rs`), built with the library.
pub fn example_path(name: &str) -> PathBuf {
    let p = lib_path()
        .parent()
        .expect("profile dir")
        .join("examples")
        .join(name);
    assert!(p.exists(), "example {} not built at {}", name, p.display());
    p
}

/// A fresh temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "sockexit-test-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// Write `contents` to `name` inside the directory and return its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A command for `program` with the preload and `policy` set, and nothing inherited
/// from the developer's environment that could change the library's behaviour.
pub fn preloaded(program: impl AsRef<std::ffi::OsStr>, policy: &Path) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SOCKEXIT_") {
            c.env_remove(k);
        }
    }
    c.env("LD_PRELOAD", preload_path());
    c.env("SOCKEXIT_POLICY", policy);
    c
}

// ---------------------------------------------------------------------------------
// Child processes and test peers (tests/preload.rs, tests/bypass/)
// ---------------------------------------------------------------------------------

pub mod live;
pub mod proc;
pub mod tcp_peer;
// Also included by some test files directly (`mod sample`), hence the allow.
#[allow(clippy::duplicate_mod)]
#[path = "../../examples/common/mod.rs"]
pub mod sample;

/// How long a program may take to print its first line or to exit. Generous: the
/// machine is small and shared; a hang still fails.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);
/// Connect and read timeout of a test peer.
pub const IO: std::time::Duration = std::time::Duration::from_secs(5);
