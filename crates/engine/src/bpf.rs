//! Stealth (issue 8): compile the accept rules that remain for one listening socket
//! into a classic BPF socket filter on the peer's address and port.
//!
//! At `listen()` time the local address and port, the program, and (when they cannot
//! change) the user and group are known. What is left of the accept rules is a
//! decision on the packet: its source address and port (the peer), and, for a
//! wildcard or not-yet-bound listener, its destination address and port (the local
//! address an accepted connection would have). [`compile`] turns that residual into a
//! classic BPF program for `SO_ATTACH_FILTER`: the kernel runs it on every packet the
//! listener receives (the SYN, and the handshake's final ACK) and on every packet of the
//! accepted sockets, which inherit it. A packet it returns 0 for is dropped before the
//! TCP stack answers, so a refused peer gets no SYN-ACK and its connect times out.
//!
//! The filter is *sound*: it never drops a packet from a peer the accept-time check
//! could allow. Where a rule depends on something that may change between `listen` and
//! `accept` (the user or group of a process that can still switch ids) or is unknown,
//! the filter lets those peers through to the accept-time check, which stays the
//! authority, and [`Compiled::partial`] says why.
//!
//! Layout of the program: for a dual-stack listener, a branch on the IP version nibble
//! (IPv4 packets arrive with an IPv4 header even on an `AF_INET6` socket), then one
//! section per family that tests the rules in policy order (first match wins) and ends
//! with the default. Each address or port set becomes sorted, disjoint ranges searched
//! by a balanced tree of `jge` comparisons; IPv6 addresses are compared 32 bits at a
//! time, descending to the next word only where a range boundary is not word-aligned,
//! so a /48 costs no more than an IPv4 prefix. Conditional jumps reach 255 instructions
//! ahead at most; longer ones go through `ja` islands placed where no code falls
//! through. The kernel limit is [`MAX_INSNS`] instructions.

use crate::ranges::Span;
use crate::{Call, Mode, Policy, Verdict};
use std::net::{IpAddr, SocketAddr};

/// `struct sock_filter` of `<linux/filter.h>`: one classic BPF instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct SockFilter {
    /// Opcode: class | size | mode, or class | op | source.
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

/// `BPF_MAXINSNS`: the most instructions `SO_ATTACH_FILTER` accepts.
pub const MAX_INSNS: usize = 4096;

/// `SKF_NET_OFF`: loads at `SKF_NET_OFF + n` read byte `n` of the network header,
/// whatever `skb->data` points at (for TCP sockets: the TCP header).
pub const SKF_NET_OFF: i32 = -0x100000;

/// Return value that keeps the whole packet (the filter's result is a length to trim
/// to; anything shorter than a TCP packet would corrupt or drop it).
pub const RET_ACCEPT: u32 = 0xffff_ffff;
/// Return value that drops the packet.
pub const RET_DROP: u32 = 0;

/// Opcode parts, as in `<linux/bpf_common.h>`.
#[allow(missing_docs)]
pub mod op {
    pub const LD: u16 = 0x00;
    pub const LDX: u16 = 0x01;
    pub const ALU: u16 = 0x04;
    pub const JMP: u16 = 0x05;
    pub const RET: u16 = 0x06;
    pub const MISC: u16 = 0x07;
    pub const W: u16 = 0x00;
    pub const H: u16 = 0x08;
    pub const B: u16 = 0x10;
    pub const IMM: u16 = 0x00;
    pub const ABS: u16 = 0x20;
    pub const IND: u16 = 0x40;
    pub const MSH: u16 = 0xa0;
    pub const ADD: u16 = 0x00;
    pub const SUB: u16 = 0x10;
    pub const OR: u16 = 0x40;
    pub const AND: u16 = 0x50;
    pub const LSH: u16 = 0x60;
    pub const RSH: u16 = 0x70;
    pub const JA: u16 = 0x00;
    pub const JEQ: u16 = 0x10;
    pub const JGT: u16 = 0x20;
    pub const JGE: u16 = 0x30;
    pub const JSET: u16 = 0x40;
    pub const K: u16 = 0x00;
    pub const X: u16 = 0x08;
    pub const A: u16 = 0x10;
    pub const TAX: u16 = 0x00;
    pub const TXA: u16 = 0x80;
}

/// What is known about a socket when the program calls `listen()` on it.
#[derive(Debug, Clone)]
pub struct Listener<'a> {
    /// `getsockname` before the real listen. An unspecified address (`0.0.0.0`, `::`)
    /// or port 0 (not bound yet) means "any": the filter then tests the packet's
    /// destination, which is what an accepted connection's local address will be.
    pub local: SocketAddr,
    /// For an `AF_INET6` listener: `IPV6_V6ONLY` is set (no IPv4 packets can arrive).
    pub v6_only: bool,
    /// Effective uid at accept time, when it cannot change after listen; `None` when
    /// unknown or changeable (a root server that drops privileges).
    pub uid: Option<u32>,
    /// Effective gid at accept time, when it cannot change; `None` otherwise.
    pub gid: Option<u32>,
    /// The executable's absolute path, when known.
    pub program: Option<&'a [u8]>,
}

/// The outcome of compiling one listener's accept rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A filter to attach.
    Filter(Vec<SockFilter>),
    /// Every peer may be allowed: a filter would drop nothing, so none is needed.
    AcceptAll,
    /// The filter would need this many instructions, more than [`MAX_INSNS`] (a lower
    /// bound when compilation stopped early). Nothing can be attached.
    TooLarge {
        /// Instructions needed.
        insns: usize,
    },
    /// The policy is in audit mode: nothing is refused, so nothing may be dropped.
    AuditMode,
}

/// A compiled listener: the outcome, and why some refused peers still reach `accept`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// What to attach, if anything.
    pub outcome: Outcome,
    /// One line per rule whose effect the filter cannot decide, e.g. "rule `x` looks
    /// at the user, which can change after listen". Empty when the filter decides
    /// exactly as the accept-time check would for every peer.
    pub partial: Vec<String>,
}

impl Compiled {
    /// Number of instructions of the filter, if there is one.
    pub fn insns(&self) -> Option<usize> {
        match &self.outcome {
            Outcome::Filter(f) => Some(f.len()),
            _ => None,
        }
    }

    /// One line for logs and the CLI: `filter: 37 instructions`, `no filter: ...`.
    pub fn describe(&self) -> String {
        let mut s = match &self.outcome {
            Outcome::Filter(f) => format!(
                "filter: {} instruction{}",
                f.len(),
                if f.len() == 1 { "" } else { "s" }
            ),
            Outcome::AcceptAll => {
                "no filter: every peer may be allowed, so there is nothing to drop".to_string()
            }
            Outcome::TooLarge { insns } => format!(
                "no filter: too large ({insns}{} instructions, the kernel allows {MAX_INSNS}); \
                 refused peers are reset at accept",
                if *insns > MAX_INSNS { "+" } else { "" }
            ),
            Outcome::AuditMode => {
                "no filter: audit mode refuses nothing, so nothing may be dropped".to_string()
            }
        };
        if !self.partial.is_empty() && matches!(self.outcome, Outcome::Filter(_)) {
            s.push_str(" (partial: ");
            s.push_str(&self.partial.join("; "));
            s.push(')');
        }
        s
    }
}

// ---------------------------------------------------------------------------------
// Residual: the accept rules, with everything known at listen time evaluated.
// ---------------------------------------------------------------------------------

/// A packet field a rule can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    SrcPort,
    DstPort,
    Src4,
    Dst4,
    Src6,
    Dst6,
}

impl Field {
    fn words(self) -> usize {
        match self {
            Field::Src6 | Field::Dst6 => 4,
            _ => 1,
        }
    }

    /// The load of 32-bit word `w` of the field into A.
    fn load(self, w: usize) -> (u16, u32) {
        let net = |off: i32| (off + SKF_NET_OFF) as u32;
        let ldw = op::LD | op::W | op::ABS;
        match self {
            // Relative to skb->data, which is the TCP header when a TCP socket's
            // filter runs (IPv6 extension headers are already skipped).
            Field::SrcPort => (op::LD | op::H | op::ABS, 0),
            Field::DstPort => (op::LD | op::H | op::ABS, 2),
            Field::Src4 => (ldw, net(12)),
            Field::Dst4 => (ldw, net(16)),
            Field::Src6 => (ldw, net(8 + 4 * w as i32)),
            Field::Dst6 => (ldw, net(24 + 4 * w as i32)),
        }
    }

    fn max(self) -> u128 {
        match self {
            Field::SrcPort | Field::DstPort => 0xffff,
            Field::Src4 | Field::Dst4 => u32::MAX as u128,
            Field::Src6 | Field::Dst6 => u128::MAX,
        }
    }
}

/// One membership test: the field's value is in one of `ranges` (sorted, disjoint).
#[derive(Debug, Clone)]
struct Check {
    field: Field,
    ranges: Vec<(u128, u128)>,
}

#[derive(Debug, Clone)]
struct RRule {
    allow: bool,
    checks: Vec<Check>,
}

fn widen<T: Copy + Into<u128>, S: Span<T>>(v: &[S]) -> Vec<(u128, u128)> {
    v.iter().map(|r| (r.lo().into(), r.hi().into())).collect()
}

/// Why a field test cannot be part of a filter.
enum NoCheck {
    /// It never holds: the rule cannot match.
    Never,
    /// It alone needs more than [`MAX_INSNS`] instructions (at least this many).
    TooLarge(usize),
}

/// A check, or `None` when it always holds.
fn check<T: Copy + Into<u128>, S: Span<T>>(
    field: Field,
    ranges: &[S],
) -> Result<Option<Check>, NoCheck> {
    if ranges.is_empty() {
        return Err(NoCheck::Never);
    }
    // n disjoint, non-adjacent ranges each need a comparison of their own (a `jeq`
    // for a single value, else a boundary): known too large before copying a huge set.
    let least = ranges.len() - 1;
    if least > MAX_INSNS {
        return Err(NoCheck::TooLarge(least));
    }
    let ranges = widen(ranges);
    if ranges.len() == 1 && ranges[0] == (0, field.max()) {
        return Ok(None);
    }
    Ok(Some(Check { field, ranges }))
}

/// The residual accept rules for one family section (`v6` false: IPv4 packets).
/// `Err(n)`: a rule that can match needs a test of at least `n` > [`MAX_INSNS`]
/// instructions.
/// With `conservative`, a rule that looks at an unknown fact is decided the other way
/// round (see [`compile_conservative`]).
fn residual(
    policy: &Policy,
    l: &Listener<'_>,
    v6: bool,
    partial: &mut Vec<String>,
    conservative: bool,
) -> Result<Vec<RRule>, usize> {
    let local_ip = l.local.ip().to_canonical();
    let local_known = !local_ip.is_unspecified();
    let port_known = l.local.port() != 0;
    let mut out = Vec::new();
    for r in policy.rules().iter().filter(|r| r.applies_to(Call::Accept)) {
        // Facts of the process: known (evaluated now), or unknown (may match).
        let mut unknown: Vec<&str> = Vec::new();
        if let Some(users) = r.users() {
            match l.uid {
                Some(u) if !users.contains(&u) => continue,
                Some(_) => {}
                None => unknown.push("the user, which can change after listen"),
            }
        }
        if let Some(groups) = r.groups() {
            match l.gid {
                Some(g) if !groups.contains(&g) => continue,
                Some(_) => {}
                None => unknown.push("the group, which can change after listen"),
            }
        }
        if let Some(globs) = r.programs() {
            match l.program {
                Some(p) if !globs.iter().any(|g| g.matches(p)) => continue,
                Some(_) => {}
                None => unknown.push("the program, which is unknown"),
            }
        }
        if let Some((f4, f6)) = r.families() {
            if !(if v6 { f6 } else { f4 }) {
                continue;
            }
        }
        let mut checks = Vec::new();
        let mut never = false;
        let mut too_large = None;
        let mut add = |c: Result<Option<Check>, NoCheck>| match c {
            Ok(Some(c)) => checks.push(c),
            Ok(None) => {}
            Err(NoCheck::Never) => never = true,
            Err(NoCheck::TooLarge(n)) => too_large = Some(n),
        };
        if let Some(ps) = r.local_ports() {
            if port_known {
                if !ps.contains(l.local.port()) {
                    continue;
                }
            } else {
                add(check(Field::DstPort, ps.ranges()));
            }
        }
        if let Some(ps) = r.remote_ports() {
            add(check(Field::SrcPort, ps.ranges()));
        }
        let dynamic = r.local_dynamic().len() + r.remote_dynamic().len() > 0;
        if dynamic {
            unknown.push("a dynamic set, whose entries change at run time");
        }
        if let Some(s) = r.local().filter(|_| r.local_dynamic().is_empty()) {
            if local_known {
                if !s.contains(local_ip) {
                    continue;
                }
            } else if v6 {
                add(check(Field::Dst6, s.v6_ranges()));
            } else {
                add(check(Field::Dst4, s.v4_ranges()));
            }
        }
        if let Some(s) = r.remote().filter(|_| r.remote_dynamic().is_empty()) {
            if v6 {
                add(check(Field::Src6, s.v6_ranges()));
            } else {
                add(check(Field::Src4, s.v4_ranges()));
            }
        }
        if never {
            continue;
        }
        let allow = r.action() == Verdict::Allow;
        if !unknown.is_empty() && conservative {
            let what = unknown.join(" and ");
            let line = format!(
                "rule `{}` looks at {what}: counted as {}",
                r.name(),
                if allow {
                    "never matching (the peers it allows are dropped)"
                } else {
                    "matching (the peers its other fields name are dropped)"
                }
            );
            if !partial.contains(&line) {
                partial.push(line);
            }
            if allow {
                continue;
            }
        } else if !unknown.is_empty() {
            let what = unknown.join(" and ");
            let line = if allow {
                format!(
                    "rule `{}` looks at {what}: peers it may allow are let through to the \
                     accept-time check",
                    r.name()
                )
            } else {
                format!(
                    "rule `{}` looks at {what}: peers it refuses are refused at accept \
                     (reset), not dropped",
                    r.name()
                )
            };
            if !partial.contains(&line) {
                partial.push(line);
            }
            if !allow {
                // Whether it matches or not, a later rule decides the rest soundly:
                // dropping needs "refused whatever the unknown fact is".
                continue;
            }
        }
        if let Some(n) = too_large {
            return Err(n);
        }
        let unconditional = checks.is_empty();
        out.push(RRule { allow, checks });
        if unconditional {
            break; // nothing after it is reachable in this section
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// Assembler: labels, forward jumps, `ja` islands for jumps beyond 255.
// ---------------------------------------------------------------------------------

type Label = usize;

#[derive(Debug, Clone, Copy)]
enum Op {
    Stmt {
        code: u16,
        k: u32,
    },
    Jump {
        code: u16,
        k: u32,
        jt: Label,
        jf: Label,
    },
    Ja(Label),
}

#[derive(Debug, Clone, Copy)]
enum Item {
    Label(Label),
    Op(Op),
}

#[derive(Default)]
struct Asm {
    items: Vec<Item>,
    labels: usize,
    ops: usize,
}

/// Room left between an island and the far end of the window it serves.
const SLACK: usize = 48;

/// Compilation stopped: the program exceeds [`MAX_INSNS`] (at least this many).
struct Overflow(usize);

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        self.labels - 1
    }
    fn place(&mut self, l: Label) {
        self.items.push(Item::Label(l));
    }
    fn op(&mut self, o: Op) -> Result<(), Overflow> {
        self.items.push(Item::Op(o));
        self.ops += 1;
        if self.ops > MAX_INSNS {
            return Err(Overflow(self.ops));
        }
        Ok(())
    }
    fn stmt(&mut self, code: u16, k: u32) -> Result<(), Overflow> {
        self.op(Op::Stmt { code, k })
    }
    fn jump(&mut self, code: u16, k: u32, jt: Label, jf: Label) -> Result<(), Overflow> {
        self.op(Op::Jump { code, k, jt, jf })
    }
    fn ret(&mut self, allow: bool) -> Result<(), Overflow> {
        self.stmt(op::RET | op::K, if allow { RET_ACCEPT } else { RET_DROP })
    }

    /// Positions of labels and of each item (items' position = next op's index).
    fn layout(&self) -> (Vec<usize>, Vec<usize>) {
        let mut lab = vec![usize::MAX; self.labels];
        let mut at = Vec::with_capacity(self.items.len());
        let mut p = 0;
        for it in &self.items {
            at.push(p);
            match it {
                Item::Label(l) => lab[*l] = p,
                Item::Op(_) => p += 1,
            }
        }
        (lab, at)
    }

    /// Make every conditional jump reach its target within 255 instructions, then
    /// encode.
    fn finish(mut self) -> Result<Vec<SockFilter>, Overflow> {
        loop {
            if self.ops > MAX_INSNS {
                return Err(Overflow(self.ops));
            }
            let (lab, at) = self.layout();
            let far = self.items.iter().enumerate().find_map(|(i, it)| match it {
                Item::Op(Op::Jump { jt, jf, .. }) => {
                    let p = at[i];
                    [(true, *jt), (false, *jf)]
                        .into_iter()
                        .find(|&(_, t)| lab[t] - p - 1 > 255)
                        .map(|(is_jt, t)| (i, p, is_jt, t))
                }
                _ => None,
            });
            let Some((i, p, is_jt, target)) = far else {
                return Ok(self.encode(&lab));
            };
            let fresh = self.island(i, p, target, &lab, &at);
            if let Item::Op(Op::Jump { jt, jf, .. }) = &mut self.items[i] {
                if is_jt {
                    *jt = fresh;
                } else {
                    *jf = fresh;
                }
            }
        }
    }

    /// A label within reach of the jump at item `i` (position `p`) that leads to
    /// `target`: an existing `ja target`, else a new one where nothing falls through
    /// (at the latest such point, with some slack), at worst right after the jump.
    fn island(&mut self, i: usize, p: usize, target: Label, lab: &[usize], at: &[usize]) -> Label {
        let reach = p + 256; // last position a jump at p can reach
        let fresh = self.label();
        let mut barrier = None;
        let mut reuse = None;
        for (j, it) in self.items.iter().enumerate().skip(i) {
            if at[j] > reach {
                break;
            }
            let Item::Op(o) = *it else { continue };
            if let Op::Ja(t) = o {
                if j > i && lab[t] == lab[target] {
                    reuse = Some(j);
                    break;
                }
            }
            // Only a statement other than a return runs on into the next instruction:
            // a conditional jump names both its targets (labels), so an island right
            // after it moves a target one further, still correct.
            let falls = matches!(o, Op::Stmt { code, .. } if code & 0x07 != op::RET);
            // Prefer islands well before the limit: later insertions between a jump
            // and its island must not push it out of reach again at once.
            if !falls && at[j] < reach && (barrier.is_none() || at[j] + SLACK < reach) {
                barrier = Some(j + 1);
            }
        }
        if let Some(j) = reuse {
            self.items.insert(j, Item::Label(fresh));
            return fresh;
        }
        let idx = barrier.unwrap_or(i + 1);
        self.items
            .splice(idx..idx, [Item::Label(fresh), Item::Op(Op::Ja(target))]);
        self.ops += 1;
        fresh
    }

    fn encode(&self, lab: &[usize]) -> Vec<SockFilter> {
        let mut out = Vec::with_capacity(self.ops);
        for it in &self.items {
            let Item::Op(o) = it else { continue };
            let p = out.len();
            out.push(match *o {
                Op::Stmt { code, k } => SockFilter {
                    code,
                    jt: 0,
                    jf: 0,
                    k,
                },
                Op::Ja(t) => SockFilter {
                    code: op::JMP | op::JA,
                    jt: 0,
                    jf: 0,
                    k: (lab[t] - p - 1) as u32,
                },
                Op::Jump { code, k, jt, jf } => SockFilter {
                    code,
                    jt: (lab[jt] - p - 1) as u8,
                    jf: (lab[jf] - p - 1) as u8,
                    k,
                },
            });
        }
        out
    }
}

// ---------------------------------------------------------------------------------
// Code generation.
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    In,
    Out,
    Sub(usize),
}

/// Jump to `yes` when the field is in `ranges`, else to `no`. Never falls through.
fn emit_set(
    a: &mut Asm,
    field: Field,
    ranges: &[(u128, u128)],
    yes: Label,
    no: Label,
) -> Result<(), Overflow> {
    emit_level(a, field, 0, ranges, yes, no)
}

/// Word `d` of the field: a tree over the 32-bit values of that word; values where
/// the set is only partly in descend to word `d + 1` (IPv6 only).
fn emit_level(
    a: &mut Asm,
    field: Field,
    d: usize,
    ranges: &[(u128, u128)],
    yes: Label,
    no: Label,
) -> Result<(), Overflow> {
    let shift = 32 * (field.words() - d - 1) as u32;
    let low: u128 = if shift == 0 { 0 } else { (1u128 << shift) - 1 };
    let word = |v: u128| ((v >> shift) & 0xffff_ffff) as u32;
    // Segments of word values, in increasing order: (first, last, piece).
    let mut segs: Vec<(u32, u32, Piece)> = Vec::new();
    let mut subs: Vec<Vec<(u128, u128)>> = Vec::new();
    let mut sub = |segs: &mut Vec<(u32, u32, Piece)>, w: u32, r: (u128, u128)| {
        if let Some(&(_, _, Piece::Sub(i))) = segs.last() {
            if segs.last().unwrap().0 == w {
                subs[i].push(r);
                return;
            }
        }
        subs.push(vec![r]);
        segs.push((w, w, Piece::Sub(subs.len() - 1)));
    };
    for &(lo, hi) in ranges {
        let (wl, wh) = (word(lo), word(hi));
        let lo_full = lo & low == 0;
        let hi_full = hi & low == low;
        if wl == wh {
            if lo_full && hi_full {
                segs.push((wl, wl, Piece::In));
            } else {
                sub(&mut segs, wl, (lo, hi));
            }
            continue;
        }
        let first = if lo_full {
            wl
        } else {
            sub(&mut segs, wl, (lo, lo | low));
            wl + 1
        };
        let (last, tail) = if hi_full {
            (wh, None)
        } else {
            (wh - 1, Some((hi & !low, hi)))
        };
        if first <= last {
            segs.push((first, last, Piece::In));
        }
        if let Some(t) = tail {
            sub(&mut segs, wh, t);
        }
    }
    // Pieces covering every word value: start value and kind, adjacent kinds merged.
    let mut pieces: Vec<(u32, Piece)> = Vec::new();
    let mut next: u64 = 0;
    // Sub pieces are single word values and never merge.
    let push = |pieces: &mut Vec<(u32, Piece)>, start: u32, p: Piece| match pieces.last() {
        Some(&(_, last)) if last == p && !matches!(p, Piece::Sub(_)) => {}
        _ => pieces.push((start, p)),
    };
    for &(f, l, p) in &segs {
        if (f as u64) > next {
            push(&mut pieces, next as u32, Piece::Out);
        }
        push(&mut pieces, f, p);
        next = l as u64 + 1;
    }
    if next <= u32::MAX as u64 {
        push(&mut pieces, next as u32, Piece::Out);
    }
    let lv = Level {
        field,
        d,
        subs: &subs,
        yes,
        no,
    };
    if pieces.len() == 1 {
        return lv.leaf(a, pieces[0].1);
    }
    let (code, k) = field.load(d);
    a.stmt(code, k)?;
    lv.tree(a, &pieces, 1 << 32)
}

/// Longest chain of `jeq` tests used instead of a subtree (more would lengthen the
/// path a packet runs for little saving).
const CHAIN: usize = 8;

/// One word of a set test: where its tree leads.
struct Level<'s> {
    field: Field,
    d: usize,
    subs: &'s [Vec<(u128, u128)>],
    yes: Label,
    no: Label,
}

impl Level<'_> {
    /// Code for a single piece reached by a jump: nothing for in/out (the jump goes
    /// straight to yes/no), the next word's test, placed right here, for a sub piece.
    fn leaf(&self, a: &mut Asm, p: Piece) -> Result<(), Overflow> {
        match p {
            Piece::In => a.op(Op::Ja(self.yes)),
            Piece::Out => a.op(Op::Ja(self.no)),
            Piece::Sub(i) => {
                emit_level(a, self.field, self.d + 1, &self.subs[i], self.yes, self.no)
            }
        }
    }

    /// A balanced tree of `jge` over the pieces' start values; A holds the word, and
    /// is below `end` here. Sub-word tests are emitted next to the node that leads to
    /// them, so those jumps stay short. Where the pieces left are a few single values
    /// among gaps (a list of host addresses), a chain of `jeq` is shorter: one test
    /// per value instead of two boundaries.
    fn tree(&self, a: &mut Asm, pieces: &[(u32, Piece)], end: u64) -> Result<(), Overflow> {
        if let Some(points) = points_only(pieces, end) {
            if points.len() <= CHAIN && points.len() + 1 < pieces.len() {
                for (i, &v) in points.iter().enumerate() {
                    if i + 1 == points.len() {
                        a.jump(op::JMP | op::JEQ | op::K, v, self.yes, self.no)?;
                    } else {
                        let next = a.label();
                        a.jump(op::JMP | op::JEQ | op::K, v, self.yes, next)?;
                        a.place(next);
                    }
                }
                return Ok(());
            }
        }
        let mid = pieces.len() / 2;
        let (left, right) = pieces.split_at(mid);
        let side = |a: &mut Asm, s: &[(u32, Piece)]| match s {
            [(_, Piece::In)] => (self.yes, None),
            [(_, Piece::Out)] => (self.no, None),
            _ => {
                let l = a.label();
                (l, Some(l))
            }
        };
        let (jf, lf) = side(a, left);
        let (jt, rt) = side(a, right);
        a.jump(op::JMP | op::JGE | op::K, right[0].0, jt, jf)?;
        let split = u64::from(right[0].0);
        for (l, s, e) in [(lf, left, split), (rt, right, end)] {
            if let Some(l) = l {
                a.place(l);
                if s.len() == 1 {
                    self.leaf(a, s[0].1)?;
                } else {
                    self.tree(a, s, e)?;
                }
            }
        }
        Ok(())
    }
}

/// The values of the in-pieces when every in-piece is a single value and no piece
/// needs the next word; `end` bounds the last piece.
fn points_only(pieces: &[(u32, Piece)], end: u64) -> Option<Vec<u32>> {
    let mut points = Vec::new();
    for (i, &(start, p)) in pieces.iter().enumerate() {
        let next = pieces.get(i + 1).map_or(end, |n| u64::from(n.0));
        match p {
            Piece::Out => {}
            Piece::In if next == u64::from(start) + 1 => points.push(start),
            _ => return None,
        }
    }
    Some(points)
}

/// One family's rules in order, then the default. Never falls through.
fn emit_section(a: &mut Asm, rules: &[RRule], default: bool) -> Result<(), Overflow> {
    for r in rules {
        if r.checks.is_empty() {
            return a.ret(r.allow);
        }
        let next = a.label();
        // Cheap, selective checks first: ports are one word.
        let mut checks: Vec<&Check> = r.checks.iter().collect();
        checks.sort_by_key(|c| (c.field.words(), c.ranges.len()));
        for c in checks {
            let ok = a.label();
            emit_set(a, c.field, &c.ranges, ok, next)?;
            a.place(ok);
        }
        a.ret(r.allow)?;
        a.place(next);
    }
    a.ret(default)
}

/// Compile the accept rules of `policy` that remain for the listener `l`.
pub fn compile(policy: &Policy, l: &Listener<'_>) -> Compiled {
    compile_as(policy, l, false)
}

/// Compile so that the filter refuses *at least* what the policy refuses, for a
/// filter that is the only judge of the listener's accepts (`run --supervise` in
/// accept-by-filter mode, with a generation that looks at facts a filter cannot
/// see): an allow rule that looks at an unknown fact (user, group, program, a
/// dynamic set) counts as never matching, a deny rule that does counts as matching
/// on its other fields, and `mode: audit` is compiled as `enforce`. Every such rule
/// is named in [`Compiled::partial`]. A peer the filter passes is allowed by the
/// policy whatever the unknown facts are.
pub fn compile_conservative(policy: &Policy, l: &Listener<'_>) -> Compiled {
    compile_as(policy, l, true)
}

fn compile_as(policy: &Policy, l: &Listener<'_>, conservative: bool) -> Compiled {
    if policy.mode() == Mode::Audit && !conservative {
        return Compiled {
            outcome: Outcome::AuditMode,
            partial: Vec::new(),
        };
    }
    let default = policy.default_verdict() == Verdict::Allow;
    let mut partial = Vec::new();
    let v4 = match l.local {
        SocketAddr::V4(_) => true,
        // IPv4 packets reach an AF_INET6 socket bound to `::` without IPV6_V6ONLY, or
        // bound to a v4-mapped address; never one bound to a real IPv6 address.
        SocketAddr::V6(s) => {
            (!l.v6_only && s.ip().is_unspecified()) || s.ip().to_ipv4_mapped().is_some()
        }
    };
    let v6 = match l.local {
        SocketAddr::V4(_) => false,
        SocketAddr::V6(s) => s.ip().to_ipv4_mapped().is_none(),
    };
    let mut section = |on: bool, v6: bool| {
        if on {
            residual(policy, l, v6, &mut partial, conservative)
        } else {
            Ok(Vec::new())
        }
    };
    let (r4, r6) = match (section(v4, false), section(v6, true)) {
        (Ok(r4), Ok(r6)) => (r4, r6),
        (Err(n), _) | (_, Err(n)) => {
            return Compiled {
                outcome: Outcome::TooLarge { insns: n },
                partial,
            }
        }
    };
    // Whether a section can drop anything: a deny rule, or a deny default that is
    // reachable (no unconditional rule before it).
    let drops = |rs: &[RRule]| {
        rs.iter().any(|r| !r.allow)
            || (!default && !matches!(rs.last(), Some(r) if r.checks.is_empty()))
    };
    if !((v4 && drops(&r4)) || (v6 && drops(&r6))) {
        return Compiled {
            outcome: Outcome::AcceptAll,
            partial,
        };
    }
    let outcome = match assemble(v4, &r4, v6, &r6, default) {
        Ok(f) => Outcome::Filter(f),
        Err(Overflow(n)) => Outcome::TooLarge { insns: n },
    };
    Compiled { outcome, partial }
}

fn assemble(
    v4: bool,
    r4: &[RRule],
    v6: bool,
    r6: &[RRule],
    default: bool,
) -> Result<Vec<SockFilter>, Overflow> {
    let mut a = Asm::default();
    let net = |off: i32| (off + SKF_NET_OFF) as u32;
    if v4 && v6 {
        let (l4, l6) = (a.label(), a.label());
        a.stmt(op::LD | op::B | op::ABS, net(0))?;
        a.stmt(op::ALU | op::AND | op::K, 0xf0)?;
        a.jump(op::JMP | op::JEQ | op::K, 0x40, l4, l6)?;
        a.place(l4);
        emit_section(&mut a, r4, default)?;
        a.place(l6);
    } else if v4 {
        emit_section(&mut a, r4, default)?;
    }
    if v6 {
        // An IPv6 packet from a v4-mapped source never comes from a real peer (the
        // kernel refuses such SYNs); drop it rather than judge it as IPv6.
        let (drop, mid1, mid2, real) = (a.label(), a.label(), a.label(), a.label());
        a.stmt(op::LD | op::W | op::ABS, net(8))?;
        a.jump(op::JMP | op::JEQ | op::K, 0, mid1, real)?;
        a.place(mid1);
        a.stmt(op::LD | op::W | op::ABS, net(12))?;
        a.jump(op::JMP | op::JEQ | op::K, 0, mid2, real)?;
        a.place(mid2);
        a.stmt(op::LD | op::W | op::ABS, net(16))?;
        a.jump(op::JMP | op::JEQ | op::K, 0xffff, drop, real)?;
        a.place(drop);
        a.ret(false)?;
        a.place(real);
        emit_section(&mut a, r6, default)?;
    }
    a.finish()
}

// ---------------------------------------------------------------------------------
// A userspace classic BPF interpreter (tests, `sockexit explain`).
// ---------------------------------------------------------------------------------

/// Check a program the way the kernel's `bpf_check_classic` does for what this
/// module emits: known opcodes, jumps inside the program, a return at the end.
pub fn validate(prog: &[SockFilter]) -> Result<(), String> {
    if prog.is_empty() || prog.len() > MAX_INSNS {
        return Err(format!(
            "program length {} out of 1..={MAX_INSNS}",
            prog.len()
        ));
    }
    let n = prog.len();
    for (pc, i) in prog.iter().enumerate() {
        let class = i.code & 0x07;
        if class == op::JMP {
            let reach = |off: u64| pc as u64 + 1 + off < n as u64;
            let ok = if i.code == op::JMP | op::JA {
                reach(i.k as u64)
            } else {
                reach(i.jt as u64) && reach(i.jf as u64)
            };
            if !ok {
                return Err(format!("jump out of the program at {pc}"));
            }
        }
    }
    match prog[n - 1].code {
        c if c == op::RET | op::K || c == op::RET | op::A => Ok(()),
        _ => Err("the last instruction is not a return".into()),
    }
}

/// Run `prog` on a packet whose network header starts `net` and whose `skb->data`
/// (what non-negative offsets address: for TCP, the TCP header) starts at byte
/// `data_off` of `net`. Returns the filter's value (0 = drop). A load outside the
/// packet ends the program with 0, as in the kernel.
pub fn run(prog: &[SockFilter], net: &[u8], data_off: usize) -> Result<u32, String> {
    validate(prog)?;
    let (mut a, mut x): (u32, u32) = (0, 0);
    let mut pc = 0usize;
    let load = |k: u32, size: usize| -> Option<u32> {
        let k = k as i32;
        let off = if (SKF_NET_OFF..0).contains(&k) {
            (k - SKF_NET_OFF) as usize
        } else if k >= 0 {
            data_off.checked_add(k as usize)?
        } else {
            return None;
        };
        let b = net.get(off..off.checked_add(size)?)?;
        Some(b.iter().fold(0u32, |v, &x| (v << 8) | x as u32))
    };
    loop {
        let i = *prog.get(pc).ok_or("ran off the end")?;
        pc += 1;
        let size = |code: u16| match code & 0x18 {
            op::W => 4,
            op::H => 2,
            _ => 1,
        };
        match i.code & 0x07 {
            op::LD => match i.code & 0xe0 {
                op::ABS => match load(i.k, size(i.code)) {
                    Some(v) => a = v,
                    None => return Ok(0),
                },
                op::IND => match load(x.wrapping_add(i.k), size(i.code)) {
                    Some(v) => a = v,
                    None => return Ok(0),
                },
                op::IMM => a = i.k,
                m => return Err(format!("unsupported load mode {m:#x}")),
            },
            op::LDX => match i.code & 0xe0 {
                op::MSH => match load(i.k, 1) {
                    Some(v) => x = 4 * (v & 0xf),
                    None => return Ok(0),
                },
                op::IMM => x = i.k,
                m => return Err(format!("unsupported ldx mode {m:#x}")),
            },
            op::ALU => {
                let s = if i.code & op::X != 0 { x } else { i.k };
                a = match i.code & 0xf0 {
                    op::ADD => a.wrapping_add(s),
                    op::SUB => a.wrapping_sub(s),
                    op::OR => a | s,
                    op::AND => a & s,
                    op::LSH => a.checked_shl(s).unwrap_or(0),
                    op::RSH => a.checked_shr(s).unwrap_or(0),
                    o => return Err(format!("unsupported alu op {o:#x}")),
                }
            }
            op::JMP => {
                let s = if i.code & op::X != 0 { x } else { i.k };
                let take = match i.code & 0xf0 {
                    op::JA => {
                        pc += i.k as usize;
                        continue;
                    }
                    op::JEQ => a == s,
                    op::JGT => a > s,
                    op::JGE => a >= s,
                    op::JSET => a & s != 0,
                    o => return Err(format!("unsupported jump {o:#x}")),
                };
                pc += if take { i.jt } else { i.jf } as usize;
            }
            op::RET => {
                return Ok(if i.code & 0x18 == op::A { a } else { i.k });
            }
            op::MISC => {
                if i.code & 0xf8 == op::TXA {
                    a = x
                } else {
                    x = a
                }
            }
            c => return Err(format!("unsupported class {c:#x}")),
        }
    }
}

/// A minimal TCP SYN from `src` to `dst` as the filter sees it: the network header
/// bytes followed by the TCP header, and the offset of the TCP header. An IPv4 source
/// (or a v4-mapped one) to an IPv4, v4-mapped or unspecified destination (a wildcard
/// listener) makes an IPv4 packet, as on a dual-stack socket; anything else IPv6.
pub fn syn_packet(src: SocketAddr, dst: SocketAddr) -> (Vec<u8>, usize) {
    let (s, d) = (src.ip().to_canonical(), dst.ip().to_canonical());
    let d = match d {
        IpAddr::V6(a) if a.is_unspecified() && s.is_ipv4() => IpAddr::V4(0.into()),
        d => d,
    };
    let mut p = Vec::new();
    match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            p.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
            p.extend_from_slice(&v6(src.ip()).octets());
            p.extend_from_slice(&v6(dst.ip()).octets());
        }
    }
    let off = p.len();
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    (p, off)
}

#[cfg(test)]
mod tests;
