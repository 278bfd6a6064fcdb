//! Assembler: labels, forward jumps, `ja` islands for jumps beyond 255.

use super::{op, SockFilter, MAX_INSNS, RET_ACCEPT, RET_DROP};

pub(super) type Label = usize;

#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
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
pub(super) struct Asm {
    items: Vec<Item>,
    labels: usize,
    ops: usize,
}

/// Room left between an island and the far end of the window it serves.
const SLACK: usize = 48;

/// Compilation stopped: the program exceeds [`MAX_INSNS`] (at least this many).
pub(super) struct Overflow(pub(super) usize);

impl Asm {
    pub(super) fn label(&mut self) -> Label {
        self.labels += 1;
        self.labels - 1
    }
    pub(super) fn place(&mut self, l: Label) {
        self.items.push(Item::Label(l));
    }
    pub(super) fn op(&mut self, o: Op) -> Result<(), Overflow> {
        self.items.push(Item::Op(o));
        self.ops += 1;
        if self.ops > MAX_INSNS {
            return Err(Overflow(self.ops));
        }
        Ok(())
    }
    pub(super) fn stmt(&mut self, code: u16, k: u32) -> Result<(), Overflow> {
        self.op(Op::Stmt { code, k })
    }
    pub(super) fn jump(&mut self, code: u16, k: u32, jt: Label, jf: Label) -> Result<(), Overflow> {
        self.op(Op::Jump { code, k, jt, jf })
    }
    pub(super) fn ret(&mut self, allow: bool) -> Result<(), Overflow> {
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
    pub(super) fn finish(mut self) -> Result<Vec<SockFilter>, Overflow> {
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
