//! `sockexit run`: check and apply the policy, then exec a program with the library
//! preloaded.

use crate::coverage;
use crate::out::stderr_is_ip_socket;
use sockexit_engine::Policy;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const HELP: &str = "\
Examples:
  sockexit run --policy /etc/sockexit/ftpd.yaml -- /usr/sbin/vsftpd /etc/vsftpd.conf
  sockexit run --policy web.yaml --on-error deny -- nginx -g 'daemon off;'
  SOCKEXIT_POLICY=/etc/sockexit/redis.yaml sockexit run -- redis-server

What CMD gets:
  LD_PRELOAD       absolute path of libsockexit.so, put first in any existing list
  SOCKEXIT_POLICY  the policy's absolute path
  SOCKEXIT_ON_ERROR  only when --on-error is given (otherwise left as inherited)

libsockexit.so is looked for beside the sockexit executable, then in ../lib/sockexit/
and ../lib/ relative to it (/usr/bin/sockexit -> /usr/lib/sockexit/libsockexit.so),
then at /usr/lib/sockexit/libsockexit.so, unless --lib names it.

An invalid policy is reported and CMD is not started (exit 1). CMD that the library
cannot cover: exit 3 (below). CMD missing or not executable: exit 127 or 126.
Otherwise sockexit is replaced by CMD (same pid), so CMD's exit status is the
command's exit status.

Before it execs, run inspects CMD (found through PATH as exec finds it; a #! script
by its interpreter, #!/usr/bin/env NAME through PATH) and does not start what
LD_PRELOAD cannot reach (exit 3): a statically linked program, a Go program (raw
system calls, even when dynamically linked with cgo), a program the kernel starts in
secure-execution mode (set-user-ID or set-group-ID to another user or group, file
capabilities), where the dynamic loader ignores an LD_PRELOAD entry with a slash.
--supervise covers those programs (a seccomp supervisor instead of LD_PRELOAD:
docs/supervise.md); --allow-uncovered starts them unprotected, with a warning. `sockexit check
--program CMD` asks the same question without starting anything.

Not seen even in a covered program: io_uring, raw syscall(2) and inline system calls
(--supervise sees them: it refuses io_uring with ENOSYS and judges every connect,
accept, accept4, listen and Fast Open send at the system call).

With --supervise, sockexit stays the parent: CMD and every descendant run under a
seccomp filter with no_new_privs; sockexit applies the policy, as without
--supervise, and follows later `sockexit apply`s of it; it forwards INT, TERM, HUP,
QUIT, USR1, USR2 and WINCH, exits with CMD's status (128+N when killed by signal N)
once the last supervised process is gone, and refuses to start (exit 1, saying why)
on a kernel without seccomp user notification and SECCOMP_ADDFD_FLAG_SEND (Linux
5.14).";

/// Run a program with libsockexit.so preloaded and the policy set.
#[derive(clap::Args)]
#[command(
    about = "Run a program under a policy (checks the policy, then execs with LD_PRELOAD)",
    long_about = "Check the policy, then replace this process with CMD, with libsockexit.so \
        preloaded and SOCKEXIT_POLICY set, so every accept, connect and listen CMD makes is \
        decided by the policy. Meant for service wrappers and ExecStart= lines.",
    after_help = HELP
)]
pub struct Args {
    /// Policy file [default: $SOCKEXIT_POLICY, else /etc/sockexit/policy.yaml]
    #[arg(long, value_name = "POLICY")]
    policy: Option<PathBuf>,
    /// What the library does if the policy cannot be loaded when CMD starts
    /// (e.g. it changed after this check): deny every IP call (the library's
    /// default) or allow every call
    #[arg(long, value_enum, value_name = "VERDICT")]
    on_error: Option<OnError>,
    /// The preload library to use instead of the one installed with sockexit
    #[arg(long, value_name = "PATH")]
    lib: Option<PathBuf>,
    /// Start CMD even when LD_PRELOAD cannot reach it (statically linked, Go,
    /// set-user-ID), unprotected, with a warning
    #[arg(long)]
    allow_uncovered: bool,
    /// Enforce the policy from a supervisor (seccomp user notification) instead of
    /// LD_PRELOAD: covers static and Go programs, raw system calls and io_uring;
    /// CMD runs with no_new_privs (see docs/supervise.md)
    #[arg(long, conflicts_with_all = ["lib", "on_error", "allow_uncovered"])]
    supervise: bool,
    /// With --supervise: how accepts are judged. auto: by each listener's socket
    /// filter when the policy allows it (stealth, enforce, accept rules on the packet
    /// only, no audit line for allowed accepts), else notified; notify: every accept
    /// is a notification; filter: socket filters or nothing is started
    /// (docs/supervise.md, "Accepts decided by socket filters")
    #[arg(
        long,
        value_enum,
        value_name = "HOW",
        requires = "supervise",
        default_value = "auto"
    )]
    accept: AcceptArg,
    /// The program to run, and its arguments (put `--` before them)
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<OsString>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AcceptArg {
    /// Socket filters when the policy qualifies, else notifications
    Auto,
    /// Every accept is notified
    Notify,
    /// Socket filters, or CMD is not started
    Filter,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnError {
    /// Let every call through
    Allow,
    /// Refuse every IP accept, connect and listen
    Deny,
}

/// Diagnostics of a wrapper share stderr with the service, so they say who they are;
/// and under inetd stderr is the client's socket, which must get none of them.
fn report(level: &str, msg: impl std::fmt::Display) {
    if !stderr_is_ip_socket() {
        eprintln!("sockexit: {level}: {msg}");
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    report("error", msg);
    ExitCode::from(1)
}

/// Where the library is looked for, in order.
fn lib_candidates() -> Result<Vec<PathBuf>, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the sockexit executable's own path: {e}"))?;
    let dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", exe.display()))?;
    let mut v = vec![dir.join("libsockexit.so")];
    if let Some(prefix) = dir.parent() {
        v.push(prefix.join("lib/sockexit/libsockexit.so"));
        v.push(prefix.join("lib/libsockexit.so"));
    }
    let standard = PathBuf::from(crate::INSTALLED_LIB);
    if !v.contains(&standard) {
        v.push(standard);
    }
    Ok(v)
}

pub fn find_lib(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        let p = std::path::absolute(&p).map_err(|e| format!("--lib {}: {e}", p.display()))?;
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("--lib {}: no such file", p.display()))
        };
    }
    let candidates = lib_candidates()?;
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            format!(
                "libsockexit.so not found (looked for {}); install it beside sockexit or \
                 name it with --lib",
                list.join(", ")
            )
        })
}

/// `lib` first, then the inherited list as it was (space or colon separated, as
/// ld.so accepts both), joined with the separator that list already uses.
pub fn preload_list(lib: &OsStr, existing: Option<&OsStr>) -> OsString {
    let existing = existing.map(OsStr::as_bytes).unwrap_or_default();
    let trimmed = existing.trim_ascii();
    let first = trimmed
        .split(|b| *b == b' ' || *b == b':')
        .next()
        .unwrap_or_default();
    if trimmed.is_empty() {
        return lib.to_owned();
    }
    if first == lib.as_bytes() {
        return OsString::from_vec(existing.to_vec());
    }
    let sep: &[u8] = if trimmed.contains(&b':') && !trimmed.contains(&b' ') {
        b":"
    } else {
        b" "
    };
    OsString::from_vec([lib.as_bytes(), sep, existing].concat())
}

pub fn main(a: Args) -> ExitCode {
    let policy = crate::policy_path(a.policy);
    let policy = match std::path::absolute(&policy) {
        Ok(p) => p,
        Err(e) => return fail(format_args!("{}: {e}", policy.display())),
    };
    // As root, a policy or set file others can change is an error here too: the
    // library would fail closed in the service (`Permissions::for_process`).
    let loaded = match Policy::load(&policy) {
        Ok(p) => {
            for w in p.warnings() {
                report("warning", crate::check::warning_line(&policy, w));
            }
            p
        }
        Err(e) => {
            return fail(format_args!(
                "{e}\nsockexit: not starting {}: fix the policy first",
                a.command[0].to_string_lossy()
            ))
        }
    };
    // What runs is what is published: apply before starting, so this service and
    // every process already running under the same path decide with this policy
    // (the supervisor too: it follows later applies as the preload does).
    if let Err(e) = crate::apply::publish(&policy, false) {
        let then = if a.supervise {
            "the supervisor decides with what was last published for this path, if anything, else with the file as it reads it now"
        } else {
            "the service reads the policy file when it starts"
        };
        report("warning", format_args!("not applied ({e}); {then}"));
    }
    if a.supervise {
        return supervise(&policy, loaded, &a.command, a.accept);
    }
    let lib = match find_lib(a.lib) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    if lib
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|b| *b == b' ' || *b == b':')
    {
        return fail(format_args!(
            "{}: LD_PRELOAD cannot name a path containing a space or a colon",
            lib.display()
        ));
    }
    if let Ok(j) = coverage::judge(&a.command[0], Some(&lib)) {
        if !j.covered() {
            if !a.allow_uncovered {
                report(
                    "error",
                    format_args!(
                        "not starting {}: {}; {}; to start it anyway, unprotected, give --allow-uncovered",
                        j.program.display(),
                        j.why,
                        j.remedy()
                    ),
                );
                return ExitCode::from(coverage::NOT_COVERED);
            }
            report(
                "warning",
                format_args!(
                    "starting {} unprotected (--allow-uncovered): {}; the policy does not \
                     judge its accept, connect and listen",
                    j.program.display(),
                    j.why
                ),
            );
        }
    }
    // Not found or not executable: exec says so below, with the shell's exit status.
    let mut cmd = Command::new(&a.command[0]);
    cmd.args(&a.command[1..])
        .env(
            "LD_PRELOAD",
            preload_list(lib.as_os_str(), std::env::var_os("LD_PRELOAD").as_deref()),
        )
        .env("SOCKEXIT_POLICY", &policy);
    if let Some(on) = a.on_error {
        cmd.env(
            "SOCKEXIT_ON_ERROR",
            match on {
                OnError::Allow => "allow",
                OnError::Deny => "deny",
            },
        );
    }
    let err = cmd.exec();
    report(
        "error",
        format_args!("cannot run {}: {err}", Path::new(&a.command[0]).display()),
    );
    ExitCode::from(match err.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    })
}

/// `run --supervise`: the policy is loaded and applied (CMD is not started when it
/// does not load); the supervisor decides with the published generation, followed
/// live, or with `loaded` when the path could not be published; it runs CMD and
/// returns its exit status.
fn supervise(path: &Path, loaded: Policy, command: &[OsString], accept: AcceptArg) -> ExitCode {
    let warn = Box::new(|m: &str| report("warning", m));
    let source = std::fs::canonicalize(path)
        .map_err(|e| format!("{}: {e}", path.display()))
        .and_then(|c| sockexit_supervise::Source::open(&c, &crate::apply::run_dir(), loaded, warn));
    let source = match source {
        Ok(s) => s,
        Err(e) => {
            return fail(format_args!(
                "not starting {} supervised: {e}",
                command[0].to_string_lossy()
            ))
        }
    };
    let choice = match accept {
        AcceptArg::Auto => sockexit_supervise::Choice::Auto,
        AcceptArg::Notify => sockexit_supervise::Choice::Notify,
        AcceptArg::Filter => sockexit_supervise::Choice::Filter,
    };
    let say = std::sync::Arc::new(|m: &str| report("note", m));
    match sockexit_supervise::run(source, command, choice, say) {
        Ok(sockexit_supervise::Outcome::Exited(code)) => ExitCode::from(code),
        Ok(sockexit_supervise::Outcome::NotStarted(msg, code)) => {
            report("error", msg);
            ExitCode::from(code)
        }
        Err(e) => fail(format_args!(
            "not starting {} supervised: {e}",
            command[0].to_string_lossy()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::preload_list;
    use std::ffi::OsStr;

    fn pl(existing: Option<&str>) -> String {
        preload_list(OsStr::new("/l/libsockexit.so"), existing.map(OsStr::new))
            .into_string()
            .unwrap()
    }

    #[test]
    fn prepends_keeping_the_existing_separator() {
        assert_eq!(pl(None), "/l/libsockexit.so");
        assert_eq!(pl(Some("")), "/l/libsockexit.so");
        assert_eq!(pl(Some("/a.so /b.so")), "/l/libsockexit.so /a.so /b.so");
        assert_eq!(pl(Some("/a.so:/b.so")), "/l/libsockexit.so:/a.so:/b.so");
        assert_eq!(pl(Some("/a.so")), "/l/libsockexit.so /a.so");
    }

    #[test]
    fn does_not_list_itself_twice_when_nested() {
        assert_eq!(
            pl(Some("/l/libsockexit.so /a.so")),
            "/l/libsockexit.so /a.so"
        );
    }
}
