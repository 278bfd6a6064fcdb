//! Where a record goes when its target cannot take it: the log was rotated and this
//! process cannot reopen it, the disk is full, `/dev/log` is missing, fd 2 is no
//! longer ours. Never silently lost: syslog (one datagram on a socket of our own),
//! else fd 2 where that is safe (the fd 2 the process started with, never an IP
//! socket), and each process says once where its lines went — or that they are lost,
//! naming what to configure.

use super::line::{push_syslog_header, LineBuf, Stamp, LINE_MAX};
use sockexit_engine::Verdict;
use std::sync::atomic::{AtomicBool, Ordering};

/// Which target failed: the fallback never retries the same one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    File,
    Syslog,
    Journal,
    Stderr,
}

static SAID_SYSLOG: AtomicBool = AtomicBool::new(false);
static SAID_STDERR: AtomicBool = AtomicBool::new(false);
static SAID_LOST: AtomicBool = AtomicBool::new(false);

/// Deliver one record (`json`, no newline) elsewhere. `what` names the failed target
/// for the once-per-process message (e.g. the file's path, or `syslog at /dev/log
/// (No such file or directory)`).
pub fn deliver(
    failed: Failed,
    what: &dyn std::fmt::Display,
    st: &Stamp<'_>,
    host: &[u8],
    verdict: Verdict,
    json: &[u8],
) {
    if failed != Failed::Syslog {
        let mut line = LineBuf::<LINE_MAX>::new();
        push_syslog_header(&mut line, st, host, verdict);
        line.push(json);
        if line.bytes().is_some_and(crate::diag::send_syslog) {
            if !SAID_SYSLOG.swap(true, Ordering::AcqRel) {
                log::warn!(
                    "audit: a line {what} could not take went to syslog at {} instead (and so \
                     will any other)",
                    String::from_utf8_lossy(crate::diag::syslog_path())
                );
            }
            return;
        }
    }
    if failed != Failed::Stderr {
        let mut line = LineBuf::<LINE_MAX>::new();
        line.push(json);
        line.push(b"\n");
        if line.bytes().is_some_and(crate::diag::write_stderr) {
            if !SAID_STDERR.swap(true, Ordering::AcqRel) {
                log::warn!(
                    "audit: a line {what} could not take went to stderr instead (and so will \
                     any other); set `audit: {{ log: FILE }}` (or `log: stderr`, or `log: off`) \
                     in the policy to choose"
                );
            }
            return;
        }
    }
    if !SAID_LOST.swap(true, Ordering::AcqRel) {
        log::error!(
            "audit: a line {what} could not take was lost (no syslog at {}, and stderr is not \
             usable); set `audit: {{ log: FILE }}` with a file this process can write, or \
             `log: off`, in the policy",
            String::from_utf8_lossy(crate::diag::syslog_path())
        );
    }
}
