//! `sockexit check`: load a policy exactly as the library does and report.

use crate::out::{fail, say};
use sockexit_engine::{Mode, Policy};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const HELP: &str = "\
Examples:
  sockexit check /etc/sockexit/ftpd.yaml
  sockexit check --deny-warnings policy.yaml && install -m 644 policy.yaml /etc/sockexit/

Output: `ok: POLICY: N rules, default deny` on stdout; each warning on stderr as
`warning: POLICY:LINE:COL: ...`. Warnings name rules that can never match
(\"shadowed by rule X\"), fields that cannot apply to a rule's calls, empty sets,
and `default: allow` with only allow rules.

Exit status: 0 valid (warnings allowed), 1 invalid or unreadable
(`error: FILE:LINE:COL: ...` on stderr), 2 warnings with --deny-warnings.";

/// Validate a policy: syntax, keys, addresses, ports, users, set files; then lint it.
#[derive(clap::Args)]
#[command(
    about = "Validate a policy and warn about rules that cannot do what they say",
    long_about = "Validate a policy exactly as libsockexit.so loads it (the same parser, the \
        same user and group lookup in /etc/passwd and /etc/group, the same set files) and \
        warn about rules that can never match or cannot do what they say.",
    after_help = HELP
)]
pub struct Args {
    /// Policy file [default: $SOCKEXIT_POLICY, else /etc/sockexit/policy.yaml]
    #[arg(value_name = "POLICY")]
    policy: Option<PathBuf>,
    /// Exit with status 2 when the policy loads but has warnings
    #[arg(long)]
    deny_warnings: bool,
}

/// A warning as printed: `POLICY:LINE:COL: message`, like a compiler's.
pub fn warning_line(path: &Path, w: &sockexit_engine::Warning) -> String {
    match w.location {
        Some((l, c)) => format!("{}:{l}:{c}: {}", path.display(), w.message),
        None => format!("{}: {}", path.display(), w.message),
    }
}

/// `N rules, default deny[, mode audit][, stealth]`
pub fn summary(p: &Policy) -> String {
    let n = p.rule_count();
    let mut s = format!(
        "{n} rule{}, default {}",
        if n == 1 { "" } else { "s" },
        p.default_verdict().as_str()
    );
    if p.mode() == Mode::Audit {
        s.push_str(", mode audit (nothing is refused, would-be refusals are logged)");
    }
    if p.stealth() {
        s.push_str(", stealth");
    }
    s
}

pub fn main(a: Args) -> ExitCode {
    let path = crate::policy_path(a.policy);
    let policy = match Policy::load(&path) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let warnings = policy.warnings();
    for w in warnings {
        eprintln!("warning: {}", warning_line(&path, w));
    }
    if a.deny_warnings && !warnings.is_empty() {
        eprintln!(
            "error: {}: {} warning{} (--deny-warnings)",
            path.display(),
            warnings.len(),
            if warnings.len() == 1 { "" } else { "s" }
        );
        return ExitCode::from(2);
    }
    say(format_args!("ok: {}: {}", path.display(), summary(&policy)));
    ExitCode::SUCCESS
}
