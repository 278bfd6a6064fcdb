//! `sockexit explain`: which rule decides one call, and the verdict.

use crate::addr::{self, Ident};
use crate::out::{fail, say};
use sockexit_engine::{bpf, Call, FactSource, Facts, Judged, Mode, Policy, Verdict};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

const HELP: &str = "\
Facts you do not give are unknown, as they would be to the library if it could not
learn them: a rule that looks at an unknown fact does not match, and evaluation goes
on to the next rule. A note names each unknown fact that the policy's rules for this
call look at.

Examples:
  sockexit explain ftpd.yaml --call accept --remote 203.0.113.9:51234 --local 0.0.0.0:21
  sockexit explain ftpd.yaml --call accept --remote '[::ffff:10.1.2.3]:40000' --local '[::]:21'
  sockexit explain web.yaml --call connect --remote 127.0.0.1:8080 --user www-data \\
      --program /usr/sbin/nginx
  sockexit explain redis.yaml --call listen --local 0.0.0.0:6379 --json

Output (first line: verdict, deciding rule or `default`, the facts):
  deny  rule=drop-listed  (call=accept remote=203.0.113.9:51234 local=0.0.0.0:21)

With `stealth: true` in the policy, `--call listen --local ADDR:PORT` also says
whether the accept rules left for that listener compile to the socket filter the
library attaches at listen, and how many instructions it has:
  stealth: filter: 37 instructions
  stealth: no filter: too large (5210+ instructions, the kernel allows 4096); ...
  stealth: partial: rule `admins` looks at the user, which can change after listen: ...
The user and group count as fixed, as for a process that cannot switch ids, only
when given and not root; a rule on an unknown fact makes the filter partial.

--json prints one object: verdict, rule, call, remote, local, family, uid, user,
gid, group, program, mode, refused (whether the library would refuse the call:
a deny outside audit mode), unknown (facts the rules need but were not given),
audit_log (where the library would record this decision: syslog, journal, stderr or
the file's path; null when the policy records none), and for a stealth listen: stealth {outcome (filter, accept-all, too-large,
audit-mode, refused), instructions, partial}; for a stealth accept: stealth {syn:
dropped, passes or no-filter}.

For `--call accept` under a stealth policy, a second line says what the filter of a
listener on --local does with this peer's SYN (run in a userspace BPF interpreter):
  stealth: the listener's filter drops this SYN: no SYN-ACK, the peer's connect times out
  stealth: the SYN passes the listener's filter; refused at accept (reset)

Exit status: 0 when the call was judged (whatever the verdict), 1 when the policy
is invalid or cannot be read, 2 on bad arguments (a missing --call, an address or
user that cannot be parsed, --remote with --call listen).";

/// The socket call to decide.
#[derive(Clone, Copy, clap::ValueEnum)]
enum CallArg {
    /// accept(2)/accept4(2): --remote is the peer, --local the listening socket
    Accept,
    /// connect(2): --remote is the destination
    Connect,
    /// listen(2): --local is the bound address; there is no remote
    Listen,
}

impl From<CallArg> for Call {
    fn from(c: CallArg) -> Call {
        match c {
            CallArg::Accept => Call::Accept,
            CallArg::Connect => Call::Connect,
            CallArg::Listen => Call::Listen,
        }
    }
}

/// Show which rule decides a call and the verdict.
#[derive(clap::Args)]
#[command(
    about = "Show which rule decides a call, and whether it is allowed or refused",
    long_about = "Evaluate one accept, connect or listen against a policy, with the facts you \
        give, and show the verdict and the rule that decided it (or `default`). Nothing is \
        sent on the network and no name is resolved.",
    override_usage = "sockexit explain [POLICY] --call <CALL> [--remote <ADDR:PORT>] \
        [--local <ADDR:PORT>] [--user <NAME|UID>] [--group <NAME|GID>] [--program <PATH>] \
        [--v6-only] [--json]",
    after_help = HELP
)]
pub struct Args {
    /// Policy file [default: $SOCKEXIT_POLICY, else /etc/sockexit/policy.yaml]
    #[arg(value_name = "POLICY")]
    policy: Option<PathBuf>,
    /// The socket call to decide
    #[arg(long, value_enum, value_name = "CALL")]
    call: CallArg,
    /// Peer (accept) or destination (connect): 192.0.2.7:22, [2001:db8::7]:22, [::ffff:192.0.2.7]:22
    #[arg(long, value_name = "ADDR:PORT", value_parser = addr::parse_sockaddr)]
    remote: Option<SocketAddr>,
    /// The socket's own address: the listening socket's (accept), the bound one (listen)
    #[arg(long, value_name = "ADDR:PORT", value_parser = addr::parse_sockaddr)]
    local: Option<SocketAddr>,
    /// Effective user of the calling process: a name from /etc/passwd or a uid
    #[arg(long, value_name = "NAME|UID", value_parser = addr::parse_user)]
    user: Option<Ident>,
    /// Effective group of the calling process: a name from /etc/group or a gid
    #[arg(long, value_name = "NAME|GID", value_parser = addr::parse_group)]
    group: Option<Ident>,
    /// Absolute path of the calling program's executable, as the library sees it
    #[arg(long, value_name = "PATH")]
    program: Option<PathBuf>,
    /// For --call listen on [::]: the socket has IPV6_V6ONLY set, so it does not also
    /// listen on 0.0.0.0 (Linux's default is dual-stack)
    #[arg(long)]
    v6_only: bool,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

/// The given facts, plus whether a `[::]` listener is dual-stack.
struct Given<'a> {
    facts: &'a mut Facts,
    dual_stack: bool,
}

impl FactSource for Given<'_> {
    fn remote(&mut self) -> Option<SocketAddr> {
        self.facts.remote()
    }
    fn local(&mut self) -> Option<SocketAddr> {
        self.facts.local()
    }
    fn uid(&mut self) -> Option<u32> {
        self.facts.uid()
    }
    fn gid(&mut self) -> Option<u32> {
        self.facts.gid()
    }
    fn program(&mut self) -> Option<&[u8]> {
        self.facts.program()
    }
    fn dynamic(&mut self) -> Option<&sockexit_engine::DynSets> {
        self.facts.dynamic()
    }
    fn dual_stack(&mut self) -> bool {
        self.dual_stack
    }
}

pub fn main(a: Args) -> ExitCode {
    let call: Call = a.call.into();
    if call == Call::Listen && a.remote.is_some() {
        eprintln!(
            "error: --remote does not apply to --call listen: a listening socket has no peer"
        );
        return ExitCode::from(2);
    }
    let path = crate::policy_path(a.policy.clone());
    let policy = match Policy::load(&path) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let mut facts = Facts {
        remote: a.remote.map(addr::unmap),
        local: a.local.map(addr::unmap),
        uid: a.user.as_ref().map(|u| u.id),
        gid: a.group.as_ref().map(|g| g.id),
        program: resolved_program(a.program.as_deref()).or_else(|| a.program.clone()),
        dynamic: crate::set::current(&path),
    };
    let judged = policy.judge(
        call,
        &mut Given {
            facts: &mut facts,
            dual_stack: !a.v6_only,
        },
    );
    let decision = judged.decision;
    let unknown = unknown_needed(&policy, call, &facts);
    let refused = decision.verdict == Verdict::Deny && policy.mode() == Mode::Enforce;
    // What the library would attach at this listen (stealth), when it would try.
    let compile = |local| {
        compile_listener(
            &policy,
            local,
            a.user.as_ref().map(|u| u.id),
            a.group.as_ref().map(|g| g.id),
            facts.program.as_deref(),
        )
    };
    let stealth = match (call, a.local) {
        (Call::Listen, Some(local)) if policy.stealth() && !refused => Some(compile(local)),
        _ => None,
    };
    // For an accept: what the listener's filter does with this peer's SYN.
    let syn = match (call, a.remote, a.local) {
        (Call::Accept, Some(remote), Some(local)) if policy.stealth() => {
            syn_verdict(&compile(local), remote, local)
        }
        _ => None,
    };
    let stealth = StealthView {
        wanted: call == Call::Listen && policy.stealth(),
        local_given: a.local.is_some(),
        refused,
        compiled: stealth,
        syn,
    };
    if a.json {
        say(json(
            &a, call, &facts, &policy, judged, refused, &unknown, &stealth,
        ));
    } else {
        text(&a, call, &facts, &policy, judged, &unknown);
        stealth.text();
    }
    ExitCode::SUCCESS
}

/// The executable an absolute `--program` path names, every symlink followed, when
/// that is another path: the library matches `/proc/self/exe`, which is resolved.
fn resolved_program(p: Option<&std::path::Path>) -> Option<PathBuf> {
    let p = p.filter(|p| p.is_absolute())?;
    std::fs::canonicalize(p).ok().filter(|t| t != p)
}

/// The filter the library would compile for a listener on `local`, run by `uid`/`gid`
/// (counted as fixed only for a non-root user, as the library does) and `program`.
/// The listener is dual-stack when `local` is `[::]`, as with Linux's default.
pub(crate) fn compile_listener(
    policy: &Policy,
    local: SocketAddr,
    uid: Option<u32>,
    gid: Option<u32>,
    program: Option<&std::path::Path>,
) -> bpf::Compiled {
    use std::os::unix::ffi::OsStrExt;
    let uid = uid.filter(|&u| u != 0);
    let gid = gid.filter(|_| uid.is_some());
    bpf::compile(
        policy,
        &bpf::Listener {
            local,
            v6_only: false,
            uid,
            gid,
            program: program.map(|p| p.as_os_str().as_bytes()),
        },
    )
}

/// What the listener's filter does with a SYN from `remote` to `local`: `Some(true)`
/// passes, `Some(false)` dropped, `None` when there is no filter or the peer cannot
/// reach such a listener (an IPv6 peer and an IPv4 listener).
fn syn_verdict(c: &bpf::Compiled, remote: SocketAddr, local: SocketAddr) -> Option<SynView> {
    let prog = match &c.outcome {
        bpf::Outcome::Filter(f) => f,
        _ => return Some(SynView::NoFilter(outcome_text(c))),
    };
    let v4 = |a: SocketAddr| a.ip().to_canonical().is_ipv4();
    let reachable = match local {
        SocketAddr::V4(_) => v4(remote),
        SocketAddr::V6(l) if l.ip().is_unspecified() => true,
        SocketAddr::V6(_) => v4(remote) == v4(local),
    };
    if !reachable {
        return None;
    }
    let (pkt, off) = bpf::syn_packet(remote, local);
    Some(match bpf::run(prog, &pkt, off) {
        Ok(0) => SynView::Dropped,
        Ok(_) => SynView::Passes,
        Err(e) => SynView::NoFilter(format!("the filter cannot be run: {e}")),
    })
}

enum SynView {
    Dropped,
    Passes,
    NoFilter(String),
}

/// The outcome's short name for JSON.
pub(crate) fn outcome_name(c: &bpf::Compiled) -> &'static str {
    match c.outcome {
        bpf::Outcome::Filter(_) => "filter",
        bpf::Outcome::AcceptAll => "accept-all",
        bpf::Outcome::TooLarge { .. } => "too-large",
        bpf::Outcome::AuditMode => "audit-mode",
    }
}

/// `describe()` without the partial reasons (printed on lines of their own).
pub(crate) fn outcome_text(c: &bpf::Compiled) -> String {
    bpf::Compiled {
        outcome: c.outcome.clone(),
        partial: Vec::new(),
    }
    .describe()
}

struct StealthView {
    /// A listen under a stealth policy: something is to be said.
    wanted: bool,
    local_given: bool,
    refused: bool,
    compiled: Option<bpf::Compiled>,
    /// For an accept under a stealth policy: the listener's filter and this SYN.
    syn: Option<SynView>,
}

impl StealthView {
    fn text(&self) {
        match &self.syn {
            Some(SynView::Dropped) => say(
                "stealth: the listener's filter drops this SYN: no SYN-ACK, the peer's \
                 connect times out",
            ),
            Some(SynView::Passes) if self.refused => {
                say("stealth: the SYN passes the listener's filter; refused at accept (reset)")
            }
            Some(SynView::Passes) => say("stealth: the SYN passes the listener's filter"),
            Some(SynView::NoFilter(why)) => say(format_args!(
                "stealth: {why}{}",
                if self.refused {
                    "; refused at accept (reset)"
                } else {
                    ""
                }
            )),
            None => {}
        }
        if !self.wanted {
            return;
        }
        match &self.compiled {
            Some(c) => {
                say(format_args!("stealth: {}", outcome_text(c)));
                if matches!(c.outcome, bpf::Outcome::Filter(_)) {
                    for p in &c.partial {
                        say(format_args!("stealth: partial: {p}"));
                    }
                }
            }
            None if self.refused => say("stealth: no filter: the listen is refused"),
            None if !self.local_given => {
                say("stealth: give --local ADDR:PORT to see the filter the library would attach")
            }
            None => {}
        }
    }

    fn json(&self) -> Option<serde_json::Value> {
        if let Some(syn) = &self.syn {
            return Some(serde_json::json!({
                "syn": match syn {
                    SynView::Dropped => "dropped",
                    SynView::Passes => "passes",
                    SynView::NoFilter(_) => "no-filter",
                }
            }));
        }
        if !self.wanted || (!self.refused && self.compiled.is_none()) {
            return None;
        }
        Some(match &self.compiled {
            Some(c) => serde_json::json!({
                "outcome": outcome_name(c),
                "instructions": c.insns(),
                "partial": c.partial,
            }),
            None => serde_json::json!({
                "outcome": "refused",
                "instructions": null,
                "partial": [],
            }),
        })
    }
}

/// Facts the policy's rules for `call` look at but that were not given.
fn unknown_needed(policy: &Policy, call: Call, f: &Facts) -> Vec<&'static str> {
    let n = policy.needs(call);
    [
        (
            n.remote && f.remote.is_none() && call != Call::Listen,
            "remote",
        ),
        (n.local && f.local.is_none(), "local"),
        (n.uid && f.uid.is_none(), "user"),
        (n.gid && f.gid.is_none(), "group"),
        (n.program && f.program.is_none(), "program"),
    ]
    .into_iter()
    .filter_map(|(missing, name)| missing.then_some(name))
    .collect()
}

/// The address as the engine sees it, plus the form given when that differs.
fn shown(given: Option<SocketAddr>, seen: Option<SocketAddr>) -> Option<String> {
    match (given, seen) {
        (Some(g), Some(s)) if g != s => Some(format!("{g} (IPv4 {s})")),
        (_, Some(s)) => Some(s.to_string()),
        _ => None,
    }
}

fn family(call: Call, f: &Facts) -> Option<&'static str> {
    let a = if call == Call::Listen {
        f.local
    } else {
        f.remote.or(f.local)
    };
    a.map(|a| if a.is_ipv4() { "ipv4" } else { "ipv6" })
}

fn text(a: &Args, call: Call, f: &Facts, policy: &Policy, j: Judged<'_>, unknown: &[&str]) {
    let d = j.decision;
    let mut facts = vec![format!("call={}", call.as_str())];
    if let Some(r) = shown(a.remote, f.remote) {
        facts.push(format!("remote={r}"));
    }
    if let Some(l) = shown(a.local, f.local) {
        facts.push(format!("local={l}"));
    }
    if let Some(u) = &a.user {
        facts.push(format!("uid={u}"));
    }
    if let Some(g) = &a.group {
        facts.push(format!("gid={g}"));
    }
    if let Some(p) = &a.program {
        facts.push(format!("program={}", p.display()));
    }
    say(format_args!(
        "{:<5} rule={}  ({})",
        d.verdict.as_str(),
        d.rule,
        facts.join(" ")
    ));
    if let Some(why) = judged_as(call, f, &j) {
        say(format_args!("note: {why}"));
    }
    if !unknown.is_empty() {
        say(format_args!(
            "note: not given, so unknown: {}; rules for {} that look at {} did not match",
            unknown.join(", "),
            call.as_str(),
            if unknown.len() == 1 { "it" } else { "them" }
        ));
    }
    if let (Some(given), Some(seen)) = (&a.program, &f.program) {
        if given != seen {
            say(format_args!(
                "note: --program {} resolves to {}, the executable the library sees \
                 (/proc/self/exe), and was judged as that",
                given.display(),
                seen.display()
            ));
        }
    }
    if let Some(p) = &a.program {
        if !p.is_absolute() {
            say(format_args!(
                "note: --program `{}` is not absolute; the library matches `programs:` \
                 against the executable's absolute path",
                p.display()
            ));
        }
    }
    if policy.mode() == Mode::Audit && d.verdict == Verdict::Deny {
        say("note: the policy is in audit mode: this call would be logged, not refused");
    }
    // Said for a target the policy names; the default (syslog) as before, unsaid.
    if policy.audit().log != sockexit_engine::AuditLog::Syslog {
        if let Some(to) = crate::check::recorded_to(policy, d.verdict) {
            say(format_args!("note: audit: recorded, a line to {to}"));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn json(
    a: &Args,
    call: Call,
    f: &Facts,
    policy: &Policy,
    j: Judged<'_>,
    refused: bool,
    unknown: &[&str],
    stealth: &StealthView,
) -> String {
    let d = j.decision;
    let addr = |x: Option<SocketAddr>| x.map(|x| x.to_string());
    let mut v = serde_json::json!({
        "verdict": d.verdict.as_str(),
        "rule": d.rule,
        "call": call.as_str(),
        "remote": addr(f.remote),
        "local": addr(f.local),
        "family": family(call, f),
        "uid": f.uid,
        "user": a.user.as_ref().and_then(|u| u.name.clone()),
        "gid": f.gid,
        "group": a.group.as_ref().and_then(|g| g.name.clone()),
        "program": a.program.as_ref().map(|p| p.to_string_lossy().into_owned()),
        "program_resolved": f.program.as_ref().map(|p| p.to_string_lossy().into_owned()),
        "mode": policy.mode().as_str(),
        "refused": refused,
        "unknown": unknown,
        "audit_log": crate::check::recorded_log(policy, d.verdict),
    });
    if judged_as(call, f, &j).is_some() {
        v["judged"] = serde_json::json!({
            "remote": addr(j.remote),
            "local": addr(j.local.or(f.local)),
        });
    }
    if let Some(st) = stealth.json() {
        v["stealth"] = st;
    }
    v.to_string()
}

/// Why the call was judged with other addresses than the ones given (the form the
/// kernel really uses), or `None` when it was judged as given.
fn judged_as(call: Call, f: &Facts, j: &Judged<'_>) -> Option<String> {
    if let Some(l) = j.local {
        return Some(format!(
            "a dual-stack [::] listener also listens on {l}, and the rules refuse that \
             (give --v6-only for a socket with IPV6_V6ONLY set)"
        ));
    }
    let (given, judged) = (f.remote?, j.remote?);
    if given == judged {
        return None;
    }
    Some(
        if call == Call::Connect && given.ip().to_canonical().is_unspecified() {
            format!(
                "judged as {judged}: Linux sends a connect to {} to {}",
                given.ip(),
                if f.local.is_some() {
                    "the socket's own bound address, or loopback when unbound"
                } else {
                    "loopback (give --local for a socket bound to an address)"
                }
            )
        } else {
            format!("judged as {judged}: {given} is a NAT64 address (64:ff9b::/96) of that IPv4 host, and the rules refuse it")
        },
    )
}
