//! The journal target: one native-protocol datagram per record on a socket connected
//! to `/run/systemd/journal/socket`, with the fields the engine formats
//! (`sockexit_engine::audit_line::journal`), so `journalctl SOCKEXIT_VERDICT=deny`
//! finds the refusals. Same descriptor discipline as syslog ([`DgramTarget`]): high
//! number, checked before each send, `MSG_DONTWAIT`, no lock, no allocation.

use super::dgram::DgramTarget;
use super::line::{Event, LineBuf, Repeat, Stamp};
use super::sink::ReopenLock;
use sockexit_engine::audit_line::journal::{push_journal, JournalFacts, JOURNAL_MAX};

/// Send one record (`json` without newline) as a journal entry; see
/// [`DgramTarget::send`] for what the result means.
#[allow(clippy::too_many_arguments)]
pub fn send_journal(
    lock: &ReopenLock,
    t: &DgramTarget,
    st: &Stamp<'_>,
    ev: &Event<'_>,
    facts: &JournalFacts<'_>,
    json: &[u8],
    repeat: Option<&Repeat>,
    now: i64,
) -> bool {
    let mut entry = LineBuf::<JOURNAL_MAX>::new();
    push_journal(&mut entry, st, ev, facts, json, repeat);
    match entry.bytes() {
        Some(entry) => t.send(lock, entry, now),
        None => false,
    }
}
