//! The audit line: pure formatting into a caller's fixed buffer (no I/O, no unsafe).
//!
//! Shared by both backends, the preload (`libsockexit.so`) and the supervisor
//! (`sockexit run --supervise`), so their lines are byte-identical but for the optional
//! `backend` and `policy` keys, which the preload omits unless it has a generation.

pub mod journal;

use crate::{Call, Mode, Verdict};
use std::fmt::{self, Write as _};
use std::net::SocketAddr;

/// One decision to record.
pub struct Event<'a> {
    /// The judged call.
    pub call: Call,
    /// What the policy decided.
    pub verdict: Verdict,
    /// The deciding rule's name, or `default`.
    pub rule: &'a str,
    /// `enforce` or `audit`.
    pub mode: Mode,
    /// The socket's own address, if known.
    pub local: Option<SocketAddr>,
    /// The peer or destination, if any.
    pub remote: Option<SocketAddr>,
}

/// Bytes of the stack buffer a line (with its syslog header) is formatted into.
pub const LINE_MAX: usize = 1280;
/// Budget for the escaped program path and rule name; longer ones end in `...`.
pub const PROGRAM_MAX: usize = 480;
/// Budget for the escaped rule name.
pub const RULE_MAX: usize = 200;
/// Budget for the syslog HOSTNAME field.
pub const HOST_MAX: usize = 64;

/// syslog facility `authpriv` (10), severities `warning` (4) and `info` (6).
const PRI_DENY: u8 = 10 * 8 + 4;
const PRI_ALLOW: u8 = 10 * 8 + 6;

/// A fixed-size line buffer. Writes past the end are dropped and remembered, so a
/// line that would not fit is never emitted half-formed.
pub struct LineBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
}

impl<const N: usize> Default for LineBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineBuf<N> {
    /// An empty buffer.
    pub fn new() -> Self {
        LineBuf {
            buf: [0; N],
            len: 0,
            overflow: false,
        }
    }

    /// Append bytes; past the end nothing more is kept and the line is lost whole.
    pub fn push(&mut self, b: &[u8]) {
        if self.overflow || self.len + b.len() > N {
            self.overflow = true;
            return;
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    /// The formatted bytes, `None` if anything did not fit.
    pub fn bytes(&self) -> Option<&[u8]> {
        (!self.overflow).then_some(&self.buf[..self.len])
    }
}

impl<const N: usize> fmt::Write for LineBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Append `s` as a JSON string (with quotes). Invalid UTF-8 becomes U+FFFD, control
/// characters are escaped, and the escaped text is cut at `max` bytes at a character
/// boundary, ending in `...` when cut.
pub fn push_json_str<const N: usize>(out: &mut LineBuf<N>, s: &[u8], max: usize) {
    const CUT: &[u8] = b"...";
    out.push(b"\"");
    let mut used = 0usize;
    let mut tmp = [0u8; 6];
    'chunks: for chunk in s.utf8_chunks() {
        let invalid: &[char] = if chunk.invalid().is_empty() {
            &[]
        } else {
            &['\u{fffd}']
        };
        for c in chunk.valid().chars().chain(invalid.iter().copied()) {
            let enc: &[u8] = match c {
                '"' => b"\\\"",
                '\\' => b"\\\\",
                '\n' => b"\\n",
                '\r' => b"\\r",
                '\t' => b"\\t",
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    let v = c as u32;
                    tmp = [
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[(v >> 4) as usize],
                        HEX[(v & 15) as usize],
                    ];
                    &tmp
                }
                c => c.encode_utf8(&mut tmp[..4]).as_bytes(),
            };
            if used + enc.len() + CUT.len() > max {
                out.push(CUT);
                break 'chunks;
            }
            out.push(enc);
            used += enc.len();
        }
    }
    out.push(b"\"");
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for seconds and milliseconds since the Unix epoch.
pub fn push_rfc3339<const N: usize>(out: &mut LineBuf<N>, secs: i64, millis: u32) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `"a.b.c.d:port"` / `"[v6]:port"` or `null`. A v4-mapped peer (`::ffff:a.b.c.d`, as a
/// dual-stack socket reports IPv4 clients) is written as IPv4, as the rules see it.
fn push_addr<const N: usize>(out: &mut LineBuf<N>, a: Option<SocketAddr>) {
    let a = match a {
        Some(SocketAddr::V6(v6)) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => Some(SocketAddr::from((v4, v6.port()))),
            None => Some(SocketAddr::V6(v6)),
        },
        other => other,
    };
    match a {
        // Only digits, hex, '.', ':', '[', ']' and '%': nothing to escape.
        Some(a) => {
            let _ = write!(out, "\"{a}\"");
        }
        None => out.push(b"null"),
    }
}

/// The clock and process facts of one line.
pub struct Stamp<'a> {
    /// Seconds since the Unix epoch.
    pub secs: i64,
    /// Milliseconds within the second.
    pub millis: u32,
    /// The deciding process.
    pub pid: u32,
    /// Its effective uid.
    pub uid: u32,
    /// Already JSON-escaped, with quotes (see [`push_json_str`]), or `null`.
    pub program_json: &'a [u8],
    /// `"backend":"NAME"` after `mode` when `Some` (the supervisor writes `supervise`;
    /// the preload writes nothing, so its lines are unchanged).
    pub backend: Option<&'a str>,
    /// `"policy":N` (the published policy's generation) after `mode` when `Some`.
    pub policy: Option<u64>,
    /// `"sets":R` (the revision of the dynamic sets' entries in force) after
    /// `policy` when `Some`: for a policy that has dynamic sets.
    pub sets: Option<u64>,
}

/// The JSON object of one decision, without a trailing newline.
pub fn push_json<const N: usize>(out: &mut LineBuf<N>, st: &Stamp<'_>, ev: &Event<'_>) {
    push_json_fields(out, st, ev);
    out.push(b"}");
}

/// How many identical refusals a `"repeated"` line stands for, and when the last of
/// them happened (seconds and milliseconds since the epoch).
pub struct Repeat {
    /// Refusals the line stands for.
    pub count: u64,
    /// The last one's seconds since the epoch.
    pub until_secs: i64,
    /// The last one's milliseconds within the second.
    pub until_millis: u32,
}

/// A collapsed line: the keys of [`push_json`] (with `ts` the first repeat's time),
/// then `"repeated":N` and `"until"` (the last repeat's time).
pub fn push_json_repeated<const N: usize>(
    out: &mut LineBuf<N>,
    st: &Stamp<'_>,
    ev: &Event<'_>,
    r: &Repeat,
) {
    push_json_fields(out, st, ev);
    let _ = write!(out, ",\"repeated\":{},\"until\":\"", r.count);
    push_rfc3339(out, r.until_secs, r.until_millis);
    out.push(b"\"}");
}

fn push_json_fields<const N: usize>(out: &mut LineBuf<N>, st: &Stamp<'_>, ev: &Event<'_>) {
    out.push(b"{\"ts\":\"");
    push_rfc3339(out, st.secs, st.millis);
    let _ = write!(out, "\",\"pid\":{},\"program\":", st.pid);
    out.push(st.program_json);
    let _ = write!(out, ",\"user\":{},\"call\":\"", st.uid);
    out.push(ev.call.as_str().as_bytes());
    out.push(b"\",\"local\":");
    push_addr(out, ev.local);
    out.push(b",\"remote\":");
    push_addr(out, ev.remote);
    out.push(b",\"verdict\":\"");
    out.push(ev.verdict.as_str().as_bytes());
    out.push(b"\",\"rule\":");
    push_json_str(out, ev.rule.as_bytes(), RULE_MAX);
    out.push(b",\"mode\":\"");
    out.push(ev.mode.as_str().as_bytes());
    out.push(b"\"");
    if let Some(b) = st.backend {
        out.push(b",\"backend\":");
        push_json_str(out, b.as_bytes(), RULE_MAX);
    }
    if let Some(g) = st.policy {
        let _ = write!(out, ",\"policy\":{g}");
    }
    if let Some(r) = st.sets {
        let _ = write!(out, ",\"sets\":{r}");
    }
}

/// RFC 5424 header: `<PRI>1 TIMESTAMP HOSTNAME sockexit PROCID - - `.
pub fn push_syslog_header<const N: usize>(
    out: &mut LineBuf<N>,
    st: &Stamp<'_>,
    host: &[u8],
    verdict: Verdict,
) {
    let pri = match verdict {
        Verdict::Deny => PRI_DENY,
        Verdict::Allow => PRI_ALLOW,
    };
    let _ = write!(out, "<{pri}>1 ");
    push_rfc3339(out, st.secs, st.millis);
    out.push(b" ");
    out.push(if host.is_empty() { b"-" } else { host });
    let _ = write!(out, " sockexit {} - - ", st.pid);
}

/// RFC 5424 HOSTNAME: printable US-ASCII without spaces, at most [`HOST_MAX`] bytes.
pub fn sanitize_host(raw: &[u8]) -> Vec<u8> {
    raw.iter()
        .take(HOST_MAX)
        .map(|&b| if (33..=126).contains(&b) { b } else { b'-' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    fn s<const N: usize>(b: &LineBuf<N>) -> String {
        String::from_utf8(b.bytes().expect("fits").to_vec()).expect("utf-8")
    }

    fn json(b: &[u8], max: usize) -> String {
        let mut o = LineBuf::<2048>::new();
        push_json_str(&mut o, b, max);
        s(&o)
    }

    fn ts(secs: i64, ms: u32) -> String {
        let mut o = LineBuf::<64>::new();
        push_rfc3339(&mut o, secs, ms);
        s(&o)
    }

    #[test]
    fn timestamps_match_known_dates() {
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(ts(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(ts(1_709_164_799, 999), "2024-02-28T23:59:59.999Z");
        assert_eq!(ts(1_795_590_062, 345), "2026-11-25T07:01:02.345Z");
        assert_eq!(ts(4_102_444_800, 0), "2100-01-01T00:00:00.000Z");
        assert_eq!(ts(-1, 500), "1969-12-31T23:59:59.500Z");
    }

    #[test]
    fn civil_from_days_roundtrips_every_day_for_a_millennium() {
        // Walk day by day and check the calendar advances as it must.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for z in 0..365_243i64 {
            assert_eq!(civil_from_days(z), (y, m, d), "day {z}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let dim = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            d += 1;
            if d > dim[(m - 1) as usize] {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn json_strings_are_escaped_and_parse_back() {
        let raw = b"/opt/a \"b\"\\c\n\t\x01\x7f\xc3\xa9";
        let out = json(raw, 1000);
        assert_eq!(out, r#""/opt/a \"b\"\\c\n\t\u0001\u007fé""#);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back.as_bytes(), raw);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_character() {
        let out = json(b"/x\xff\xfey", 1000);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "/x\u{fffd}\u{fffd}y");
    }

    #[test]
    fn long_strings_are_cut_at_a_character_boundary() {
        let raw = "é".repeat(400);
        let out = json(raw.as_bytes(), 101);
        let back: String = serde_json::from_str(&out).unwrap();
        assert!(back.ends_with("..."), "{back}");
        assert!(back.len() <= 101, "{}", back.len());
        assert!(back.starts_with("éé"));
        // An escape sequence is never split either.
        let out = json(&[1u8; 100], 20);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "\u{1}\u{1}...");
    }

    fn ev(local: Option<SocketAddr>, remote: Option<SocketAddr>, rule: &str) -> Event<'_> {
        Event {
            call: Call::Accept,
            verdict: Verdict::Deny,
            rule,
            mode: Mode::Audit,
            local,
            remote,
        }
    }

    fn stamp(program_json: &[u8]) -> Stamp<'_> {
        Stamp {
            secs: 1_795_590_062,
            millis: 345,
            pid: 4242,
            uid: 1000,
            program_json,
            backend: None,
            policy: None,
            sets: None,
        }
    }

    #[test]
    fn line_has_every_key_in_order() {
        let mut o = LineBuf::<LINE_MAX>::new();
        let l = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1), 21));
        let r = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 5555, 0, 0));
        push_json(
            &mut o,
            &stamp(br#""/usr/sbin/vsftpd""#),
            &ev(Some(l), Some(r), "no-\"x\""),
        );
        assert_eq!(
            s(&o),
            r#"{"ts":"2026-11-25T07:01:02.345Z","pid":4242,"program":"/usr/sbin/vsftpd","user":1000,"call":"accept","local":"127.0.0.1:21","remote":"[::1]:5555","verdict":"deny","rule":"no-\"x\"","mode":"audit"}"#
        );
    }

    #[test]
    fn backend_and_policy_follow_mode_only_when_given() {
        let mut o = LineBuf::<LINE_MAX>::new();
        let mut st = stamp(b"null");
        st.backend = Some("supervise");
        st.policy = Some(7);
        push_json(&mut o, &st, &ev(None, None, "r"));
        assert!(
            s(&o).ends_with(r#""mode":"audit","backend":"supervise","policy":7}"#),
            "{}",
            s(&o)
        );
        let mut o = LineBuf::<LINE_MAX>::new();
        st.sets = Some(12);
        push_json(&mut o, &st, &ev(None, None, "r"));
        assert!(
            s(&o).ends_with(r#""backend":"supervise","policy":7,"sets":12}"#),
            "{}",
            s(&o)
        );
        let mut o = LineBuf::<LINE_MAX>::new();
        push_json(&mut o, &stamp(b"null"), &ev(None, None, "r"));
        assert!(s(&o).ends_with(r#""mode":"audit"}"#), "{}", s(&o));
    }

    #[test]
    fn mapped_ipv4_is_written_as_ipv4_and_unknown_as_null() {
        let mut o = LineBuf::<LINE_MAX>::new();
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:40000".parse().unwrap();
        push_json(&mut o, &stamp(b"null"), &ev(None, Some(mapped), "r"));
        let v: serde_json::Value = serde_json::from_slice(o.bytes().unwrap()).unwrap();
        assert_eq!(v["remote"], "10.1.2.3:40000");
        assert!(v["local"].is_null());
        assert!(v["program"].is_null());
    }

    #[test]
    fn worst_case_line_fits_and_parses() {
        let prog = vec![b'"'; 5000];
        let mut pj = LineBuf::<{ PROGRAM_MAX + 2 }>::new();
        push_json_str(&mut pj, &prog, PROGRAM_MAX);
        let pj = pj.bytes().expect("program budget fits its buffer").to_vec();
        let rule = "\u{1}".repeat(5000);
        let a: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe%4294967295]:65535"
            .parse()
            .unwrap();
        let mut st = stamp(&pj);
        st.pid = u32::MAX;
        st.uid = u32::MAX;
        st.secs = 253_402_300_799; // 9999-12-31T23:59:59
        let mut o = LineBuf::<LINE_MAX>::new();
        let host = sanitize_host(&[b'h'; 300]);
        push_syslog_header(&mut o, &st, &host, Verdict::Deny);
        let r = Repeat {
            count: u64::MAX,
            until_secs: st.secs,
            until_millis: 999,
        };
        push_json_repeated(&mut o, &st, &ev(Some(a), Some(a), &rule), &r);
        o.push(b"\n");
        let b = o.bytes().expect("worst case fits LINE_MAX");
        let json_start = b.iter().position(|&c| c == b'{').unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b[json_start..]).unwrap();
        assert!(v["program"].as_str().unwrap().ends_with("..."));
        assert!(v["rule"].as_str().unwrap().ends_with("..."));
        assert_eq!(v["ts"], "9999-12-31T23:59:59.345Z");
        assert_eq!(v["repeated"], u64::MAX);
        assert_eq!(v["until"], "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn syslog_header_is_rfc5424() {
        let mut o = LineBuf::<LINE_MAX>::new();
        let st = stamp(b"null");
        push_syslog_header(&mut o, &st, &sanitize_host(b"web 1"), Verdict::Deny);
        assert_eq!(
            s(&o),
            "<84>1 2026-11-25T07:01:02.345Z web-1 sockexit 4242 - - "
        );
        let mut o = LineBuf::<LINE_MAX>::new();
        push_syslog_header(&mut o, &st, b"", Verdict::Allow);
        assert_eq!(s(&o), "<86>1 2026-11-25T07:01:02.345Z - sockexit 4242 - - ");
    }

    #[test]
    fn overflow_is_reported_not_emitted_half() {
        let mut o = LineBuf::<8>::new();
        o.push(b"12345");
        o.push(b"6789");
        o.push(b"0");
        assert_eq!(o.bytes(), None);
    }
}
