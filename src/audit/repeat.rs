//! Collapsing identical refusals (a service retrying a refused connect once a second
//! must not write the same line forever).
//!
//! Per process, the last refusal is remembered: same call, verdict, rule, local and
//! remote address (port included) and mode make a repeat. The first refusal is
//! written at once; its repeats are counted, and one `"repeated":N` line per window
//! of [`WINDOW_MS`] stands for them, written at the next record that is not such a
//! repeat (a different event, or the first repeat after the window ended) or when
//! the process exits. Counts are exact: the first line plus every `repeated` is the
//! number of refusals.
//!
//! No timer thread, and nothing that can block: the state sits behind a `try_lock`;
//! a thread that finds it busy writes its line uncollapsed (still exact). A child of
//! `fork()` never reports its parent's pending count (the parent does), and one that
//! inherited the lock held simply never collapses.

use super::line::{Event, Repeat};
use sockexit_engine::{Call, Mode, Verdict};
use std::net::SocketAddr;
use std::sync::Mutex;

/// Length of a window, in milliseconds.
pub const WINDOW_MS: i64 = 10_000;

/// Rule names longer than this are never collapsed (compared by their full text).
const RULE_BUF: usize = 256;

#[derive(Clone, Copy)]
struct Pending {
    pid: u32,
    call: Call,
    verdict: Verdict,
    mode: Mode,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    rule: [u8; RULE_BUF],
    rule_len: usize,
    /// When the current window ends (ms since the epoch).
    window_end: i64,
    /// Repeats counted in the current window, and the times of the first and last.
    count: u64,
    first_ms: i64,
    last_ms: i64,
    last_uid: u32,
}

impl Pending {
    fn same(&self, ev: &Event<'_>) -> bool {
        self.call == ev.call
            && self.verdict == ev.verdict
            && self.mode == ev.mode
            && self.local == ev.local
            && self.remote == ev.remote
            && &self.rule[..self.rule_len] == ev.rule.as_bytes()
    }

    fn flush(&mut self) -> Option<Flushed> {
        if self.count == 0 {
            return None;
        }
        let f = Flushed {
            p: *self,
            repeat: Repeat {
                count: self.count,
                until_secs: self.last_ms.div_euclid(1000),
                until_millis: self.last_ms.rem_euclid(1000) as u32,
            },
        };
        self.count = 0;
        Some(f)
    }
}

static STATE: Mutex<Option<Pending>> = Mutex::new(None);

/// A `"repeated"` line to write: the event it repeats and its count.
pub struct Flushed {
    p: Pending,
    pub repeat: Repeat,
}

impl Flushed {
    /// The repeated event (its rule name borrowed from here).
    pub fn event(&self) -> Event<'_> {
        Event {
            call: self.p.call,
            verdict: self.p.verdict,
            rule: std::str::from_utf8(&self.p.rule[..self.p.rule_len]).unwrap_or("?"),
            mode: self.p.mode,
            local: self.p.local,
            remote: self.p.remote,
        }
    }
    pub fn pid(&self) -> u32 {
        self.p.pid
    }
    pub fn uid(&self) -> u32 {
        self.p.last_uid
    }
    /// When the first counted repeat happened: the line's `ts`.
    pub fn first(&self) -> (i64, u32) {
        (
            self.p.first_ms.div_euclid(1000),
            self.p.first_ms.rem_euclid(1000) as u32,
        )
    }
}

/// What to do with one event.
pub struct Outcome {
    /// A `"repeated"` line to write first.
    pub flush: Option<Flushed>,
    /// Whether to write the event's own line (false: it was counted).
    pub write: bool,
}

/// Look at one event (at `now_ms`, in process `pid`, effective uid `uid`).
pub fn observe(ev: &Event<'_>, now_ms: i64, pid: u32, uid: u32) -> Outcome {
    let uncollapsed = Outcome {
        flush: None,
        write: true,
    };
    let Ok(mut g) = STATE.try_lock() else {
        return uncollapsed;
    };
    if g.as_ref().is_some_and(|p| p.pid != pid) {
        *g = None; // inherited from the parent across fork(): the parent reports it
    }
    if let Some(p) = g.as_mut() {
        if p.same(ev) {
            if now_ms < p.window_end {
                p.count += 1;
                p.last_ms = now_ms;
                p.last_uid = uid;
                return Outcome {
                    flush: None,
                    write: false,
                };
            }
            // The window is over: report it, and count this one in a new window (or
            // write it whole if the last window had no repeats at all).
            let flush = p.flush();
            p.window_end = now_ms + WINDOW_MS;
            if flush.is_none() {
                return uncollapsed;
            }
            p.count = 1;
            p.first_ms = now_ms;
            p.last_ms = now_ms;
            p.last_uid = uid;
            return Outcome {
                flush,
                write: false,
            };
        }
    }
    let flush = g.as_mut().and_then(Pending::flush);
    *g = None;
    if ev.verdict == Verdict::Deny && ev.rule.len() <= RULE_BUF {
        let mut rule = [0u8; RULE_BUF];
        rule[..ev.rule.len()].copy_from_slice(ev.rule.as_bytes());
        *g = Some(Pending {
            pid,
            call: ev.call,
            verdict: ev.verdict,
            mode: ev.mode,
            local: ev.local,
            remote: ev.remote,
            rule,
            rule_len: ev.rule.len(),
            window_end: now_ms + WINDOW_MS,
            count: 0,
            first_ms: now_ms,
            last_ms: now_ms,
            last_uid: uid,
        });
    }
    Outcome { flush, write: true }
}

/// At exit: the pending count of this process, if any.
pub fn take_pending(pid: u32) -> Option<Flushed> {
    let mut g = STATE.try_lock().ok()?;
    let p = g.as_mut().filter(|p| p.pid == pid)?;
    p.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(port: u16) -> Event<'static> {
        Event {
            call: Call::Connect,
            verdict: Verdict::Deny,
            rule: "no-out",
            mode: Mode::Enforce,
            local: None,
            remote: Some(SocketAddr::from(([192, 0, 2, 1], port))),
        }
    }

    // One test: the state is per process.
    #[test]
    fn counts_are_exact_across_windows_and_different_events() {
        let pid = 4242;
        let mut written = 0u64;
        let mut t = 1_000_000i64;
        let step = |e: &Event<'_>, t: i64, written: &mut u64| {
            let o = observe(e, t, pid, 0);
            if let Some(f) = &o.flush {
                *written += f.repeat.count;
                assert_eq!(f.event().rule, "no-out");
            }
            if o.write {
                *written += 1;
            }
            o
        };
        // 25 identical, one a second: first line, then windows.
        for i in 0..25 {
            let o = step(&ev(6379), t, &mut written);
            assert_eq!(o.write, i == 0, "call {i}");
            t += 1000;
        }
        // A different destination flushes the pending window and is its own line.
        let o = step(&ev(6380), t, &mut written);
        assert!(o.write && o.flush.is_some());
        assert_eq!(written, 26);
        // Back to the first: a line of its own again.
        let o = step(&ev(6379), t + 1, &mut written);
        assert!(o.write);
        let o = step(&ev(6379), t + 2, &mut written);
        assert!(!o.write);
        let f = take_pending(pid).expect("one pending repeat");
        assert_eq!(f.repeat.count, 1);
        assert!(take_pending(pid).is_none());
        // A forked child never reports the parent's pending count.
        let _ = observe(&ev(1), t + 3, pid, 0);
        let _ = observe(&ev(1), t + 4, pid, 0);
        assert!(take_pending(pid + 1).is_none());
        let o = observe(&ev(1), t + 5, pid + 1, 0);
        assert!(o.write && o.flush.is_none());
    }
}
