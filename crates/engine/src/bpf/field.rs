//! A packet field a rule can test, and how the filter loads it.

use super::{op, SKF_NET_OFF};

/// A packet field a rule can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    SrcPort,
    DstPort,
    Src4,
    Dst4,
    Src6,
    Dst6,
}

impl Field {
    pub(super) fn words(self) -> usize {
        match self {
            Field::Src6 | Field::Dst6 => 4,
            _ => 1,
        }
    }

    /// The load of 32-bit word `w` of the field into A.
    pub(super) fn load(self, w: usize) -> (u16, u32) {
        let net = |off: i32| (off + SKF_NET_OFF) as u32;
        let ldw = op::LD | op::W | op::ABS;
        match self {
            // Relative to skb->data, which is the TCP header when a TCP socket's
            // filter runs (IPv6 extension headers are already skipped).
            Field::SrcPort => (op::LD | op::H | op::ABS, 0),
            Field::DstPort => (op::LD | op::H | op::ABS, 2),
            Field::Src4 => (ldw, net(12)),
            Field::Dst4 => (ldw, net(16)),
            Field::Src6 => (ldw, net(8 + 4 * w as i32)),
            Field::Dst6 => (ldw, net(24 + 4 * w as i32)),
        }
    }

    pub(super) fn max(self) -> u128 {
        match self {
            Field::SrcPort | Field::DstPort => 0xffff,
            Field::Src4 | Field::Dst4 => u32::MAX as u128,
            Field::Src6 | Field::Dst6 => u128::MAX,
        }
    }
}
