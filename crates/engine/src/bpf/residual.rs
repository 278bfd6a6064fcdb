//! Residual: the accept rules, with everything known at listen time evaluated.

use super::field::Field;
use super::{Listener, MAX_INSNS};
use crate::ranges::Span;
use crate::{Call, Policy, Rule, Verdict};

/// One membership test: the field's value is in one of `ranges` (sorted, disjoint).
#[derive(Debug, Clone)]
pub(super) struct Check {
    pub(super) field: Field,
    pub(super) ranges: Vec<(u128, u128)>,
}

#[derive(Debug, Clone)]
pub(super) struct RRule {
    pub(super) allow: bool,
    pub(super) checks: Vec<Check>,
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
/// round (see [`compile_conservative`](super::compile_conservative)).
pub(super) fn residual(
    policy: &Policy,
    l: &Listener<'_>,
    v6: bool,
    partial: &mut Vec<String>,
    conservative: bool,
) -> Result<Vec<RRule>, usize> {
    let mut out = Vec::new();
    for r in policy.rules().iter().filter(|r| r.applies_to(Call::Accept)) {
        let Some(unknown) = unknown_facts(r, l) else {
            continue;
        };
        let Some(tests) = packet_tests(r, l, v6) else {
            continue;
        };
        if tests.never {
            continue;
        }
        let allow = r.action() == Verdict::Allow;
        if !unknown.is_empty() && note_unknown(r, &unknown, allow, conservative, partial) {
            continue;
        }
        if let Some(n) = tests.too_large {
            return Err(n);
        }
        let checks = tests.checks;
        let unconditional = checks.is_empty();
        out.push(RRule { allow, checks });
        if unconditional {
            break; // nothing after it is reachable in this section
        }
    }
    Ok(out)
}

/// What rule `r` looks at that is unknown at listen time, or `None` when a known
/// fact rules it out.
fn unknown_facts(r: &Rule, l: &Listener<'_>) -> Option<Vec<&'static str>> {
    // Facts of the process: known (evaluated now), or unknown (may match).
    let mut unknown: Vec<&str> = Vec::new();
    if let Some(users) = r.users() {
        match l.uid {
            Some(u) if !users.contains(&u) => return None,
            Some(_) => {}
            None => unknown.push("the user, which can change after listen"),
        }
    }
    if let Some(groups) = r.groups() {
        match l.gid {
            Some(g) if !groups.contains(&g) => return None,
            Some(_) => {}
            None => unknown.push("the group, which can change after listen"),
        }
    }
    if let Some(globs) = r.programs() {
        match l.program {
            Some(p) if !globs.iter().any(|g| g.matches(p)) => return None,
            Some(_) => {}
            None => unknown.push("the program, which is unknown"),
        }
    }
    let dynamic = r.local_dynamic().len() + r.remote_dynamic().len() > 0;
    if dynamic {
        unknown.push("a dynamic set, whose entries change at run time");
    }
    Some(unknown)
}

/// The packet tests of one rule in one family section.
struct Tests {
    checks: Vec<Check>,
    /// A test never holds: the rule cannot match.
    never: bool,
    /// A test alone needs more than [`MAX_INSNS`] instructions (at least this many).
    too_large: Option<usize>,
}

/// The tests rule `r` makes on a packet of the section (`v6` false: IPv4), or `None`
/// when its family, or the listener's known local port or address, rules it out.
fn packet_tests(r: &Rule, l: &Listener<'_>, v6: bool) -> Option<Tests> {
    let local_ip = l.local.ip().to_canonical();
    let local_known = !local_ip.is_unspecified();
    let port_known = l.local.port() != 0;
    if let Some((f4, f6)) = r.families() {
        if !(if v6 { f6 } else { f4 }) {
            return None;
        }
    }
    let mut t = Tests {
        checks: Vec::new(),
        never: false,
        too_large: None,
    };
    let mut add = |c: Result<Option<Check>, NoCheck>| match c {
        Ok(Some(c)) => t.checks.push(c),
        Ok(None) => {}
        Err(NoCheck::Never) => t.never = true,
        Err(NoCheck::TooLarge(n)) => t.too_large = Some(n),
    };
    if let Some(ps) = r.local_ports() {
        if port_known {
            if !ps.contains(l.local.port()) {
                return None;
            }
        } else {
            add(check(Field::DstPort, ps.ranges()));
        }
    }
    if let Some(ps) = r.remote_ports() {
        add(check(Field::SrcPort, ps.ranges()));
    }
    if let Some(s) = r.local().filter(|_| r.local_dynamic().is_empty()) {
        if local_known {
            if !s.contains(local_ip) {
                return None;
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
    Some(t)
}

/// Say in `partial` how the filter treats rule `r`, which looks at the facts
/// `unknown`; `true` when the rule is left out of the section.
fn note_unknown(
    r: &Rule,
    unknown: &[&str],
    allow: bool,
    conservative: bool,
    partial: &mut Vec<String>,
) -> bool {
    let what = unknown.join(" and ");
    let line = if conservative {
        format!(
            "rule `{}` looks at {what}: counted as {}",
            r.name(),
            if allow {
                "never matching (the peers it allows are dropped)"
            } else {
                "matching (the peers its other fields name are dropped)"
            }
        )
    } else if allow {
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
    if conservative {
        allow
    } else {
        // Whether it matches or not, a later rule decides the rest soundly:
        // dropping needs "refused whatever the unknown fact is".
        !allow
    }
}
