//! A raw policy document → the compiled [`Policy`]: top-level keys, sets, rules, and
//! the per-call rule tables. Every error names the file, line, column and key.

use super::files::{parse_net, parse_set_text, read_set_bytes, CapturedFile, SetFiles};
use super::lint::lint;
use super::raw::{ListField, NumOrStr, RawAudit, RawPolicy, RawRule, RawSet};
use super::rule::{Rule, ALL_CALLS, FAM_V4, FAM_V6};
use super::yaml_error::{yaml_error, yaml_options};
use super::{loc, Ctx, MAX_POLICY_BYTES};
use crate::glob::Glob;
use crate::ranges::{AddrSet, AddrSetBuilder, PortSet};
use crate::{
    AuditConfig, AuditEvents, AuditLog, BlockingAccept, Call, Error, LoadOptions, Mode, Needs,
    Permissions, Policy, Verdict, Warning,
};
use serde_saphyr::Spanned;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Line and column, when known.
type At = Option<(usize, usize)>;

pub(crate) fn compile(
    bytes: &[u8],
    origin: &Path,
    opts: &LoadOptions<'_>,
    files: SetFiles<'_>,
) -> Result<Policy, Error> {
    let ctx = Ctx { file: origin };
    let text = policy_text(&ctx, bytes)?;
    let raw: RawPolicy = serde_saphyr::from_str_with_options(text, yaml_options())
        .map_err(|e| yaml_error(origin, e))?;
    let base = origin.parent().unwrap_or(Path::new("."));

    check_version(&ctx, &raw)?;
    let default = match &raw.default {
        Some(d) => keyword(
            &ctx,
            d,
            "default",
            [("allow", Verdict::Allow), ("deny", Verdict::Deny)],
        )?,
        None => {
            return Err(ctx.err(
                None,
                Some("default"),
                "missing `default: allow|deny` (the verdict when no rule matches)",
            ))
        }
    };
    let mode = match &raw.mode {
        None => Mode::Enforce,
        Some(m) => keyword(
            &ctx,
            m,
            "mode",
            [("enforce", Mode::Enforce), ("audit", Mode::Audit)],
        )?,
    };
    let blocking_accept = match &raw.blocking_accept {
        None => BlockingAccept::Return,
        Some(b) => keyword(
            &ctx,
            b,
            "blocking_accept",
            [
                ("return", BlockingAccept::Return),
                ("wait", BlockingAccept::Wait),
            ],
        )?,
    };
    let audit = audit_config(&ctx, raw.audit.as_ref(), base)?;

    let mut warnings = Vec::new();
    // Permission findings about set files, put first (as the policy file's are by
    // its reader), so they are a prefix the library can log on its own.
    let mut file_warnings = Vec::new();
    let mut files = files;
    let sets = compile_sets(
        &ctx,
        &raw,
        base,
        &mut files,
        opts.permissions,
        &mut warnings,
        &mut file_warnings,
    )?;
    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for r in raw.rules.iter().flatten() {
        let mut rule = compile_rule(&ctx, r, &mut names, &sets, opts)?;
        link_programs(&mut rule, &mut files);
        rules.push(rule);
    }

    lint(&rules, default, &mut warnings);
    super::lint::lint_raw(&raw, &rules, &mut warnings);
    let permission_warnings = file_warnings.len();
    file_warnings.append(&mut warnings);
    let (by_call, needs) = index_by_call(&rules);
    let dispatch = crate::dispatch::Dispatch::build(&rules, &by_call);
    let dynamic_sets = sets
        .iter()
        .filter(|(_, d)| matches!(d, SetDef::Dynamic))
        .map(|(n, _)| n.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(Policy {
        dynamic_sets,
        default,
        mode,
        stealth: raw.stealth.unwrap_or(false),
        blocking_accept,
        audit,
        rules,
        by_call,
        needs,
        dispatch,
        warnings: file_warnings,
        permission_warnings,
        path: PathBuf::from(origin),
    })
}

/// The policy as text: at most [`MAX_POLICY_BYTES`], UTF-8, and not empty (only
/// comments counts as empty: a policy whose every line was commented out must not
/// load as "no rules").
fn policy_text<'b>(ctx: &Ctx<'_>, bytes: &'b [u8]) -> Result<&'b str, Error> {
    if bytes.len() > MAX_POLICY_BYTES {
        return Err(ctx.err(
            None,
            None,
            format!("policy is larger than {MAX_POLICY_BYTES} bytes; put long address lists in set files"),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        ctx.err(Some((line, 1)), None, "policy is not valid UTF-8")
    })?;
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---")
    {
        return Err(ctx.err(
            None,
            None,
            "policy is empty: it needs at least `version: 1` and `default: allow|deny`",
        ));
    }
    Ok(text)
}

fn check_version(ctx: &Ctx<'_>, raw: &RawPolicy) -> Result<(), Error> {
    match &raw.version {
        Some(v)
            if matches!(&v.value, NumOrStr::Num(1))
                || matches!(&v.value, NumOrStr::Str(s) if s == "1") =>
        {
            Ok(())
        }
        Some(v) => Err(ctx.err(
            loc(v),
            Some("version"),
            format!(
                "unsupported policy version {}; this sockexit reads version 1",
                v.value
            ),
        )),
        None => Err(ctx.err(None, Some("version"), "missing `version: 1`")),
    }
}

/// `audit:`; a relative log path is relative to the policy's directory (`base`).
fn audit_config(ctx: &Ctx<'_>, raw: Option<&RawAudit>, base: &Path) -> Result<AuditConfig, Error> {
    let mut audit = AuditConfig::default();
    let Some(a) = raw else { return Ok(audit) };
    if let Some(l) = &a.log {
        audit.log = match l.value.as_str() {
            "off" => AuditLog::Off,
            "stderr" => AuditLog::Stderr,
            "syslog" => AuditLog::Syslog,
            "journal" => AuditLog::Journal,
            "" => return Err(ctx.err(loc(l), Some("log"), "empty audit log path")),
            p => AuditLog::File(base.join(p)),
        };
    }
    if let Some(e) = &a.events {
        audit.events = keyword(
            ctx,
            e,
            "events",
            [("deny", AuditEvents::Deny), ("all", AuditEvents::All)],
        )?;
    }
    Ok(audit)
}

/// `sets:`, each compiled once so rules naming it only copy its ranges (a dynamic
/// set only its name).
fn compile_sets(
    ctx: &Ctx<'_>,
    raw: &RawPolicy,
    base: &Path,
    files: &mut SetFiles<'_>,
    perms: Permissions,
    warnings: &mut Vec<Warning>,
    file_warnings: &mut Vec<Warning>,
) -> Result<HashMap<String, SetDef>, Error> {
    let mut sets = HashMap::new();
    for (name, s) in raw.sets.iter().flatten() {
        let set = match &s.value {
            RawSet::Dynamic => {
                sets.insert(name.clone(), SetDef::Dynamic);
                continue;
            }
            RawSet::List(items) => {
                let mut b = AddrSetBuilder::default();
                for sp in items {
                    let it = &sp.value;
                    let net = parse_net(it).ok_or_else(|| {
                        ctx.err(
                            loc(sp).or(loc(s)),
                            Some(name),
                            format!("set `{name}`: `{it}` is not an IP address or CIDR prefix"),
                        )
                    })?;
                    b.add(net);
                }
                b.build()
            }
            RawSet::Null => {
                return Err(ctx.err(
                    loc(s),
                    Some(name),
                    format!("set `{name}` has no value (its entries commented out?): list addresses, write `[]` for an empty set, or `{{ file: PATH }}`"),
                ))
            }
            RawSet::File(f) => {
                let (set, mut found) = set_file(ctx, name, loc(s), &base.join(f), files, perms)?;
                file_warnings.append(&mut found);
                set
            }
        };
        if set.is_empty() {
            warnings.push(Warning {
                rule: None,
                location: loc(s),
                message: format!("set `{name}` is empty: rules naming only it match no address"),
            });
        }
        sets.insert(name.clone(), SetDef::Static(set));
    }
    Ok(sets)
}

/// A compiled `sets:` entry.
pub(super) enum SetDef {
    /// Its addresses, copied into the rules that name it.
    Static(AddrSet),
    /// `{ dynamic: true }`: looked up at decision time (`crate::dynset`).
    Dynamic,
}

/// `{ file: PATH }`: read (or replay) and parse as `files` says; with the permission
/// findings of the read (replayed too).
fn set_file(
    ctx: &Ctx<'_>,
    name: &str,
    at: At,
    path: &Path,
    files: &mut SetFiles<'_>,
    perms: Permissions,
) -> Result<(AddrSet, Vec<Warning>), Error> {
    match files {
        SetFiles::Disk => {
            let (bytes, found) = read_set_bytes(ctx, name, at, path, perms)?;
            Ok((parse_set_text(path, &bytes)?, found))
        }
        SetFiles::Capture { into, parse_up_to } => {
            let (bytes, found) = read_set_bytes(ctx, name, at, path, perms)?;
            let set = if bytes.len() <= *parse_up_to {
                parse_set_text(path, &bytes)?
            } else {
                AddrSetBuilder::default().build()
            };
            into.push(CapturedFile {
                path: path.to_path_buf(),
                bytes,
                warnings: found.clone(),
            });
            Ok((set, found))
        }
        SetFiles::Replay(from) => {
            match from.iter().find(|c| !c.is_program_link() && c.path == path) {
                Some(c) => Ok((parse_set_text(path, &c.bytes)?, c.warnings.clone())),
                // Only if the policy bytes differ from the captured ones.
                None => Err(ctx.err(
                    at,
                    Some(name),
                    format!("set file {} was not read with the policy", path.display()),
                )),
            }
        }
    }
}

/// One rule's context for errors: `rule `NAME`: ...` at the item, else at the rule.
struct RuleCtx<'a> {
    ctx: &'a Ctx<'a>,
    name: &'a str,
    at: At,
    sets: &'a HashMap<String, SetDef>,
}

impl RuleCtx<'_> {
    fn err_at(&self, at: At, key: &str, msg: String) -> Error {
        self.ctx.err(
            at.or(self.at),
            Some(key),
            format!("rule `{}`: {msg}", self.name),
        )
    }

    fn err(&self, key: &str, msg: String) -> Error {
        self.err_at(self.at, key, msg)
    }

    /// The items of a list field, `None` when the key is absent. `[]` and a key with
    /// no value are refused alike (`why` ends the message): a rule field that is there
    /// but lists nothing must never be read as "matches anything".
    fn items<'v, T>(
        &self,
        key: &str,
        v: &'v ListField<T>,
        why: &str,
    ) -> Result<Option<&'v [T]>, Error> {
        let Some(sp) = v else { return Ok(None) };
        match &sp.value {
            None => Err(self.err_at(
                loc(sp),
                key,
                format!("empty list (`{key}:` with no value){why}"),
            )),
            Some(items) if items.is_empty() => {
                Err(self.err_at(loc(sp), key, format!("empty list{why}")))
            }
            Some(items) => Ok(Some(items)),
        }
    }

    fn calls(&self, v: &ListField<Spanned<String>>) -> Result<u8, Error> {
        let why = ": the rule would apply to nothing";
        let Some(cs) = self.items("calls", v, why)? else {
            return Ok(ALL_CALLS);
        };
        let mut m = 0;
        for c in cs {
            m |= match c.value.as_str() {
                "accept" => 1,
                "connect" => 2,
                "listen" => 4,
                o => {
                    return Err(self.err_at(
                        loc(c),
                        "calls",
                        format!("`{o}` is not accept, connect or listen"),
                    ))
                }
            };
        }
        Ok(m)
    }

    /// `remote` / `local`: addresses, prefixes and `@set`s; with the dynamic sets named
    /// (their entries are looked up when a call is decided).
    fn addrs(
        &self,
        key: &str,
        v: &ListField<Spanned<String>>,
    ) -> Result<(Option<AddrSet>, Vec<String>), Error> {
        let why = ": write the field out or list addresses";
        let Some(items) = self.items(key, v, why)? else {
            return Ok((None, Vec::new()));
        };
        // One static set alone: shared, not copied (a set mapped from an image stays
        // in the image's pages).
        if let [only] = items {
            if let Some(SetDef::Static(s)) =
                only.value.strip_prefix('@').and_then(|n| self.sets.get(n))
            {
                return Ok((Some(s.clone()), Vec::new()));
            }
        }
        let mut b = AddrSetBuilder::default();
        let mut dynamic = Vec::new();
        for sp in items {
            let it = &sp.value;
            if let Some(set) = it.strip_prefix('@') {
                match self.sets.get(set) {
                    Some(SetDef::Static(s)) => b.extend(s),
                    Some(SetDef::Dynamic) => {
                        if !dynamic.iter().any(|d| d == set) {
                            dynamic.push(set.to_owned());
                        }
                    }
                    None => {
                        return Err(self.err_at(
                            loc(sp),
                            key,
                            format!("unknown set `@{set}` (define it under `sets:`)"),
                        ))
                    }
                }
            } else {
                b.add(parse_net(it).ok_or_else(|| {
                    self.err_at(
                        loc(sp),
                        key,
                        format!("`{it}` is not an IP address, CIDR prefix or @set"),
                    )
                })?);
            }
        }
        Ok((Some(b.build()), dynamic))
    }

    fn ports(&self, key: &str, v: &ListField<Spanned<NumOrStr>>) -> Result<Option<PortSet>, Error> {
        let Some(items) = self.items(key, v, "")? else {
            return Ok(None);
        };
        let rs = items
            .iter()
            .map(|p| parse_port(&p.value).map_err(|m| self.err_at(loc(p), key, m)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(PortSet::new(rs)))
    }

    /// `users` / `groups`: numeric ids as they are, names through `lookup`.
    fn ids(
        &self,
        key: &str,
        v: &ListField<Spanned<NumOrStr>>,
        lookup: &dyn Fn(&str) -> Option<u32>,
        what: &str,
    ) -> Result<Option<Vec<u32>>, Error> {
        let Some(items) = self.items(key, v, "")? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for sp in items {
            let at = loc(sp);
            let id = match &sp.value {
                NumOrStr::Num(n) => u32::try_from(*n)
                    .map_err(|_| self.err_at(at, key, format!("{what} id {n} is out of range")))?,
                NumOrStr::Str(s) => match s.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => lookup(s)
                        .ok_or_else(|| self.err_at(at, key, format!("unknown {what} `{s}`")))?,
                },
            };
            out.push(id);
        }
        Ok(Some(out))
    }

    fn programs(&self, v: &ListField<Spanned<String>>) -> Result<Option<Vec<Glob>>, Error> {
        let Some(ps) = self.items("programs", v, "")? else {
            return Ok(None);
        };
        ps.iter()
            .map(|p| Glob::new(&p.value).map_err(|m| self.err_at(loc(p), "programs", m)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn families(&self, v: &ListField<Spanned<String>>) -> Result<Option<u8>, Error> {
        let Some(fs) = self.items("families", v, "")? else {
            return Ok(None);
        };
        let mut m = 0;
        for f in fs {
            m |= match f.value.as_str() {
                "ipv4" => FAM_V4,
                "ipv6" => FAM_V6,
                o => {
                    return Err(self.err_at(
                        loc(f),
                        "families",
                        format!("`{o}` is not ipv4 or ipv6"),
                    ))
                }
            };
        }
        Ok(Some(m))
    }
}

/// A `programs:` path that resolves to another one (a symlink, `/etc/alternatives`,
/// a merged `/usr`) also matches what it resolves to: the library matches the
/// executable `/proc/self/exe` names, every link followed. Resolved when the policy
/// is read (recorded in a snapshot, replayed by its compile), never at a call.
fn link_programs(rule: &mut Rule, files: &mut SetFiles<'_>) {
    let Some(globs) = rule.programs.as_mut() else {
        return;
    };
    let written: Vec<String> = globs.iter().map(|g| g.as_str().to_owned()).collect();
    for p in written {
        let Some(target) = files.program_link(&p) else {
            continue;
        };
        let Some(t) = target.to_str() else { continue };
        // A target with glob characters cannot be written as a literal pattern.
        if t.contains(['*', '?', '[']) {
            continue;
        }
        if let Ok(g) = Glob::new(t) {
            if !globs.contains(&g) {
                globs.push(g);
            }
        }
        rule.links.push((p, target));
    }
}

/// One rule: its name (required, unique, not `default`), action and fields.
fn compile_rule(
    ctx: &Ctx<'_>,
    r: &Spanned<RawRule>,
    names: &mut HashSet<String>,
    sets: &HashMap<String, SetDef>,
    opts: &LoadOptions<'_>,
) -> Result<Rule, Error> {
    let l = loc(r);
    let rr = &r.value;
    let name_at = rr.name.as_ref().and_then(loc).or(l);
    let name = match &rr.name {
        Some(n) if !n.value.trim().is_empty() => n.value.clone(),
        _ => return Err(ctx.err(name_at, Some("name"), "every rule needs a `name`")),
    };
    if name == "default" {
        return Err(ctx.err(
            name_at,
            Some("name"),
            "`default` is reserved for the policy's default verdict",
        ));
    }
    if !names.insert(name.clone()) {
        return Err(ctx.err(
            name_at,
            Some("name"),
            format!("duplicate rule name `{name}`"),
        ));
    }
    let rc = RuleCtx {
        ctx,
        name: &name,
        at: l,
        sets,
    };
    let action = match &rr.action {
        Some(a) if a.value == "allow" => Verdict::Allow,
        Some(a) if a.value == "deny" => Verdict::Deny,
        Some(a) => {
            return Err(rc.err_at(
                loc(a),
                "action",
                format!("`{}` is not allow or deny", a.value),
            ))
        }
        None => return Err(rc.err("action", "missing `action: allow|deny`".into())),
    };
    let calls = rc.calls(&rr.calls)?;
    let (remote, remote_dynamic) = rc.addrs("remote", &rr.remote)?;
    let (local, local_dynamic) = rc.addrs("local", &rr.local)?;
    let rule = Rule {
        remote,
        remote_dynamic,
        remote_ports: rc.ports("remote_ports", &rr.remote_ports)?,
        local,
        local_dynamic,
        local_ports: rc.ports("local_ports", &rr.local_ports)?,
        users: rc.ids("users", &rr.users, &|s| opts.resolver.user(s), "user")?,
        groups: rc.ids("groups", &rr.groups, &|s| opts.resolver.group(s), "group")?,
        programs: rc.programs(&rr.programs)?,
        families: rc.families(&rr.families)?,
        name,
        action,
        calls,
        location: l.unwrap_or((0, 0)),
        links: Vec::new(),
    };
    Ok(rule)
}

/// Rule indexes per call (accept, connect, listen) in policy order, and what the
/// rules of each call can ask for.
pub(super) fn index_by_call(rules: &[Rule]) -> ([Vec<u32>; 3], [Needs; 3]) {
    let mut by_call: [Vec<u32>; 3] = Default::default();
    let mut needs = [Needs::default(); 3];
    for (ci, call) in [Call::Accept, Call::Connect, Call::Listen]
        .into_iter()
        .enumerate()
    {
        for (i, r) in rules.iter().enumerate() {
            // A listen has no peer: a rule naming remote fields can never match it, so it
            // is left out of the listen table (and of what listen needs to know).
            let hopeless = call == Call::Listen && (r.remote.is_some() || r.remote_ports.is_some());
            if r.applies_to(call) && !hopeless {
                by_call[ci].push(i as u32);
                let n = r.needs(call);
                let a = &mut needs[ci];
                a.remote |= n.remote;
                a.local |= n.local;
                a.uid |= n.uid;
                a.gid |= n.gid;
                a.program |= n.program;
            }
        }
    }
    (by_call, needs)
}

/// One of two keywords (`mode`, `blocking_accept`, `events`, `default`), or "`x` is not a or b" at its spot.
fn keyword<T: Copy>(
    ctx: &Ctx<'_>,
    s: &Spanned<String>,
    key: &str,
    choices: [(&str, T); 2],
) -> Result<T, Error> {
    match choices.iter().find(|c| c.0 == s.value) {
        Some(c) => Ok(c.1),
        None => Err(ctx.err(
            loc(s),
            Some(key),
            format!("`{}` is not {} or {}", s.value, choices[0].0, choices[1].0),
        )),
    }
}

/// `21` or `"lo-hi"`, 1-65535 at both ends.
fn parse_port(n: &NumOrStr) -> Result<(u16, u16), String> {
    /// `range`: the whole "lo-hi" text when `v` is one end of it.
    fn one(v: i64, range: Option<&str>) -> Result<u16, String> {
        match (u16::try_from(v), range) {
            (Ok(p), _) if p != 0 => Ok(p),
            (_, None) => Err(format!("port {v} is out of range 1-65535")),
            (_, Some(r)) => Err(format!(
                "port range `{r}`: port {v} is out of range 1-65535"
            )),
        }
    }
    match n {
        NumOrStr::Num(v) => one(*v, None).map(|p| (p, p)),
        NumOrStr::Str(s) => {
            let num = |t: &str| {
                t.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("`{s}` is not a port or a \"lo-hi\" port range"))
            };
            match s.split_once('-') {
                None => one(num(s)?, None).map(|p| (p, p)),
                Some((a, b)) => {
                    let (lo, hi) = (one(num(a)?, Some(s))?, one(num(b)?, Some(s))?);
                    if lo > hi {
                        Err(format!(
                            "port range `{s}` is reversed (low end above high end)"
                        ))
                    } else {
                        Ok((lo, hi))
                    }
                }
            }
        }
    }
}
