//! The syslog target: RFC 5424 datagrams on a socket connected to `/dev/log`.

use super::dgram::DgramTarget;
use super::line::{push_syslog_header, LineBuf, Stamp, LINE_MAX};
use super::sink::ReopenLock;
use sockexit_engine::Verdict;

/// Send one record (`json` without newline) as an RFC 5424 datagram; see
/// [`DgramTarget::send`] for what the result means.
pub fn send_syslog(
    lock: &ReopenLock,
    t: &DgramTarget,
    st: &Stamp<'_>,
    host: &[u8],
    verdict: Verdict,
    json: &[u8],
    now: i64,
) -> bool {
    let mut line = LineBuf::<LINE_MAX>::new();
    push_syslog_header(&mut line, st, host, verdict);
    line.push(json);
    match line.bytes() {
        Some(line) => t.send(lock, line, now),
        None => false,
    }
}
