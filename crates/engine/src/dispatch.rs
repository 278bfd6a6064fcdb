//! Dispatch on the peer address, for `accept` and `connect`.
//!
//! First match over the rules asks every rule in turn whether the peer is in its
//! `remote` set, although for any one peer most rules cannot match. At compile time
//! the address space of each family is cut at every boundary of every `remote` set; in
//! each elementary interval every address is in exactly the same sets, so the interval
//! can carry the ordered list of rules that can still match there: those without
//! `remote`, and those whose `remote` holds the interval (for these the set search is
//! already answered). Intervals with the same membership share a *class*, and each
//! class one candidate list per call. A decision is one search for the peer's interval
//! plus the remaining checks of those few candidates, in policy order: first-match
//! semantics and the lazy facts are unchanged, only rules that cannot match are skipped.
//!
//! Built only where the walk is slow (many rules, or a big set), and only within fixed
//! bounds; beyond them the policy decides by the plain walk, which is always correct.

use crate::policy::Rule;
use crate::Call;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

/// Flag bit of a candidate: the peer is in the rule's `remote` set.
pub(crate) const IN_REMOTE: u32 = 1 << 31;

/// Dispatch a call whose rules number at least this many...
const MIN_RULES: usize = 8;
/// ...or among whose `remote` sets one has at least this many ranges. Below both, the
/// walk is as fast as the search (a few rules, small sets) and the table would only
/// cost start-up time and memory.
const MIN_RANGES: usize = 256;
/// Classes are numbered in 16 bits (2 bytes per interval); a policy with more distinct
/// memberships than that decides by the walk.
const MAX_CLASSES: usize = 1 << 16;
/// Candidate entries summed over classes and calls (4 bytes each): nested sets of many
/// rules could otherwise need classes × rules entries. Beyond it: the walk.
const MAX_CANDIDATES: usize = 1 << 20;

/// The compiled dispatch of one policy.
#[derive(Debug)]
pub(crate) struct Dispatch {
    v4: Table<u32>,
    v6: Table<u128>,
    /// Per call (accept, connect), per family (IPv4, IPv6), per class: the class's
    /// range in `cands`. Empty for a call that is not dispatched.
    lists: [[Vec<(u32, u32)>; 2]; 2],
    /// Rule indexes in policy order, [`IN_REMOTE`] or-ed in.
    cands: Cow<'static, [u32]>,
}

/// One family's table as (bits, starts, class, index).
pub(crate) type TableParts<T> = (
    u32,
    Cow<'static, [T]>,
    Cow<'static, [u16]>,
    Cow<'static, [u32]>,
);

/// A dispatch as arrays, for a policy image: one family's table as (bits, starts,
/// class, index), the four class lists as `[start, end]`, the candidates.
pub(crate) struct Parts {
    pub v4: TableParts<u32>,
    pub v6: TableParts<u128>,
    pub lists: [Vec<[u32; 2]>; 4],
    pub cands: Cow<'static, [u32]>,
}

impl Dispatch {
    /// Whether `call` is dispatched.
    #[inline]
    pub(crate) fn covers(&self, call: Call) -> bool {
        match call {
            Call::Accept => !self.lists[0][0].is_empty(),
            Call::Connect => !self.lists[1][0].is_empty(),
            Call::Listen => false,
        }
    }

    /// The candidates for a peer (`ip` canonical) of a `call` this dispatch covers.
    #[inline]
    pub(crate) fn candidates(&self, call: Call, ip: IpAddr) -> &[u32] {
        let lists = &self.lists[usize::from(call == Call::Connect)];
        let (lists, class) = match ip {
            IpAddr::V4(a) => (&lists[0], self.v4.lookup(u32::from(a))),
            IpAddr::V6(a) => (&lists[1], self.v6.lookup(u128::from(a))),
        };
        let (s, e) = lists[usize::from(class)];
        &self.cands[s as usize..e as usize]
    }

    /// Intervals (both families) and distinct classes, for reports.
    pub(crate) fn size(&self) -> (usize, usize) {
        let classes = self.lists.iter().map(|l| l[0].len()).max().unwrap_or(0);
        (self.v4.starts.len() + self.v6.starts.len(), classes)
    }

    /// Heap bytes held (for reports).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes()
            + self.v6.heap_bytes()
            + self
                .lists
                .iter()
                .flatten()
                .map(|l| l.capacity() * 8)
                .sum::<usize>()
            + self.cands.len() * 4
    }

    /// Build for the calls where it pays (see [`MIN_RULES`], [`MIN_RANGES`]); `None`
    /// when no call qualifies or a bound is exceeded.
    pub(crate) fn build(rules: &[Rule], by_call: &[Vec<u32>; 3]) -> Option<Dispatch> {
        let dispatched: [bool; 2] = [0, 1].map(|ci| {
            let ids = &by_call[ci];
            let sets = ids.iter().filter_map(|&i| rules[i as usize].remote());
            let big = sets
                .clone()
                .any(|s| s.v4_ranges().len() + s.v6_ranges().len() >= MIN_RANGES);
            sets.count() > 0 && (ids.len() >= MIN_RULES || big)
        });
        if dispatched == [false, false] {
            return None;
        }
        // Number the rules whose `remote` set matters: membership bit k.
        let mut bit = vec![None; rules.len()];
        let mut members: Vec<&Rule> = Vec::new();
        for (ci, _) in dispatched.iter().enumerate().filter(|d| *d.1) {
            for &i in &by_call[ci] {
                let r = &rules[i as usize];
                if r.remote().is_some() && bit[i as usize].is_none() {
                    bit[i as usize] = Some(members.len());
                    members.push(r);
                }
            }
        }
        let mut classes = Classes::new(members.len());
        let v4 = Table::build(
            members
                .iter()
                .map(|r| r.remote().map_or(&[][..], |s| s.v4_ranges())),
            &mut classes,
        )?;
        let v6 = Table::build(
            members
                .iter()
                .map(|r| r.remote().map_or(&[][..], |s| s.v6_ranges())),
            &mut classes,
        )?;
        // A class's list for a call and family: the rules that can still match there,
        // in policy order. Left out besides those whose `remote` misses the interval:
        // rules whose `families` excludes this family, and everything after a rule
        // that is then sure to match (its `remote` holds the interval and it has no
        // other field), which first match can never reach.
        let mut lists: [[Vec<(u32, u32)>; 2]; 2] = Default::default();
        let mut cands = Vec::new();
        for ci in 0..2 {
            if !dispatched[ci] {
                continue;
            }
            for (fi, (v4, v6)) in [(true, false), (false, true)].into_iter().enumerate() {
                for m in &classes.members {
                    let start = cands.len() as u32;
                    for &i in &by_call[ci] {
                        let r = &rules[i as usize];
                        if r.families().is_some_and(|f| !(f.0 && v4 || f.1 && v6)) {
                            continue;
                        }
                        let inside = match bit[i as usize] {
                            None if r.remote().is_none() => false,
                            Some(k) if m[k / 64] >> (k % 64) & 1 == 1 => true,
                            // Its dynamic sets may hold any address: checked at the call.
                            _ if !r.remote_dynamic().is_empty() => false,
                            _ => continue,
                        };
                        cands.push(if inside { i | IN_REMOTE } else { i });
                        if r.peer_decides() && (inside || r.remote().is_none()) {
                            break;
                        }
                    }
                    if cands.len() > MAX_CANDIDATES {
                        return None;
                    }
                    lists[ci][fi].push((start, cands.len() as u32));
                }
            }
        }
        cands.shrink_to_fit();
        Some(Dispatch {
            v4,
            v6,
            lists,
            cands: Cow::Owned(cands),
        })
    }

    /// The arrays, for an image.
    pub(crate) fn to_parts(&self) -> Parts {
        let list = |l: &Vec<(u32, u32)>| l.iter().map(|&(a, b)| [a, b]).collect::<Vec<_>>();
        Parts {
            v4: (
                self.v4.bits,
                self.v4.starts.clone(),
                self.v4.class.clone(),
                self.v4.index.clone(),
            ),
            v6: (
                self.v6.bits,
                self.v6.starts.clone(),
                self.v6.class.clone(),
                self.v6.index.clone(),
            ),
            lists: [
                list(&self.lists[0][0]),
                list(&self.lists[0][1]),
                list(&self.lists[1][0]),
                list(&self.lists[1][1]),
            ],
            cands: self.cands.clone(),
        }
    }

    /// A dispatch from an image's arrays, for `rules` rules; `None` unless every
    /// lookup it can make stays in bounds (a hostile image may make it decide wrongly,
    /// which its checksum is for, but never panic).
    pub(crate) fn from_parts(p: Parts, rules: usize) -> Option<Dispatch> {
        let [a, b, c, d] = p.lists;
        let list = |l: Vec<[u32; 2]>| l.into_iter().map(|[a, b]| (a, b)).collect::<Vec<_>>();
        let lists = [[list(a), list(b)], [list(c), list(d)]];
        let cands = p.cands;
        let lists_ok = lists.iter().all(|call| {
            call.iter()
                .all(|l| l.iter().all(|&(s, e)| s <= e && e as usize <= cands.len()))
                && (call[0].is_empty() == call[1].is_empty())
        });
        let cands_ok = cands.iter().all(|&c| ((c & !IN_REMOTE) as usize) < rules);
        let v4 = Table::from_parts(p.v4)?;
        let v6 = Table::from_parts(p.v6)?;
        // Every class a table can return indexes the lists of each dispatched call.
        let classes_ok = |t: &[u16], fam: usize| {
            let top = t.iter().copied().max().map_or(0, usize::from);
            lists
                .iter()
                .filter(|call| !call[fam].is_empty())
                .all(|call| top < call[fam].len())
        };
        (lists_ok && cands_ok && classes_ok(&v4.class, 0) && classes_ok(&v6.class, 1)).then_some(
            Dispatch {
                v4,
                v6,
                lists,
                cands,
            },
        )
    }
}

/// An address as a key: IPv4 as `u32`, IPv6 as `u128`.
trait Key: Copy + Ord + std::fmt::Debug + 'static {
    const MIN: Self;
    fn succ(self) -> Option<Self>;
    /// The top `bits` bits (`bits` ≤ 16), as a bucket number.
    fn top(self, bits: u32) -> usize;
}

macro_rules! impl_key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            const MIN: Self = 0;
            fn succ(self) -> Option<Self> {
                self.checked_add(1)
            }
            #[inline]
            fn top(self, bits: u32) -> usize {
                self.checked_shr(<$t>::BITS - bits).unwrap_or(0) as usize
            }
        }
    )*};
}

impl_key!(u32, u128);

/// One family's intervals: interval k runs from `starts[k]` to `starts[k + 1] - 1` (the
/// last to the family's maximum); neighbours always differ in class.
#[derive(Debug)]
struct Table<T: Clone + 'static> {
    starts: Cow<'static, [T]>,
    class: Cow<'static, [u16]>,
    /// `index[b]`: the first interval starting in bucket `b` or later (bucket = the
    /// top `bits` bits), so a search looks only at the starts inside the peer's
    /// bucket. About 8 starts per bucket, at most 2^16 buckets; none for small tables.
    index: Cow<'static, [u32]>,
    bits: u32,
}

impl<T: Key + 'static> Table<T> {
    /// A table from an image; `None` unless [`Table::lookup`] stays in bounds for
    /// every key: one class per start and an index of 2^bits + 1 entries (lookups
    /// clamp what the index says).
    fn from_parts((bits, starts, class, index): TableParts<T>) -> Option<Table<T>> {
        // Only what keeps every lookup in bounds is checked here, in O(1): order and
        // class values are the checksum's business (and classes are checked, with one
        // vectorised maximum, by the caller). An unsorted table only decides wrongly.
        let ok = !starts.is_empty()
            && class.len() == starts.len()
            && bits <= 16
            && if bits == 0 {
                index.is_empty()
            } else {
                index.len() == (1usize << bits) + 1
            };
        ok.then_some(Table {
            starts,
            class,
            index,
            bits,
        })
    }

    fn lookup(&self, x: T) -> u16 {
        let k = if self.bits == 0 {
            // starts[0] is the family's minimum: there is always an interval.
            self.starts.partition_point(|&s| s <= x).saturating_sub(1)
        } else {
            let b = x.top(self.bits);
            // Clamped, so an index from a damaged image cannot make the search leave
            // the table (two conditional moves; a built index needs neither).
            let hi = (self.index[b + 1] as usize).min(self.starts.len());
            let lo = (self.index[b] as usize).min(hi);
            // Starts before `lo` are below this bucket, hence <= x; if none inside it
            // is <= x, the interval is lo - 1 (lo >= 1 then: starts[0] = 0 is in
            // bucket 0 and <= x).
            (lo + self.starts[lo..hi].partition_point(|&s| s <= x)).saturating_sub(1)
        };
        self.class[k]
    }

    fn heap_bytes(&self) -> usize {
        self.starts.len() * std::mem::size_of::<T>() + self.class.len() * 2 + self.index.len() * 4
    }

    /// Sweep the sorted boundaries of every member's ranges (sorted, disjoint,
    /// non-adjacent: each boundary toggles one membership bit).
    fn build<'a>(
        sets: impl Iterator<Item = &'a [[T; 2]]>,
        classes: &mut Classes,
    ) -> Option<Table<T>>
    where
        T: 'a,
    {
        let mut events: Vec<(T, u32)> = Vec::new();
        for (k, ranges) in sets.enumerate() {
            for &[lo, hi] in ranges {
                events.push((lo, k as u32));
                if let Some(n) = hi.succ() {
                    events.push((n, k as u32));
                }
            }
        }
        // One sorted run per member: the stable sort merges runs.
        events.sort_by_key(|e| e.0);
        let mut member = vec![0u64; classes.words];
        // Sized once for the worst case (every boundary starts an interval) and shrunk
        // at the end: growing by doubling would leave freed blocks of every size in
        // the heap of a process that compiles at its first call.
        let mut starts = Vec::with_capacity(events.len() + 1);
        let mut class = Vec::with_capacity(events.len() + 1);
        starts.push(T::MIN);
        class.push(0u16);
        // Most boundaries toggle one rule, and a few transitions recur (in and out of
        // the big set): remembered here, they skip hashing the whole membership.
        let mut recent = [(u16::MAX, u32::MAX, 0u16); 64];
        let mut cur = 0u16;
        let mut i = 0;
        while i < events.len() {
            let (pos, first) = events[i];
            let mut n = 0;
            while i < events.len() && events[i].0 == pos {
                let k = events[i].1 as usize;
                member[k / 64] ^= 1 << (k % 64);
                i += 1;
                n += 1;
            }
            let slot = (usize::from(cur) * 31 + first as usize) % recent.len();
            let c = match recent[slot] {
                (from, k, to) if n == 1 && from == cur && k == first => to,
                _ => {
                    let to = classes.id(&member)?;
                    if n == 1 {
                        recent[slot] = (cur, first, to);
                    }
                    to
                }
            };
            cur = c;
            if pos == T::MIN {
                class[0] = c;
            } else if class.last() != Some(&c) {
                starts.push(pos);
                class.push(c);
            }
        }
        drop(events);
        let bits = match starts.len() / 8 {
            0..=63 => 0,
            n => n.ilog2().min(16),
        };
        let mut index = Vec::new();
        if bits > 0 {
            index.reserve_exact((1 << bits) + 1);
            let mut k = 0;
            for b in 0..=(1usize << bits) {
                while k < starts.len() && starts[k].top(bits) < b {
                    k += 1;
                }
                index.push(k as u32);
            }
        }
        starts.shrink_to_fit();
        class.shrink_to_fit();
        Some(Table {
            starts: Cow::Owned(starts),
            class: Cow::Owned(class),
            index: Cow::Owned(index),
            bits,
        })
    }
}

/// Distinct memberships (bit sets over the member rules), numbered in order of first
/// appearance; class 0 is the empty membership.
struct Classes {
    words: usize,
    members: Vec<Box<[u64]>>,
    ids: HashMap<Box<[u64]>, u16, BuildHasherDefault<Fx>>,
}

impl Classes {
    fn new(n: usize) -> Classes {
        let mut c = Classes {
            words: n.div_ceil(64).max(1),
            members: Vec::new(),
            ids: HashMap::default(),
        };
        let empty = vec![0; c.words];
        c.id(&empty);
        c
    }

    fn id(&mut self, m: &[u64]) -> Option<u16> {
        if let Some(&id) = self.ids.get(m) {
            return Some(id);
        }
        if self.members.len() == MAX_CLASSES {
            return None;
        }
        let id = self.members.len() as u16;
        self.members.push(m.into());
        self.ids.insert(m.into(), id);
        Some(id)
    }
}

/// A multiply-rotate hash (as in rustc's FxHasher): the keys are bit sets drawn from
/// the policy, not from the network, so no flooding defence is needed, and SipHash
/// would cost more than the rest of the sweep.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
