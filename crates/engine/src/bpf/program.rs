//! The whole program: the IP version branch, then one section per family.

use super::asm::{Asm, Overflow};
use super::residual::{Check, RRule};
use super::tree::emit_set;
use super::{op, SockFilter, SKF_NET_OFF};

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

/// The program for a listener that receives IPv4 packets (`v4`) with the rules `r4`,
/// and IPv6 packets (`v6`) with `r6`.
pub(super) fn assemble(
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
