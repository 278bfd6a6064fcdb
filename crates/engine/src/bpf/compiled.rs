//! What is known about a listener, and what compiling its accept rules gives.

use super::{SockFilter, MAX_INSNS};
use std::net::SocketAddr;

/// What is known about a socket when the program calls `listen()` on it.
#[derive(Debug, Clone)]
pub struct Listener<'a> {
    /// `getsockname` before the real listen. An unspecified address (`0.0.0.0`, `::`)
    /// or port 0 (not bound yet) means "any": the filter then tests the packet's
    /// destination, which is what an accepted connection's local address will be.
    pub local: SocketAddr,
    /// For an `AF_INET6` listener: `IPV6_V6ONLY` is set (no IPv4 packets can arrive).
    pub v6_only: bool,
    /// Effective uid at accept time, when it cannot change after listen; `None` when
    /// unknown or changeable (a root server that drops privileges).
    pub uid: Option<u32>,
    /// Effective gid at accept time, when it cannot change; `None` otherwise.
    pub gid: Option<u32>,
    /// The executable's absolute path, when known.
    pub program: Option<&'a [u8]>,
}

/// The outcome of compiling one listener's accept rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A filter to attach.
    Filter(Vec<SockFilter>),
    /// Every peer may be allowed: a filter would drop nothing, so none is needed.
    AcceptAll,
    /// The filter would need this many instructions, more than [`MAX_INSNS`] (a lower
    /// bound when compilation stopped early). Nothing can be attached.
    TooLarge {
        /// Instructions needed.
        insns: usize,
    },
    /// The policy is in audit mode: nothing is refused, so nothing may be dropped.
    AuditMode,
}

/// A compiled listener: the outcome, and why some refused peers still reach `accept`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// What to attach, if anything.
    pub outcome: Outcome,
    /// One line per rule whose effect the filter cannot decide, e.g. "rule `x` looks
    /// at the user, which can change after listen". Empty when the filter decides
    /// exactly as the accept-time check would for every peer.
    pub partial: Vec<String>,
}

impl Compiled {
    /// Number of instructions of the filter, if there is one.
    pub fn insns(&self) -> Option<usize> {
        match &self.outcome {
            Outcome::Filter(f) => Some(f.len()),
            _ => None,
        }
    }

    /// One line for logs and the CLI: `filter: 37 instructions`, `no filter: ...`.
    pub fn describe(&self) -> String {
        let mut s = match &self.outcome {
            Outcome::Filter(f) => format!(
                "filter: {} instruction{}",
                f.len(),
                if f.len() == 1 { "" } else { "s" }
            ),
            Outcome::AcceptAll => {
                "no filter: every peer may be allowed, so there is nothing to drop".to_string()
            }
            Outcome::TooLarge { insns } => format!(
                "no filter: too large ({insns}{} instructions, the kernel allows {MAX_INSNS}); \
                 refused peers are reset at accept",
                if *insns > MAX_INSNS { "+" } else { "" }
            ),
            Outcome::AuditMode => {
                "no filter: audit mode refuses nothing, so nothing may be dropped".to_string()
            }
        };
        if !self.partial.is_empty() && matches!(self.outcome, Outcome::Filter(_)) {
            s.push_str(" (partial: ");
            s.push_str(&self.partial.join("; "));
            s.push(')');
        }
        s
    }
}
