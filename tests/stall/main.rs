//! A refused peer must never harm the service (issue 13, items 6, 7 and 8).
//!
//! After the policy refused a connection (reset, 0 bytes sent) the hooked
//! `accept`/`accept4` takes the next connection only if one is already pending. With
//! nothing pending, a **blocking** listener gets -1/`ECONNABORTED` at once (policy
//! `blocking_accept: return`, the default), or, with `blocking_accept: wait`, a wait
//! for the next connection that never outlasts the socket's `SO_RCVTIMEO` counted from
//! the start of the call (then -1/`EAGAIN`); a **non-blocking** listener gets
//! -1/`EAGAIN` exactly when the real accept would. A refused connection is reset at
//! once even if another thread forks at that moment.
//!
//! Sample servers (`examples/select_server`, `accept_loop_server`,
//! `fork_thread_server`, `epoll_server`; Python scripts in `tests/stall/`) and real
//! daemons (xinetd, PostgreSQL) run as child processes under the preload; peers are
//! made by this process from 127.0.0.1 (allowed) and 127.0.0.2 (refused). Every wait
//! is bounded, so a server frozen by a refused peer fails a test instead of hanging
//! it. A missing xinetd, PostgreSQL or Python is a loud `SKIPPED` locally and a
//! failure when `CI` is set.

#[path = "../common/mod.rs"]
mod common;

mod daemons;
mod samples;
mod support;
