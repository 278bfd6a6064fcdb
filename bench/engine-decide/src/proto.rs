//! Prototypes of two faster decision strategies (BENCHMARKS.md, "Item 1"), built only
//! from the engine's public read-only view of a compiled policy (`Policy::rules`), so
//! they can be measured and checked against `Policy::decide` without touching the
//! engine. Not used by the library.
//!
//! - [`PeerOnce`]: the same first-match walk over the rules for the call, but the peer
//!   is read and canonicalised once per decision instead of once per rule; optionally
//!   with a /16 bucket index on big IPv4 sets ([`Bucketed`]).
//! - [`Dispatch`]: additionally, for each call, the peer address space is cut at every
//!   boundary of every rule's `remote` set; each elementary interval keeps the ordered
//!   list of rules that can still match there (rules without `remote` everywhere). A
//!   decision is one binary search plus the remaining checks of those few rules.
//!
//! Both must give exactly `Policy::decide`'s verdict and rule for every call: `check`
//! compares them on many generated peers before anything is timed.

use sockexit_engine::{Call, FactSource, Policy, Rule, Verdict};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

const CALLS: [Call; 3] = [Call::Accept, Call::Connect, Call::Listen];

fn call_index(c: Call) -> usize {
    match c {
        Call::Accept => 0,
        Call::Connect => 1,
        Call::Listen => 2,
    }
}

/// The peer, read once: canonical address (v4-mapped IPv6 as IPv4), port.
#[derive(Clone, Copy)]
struct Peer {
    ip: IpAddr,
    port: u16,
}

fn peer(f: &mut dyn FactSource) -> Option<Peer> {
    f.remote().map(|r| Peer {
        ip: r.ip().to_canonical(),
        port: r.port(),
    })
}

fn needs_remote(r: &Rule, call: Call) -> bool {
    r.remote().is_some()
        || r.remote_ports().is_some()
        || (r.families().is_some() && call != Call::Listen)
}

fn fam_ok(fam: Option<(bool, bool)>, ip: IpAddr) -> bool {
    match fam {
        None => true,
        Some((v4, v6)) => {
            if ip.is_ipv4() {
                v4
            } else {
                v6
            }
        }
    }
}

/// Everything `Rule::matches` checks, with the peer already read. `skip_remote_set`:
/// the caller already knows the peer is inside the rule's `remote` set.
fn matches(
    r: &Rule,
    call: Call,
    p: Option<Peer>,
    f: &mut dyn FactSource,
    skip_remote_set: bool,
    set4: Option<&Bucketed>,
) -> bool {
    if needs_remote(r, call) {
        let Some(p) = p else { return false };
        if call != Call::Listen && !fam_ok(r.families(), p.ip) {
            return false;
        }
        if let Some(ps) = r.remote_ports() {
            if !ps.contains(p.port) {
                return false;
            }
        }
        if !skip_remote_set {
            if let Some(s) = r.remote() {
                let inside = match (set4, p.ip) {
                    (Some(b), IpAddr::V4(a)) => b.contains(u32::from(a)),
                    _ => s.contains(p.ip),
                };
                if !inside {
                    return false;
                }
            }
        }
    }
    if r.local().is_some()
        || r.local_ports().is_some()
        || (r.families().is_some() && call == Call::Listen)
    {
        let Some(l) = f.local() else { return false };
        let ip = l.ip().to_canonical();
        if call == Call::Listen && !fam_ok(r.families(), ip) {
            return false;
        }
        if let Some(ps) = r.local_ports() {
            if !ps.contains(l.port()) {
                return false;
            }
        }
        if let Some(s) = r.local() {
            if !s.contains(ip) {
                return false;
            }
        }
    }
    if let Some(u) = r.users() {
        match f.uid() {
            Some(id) if u.contains(&id) => {}
            _ => return false,
        }
    }
    if let Some(g) = r.groups() {
        match f.gid() {
            Some(id) if g.contains(&id) => {}
            _ => return false,
        }
    }
    if let Some(ps) = r.programs() {
        match f.program() {
            Some(path) if ps.iter().any(|g| g.matches(path)) => {}
            _ => return false,
        }
    }
    true
}

/// An IPv4 range list with a /16 bucket index: `bucket[b]` = how many ranges end
/// below `b << 16`, so a lookup searches only the ranges that reach the peer's /16.
pub struct Bucketed {
    ranges: Vec<(u32, u32)>,
    bucket: Vec<u32>,
}

impl Bucketed {
    fn new(ranges: &[(u32, u32)]) -> Bucketed {
        let bucket = (0..=65536u64)
            .map(|b| ranges.partition_point(|r| u64::from(r.1) < b << 16) as u32)
            .collect();
        Bucketed {
            ranges: ranges.to_vec(),
            bucket,
        }
    }

    fn contains(&self, x: u32) -> bool {
        let b = (x >> 16) as usize;
        // Ranges before bucket[b] end below this /16; from bucket[b + 1] on they end
        // above it, and the first of those may still start at or below x.
        let lo = self.bucket[b] as usize;
        let hi = (self.bucket[b + 1] as usize + 1).min(self.ranges.len());
        let i = lo + self.ranges[lo..hi].partition_point(|r| r.1 < x);
        i < self.ranges.len() && self.ranges[i].0 <= x
    }
}

/// Strategy 1: the peer read once per decision; with `bucket`, big IPv4 sets (more
/// than 256 ranges) are searched through a /16 index (strategy 1b).
pub struct PeerOnce<'p> {
    rules: &'p [Rule],
    default: Verdict,
    by_call: [Vec<u32>; 3],
    set4: Vec<Option<Bucketed>>,
}

impl<'p> PeerOnce<'p> {
    pub fn new(p: &'p Policy, bucket: bool) -> PeerOnce<'p> {
        let rules = p.rules();
        let by_call = CALLS.map(|c| {
            (0..rules.len() as u32)
                .filter(|&i| rules[i as usize].applies_to(c))
                .collect()
        });
        let set4 = rules
            .iter()
            .map(|r| match r.remote() {
                Some(s) if bucket && s.v4_ranges().len() > 256 => {
                    Some(Bucketed::new(s.v4_ranges()))
                }
                _ => None,
            })
            .collect();
        PeerOnce {
            rules,
            default: p.default_verdict(),
            by_call,
            set4,
        }
    }

    pub fn decide(&self, call: Call, f: &mut dyn FactSource) -> (Verdict, &'p str) {
        let p = peer(f);
        for &i in &self.by_call[call_index(call)] {
            let r = &self.rules[i as usize];
            if matches(r, call, p, f, false, self.set4[i as usize].as_ref()) {
                return (r.action(), r.name());
            }
        }
        (self.default, "default")
    }
}

/// One address family's interval table: `starts[k]` begins interval k, which runs to
/// `starts[k + 1] - 1`; `list[k]` indexes the shared candidate lists.
struct Table<T> {
    starts: Vec<T>,
    list: Vec<u32>,
    /// IPv4 only: `bucket[b]` = how many starts lie below `b << 16` (65,537 entries), so
    /// a lookup searches only the starts inside the peer's /16, not all of them.
    bucket: Vec<u32>,
}

impl<T: Copy + Ord> Table<T> {
    fn lookup(&self, x: T) -> u32 {
        // starts[0] is the family's minimum, so there is always an interval.
        let k = self.starts.partition_point(|&s| s <= x) - 1;
        self.list[k]
    }
}

impl Table<u32> {
    fn index(&mut self) {
        self.bucket = (0..=65536u64)
            .map(|b| self.starts.partition_point(|&s| u64::from(s) < b << 16) as u32)
            .collect();
    }

    fn lookup4(&self, x: u32) -> u32 {
        let b = (x >> 16) as usize;
        let (lo, hi) = (self.bucket[b] as usize, self.bucket[b + 1] as usize);
        // Every start before `lo` is below this /16, hence <= x; every start from `hi`
        // on is above it. If the bucket holds none <= x, the interval is lo - 1
        // (lo >= 1 then, since starts[0] = 0 <= x).
        let k = lo + self.starts[lo..hi].partition_point(|&s| s <= x) - 1;
        self.list[k]
    }
}

/// Strategy 2: dispatch on the peer address, then check the few candidates.
pub struct Dispatch<'p> {
    rules: &'p [Rule],
    default: Verdict,
    by_call: [Vec<u32>; 3],
    v4: [Table<u32>; 3],
    v6: [Table<u128>; 3],
    /// Candidate lists: (rule index, whether its `remote` set is known to hold the peer).
    lists: Vec<Vec<(u32, bool)>>,
}

/// Candidate lists, deduplicated: most intervals share a handful of lists.
#[derive(Default)]
struct Lists {
    lists: Vec<Vec<(u32, bool)>>,
    seen: HashMap<Vec<(u32, bool)>, u32>,
}

fn build_table<T: Copy + Ord>(
    rules: &[Rule],
    ids: &[u32],
    ranges: impl Fn(&Rule) -> Option<Vec<(T, T)>>,
    min: T,
    succ: impl Fn(T) -> Option<T>,
    contains: impl Fn(&Rule, T) -> bool,
    out: &mut Lists,
) -> Table<T> {
    let mut starts = vec![min];
    for &i in ids {
        if let Some(rs) = ranges(&rules[i as usize]) {
            for (lo, hi) in rs {
                starts.push(lo);
                if let Some(n) = succ(hi) {
                    starts.push(n);
                }
            }
        }
    }
    starts.sort_unstable();
    starts.dedup();
    let mut list = Vec::with_capacity(starts.len());
    for &s in &starts {
        // Every address of the interval [s, next) is in exactly the same sets as s.
        let cand: Vec<(u32, bool)> = ids
            .iter()
            .filter_map(|&i| {
                let r = &rules[i as usize];
                match r.remote() {
                    None => Some((i, false)),
                    Some(_) if contains(r, s) => Some((i, true)),
                    Some(_) => None,
                }
            })
            .collect();
        let id = match out.seen.get(&cand) {
            Some(&id) => id,
            None => {
                out.lists.push(cand.clone());
                let id = (out.lists.len() - 1) as u32;
                out.seen.insert(cand, id);
                id
            }
        };
        list.push(id);
    }
    Table {
        starts,
        list,
        bucket: Vec::new(),
    }
}

impl<'p> Dispatch<'p> {
    pub fn new(p: &'p Policy) -> Dispatch<'p> {
        let once = PeerOnce::new(p, false);
        let rules = once.rules;
        let mut lists = Lists::default();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in CALLS {
            let ids = &once.by_call[call_index(c)];
            v4.push(build_table(
                rules,
                ids,
                |r| r.remote().map(|s| s.v4_ranges().to_vec()),
                0u32,
                |x| x.checked_add(1),
                |r, x| {
                    r.remote()
                        .is_some_and(|s| s.contains(IpAddr::from(x.to_be_bytes())))
                },
                &mut lists,
            ));
            v6.push(build_table(
                rules,
                ids,
                |r| r.remote().map(|s| s.v6_ranges().to_vec()),
                0u128,
                |x| x.checked_add(1),
                |r, x| {
                    r.remote()
                        .is_some_and(|s| s.contains(IpAddr::from(x.to_be_bytes())))
                },
                &mut lists,
            ));
        }
        for t in &mut v4 {
            t.index();
        }
        let mut v4 = v4.into_iter();
        let mut v6 = v6.into_iter();
        Dispatch {
            rules,
            default: once.default,
            v4: [v4.next().unwrap(), v4.next().unwrap(), v4.next().unwrap()],
            v6: [v6.next().unwrap(), v6.next().unwrap(), v6.next().unwrap()],
            by_call: once.by_call,
            lists: lists.lists,
        }
    }

    /// Elementary intervals and distinct candidate lists (memory, for the report).
    pub fn size(&self) -> (usize, usize) {
        let n = self.v4.iter().map(|t| t.starts.len()).sum::<usize>()
            + self.v6.iter().map(|t| t.starts.len()).sum::<usize>();
        (n, self.lists.len())
    }

    pub fn decide(&self, call: Call, f: &mut dyn FactSource) -> (Verdict, &'p str) {
        let ci = call_index(call);
        let Some(p) = peer(f) else {
            // No peer (listen): the plain walk; rules that need one fail on their own.
            for &i in &self.by_call[ci] {
                let r = &self.rules[i as usize];
                if matches(r, call, None, f, false, None) {
                    return (r.action(), r.name());
                }
            }
            return (self.default, "default");
        };
        let id = match p.ip {
            IpAddr::V4(a) => self.v4[ci].lookup4(u32::from(a)),
            IpAddr::V6(a) => self.v6[ci].lookup(u128::from(a)),
        };
        for &(i, inside) in &self.lists[id as usize] {
            let r = &self.rules[i as usize];
            if matches(r, call, Some(p), f, inside, None) {
                return (r.action(), r.name());
            }
        }
        (self.default, "default")
    }
}

/// Peers to compare the strategies on: every set boundary (each side of it), plus
/// loopback and a spread of other addresses, on a few ports.
pub fn sample_peers(p: &Policy, limit: usize) -> Vec<SocketAddr> {
    let mut ips: Vec<IpAddr> = vec![
        "127.0.0.1".parse().unwrap(),
        "::1".parse().unwrap(),
        "::ffff:127.0.0.1".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
        "192.168.1.5".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
        "0.0.0.0".parse().unwrap(),
        "255.255.255.255".parse().unwrap(),
    ];
    for r in p.rules() {
        for s in [r.remote(), r.local()].into_iter().flatten() {
            let v4 = s.v4_ranges();
            let step = (v4.len() / (limit / 8).max(1)).max(1);
            for &(lo, hi) in v4.iter().step_by(step) {
                for x in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                    ips.push(IpAddr::from(x.to_be_bytes()));
                }
            }
            let v6 = s.v6_ranges();
            let step = (v6.len() / (limit / 8).max(1)).max(1);
            for &(lo, hi) in v6.iter().step_by(step) {
                for x in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                    ips.push(IpAddr::from(x.to_be_bytes()));
                }
            }
        }
    }
    let ports = [21u16, 22, 25, 53, 80, 443, 445, 5432, 40000];
    let mut out = Vec::new();
    for (k, ip) in ips.into_iter().enumerate() {
        for j in 0..3 {
            out.push(SocketAddr::new(ip, ports[(k * 3 + j) % ports.len()]));
        }
    }
    out
}
