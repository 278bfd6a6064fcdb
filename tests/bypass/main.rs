//! The attacker's tests for issue 13 (items 1–5, 9, 11, 12): every way around a rule
//! that the review found, and the neighbours of each hole — the other syscall, the
//! other sockaddr length, the other libc door, the signal handler.
//!
//! The attack programs are `examples/attack_bypass/` (Rust, `libc` directly) and
//! `examples/attack_ctypes.py` (Python ctypes). They run under the preload; this
//! (unpreloaded) test process is the listener or the peer, and checks what an
//! administrator would check: the errno the program printed, whether the listener
//! saw a connection or bytes, what a peer received, and the audit line
//! (`audit: {log: stderr, events: deny}`) naming the refusing rule.
//!
//! Table-driven tests try every case and then fail once, listing each case that
//! went wrong, so one run shows the whole state of a hole. Every wait is bounded.
//! Only 127.0.0.0/8 and ::1 are used; the NAT64 / IPv4-compatible destinations,
//! which are not local, are tried on a socket bound to `lo` (SO_BINDTODEVICE), so
//! nothing can leave the host.

#[path = "../common/mod.rs"]
mod common;

mod doors;
mod listen;
mod nat64;
mod neighbours;
mod pointers;
mod signals;
mod sockaddr;
mod support;
mod tfo;
