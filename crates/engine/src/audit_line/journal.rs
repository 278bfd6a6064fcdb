//! The journal entry of one decision: systemd's native protocol (one datagram to
//! `/run/systemd/journal/socket`), formatted into a caller's fixed buffer like the
//! line itself, so both backends send the same fields.
//!
//! Each field is `KEY=value\n`, or — when the value holds a newline (a program path or
//! a rule name can) — `KEY\n`, the value's length as a little-endian u64, the value,
//! `\n` (the protocol's binary form). `MESSAGE` is the JSON line the other targets
//! write, so `journalctl -o cat` prints exactly the file's lines; the `SOCKEXIT_*`
//! fields make `journalctl SOCKEXIT_VERDICT=deny` and the like work without parsing it.

use super::{Event, LineBuf, Repeat, Stamp, PROGRAM_MAX, RULE_MAX};
use crate::Verdict;
use std::fmt::Write as _;
use std::net::SocketAddr;

/// The journal daemon's native socket.
pub const JOURNAL_SOCKET: &[u8] = b"/run/systemd/journal/socket";

/// Bytes of the stack buffer one entry is formatted into: a worst-case line
/// ([`super::LINE_MAX`]) plus every field at its budget (a unit test builds it).
pub const JOURNAL_MAX: usize = 3072;

/// syslog severities, as `PRIORITY=`: `warning` for refusals, `info` for allowed calls
/// (the syslog target's severities; the facility is the same `authpriv`).
const PRIORITY_DENY: u8 = 4;
const PRIORITY_ALLOW: u8 = 6;
const FACILITY_AUTHPRIV: u8 = 10;

/// What an entry carries beyond the line's [`Stamp`] and [`Event`].
pub struct JournalFacts<'a> {
    /// The executable's path as bytes (not JSON-escaped), if known.
    pub program: Option<&'a [u8]>,
    /// The policy file the process decides by, if known.
    pub policy: Option<&'a [u8]>,
    /// `preload` or `supervise`.
    pub backend: &'a str,
}

/// One entry: `MESSAGE` is `json` (the line, without its newline); `repeat` adds
/// `SOCKEXIT_REPEATED` for a line standing for repeated refusals.
pub fn push_journal<const N: usize>(
    out: &mut LineBuf<N>,
    st: &Stamp<'_>,
    ev: &Event<'_>,
    facts: &JournalFacts<'_>,
    json: &[u8],
    repeat: Option<&Repeat>,
) {
    push_field(out, "MESSAGE", json);
    let pri = match ev.verdict {
        Verdict::Deny => PRIORITY_DENY,
        Verdict::Allow => PRIORITY_ALLOW,
    };
    push_num(out, "PRIORITY", u64::from(pri));
    push_num(out, "SYSLOG_FACILITY", u64::from(FACILITY_AUTHPRIV));
    push_field(out, "SYSLOG_IDENTIFIER", b"sockexit");
    push_field(out, "SOCKEXIT_VERDICT", ev.verdict.as_str().as_bytes());
    push_field_cut(out, "SOCKEXIT_RULE", ev.rule.as_bytes(), RULE_MAX);
    push_field(out, "SOCKEXIT_CALL", ev.call.as_str().as_bytes());
    push_field(out, "SOCKEXIT_MODE", ev.mode.as_str().as_bytes());
    push_addr(out, "SOCKEXIT_REMOTE", "SOCKEXIT_REMOTE_PORT", ev.remote);
    push_addr(out, "SOCKEXIT_LOCAL", "SOCKEXIT_LOCAL_PORT", ev.local);
    push_num(out, "SOCKEXIT_PID", u64::from(st.pid));
    push_num(out, "SOCKEXIT_USER", u64::from(st.uid));
    if let Some(p) = facts.program {
        push_field_cut(out, "SOCKEXIT_PROGRAM", p, PROGRAM_MAX);
    }
    if let Some(p) = facts.policy {
        push_field_cut(out, "SOCKEXIT_POLICY", p, PROGRAM_MAX);
    }
    if let Some(r) = st.sets {
        push_num(out, "SOCKEXIT_SETS_REVISION", r);
    }
    if let Some(g) = st.policy {
        push_num(out, "SOCKEXIT_GENERATION", g);
    }
    push_field_cut(out, "SOCKEXIT_BACKEND", facts.backend.as_bytes(), RULE_MAX);
    if let Some(r) = repeat {
        push_num(out, "SOCKEXIT_REPEATED", r.count);
    }
}

/// A decimal number field.
fn push_num<const N: usize>(out: &mut LineBuf<N>, key: &str, v: u64) {
    let mut num = LineBuf::<24>::new();
    let _ = write!(num, "{v}");
    push_field(out, key, num.bytes().unwrap_or(b"0"));
}

/// `KEY=value\n`, or the binary form when `value` holds a newline (the protocol reads
/// the text form up to the first newline).
pub fn push_field<const N: usize>(out: &mut LineBuf<N>, key: &str, value: &[u8]) {
    push_parts(out, key, value, b"");
}

/// [`push_field`] of `value` cut to `max` bytes, ending in `...` when cut (as the
/// line's strings are; the journal takes any bytes, so the cut may split a character
/// of a path that is not UTF-8 anyway).
fn push_field_cut<const N: usize>(out: &mut LineBuf<N>, key: &str, value: &[u8], max: usize) {
    if value.len() <= max {
        return push_parts(out, key, value, b"");
    }
    let mut keep = max - 3;
    // A rule name is UTF-8: never split one of its characters.
    if let Ok(s) = std::str::from_utf8(value) {
        while !s.is_char_boundary(keep) {
            keep -= 1;
        }
    }
    push_parts(out, key, &value[..keep], b"...");
}

/// The field whose value is `head` followed by `tail`.
fn push_parts<const N: usize>(out: &mut LineBuf<N>, key: &str, head: &[u8], tail: &[u8]) {
    out.push(key.as_bytes());
    if head.contains(&b'\n') || tail.contains(&b'\n') {
        out.push(b"\n");
        out.push(&((head.len() + tail.len()) as u64).to_le_bytes());
    } else {
        out.push(b"=");
    }
    out.push(head);
    out.push(tail);
    out.push(b"\n");
}

/// The address (a v4-mapped one as IPv4, as the rules and the line see it) and its
/// port; neither field when unknown.
fn push_addr<const N: usize>(
    out: &mut LineBuf<N>,
    key: &str,
    port_key: &str,
    a: Option<SocketAddr>,
) {
    let Some(a) = a else { return };
    let mut ip = LineBuf::<64>::new();
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => write!(ip, "{v4}"),
            None => write!(ip, "{}", v6.ip()),
        },
        SocketAddr::V4(v4) => write!(ip, "{}", v4.ip()),
    }
    .ok();
    push_field(out, key, ip.bytes().unwrap_or(b""));
    let mut port = LineBuf::<8>::new();
    let _ = write!(port, "{}", a.port());
    push_field(out, port_key, port.bytes().unwrap_or(b""));
}

/// Splits a native-protocol datagram into its fields (for tests, both backends').
pub fn parse_entry(mut d: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut fields = Vec::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n')?;
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let key = String::from_utf8(line[..eq].to_vec()).ok()?;
            fields.push((key, line[eq + 1..].to_vec()));
            d = &d[nl + 1..];
        } else {
            let key = String::from_utf8(line.to_vec()).ok()?;
            let rest = &d[nl + 1..];
            let len = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
            let value = rest.get(8..8 + len)?.to_vec();
            if rest.get(8 + len) != Some(&b'\n') {
                return None;
            }
            fields.push((key, value));
            d = &rest[8 + len + 1..];
        }
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::super::{push_json, push_json_repeated, push_json_str, LINE_MAX};
    use super::*;
    use crate::{Call, Mode};

    fn stamp(program_json: &[u8]) -> Stamp<'_> {
        Stamp {
            secs: 1_795_590_062,
            millis: 345,
            pid: 4242,
            uid: 1000,
            program_json,
            backend: None,
            policy: Some(7),
            sets: None,
        }
    }

    fn get<'a>(f: &'a [(String, Vec<u8>)], k: &str) -> Option<&'a [u8]> {
        f.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_slice())
    }

    #[test]
    fn every_field_is_present_and_message_is_the_line() {
        let ev = Event {
            call: Call::Accept,
            verdict: Verdict::Deny,
            rule: "no-dot2",
            mode: Mode::Enforce,
            local: Some("127.0.0.1:21".parse().unwrap()),
            remote: Some("[::ffff:127.0.0.2]:5555".parse().unwrap()),
        };
        let st = stamp(br#""/usr/sbin/vsftpd""#);
        let mut line = LineBuf::<LINE_MAX>::new();
        push_json(&mut line, &st, &ev);
        let json = line.bytes().unwrap();
        let facts = JournalFacts {
            program: Some(b"/usr/sbin/vsftpd"),
            policy: Some(b"/etc/sockexit/ftpd.yaml"),
            backend: "preload",
        };
        let mut o = LineBuf::<JOURNAL_MAX>::new();
        push_journal(&mut o, &st, &ev, &facts, json, None);
        let f = parse_entry(o.bytes().unwrap()).unwrap();
        let want: &[(&str, &[u8])] = &[
            ("MESSAGE", json),
            ("PRIORITY", b"4"),
            ("SYSLOG_FACILITY", b"10"),
            ("SYSLOG_IDENTIFIER", b"sockexit"),
            ("SOCKEXIT_VERDICT", b"deny"),
            ("SOCKEXIT_RULE", b"no-dot2"),
            ("SOCKEXIT_CALL", b"accept"),
            ("SOCKEXIT_MODE", b"enforce"),
            ("SOCKEXIT_REMOTE", b"127.0.0.2"),
            ("SOCKEXIT_REMOTE_PORT", b"5555"),
            ("SOCKEXIT_LOCAL", b"127.0.0.1"),
            ("SOCKEXIT_LOCAL_PORT", b"21"),
            ("SOCKEXIT_PID", b"4242"),
            ("SOCKEXIT_USER", b"1000"),
            ("SOCKEXIT_PROGRAM", b"/usr/sbin/vsftpd"),
            ("SOCKEXIT_POLICY", b"/etc/sockexit/ftpd.yaml"),
            ("SOCKEXIT_GENERATION", b"7"),
            ("SOCKEXIT_BACKEND", b"preload"),
        ];
        let got: Vec<(&str, &[u8])> = f.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_value_with_a_newline_uses_the_binary_form_and_unknowns_are_left_out() {
        let ev = Event {
            call: Call::Listen,
            verdict: Verdict::Allow,
            rule: "default",
            mode: Mode::Audit,
            local: None,
            remote: None,
        };
        let mut st = stamp(b"null");
        st.policy = None;
        let facts = JournalFacts {
            program: Some(b"/opt/a\nb"),
            policy: None,
            backend: "supervise",
        };
        let mut o = LineBuf::<JOURNAL_MAX>::new();
        push_journal(&mut o, &st, &ev, &facts, b"{}", None);
        let raw = o.bytes().unwrap();
        let bin = b"SOCKEXIT_PROGRAM\n\x08\0\0\0\0\0\0\0/opt/a\nb\n";
        assert!(
            raw.windows(bin.len()).any(|w| w == bin),
            "{}",
            raw.escape_ascii()
        );
        let f = parse_entry(raw).unwrap();
        assert_eq!(get(&f, "SOCKEXIT_PROGRAM"), Some(&b"/opt/a\nb"[..]));
        assert_eq!(get(&f, "PRIORITY"), Some(&b"6"[..]));
        for k in [
            "SOCKEXIT_REMOTE",
            "SOCKEXIT_LOCAL_PORT",
            "SOCKEXIT_POLICY",
            "SOCKEXIT_GENERATION",
        ] {
            assert_eq!(get(&f, k), None, "{k}");
        }
    }

    #[test]
    fn worst_case_entry_fits() {
        let prog = vec![b'\n'; 5000];
        let mut pj = LineBuf::<{ PROGRAM_MAX + 2 }>::new();
        push_json_str(&mut pj, &prog, PROGRAM_MAX);
        let pj = pj.bytes().unwrap().to_vec();
        let rule = "\u{1}\n".repeat(3000);
        let a: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe%4294967295]:65535"
            .parse()
            .unwrap();
        let ev = Event {
            call: Call::Connect,
            verdict: Verdict::Deny,
            rule: &rule,
            mode: Mode::Enforce,
            local: Some(a),
            remote: Some(a),
        };
        let mut st = stamp(&pj);
        st.pid = u32::MAX;
        st.uid = u32::MAX;
        st.secs = 253_402_300_799;
        st.policy = Some(u64::MAX);
        st.backend = Some("supervise");
        let r = Repeat {
            count: u64::MAX,
            until_secs: st.secs,
            until_millis: 999,
        };
        let mut line = LineBuf::<LINE_MAX>::new();
        push_json_repeated(&mut line, &st, &ev, &r);
        let json = line.bytes().unwrap();
        let facts = JournalFacts {
            program: Some(&prog),
            policy: Some(&prog),
            backend: "supervise",
        };
        let mut o = LineBuf::<JOURNAL_MAX>::new();
        push_journal(&mut o, &st, &ev, &facts, json, Some(&r));
        let f = parse_entry(o.bytes().expect("worst case fits JOURNAL_MAX")).unwrap();
        assert_eq!(get(&f, "MESSAGE"), Some(json));
        let p = get(&f, "SOCKEXIT_PROGRAM").unwrap();
        assert!(p.len() <= PROGRAM_MAX && p.ends_with(b"..."));
        let r = std::str::from_utf8(get(&f, "SOCKEXIT_RULE").unwrap()).unwrap();
        assert!(r.len() <= RULE_MAX && r.ends_with("..."));
        assert_eq!(
            get(&f, "SOCKEXIT_REPEATED"),
            Some(u64::MAX.to_string().as_bytes())
        );
    }
}
