//! Attacks on the lazy front (crates/front, commits 674bae5..420a4ba): the environment
//! read in one pass, the start recorded for a core loaded later (the root's mount id
//! standing for the mount namespace), the exec family looked up at its first call in
//! the objects listed once at start (at most 32), the fail-closed stand-ins. Each test
//! is an attack that failed at first or never got through; all pass now (the two that
//! found holes say what the hole was). Every case runs against both builds
//! of the front (`fronts()`), in system-wide mode where it matters (a private mount
//! namespace with an overlay `/etc`, as in tests/front_lazy.rs: needs root). The
//! programs are C (tests/front_lazy_attack/*.c), so no hooked call happens before the
//! attack.

mod common;

use common::daemon::{require, say};
use common::{installed_front, preload_path, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;

fn src(dir: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir)
        .join(name)
}

/// `gcc -O1 -o OUT SRC ARGS...`; `None` (skipped) without gcc.
fn gcc(out: &Path, from: &Path, args: &[&str]) -> Option<PathBuf> {
    require("gcc")?;
    let o = Command::new("gcc")
        .arg("-O1")
        .arg("-o")
        .arg(out)
        .arg(from)
        .args(args)
        .output()
        .expect("gcc");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(out.to_path_buf())
}

/// The programs: `atk` (tests/front_lazy_attack/atk.c), `prog` (a connect, printed),
/// `envexec`, `slow.so`.
struct Progs {
    atk: PathBuf,
    prog: PathBuf,
    envexec: PathBuf,
    slow: PathBuf,
}

fn progs(dir: &Path) -> Option<Progs> {
    Some(Progs {
        atk: gcc(
            &dir.join("atk"),
            &src("front_lazy_attack", "atk.c"),
            &["-lpthread"],
        )?,
        prog: gcc(&dir.join("prog"), &src("front_attack", "prog.c"), &[])?,
        envexec: gcc(
            &dir.join("envexec"),
            &src("front_lazy_attack", "envexec.c"),
            &[],
        )?,
        slow: gcc(
            &dir.join("slow.so"),
            &src("front_lazy_attack", "slow.c"),
            &["-shared", "-fPIC"],
        )?,
    })
}

/// `atk` built against 40 libraries of its own, listed before libc: libc is past the
/// 32nd loaded object (main, vdso, the front, 40 libraries, libc).
fn atk_many(dir: &Path) -> Option<PathBuf> {
    let libs = dir.join("many");
    std::fs::create_dir_all(&libs).unwrap();
    let mut args = vec![
        "-lpthread".to_owned(),
        "-Wl,--no-as-needed".to_owned(),
        format!("-L{}", libs.display()),
        format!("-Wl,-rpath,{}", libs.display()),
    ];
    for i in 0..40 {
        gcc(
            &libs.join(format!("libn{i}.so")),
            &src("front_lazy_attack", "needed.c"),
            &["-shared", "-fPIC"],
        )?;
        args.push(format!("-ln{i}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    gcc(
        &dir.join("atkmany"),
        &src("front_lazy_attack", "atk.c"),
        &args,
    )
}

/// (which build, its path); the core is beside each.
fn fronts() -> [(&'static str, PathBuf); 2] {
    [("std", preload_path()), ("installed", installed_front())]
}

const DENY_DOT3: &str = "version: 1\ndefault: allow\naudit: { log: off }\nrules:\n  \
    - { name: no-dot3, action: deny, calls: [connect], remote: [127.0.0.3/32] }\n";

/// System-wide mode in a private mount namespace: the front in /etc/ld.so.preload,
/// the policy (127.0.0.3 refused) in /etc/sockexit, an allow-all one at
/// /run/sx/allow.yaml; then `$SX_STEPS`.
const SYSTEM: &str = r#"
fail() { echo "fail $*"; exit 1; }
mount -t tmpfs -o mode=0755 sx-run /run || fail "tmpfs on /run"
mkdir -p /run/sx/upper /run/sx/work /run/sx/lib /run/sockexit || fail mkdir
chmod 755 /run/sx /run/sx/lib
mount -t overlay sx-etc -o lowerdir=/etc,upperdir=/run/sx/upper,workdir=/run/sx/work /etc || fail overlay
[ "$(stat -f -c %T /etc)" = overlayfs ] || fail "/etc is not the overlay"
cp "$SX_LIB" /run/sx/lib/libsockexit.so && cp "$SX_CORE" /run/sx/lib/ && chmod 644 /run/sx/lib/* || fail cp
mkdir -p /etc/sockexit
printf '%s' "$SX_POLICY" > /etc/sockexit/policy.yaml
printf 'version: 1\ndefault: allow\naudit: { log: off }\n' > /run/sx/allow.yaml
echo /run/sx/lib/libsockexit.so > /etc/ld.so.preload
eval "$SX_STEPS"
rm /etc/ld.so.preload
echo "step done"
"#;

/// `steps` (shell; `$A` is atk, `$P` prog, `$E` envexec, `$S` slow.so, `$M` atkmany)
/// in system-wide mode, for each build of the front: (build, output). `None` when not
/// root (skipped).
fn system(tag: &str, steps: &str, many: bool) -> Option<Vec<(&'static str, String)>> {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        say("SKIPPED: needs root (unshare -m, overlay, tmpfs)");
        return None;
    }
    require("unshare").expect("unshare (util-linux) is in .ci/packages.txt");
    let dir = TempDir::new(tag);
    let p = progs(dir.path())?;
    let m = if many {
        atk_many(dir.path())?
    } else {
        PathBuf::new()
    };
    let mut all = Vec::new();
    for (build, front) in fronts() {
        let out = Command::new("timeout")
            .args(["120", "unshare", "-m", "--propagation", "private"])
            .args(["sh", "-c", SYSTEM])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("SX_LIB", &front)
            .env("SX_CORE", front.with_file_name("libsockexit_core.so"))
            .env("SX_POLICY", DENY_DOT3)
            .env("SX_STEPS", steps)
            .env("A", &p.atk)
            .env("P", &p.prog)
            .env("E", &p.envexec)
            .env("S", &p.slow)
            .env("M", &m)
            .output()
            .expect("unshare");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("step done"), "{build} front:\n{text}");
        all.push((build, text));
    }
    Some(all)
}

fn want(build: &str, text: &str, lines: &[String]) {
    for l in lines {
        assert!(
            text.lines().any(|t| t == l),
            "{build} front: want {l:?}\n{text}"
        );
    }
}

const REFUSED: &str = "-1 Permission denied";
const THROUGH: &str = "-1 Connection refused";

/// Was a hole: the program sets `SOCKEXIT_ON_ERROR=allow` after start, then makes the
/// core's `dlopen` fail (no descriptor left); the front's fail-closed stand-ins read
/// the *current* environment and handed out libc's own functions, so a refused connect
/// reached the kernel while the message said "failing closed". The front now goes by
/// the variable as its constructor found it (`ON_ERROR`), as the core does.
#[test]
fn attack_on_error_set_after_start_leaves_the_front_closed() {
    let steps = r#"
for h in 127.0.0.3 127.0.0.1; do env -i "$A" onerror $h 9 2>&1 | sed "s/^/onerror $h: /"; done
"#;
    let Some(runs) = system("fla-onerror", steps, false) else {
        return;
    };
    for (build, text) in runs {
        let mut lines = vec![];
        for h in ["127.0.0.3", "127.0.0.1"] {
            lines.push(format!("onerror {h}: connect {h} -> {REFUSED}"));
        }
        assert!(text.contains("failing closed"), "{build}: {text}");
        want(build, &text, &lines);
    }
}

/// setenv/putenv of `SOCKEXIT_POLICY` (an allow-all policy), `SOCKEXIT_ON_ERROR=allow`,
/// an empty `LD_PRELOAD`, or `clearenv()`, before the first IP call: the core loads
/// with the start's environment and the system policy still decides.
#[test]
fn attack_environment_changed_before_the_first_call_changes_nothing() {
    let steps = r#"
for h in 127.0.0.3 127.0.0.1; do
  env -i "$A" envchg /run/sx/allow.yaml $h 9 2>&1 | sed "s/^/envchg $h: /"
  env -i "$A" clearenv $h 9 2>&1 | sed "s/^/clearenv $h: /"
done
"#;
    let Some(runs) = system("fla-env", steps, false) else {
        return;
    };
    for (build, text) in runs {
        let mut lines = vec![];
        for (h, v) in [("127.0.0.3", REFUSED), ("127.0.0.1", THROUGH)] {
            for m in ["envchg", "clearenv"] {
                lines.push(format!("{m} {h}: connect {h} -> {v}"));
            }
        }
        want(build, &text, &lines);
    }
}

/// Two `SOCKEXIT_POLICY` variables, the first empty, the second an allow-all policy:
/// the first counts (as for getenv), and an empty one is none: the system policy.
#[test]
fn attack_a_duplicate_policy_variable_counts_as_getenv_counts_it() {
    let steps = r#"
for h in 127.0.0.3 127.0.0.1; do
  "$E" SOCKEXIT_POLICY= SOCKEXIT_POLICY=/run/sx/allow.yaml -- "$P" $h 9 2>&1 | sed "s/^/dup $h: /"
done
"#;
    let Some(runs) = system("fla-dup", steps, false) else {
        return;
    };
    for (build, text) in runs {
        want(
            build,
            &text,
            &[
                format!("dup 127.0.0.3: connect 127.0.0.3 -> {REFUSED}"),
                format!("dup 127.0.0.1: connect 127.0.0.1 -> {THROUGH}"),
            ],
        );
    }
}

/// An allow-all policy over /etc/sockexit in a view the program made itself, past the
/// hooks (raw system calls): a new mount namespace (`unshare(CLONE_NEWNS)`), a chroot
/// into a bind mount of `/`, a new user and mount namespace as nobody, `setns` into a
/// child's namespace. Each changes the root's mount id: the core fails closed. Going
/// back to the start's root (`fchdir` to it, `chroot(".")`) shows the start's mounts:
/// the real policy decides.
#[test]
fn attack_a_mount_namespace_or_root_of_the_programs_own_fails_closed() {
    let steps = r#"
for h in 127.0.0.3 127.0.0.1; do
  for m in unshare bindroot userns setns chrootback; do
    env -i "$A" $m $h 9 2>&1 | sed "s/^/$m $h: /"
  done
done
"#;
    let Some(runs) = system("fla-ns", steps, false) else {
        return;
    };
    for (build, text) in runs {
        let mut lines = vec![];
        for h in ["127.0.0.3", "127.0.0.1"] {
            for m in ["unshare", "bindroot", "userns", "setns"] {
                lines.push(format!("{m} {h}: connect {h} -> {REFUSED}"));
            }
        }
        lines.push(format!(
            "chrootback 127.0.0.3: connect 127.0.0.3 -> {REFUSED}"
        ));
        lines.push(format!(
            "chrootback 127.0.0.1: connect 127.0.0.1 -> {THROUGH}"
        ));
        want(build, &text, &lines);
        let said = text
            .lines()
            .filter(|l| l.contains("changed its root directory or mount namespace"))
            .count();
        assert_eq!(said, 8, "{build}: one message per fail-closed run\n{text}");
    }
}

/// Every member of the exec family as the program's first hooked call (the variadic
/// `execl`/`execle`/`execlp`, `execveat` with `AT_EMPTY_PATH`, `fexecve`, the `p`
/// forms searching `PATH`): the child is judged by the system policy.
#[test]
fn attack_every_exec_form_as_the_first_call_leaves_the_child_judged() {
    let steps = r#"
d=$(dirname "$P")
for h in 127.0.0.3 127.0.0.1; do
  for k in execve execv execvp execvpe execl execle execlp execveat fexecve posix_spawn posix_spawnp; do
    env -i PATH="$d" "$A" first $k "$P" $h 9 2>&1 | sed "s/^/$k $h: /"
  done
done
"#;
    let Some(runs) = system("fla-exec", steps, false) else {
        return;
    };
    for (build, text) in runs {
        let mut lines = vec![];
        for (h, v) in [("127.0.0.3", REFUSED), ("127.0.0.1", THROUGH)] {
            for k in [
                "execve",
                "execv",
                "execvp",
                "execvpe",
                "execl",
                "execle",
                "execlp",
                "execveat",
                "fexecve",
                "posix_spawn",
                "posix_spawnp",
            ] {
                lines.push(format!("{k} {h}: connect {h} -> {v}"));
            }
        }
        want(build, &text, &lines);
    }
}

/// A thread's first `posix_spawn` racing the main thread's first connect (20 runs):
/// parent and child are both judged every time.
#[test]
fn attack_a_first_spawn_racing_the_first_connect() {
    let steps = r#"
i=0; while [ $i -lt 20 ]; do env -i "$A" race "$P" 127.0.0.3 9 2>&1; i=$((i+1)); done | sort | uniq -c | sed 's/^ *//; s/^/race: /'
"#;
    let Some(runs) = system("fla-race", steps, false) else {
        return;
    };
    for (build, text) in runs {
        want(
            build,
            &text,
            &[format!("race: 40 connect 127.0.0.3 -> {REFUSED}")],
        );
    }
}

/// `fork` while another thread is inside `dlopen` (a 3 s constructor: the loader's
/// lock is held), then `execve` as the child's first hooked call; and `vfork` then
/// `execve`: neither may `dlopen` the core (the child would wait for a lock nobody
/// releases; the vfork child would load it into the parent). The child is judged, the
/// parent keeps no core.
#[test]
fn attack_exec_after_fork_or_vfork_never_loads_the_core() {
    let steps = r#"
for h in 127.0.0.3 127.0.0.1; do
  env -i "$A" forkdl "$S" "$P" $h 9 2>&1 | sed "s/^/forkdl $h: /"
  env -i "$A" vfork "$P" $h 9 2>&1 | sed "s/^/vfork $h: /"
done
"#;
    let Some(runs) = system("fla-fork", steps, false) else {
        return;
    };
    for (build, text) in runs {
        let mut lines = vec![];
        for (h, v) in [("127.0.0.3", REFUSED), ("127.0.0.1", THROUGH)] {
            for m in ["forkdl", "vfork"] {
                lines.push(format!("{m} {h}: connect {h} -> {v}"));
                lines.push(format!("{m} {h}: child exit 0"));
            }
            lines.push(format!("vfork {h}: core mapped after vfork: no"));
        }
        want(build, &text, &lines);
    }
}

/// Was a hole: a program that needs 40 libraries (listed before libc, as the linker
/// puts them) put libc past the 32 objects `elf::Objects` holds, so `Libc::find` found
/// no libc, `load_core` gave up without a word and every hooked call was the `missing`
/// stand-in (-1, errno untouched): an allowed connect refused, `execve` -1 "Success",
/// `dlopen` (void *)-1. `Libc::find` and the next definitions now walk every object
/// (the list says when it is full), in LD_PRELOAD mode and system-wide alike.
#[test]
fn attack_a_program_with_many_libraries_keeps_every_hooked_call() {
    let dir = TempDir::new("fla-many");
    let (Some(p), Some(many)) = (progs(dir.path()), atk_many(dir.path())) else {
        return;
    };
    let policy = dir.write("p.yaml", DENY_DOT3);
    for (build, front) in fronts() {
        let run = |args: &[&std::ffi::OsStr]| {
            let o = Command::new(&many)
                .args(args)
                .env_clear()
                .env("LD_PRELOAD", &front)
                .env("SOCKEXIT_POLICY", &policy)
                .output()
                .expect("run");
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        };
        let text = run(&["connect".as_ref(), "127.0.0.1".as_ref(), "9".as_ref()]);
        want(build, &text, &[format!("connect 127.0.0.1 -> {THROUGH}")]);
        let text = run(&[
            "first".as_ref(),
            "execve".as_ref(),
            p.prog.as_os_str(),
            "127.0.0.3".as_ref(),
            "9".as_ref(),
        ]);
        want(build, &text, &[format!("connect 127.0.0.3 -> {REFUSED}")]);
    }
    // System-wide: the exec family has no next definition in the list either.
    let steps = r#"
for h in 127.0.0.3 127.0.0.1; do
  env -i "$M" first execve "$P" $h 9 2>&1 | sed "s/^/many $h: /"
  env -i "$M" vfork "$P" $h 9 2>&1 | sed "s/^/many vfork $h: /"
done
"#;
    let Some(runs) = system("fla-many-sys", steps, true) else {
        return;
    };
    for (build, text) in runs {
        let mut lines = vec![];
        for (h, v) in [("127.0.0.3", REFUSED), ("127.0.0.1", THROUGH)] {
            lines.push(format!("many {h}: connect {h} -> {v}"));
            lines.push(format!("many vfork {h}: connect {h} -> {v}"));
            lines.push(format!("many vfork {h}: child exit 0"));
        }
        want(build, &text, &lines);
    }
}
