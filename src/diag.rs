//! Diagnostics (`SOCKEXIT_LOG`, env_logger filter syntax, default `warn`).
//!
//! They go to fd 2 only while fd 2 is open and not a socket: under inetd or `sshd -i`
//! fd 2 is the client's connection, and no byte of ours may ever reach a peer.

use crate::sys;
use std::io::{self, Write};

struct SafeStderr;

impl Write for SafeStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Checked on every write: daemons close and reuse fd numbers at any time.
        if sys::is_open(2) && !sys::is_socket(2) {
            sys::write_all(2, buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Install the logger for this library's own `log` facade (separate from any the
/// host program has: the cdylib carries its own copy of `log`).
pub fn init() {
    let filter = crate::state::env_var("SOCKEXIT_LOG").unwrap_or_else(|| "warn".into());
    let mut b = env_logger::Builder::new();
    b.parse_filters(&filter)
        .format(|f, r| writeln!(f, "sockexit[{}]: {}: {}", sys::pid(), r.level(), r.args()))
        .target(env_logger::Target::Pipe(Box::new(SafeStderr)));
    let _ = b.try_init();
}
