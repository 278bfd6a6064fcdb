//! Stealth (issue 8): at listen time, attach a socket filter that drops SYNs from
//! peers the policy refuses, so they get no SYN-ACK at all: to them the port looks
//! filtered, not closed.
//!
//! The filter is only a first line: the accept-time check in `hook::accept` stays the
//! authority (a program can detach the filter, and users change after listen). The
//! filter never drops a peer that check could allow (see `sockexit_engine::bpf`).

use crate::sys::{self, c_int, AttachedFilter};
use sockexit_engine::bpf::{self, Listener, Outcome};
use sockexit_engine::Policy;

/// Called before the real listen() of an IP socket the policy allowed to listen, with
/// `stealth: true` in the policy. Never fails the listen: whatever goes wrong, the
/// accept-time check still refuses what the policy refuses.
pub fn on_listen(fd: c_int, policy: &Policy) {
    if sys::socket_type(fd) != Some(libc::SOCK_STREAM)
        || sys::socket_protocol(fd) != Some(libc::IPPROTO_TCP)
    {
        return; // SCTP, MPTCP, ...: other packet layouts, accept-time checks only
    }
    let Some(local) = sys::local_addr(fd) else {
        return;
    };
    let (uid, gid) = sys::fixed_ids();
    let st = crate::state::state();
    let listener = Listener {
        local,
        v6_only: local.is_ipv6() && sys::v6_only(fd),
        uid,
        gid,
        program: st.program.as_deref(),
    };
    let compiled = bpf::compile(policy, &listener);
    let prog = match &compiled.outcome {
        Outcome::Filter(f) => f,
        Outcome::AcceptAll | Outcome::AuditMode => {
            log::debug!("stealth: listener {local}: {}", compiled.describe());
            return;
        }
        Outcome::TooLarge { .. } => {
            log::warn!(
                "stealth is partial for listener {local}: {}",
                compiled.describe()
            );
            return;
        }
    };
    match sys::attached_filter(fd) {
        Ok(AttachedFilter::None) => {}
        // Ours, from an earlier listen() on the same socket (a backlog change).
        Ok(AttachedFilter::Classic(f)) if f == *prog => return,
        Ok(AttachedFilter::Classic(_)) | Ok(AttachedFilter::Unreadable) => {
            log::warn!(
                "stealth is partial for listener {local}: the program attached its own \
                 socket filter, which is kept; refused peers are reset at accept"
            );
            return;
        }
        Err(e) => {
            log::warn!(
                "stealth is partial for listener {local}: cannot read its socket filter \
                 ({e}); none attached, refused peers are reset at accept"
            );
            return;
        }
    }
    if let Err(e) = sys::attach_filter(fd, prog) {
        log::warn!(
            "stealth is partial for listener {local}: attaching a filter of {} \
             instructions failed ({e}); refused peers are reset at accept",
            prog.len()
        );
        return;
    }
    if compiled.partial.is_empty() {
        log::debug!(
            "stealth: listener {local}: {} attached",
            compiled.describe()
        );
    } else {
        log::warn!(
            "stealth is partial for listener {local}: {} attached",
            compiled.describe()
        );
    }
}
