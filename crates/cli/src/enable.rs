//! `sockexit enable|disable UNIT`: a systemd drop-in that puts a service under a
//! policy (system-wide mode is in `system.rs`).
//!
//! Both only write files (atomically: a temporary file renamed into place); neither
//! reloads systemd nor restarts anything. `--root DIR` puts every path they touch
//! under DIR (tests, image building).

use crate::out::{fail, say, write_atomically};
use sockexit_engine::{AuditLog, Policy};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const DROPIN: &str = "sockexit.conf";

#[derive(clap::Args)]
#[command(
    about = "Put a systemd service under a policy: write a drop-in for UNIT",
    long_about = "Write /etc/systemd/system/UNIT.d/sockexit.conf: Environment= for the \
        library and the policy, ExecStartPre= that applies the policy (the unit does not \
        start on a broken one) and checks that LD_PRELOAD reaches the unit's program, an \
        ExecReload= that applies the policy before the unit's own reload commands (a typo \
        fails the reload and changes nothing), and what the audit log needs. Reads the \
        unit with `systemctl cat` (else its unit file) and says what it could not read. \
        Then: systemctl daemon-reload && systemctl restart UNIT.",
    after_help = "Examples:\n  sockexit enable nginx --policy /etc/sockexit/nginx.yaml --dry-run\n  \
        sockexit enable vsftpd.service --policy /etc/sockexit/ftpd.yaml"
)]
pub struct EnableArgs {
    /// The systemd unit (`.service` is added when UNIT has no suffix)
    #[arg(value_name = "UNIT")]
    unit: String,
    /// The policy the service runs under
    #[arg(long, value_name = "POLICY")]
    policy: PathBuf,
    /// Print the drop-in instead of writing it
    #[arg(long)]
    dry_run: bool,
    /// The library to preload [default: the one `sockexit run` finds]
    #[arg(long, value_name = "PATH")]
    lib: Option<PathBuf>,
    /// Write under DIR instead of / (DIR/etc/systemd/system/UNIT.d/), and read the unit
    /// from DIR's unit directories instead of asking systemctl
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
}

#[derive(clap::Args)]
#[command(about = "Remove the drop-in `sockexit enable` wrote for UNIT")]
pub struct DisableArgs {
    /// The systemd unit
    #[arg(value_name = "UNIT")]
    unit: String,
    /// Work under DIR instead of /
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
}

/// `nginx` → `nginx.service`; `foo.socket`, `bar@1.service` kept.
fn unit_name(u: &str) -> Result<String, String> {
    if u.is_empty() || u.contains('/') || u.starts_with('.') {
        return Err(format!("{u:?}: not a unit name"));
    }
    let has_suffix = [
        ".service", ".socket", ".target", ".mount", ".timer", ".path", ".scope",
    ]
    .iter()
    .any(|s| u.ends_with(s));
    Ok(if has_suffix {
        u.to_owned()
    } else {
        format!("{u}.service")
    })
}

pub(crate) fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

pub(crate) fn is_root(root: &Path) -> bool {
    root == Path::new("/")
}

/// The unit's text, its files in the order systemd reads them (unit file, then
/// drop-ins), ours left out; and where it came from.
fn unit_text(unit: &str, root: &Path) -> Option<(String, String)> {
    if is_root(root) {
        if let Ok(o) = Command::new("systemctl")
            .args(["cat", "--no-pager", "--", unit])
            .output()
        {
            if o.status.success() && !o.stdout.is_empty() {
                let text = String::from_utf8_lossy(&o.stdout);
                // `systemctl cat` heads each file with `# /path`; drop our own drop-in.
                let mut keep = String::new();
                let mut skipping = false;
                for l in text.lines() {
                    if let Some(p) = l.strip_prefix("# /") {
                        skipping = p.ends_with(&format!("{unit}.d/{DROPIN}"));
                    }
                    if !skipping {
                        keep.push_str(l);
                        keep.push('\n');
                    }
                }
                return Some((keep, "systemctl cat".into()));
            }
        }
    }
    for dir in [
        "etc/systemd/system",
        "run/systemd/system",
        "usr/local/lib/systemd/system",
        "usr/lib/systemd/system",
        "lib/systemd/system",
    ] {
        let file = root.join(dir).join(unit);
        let Ok(mut text) = fs::read_to_string(&file) else {
            continue;
        };
        let mut from = file.display().to_string();
        for d in [
            "etc/systemd/system",
            "run/systemd/system",
            "usr/lib/systemd/system",
        ] {
            let Ok(rd) = fs::read_dir(root.join(d).join(format!("{unit}.d"))) else {
                continue;
            };
            let mut confs: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "conf")
                        && p.file_name().is_some_and(|n| n != DROPIN)
                })
                .collect();
            confs.sort();
            for c in confs {
                if let Ok(t) = fs::read_to_string(&c) {
                    text.push('\n');
                    text.push_str(&t);
                    from.push_str(&format!(", {}", c.display()));
                }
            }
        }
        return Some((text, from));
    }
    None
}

/// The effective values of `key=` in the [Service] sections of `text`: an empty
/// assignment resets the list, as systemd does. Continuation lines are joined.
fn service_values(text: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_service = false;
    let mut joined = String::new();
    let mut lines = Vec::new();
    for l in text.lines() {
        if let Some(stripped) = l.strip_suffix('\\') {
            joined.push_str(stripped);
            joined.push(' ');
            continue;
        }
        joined.push_str(l);
        lines.push(std::mem::take(&mut joined));
    }
    for l in lines {
        let t = l.trim();
        if t.starts_with('[') {
            in_service = t == "[Service]";
            continue;
        }
        if !in_service || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some((k, v)) = t.split_once('=') {
            if k.trim() == key {
                let v = v.trim();
                if v.is_empty() {
                    out.clear();
                } else {
                    out.push(v.to_owned());
                }
            }
        }
    }
    out
}

/// The program of an `ExecStart=` value: prefixes (`@-:+!`) dropped, first word,
/// unquoted.
fn exec_program(v: &str) -> Option<String> {
    let v = v.trim_start_matches(['@', '-', ':', '+', '!']).trim_start();
    let word = if let Some(rest) = v.strip_prefix('"') {
        rest.split('"').next()?
    } else if let Some(rest) = v.strip_prefix('\'') {
        rest.split('\'').next()?
    } else {
        v.split_whitespace().next()?
    };
    (!word.is_empty()).then(|| word.to_owned())
}

/// A systemd value needs no quoting for our paths unless they hold a space; refuse
/// those (LD_PRELOAD cannot hold them either).
pub(crate) fn plain(p: &Path, what: &str) -> Result<String, String> {
    let s = p
        .to_str()
        .ok_or_else(|| format!("{what} {}: not UTF-8", p.display()))?;
    if s.bytes()
        .any(|b| b.is_ascii_whitespace() || b == b':' || b == b'"' || b == b'\'')
        || s.contains('%')
        || s.contains('$')
    {
        return Err(format!(
            "{what} {s}: a path with a space, colon, quote, % or $ cannot be written into the drop-in"
        ));
    }
    Ok(s.to_owned())
}

fn self_path() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("cannot find sockexit's own path: {e}"))
}

/// The drop-in text, and the notes to print to the user.
fn dropin(a: &EnableArgs, unit: &str) -> Result<(String, Vec<String>), String> {
    let policy =
        std::path::absolute(&a.policy).map_err(|e| format!("{}: {e}", a.policy.display()))?;
    let loaded = Policy::load(&policy).map_err(|e| e.to_string())?;
    let lib = match &a.lib {
        Some(l) => std::path::absolute(l).map_err(|e| format!("{}: {e}", l.display()))?,
        None => crate::run::find_lib(None)?,
    };
    let (lib_s, policy_s, me) = (
        plain(&lib, "library")?,
        plain(&policy, "policy")?,
        plain(&self_path()?, "sockexit")?,
    );
    let mut notes = Vec::new();
    let unit_read = unit_text(unit, &a.root);
    let (program, reloads) = match &unit_read {
        Some((text, from)) => {
            let starts = service_values(text, "ExecStart");
            let program = starts.first().and_then(|s| exec_program(s));
            if program.is_none() {
                notes.push(format!(
                    "{unit}: no ExecStart= found (read from {from}): add \
                     `ExecStartPre={me} check --program /path/to/program` yourself"
                ));
            }
            (program, Some(service_values(text, "ExecReload")))
        }
        None => {
            notes.push(format!(
                "{unit}: cannot read the unit (neither `systemctl cat` nor a unit file under {}): \
                 the drop-in has no `check --program` step and no ExecReload=; add them as \
                 the comments in it say",
                a.root.display()
            ));
            (None, None)
        }
    };

    let mut d = String::new();
    let w = |d: &mut String, s: &str| {
        d.push_str(s);
        d.push('\n');
    };
    w(&mut d, &format!("# Written by `sockexit enable {unit} --policy {policy_s}`; `sockexit disable {unit}` removes it."));
    w(
        &mut d,
        "# Then: systemctl daemon-reload && systemctl restart the unit.",
    );
    w(&mut d, "[Service]");
    w(
        &mut d,
        "# Every process of the service gets the library and the policy (this replaces",
    );
    w(
        &mut d,
        "# any LD_PRELOAD the unit sets: list other libraries here too, space separated).",
    );
    w(
        &mut d,
        &format!("Environment=LD_PRELOAD={lib_s} SOCKEXIT_POLICY={policy_s}"),
    );
    w(
        &mut d,
        "# Publish the policy before the service starts; a policy that does not load stops",
    );
    w(
        &mut d,
        "# the start with file:line:column in the journal (the library would fail closed).",
    );
    w(
        &mut d,
        "# `+`: runs with full privileges, outside the unit's sandbox, to write /run/sockexit.",
    );
    w(
        &mut d,
        &format!("ExecStartPre=+{me} apply --quiet {policy_s}"),
    );
    match &program {
        Some(p) if p.starts_with('/') => {
            w(
                &mut d,
                "# Refuse to start a program LD_PRELOAD cannot reach (static, Go, set-user-ID):",
            );
            w(&mut d, "# exit status 3 and the reason in the journal.");
            w(&mut d, &format!("ExecStartPre={me} check --program {p}"));
        }
        Some(p) => {
            notes.push(format!(
                "{unit}: ExecStart= names `{p}`, not an absolute path: add \
                 `ExecStartPre={me} check --program /full/path/of/{p}` yourself"
            ));
            w(
                &mut d,
                &format!("# ExecStartPre={me} check --program /full/path/of/{p}"),
            );
        }
        None => {
            w(
                &mut d,
                "# The unit's ExecStart= program could not be read; add:",
            );
            w(
                &mut d,
                &format!("# ExecStartPre={me} check --program /path/to/program"),
            );
        }
    }
    match &reloads {
        Some(own) => {
            w(
                &mut d,
                "# `systemctl reload`: apply first; a broken policy fails the reload and every",
            );
            w(
                &mut d,
                "# process keeps the published one (it can never refuse the service's own listen).",
            );
            w(&mut d, "ExecReload=");
            w(
                &mut d,
                &format!("ExecReload=+{me} apply --quiet {policy_s}"),
            );
            if own.is_empty() {
                w(
                    &mut d,
                    "# The unit has no ExecReload= of its own: reload now only applies the policy.",
                );
            } else {
                w(
                    &mut d,
                    "# The unit's own reload commands, unchanged, after the apply:",
                );
            }
            for r in own {
                w(&mut d, &format!("ExecReload={r}"));
            }
        }
        None => {
            w(
                &mut d,
                "# The unit's ExecReload= could not be read. To apply the policy on reload, add:",
            );
            w(&mut d, "# ExecReload=");
            w(
                &mut d,
                &format!("# ExecReload=+{me} apply --quiet {policy_s}"),
            );
            w(
                &mut d,
                "# ExecReload=<each of the unit's own ExecReload= lines, in order>",
            );
            notes.push(format!(
                "{unit}: its ExecReload= lines are unknown; to apply the policy on reload, put \
                 `ExecReload=`, `ExecReload=+{me} apply --quiet {policy_s}` and then the unit's \
                 own ExecReload= lines in the drop-in"
            ));
        }
    }
    match &loaded.audit().log {
        AuditLog::File(f) => {
            let dir = f.parent().unwrap_or(Path::new("/"));
            w(
                &mut d,
                "# The audit log is a file: the service must be able to write it under",
            );
            w(
                &mut d,
                "# ProtectSystem= / ReadOnlyPaths= (`-`: no error while it does not exist).",
            );
            if dir == Path::new("/var/log/sockexit") {
                w(
                    &mut d,
                    "# LogsDirectory= creates /var/log/sockexit (owned by the unit's User=).",
                );
                w(&mut d, "LogsDirectory=sockexit");
            }
            w(
                &mut d,
                &format!("ReadWritePaths=-{}", plain(dir, "audit log directory")?),
            );
        }
        AuditLog::Syslog => {
            w(
                &mut d,
                "# Audit lines go to syslog (/dev/log): nothing to add.",
            );
        }
        AuditLog::Journal => {
            w(
                &mut d,
                "# Audit lines go to the journal (/run/systemd/journal/socket): nothing to add.",
            );
        }
        AuditLog::Stderr => {
            w(
                &mut d,
                "# Audit lines go to stderr: the journal, under systemd.",
            );
        }
        AuditLog::Off => {}
    }
    let nginx = unit.starts_with("nginx")
        || program
            .as_deref()
            .is_some_and(|p| p.rsplit('/').next() == Some("nginx"));
    if nginx {
        w(
            &mut d,
            "# nginx rebuilds its environment on a binary upgrade; the library puts itself",
        );
        w(
            &mut d,
            "# back, and as belt and braces nginx.conf's main context should say:",
        );
        w(&mut d, "#   env LD_PRELOAD;");
        w(&mut d, "#   env SOCKEXIT_POLICY;");
        notes.push(
            "nginx: also add `env LD_PRELOAD;` and `env SOCKEXIT_POLICY;` to the main context \
             of nginx.conf, so a binary upgrade keeps both"
                .into(),
        );
    }
    Ok((d, notes))
}

fn dropin_path(root: &Path, unit: &str) -> PathBuf {
    under(root, "/etc/systemd/system")
        .join(format!("{unit}.d"))
        .join(DROPIN)
}

pub fn enable(a: EnableArgs) -> ExitCode {
    let unit = match unit_name(&a.unit) {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    let (text, notes) = match dropin(&a, &unit) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    if a.dry_run {
        print!("{text}");
        for n in &notes {
            eprintln!("note: {n}");
        }
        return ExitCode::SUCCESS;
    }
    let path = dropin_path(&a.root, &unit);
    if let Err(e) = path
        .parent()
        .map_or(Ok(()), fs::create_dir_all)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
        .and_then(|_| write_atomically(&path, text.as_bytes()))
    {
        return fail(e);
    }
    for n in &notes {
        eprintln!("note: {n}");
    }
    say(format_args!(
        "wrote {}; now: systemctl daemon-reload && systemctl restart {unit}",
        path.display()
    ));
    ExitCode::SUCCESS
}

pub fn disable(a: DisableArgs) -> ExitCode {
    let unit = match unit_name(&a.unit) {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    let path = dropin_path(&a.root, &unit);
    match fs::remove_file(&path) {
        Ok(()) => {
            if let Some(d) = path.parent() {
                let _ = fs::remove_dir(d); // only when empty
            }
            say(format_args!(
                "removed {}; now: systemctl daemon-reload && systemctl restart {unit}",
                path.display()
            ));
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            say(format_args!("{}: not there; nothing to do", path.display()));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!("cannot remove {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_reset_and_continue() {
        let t = "[Unit]\nExecReload=/no\n[Service]\nExecReload=/a -x\nExecReload=\n\
                 ExecReload=/b \\\n  --long\n# ExecReload=/c\n[Install]\nExecReload=/d\n";
        assert_eq!(service_values(t, "ExecReload"), ["/b    --long"]);
    }

    #[test]
    fn programs() {
        assert_eq!(
            exec_program("-/usr/sbin/nginx -g x").as_deref(),
            Some("/usr/sbin/nginx")
        );
        assert_eq!(
            exec_program("@\"/opt/my app/x\" y").as_deref(),
            Some("/opt/my app/x")
        );
        assert_eq!(exec_program("+!sshd -D").as_deref(), Some("sshd"));
        assert_eq!(exec_program("  "), None);
    }

    #[test]
    fn names() {
        assert_eq!(unit_name("nginx").unwrap(), "nginx.service");
        assert_eq!(
            unit_name("getty@tty1.service").unwrap(),
            "getty@tty1.service"
        );
        assert!(unit_name("../x").is_err());
    }
}
