//! Attacks on the front (`libsockexit.so`, crates/front): each test names a hole an
//! attack found in its first version (d1df15d) and asserts what the single library
//! (the core preloaded by itself) did. They failed there; the programs are C (tests/front_attack/*.c) so that no
//! hooked call happens before the attack (Python dlopens at start-up, which loads the
//! core and hides every lazy-mode hole).

mod common;

use common::daemon::{missing, require, say};
use common::{preload_path, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;

fn src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/front_attack")
        .join(name)
}

/// `gcc` one of the C files into `dir`; `None` (skipped) without gcc.
fn cc(dir: &Path, name: &str, shared: bool) -> Option<PathBuf> {
    require("gcc")?;
    let out = dir.join(name.trim_end_matches(".c").to_owned() + if shared { ".so" } else { "" });
    let mut c = Command::new("gcc");
    c.arg("-O1").arg("-o").arg(&out).arg(src(name));
    if shared {
        c.args(["-shared", "-fPIC", "-ldl"]);
    }
    let o = c.output().expect("gcc");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(out)
}

fn front() -> PathBuf {
    preload_path()
}

fn core() -> PathBuf {
    front().with_file_name("libsockexit_core.so")
}

/// A copy of the front under `name` in `dir`, with its core beside it.
fn front_as(dir: &Path, name: &str) -> PathBuf {
    let f = dir.join(name);
    std::fs::copy(front(), &f).unwrap();
    std::fs::copy(core(), dir.join("libsockexit_core.so")).unwrap();
    f
}

fn run(prog: &Path, args: &[&str], preload: &str, policy: Option<&Path>) -> String {
    let mut c = Command::new(prog);
    c.args(args).env_clear().env("LD_PRELOAD", preload);
    if let Some(p) = policy {
        c.env("SOCKEXIT_POLICY", p);
    }
    let o = c.output().expect("run");
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

const DENY_DOT2: &str = "version: 1\ndefault: allow\naudit: { log: off }\nrules:\n  \
    - { name: no-dot2, action: deny, calls: [connect], remote: [127.0.0.2/32] }\n";

/// HOLE: the core is `dlopen`ed `RTLD_LOCAL`, so its `dlsym(RTLD_NEXT, ..)` for the real
/// functions searches only its own dependencies: an interposer preloaded after the
/// front (`LD_PRELOAD=libsockexit.so:libproxychains4.so`, or what the exec carry
/// builds: ours first, the program's own entries kept) is skipped for every hooked
/// call — connect, execve, ... The core alone reached it.
#[test]
fn hole_front_first_skips_an_interposer_preloaded_after_it() {
    let dir = TempDir::new("fa-next");
    let (Some(wrap), Some(prog)) = (
        cc(dir.path(), "wrap.c", true),
        cc(dir.path(), "prog.c", false),
    ) else {
        return;
    };
    let policy = dir.write("p.yaml", DENY_DOT2);
    let args = ["127.0.0.1", "9", prog.to_str().unwrap(), "127.0.0.1", "9"];
    for lib in [core(), front()] {
        let pre = format!("{}:{}", lib.display(), wrap.display());
        let out = run(&prog, &args, &pre, Some(&policy));
        assert!(
            out.contains("WRAP-connect") && out.contains("WRAP-execve"),
            "LD_PRELOAD={pre}: the interposer after us is never called:\n{out}"
        );
    }
}

/// HOLE: the eager/lazy choice matches `LD_PRELOAD` entries by the file name
/// `libsockexit.so`; the front preloaded as `libsockexit.so.1` (a symlink) or any other
/// name, without `SOCKEXIT_POLICY`, is lazy: the exec family goes to libc's, and an
/// exec with a rebuilt environment before any other hooked call starts the child
/// without the library (its refused connect passes). The core alone carried itself.
#[test]
fn hole_exec_first_under_another_name_starts_the_child_without_the_library() {
    let dir = TempDir::new("fa-name");
    let (Some(execfirst), Some(prog)) = (
        cc(dir.path(), "execfirst.c", false),
        cc(dir.path(), "prog.c", false),
    ) else {
        return;
    };
    let renamed = front_as(dir.path(), "sockexit-front.so");
    std::os::unix::fs::symlink(&renamed, dir.path().join("libsockexit.so.1")).unwrap();
    // No SOCKEXIT_POLICY: the default policy (absent here, or any policy refusing
    // 127.0.0.1:9) must refuse the child's connect; the core alone does (EACCES).
    let core_alone = run(
        &execfirst,
        &[prog.to_str().unwrap(), "127.0.0.1", "9"],
        core().to_str().unwrap(),
        None,
    );
    assert!(core_alone.contains("Permission denied"), "{core_alone}");
    for name in ["sockexit-front.so", "libsockexit.so.1"] {
        let lib = dir.path().join(name);
        let out = run(
            &execfirst,
            &[prog.to_str().unwrap(), "127.0.0.1", "9"],
            lib.to_str().unwrap(),
            None,
        );
        assert!(
            out.contains("Permission denied"),
            "LD_PRELOAD={}: the child ran without the library:\n{out}",
            lib.display()
        );
    }
}

/// HOLE (breakage): the core is looked for beside the path the loader was given, not
/// the file's real place: `LD_PRELOAD=/elsewhere/libsockexit.so` (a symlink to the
/// installed front) fails closed on every IP call. A symlink to the single library
/// worked.
#[test]
fn hole_a_symlink_to_the_front_from_another_directory_fails_closed() {
    let dir = TempDir::new("fa-symlink");
    let Some(prog) = cc(dir.path(), "prog.c", false) else {
        return;
    };
    let policy = dir.write("p.yaml", DENY_DOT2);
    let link = dir.path().join("libsockexit.so");
    std::os::unix::fs::symlink(front(), &link).unwrap();
    let out = run(
        &prog,
        &["127.0.0.1", "9"],
        link.to_str().unwrap(),
        Some(&policy),
    );
    assert!(out.contains("Connection refused"), "{out}");
}

/// HOLE (breakage): two fronts (a checkout's in `LD_PRELOAD` and the installed one in
/// `/etc/ld.so.preload`, or two copies in `LD_PRELOAD`) load two cores; both attach to
/// the first front, and the second front says "cannot load ...; failing closed" on
/// every process start although its core loaded.
#[test]
fn hole_two_copies_say_the_core_cannot_load() {
    let dir = TempDir::new("fa-two");
    let Some(prog) = cc(dir.path(), "prog.c", false) else {
        return;
    };
    let policy = dir.write("p.yaml", DENY_DOT2);
    let other = front_as(dir.path(), "libsockexit.so");
    let pre = format!("{} {}", front().display(), other.display());
    let out = run(&prog, &["127.0.0.2", "9"], &pre, Some(&policy));
    assert!(out.contains("Permission denied"), "{out}");
    assert!(!out.contains("cannot load"), "{out}");
}

/// HOLE (refused call passes, no raw system call): in lazy mode (system-wide, or a
/// front under another name) a program leaves no descriptor free (RLIMIT_NOFILE) at
/// its first hooked call, so the core's `dlopen` fails; the stand-ins then hand
/// `dlsym`/`dlopen` to libc's, and `dlsym(dlopen("libc.so.6"), "connect")` is libc's
/// own connect, unjudged. The core alone hands back its hook (EACCES).
#[test]
fn hole_a_core_that_could_not_load_leaves_libc_connect_to_dlsym() {
    let dir = TempDir::new("fa-emfile");
    let Some(prog) = cc(dir.path(), "emfile.c", false) else {
        return;
    };
    let lazy = front_as(dir.path(), "sockexit-front.so");
    // The default policy is absent on a test machine: fail closed, EACCES, for both.
    for lib in [core(), lazy] {
        let out = run(&prog, &["127.0.0.2"], lib.to_str().unwrap(), None);
        assert!(
            out.contains("error EACCES"),
            "LD_PRELOAD={}:\n{out}",
            lib.display()
        );
    }
}

/// System-wide (root, private mount namespace as in tests/system_wide.rs): the core is
/// loaded at the first hooked call, and records "the start" (uid, root directory,
/// mount namespace, seccomp mode) *then*: docs/install.md's promises that a process
/// whose namespace changed since start fails closed, and that a root daemon which drops
/// privileges first is held to root's rules, no longer hold for a C program whose first
/// hooked call comes after the change. Each step: the front, then the core alone in
/// /etc/ld.so.preload (the single library).
const SYSTEM: &str = r#"
fail() { echo "fail $*"; exit 1; }
mount -t tmpfs -o mode=0755 sx-run /run || fail "tmpfs on /run"
mkdir -p /run/sx/upper /run/sx/work /run/sx/lib /run/sockexit /run/sx/jail/etc/sockexit || fail mkdir
chmod 755 /run/sx /run/sx/lib
mount -t overlay sx-etc -o lowerdir=/etc,upperdir=/run/sx/upper,workdir=/run/sx/work /etc || fail overlay
[ "$(stat -f -c %T /etc)" = overlayfs ] || fail "/etc is not the overlay"
cp "$SX_LIB" "$SX_CORE" /run/sx/lib/ && chmod 644 /run/sx/lib/* || fail cp
mkdir -p /etc/sockexit
printf 'version: 1\ndefault: allow\naudit: { log: off }\nrules:\n  - { name: no-dot3, action: deny, calls: [connect], remote: [127.0.0.3/32] }\n' > /etc/sockexit/policy.yaml
printf 'version: 1\ndefault: allow\nrules: []\n' >/run/sx/jail/etc/sockexit/policy.yaml
for lib in libsockexit.so libsockexit_core.so; do
  echo /run/sx/lib/$lib > /etc/ld.so.preload
  echo "step $lib plain $(env -i $SX_LATE none x 127.0.0.3:9 2>/dev/null)"
  echo "step $lib clone-mount $(env -i $SX_LATE clone-mount /run/sx/jail 127.0.0.3:9 2>/dev/null)"
  echo "step $lib emfile-dlsym $(env -i $SX_EMFILE 127.0.0.3 2>/dev/null)"
  chown 65534 /etc/sockexit
  echo "step $lib setuid-strict $(env -i $SX_LATE setuid x 127.0.0.1:9 2>/dev/null)"
  chown 0 /etc/sockexit
done
rm /etc/ld.so.preload
echo "step done"
"#;

#[test]
fn hole_system_wide_the_start_is_recorded_at_the_first_hooked_call() {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        say("SKIPPED: needs root (unshare -m, overlay, tmpfs)");
        return;
    }
    if require("unshare").is_none() {
        return missing::<()>("unshare").unwrap_or(());
    }
    let dir = TempDir::new("fa-system");
    let (Some(late), Some(emfile)) = (
        cc(dir.path(), "late.c", false),
        cc(dir.path(), "emfile.c", false),
    ) else {
        return;
    };
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", SYSTEM])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SX_LIB", front())
        .env("SX_CORE", core())
        .env("SX_LATE", &late)
        .env("SX_EMFILE", &emfile)
        .output()
        .expect("unshare");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("step done"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let holes: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("step lib") && !l.ends_with("error EACCES 13"))
        .filter(|l| !l.ends_with("error EACCES"))
        .collect();
    assert!(
        holes.is_empty(),
        "want EACCES everywhere:\n{}",
        holes.join("\n")
    );
}
