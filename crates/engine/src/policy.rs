//! Policy text → validated, compiled [`Policy`]: parsing (serde-saphyr), validation
//! with file/line/column errors, compilation into range indexes, lint warnings.

use crate::glob::Glob;
use crate::ranges::{AddrSet, AddrSetBuilder, PortSet};
use crate::{
    AuditConfig, AuditEvents, AuditLog, Call, Error, LoadOptions, Mode, Needs, Policy, Verdict,
    Warning,
};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Policies larger than this are refused before parsing (a policy is hand-written;
/// big address lists belong in set files).
pub const MAX_POLICY_BYTES: usize = 4 << 20;
/// Set files larger than this are refused.
pub const MAX_SET_FILE_BYTES: u64 = 64 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Option<Spanned<NumOrStr>>,
    default: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    stealth: Option<bool>,
    audit: Option<RawAudit>,
    sets: Option<BTreeMap<String, Spanned<RawSet>>>,
    rules: Option<Vec<Spanned<RawRule>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    log: Option<Spanned<String>>,
    events: Option<Spanned<String>>,
}

/// A set: an inline list of addresses, or `{ file: PATH }`. Written by hand instead of
/// `#[serde(untagged)]` so an unknown key (`{ fil: x }`) is named in the error, items keep
/// their line and column, and no value of arbitrary shape is ever buffered (an alias bomb
/// fails on its first nested list instead of expanding).
enum RawSet {
    List(Vec<Spanned<String>>),
    File(String),
}

impl<'de> Deserialize<'de> for RawSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawSet;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of addresses, or `{ file: PATH }`")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<RawSet, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = s.next_element::<Spanned<String>>()? {
                    v.push(x);
                }
                Ok(RawSet::List(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<RawSet, A::Error> {
                use serde::de::Error as _;
                let mut file = None;
                while let Some(k) = m.next_key::<String>()? {
                    if k != "file" {
                        return Err(A::Error::unknown_field(&k, &["file"]));
                    }
                    if file.is_some() {
                        return Err(A::Error::duplicate_field("file"));
                    }
                    file = Some(m.next_value::<String>()?);
                }
                file.map(RawSet::File)
                    .ok_or_else(|| A::Error::missing_field("file"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A port, port range, user or group: a YAML number or a string. Hand-written (not
/// untagged) so a wrong type says what was expected.
enum NumOrStr {
    Num(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for NumOrStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = NumOrStr;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number, or text such as \"1024-65535\" or a name")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Num(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<NumOrStr, E> {
                // Above i64::MAX: out of range for every use, reported as such.
                Ok(NumOrStr::Num(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Str(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl std::fmt::Display for NumOrStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumOrStr::Num(n) => write!(f, "{n}"),
            NumOrStr::Str(s) => f.write_str(s),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    action: Option<String>,
    calls: Option<Vec<String>>,

    remote: Option<Vec<Spanned<String>>>,
    remote_ports: Option<Vec<Spanned<NumOrStr>>>,
    local: Option<Vec<Spanned<String>>>,
    local_ports: Option<Vec<Spanned<NumOrStr>>>,
    users: Option<Vec<Spanned<NumOrStr>>>,
    groups: Option<Vec<Spanned<NumOrStr>>>,
    programs: Option<Vec<String>>,
    families: Option<Vec<String>>,
}

/// A compiled rule (read-only view for tools: `sockexit explain`, filter compilers).
#[derive(Debug)]
pub struct Rule {
    name: String,
    action: Verdict,
    calls: u8,
    remote: Option<AddrSet>,
    remote_ports: Option<PortSet>,
    local: Option<AddrSet>,
    local_ports: Option<PortSet>,
    users: Option<Vec<u32>>,
    groups: Option<Vec<u32>>,
    programs: Option<Vec<Glob>>,
    families: Option<u8>,
    location: (usize, usize),
}

const FAM_V4: u8 = 1;
const FAM_V6: u8 = 2;
const ALL_CALLS: u8 = 0b111;

fn call_bit(c: Call) -> u8 {
    match c {
        Call::Accept => 1,
        Call::Connect => 2,
        Call::Listen => 4,
    }
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// allow or deny.
    pub fn action(&self) -> Verdict {
        self.action
    }
    /// Whether the rule applies to `call` (`calls:` absent = every call).
    pub fn applies_to(&self, call: Call) -> bool {
        self.calls & call_bit(call) != 0
    }
    /// `remote:` compiled, if named.
    pub fn remote(&self) -> Option<&AddrSet> {
        self.remote.as_ref()
    }
    /// `remote_ports:` compiled, if named.
    pub fn remote_ports(&self) -> Option<&PortSet> {
        self.remote_ports.as_ref()
    }
    /// `local:` compiled, if named.
    pub fn local(&self) -> Option<&AddrSet> {
        self.local.as_ref()
    }
    /// `local_ports:` compiled, if named.
    pub fn local_ports(&self) -> Option<&PortSet> {
        self.local_ports.as_ref()
    }
    /// `users:` as uids, if named.
    pub fn users(&self) -> Option<&[u32]> {
        self.users.as_deref()
    }
    /// `groups:` as gids, if named.
    pub fn groups(&self) -> Option<&[u32]> {
        self.groups.as_deref()
    }
    /// `programs:` patterns, if named.
    pub fn programs(&self) -> Option<&[Glob]> {
        self.programs.as_deref()
    }
    /// `families:` — (ipv4, ipv6), if named.
    pub fn families(&self) -> Option<(bool, bool)> {
        self.families.map(|f| (f & FAM_V4 != 0, f & FAM_V6 != 0))
    }
    /// 1-based line and column of the rule in the policy file.
    pub fn location(&self) -> (usize, usize) {
        self.location
    }

    /// Evaluate cheap fields first and ask for each fact only when a field needs it.
    pub(crate) fn matches(&self, call: Call, f: &mut dyn crate::FactSource) -> bool {
        if self.needs_remote(call) {
            let Some(r) = f.remote() else { return false };
            if !self.remote_ok(call, r, r.ip().to_canonical(), false) {
                return false;
            }
        }
        self.rest_ok(call, f)
    }

    /// [`Rule::matches`] with the peer already read (`ip` canonical). `in_remote`: the
    /// caller knows `ip` is in this rule's `remote` set (the address dispatch found it
    /// there), so that search is skipped.
    #[inline]
    pub(crate) fn matches_peer(
        &self,
        call: Call,
        r: std::net::SocketAddr,
        ip: std::net::IpAddr,
        in_remote: bool,
        f: &mut dyn crate::FactSource,
    ) -> bool {
        (!self.needs_remote(call) || self.remote_ok(call, r, ip, in_remote))
            && self.rest_ok(call, f)
    }

    /// Whether the peer's address and family alone decide a match: no port, local,
    /// user, group or program field (the address dispatch stops listing candidates
    /// after such a rule once its `remote` and `families` are known to hold the peer).
    pub(crate) fn peer_decides(&self) -> bool {
        self.remote_ports.is_none()
            && self.local.is_none()
            && self.local_ports.is_none()
            && self.users.is_none()
            && self.groups.is_none()
            && self.programs.is_none()
    }

    #[inline]
    fn needs_remote(&self, call: Call) -> bool {
        self.remote.is_some()
            || self.remote_ports.is_some()
            || (self.families.is_some() && call != Call::Listen)
    }

    #[inline]
    fn remote_ok(
        &self,
        call: Call,
        r: std::net::SocketAddr,
        ip: std::net::IpAddr,
        in_remote: bool,
    ) -> bool {
        if let Some(fam) = self.families {
            if call != Call::Listen && fam & family_bit(ip) == 0 {
                return false;
            }
        }
        if let Some(p) = &self.remote_ports {
            if !p.contains(r.port()) {
                return false;
            }
        }
        match &self.remote {
            Some(s) if !in_remote => s.contains(ip),
            _ => true,
        }
    }

    /// Everything but the remote fields.
    #[inline]
    fn rest_ok(&self, call: Call, f: &mut dyn crate::FactSource) -> bool {
        if self.local.is_some()
            || self.local_ports.is_some()
            || (self.families.is_some() && call == Call::Listen)
        {
            let Some(l) = f.local() else { return false };
            let ip = l.ip().to_canonical();
            if let Some(fam) = self.families {
                if call == Call::Listen && fam & family_bit(ip) == 0 {
                    return false;
                }
            }
            if let Some(p) = &self.local_ports {
                if !p.contains(l.port()) {
                    return false;
                }
            }
            if let Some(s) = &self.local {
                if !s.contains(ip) {
                    return false;
                }
            }
        }
        if let Some(u) = &self.users {
            match f.uid() {
                Some(id) if u.contains(&id) => {}
                _ => return false,
            }
        }
        if let Some(g) = &self.groups {
            match f.gid() {
                Some(id) if g.contains(&id) => {}
                _ => return false,
            }
        }
        if let Some(ps) = &self.programs {
            match f.program() {
                Some(path) if ps.iter().any(|p| p.matches(path)) => {}
                _ => return false,
            }
        }
        true
    }

    fn needs(&self, call: Call) -> Needs {
        let fam = self.families.is_some();
        Needs {
            remote: self.needs_remote(call),
            local: self.local.is_some()
                || self.local_ports.is_some()
                || (fam && call == Call::Listen),
            uid: self.users.is_some(),
            gid: self.groups.is_some(),
            program: self.programs.is_some(),
        }
    }

    /// Whether every case `later` matches is matched by `self` too.
    fn covers(&self, later: &Rule) -> bool {
        fn opt<T>(a: &Option<T>, b: &Option<T>, sub: impl Fn(&T, &T) -> bool) -> bool {
            match (a, b) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => sub(b, a),
            }
        }
        let ids = |b: &Vec<u32>, a: &Vec<u32>| b.iter().all(|x| a.contains(x));
        later.calls & !self.calls == 0
            && opt(&self.remote, &later.remote, |b, a| b.is_subset(a))
            && opt(&self.local, &later.local, |b, a| b.is_subset(a))
            && opt(&self.remote_ports, &later.remote_ports, |b, a| {
                b.is_subset(a)
            })
            && opt(&self.local_ports, &later.local_ports, |b, a| b.is_subset(a))
            && opt(&self.users, &later.users, ids)
            && opt(&self.groups, &later.groups, ids)
            && opt(&self.families, &later.families, |b, a| b & !a == 0)
            && opt(&self.programs, &later.programs, |b, a| {
                a.iter().any(Glob::is_any) || b.iter().all(|p| a.contains(p))
            })
    }
}

fn family_bit(ip: std::net::IpAddr) -> u8 {
    if ip.is_ipv4() {
        FAM_V4
    } else {
        FAM_V6
    }
}

struct Ctx<'a> {
    file: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, loc: Option<(usize, usize)>, key: Option<&str>, msg: impl Into<String>) -> Error {
        Error {
            file: self.file.to_path_buf(),
            location: loc,
            key: key.map(str::to_owned),
            message: msg.into(),
        }
    }
}

fn loc<T>(s: &Spanned<T>) -> Option<(usize, usize)> {
    let l = &s.referenced;
    (l.line() > 0).then(|| (l.line() as usize, l.column() as usize))
}

/// Deepest nesting a policy may use (a policy needs 4: top map, rules, rule, list).
pub(crate) const MAX_YAML_DEPTH: usize = 32;

/// serde-saphyr's options, tightened for a hand-written policy: its default budget is
/// sized for general documents. Alias replay is capped far below the defaults so an
/// alias bomb fails in microseconds; duplicate keys are an error (never last-one-wins).
fn yaml_options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    let mut b = serde_saphyr::Budget::default();
    b.max_depth = MAX_YAML_DEPTH;
    b.flow_nesting_limit = MAX_YAML_DEPTH;
    b.max_documents = 1;
    b.max_aliases = 10_000;
    b.max_anchors = 10_000;
    b.max_nodes = 500_000;
    b.max_recorded_anchor_events = 100_000;
    b.max_merge_keys = 256;
    o.budget = Some(b);
    o.alias_limits.max_total_replayed_events = 100_000;
    o.alias_limits.max_replay_stack_depth = MAX_YAML_DEPTH;
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    o.with_snippet = false;
    o
}

/// The error inside serde-saphyr's snippet and alias wrappers.
fn root_error(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    loop {
        match e {
            serde_saphyr::Error::WithSnippet { error, .. }
            | serde_saphyr::Error::AliasError { error, .. } => e = error,
            _ => return e,
        }
    }
}

/// Turn a serde-saphyr error into ours: plain words a policy author understands, its
/// location, and the offending key (unknown or duplicate) when there is one.
fn yaml_error(file: &Path, e: serde_saphyr::Error) -> Error {
    use serde_saphyr::budget::BudgetBreach;
    let location = e
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| (l.line() as usize, l.column() as usize));
    let mut key = None;
    let too_much = |what: String| {
        format!("{what}: anchors and aliases expand beyond what a policy needs (an alias bomb?)")
    };
    let message = match root_error(&e) {
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            BudgetBreach::Depth { .. } => {
                format!("YAML nested too deeply (more than {MAX_YAML_DEPTH} levels)")
            }
            BudgetBreach::Documents { .. } => {
                "more than one YAML document (`---`): a policy is one document".to_string()
            }
            BudgetBreach::Nodes { nodes } => {
                too_much(format!("more than {} YAML nodes", nodes.saturating_sub(1)))
            }
            BudgetBreach::MergeKeys { merge_keys } => too_much(format!(
                "more than {} merge keys (`<<`)",
                merge_keys.saturating_sub(1)
            )),
            BudgetBreach::Aliases { aliases } => {
                too_much(format!("more than {} aliases", aliases.saturating_sub(1)))
            }
            other => too_much(format!("YAML limit exceeded ({other:?})")),
        },
        serde_saphyr::Error::AliasReplayLimitExceeded {
            max_total_replayed_events,
            ..
        } => too_much(format!(
            "aliases replay more than {max_total_replayed_events} YAML events"
        )),
        serde_saphyr::Error::AliasReplayStackDepthExceeded { max_depth, .. } => {
            too_much(format!("aliases nest more than {max_depth} levels"))
        }
        serde_saphyr::Error::AliasExpansionLimitExceeded { expansions, .. } => {
            too_much(format!("one anchor expanded {expansions} times"))
        }
        serde_saphyr::Error::DuplicateMappingKey { key: k, .. } => {
            key = k.clone();
            match k {
                Some(k) => format!("duplicate key `{k}`"),
                None => "duplicate key".to_string(),
            }
        }
        other => plain_message(&other.to_string()),
    };
    if key.is_none() {
        key = message
            .find("unknown field `")
            .map(|i| &message[i + 15..])
            .and_then(|r| r.find('`').map(|j| r[..j].to_string()));
    }
    Error {
        file: file.to_path_buf(),
        location,
        key,
        message,
    }
}

/// First line of a serde-saphyr message, without the location (ours to print, once)
/// and with the parser's terse phrases reworded.
fn plain_message(text: &str) -> String {
    let mut message = text
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .to_string();
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    if let Some(rest) = message.strip_prefix("error: ") {
        message = rest.to_string();
    }
    // "line L column C: msg"
    if message.starts_with("line ") {
        if let Some(i) = message.find(": ") {
            message = message[i + 2..].to_string();
        }
    }
    match message.as_str() {
        "expected mapping start" => "expected a mapping (`key: value` lines) here".to_string(),
        "invalid boolean" => "expected true or false".to_string(),
        "alias references unknown anchor" => {
            "unknown YAML alias: `*` starts an alias; quote a program glob (\"*/nginx\")"
                .to_string()
        }
        "unexpected character: `@'" => {
            "`@` cannot start a plain YAML value; quote set references (\"@lan\")".to_string()
        }
        "expected sequence start" => "expected a list (`[a, b]` or `- a` lines) here".to_string(),
        "expected string scalar" => {
            "expected a single value (text or a number) here, not a list or mapping".to_string()
        }
        "recursion limit exceeded" => {
            format!("YAML nested too deeply (more than {MAX_YAML_DEPTH} levels)")
        }
        _ => message,
    }
}

/// An address or `addr/len` prefix, host bits dropped. std's address parser, a byte
/// scan for `/` and a plain length check: a quarter fewer instructions than `ipnet`'s
/// combinator parser on a 100k-line set file.
fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    match s.bytes().position(|c| c == b'/') {
        None => s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from),
        Some(i) => {
            let (addr, len) = (&s[..i], &s[i + 1..]);
            if len.is_empty() || len.len() > 3 || !len.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let addr = addr.parse::<std::net::IpAddr>().ok()?;
            let len = len.parse::<u8>().ok()?;
            ipnet::IpNet::new(addr, len).ok().map(|n| n.trunc())
        }
    }
}

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

/// `str::lines` (LF or CRLF endings) by a plain byte loop: set-file lines are ~15
/// bytes, where memchr's per-call setup costs more than it saves.
fn short_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let t = rest.filter(|t| !t.is_empty())?;
        let (line, next) = match t.bytes().position(|c| c == b'\n') {
            Some(e) => (&t[..e], Some(&t[e + 1..])),
            None => (t, None),
        };
        rest = next;
        Some(line.strip_suffix('\r').unwrap_or(line))
    })
}

/// The policy file's bytes, refusing a file over [`MAX_POLICY_BYTES`] before reading it.
pub(crate) fn read_policy_bytes(path: &Path) -> Result<Vec<u8>, Error> {
    let err = |message: String| Error {
        file: path.to_path_buf(),
        location: None,
        key: None,
        message,
    };
    let too_big = std::fs::metadata(path)
        .map(|m| m.len() > MAX_POLICY_BYTES as u64)
        .unwrap_or(false);
    if too_big {
        return Err(err(format!(
            "policy is larger than {MAX_POLICY_BYTES} bytes"
        )));
    }
    std::fs::read(path).map_err(|e| err(e.to_string()))
}

/// How [`compile`] gets the contents of `sets: { NAME: { file: PATH } }`.
pub(crate) enum SetFiles<'a> {
    /// Read and parse each file now (`Policy::load`).
    Disk,
    /// Read each file into the list: the I/O of a [`crate::Snapshot`]. Files of at
    /// most `parse_up_to` bytes are parsed now too; bigger ones leave their set empty
    /// until [`crate::Snapshot::compile`].
    Capture {
        into: &'a mut Vec<(PathBuf, Vec<u8>)>,
        parse_up_to: usize,
    },
    /// Parse the bytes captured earlier; no I/O.
    Replay(&'a [(PathBuf, Vec<u8>)]),
}

/// The bytes of one set file, with the same limits and errors whoever reads it.
fn read_set_bytes(
    ctx: &Ctx<'_>,
    set: &str,
    at: Option<(usize, usize)>,
    path: &Path,
) -> Result<Vec<u8>, Error> {
    let cannot = |e: std::io::Error| {
        ctx.err(
            at,
            Some(set),
            format!("cannot read set file {}: {e}", path.display()),
        )
    };
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if meta.len() > MAX_SET_FILE_BYTES {
        return Err(Error {
            file: path.to_path_buf(),
            location: None,
            key: None,
            message: format!("set file is larger than {MAX_SET_FILE_BYTES} bytes"),
        });
    }
    std::fs::read(path).map_err(cannot)
}

/// A set file's text (one address or prefix per line, `#` comments) as a set; errors
/// name the set file, line and column.
fn parse_set_text(path: &Path, bytes: &[u8]) -> Result<AddrSet, Error> {
    let ferr = |loc, msg: String| Error {
        file: path.to_path_buf(),
        location: loc,
        key: None,
        message: msg,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        ferr(Some((line, 1)), "not valid UTF-8".into())
    })?;
    let mut b = AddrSetBuilder::default();
    for (i, raw) in short_lines(text).enumerate() {
        // A byte loop, not `split('#')`: lines are short and memchr's setup cost per
        // call dominated the load of a 100k-line file.
        let end = raw.bytes().position(|c| c == b'#').unwrap_or(raw.len());
        let line = raw[..end].trim();
        if line.is_empty() {
            continue;
        }
        let net = parse_net(line).ok_or_else(|| {
            let col = raw.find(line).unwrap_or(0) + 1;
            ferr(
                Some((i + 1, col)),
                format!("`{line}` is not an IP address or CIDR prefix"),
            )
        })?;
        b.add(net);
    }
    Ok(b.build())
}

pub(crate) fn compile(
    bytes: &[u8],
    origin: &Path,
    opts: &LoadOptions<'_>,
    mut files: SetFiles<'_>,
) -> Result<Policy, Error> {
    let ctx = Ctx { file: origin };
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
    let raw: RawPolicy = serde_saphyr::from_str_with_options(text, yaml_options())
        .map_err(|e| yaml_error(origin, e))?;
    let base = origin.parent().unwrap_or(Path::new("."));

    match &raw.version {
        Some(v)
            if matches!(&v.value, NumOrStr::Num(1))
                || matches!(&v.value, NumOrStr::Str(s) if s == "1") => {}
        Some(v) => {
            return Err(ctx.err(
                loc(v),
                Some("version"),
                format!(
                    "unsupported policy version {}; this sockexit reads version 1",
                    v.value
                ),
            ))
        }
        None => return Err(ctx.err(None, Some("version"), "missing `version: 1`")),
    }
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
    let mut audit = AuditConfig::default();
    if let Some(a) = &raw.audit {
        if let Some(l) = &a.log {
            audit.log = match l.value.as_str() {
                "off" => AuditLog::Off,
                "stderr" => AuditLog::Stderr,
                "syslog" => AuditLog::Syslog,
                "" => return Err(ctx.err(loc(l), Some("log"), "empty audit log path")),
                p => AuditLog::File(base.join(p)),
            };
        }
        if let Some(e) = &a.events {
            audit.events = keyword(
                &ctx,
                e,
                "events",
                [("deny", AuditEvents::Deny), ("all", AuditEvents::All)],
            )?;
        }
    }

    let mut warnings = Vec::new();
    let mut sets: HashMap<String, AddrSet> = HashMap::new();
    for (name, s) in raw.sets.iter().flatten() {
        let set = match &s.value {
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
            RawSet::File(f) => {
                let path = base.join(f);
                match &mut files {
                    SetFiles::Disk => {
                        parse_set_text(&path, &read_set_bytes(&ctx, name, loc(s), &path)?)?
                    }
                    SetFiles::Capture { into, parse_up_to } => {
                        let bytes = read_set_bytes(&ctx, name, loc(s), &path)?;
                        let set = if bytes.len() <= *parse_up_to {
                            parse_set_text(&path, &bytes)?
                        } else {
                            AddrSetBuilder::default().build()
                        };
                        into.push((path, bytes));
                        set
                    }
                    SetFiles::Replay(from) => match from.iter().find(|(p, _)| *p == path) {
                        Some((_, bytes)) => parse_set_text(&path, bytes)?,
                        // Only if the policy bytes differ from the captured ones.
                        None => {
                            return Err(ctx.err(
                                loc(s),
                                Some(name),
                                format!("set file {} was not read with the policy", path.display()),
                            ))
                        }
                    },
                }
            }
        };
        if set.is_empty() {
            warnings.push(Warning {
                rule: None,
                location: loc(s),
                message: format!("set `{name}` is empty: rules naming only it match no address"),
            });
        }
        sets.insert(name.clone(), set);
    }

    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for r in raw.rules.iter().flatten() {
        let l = loc(r);
        let rr = &r.value;
        let name = match &rr.name {
            Some(n) if !n.trim().is_empty() => n.clone(),
            _ => return Err(ctx.err(l, Some("name"), "every rule needs a `name`")),
        };
        if name == "default" {
            return Err(ctx.err(
                l,
                Some("name"),
                "`default` is reserved for the policy's default verdict",
            ));
        }
        if !names.insert(name.clone()) {
            return Err(ctx.err(l, Some("name"), format!("duplicate rule name `{name}`")));
        }
        let rerr_at = |at: Option<(usize, usize)>, key: &str, msg: String| {
            ctx.err(at.or(l), Some(key), format!("rule `{name}`: {msg}"))
        };
        let rerr = |key: &str, msg: String| rerr_at(l, key, msg);
        let action = match rr.action.as_deref() {
            Some("allow") => Verdict::Allow,
            Some("deny") => Verdict::Deny,
            Some(o) => return Err(rerr("action", format!("`{o}` is not allow or deny"))),
            None => return Err(rerr("action", "missing `action: allow|deny`".into())),
        };
        let calls = match &rr.calls {
            None => ALL_CALLS,
            Some(cs) => {
                let mut m = 0;
                for c in cs {
                    m |= match c.as_str() {
                        "accept" => 1,
                        "connect" => 2,
                        "listen" => 4,
                        o => {
                            return Err(rerr(
                                "calls",
                                format!("`{o}` is not accept, connect or listen"),
                            ))
                        }
                    };
                }
                if m == 0 {
                    return Err(rerr(
                        "calls",
                        "empty list: the rule would apply to nothing".into(),
                    ));
                }
                m
            }
        };
        let addrs =
            |key: &str, v: &Option<Vec<Spanned<String>>>| -> Result<Option<AddrSet>, Error> {
                let Some(items) = v else { return Ok(None) };
                if items.is_empty() {
                    return Err(rerr(
                        key,
                        "empty list: write the field out or list addresses".into(),
                    ));
                }
                let mut b = AddrSetBuilder::default();
                for sp in items {
                    let it = &sp.value;
                    if let Some(set) = it.strip_prefix('@') {
                        let s = sets.get(set).ok_or_else(|| {
                            rerr_at(
                                loc(sp),
                                key,
                                format!("unknown set `@{set}` (define it under `sets:`)"),
                            )
                        })?;
                        b.extend(s);
                    } else {
                        b.add(parse_net(it).ok_or_else(|| {
                            rerr_at(
                                loc(sp),
                                key,
                                format!("`{it}` is not an IP address, CIDR prefix or @set"),
                            )
                        })?);
                    }
                }
                Ok(Some(b.build()))
            };
        let ports =
            |key: &str, v: &Option<Vec<Spanned<NumOrStr>>>| -> Result<Option<PortSet>, Error> {
                let Some(items) = v else { return Ok(None) };
                if items.is_empty() {
                    return Err(rerr(key, "empty list".into()));
                }
                let rs = items
                    .iter()
                    .map(|p| parse_port(&p.value).map_err(|m| rerr_at(loc(p), key, m)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(PortSet::new(rs)))
            };
        let ids = |key: &str,
                   v: &Option<Vec<Spanned<NumOrStr>>>,
                   lookup: &dyn Fn(&str) -> Option<u32>,
                   what: &str|
         -> Result<Option<Vec<u32>>, Error> {
            let Some(items) = v else { return Ok(None) };
            if items.is_empty() {
                return Err(rerr(key, "empty list".into()));
            }
            let mut out = Vec::new();
            for sp in items {
                let at = loc(sp);
                let id = match &sp.value {
                    NumOrStr::Num(n) => u32::try_from(*n)
                        .map_err(|_| rerr_at(at, key, format!("{what} id {n} is out of range")))?,
                    NumOrStr::Str(s) => match s.parse::<u32>() {
                        Ok(n) => n,
                        Err(_) => lookup(s)
                            .ok_or_else(|| rerr_at(at, key, format!("unknown {what} `{s}`")))?,
                    },
                };
                out.push(id);
            }
            Ok(Some(out))
        };
        let programs = match &rr.programs {
            None => None,
            Some(ps) if ps.is_empty() => return Err(rerr("programs", "empty list".into())),
            Some(ps) => Some(
                ps.iter()
                    .map(|p| Glob::new(p).map_err(|m| rerr("programs", m)))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let families = match &rr.families {
            None => None,
            Some(fs) if fs.is_empty() => return Err(rerr("families", "empty list".into())),
            Some(fs) => {
                let mut m = 0;
                for f in fs {
                    m |= match f.as_str() {
                        "ipv4" => FAM_V4,
                        "ipv6" => FAM_V6,
                        o => return Err(rerr("families", format!("`{o}` is not ipv4 or ipv6"))),
                    };
                }
                Some(m)
            }
        };
        let rule = Rule {
            remote: addrs("remote", &rr.remote)?,
            remote_ports: ports("remote_ports", &rr.remote_ports)?,
            local: addrs("local", &rr.local)?,
            local_ports: ports("local_ports", &rr.local_ports)?,
            users: ids("users", &rr.users, &|s| opts.resolver.user(s), "user")?,
            groups: ids("groups", &rr.groups, &|s| opts.resolver.group(s), "group")?,
            programs,
            families,
            name,
            action,
            calls,
            location: l.unwrap_or((0, 0)),
        };
        rules.push(rule);
    }

    lint(&rules, default, &mut warnings);

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
    let dispatch = crate::dispatch::Dispatch::build(&rules, &by_call);
    Ok(Policy {
        default,
        mode,
        stealth: raw.stealth.unwrap_or(false),
        audit,
        rules,
        by_call,
        needs,
        dispatch,
        warnings,
        path: PathBuf::from(origin),
    })
}

/// One of two keywords (`mode`, `events`, `default`), or "`x` is not a or b" at its spot.
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

fn lint(rules: &[Rule], default: Verdict, out: &mut Vec<Warning>) {
    for (j, later) in rules.iter().enumerate() {
        if let Some(earlier) = rules[..j].iter().find(|e| e.covers(later)) {
            out.push(Warning {
                rule: Some(later.name.clone()),
                location: Some(later.location),
                message: format!(
                    "rule `{}` can never match: it is shadowed by rule `{}`, which comes first and matches every case it covers",
                    later.name, earlier.name
                ),
            });
        }
        let only = |c: u8| later.calls == c;
        for (field, set) in [
            ("remote", later.remote.is_some()),
            ("remote_ports", later.remote_ports.is_some()),
        ] {
            if set && only(4) {
                out.push(Warning {
                    rule: Some(later.name.clone()),
                    location: Some(later.location),
                    message: format!(
                        "rule `{}`: `{field}` can never apply: the rule is only for listen, which has no remote peer, so the rule never matches",
                        later.name
                    ),
                });
            }
        }
        if later.local_ports.is_some() && only(2) {
            out.push(Warning {
                rule: Some(later.name.clone()),
                location: Some(later.location),
                message: format!(
                    "rule `{}`: `local_ports` on a connect-only rule: an outgoing socket usually has no local port until connect has run, so the rule will rarely match",
                    later.name
                ),
            });
        }
    }
    if default == Verdict::Allow && rules.iter().all(|r| r.action == Verdict::Allow) {
        out.push(Warning {
            rule: None,
            location: None,
            message: "`default: allow` with only allow rules: this policy refuses nothing".into(),
        });
    }
}
