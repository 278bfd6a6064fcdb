//! Address and port sets compiled to sorted, disjoint, inclusive ranges: a lookup is
//! a binary search, whatever the number of prefixes, and allocates nothing.

use std::borrow::Cow;
use std::net::IpAddr;

/// A set of IPv4 and IPv6 addresses: sorted, disjoint, inclusive `[lo, hi]` ranges,
/// owned, or borrowed from a mapped policy image (shared by every process through the
/// page cache; see `crate::image`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrSet {
    v4: Cow<'static, [[u32; 2]]>,
    v6: Cow<'static, [[u128; 2]]>,
}

/// An inclusive range as either representation: `(lo, hi)` (ports, builders) or
/// `[lo, hi]` (address sets, which a mapped image can hold).
pub(crate) trait Span<T: Copy> {
    fn lo(&self) -> T;
    fn hi(&self) -> T;
}

impl<T: Copy> Span<T> for (T, T) {
    fn lo(&self) -> T {
        self.0
    }
    fn hi(&self) -> T {
        self.1
    }
}

impl<T: Copy> Span<T> for [T; 2] {
    fn lo(&self) -> T {
        self[0]
    }
    fn hi(&self) -> T {
        self[1]
    }
}

fn pairs<T: Copy>(v: Vec<(T, T)>) -> Vec<[T; 2]> {
    v.into_iter().map(|(a, b)| [a, b]).collect()
}

fn merge<T: Copy + Ord + num::Step>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        if let Some(last) = out.last_mut() {
            // Adjacent or overlapping ranges merge, so lookups stay one search.
            if lo <= last.1 || T::succ(last.1) == Some(lo) {
                if hi > last.1 {
                    last.1 = hi;
                }
                continue;
            }
        }
        out.push((lo, hi));
    }
    out
}

mod num {
    pub trait Step: Sized {
        fn succ(v: Self) -> Option<Self>;
    }
    impl Step for u16 {
        fn succ(v: Self) -> Option<Self> {
            v.checked_add(1)
        }
    }
    impl Step for u32 {
        fn succ(v: Self) -> Option<Self> {
            v.checked_add(1)
        }
    }
    impl Step for u128 {
        fn succ(v: Self) -> Option<Self> {
            v.checked_add(1)
        }
    }
}

fn find<T: Copy + Ord>(v: &[(T, T)], x: T) -> bool {
    let i = v.partition_point(|r| r.1 < x);
    i < v.len() && v[i].0 <= x
}

fn find2<T: Copy + Ord>(v: &[[T; 2]], x: T) -> bool {
    let i = v.partition_point(|r| r[1] < x);
    i < v.len() && v[i][0] <= x
}

fn subset<T: Copy + Ord>(inner: &[(T, T)], outer: &[(T, T)]) -> bool {
    inner.iter().all(|&(lo, hi)| {
        let i = outer.partition_point(|r| r.1 < lo);
        i < outer.len() && outer[i].0 <= lo && outer[i].1 >= hi
    })
}

fn subset2<T: Copy + Ord>(inner: &[[T; 2]], outer: &[[T; 2]]) -> bool {
    inner.iter().all(|&[lo, hi]| {
        let i = outer.partition_point(|r| r[1] < lo);
        i < outer.len() && outer[i][0] <= lo && outer[i][1] >= hi
    })
}

/// Builder for [`AddrSet`].
#[derive(Debug, Default)]
pub struct AddrSetBuilder {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl AddrSetBuilder {
    /// Add a prefix; v4-mapped IPv6 prefixes (`::ffff:0:0/96` and longer) become IPv4,
    /// because facts are canonicalised the same way.
    pub fn add(&mut self, net: ipnet::IpNet) {
        match net {
            ipnet::IpNet::V4(n) => self
                .v4
                .push((u32::from(n.network()), u32::from(n.broadcast()))),
            ipnet::IpNet::V6(n) => {
                if n.prefix_len() >= 96 {
                    if let Some(v4) = n.network().to_ipv4_mapped() {
                        let p = n.prefix_len() - 96;
                        if let Ok(n4) = ipnet::Ipv4Net::new(v4, p) {
                            let n4 = n4.trunc();
                            self.v4
                                .push((u32::from(n4.network()), u32::from(n4.broadcast())));
                            return;
                        }
                    }
                }
                self.v6
                    .push((u128::from(n.network()), u128::from(n.broadcast())))
            }
        }
    }
    /// Add every range of another set.
    pub fn extend(&mut self, s: &AddrSet) {
        self.v4.extend(s.v4.iter().map(|&[a, b]| (a, b)));
        self.v6.extend(s.v6.iter().map(|&[a, b]| (a, b)));
    }
    /// Sort and merge.
    pub fn build(self) -> AddrSet {
        AddrSet {
            v4: Cow::Owned(pairs(merge(self.v4))),
            v6: Cow::Owned(pairs(merge(self.v6))),
        }
    }
}

impl AddrSet {
    /// Membership of a canonical address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => find2(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find2(&self.v6, u128::from(a)),
        }
    }
    /// Whether every address of `self` is in `other`.
    pub fn is_subset(&self, other: &AddrSet) -> bool {
        subset2(&self.v4, &other.v4) && subset2(&self.v6, &other.v6)
    }
    /// No address at all.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
    /// IPv4 ranges `[lo, hi]`, inclusive, sorted and disjoint (for filter compilers).
    pub fn v4_ranges(&self) -> &[[u32; 2]] {
        &self.v4
    }
    /// IPv6 ranges `[lo, hi]`, inclusive, sorted and disjoint.
    pub fn v6_ranges(&self) -> &[[u128; 2]] {
        &self.v6
    }
    /// A set over ranges that are already sorted, disjoint and not adjacent (a policy
    /// image's, as `AddrSetBuilder::build` made them when it was applied).
    pub(crate) fn from_ranges(
        v4: Cow<'static, [[u32; 2]]>,
        v6: Cow<'static, [[u128; 2]]>,
    ) -> AddrSet {
        AddrSet { v4, v6 }
    }
}

/// A set of ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSet(Vec<(u16, u16)>);

impl PortSet {
    /// From inclusive ranges.
    pub fn new(ranges: Vec<(u16, u16)>) -> PortSet {
        PortSet(merge(ranges))
    }
    /// Membership.
    pub fn contains(&self, p: u16) -> bool {
        find(&self.0, p)
    }
    /// Whether every port of `self` is in `other`.
    pub fn is_subset(&self, other: &PortSet) -> bool {
        subset(&self.0, &other.0)
    }
    /// Inclusive ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nets: &[&str]) -> AddrSet {
        let mut b = AddrSetBuilder::default();
        for n in nets {
            b.add(n.parse().unwrap());
        }
        b.build()
    }

    #[test]
    fn contains_edges_and_merges() {
        let s = set(&[
            "10.0.0.0/8",
            "11.0.0.0/8",
            "192.168.1.7/32",
            "2001:db8::/32",
        ]);
        assert_eq!(s.v4_ranges().len(), 2, "adjacent /8s merge");
        assert!(s.contains("10.0.0.0".parse().unwrap()));
        assert!(s.contains("11.255.255.255".parse().unwrap()));
        assert!(!s.contains("12.0.0.0".parse().unwrap()));
        assert!(!s.contains("9.255.255.255".parse().unwrap()));
        assert!(s.contains("192.168.1.7".parse().unwrap()));
        assert!(!s.contains("192.168.1.8".parse().unwrap()));
        assert!(s.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!s.contains("2001:db9::".parse().unwrap()));
    }

    #[test]
    fn mapped_prefix_becomes_v4() {
        let s = set(&["::ffff:127.0.0.0/104"]);
        assert!(s.contains("127.1.2.3".parse().unwrap()));
    }

    #[test]
    fn subsets() {
        assert!(set(&["10.1.0.0/16"]).is_subset(&set(&["10.0.0.0/8"])));
        assert!(!set(&["10.0.0.0/8"]).is_subset(&set(&["10.1.0.0/16"])));
        let p = PortSet::new(vec![(1, 10), (20, 30)]);
        assert!(PortSet::new(vec![(2, 3), (25, 30)]).is_subset(&p));
        assert!(!PortSet::new(vec![(9, 21)]).is_subset(&p));
    }
}
