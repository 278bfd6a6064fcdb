//! Stealth (issue 8): compile the accept rules that remain for one listening socket
//! into a classic BPF socket filter on the peer's address and port.
//!
//! At `listen()` time the local address and port, the program, and (when they cannot
//! change) the user and group are known. What is left of the accept rules is a
//! decision on the packet: its source address and port (the peer), and, for a
//! wildcard or not-yet-bound listener, its destination address and port (the local
//! address an accepted connection would have). [`compile`] turns that residual into a
//! classic BPF program for `SO_ATTACH_FILTER`: the kernel runs it on every packet the
//! listener receives (the SYN, and the handshake's final ACK) and on every packet of the
//! accepted sockets, which inherit it. A packet it returns 0 for is dropped before the
//! TCP stack answers, so a refused peer gets no SYN-ACK and its connect times out.
//!
//! The filter is *sound*: it never drops a packet from a peer the accept-time check
//! could allow. Where a rule depends on something that may change between `listen` and
//! `accept` (the user or group of a process that can still switch ids) or is unknown,
//! the filter lets those peers through to the accept-time check, which stays the
//! authority, and [`Compiled::partial`] says why.
//!
//! Layout of the program: for a dual-stack listener, a branch on the IP version nibble
//! (IPv4 packets arrive with an IPv4 header even on an `AF_INET6` socket), then one
//! section per family that tests the rules in policy order (first match wins) and ends
//! with the default. Each address or port set becomes sorted, disjoint ranges searched
//! by a balanced tree of `jge` comparisons; IPv6 addresses are compared 32 bits at a
//! time, descending to the next word only where a range boundary is not word-aligned,
//! so a /48 costs no more than an IPv4 prefix. Conditional jumps reach 255 instructions
//! ahead at most; longer ones go through `ja` islands placed where no code falls
//! through. The kernel limit is [`MAX_INSNS`] instructions.

mod asm;
mod compiled;
mod field;
mod insn;
mod interp;
pub mod op;
mod program;
mod residual;
mod tree;

pub use compiled::{Compiled, Listener, Outcome};
pub use insn::{SockFilter, MAX_INSNS, RET_ACCEPT, RET_DROP, SKF_NET_OFF};
pub use interp::{run, syn_packet, validate};

use crate::{Mode, Policy, Verdict};
use asm::Overflow;
use program::assemble;
use residual::{residual, RRule};
use std::net::SocketAddr;

/// Compile the accept rules of `policy` that remain for the listener `l`.
pub fn compile(policy: &Policy, l: &Listener<'_>) -> Compiled {
    compile_as(policy, l, false)
}

/// Compile so that the filter refuses *at least* what the policy refuses, for a
/// filter that is the only judge of the listener's accepts (`run --supervise` in
/// accept-by-filter mode, with a generation that looks at facts a filter cannot
/// see): an allow rule that looks at an unknown fact (user, group, program, a
/// dynamic set) counts as never matching, a deny rule that does counts as matching
/// on its other fields, and `mode: audit` is compiled as `enforce`. Every such rule
/// is named in [`Compiled::partial`]. A peer the filter passes is allowed by the
/// policy whatever the unknown facts are.
pub fn compile_conservative(policy: &Policy, l: &Listener<'_>) -> Compiled {
    compile_as(policy, l, true)
}

fn compile_as(policy: &Policy, l: &Listener<'_>, conservative: bool) -> Compiled {
    if policy.mode() == Mode::Audit && !conservative {
        return Compiled {
            outcome: Outcome::AuditMode,
            partial: Vec::new(),
        };
    }
    let default = policy.default_verdict() == Verdict::Allow;
    let mut partial = Vec::new();
    let v4 = match l.local {
        SocketAddr::V4(_) => true,
        // IPv4 packets reach an AF_INET6 socket bound to `::` without IPV6_V6ONLY, or
        // bound to a v4-mapped address; never one bound to a real IPv6 address.
        SocketAddr::V6(s) => {
            (!l.v6_only && s.ip().is_unspecified()) || s.ip().to_ipv4_mapped().is_some()
        }
    };
    let v6 = match l.local {
        SocketAddr::V4(_) => false,
        SocketAddr::V6(s) => s.ip().to_ipv4_mapped().is_none(),
    };
    let mut section = |on: bool, v6: bool| {
        if on {
            residual(policy, l, v6, &mut partial, conservative)
        } else {
            Ok(Vec::new())
        }
    };
    let (r4, r6) = match (section(v4, false), section(v6, true)) {
        (Ok(r4), Ok(r6)) => (r4, r6),
        (Err(n), _) | (_, Err(n)) => {
            return Compiled {
                outcome: Outcome::TooLarge { insns: n },
                partial,
            }
        }
    };
    // Whether a section can drop anything: a deny rule, or a deny default that is
    // reachable (no unconditional rule before it).
    let drops = |rs: &[RRule]| {
        rs.iter().any(|r| !r.allow)
            || (!default && !matches!(rs.last(), Some(r) if r.checks.is_empty()))
    };
    if !((v4 && drops(&r4)) || (v6 && drops(&r6))) {
        return Compiled {
            outcome: Outcome::AcceptAll,
            partial,
        };
    }
    let outcome = match assemble(v4, &r4, v6, &r6, default) {
        Ok(f) => Outcome::Filter(f),
        Err(Overflow(n)) => Outcome::TooLarge { insns: n },
    };
    Compiled { outcome, partial }
}

#[cfg(test)]
mod tests;
