//! The compiled rule table as bytes, for a policy image: what a process that maps
//! the image uses instead of parsing the policy's YAML again (the parse of a 20-rule
//! policy costs about as much as the rest of a preloaded program's start).
//!
//! The rules' address sets are not in these bytes: they are arrays of the image's
//! compiled section, named here by index, so big sets stay in the shared mapping.
//! Format: a byte run written and read by [`W`] and [`R`] in the same field order
//! (u8/u16/u32 little-endian, strings as a u32 length and UTF-8). Lint findings are
//! not kept: `sockexit check` reports them from the files.

use super::rule::Rule;
use crate::glob::Glob;
use crate::ranges::{AddrSet, PortSet};
use crate::{AuditConfig, AuditEvents, AuditLog, BlockingAccept, Mode, Policy, Verdict};
use std::path::PathBuf;

#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn path(&mut self, p: &std::path::Path) {
        self.str(&p.to_string_lossy());
    }
    fn strs(&mut self, v: &[String]) {
        self.u32(v.len() as u32);
        for s in v {
            self.str(s);
        }
    }
    fn opt<T>(&mut self, v: &Option<T>, f: impl FnOnce(&mut W, &T)) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                f(self, x)
            }
        }
    }
}

/// The bytes of `p`'s table, and the address sets its rules name, in index order.
pub(crate) fn encode(p: &Policy) -> (Vec<u8>, Vec<&AddrSet>) {
    let mut w = W::default();
    let mut sets: Vec<&AddrSet> = Vec::new();
    w.u8(p.default as u8);
    w.u8(p.mode as u8);
    w.u8(p.stealth as u8);
    w.u8(p.blocking_accept as u8);
    match &p.audit.log {
        AuditLog::Off => w.u8(0),
        AuditLog::Stderr => w.u8(1),
        AuditLog::Syslog => w.u8(2),
        AuditLog::File(f) => {
            w.u8(3);
            w.path(f);
        }
        AuditLog::Journal => w.u8(4),
    }
    w.u8(p.audit.events as u8);
    w.path(&p.path);
    w.strs(&p.dynamic_sets);
    w.u32(p.rules.len() as u32);
    for r in &p.rules {
        w.str(&r.name);
        w.u8(r.action as u8);
        w.u8(r.calls);
        w.opt(&r.families, |w, f| w.u8(*f));
        w.u32(r.location.0 as u32);
        w.u32(r.location.1 as u32);
        for (set, dynamic) in [(&r.remote, &r.remote_dynamic), (&r.local, &r.local_dynamic)] {
            match set {
                None => w.u8(0),
                Some(s) => {
                    w.u8(1);
                    w.u32(sets.len() as u32);
                    sets.push(s);
                }
            }
            w.strs(dynamic);
        }
        for ports in [&r.remote_ports, &r.local_ports] {
            w.opt(ports, |w, p| {
                w.u32(p.ranges().len() as u32);
                for &(a, b) in p.ranges() {
                    w.0.extend_from_slice(&a.to_le_bytes());
                    w.0.extend_from_slice(&b.to_le_bytes());
                }
            });
        }
        for ids in [&r.users, &r.groups] {
            w.opt(ids, |w, v| {
                w.u32(v.len() as u32);
                for &i in v {
                    w.u32(i);
                }
            });
        }
        w.opt(&r.programs, |w, v| {
            w.u32(v.len() as u32);
            for g in v {
                w.str(g.as_str());
            }
        });
        w.u32(r.links.len() as u32);
        for (pat, to) in &r.links {
            w.str(pat);
            w.path(to);
        }
    }
    (w.0, sets)
}

struct R<'a>(&'a [u8]);

type Bad = &'static str;

impl R<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Bad> {
        if self.0.len() < n {
            return Err("rule table truncated");
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Bad> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, Bad> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    /// A count of items of at least `min` bytes each: never more than what is left.
    fn count(&mut self, min: usize) -> Result<usize, Bad> {
        let n = self.u32()? as usize;
        if n > self.0.len() / min.max(1) {
            return Err("rule table: count larger than the table");
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<String, Bad> {
        let n = self.count(1)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "rule table: not UTF-8")
    }
    fn strs(&mut self) -> Result<Vec<String>, Bad> {
        let n = self.count(4)?;
        (0..n).map(|_| self.str()).collect()
    }
    fn flag(&mut self) -> Result<bool, Bad> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("rule table: bad flag"),
        }
    }
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Bad>) -> Result<Option<T>, Bad> {
        if self.flag()? {
            f(self).map(Some)
        } else {
            Ok(None)
        }
    }
    fn ids(&mut self) -> Result<Vec<u32>, Bad> {
        let n = self.count(4)?;
        (0..n).map(|_| self.u32()).collect()
    }
}

fn verdict(v: u8) -> Result<Verdict, Bad> {
    match v {
        x if x == Verdict::Allow as u8 => Ok(Verdict::Allow),
        x if x == Verdict::Deny as u8 => Ok(Verdict::Deny),
        _ => Err("rule table: bad verdict"),
    }
}

/// The policy of a table, with `sets` (taken by index, so each once) and `dispatch`.
pub(crate) fn decode(
    bytes: &[u8],
    mut sets: Vec<Option<AddrSet>>,
    dispatch: Option<Box<crate::dispatch::Parts>>,
) -> Result<Policy, Bad> {
    let mut r = R(bytes);
    let default = verdict(r.u8()?)?;
    let mode = match r.u8()? {
        x if x == Mode::Enforce as u8 => Mode::Enforce,
        x if x == Mode::Audit as u8 => Mode::Audit,
        _ => return Err("rule table: bad mode"),
    };
    let stealth = r.flag()?;
    let blocking_accept = match r.u8()? {
        x if x == BlockingAccept::Return as u8 => BlockingAccept::Return,
        x if x == BlockingAccept::Wait as u8 => BlockingAccept::Wait,
        _ => return Err("rule table: bad blocking_accept"),
    };
    let log = match r.u8()? {
        0 => AuditLog::Off,
        1 => AuditLog::Stderr,
        2 => AuditLog::Syslog,
        3 => AuditLog::File(PathBuf::from(r.str()?)),
        4 => AuditLog::Journal,
        _ => return Err("rule table: bad audit log"),
    };
    let events = match r.u8()? {
        x if x == AuditEvents::Deny as u8 => AuditEvents::Deny,
        x if x == AuditEvents::All as u8 => AuditEvents::All,
        _ => return Err("rule table: bad audit events"),
    };
    let path = PathBuf::from(r.str()?);
    let dynamic_sets = r.strs()?;
    let n = r.count(16)?;
    let mut rules = Vec::with_capacity(n);
    let mut set = |r: &mut R<'_>| -> Result<AddrSet, Bad> {
        let i = r.u32()? as usize;
        sets.get_mut(i)
            .and_then(Option::take)
            .ok_or("rule table: set index")
    };
    for _ in 0..n {
        let name = r.str()?;
        let action = verdict(r.u8()?)?;
        let calls = r.u8()?;
        let families = r.opt(|r| r.u8())?;
        let location = (r.u32()? as usize, r.u32()? as usize);
        let remote = r.opt(&mut set)?;
        let remote_dynamic = r.strs()?;
        let local = r.opt(&mut set)?;
        let local_dynamic = r.strs()?;
        let mut ports = || {
            r.opt(|r| {
                let n = r.count(4)?;
                (0..n)
                    .map(|_| Ok((r.u16()?, r.u16()?)))
                    .collect::<Result<Vec<_>, Bad>>()
                    .map(PortSet::new)
            })
        };
        let remote_ports = ports()?;
        let local_ports = ports()?;
        let users = r.opt(R::ids)?;
        let groups = r.opt(R::ids)?;
        let programs = r.opt(|r| {
            let n = r.count(4)?;
            (0..n)
                .map(|_| Glob::new(&r.str()?).map_err(|_| "rule table: bad pattern"))
                .collect()
        })?;
        let nl = r.count(8)?;
        let links = (0..nl)
            .map(|_| Ok((r.str()?, PathBuf::from(r.str()?))))
            .collect::<Result<Vec<_>, Bad>>()?;
        rules.push(Rule {
            name,
            action,
            calls,
            remote,
            remote_dynamic,
            remote_ports,
            local,
            local_dynamic,
            local_ports,
            users,
            groups,
            programs,
            families,
            location,
            links,
        });
    }
    if !r.0.is_empty() {
        return Err("rule table: trailing bytes");
    }
    let (by_call, needs) = super::compile::index_by_call(&rules);
    let dispatch = match dispatch {
        Some(p) => Some(
            crate::dispatch::Dispatch::from_parts(*p, rules.len())
                .ok_or("address dispatch does not fit the rules")?,
        ),
        None => None,
    };
    Ok(Policy {
        default,
        mode,
        stealth,
        blocking_accept,
        audit: AuditConfig { log, events },
        rules,
        by_call,
        needs,
        dispatch,
        warnings: Vec::new(),
        permission_warnings: 0,
        path,
        dynamic_sets,
    })
}
