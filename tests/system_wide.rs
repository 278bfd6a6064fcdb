//! System-wide mode for real (root): `/etc/ld.so.preload` names the built library and
//! `/etc/sockexit/policy.yaml` is applied, and programs started with an empty
//! environment (no `LD_PRELOAD`, no `SOCKEXIT_*`) are judged.
//!
//! It all happens in a private mount namespace (`unshare -m`): a tmpfs on `/run` (the
//! publications, the library's copy, the overlay's upper layer) and an overlay on
//! `/etc` whose writes land in that tmpfs. The script refuses to go on unless `/etc`
//! is the overlay, and the test checks the host's `/etc/ld.so.preload` is unchanged
//! afterwards; the mounts die with the namespace's last process.

mod common;

use common::daemon::{missing, require, say};
use common::peer::{assert_refused, assert_served, talk, DOT2, LO};
use common::proc::Proc;
use common::{cli_path, example_path, preload_path, TempDir};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

const BANNER: &[u8] = b"220 sockexit banner\r\n";

/// Run by `unshare -m sh -c`. Prints `step NAME ...` lines the test reads; `fail WHAT`
/// and exit 1 when the set-up itself fails. `$SX_*`: the command, the library, the
/// examples directory, the test's directory.
/// The namespace, the overlay and the library's copy (`$LIB`), shared by the scripts.
const SETUP: &str = r#"
fail() { echo "fail $*"; exit 1; }
preload() { if [ -e /etc/ld.so.preload ]; then echo "preload $(tr '\n' ' ' </etc/ld.so.preload)"; else echo "preload absent"; fi; }
mount -t tmpfs -o mode=0755 sx-run /run || fail "tmpfs on /run"
mkdir -p /run/sx/upper /run/sx/work /run/sx/lib || fail mkdir
chmod 755 /run/sx /run/sx/lib
mount -t overlay sx-etc -o lowerdir=/etc,upperdir=/run/sx/upper,workdir=/run/sx/work /etc \
    || fail "overlay on /etc"
# Never write the host's /etc: only go on when /etc is the overlay just mounted.
[ "$(stat -f -c %T /etc)" = overlayfs ] || fail "/etc is not the overlay"
[ -e /run/sx/upper ] && touch /etc/.sx-probe && [ -e /run/sx/upper/.sx-probe ] || fail "overlay upper"
rm /etc/.sx-probe
cp "$SX_LIB" /run/sx/lib/libsockexit.so && chmod 644 /run/sx/lib/libsockexit.so || fail cp
cp "$(dirname "$SX_LIB")/libsockexit_core.so" /run/sx/lib/ && chmod 644 /run/sx/lib/libsockexit_core.so || fail cp
LIB=/run/sx/lib/libsockexit.so
mkdir -p /etc/sockexit
"#;

const SCRIPT: &str = r#"
preload
cp "$SX_DIR/broken.yaml" /etc/sockexit/policy.yaml
"$SX_CLI" system enable --lib $LIB >"$SX_DIR/out.enable-broken" 2>&1; echo "step enable-broken $?"
preload
cp "$SX_DIR/policy.yaml" /etc/sockexit/policy.yaml
"$SX_CLI" system enable --lib $LIB >"$SX_DIR/out.enable-unapplied" 2>&1; echo "step enable-unapplied $?"
preload
"$SX_CLI" apply --quiet /etc/sockexit/policy.yaml || fail apply
"$SX_CLI" system enable --lib $LIB >"$SX_DIR/out.enable" 2>&1; echo "step enable $?"
preload
env -i "$SX_EX/banner_server" --max 1; echo "step served $?"
echo "step refused-connect $(env -i "$SX_EX/connect_client" 127.0.0.3:9)"
"$SX_CLI" system disable >"$SX_DIR/out.disable" 2>&1; echo "step disable $?"
preload
echo "step unjudged-connect $(env -i "$SX_EX/connect_client" 127.0.0.3:9)"
echo "step done"
"#;

fn can_run() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        say("SKIPPED: tests/system_wide.rs needs root (unshare -m, overlay, tmpfs)");
        return false;
    }
    require("unshare").is_some() || missing::<()>("unshare (util-linux)").is_some()
}

/// The script's next line, which must start with `want`: the rest of it.
fn next(p: &mut Proc, want: &str) -> String {
    let l = p.line();
    assert!(!l.starts_with("fail "), "set-up failed: {l}");
    l.strip_prefix(want)
        .unwrap_or_else(|| panic!("expected `{want}...`, got {l:?}"))
        .to_owned()
}

/// What the host's `/etc/ld.so.preload` is: `None` when absent.
fn host_preload() -> Option<Vec<u8>> {
    std::fs::read("/etc/ld.so.preload").ok()
}

/// The judged programs' refusals in the audit log: the accept of 127.0.0.2 by the
/// banner server, the connect to 127.0.0.3 by the client, each decided by the
/// published policy.
fn check_audit_lines(log: &Path) {
    let lines: Vec<Value> = std::fs::read_to_string(log)
        .expect("audit log written by the judged programs")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let program = |v: &Value| {
        Path::new(v["program"].as_str().unwrap())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["rule"], "no-dot2");
    assert_eq!(lines[0]["call"], "accept");
    assert_eq!(program(&lines[0]).as_deref(), Some("banner_server"));
    assert_eq!(lines[1]["rule"], "no-dot3");
    assert_eq!(lines[1]["remote"], "127.0.0.3:9");
    assert_eq!(program(&lines[1]).as_deref(), Some("connect_client"));
    for v in &lines {
        assert_eq!(v["verdict"], "deny");
        assert!(
            v["policy"].as_u64().is_some(),
            "the published policy decided: {v}"
        );
    }
}

#[test]
fn programs_with_no_environment_are_judged_by_the_applied_system_policy() {
    if !can_run() {
        return;
    }
    let host_before = host_preload();
    let dir = TempDir::new("system-wide");
    let log = dir.path().join("audit.jsonl");
    dir.write(
        "broken.yaml",
        "version: 1\ndefault: allow\nrules: [ {name: x\n",
    );
    dir.write(
        "policy.yaml",
        &format!(
            "version: 1\ndefault: allow\nrules:\n  \
             - {{ name: no-dot2, action: deny, calls: [accept], remote: [127.0.0.2/32] }}\n  \
             - {{ name: no-dot3, action: deny, calls: [connect], remote: [127.0.0.3/32] }}\n\
             audit: {{ log: {}, events: deny }}\n",
            log.display()
        ),
    );
    let mut c = Command::new("unshare");
    let script = format!("{SETUP}{SCRIPT}");
    c.args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SX_CLI", cli_path())
        .env("SX_LIB", preload_path())
        .env("SX_EX", example_path("banner_server").parent().unwrap())
        .env("SX_DIR", dir.path());
    let mut p = Proc::start(c);
    // One file per step: the script runs ahead of the test.
    let out = |step: &str| {
        std::fs::read_to_string(dir.path().join(format!("out.{step}"))).unwrap_or_default()
    };

    let before = next(&mut p, "preload ");
    // A policy that does not load: refused, the file as it was.
    let o = || out("enable-broken");
    assert_eq!(next(&mut p, "step enable-broken "), "1", "{}", o());
    assert!(o().contains("the policy does not load"), "{}", o());
    assert_eq!(next(&mut p, "preload "), before);
    // Valid but never applied: refused too.
    let o = || out("enable-unapplied");
    assert_eq!(next(&mut p, "step enable-unapplied "), "1", "{}", o());
    assert!(o().contains("never applied"), "{}", o());
    assert_eq!(next(&mut p, "preload "), before);
    // Applied: enabled, the library listed first.
    assert_eq!(next(&mut p, "step enable "), "0", "{}", out("enable"));
    let on = next(&mut p, "preload ");
    assert!(on.starts_with("/run/sx/lib/libsockexit.so"), "{on}");

    // `env -i banner_server`: no LD_PRELOAD, no SOCKEXIT_POLICY, still judged.
    let l = p.line();
    let addr: SocketAddr = l
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("expected `listening ADDR`, got {l:?}"));
    let SocketAddr::V4(addr) = addr else {
        panic!("{addr}")
    };
    assert_refused(&talk(DOT2, addr), "127.0.0.2 under the system policy");
    assert_served(&talk(LO, addr), BANNER, "127.0.0.1 under the system policy");
    let mut served = String::new();
    while !served.starts_with("step served ") {
        served = p.line();
    }
    assert_eq!(served, "step served 0");
    assert_eq!(next(&mut p, "step refused-connect "), "error EACCES 13");

    // Disabled: the file goes (it listed only ours), and nothing is judged any more.
    assert_eq!(next(&mut p, "step disable "), "0", "{}", out("disable"));
    assert_eq!(next(&mut p, "preload "), "absent");
    assert_eq!(
        next(&mut p, "step unjudged-connect "),
        "error ECONNREFUSED 111"
    );
    next(&mut p, "step done");
    let f = p.wait();
    assert!(f.status.success(), "{f:?}");

    check_audit_lines(&log);
    assert_eq!(
        host_preload(),
        host_before,
        "the host's /etc/ld.so.preload changed"
    );
}

/// The system policy is read at the first IP call, not at start-up (issue 19); these
/// steps attack that. `$SX_DIR/confine.py MODE ARG ADDR` confines itself, then
/// connects to ADDR, which the applied policy refuses.
const CONFINE: &str = r#"
cp "$SX_DIR/policy.yaml" /etc/sockexit/policy.yaml
"$SX_CLI" apply --quiet /etc/sockexit/policy.yaml || fail apply
echo $LIB > /etc/ld.so.preload
# A program that never makes an IP call reads nothing of sockexit's.
env -i strace -f -qq -e trace=%file -o "$SX_DIR/true.trace" /bin/true
env -i strace -f -qq -e trace=%file -o "$SX_DIR/client.trace" "$SX_EX/connect_client" 127.0.0.3:9 >/dev/null
# Nor does it load the core: only the front is mapped, until an IP call.
env -i cat /proc/self/maps >"$SX_DIR/cat.maps"
env -i python3 -c 'import socket; socket.socket().connect_ex(("127.0.0.3", 9)); print(open("/proc/self/maps").read())' >"$SX_DIR/python.maps"
echo "step traced"
# A root of its own, holding a policy that allows everything.
mkdir -p /run/sx/jail/etc/sockexit
printf 'version: 1\ndefault: allow\nrules: []\n' >/run/sx/jail/etc/sockexit/policy.yaml
for m in chroot raw-chroot unshare-mount threads-fork; do
    echo "step $m $(env -i python3 "$SX_DIR/confine.py" $m /run/sx/jail 127.0.0.3:9 2>>"$SX_DIR/stderr")"
done
rm /etc/ld.so.preload
echo "step done"
"#;

const CONFINE_PY: &str = r#"
import ctypes, errno, os, socket, sys, threading
mode, jail, addr = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = addr.rsplit(":", 1)
libc = ctypes.CDLL(None, use_errno=True)

def connect():
    s = socket.socket()
    try:
        s.connect((host, int(port)))
        return "connected"
    except OSError as e:
        return "error %s %d" % (errno.errorcode[e.errno], e.errno)
    finally:
        s.close()

if mode == "chroot":
    os.chroot(jail)
elif mode == "raw-chroot":
    if libc.syscall(161, jail.encode()) != 0:  # SYS_chroot, past the chroot hook
        sys.exit("chroot: %d" % ctypes.get_errno())
elif mode == "unshare-mount":
    if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
        sys.exit("unshare: %d" % ctypes.get_errno())
    src = (jail + "/etc/sockexit").encode()
    if libc.mount(src, b"/etc/sockexit", None, 4096, None) != 0:  # MS_BIND
        sys.exit("mount: %d" % ctypes.get_errno())
elif mode == "threads-fork":
    # Threads make their first IP calls while the main thread forks: no child may
    # wait for a load another thread had begun.
    stop = []
    def spin():
        while not stop:
            connect()
    ts = [threading.Thread(target=spin) for _ in range(4)]
    for t in ts:
        t.start()
    seen = set()
    for _ in range(20):
        pid = os.fork()
        if pid == 0:
            os._exit(0 if connect() == "error EACCES 13" else 1)
        _, st = os.waitpid(pid, 0)
        seen.add(os.waitstatus_to_exitcode(st))
    stop.append(1)
    for t in ts:
        t.join()
    print("children %s" % sorted(seen))
    sys.exit(0)
print(connect())
"#;

#[test]
fn the_system_policy_read_at_the_first_ip_call_cannot_be_swapped_by_confining() {
    if !can_run() || require("strace").is_none() || require("python3").is_none() {
        return;
    }
    let dir = TempDir::new("system-confine");
    dir.write(
        "policy.yaml",
        "version: 1\ndefault: allow\nrules:\n  \
         - { name: no-dot3, action: deny, calls: [connect], remote: [127.0.0.3/32] }\n",
    );
    dir.write("confine.py", CONFINE_PY);
    let script = format!("{SETUP}{CONFINE}");
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SX_CLI", cli_path())
        .env("SX_LIB", preload_path())
        .env("SX_EX", example_path("banner_server").parent().unwrap())
        .env("SX_DIR", dir.path());
    let mut p = Proc::start(c);
    let stderr = || std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();

    next(&mut p, "step traced");
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let ours = |t: &str| {
        t.lines()
            .filter(|l| l.contains("/etc/sockexit") || l.contains("/run/sockexit"))
            .count()
    };
    assert_eq!(ours(&read("true.trace")), 0, "{}", read("true.trace"));
    // The same check finds the reads of a program that connects.
    assert!(ours(&read("client.trace")) > 0, "{}", read("client.trace"));
    let maps = |f: &str, lib: &str| read(f).lines().any(|l| l.ends_with(lib));
    assert!(maps("cat.maps", "/libsockexit.so"), "{}", read("cat.maps"));
    assert!(
        !maps("cat.maps", "/libsockexit_core.so"),
        "{}",
        read("cat.maps")
    );
    assert!(
        maps("python.maps", "/libsockexit_core.so"),
        "{}",
        read("python.maps")
    );

    // The hooks read the policy before the root or the namespace changes; a raw
    // chroot is seen by no hook: the load finds another root and fails closed, saying
    // why.
    for m in ["chroot", "raw-chroot", "unshare-mount"] {
        assert_eq!(
            next(&mut p, &format!("step {m} ")),
            "error EACCES 13",
            "{m}: {}",
            stderr()
        );
    }
    assert!(
        stderr().contains("not read before this process changed its root directory"),
        "{}",
        stderr()
    );
    assert_eq!(next(&mut p, "step threads-fork "), "children [0]");
    next(&mut p, "step done");
    let f = p.wait();
    assert!(f.status.success(), "{f:?}");
}

/// Attacks on the deferred load of the system policy (review of cc75b92, c446acf).
/// Each step should refuse the connect to 127.0.0.3 (or, for the `strict-*` steps,
/// fail closed on a policy directory owned by uid 65534); each line names the hole.
const ATTACK: &str = r#"
cp "$SX_DIR/policy.yaml" /etc/sockexit/policy.yaml
"$SX_CLI" apply --quiet /etc/sockexit/policy.yaml || fail apply
echo $LIB > /etc/ld.so.preload
mkdir -p /run/sx/jail/etc/sockexit
printf 'version: 1\ndefault: allow\nrules: []\n' >/run/sx/jail/etc/sockexit/policy.yaml
for m in raw-unshare-mount libc-clone-mount libc-handle-unshare same-root-chroot seccomp-kill; do
    echo "step $m $(env -i python3 "$SX_DIR/attack.py" $m /run/sx/jail 127.0.0.3:9 2>>"$SX_DIR/stderr")"
done
for n in 1 8; do
    echo "step race-$n $(env -i python3 "$SX_DIR/attack.py" race-fds $n 127.0.0.3:9 2>>"$SX_DIR/stderr")"
done
# Applied, then edited to allow everything but not applied again; the run directory
# root-only (0700): a root process that drops privileges first no longer sees the
# publication and reads the unapplied file.
cp /run/sx/jail/etc/sockexit/policy.yaml /etc/sockexit/policy.yaml && chmod 700 /run/sockexit || fail edit
echo "step unapplied-after-drop $(env -i python3 "$SX_DIR/attack.py" seteuid /run/sx/jail 127.0.0.3:9 2>>"$SX_DIR/stderr")"
chmod 755 /run/sockexit
cp "$SX_DIR/policy.yaml" /etc/sockexit/policy.yaml
# Unpublished (a run directory with no publication), from a directory uid 65534 owns.
mkdir -p /run/sx/norun && chown 65534 /etc/sockexit || fail chown
for m in none seteuid; do
    echo "step strict-$m $(env -i SOCKEXIT_RUN_DIR=/run/sx/norun python3 "$SX_DIR/attack.py" $m /run/sx/jail 127.0.0.1:9 2>>"$SX_DIR/stderr")"
done
rm /etc/ld.so.preload
echo "step done"
"#;

const ATTACK_PY: &str = r#"
import ctypes, errno, os, socket, struct, sys, threading
mode, jail, addr = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = addr.rsplit(":", 1)
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
MS_BIND, MS_REC, MS_PRIVATE, CLONE_NEWNS = 4096, 16384, 1 << 18, 0x00020000

def connect():
    s = socket.socket()
    try:
        s.connect((host, int(port)))
        return "connected"
    except OSError as e:
        return "error %s %d" % (errno.errorcode[e.errno], e.errno)
    finally:
        s.close()

def must(r, what):
    if r != 0:
        sys.exit("%s: %d" % (what, ctypes.get_errno()))

def swap_view(root):
    # Hide the publication, and put the jail's allow-all policy where the policy is.
    must(libc.mount(b"sx-none", (root + "/run/sockexit").encode(), b"tmpfs", 0, None), "tmpfs")
    must(libc.mount((jail + "/etc/sockexit").encode(), (root + "/etc/sockexit").encode(), None, MS_BIND, None), "bind")

if mode == "raw-unshare-mount":
    # HOLE: a new mount namespace past the unshare hook; "/" keeps its device and
    # inode, so the root check does not see it.
    must(libc.syscall(272, CLONE_NEWNS), "unshare")  # SYS_unshare
    must(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "private")
    swap_view("")
elif mode == "libc-handle-unshare":
    # HOLE: the dlsym hook (sys::dl::hook_for) hands back ours only for the socket and
    # exec names: libc's own unshare, looked up in libc's handle, is not hooked.
    real = ctypes.CDLL("libc.so.6", use_errno=True)
    must(real.unshare(CLONE_NEWNS), "unshare")
    must(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "private")
    swap_view("")
elif mode == "libc-clone-mount":
    # HOLE: glibc's clone(3) (not a raw system call) with CLONE_NEWNS: not hooked.
    CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
    def child(_):
        must(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "private")
        swap_view("")
        os.write(1, (connect() + "\n").encode())
        return 0
    cb = CB(child)
    stack = ctypes.create_string_buffer(1 << 20)
    libc.clone.argtypes = [CB, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    pid = libc.clone(cb, ctypes.addressof(stack) + (1 << 20), CLONE_NEWNS | 17, None)  # SIGCHLD
    if pid < 0:
        sys.exit("clone: %d" % ctypes.get_errno())
    os.waitpid(pid, 0)
    sys.exit(0)
elif mode == "same-root-chroot":
    # HOLE: a raw chroot into a bind mount of "/": same (dev, ino), so the load does
    # not fail closed; the view under it has the jail's policy and no publication.
    r = "/run/sx/r"
    os.makedirs(r, exist_ok=True)
    must(libc.mount(b"/", r.encode(), None, MS_BIND | MS_REC, None), "rbind")
    swap_view(r)
    must(libc.syscall(161, r.encode()), "chroot")  # SYS_chroot
    os.chdir("/")
elif mode == "seccomp-kill":
    # HOLE: docs say such a process "fails closed"; with a kill action (libseccomp's
    # SCMP_ACT_KILL, systemd's default) the deferred load's openat kills it instead.
    f = [(0x20, 0, 0, 0), (0x15, 0, 1, 257), (0x06, 0, 0, 0x80000000), (0x06, 0, 0, 0x7fff0000)]
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in f))
    prog = ctypes.create_string_buffer(struct.pack("HxxxxxxP", len(f), ctypes.addressof(code)))
    must(libc.syscall(317, 1, 0, prog), "seccomp")  # SYS_seccomp(SET_MODE_FILTER)
elif mode == "race-fds":
    # HOLE: each thread racing the first load opens the audit log (directory and
    # file); the losers' descriptors are never closed (audit::Sink has no Drop).
    n = int(jail)
    fds = lambda: len(os.listdir("/proc/self/fd"))
    before = fds()
    b = threading.Barrier(n)
    def go():
        b.wait()
        connect()
    ts = [threading.Thread(target=go) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print("fds +%d" % (fds() - before))
    sys.exit(0)
elif mode == "seteuid":
    # HOLE: started as root (strict recorded), but the permission check uses the
    # euid at the load: a directory the dropped-to user owns is trusted.
    os.seteuid(65534)
print(connect())
"#;

#[test]
fn attack_the_system_policy_read_late() {
    if !can_run() || require("python3").is_none() {
        return;
    }
    let dir = TempDir::new("system-attack");
    dir.write(
        "policy.yaml",
        "version: 1\ndefault: allow\nrules:\n  \
         - { name: no-dot3, action: deny, calls: [connect], remote: [127.0.0.3/32] }\n\
         audit: { log: /run/sx/audit.jsonl, events: deny }\n",
    );
    dir.write("attack.py", ATTACK_PY);
    let script = format!("{SETUP}{ATTACK}");
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SX_CLI", cli_path())
        .env("SX_LIB", preload_path())
        .env("SX_EX", example_path("banner_server").parent().unwrap())
        .env("SX_DIR", dir.path());
    let mut p = Proc::start(c);
    let mut got = Vec::new();
    for m in [
        "raw-unshare-mount",
        "libc-clone-mount",
        "libc-handle-unshare",
        "same-root-chroot",
        "seccomp-kill",
    ] {
        got.push((m, next(&mut p, &format!("step {m} ")), "error EACCES 13"));
    }
    let one = next(&mut p, "step race-1 ");
    let eight = next(&mut p, "step race-8 ");
    got.push(("race-8 (fds leaked by racing loads)", eight, "fds +2"));
    assert_eq!(one, "fds +2", "one thread: the audit directory and file");
    got.push((
        "unapplied-after-drop (EACCES on the publication taken for never applied)",
        next(&mut p, "step unapplied-after-drop "),
        "error EACCES 13",
    ));
    assert_eq!(next(&mut p, "step strict-none "), "error EACCES 13");
    got.push((
        "strict-seteuid",
        next(&mut p, "step strict-seteuid "),
        "error EACCES 13",
    ));
    next(&mut p, "step done");
    let f = p.wait();
    assert!(f.status.success(), "{f:?}");
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    let holes: Vec<String> = got
        .iter()
        .filter(|(_, g, want)| g != want)
        .map(|(m, g, want)| format!("{m}: got {g:?}, want {want:?}"))
        .collect();
    assert!(holes.is_empty(), "holes:\n{}\n{stderr}", holes.join("\n"));
}
