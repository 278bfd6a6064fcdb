//! Code generation of one set test: sorted ranges, balanced `jge` trees, `jeq`
//! chains, and the descent to the next 32-bit word of an IPv6 address.

use super::asm::{Asm, Label, Op, Overflow};
use super::field::Field;
use super::op;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    In,
    Out,
    Sub(usize),
}

/// Jump to `yes` when the field is in `ranges`, else to `no`. Never falls through.
pub(super) fn emit_set(
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
