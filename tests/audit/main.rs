//! Audit trail and audit mode, end to end: programs run under the preload as child
//! processes, and the tests read what an administrator would read — the audit file,
//! the syslog datagram, the program's own file, what the peer received.

#[path = "../common/mod.rs"]
mod common;

mod files;
mod support;
mod trail;
