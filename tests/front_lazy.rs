//! The front resolves the exec family itself while the core waits (system-wide mode:
//! the core loads at the first IP call), from the objects it read once at start. An
//! attack on that: each way a program's *first* hooked call can be an exec (execve,
//! posix_spawn, vfork then execve, from a signal handler), with the children still
//! judged by the system policy, the parent still without the core until its first IP
//! call and judged from then on; and two copies of the front, whose exports must never
//! lead back to each other. Every case runs against both builds of the front: the one
//! the other tests use (with the standard library) and the one `make install` ships
//! (the `front` profile: no standard library, no C start files, its own memory
//! functions).

mod common;

use common::daemon::{require, say};
use common::{installed_front, preload_path, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;

fn cc(dir: &Path, name: &str, from: &str) -> Option<PathBuf> {
    require("gcc")?;
    let out = dir.join(name.trim_end_matches(".c"));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(from).join(name);
    let o = Command::new("gcc")
        .arg("-O1")
        .arg("-o")
        .arg(&out)
        .arg(src)
        .output()
        .expect("gcc");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(out)
}

/// (which build, its path); the core is beside each.
fn fronts() -> [(&'static str, PathBuf); 2] {
    [("std", preload_path()), ("installed", installed_front())]
}

const SYSTEM: &str = r#"
fail() { echo "fail $*"; exit 1; }
mount -t tmpfs -o mode=0755 sx-run /run || fail "tmpfs on /run"
mkdir -p /run/sx/upper /run/sx/work /run/sx/lib /run/sockexit || fail mkdir
chmod 755 /run/sx /run/sx/lib
mount -t overlay sx-etc -o lowerdir=/etc,upperdir=/run/sx/upper,workdir=/run/sx/work /etc || fail overlay
[ "$(stat -f -c %T /etc)" = overlayfs ] || fail "/etc is not the overlay"
cp "$SX_LIB" /run/sx/lib/libsockexit.so && cp "$SX_CORE" /run/sx/lib/ && chmod 644 /run/sx/lib/* || fail cp
mkdir -p /etc/sockexit
printf 'version: 1\ndefault: allow\naudit: { log: off }\nrules:\n  - { name: no-dot3, action: deny, calls: [connect], remote: [127.0.0.3/32] }\n' > /etc/sockexit/policy.yaml
echo /run/sx/lib/libsockexit.so > /etc/ld.so.preload
for mode in exec spawn vfork signal; do
  for host in 127.0.0.3 127.0.0.1; do
    env -i "$SX_FIRST" $mode "$SX_PROG" $host 9 2>&1 | sed "s/^/$mode $host: /"
  done
done
mkdir -p /run/sx/lib2 && cp /run/sx/lib/* /run/sx/lib2/ || fail cp2
echo "/run/sx/lib/libsockexit.so /run/sx/lib2/libsockexit.so" > /etc/ld.so.preload
for host in 127.0.0.3 127.0.0.1; do
  env -i "$SX_FIRST" connect $host 9 2>&1 | sed "s/^/two $host: /"
  env -i "$SX_FIRST" exec "$SX_PROG" $host 9 2>&1 | sed "s/^/two exec $host: /"
done
rm /etc/ld.so.preload
echo "step done"
"#;

#[test]
fn a_first_call_that_is_an_exec_leaves_children_judged_and_the_core_unloaded() {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        say("SKIPPED: needs root (unshare -m, overlay, tmpfs)");
        return;
    }
    require("unshare").expect("unshare (util-linux) is in .ci/packages.txt");
    let dir = TempDir::new("lazy-exec");
    let (Some(first), Some(prog)) = (
        cc(dir.path(), "first.c", "tests/front_lazy"),
        cc(dir.path(), "prog.c", "tests/front_attack"),
    ) else {
        return;
    };
    for (build, front) in fronts() {
        let out = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", SYSTEM])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("SX_LIB", &front)
            .env("SX_CORE", front.with_file_name("libsockexit_core.so"))
            .env("SX_FIRST", &first)
            .env("SX_PROG", &prog)
            .output()
            .expect("unshare");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let ctx = format!(
            "{build} front:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("step done"), "{ctx}");
        for mode in ["exec", "spawn", "vfork", "signal"] {
            // The child: refused by the system policy, or through to the real connect.
            let want = [
                ("127.0.0.3", "connect 127.0.0.3 -> -1 Permission denied"),
                ("127.0.0.1", "connect 127.0.0.1 -> -1 Connection refused"),
            ];
            for (host, line) in want {
                assert!(
                    text.contains(&format!("{mode} {host}: {line}")),
                    "{mode} {host}: want {line:?}\n{ctx}"
                );
            }
        }
        // Two fronts in /etc/ld.so.preload (two paths): the second forwards to the
        // first, and neither is the other's next definition.
        for (host, verdict) in [("127.0.0.3", REFUSED), ("127.0.0.1", THROUGH)] {
            for l in [
                format!("two {host}: parent connect {host} -> -1 {verdict}"),
                format!("two exec {host}: connect {host} -> -1 {verdict}"),
            ] {
                assert!(text.contains(l.as_str()), "want {l:?}\n{ctx}");
            }
        }
        for host in ["127.0.0.3", "127.0.0.1"] {
            // The parent: no core for its spawn; its connect loads it and is judged; its
            // second spawn (through the core's hook now) is judged as the first was.
            let verdict = if host == "127.0.0.3" {
                "Permission denied"
            } else {
                "Connection refused"
            };
            let lines = [
                format!("spawn {host}: parent core mapped after spawn: no"),
                format!("spawn {host}: parent connect {host} -> -1 {verdict}"),
                format!("spawn {host}: parent core mapped after connect: yes"),
            ];
            for l in &lines {
                assert!(text.contains(l.as_str()), "want {l:?}\n{ctx}");
            }
            let children = text
                .lines()
                .filter(|l| *l == format!("spawn {host}: connect {host} -> -1 {verdict}"))
                .count();
            assert_eq!(children, 2, "both spawned children judged\n{ctx}");
        }
    }
}

const REFUSED: &str = "Permission denied";
const THROUGH: &str = "Connection refused";

const DENY_DOT3: &str = "version: 1\ndefault: allow\naudit: { log: off }\nrules:\n  \
    - { name: no-dot3, action: deny, calls: [connect], remote: [127.0.0.3/32] }\n";

/// `first connect HOST 9` with `LD_PRELOAD=preload`, the policy and `extra` variables
/// only: (exited 0, stdout and stderr).
fn connect_under(
    first: &Path,
    preload: &str,
    policy: &Path,
    host: &str,
    extra: &[(&str, &str)],
) -> (bool, String) {
    let o = Command::new(first)
        .args(["connect", host, "9"])
        .env_clear()
        .envs(extra.iter().copied())
        .env("LD_PRELOAD", preload)
        .env("SOCKEXIT_POLICY", policy)
        .output()
        .expect("run");
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

/// Two copies of the front in `LD_PRELOAD` (a checkout's and an installed one): the
/// core's real `connect` is the next definition after the first front, which is the
/// second front's export, which forwards to the first front's: an allowed connect
/// must reach the kernel once (ECONNREFUSED on a closed port), not go round.
#[test]
fn two_fronts_never_lead_back_to_each_other() {
    let dir = TempDir::new("lazy-two");
    let Some(first) = cc(dir.path(), "first.c", "tests/front_lazy") else {
        return;
    };
    let policy = dir.write("p.yaml", DENY_DOT3);
    let [(_, a), (_, b)] = fronts();
    for pre in [
        format!("{} {}", a.display(), b.display()),
        format!("{} {}", b.display(), a.display()),
    ] {
        for (host, verdict) in [
            ("127.0.0.1", "Connection refused"),
            ("127.0.0.3", "Permission denied"),
        ] {
            let (ok, text) = connect_under(&first, &pre, &policy, host, &[]);
            assert!(
                ok && text.contains(&format!("-> -1 {verdict}")),
                "LD_PRELOAD={pre} {host}:\n{text}"
            );
        }
    }
}

/// The constructor reads the environment in one pass without measuring each variable:
/// a variable of 100 kB whose name starts as the front's do, beside the policy's.
#[test]
fn the_environment_is_read_as_getenv_reads_it() {
    let dir = TempDir::new("lazy-env");
    let Some(first) = cc(dir.path(), "first.c", "tests/front_lazy") else {
        return;
    };
    let policy = dir.write("p.yaml", DENY_DOT3);
    for (build, front) in fronts() {
        let big = "x".repeat(100_000);
        let pre = front.to_str().expect("utf-8 path");
        let big = [("SOCKEXIT_BIG", big.as_str())];
        let (_, text) = connect_under(&first, pre, &policy, "127.0.0.3", &big);
        assert!(text.contains("-> -1 Permission denied"), "{build}: {text}");
    }
}

/// An interposer preloaded after the front is reached as the next definition whatever
/// its symbol table looks like: linked with only a System V hash table
/// (`--hash-style=sysv`, tests/front_attack/wrap.c), or defining `connect` as an
/// indirect function (tests/front_lazy/wrapx.c). Its `connect` runs, then the real
/// one: an allowed connect reaches the kernel, a refused one is EACCES before it.
#[test]
fn interposers_after_the_front_are_reached_with_either_hash_table_and_as_ifuncs() {
    let dir = TempDir::new("lazy-interposers");
    let Some(first) = cc(dir.path(), "first.c", "tests/front_lazy") else {
        return;
    };
    let build = |out: &str, src: &Path, extra: &[&str]| {
        let out = dir.path().join(out);
        let o = Command::new("gcc")
            .args(["-O1", "-shared", "-fPIC", "-o"])
            .arg(&out)
            .arg(src)
            .args(extra)
            .arg("-ldl")
            .output()
            .expect("gcc");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sysv = build(
        "wrap-sysv.so",
        &root.join("tests/front_attack/wrap.c"),
        &["-Wl,--hash-style=sysv"],
    );
    let ifunc = build("wrapx.so", &root.join("tests/front_lazy/wrapx.c"), &[]);
    let policy = dir.write("p.yaml", DENY_DOT3);
    for (build, front) in fronts() {
        for wrap in [&sysv, &ifunc] {
            let pre = format!("{}:{}", front.display(), wrap.display());
            for (host, verdict) in [("127.0.0.1", THROUGH), ("127.0.0.3", REFUSED)] {
                let (_, text) = connect_under(&first, &pre, &policy, host, &[]);
                assert!(
                    text.contains(&format!("-> -1 {verdict}")),
                    "{build} LD_PRELOAD={pre} {host}:\n{text}"
                );
                if host == "127.0.0.1" {
                    assert!(
                        text.contains("WRAP-connect"),
                        "{build} LD_PRELOAD={pre}: the interposer after us was skipped:\n{text}"
                    );
                }
            }
        }
    }
}
