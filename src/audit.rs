//! Audit trail (issue 5): one JSON line per recorded decision.
//! OWNER: audit work. Interface used by the hooks in lib.rs:
//!   init(&Policy) at load time; record(&Event) after a decision the policy wants recorded.

use sockexit_engine::{Call, Mode, Policy, Verdict};
use std::net::SocketAddr;

/// One decision to record.
pub struct Event<'a> {
    pub call: Call,
    pub verdict: Verdict,
    pub rule: &'a str,
    pub mode: Mode,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
}

/// Called once from the load-time constructor, after the policy loaded.
pub fn init(_policy: &Policy) {}

/// Record one decision. Must be safe after fork() in a multi-threaded program:
/// no lock that can be left held, bounded allocation.
pub fn record(_ev: &Event<'_>) {}
