//! `sockexit system enable|disable|status`: the library in `/etc/ld.so.preload` for
//! every dynamically linked program on the machine.
//!
//! Only writes files (atomically: a temporary file renamed into place); `--root DIR`
//! puts every path it touches under DIR (tests, image building).

use crate::enable::{is_root, plain, under};
use crate::out::write_atomically;
use crate::out::{fail, say};
use sockexit_engine::Policy;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const PRELOAD: &str = "etc/ld.so.preload";

#[derive(clap::Args)]
#[command(
    about = "System-wide mode: the library in /etc/ld.so.preload judges every program",
    long_about = "System-wide mode: libsockexit.so listed in /etc/ld.so.preload is loaded \
        into every dynamically linked program started afterwards, set-user-ID ones \
        included, which all decide by /etc/sockexit/policy.yaml (scope rules with \
        `programs:`). `enable` refuses unless that policy is valid and applied, and the \
        published generation is what the file says: a broken policy would refuse every \
        program's network. Read docs/install.md before enabling it, including how to \
        recover from a rescue shell."
)]
pub struct SystemArgs {
    #[command(subcommand)]
    cmd: SystemCmd,
}

#[derive(clap::Subcommand)]
enum SystemCmd {
    /// Add the library to /etc/ld.so.preload (only with a valid, applied policy)
    Enable(SystemOpts),
    /// Remove the library from /etc/ld.so.preload
    Disable(SystemOpts),
    /// Say whether system-wide mode is on, and the state of its policy
    Status(SystemOpts),
}

#[derive(clap::Args)]
struct SystemOpts {
    /// The library path to write, as the system sees it [default: /usr/lib/sockexit/libsockexit.so when installed there, else the one `sockexit run` finds]
    #[arg(long, value_name = "PATH")]
    lib: Option<PathBuf>,
    /// Work on DIR/etc/ld.so.preload and DIR/etc/sockexit/policy.yaml instead of /
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
}

/// What the front (`libsockexit.so`) loads from its own directory.
const CORE_LIB: &str = "libsockexit_core.so";

/// The library path to list (as the system sees it) and where it is under `root`.
fn system_lib(o: &SystemOpts) -> Result<(String, PathBuf), String> {
    let lib = match &o.lib {
        Some(l) if l.is_absolute() => l.clone(),
        Some(l) => return Err(format!("--lib {}: must be an absolute path", l.display())),
        None if !is_root(&o.root) || Path::new(crate::INSTALLED_LIB).is_file() => {
            PathBuf::from(crate::INSTALLED_LIB)
        }
        None => crate::run::find_lib(None)?,
    };
    let s = plain(&lib, "library")?;
    let at = under(&o.root, &s);
    if !at.is_file() {
        return Err(format!("{}: no such file", at.display()));
    }
    trusted(&at, &o.root)?;
    // The front loads the core from its own directory: the same trust for that file.
    let core = at.with_file_name(CORE_LIB);
    if !core.is_file() {
        return Err(format!(
            "{}: no such file ({} loads it from its own directory)",
            core.display(),
            at.display()
        ));
    }
    trusted(&core, &o.root)?;
    Ok((s, at))
}

/// Every process on the machine, root's included, will run this file: it and every
/// directory up to `root` must be owned by root (or this user) and writable by no one
/// else, or whoever can replace it owns the machine.
fn trusted(lib: &Path, root: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let mut p = Some(lib);
    while let Some(cur) = p {
        let m = fs::metadata(cur).map_err(|e| format!("{}: {e}", cur.display()))?;
        if (m.uid() != 0 && m.uid() != me) || m.mode() & 0o022 != 0 {
            return Err(format!(
                "{}: owned by uid {} with mode {:04o}: every program would load a library \
                 that others can replace; chown root and chmod go-w",
                cur.display(),
                m.uid(),
                m.mode() & 0o7777
            ));
        }
        if cur == root {
            break;
        }
        p = cur.parent();
    }
    Ok(())
}

fn preload_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split([' ', '\t', ':']))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn is_ours(entry: &str) -> bool {
    entry.rsplit('/').next() == Some("libsockexit.so")
}

/// Why the system policy must not be trusted yet, or `None` when it is valid, applied
/// and what is published is what the files say.
fn system_policy_problem(policy: &Path) -> Option<String> {
    if let Err(e) = Policy::load(policy) {
        return Some(format!("the policy does not load: {e}"));
    }
    match crate::apply::differs_note(policy) {
        None => Some(format!(
            "{} was never applied; run `sockexit apply {}` first (every process uses the \
             published policy, so a later typo can never take the machine's network down)",
            policy.display(),
            policy.display()
        )),
        Some(n) if n.contains("unchanged") => None,
        Some(_) => Some(format!(
            "{} differs from what is published; run `sockexit apply {}` first",
            policy.display(),
            policy.display()
        )),
    }
}

pub fn system(a: SystemArgs) -> ExitCode {
    match a.cmd {
        SystemCmd::Enable(o) => system_enable(o),
        SystemCmd::Disable(o) => system_disable(o),
        SystemCmd::Status(o) => system_status(o),
    }
}

fn read_preload(path: &Path) -> Result<String, String> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn system_enable(o: SystemOpts) -> ExitCode {
    let (lib, _) = match system_lib(&o) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let policy = under(&o.root, crate::DEFAULT_POLICY);
    if let Some(why) = system_policy_problem(&policy) {
        return fail(format_args!(
            "not enabling system-wide mode: {why}; /etc/ld.so.preload unchanged"
        ));
    }
    let path = under(&o.root, "/etc/ld.so.preload");
    let text = match read_preload(&path) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let entries = preload_entries(&text);
    if entries.contains(&lib) {
        say(format_args!("{}: already lists {lib}", path.display()));
        return ExitCode::SUCCESS;
    }
    if let Some(other) = entries.iter().find(|e| is_ours(e)) {
        return fail(format_args!(
            "{} already lists {other}; `sockexit system disable` first",
            path.display()
        ));
    }
    // Ours first; the file's other lines kept as they are.
    let new = format!("{lib}\n{text}");
    if let Err(e) = path
        .parent()
        .map_or(Ok(()), fs::create_dir_all)
        .map_err(|e| e.to_string())
        .and_then(|_| write_atomically(&path, new.as_bytes()))
    {
        return fail(e);
    }
    say(format_args!(
        "system-wide mode on: {} lists {lib}; every dynamically linked program started from \
         now on decides by {}",
        path.display(),
        crate::DEFAULT_POLICY
    ));
    ExitCode::SUCCESS
}

fn system_disable(o: SystemOpts) -> ExitCode {
    let path = under(&o.root, PRELOAD);
    let text = match read_preload(&path) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    if !preload_entries(&text).iter().any(|e| is_ours(e)) {
        say(format_args!(
            "system-wide mode off: {} does not list libsockexit.so",
            path.display()
        ));
        return ExitCode::SUCCESS;
    }
    let mut kept = String::new();
    for line in text.lines() {
        let (body, comment) = match line.find('#') {
            Some(i) => (&line[..i], &line[i..]),
            None => (line, ""),
        };
        let words: Vec<&str> = body
            .split([' ', '\t', ':'])
            .filter(|w| !w.is_empty() && !is_ours(w))
            .collect();
        if words.is_empty() && comment.is_empty() {
            continue;
        }
        kept.push_str(&words.join(" "));
        if !comment.is_empty() {
            if !words.is_empty() {
                kept.push(' ');
            }
            kept.push_str(comment);
        }
        kept.push('\n');
    }
    let res = if kept.trim().is_empty() {
        fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))
    } else {
        write_atomically(&path, kept.as_bytes())
    };
    if let Err(e) = res {
        return fail(e);
    }
    say(format_args!(
        "system-wide mode off: libsockexit.so removed from {}; programs already running \
         keep it until they exit or exec",
        path.display()
    ));
    ExitCode::SUCCESS
}

fn system_status(o: SystemOpts) -> ExitCode {
    let path = under(&o.root, PRELOAD);
    let text = match read_preload(&path) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let ours: Vec<String> = preload_entries(&text)
        .into_iter()
        .filter(|e| is_ours(e))
        .collect();
    if ours.is_empty() {
        say(format_args!(
            "system-wide mode: off ({} does not list libsockexit.so)",
            path.display()
        ));
    } else {
        for l in &ours {
            let exists = under(&o.root, l).is_file();
            say(format_args!(
                "system-wide mode: on ({} lists {l}{})",
                path.display(),
                if exists {
                    ""
                } else {
                    ", which does not exist: ld.so ignores it with an error at every start"
                }
            ));
        }
    }
    let policy = under(&o.root, crate::DEFAULT_POLICY);
    match system_policy_problem(&policy) {
        None => say(format_args!(
            "policy: {}: valid, applied, and the file is what is published",
            policy.display()
        )),
        Some(why) => say(format_args!("policy: {why}")),
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_words() {
        assert_eq!(
            preload_entries("/a.so /b.so # c\n/usr/lib/sockexit/libsockexit.so:/d.so\n"),
            [
                "/a.so",
                "/b.so",
                "/usr/lib/sockexit/libsockexit.so",
                "/d.so"
            ]
        );
    }
}
