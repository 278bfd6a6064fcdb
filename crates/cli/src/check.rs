//! `sockexit check`: load a policy exactly as the library does and report.

use crate::explain::{compile_listener, outcome_text};
use crate::out::{fail, say};
use sockexit_engine::{AuditEvents, AuditLog, Call, Mode, Policy, Verdict};
use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const HELP: &str = "\
Examples:
  sockexit check /etc/sockexit/ftpd.yaml
  sockexit check --deny-warnings policy.yaml && install -m 644 policy.yaml /etc/sockexit/

Output: `ok: POLICY: N rules, default deny` on stdout; each warning on stderr as
`warning: POLICY:LINE:COL: ...`. Warnings name rules that can never match
(\"shadowed by rule X\"), fields that cannot apply to a rule's calls, empty sets,
and `default: allow` with only allow rules; and, when not run as root, a policy,
set file or directory on their path that users other than root or you can change
(as root that is an error, as it is for the library in a root process).

With `stealth: true`, one line per group of listening ports the accept rules tell
apart (their `local_ports`), saying whether the rules left for a wildcard listener
there (0.0.0.0 and dual-stack [::]) compile to the socket filter the library attaches
at listen, and its size; then one `stealth: partial:` line per rule a filter cannot
decide (users, groups and programs are unknown to check):
  stealth: port 21: filter of 37 instructions on 0.0.0.0, 52 on [::]
  stealth: any other port: filter of 2 instructions on 0.0.0.0, 9 on [::]
Use `sockexit explain POLICY --call listen --local ADDR:PORT --user U --program P`
for one listener with known facts. A peer dropped at the SYN never reaches the
library, so it leaves no audit line (the summary says so).

--listeners PID... shows, for running processes, each TCP listening socket and the
filter the kernel has on it (read with pidfd_getfd and SO_GET_FILTER: run as root or
as the process's user):
  sockexit check --listeners $(pidof vsftpd)
  listener: 812 (vsftpd) fd 3 0.0.0.0:21: socket filter of 37 instructions (drops
  refused SYNs; the socket's drop count: ss -tlnm 'sport = :21', skmem d)
The kernel keeps no count of a filter's drops alone: `d` in `ss -tlnm` counts the
SYNs the filter dropped together with connections dropped for a full accept queue.

Exit status: 0 valid (warnings allowed), 1 invalid, unreadable, or (as root)
changeable by others (`error: FILE:LINE:COL: ...` on stderr), 2 warnings with
--deny-warnings.

--program PROGRAM asks whether libsockexit.so can cover a program, without starting
it, exactly as `sockexit run` judges it before it execs (found through PATH; a #!
script by its interpreter):
  sockexit check --program nginx
  covered: /usr/sbin/nginx is dynamically linked (interpreter /lib64/ld-linux-x86-64.so.2): ...
  sockexit check --program ./server
  not covered: ./server is statically linked: LD_PRELOAD cannot reach its socket calls; ...
Exit status 0 covered, 3 not covered (sockexit run refuses it without
--allow-uncovered), 1 not found. Without POLICY only the program is judged; with
both, the policy is checked first and its failure decides the exit status.";

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
    /// Say whether libsockexit.so can cover PROGRAM (found through PATH), as
    /// `sockexit run` judges it, without starting it
    #[arg(long, value_name = "PROGRAM")]
    program: Option<OsString>,
    /// Show the TCP listening sockets of these running processes and the socket
    /// filter (stealth) each carries, with its size, as the kernel reports it
    #[arg(long, value_name = "PID", num_args = 1..)]
    listeners: Vec<u32>,
}

/// `covered: ...` (0) or `not covered: ...` (3), on stdout.
fn check_program(name: &OsStr) -> ExitCode {
    let lib = crate::run::find_lib(None).ok();
    match crate::coverage::judge(name, lib.as_deref()) {
        Err(crate::coverage::NotFound(e)) => fail(e),
        Ok(j) if j.covered() => {
            say(format_args!("covered: {}", j.why));
            ExitCode::SUCCESS
        }
        Ok(j) => {
            say(format_args!(
                "not covered: {}; {}; sockexit run refuses to start it unless given \
                 --allow-uncovered",
                j.why,
                j.remedy()
            ));
            ExitCode::from(crate::coverage::NOT_COVERED)
        }
    }
}

/// A warning as printed: `POLICY:LINE:COL: message`, like a compiler's.
pub fn warning_line(path: &Path, w: &sockexit_engine::Warning) -> String {
    match w.location {
        Some((l, c)) => format!("{}:{l}:{c}: {}", path.display(), w.message),
        None => format!("{}: {}", path.display(), w.message),
    }
}

/// `N rules, default deny[, mode audit][, stealth][, audit lines to TARGET]`
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
        s.push_str(
            ", stealth (a peer dropped at the SYN leaves no audit line: the kernel drops it \
             before the library sees it)",
        );
    }
    // The default (syslog) goes unsaid, as before; any other target is named.
    if p.audit().log != AuditLog::Syslog {
        s.push_str(&format!(
            ", audit lines to {}",
            audit_target(&p.audit().log)
        ));
    }
    s
}

/// Where the library would record a decision with `verdict`, or `None` when the
/// policy records none (`events: deny` and an allowed call, or `log: off`).
pub fn recorded_to(p: &Policy, verdict: Verdict) -> Option<String> {
    let a = p.audit();
    let wanted = verdict == Verdict::Deny || a.events == AuditEvents::All;
    (wanted && a.log != AuditLog::Off).then(|| audit_target(&a.log))
}

/// The policy's word for the target a decision with `verdict` is recorded to
/// (`syslog`, `journal`, `stderr` or the file's path), `None` when it is not recorded.
pub fn recorded_log(p: &Policy, verdict: Verdict) -> Option<String> {
    recorded_to(p, verdict)?;
    Some(match &p.audit().log {
        AuditLog::Syslog => "syslog".into(),
        AuditLog::Journal => "journal".into(),
        AuditLog::Stderr => "stderr".into(),
        AuditLog::File(f) => f.display().to_string(),
        AuditLog::Off => return None,
    })
}

/// Where audit lines go, as `check` and `explain` say it.
pub fn audit_target(log: &AuditLog) -> String {
    match log {
        AuditLog::Syslog => "syslog (/dev/log)".into(),
        AuditLog::Journal => "the journal (journalctl SYSLOG_IDENTIFIER=sockexit)".into(),
        AuditLog::File(f) => f.display().to_string(),
        AuditLog::Stderr => "stderr".into(),
        AuditLog::Off => "nowhere (audit log off)".into(),
    }
}

pub fn main(a: Args) -> ExitCode {
    if !a.listeners.is_empty() {
        if a.policy.is_some() {
            let code = check_policy(a.policy, a.deny_warnings);
            if code != ExitCode::SUCCESS {
                return code;
            }
        }
        return crate::listeners::main(&a.listeners);
    }
    let Some(program) = a.program else {
        return check_policy(a.policy, a.deny_warnings);
    };
    if a.policy.is_none() {
        return check_program(&program);
    }
    let code = check_policy(a.policy, a.deny_warnings);
    if code != ExitCode::SUCCESS {
        return code;
    }
    check_program(&program)
}

fn check_policy(policy: Option<PathBuf>, deny_warnings: bool) -> ExitCode {
    let path = crate::policy_path(policy);
    // `Policy::load` judges who may change the policy and its set files as the
    // library does: as root a file or directory others can write is an error (the
    // library would fail closed), otherwise a warning.
    let policy = match Policy::load(&path) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let warnings = policy.warnings();
    for w in warnings {
        eprintln!("warning: {}", warning_line(&path, w));
    }
    if deny_warnings && !warnings.is_empty() {
        eprintln!(
            "error: {}: {} warning{} (--deny-warnings)",
            path.display(),
            warnings.len(),
            if warnings.len() == 1 { "" } else { "s" }
        );
        return ExitCode::from(2);
    }
    say(format_args!("ok: {}: {}", path.display(), summary(&policy)));
    if let Some(n) = crate::apply::differs_note(&path) {
        say(n);
    }
    for n in crate::set::notes(&path, policy.dynamic_sets()) {
        say(n);
    }
    if policy.stealth() && policy.mode() == Mode::Enforce {
        for l in stealth_lines(&policy) {
            say(l);
        }
    }
    for l in link_lines(&path, &policy) {
        say(l);
    }
    ExitCode::SUCCESS
}

/// `program: POLICY:L:C: rule `R`: PATH resolves to TARGET; ...` for each `programs:`
/// path that is a symlink (or goes through one) on this host.
pub fn link_lines(path: &Path, p: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    for r in p.rules() {
        for (written, target) in r.program_links() {
            let (l, c) = r.location();
            out.push(format!(
                "program: {}:{l}:{c}: rule `{}`: {written} resolves to {}; the rule matches \
                 both (the library sees the resolved executable)",
                path.display(),
                r.name(),
                target.display()
            ));
        }
    }
    out
}

/// At most this many port groups get a line of their own.
const MAX_GROUPS: usize = 20;

/// `stealth: PORTS: ...` per group of ports with the same filters, then the partial
/// reasons.
pub fn stealth_lines(p: &Policy) -> Vec<String> {
    // Port intervals inside which every accept rule's `local_ports` says the same.
    let mut cuts: Vec<u32> = vec![1, 65536];
    for r in p.rules().iter().filter(|r| r.applies_to(Call::Accept)) {
        if let Some(ps) = r.local_ports() {
            for &(lo, hi) in ps.ranges() {
                cuts.extend([u32::from(lo.max(1)), u32::from(hi) + 1]);
            }
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let named = |port: u16| {
        p.rules()
            .iter()
            .filter(|r| r.applies_to(Call::Accept))
            .filter_map(|r| r.local_ports())
            .any(|ps| ps.contains(port))
    };
    // (text, named intervals, includes unnamed ports), in first-seen order.
    type Group = (String, Vec<(u16, u16)>, bool);
    let mut groups: Vec<Group> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0] as u16, (w[1] - 1) as u16);
        let c4 = compile_listener(p, SocketAddr::from(([0u8; 4], lo)), None, None, None);
        let c6 = compile_listener(p, SocketAddr::from(([0u16; 8], lo)), None, None, None);
        for r in c4.partial.iter().chain(&c6.partial) {
            if !partial.contains(r) {
                partial.push(r.clone());
            }
        }
        let text = match (c4.insns(), c6.insns()) {
            (Some(a), Some(b)) => format!("filter of {a} instructions on 0.0.0.0, {b} on [::]"),
            _ if outcome_text(&c4) == outcome_text(&c6) => outcome_text(&c4),
            _ => format!(
                "0.0.0.0: {}; [::]: {}",
                outcome_text(&c4),
                outcome_text(&c6)
            ),
        };
        let i = match groups.iter().position(|g| g.0 == text) {
            Some(i) => i,
            None => {
                groups.push((text, Vec::new(), false));
                groups.len() - 1
            }
        };
        if named(lo) {
            groups[i].1.push((lo, hi));
        } else {
            groups[i].2 = true;
        }
    }
    // Named ports first, by port; "any other port" last.
    groups.sort_by_key(|g| g.1.first().map_or(u32::MAX, |&(a, _)| u32::from(a)));
    let any_named = groups.iter().any(|g| !g.1.is_empty());
    let mut out: Vec<String> = groups
        .iter()
        .take(MAX_GROUPS)
        .map(|(text, ports, rest)| {
            let list: Vec<String> = ports
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            let mut name = match list.len() {
                0 => String::new(),
                1 if ports[0].0 == ports[0].1 => format!("port {}", list[0]),
                _ => format!("ports {}", list.join(", ")),
            };
            if *rest {
                if !name.is_empty() {
                    name.push_str(" and ");
                }
                name.push_str(if any_named {
                    "any other port"
                } else {
                    "any port"
                });
            }
            format!("stealth: {name}: {text}")
        })
        .collect();
    if groups.len() > MAX_GROUPS {
        out.push(format!(
            "stealth: ... and {} more port groups; see `sockexit explain --call listen`",
            groups.len() - MAX_GROUPS
        ));
    }
    out.extend(partial.iter().map(|r| format!("stealth: partial: {r}")));
    out
}
