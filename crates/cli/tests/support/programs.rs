//! C and Go programs built on the spot, in a test's temporary directory. The tool is
//! passed in (found with `common::daemon::require`, which skips a test without it),
//! so this module needs nothing of `common`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `dir/NAME`, built from the C source `src` (written to `dir/NAME.c`) as
/// `gcc FLAGS... -o dir/NAME dir/NAME.c LIBS...`; gcc's output if it failed.
pub fn gcc(
    gcc: &Path,
    dir: &Path,
    name: &str,
    src: &str,
    flags: &[&str],
    libs: &[&str],
) -> Result<PathBuf, Output> {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).expect("write temp file");
    let out_path = dir.join(name);
    let out = Command::new(gcc)
        .args(flags)
        .arg("-o")
        .arg(&out_path)
        .arg(&c)
        .args(libs)
        .output()
        .expect("run gcc");
    if out.status.success() {
        Ok(out_path)
    } else {
        Err(out)
    }
}

/// The trimmed stderr of a failed build, to say why.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// `dir/NAME`, built from the Go source `src` by `go build`, offline, with its source
/// and caches in `dir/go-NAME`.
pub fn go(go: &Path, dir: &Path, name: &str, src: &str, cgo: bool) -> PathBuf {
    let work = dir.join(format!("go-{name}"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("main.go"), src).unwrap();
    let out_path = dir.join(name);
    let out = Command::new(go)
        .current_dir(&work)
        .args(["build", "-o"])
        .arg(&out_path)
        .arg("main.go")
        .env("HOME", &work)
        .env("GOCACHE", work.join("cache"))
        .env("GOPATH", work.join("gopath"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", if cgo { "1" } else { "0" })
        .output()
        .expect("run go build");
    assert!(out.status.success(), "go build ({name}): {out:?}");
    out_path
}
