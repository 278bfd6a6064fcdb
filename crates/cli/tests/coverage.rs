//! `sockexit run` will not start what LD_PRELOAD cannot reach, and `sockexit check
//! --program` says so without starting anything.
//!
//! Real programs, built here: a static C binary (`gcc -static`), a static Go binary
//! (`CGO_ENABLED=0`) and a cgo Go binary are refused with exit 3 and a message saying
//! why, and start with `--allow-uncovered` and a warning (they print a line, so we
//! know they ran); a dynamically linked C program and a `#!/usr/bin/env python3`
//! script start with no word from sockexit; a set-user-ID copy of a dynamic program is
//! refused with the secure-execution explanation.
//!
//! The library beside the copied `sockexit` is an empty shared object built with
//! `gcc -shared`, so the dynamic loader preloads it without a word and the programs'
//! stderr is theirs alone.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use common::daemon::{missing, python3, require};
use common::TempDir;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{clean, install, programs, run, Out};

/// Exit status for "not covered", documented in docs/cli.md.
const NOT_COVERED: i32 = 3;

const HELLO_C: &str = "#include <stdio.h>\nint main(void) { puts(\"hello from c\"); return 0; }\n";
const HELLO_GO: &str =
    "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from go\") }\n";
const HELLO_CGO: &str = "package main\n\n// #include <stdlib.h>\nimport \"C\"\nimport \"fmt\"\n\n\
func main() { fmt.Println(\"hello from cgo\", C.abs(-1)) }\n";

/// `bin/sockexit`, an empty `bin/libsockexit.so` and `policy.yaml` in a temp dir.
struct Setup {
    dir: TempDir,
    exe: PathBuf,
}

fn setup(tag: &str) -> Option<Setup> {
    let dir = TempDir::new(tag);
    let exe = install(dir.path());
    let gcc = require("gcc")?;
    let src = dir.write("empty.c", "int sockexit_test_stand_in;\n");
    let out = Command::new(gcc)
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.path().join("bin/libsockexit.so"))
        .arg(&src)
        .output()
        .expect("run gcc");
    assert!(out.status.success(), "gcc -shared: {out:?}");
    dir.write(
        "policy.yaml",
        "version: 1\ndefault: deny\nrules:\n  - { name: web, action: allow, calls: [listen], local_ports: [80] }\n",
    );
    Some(Setup { dir, exe })
}

impl Setup {
    fn sockexit(&self, args: &[&std::ffi::OsStr]) -> Out {
        let mut c = clean(&self.exe);
        c.current_dir(self.dir.path()).args(args);
        run(&mut c)
    }

    fn run(&self, extra: &[&str], program: &Path) -> Out {
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["run".as_ref(), "--policy".as_ref(), "policy.yaml".as_ref()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        args.push("--".as_ref());
        args.push(program.as_os_str());
        self.sockexit(&args)
    }

    fn check(&self, program: &Path) -> Out {
        self.sockexit(&["check".as_ref(), "--program".as_ref(), program.as_os_str()])
    }

    /// `name` built from `src` with gcc (`-static` when `static_`), or None (skipped).
    fn cc(&self, name: &str, src: &str, static_: bool) -> Option<PathBuf> {
        let gcc = require("gcc")?;
        let flags: &[&str] = if static_ { &["-static"] } else { &[] };
        match programs::gcc(&gcc, self.dir.path(), name, src, flags, &[]) {
            Ok(p) => Some(p),
            Err(out) if static_ => missing(&format!(
                "a static libc for gcc -static (libc6-dev; {})",
                programs::stderr(&out)
            )),
            Err(out) => panic!("gcc: {out:?}"),
        }
    }

    /// `name` built from `src` by `go build`, offline, with its caches in the temp dir.
    fn go(&self, name: &str, src: &str, cgo: bool) -> Option<PathBuf> {
        let go = require("go")?;
        Some(programs::go(&go, self.dir.path(), name, src, cgo))
    }
}

/// Refused with exit 3, `reason` in the message, nothing started; then started with
/// `--allow-uncovered` (it prints `prints`) and a warning naming the reason.
fn refused_then_allowed(s: &Setup, program: &Path, reason: &str, remedy: &str, prints: &str) {
    let shown = program.display().to_string();
    let o = s.run(&[], program);
    assert_eq!(o.code, Some(NOT_COVERED), "{o:?}");
    assert_eq!(o.stdout, "", "the program must not have run: {o:?}");
    assert!(
        o.stderr
            .starts_with(&format!("sockexit: error: not starting {shown}: ")),
        "{o:?}"
    );
    for want in [
        reason,
        remedy,
        "to start it anyway, unprotected, give --allow-uncovered",
    ] {
        assert!(o.stderr.contains(want), "missing {want:?}: {o:?}");
    }

    let o = s.run(&["--allow-uncovered"], program);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(o.stdout.lines().next(), Some(prints), "it ran: {o:?}");
    assert!(
        o.stderr.starts_with(&format!(
            "sockexit: warning: starting {shown} unprotected (--allow-uncovered): "
        )),
        "{o:?}"
    );
    assert!(o.stderr.contains(reason), "{o:?}");
    assert!(
        o.stderr
            .contains("the policy does not judge its accept, connect and listen"),
        "{o:?}"
    );

    let o = s.check(program);
    assert_eq!(o.code, Some(NOT_COVERED), "{o:?}");
    assert!(o.stdout.starts_with("not covered: "), "{o:?}");
    assert!(o.stdout.contains(reason), "{o:?}");
    assert!(
        o.stdout
            .contains("sockexit run refuses to start it unless given --allow-uncovered"),
        "{o:?}"
    );
}

/// Started at once, with nothing from sockexit on stderr; and `check` says covered.
fn started_normally(s: &Setup, program: &Path, prints: &str) {
    let o = s.run(&[], program);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(o.stdout.lines().next(), Some(prints), "{o:?}");
    assert!(
        !o.stderr.contains("sockexit:"),
        "no warning expected: {o:?}"
    );
    let o = s.check(program);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.starts_with("covered: "), "{o:?}");
    assert!(o.stdout.contains("is dynamically linked"), "{o:?}");
}

const STATIC: &str = "is statically linked: LD_PRELOAD cannot reach its socket calls";
const GO: &str = "and Go makes its socket calls as raw system calls, not through libc: LD_PRELOAD cannot reach them";
const SUPERVISE: &str = "run it with `sockexit run --supervise` (a seccomp supervisor that judges its system calls) to enforce the policy on it";

#[test]
fn static_c_binary_is_refused_unless_allowed() {
    let Some(s) = setup("cov-static-c") else {
        return;
    };
    let Some(p) = s.cc("hello-static", HELLO_C, true) else {
        return;
    };
    refused_then_allowed(&s, &p, STATIC, SUPERVISE, "hello from c");
}

#[test]
fn static_go_binary_is_refused_unless_allowed() {
    let Some(s) = setup("cov-static-go") else {
        return;
    };
    let Some(p) = s.go("hello-go", HELLO_GO, false) else {
        return;
    };
    refused_then_allowed(&s, &p, GO, SUPERVISE, "hello from go");
    let o = s.check(&p);
    assert!(!o.stdout.contains("cgo"), "{o:?}");
}

#[test]
fn cgo_binary_is_refused_although_dynamically_linked() {
    let Some(s) = setup("cov-cgo") else { return };
    let Some(p) = s.go("hello-cgo", HELLO_CGO, true) else {
        return;
    };
    refused_then_allowed(&s, &p, GO, SUPERVISE, "hello from cgo 1");
    let o = s.check(&p);
    assert!(
        o.stdout
            .contains("is a Go program, dynamically linked (cgo)"),
        "{o:?}"
    );
}

#[test]
fn dynamic_c_program_starts_with_no_warning() {
    let Some(s) = setup("cov-dyn-c") else { return };
    let Some(p) = s.cc("hello-dyn", HELLO_C, false) else {
        return;
    };
    started_normally(&s, &p, "hello from c");
}

#[test]
fn python_script_through_env_starts_with_no_warning() {
    let Some(s) = setup("cov-python") else { return };
    if python3().is_none() {
        return;
    }
    let p = s.dir.write(
        "hello.py",
        "#!/usr/bin/env python3\nprint('hello from python')\n",
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    started_normally(&s, &p, "hello from python");
    let o = s.check(&p);
    assert!(
        o.stdout.contains(&format!(
            "covered: {} is a script run by /usr/bin/env python3 (",
            p.display()
        )),
        "{o:?}"
    );
}

#[test]
fn script_for_a_static_interpreter_is_refused_naming_both() {
    // `#!/usr/bin/env NAME` is followed through PATH to a static binary.
    let Some(s) = setup("cov-script-static") else {
        return;
    };
    let Some(p) = s.cc("hello-static", HELLO_C, true) else {
        return;
    };
    let bin2 = s.dir.path().join("bin2");
    std::fs::create_dir_all(&bin2).unwrap();
    std::fs::rename(&p, bin2.join("static-interp")).unwrap();
    let script = s.dir.write("job", "#!/usr/bin/env static-interp\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin2.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = clean(&s.exe);
    c.current_dir(s.dir.path())
        .env("PATH", &path)
        .args(["run", "--policy", "policy.yaml", "--"])
        .arg(&script);
    let o = run(&mut c);
    assert_eq!(o.code, Some(NOT_COVERED), "{o:?}");
    let want = format!(
        "{} is a script run by /usr/bin/env static-interp ({}), and {} {STATIC}",
        script.display(),
        bin2.join("static-interp").display(),
        bin2.join("static-interp").display()
    );
    assert!(o.stderr.contains(&want), "want {want:?}: {o:?}");
}

#[test]
fn setuid_and_setgid_copies_of_a_dynamic_program_are_refused_with_the_reason() {
    let Some(s) = setup("cov-setuid") else { return };
    let Some(p) = s.cc("hello-suid", HELLO_C, false) else {
        return;
    };
    // SAFETY: geteuid takes no arguments.
    if unsafe { libc::geteuid() } != 0 {
        common::daemon::say("SKIPPED: setuid test needs root (to give the copy another owner)");
        return;
    }
    // Set-user-ID to yourself changes nothing: no secure-execution mode.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o4755)).unwrap();
    started_normally(&s, &p, "hello from c");
    // Set-user-ID to another user (nobody): the loader ignores LD_PRELOAD with a path.
    std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o4755)).unwrap();
    refused_then_allowed(
        &s,
        &p,
        "is set-user-ID (owner uid 65534): the kernel starts it in secure-execution mode (AT_SECURE), \
         where the dynamic loader ignores an LD_PRELOAD entry that contains a slash",
        "install libsockexit.so in a system library directory",
        "hello from c",
    );
    // Set-group-ID to another group: the same.
    let g = s.dir.path().join("hello-sgid");
    std::fs::copy(&p, &g).unwrap();
    std::os::unix::fs::chown(&g, Some(0), Some(65534)).unwrap();
    std::fs::set_permissions(&g, std::fs::Permissions::from_mode(0o2755)).unwrap();
    refused_then_allowed(
        &s,
        &g,
        "is set-group-ID (group gid 65534): the kernel starts it in secure-execution mode",
        "install libsockexit.so in a system library directory",
        "hello from c",
    );
}

#[test]
fn check_program_not_found_and_check_policy_unchanged() {
    let Some(s) = setup("cov-check") else { return };
    let o = s.sockexit(&[
        "check".as_ref(),
        "--program".as_ref(),
        "sockexit-no-such-program".as_ref(),
    ]);
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(
        o.stderr
            .contains("sockexit-no-such-program: not found in PATH"),
        "{o:?}"
    );
    // Found through PATH, as exec finds it.
    let o = s.sockexit(&["check".as_ref(), "--program".as_ref(), "sh".as_ref()]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.starts_with("covered: /"), "{o:?}");
    // POLICY and --program: the policy first, then the program.
    let o = s.sockexit(&[
        "check".as_ref(),
        "policy.yaml".as_ref(),
        "--program".as_ref(),
        "/bin/sh".as_ref(),
    ]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{o:?}");
    assert!(lines[0].starts_with("ok: policy.yaml: 1 rule"), "{o:?}");
    assert!(
        lines[1].starts_with("covered: /bin/sh is dynamically linked"),
        "{o:?}"
    );
    s.dir.write("bad.yaml", "version: 1\nrulez: []\n");
    let o = s.sockexit(&[
        "check".as_ref(),
        "bad.yaml".as_ref(),
        "--program".as_ref(),
        "/bin/sh".as_ref(),
    ]);
    assert_eq!(o.code, Some(1), "{o:?}");
    let o = s.sockexit(&["check".as_ref(), "policy.yaml".as_ref()]);
    assert_eq!(o.code, Some(0), "{o:?}");
}

#[test]
fn run_of_a_missing_program_still_exits_127() {
    let Some(s) = setup("cov-missing") else {
        return;
    };
    let o = s.run(&[], Path::new("/nonexistent/prog"));
    assert_eq!(o.code, Some(127), "{o:?}");
}
