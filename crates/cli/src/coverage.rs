//! Can `LD_PRELOAD` reach this program? `sockexit run` asks before it execs, and
//! `sockexit check --program` asks without starting anything.
//!
//! The program is found as `execvp` finds it (through `PATH` when the name has no
//! slash), a `#!` script is judged by its interpreter (`#!/usr/bin/env NAME` followed
//! through `PATH`), and an ELF file by its headers: no `PT_INTERP` = static; a Go
//! program makes raw system calls even when dynamically linked (cgo); set-user-ID,
//! set-group-ID and file capabilities put it in secure-execution mode, where the
//! dynamic loader ignores an `LD_PRELOAD` entry with a slash.

use crate::elf::{self, Elf};
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Exit status of `run` and `check --program` for a program the library cannot cover.
pub const NOT_COVERED: u8 = 3;

/// The kernel follows at most this many interpreters (`BINPRM_MAX_RECURSION`).
const MAX_DEPTH: usize = 4;
/// What the kernel reads of a `#!` line (`BINPRM_BUF_SIZE`).
const SHEBANG_MAX: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Dynamically linked, not Go, not secure-exec: the library is loaded into it.
    Covered,
    Static,
    Go,
    SecureExec,
    /// A 32-bit program and a 64-bit library, or another machine.
    WrongClass,
    /// It could not be read or understood.
    Unknown,
    /// The dynamic loader run as a command: the program it loads is what counts.
    Loader,
}

/// The answer, with the reason as a sentence that starts with the program's path.
#[derive(Debug)]
pub struct Judgement {
    /// The program as exec will find it.
    pub program: PathBuf,
    pub kind: Kind,
    /// `/usr/sbin/nginx is dynamically linked (...)`.
    pub why: String,
}

impl Judgement {
    pub fn covered(&self) -> bool {
        self.kind == Kind::Covered
    }

    /// What to do about it, for `run` (which can be told `--allow-uncovered`).
    pub fn remedy(&self) -> &'static str {
        match self.kind {
            Kind::Covered => "",
            Kind::Static | Kind::Go => {
                "run it with `sockexit run --supervise` (a seccomp supervisor that judges \
                 its system calls) to enforce the policy on it"
            }
            Kind::SecureExec => {
                "to cover it, install libsockexit.so in a system library directory (e.g. \
                 /usr/lib/x86_64-linux-gnu) with the set-user-ID bit (mode 4755) and preload \
                 it by name (LD_PRELOAD=libsockexit.so), or list it in /etc/ld.so.preload \
                 (every program on the machine); in secure-execution mode the library reads \
                 only /etc/sockexit/policy.yaml"
            }
            Kind::WrongClass => "build libsockexit.so for that architecture and give it with --lib",
            Kind::Unknown => "make it readable to sockexit, or check it with `file`",
            Kind::Loader => "a dynamically linked program is started by this loader anyway",
        }
    }
}

/// Why a program could not be judged at all: it does not exist (exec would fail too).
#[derive(Debug)]
pub struct NotFound(pub String);

/// `PATH` as `execvp` uses it: the environment's, else glibc's default.
fn search_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/bin:/usr/bin"))
}

fn executable(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) only reads the NUL-terminated path.
    p.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0
}

/// `name` as `execvp` finds it: itself when it has a slash, else the first
/// executable regular file of that name in `PATH` (an empty entry is the current
/// directory).
pub fn resolve(name: &OsStr) -> Result<PathBuf, NotFound> {
    if name.as_bytes().contains(&b'/') {
        let p = PathBuf::from(name);
        return if executable(&p) {
            Ok(p)
        } else if p.is_file() {
            Err(NotFound(format!("{}: not executable", p.display())))
        } else if p.exists() {
            Err(NotFound(format!("{}: not a regular file", p.display())))
        } else {
            Err(NotFound(format!("{}: no such file", p.display())))
        };
    }
    if name.is_empty() {
        return Err(NotFound("empty program name".into()));
    }
    let path = search_path();
    for dir in std::env::split_paths(&path) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let p = dir.join(name);
        if executable(&p) {
            return Ok(p);
        }
    }
    Err(NotFound(format!(
        "{}: not found in PATH ({})",
        Path::new(name).display(),
        path.to_string_lossy()
    )))
}

/// Judges the program `name` (found through `PATH` as exec would) against the library
/// `lib` (its class and machine are compared when it is a readable ELF file).
pub fn judge(name: &OsStr, lib: Option<&Path>) -> Result<Judgement, NotFound> {
    let program = resolve(name)?;
    let lib = lib
        .and_then(|l| File::open(l).ok())
        .and_then(|f| elf::parse(&f).ok());
    Ok(judge_file(&program, lib.as_ref(), 0))
}

fn judgement(program: &Path, kind: Kind, why: String) -> Judgement {
    Judgement {
        program: program.to_path_buf(),
        kind,
        why,
    }
}

fn judge_file(program: &Path, lib: Option<&Elf>, depth: usize) -> Judgement {
    let shown = program.display();
    let unknown = |e: &dyn std::fmt::Display| {
        judgement(
            program,
            Kind::Unknown,
            format!("{shown} cannot be inspected ({e}): sockexit cannot tell whether LD_PRELOAD reaches it"),
        )
    };
    let mut f = match File::open(program) {
        Ok(f) => f,
        Err(e) => return unknown(&e),
    };
    let meta = match f.metadata() {
        Ok(m) => m,
        Err(e) => return unknown(&e),
    };
    let mut head = Vec::with_capacity(SHEBANG_MAX);
    if let Err(e) = (&mut f).take(SHEBANG_MAX as u64).read_to_end(&mut head) {
        return unknown(&e);
    }
    if head.starts_with(b"#!") {
        return judge_script(program, &head, lib, depth);
    }
    let e = match elf::parse(&f) {
        Ok(e) => e,
        Err(elf::Error::NotElf) => {
            // execvp hands a file the kernel does not know (ENOEXEC) to /bin/sh.
            let sh = Path::new("/bin/sh");
            if depth >= MAX_DEPTH {
                return judgement(
                    program,
                    Kind::Unknown,
                    format!("{shown}: too many levels of interpreters"),
                );
            }
            let inner = judge_file(sh, lib, depth + 1);
            let why = format!(
                "{shown} has no #! line and is not an ELF program, so it is run by /bin/sh: {}",
                inner.why
            );
            return judgement(program, inner.kind, why);
        }
        Err(e) => return unknown(&e),
    };
    if e.go {
        let linked = match &e.interp {
            Some(_) => "dynamically linked (cgo), ",
            None => "",
        };
        return judgement(
            program,
            Kind::Go,
            format!(
                "{shown} is a Go program, {linked}and Go makes its socket calls as raw system \
                 calls, not through libc: LD_PRELOAD cannot reach them"
            ),
        );
    }
    let Some(interp) = &e.interp else {
        if is_own_loader(program) {
            return judgement(
                program,
                Kind::Loader,
                format!(
                    "{shown} is the dynamic loader itself: what it loads is the program to \
                     judge; name that program instead"
                ),
            );
        }
        return judgement(
            program,
            Kind::Static,
            format!("{shown} is statically linked: LD_PRELOAD cannot reach its socket calls"),
        );
    };
    if let Some(l) = lib {
        if (l.bits, l.machine) != (e.bits, e.machine) {
            return judgement(
                program,
                Kind::WrongClass,
                format!(
                    "{shown} is a {}-bit program for machine {}, and libsockexit.so is {}-bit for \
                     machine {}: the dynamic loader will not load it",
                    e.bits, e.machine, l.bits, l.machine
                ),
            );
        }
    }
    if let Some(what) = secure_exec(program, &meta) {
        return judgement(
            program,
            Kind::SecureExec,
            format!(
                "{shown} {what}: the kernel starts it in secure-execution mode (AT_SECURE), where \
                 the dynamic loader ignores an LD_PRELOAD entry that contains a slash, as \
                 sockexit run's does"
            ),
        );
    }
    judgement(
        program,
        Kind::Covered,
        format!(
            "{shown} is dynamically linked (interpreter {}): LD_PRELOAD loads libsockexit.so \
             into it",
            String::from_utf8_lossy(interp)
        ),
    )
}

/// Whether `program` is the dynamic loader this very program was started with.
fn is_own_loader(program: &Path) -> bool {
    let own = File::open("/proc/self/exe")
        .ok()
        .and_then(|f| elf::parse(&f).ok())
        .and_then(|e| e.interp);
    let Some(own) = own else { return false };
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    canon(Path::new(OsStr::from_bytes(&own))).is_some_and(|l| canon(program) == Some(l))
}

/// `#!INTERP [ARG]`: the kernel runs INTERP with at most one argument (the rest of the
/// line); `env` then looks its first operand up in `PATH`.
fn judge_script(program: &Path, head: &[u8], lib: Option<&Elf>, depth: usize) -> Judgement {
    let shown = program.display();
    let line = &head[2..];
    let line = &line[..line.iter().position(|b| *b == b'\n').unwrap_or(line.len())];
    let line = line.trim_ascii();
    let split = line.iter().position(|b| *b == b' ' || *b == b'\t');
    let (interp, arg) = match split {
        Some(i) => (&line[..i], line[i..].trim_ascii()),
        None => (line, &b""[..]),
    };
    if interp.is_empty() {
        return judgement(
            program,
            Kind::Unknown,
            format!("{shown} has an empty #! line"),
        );
    }
    if depth >= MAX_DEPTH {
        return judgement(
            program,
            Kind::Unknown,
            format!("{shown}: too many levels of interpreters (the kernel follows {MAX_DEPTH})"),
        );
    }
    let interp_path = Path::new(OsStr::from_bytes(interp));
    let mut target = interp_path.to_path_buf();
    let mut via = format!("{}", interp_path.display());
    if interp_path.file_name() == Some(OsStr::new("env")) {
        // `env [-S] [-i] [NAME=VALUE]... PROGRAM ...`: the first word that is
        // neither an option nor an assignment.
        let mut words = arg
            .split(|b| *b == b' ' || *b == b'\t')
            .filter(|w| !w.is_empty());
        let mut word = None;
        while let Some(w) = words.next() {
            if matches!(w, b"-u" | b"-C" | b"--unset" | b"--chdir") {
                words.next(); // the option's argument
            } else if !w.starts_with(b"-") && !w.contains(&b'=') {
                word = Some(w);
                break;
            }
        }
        if let Some(w) = word {
            match resolve(OsStr::from_bytes(w)) {
                Ok(p) => {
                    via = format!(
                        "{} {} ({})",
                        interp_path.display(),
                        String::from_utf8_lossy(w),
                        p.display()
                    );
                    target = p;
                }
                Err(NotFound(e)) => {
                    return judgement(
                        program,
                        Kind::Unknown,
                        format!(
                            "{shown} is a script run by {} {}, and {e}",
                            interp_path.display(),
                            String::from_utf8_lossy(w)
                        ),
                    )
                }
            }
        }
    }
    if !target.exists() {
        return judgement(
            program,
            Kind::Unknown,
            format!(
                "{shown} is a script for {}, which does not exist",
                target.display()
            ),
        );
    }
    let inner = judge_file(&target, lib, depth + 1);
    judgement(
        program,
        inner.kind,
        format!("{shown} is a script run by {via}, and {}", inner.why),
    )
}

/// Why exec would put the program in secure-execution mode for this process, if it
/// would. The kernel sets `AT_SECURE` when the new effective user or group differs
/// from the real one: set-user-ID to another user, set-group-ID to another group, or
/// a caller whose effective ids already differ from its real ones. File capabilities
/// do it too for a non-root caller. The bits do not take effect on a `nosuid` mount
/// or under `no_new_privs`.
fn secure_exec(program: &Path, meta: &std::fs::Metadata) -> Option<String> {
    let mode = meta.mode();
    // SAFETY: the id getters and prctl(PR_GET_NO_NEW_PRIVS) take no pointers.
    let (uid, euid, gid, egid, nnp) = unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
            libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
        )
    };
    let bits = nnp != 1 && !nosuid_mount(program);
    let suid = bits && mode & libc::S_ISUID != 0;
    let sgid = bits && mode & libc::S_ISGID != 0 && mode & libc::S_IXGRP != 0;
    let new_euid = if suid { meta.uid() } else { euid };
    let new_egid = if sgid { meta.gid() } else { egid };
    if new_euid != uid {
        return Some(if suid {
            format!("is set-user-ID (owner uid {})", meta.uid())
        } else {
            format!("would run with effective uid {euid} and real uid {uid}, as sockexit does")
        });
    }
    if new_egid != gid {
        return Some(if sgid {
            format!("is set-group-ID (group gid {})", meta.gid())
        } else {
            format!("would run with effective gid {egid} and real gid {gid}, as sockexit does")
        });
    }
    if uid != 0 && has_file_caps(program) {
        return Some("has file capabilities (security.capability)".into());
    }
    None
}

fn nosuid_mount(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statvfs writes one struct statvfs into `st`, which is that large.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_flag & libc::ST_NOSUID != 0
}

fn has_file_caps(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: with a null buffer and size 0, getxattr only reports the value's size.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    n > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sockexit-cov-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn dynamic_binary_and_scripts_are_covered() {
        let j = judge(OsStr::new("/bin/sh"), None).unwrap();
        assert!(j.covered(), "{j:?}");
        assert!(j.why.contains("dynamically linked"), "{j:?}");
        let d = tmp("scripts");
        let s = script(&d, "a.sh", "#!/bin/sh\necho hi\n");
        let j = judge(s.as_os_str(), None).unwrap();
        assert!(
            j.covered() && j.why.contains("script run by /bin/sh"),
            "{j:?}"
        );
        let s = script(&d, "b", "#! /usr/bin/env -S -u HOME LC_ALL=C sh -e\n");
        let j = judge(s.as_os_str(), None).unwrap();
        assert!(j.covered() && j.why.contains("/usr/bin/env sh ("), "{j:?}");
        let s = script(&d, "c", "#!/usr/bin/env sockexit-no-such-interpreter\n");
        let j = judge(s.as_os_str(), None).unwrap();
        assert_eq!(j.kind, Kind::Unknown, "{j:?}");
        // A script whose interpreter is itself: bounded.
        let s = d.join("loop");
        script(&d, "loop", &format!("#!{}\n", s.display()));
        let j = judge(s.as_os_str(), None).unwrap();
        assert_eq!(j.kind, Kind::Unknown, "{j:?}");
        assert!(j.why.contains("too many levels"), "{j:?}");
        // Neither ELF nor #!: execvp runs it with /bin/sh.
        let s = script(&d, "plain", "echo hi\n");
        let j = judge(s.as_os_str(), None).unwrap();
        assert!(j.covered() && j.why.contains("run by /bin/sh"), "{j:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_dynamic_loader_is_not_called_static() {
        let me = File::open("/proc/self/exe").unwrap();
        let interp = elf::parse(&me).unwrap().interp.unwrap();
        let j = judge(OsStr::from_bytes(&interp), None).unwrap();
        assert_eq!(j.kind, Kind::Loader, "{j:?}");
        assert!(j.why.contains("is the dynamic loader itself"), "{j:?}");
    }

    #[test]
    fn names_resolve_through_path_as_exec_does() {
        let j = judge(OsStr::new("sh"), None).unwrap();
        assert!(
            j.program.is_absolute() && j.program.ends_with("sh"),
            "{j:?}"
        );
        assert!(judge(OsStr::new("sockexit-no-such-program"), None).is_err());
        assert!(judge(OsStr::new("/nonexistent/x"), None).is_err());
    }
}
