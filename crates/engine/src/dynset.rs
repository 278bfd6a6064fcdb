//! Dynamic sets: `sets: { banned: { dynamic: true } }`, whose addresses change at run
//! time (`sockexit set add|del`, fed by fail2ban, sshguard or CrowdSec) without a new
//! policy being compiled.
//!
//! The policy names a dynamic set; its entries live beside the published policy, in the
//! publication directory's `dynamic` file, which `sockexit set` rewrites (write, then
//! rename) and announces by bumping the *set revision*, a second word of the generation
//! page (offset [`DYN_REV_OFFSET`]). A process reads that word only when a rule that
//! names a dynamic set is evaluated, and rebuilds only the dynamic sets' lookup table
//! when it changed. Format (little-endian):
//!
//! ```text
//! magic "SOCKEXIT-DYNSET\x01" (16) | revision u64 | payload length u64 |
//! FNV-1a 64 of the payload u64 | payload
//! payload: u32 n, n × (u32 name length | name | u32 m, m × entry)
//! entry:   u8 family (4 | 6) | u8 prefix length | 16 address bytes (IPv4 in the
//!          first 4) | u64 expiry (unix seconds, 0: never) | u64 added (unix seconds)
//! ```
//!
//! An entry with a TTL stops matching when its expiry passes, in every process, with
//! nothing rewritten: the lookup compares the expiry with the clock (a vDSO call, no
//! system call). A corrupt, truncated or hostile file is an [`Error`], never a panic.

use crate::image::fnv1a64;
use crate::Error;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

const MAGIC: &[u8; 16] = b"SOCKEXIT-DYNSET\x01";
const HEADER: usize = 40;
const ENTRY: usize = 2 + 16 + 8 + 8;
/// Offset of the set revision (u64) in the generation page.
pub const DYN_REV_OFFSET: usize = 24;
/// A `dynamic` file larger than this is refused (about 1.9 million entries).
pub const MAX_DYNAMIC_BYTES: usize = 64 << 20;

/// One entry of a dynamic set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynEntry {
    /// The address or prefix (host bits dropped).
    pub net: IpNet,
    /// When it stops matching (unix seconds); `None`: never.
    pub expires: Option<u64>,
    /// When it was added (unix seconds).
    pub added: u64,
}

/// The entries of every dynamic set of one policy path, as `sockexit set` keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynContent {
    /// Bumped by every change; the generation page's set revision names it.
    pub revision: u64,
    /// Entries per set name, in the order they were added.
    pub sets: BTreeMap<String, Vec<DynEntry>>,
}

fn corrupt(file: &Path, what: &str) -> Error {
    Error {
        file: file.to_path_buf(),
        location: None,
        key: None,
        message: format!("corrupt dynamic-set file: {what}"),
    }
}

impl DynContent {
    /// Add `net` to `set` (or renew it: a second add replaces the expiry). Expired
    /// entries of every set are dropped on the way.
    pub fn add(&mut self, set: &str, net: IpNet, expires: Option<u64>, now: u64) {
        self.prune(now);
        let net = net.trunc();
        let v = self.sets.entry(set.to_owned()).or_default();
        match v.iter_mut().find(|e| e.net == net) {
            Some(e) => e.expires = expires,
            None => v.push(DynEntry {
                net,
                expires,
                added: now,
            }),
        }
    }

    /// Remove the entry that is exactly `net`; whether there was one.
    pub fn del(&mut self, set: &str, net: IpNet, now: u64) -> bool {
        self.prune(now);
        let net = net.trunc();
        let Some(v) = self.sets.get_mut(set) else {
            return false;
        };
        let before = v.len();
        v.retain(|e| e.net != net);
        before != v.len()
    }

    /// Drop the entries whose expiry has passed.
    pub fn prune(&mut self, now: u64) {
        for v in self.sets.values_mut() {
            v.retain(|e| e.expires.is_none_or(|x| x > now));
        }
        self.sets.retain(|_, v| !v.is_empty());
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&(self.sets.len() as u32).to_le_bytes());
        for (name, entries) in &self.sets {
            p.extend_from_slice(&(name.len() as u32).to_le_bytes());
            p.extend_from_slice(name.as_bytes());
            p.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            for e in entries {
                let mut addr = [0u8; 16];
                let fam = match e.net {
                    IpNet::V4(n) => {
                        addr[..4].copy_from_slice(&n.network().octets());
                        4
                    }
                    IpNet::V6(n) => {
                        addr.copy_from_slice(&n.network().octets());
                        6
                    }
                };
                p.extend_from_slice(&[fam, e.net.prefix_len()]);
                p.extend_from_slice(&addr);
                p.extend_from_slice(&e.expires.unwrap_or(0).to_le_bytes());
                p.extend_from_slice(&e.added.to_le_bytes());
            }
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&self.revision.to_le_bytes());
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(&fnv1a64(&p).to_le_bytes());
        out.extend_from_slice(&p);
        out
    }

    /// Decode a file written by [`DynContent::encode`]; `file` names it in errors.
    pub fn decode(bytes: &[u8], file: &Path) -> Result<DynContent, Error> {
        let err = |what: &str| corrupt(file, what);
        if bytes.len() < HEADER || &bytes[..16] != MAGIC {
            return Err(err("not a sockexit dynamic-set file (bad magic)"));
        }
        let le = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let (revision, len, sum) = (le(16), le(24), le(32));
        let p = &bytes[HEADER..];
        if p.len() as u64 != len {
            return Err(err("length does not match its header (truncated?)"));
        }
        if fnv1a64(p) != sum {
            return Err(err("checksum mismatch"));
        }
        let mut c = Cursor(p);
        let mut sets = BTreeMap::new();
        let n = c.u32().ok_or_else(|| err("truncated"))?;
        for _ in 0..n {
            let l = c.u32().ok_or_else(|| err("truncated"))?;
            let name = std::str::from_utf8(c.take(l).ok_or_else(|| err("truncated"))?)
                .map_err(|_| err("set name is not UTF-8"))?
                .to_owned();
            let m = c.u32().ok_or_else(|| err("truncated"))?;
            // A hostile count cannot make us allocate more than the file holds.
            let raw = m
                .checked_mul(ENTRY)
                .and_then(|b| c.take(b))
                .ok_or_else(|| err("truncated entries"))?;
            let entries = raw
                .chunks_exact(ENTRY)
                .map(|e| decode_entry(e).ok_or_else(|| err("bad entry")))
                .collect::<Result<Vec<_>, _>>()?;
            if sets.insert(name, entries).is_some() {
                return Err(err("a set appears twice"));
            }
        }
        if !c.0.is_empty() {
            return Err(err("trailing bytes"));
        }
        Ok(DynContent { revision, sets })
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Some(h)
    }
    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }
}

fn decode_entry(c: &[u8]) -> Option<DynEntry> {
    let (fam, len) = (c[0], c[1]);
    let addr: [u8; 16] = c[2..18].try_into().ok()?;
    let net = match fam {
        4 => IpNet::new(
            IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
            len,
        ),
        6 => IpNet::new(IpAddr::V6(Ipv6Addr::from(addr)), len),
        _ => return None,
    }
    .ok()?;
    let le = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().expect("8 bytes"));
    let exp = le(18);
    Some(DynEntry {
        net: net.trunc(),
        expires: (exp != 0).then_some(exp),
        added: le(26),
    })
}

/// One family's entries as sorted, disjoint, inclusive ranges, each with the latest
/// expiry of the entries that cover it: an address is in the set while some entry
/// covering it has not expired, i.e. while that latest expiry is in the future.
#[derive(Debug)]
struct Ranges<T> {
    v: Vec<(T, T, u64)>,
}

/// An address of one family as a number.
trait Key: Copy + Ord {
    fn succ(self) -> Option<Self>;
    /// Only called on a value above the smallest.
    fn pred(self) -> Self;
}

impl Key for u32 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Self {
        self - 1
    }
}

impl Key for u128 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Self {
        self - 1
    }
}

impl<T: Key> Ranges<T> {
    fn contains(&self, x: T, now: u64) -> bool {
        let i = self.v.partition_point(|r| r.1 < x);
        i < self.v.len() && self.v[i].0 <= x && self.v[i].2 > now
    }

    /// Cut the address line at every entry boundary; each piece gets the latest expiry
    /// of the entries over it (a sweep with a multiset of the open entries' expiries),
    /// and neighbouring pieces with the same expiry merge.
    fn build(es: &[(T, T, u64)]) -> Ranges<T> {
        // Events: an entry opens at its start and closes just past its end (never,
        // when it ends at the top of the address space).
        let mut ev: Vec<(T, bool, u64)> = Vec::with_capacity(es.len() * 2);
        for &(lo, hi, exp) in es {
            ev.push((lo, true, exp));
            if let Some(n) = hi.succ() {
                ev.push((n, false, exp));
            }
        }
        ev.sort_unstable_by_key(|e| e.0);
        let mut open: BTreeMap<u64, usize> = BTreeMap::new();
        let mut out: Vec<(T, T, u64)> = Vec::new();
        let mut start: Option<T> = None;
        let mut i = 0;
        while i < ev.len() {
            let at = ev[i].0;
            if let (Some(s), Some((&exp, _))) = (start, open.last_key_value()) {
                Self::push(&mut out, (s, at.pred(), exp));
            }
            while i < ev.len() && ev[i].0 == at {
                let (_, opens, exp) = ev[i];
                if opens {
                    *open.entry(exp).or_default() += 1;
                } else if let Some(c) = open.get_mut(&exp) {
                    *c -= 1;
                    if *c == 0 {
                        open.remove(&exp);
                    }
                }
                i += 1;
            }
            start = (!open.is_empty()).then_some(at);
        }
        if let (Some(s), Some((&exp, _))) = (start, open.last_key_value()) {
            // Still open: an entry reaches the top of the address space.
            let top = es.iter().map(|e| e.1).max().expect("an open entry");
            Self::push(&mut out, (s, top, exp));
        }
        Ranges { v: out }
    }

    fn push(out: &mut Vec<(T, T, u64)>, r: (T, T, u64)) {
        if let Some(last) = out.last_mut() {
            if last.2 == r.2 && last.1.succ() == Some(r.0) {
                last.1 = r.1;
                return;
            }
        }
        out.push(r);
    }
}

/// The lookup table of every dynamic set, built from a [`DynContent`] in one pass.
#[derive(Debug, Default)]
pub struct DynSets {
    revision: u64,
    sets: Vec<(String, Ranges<u32>, Ranges<u128>)>,
}

impl DynSets {
    /// No set has any entry (a policy path whose sets were never changed).
    pub const fn empty(revision: u64) -> DynSets {
        DynSets {
            revision,
            sets: Vec::new(),
        }
    }

    /// The table for `c`.
    pub fn build(c: &DynContent) -> DynSets {
        let sets = c
            .sets
            .iter()
            .map(|(name, entries)| {
                let mut v4 = Vec::new();
                let mut v6 = Vec::new();
                for e in entries {
                    let exp = e.expires.unwrap_or(u64::MAX);
                    match canonical(e.net) {
                        IpNet::V4(n) => {
                            v4.push((u32::from(n.network()), u32::from(n.broadcast()), exp))
                        }
                        IpNet::V6(n) => {
                            v6.push((u128::from(n.network()), u128::from(n.broadcast()), exp))
                        }
                    }
                }
                (name.clone(), Ranges::build(&v4), Ranges::build(&v6))
            })
            .collect();
        DynSets {
            revision: c.revision,
            sets,
        }
    }

    /// The revision this table was built from.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Whether the canonical address `ip` is in set `name` now.
    pub fn contains(&self, name: &str, ip: IpAddr) -> bool {
        self.contains_at(name, ip, now())
    }

    /// [`DynSets::contains`] at time `now` (unix seconds).
    pub fn contains_at(&self, name: &str, ip: IpAddr, now: u64) -> bool {
        let Some((_, v4, v6)) = self.sets.iter().find(|s| s.0 == name) else {
            return false;
        };
        match ip {
            IpAddr::V4(a) => v4.contains(u32::from(a), now),
            IpAddr::V6(a) => v6.contains(u128::from(a), now),
        }
    }
}

/// v4-mapped prefixes become IPv4, as facts are canonicalised the same way.
fn canonical(net: IpNet) -> IpNet {
    if let IpNet::V6(n) = net {
        if n.prefix_len() >= 96 {
            if let Some(v4) = n.network().to_ipv4_mapped() {
                if let Ok(n4) = ipnet::Ipv4Net::new(v4, n.prefix_len() - 96) {
                    return IpNet::V4(n4.trunc());
                }
            }
        }
    }
    net
}

/// Unix seconds now (0 if the clock is before 1970).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
