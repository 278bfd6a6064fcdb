//! A compiled rule and how it matches the facts of a call.

use crate::glob::Glob;
use crate::ranges::{AddrSet, PortSet};
use crate::{Call, Needs, Verdict};

/// A compiled rule (read-only view for tools: `sockexit explain`, filter compilers).
#[derive(Debug)]
pub struct Rule {
    pub(super) name: String,
    pub(super) action: Verdict,
    pub(super) calls: u8,
    /// The addresses, prefixes and static sets of `remote:` (`Some`, maybe empty,
    /// whenever the field is present)...
    pub(super) remote: Option<AddrSet>,
    /// ...and the dynamic sets it names, looked up when a call is decided.
    pub(super) remote_dynamic: Vec<String>,
    pub(super) remote_ports: Option<PortSet>,
    pub(super) local: Option<AddrSet>,
    pub(super) local_dynamic: Vec<String>,
    pub(super) local_ports: Option<PortSet>,
    pub(super) users: Option<Vec<u32>>,
    pub(super) groups: Option<Vec<u32>>,
    pub(super) programs: Option<Vec<Glob>>,
    pub(super) families: Option<u8>,
    pub(super) location: (usize, usize),
    /// `programs:` paths that resolve to another path when the policy was read, and
    /// that path (also matched).
    pub(super) links: Vec<(String, std::path::PathBuf)>,
}

pub(super) const FAM_V4: u8 = 1;
pub(super) const FAM_V6: u8 = 2;
pub(super) const ALL_CALLS: u8 = 0b111;

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
    /// `programs:` paths written without glob characters that resolved to another
    /// path when the policy was read (a symlink), with that path: the rule matches
    /// both, as the library sees the resolved executable.
    pub fn program_links(&self) -> &[(String, std::path::PathBuf)] {
        &self.links
    }
    /// 1-based line and column of the rule in the policy file.
    pub fn location(&self) -> (usize, usize) {
        self.location
    }

    /// Evaluate cheap fields first and ask for each fact only when a field needs it.
    pub(crate) fn matches(&self, call: Call, f: &mut dyn crate::FactSource) -> bool {
        if self.needs_remote(call) {
            let Some(r) = f.remote() else { return false };
            if !self.remote_ok(call, r, r.ip().to_canonical(), false, f) {
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
        (!self.needs_remote(call) || self.remote_ok(call, r, ip, in_remote, f))
            && self.rest_ok(call, f)
    }

    /// Whether the peer's address and family alone decide a match: no port, local,
    /// user, group or program field (the address dispatch stops listing candidates
    /// after such a rule once its `remote` and `families` are known to hold the peer).
    pub(crate) fn peer_decides(&self) -> bool {
        self.remote_dynamic.is_empty()
            && self.remote_ports.is_none()
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
        f: &mut dyn crate::FactSource,
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
            Some(s) if !in_remote => s.contains(ip) || self.in_dynamic(&self.remote_dynamic, ip, f),
            _ => true,
        }
    }

    /// Whether `ip` is in one of the dynamic sets `names`; when their entries are
    /// unknown, what fails closed: in the set for a deny rule, not for an allow rule.
    #[cold]
    fn in_dynamic(
        &self,
        names: &[String],
        ip: std::net::IpAddr,
        f: &mut dyn crate::FactSource,
    ) -> bool {
        if names.is_empty() {
            return false;
        }
        match f.dynamic() {
            Some(d) => names.iter().any(|n| d.contains(n, ip)),
            None => self.action == Verdict::Deny,
        }
    }

    /// The dynamic sets named in `remote:`.
    pub fn remote_dynamic(&self) -> &[String] {
        &self.remote_dynamic
    }

    /// The dynamic sets named in `local:`.
    pub fn local_dynamic(&self) -> &[String] {
        &self.local_dynamic
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
                if !s.contains(ip) && !self.in_dynamic(&self.local_dynamic, ip, f) {
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

    pub(super) fn needs(&self, call: Call) -> Needs {
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
    pub(super) fn covers(&self, later: &Rule) -> bool {
        fn opt<T>(a: &Option<T>, b: &Option<T>, sub: impl Fn(&T, &T) -> bool) -> bool {
            match (a, b) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => sub(b, a),
            }
        }
        let ids = |b: &Vec<u32>, a: &Vec<u32>| b.iter().all(|x| a.contains(x));
        // A dynamic set may hold anything later: a rule covers a later one's dynamic
        // sets only by naming the same ones (or by having no address field at all).
        let dynamic = |mine: &[String], theirs: &[String], field: &Option<AddrSet>| {
            field.is_none() || theirs.iter().all(|t| mine.contains(t))
        };
        later.calls & !self.calls == 0
            && opt(&self.remote, &later.remote, |b, a| b.is_subset(a))
            && dynamic(&self.remote_dynamic, &later.remote_dynamic, &self.remote)
            && opt(&self.local, &later.local, |b, a| b.is_subset(a))
            && dynamic(&self.local_dynamic, &later.local_dynamic, &self.local)
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
