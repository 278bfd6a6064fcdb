//! Warnings about a policy that loads but cannot do what it says.

use super::loc;
use super::raw::RawPolicy;
use super::rule::{Rule, FAM_V4, FAM_V6};
use crate::glob::Glob;
use crate::ranges::{AddrSet, PortSet};
use crate::{Call, Verdict, Warning};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Shadowed rules, fields that cannot apply to a rule's calls, `default: allow` with
/// only allow rules.
pub(super) fn lint(rules: &[Rule], default: Verdict, out: &mut Vec<Warning>) {
    for (j, later) in rules.iter().enumerate() {
        if let Some(earlier) = rules[..j].iter().find(|e| e.covers(later)) {
            out.push(Warning {
                rule: Some(later.name.clone()),
                location: Some(later.location),
                message: format!(
                    "rule `{}` can never match: it is shadowed by rule `{}`, which comes first and matches every case it covers",
                    later.name, earlier.name
                ),
            });
        }
        let only = |c: u8| later.calls == c;
        for (field, set) in [
            ("remote", later.remote.is_some()),
            ("remote_ports", later.remote_ports.is_some()),
        ] {
            if set && only(4) {
                out.push(Warning {
                    rule: Some(later.name.clone()),
                    location: Some(later.location),
                    message: format!(
                        "rule `{}`: `{field}` can never apply: the rule is only for listen, which has no remote peer, so the rule never matches",
                        later.name
                    ),
                });
            }
        }
        if later.local_ports.is_some() && only(2) {
            out.push(Warning {
                rule: Some(later.name.clone()),
                location: Some(later.location),
                message: format!(
                    "rule `{}`: `local_ports` on a connect-only rule: an outgoing socket usually has no local port until connect has run, so the rule will rarely match",
                    later.name
                ),
            });
        }
    }
    partly_shadowed(rules, out);
    no_listen_rule(rules, default, out);
    if default == Verdict::Allow && rules.iter().all(|r| r.action == Verdict::Allow) {
        out.push(Warning {
            rule: None,
            location: None,
            message: "`default: allow` with only allow rules: this policy refuses nothing".into(),
        });
    }
}

/// `default: deny` with rules that allow accept but none that allows listen: the
/// server's own `listen` is refused first, so it fails at start.
fn no_listen_rule(rules: &[Rule], default: Verdict, out: &mut Vec<Warning>) {
    if default != Verdict::Deny {
        return;
    }
    let listen_allowed = rules.iter().any(|r| {
        r.action == Verdict::Allow
            && r.applies_to(Call::Listen)
            && r.remote.is_none()
            && r.remote_ports.is_none()
    });
    if listen_allowed {
        return;
    }
    if let Some(a) = rules
        .iter()
        .find(|r| r.action == Verdict::Allow && r.applies_to(Call::Accept))
    {
        out.push(Warning {
            rule: Some(a.name.clone()),
            location: Some(a.location),
            message: format!(
                "rule `{}` allows accept, but with `default: deny` no rule allows listen: the \
                 server's listen() is refused (EACCES) before any connection can arrive, so it \
                 fails at start; add a rule such as `{{ name: listen, action: allow, calls: [listen] }}` \
                 (with `local_ports` to limit it)",
                a.name
            ),
        });
    }
}

/// Up to three ranges of a set, then how many more.
fn some<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    let mut s: Vec<String> = items.iter().take(3).map(show).collect();
    if items.len() > 3 {
        s.push(format!("and {} more", items.len() - 3));
    }
    s.join(", ")
}

fn range<T: PartialEq + std::fmt::Display>(a: T, b: T) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

fn addrs(s: &AddrSet) -> String {
    let v4: Vec<(u32, u32)> = s.v4_ranges().iter().map(|r| (r[0], r[1])).collect();
    let v6: Vec<(u128, u128)> = s.v6_ranges().iter().map(|r| (r[0], r[1])).collect();
    let mut parts: Vec<String> = Vec::new();
    if !v4.is_empty() {
        parts.push(some(&v4, |&(a, b)| {
            range(Ipv4Addr::from(a), Ipv4Addr::from(b))
        }));
    }
    if !v6.is_empty() {
        parts.push(some(&v6, |&(a, b)| {
            range(Ipv6Addr::from(a), Ipv6Addr::from(b))
        }));
    }
    if parts.is_empty() {
        "no address".into()
    } else {
        parts.join(", ")
    }
}

fn calls_text(c: u8) -> String {
    let mut v = Vec::new();
    for (bit, n) in [(1, "accept"), (2, "connect"), (4, "listen")] {
        if c & bit != 0 {
            v.push(n);
        }
    }
    v.join(" and ")
}

/// The fields `earlier` constrains and `later` leaves open, as words, when `earlier`
/// decides every call of `later` inside them: `None` when it does not (a field both
/// name where `later`'s values are not all in `earlier`'s), or when that part is
/// everything (full shadowing, reported elsewhere) .
fn shadowed_part(earlier: &Rule, later: &Rule) -> Option<String> {
    let common = later.calls & earlier.calls;
    if common == 0 {
        return None;
    }
    let mut part: Vec<String> = Vec::new();
    macro_rules! field {
        ($f:ident, $sub:expr, $show:expr) => {
            match (&earlier.$f, &later.$f) {
                (None, _) => {}
                (Some(a), Some(b)) => {
                    if !$sub(b, a) {
                        return None;
                    }
                }
                (Some(a), None) => part.push(format!("{} {}", stringify!($f), $show(a))),
            }
        };
    }
    let ids = |b: &Vec<u32>, a: &Vec<u32>| b.iter().all(|x| a.contains(x));
    let id_list = |a: &Vec<u32>| some(a, |x| x.to_string());
    field!(remote, |b: &AddrSet, a| b.is_subset(a), addrs);
    // A dynamic set may hold anything: only the same sets are known to be covered.
    let dyn_covered = |a: &[String], b: &[String]| b.iter().all(|d| a.contains(d));
    if earlier.remote.is_some() && !dyn_covered(&earlier.remote_dynamic, &later.remote_dynamic)
        || earlier.local.is_some() && !dyn_covered(&earlier.local_dynamic, &later.local_dynamic)
    {
        return None;
    }
    field!(
        remote_ports,
        |b: &PortSet, a| b.is_subset(a),
        |a: &PortSet| some(a.ranges(), |&(x, y)| range(x, y))
    );
    field!(local, |b: &AddrSet, a| b.is_subset(a), addrs);
    field!(
        local_ports,
        |b: &PortSet, a| b.is_subset(a),
        |a: &PortSet| some(a.ranges(), |&(x, y)| range(x, y))
    );
    field!(users, ids, id_list);
    field!(groups, ids, id_list);
    field!(families, |b: &u8, a: &u8| b & !a == 0, |a: &u8| match *a {
        FAM_V4 => "ipv4".to_string(),
        FAM_V6 => "ipv6".to_string(),
        _ => "ipv4, ipv6".to_string(),
    });
    field!(
        programs,
        |b: &Vec<Glob>, a: &Vec<Glob>| a.iter().any(Glob::is_any)
            || b.iter().all(|p| a.contains(p)),
        |a: &Vec<Glob>| some(a, |g| g.as_str().to_string())
    );
    let remote_named = earlier.remote.is_some()
        || earlier.remote_ports.is_some()
        || later.remote.is_some()
        || later.remote_ports.is_some();
    // A listen has no peer: a rule naming remote fields never matches it.
    let common = if remote_named { common & !4 } else { common };
    if common == 0 || (part.is_empty() && common == later.calls) {
        return None;
    }
    let mut s = calls_text(common);
    if !part.is_empty() {
        s.push_str(" with ");
        s.push_str(&part.join(" and "));
    }
    Some(s)
}

/// An earlier allow that decides a part of a later deny: that part of the deny can
/// never apply (the block-list `deny` after a broad `allow`).
fn partly_shadowed(rules: &[Rule], out: &mut Vec<Warning>) {
    for (j, later) in rules.iter().enumerate() {
        if rules[..j].iter().any(|e| e.covers(later)) {
            continue;
        }
        let mut n = 0;
        for earlier in &rules[..j] {
            // An allow after a deny that takes part of it away is the usual exception
            // ("block these, then allow the rest"); a deny after an allow that already
            // decided part of it lets through what the author meant to refuse.
            if later.action != Verdict::Deny || earlier.action != Verdict::Allow {
                continue;
            }
            let Some(part) = shadowed_part(earlier, later) else {
                continue;
            };
            out.push(Warning {
                rule: Some(later.name.clone()),
                location: Some(later.location),
                message: format!(
                    "rule `{}` can never apply to {part}: rule `{}` comes first and allows those calls; \
                     move `{}` above `{}` if it should refuse them",
                    later.name,
                    earlier.name,
                    later.name,
                    earlier.name
                ),
            });
            n += 1;
            if n == 3 {
                break;
            }
        }
    }
}

/// Findings that need the policy as written: `0.0.0.0` / `::` meant as "any" and
/// bare program names, each at its item.
pub(super) fn lint_raw(raw: &RawPolicy, rules: &[Rule], out: &mut Vec<Warning>) {
    for (r, rule) in raw.rules.iter().flatten().zip(rules) {
        let r = &r.value;
        let name = &rule.name;
        for (key, field) in [("remote", &r.remote), ("local", &r.local)] {
            // `local: [0.0.0.0]` on a listen-only rule names a wildcard listener: meant.
            if key == "local" && rule.calls & 3 == 0 {
                continue;
            }
            for it in field.iter().filter_map(|f| f.value.as_ref()).flatten() {
                let Ok(ip) = it.value.trim().parse::<IpAddr>() else {
                    continue;
                };
                if !ip.is_unspecified() {
                    continue;
                }
                let any = if ip.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
                let what = if key == "remote" {
                    "never a real peer (a connect to it is judged as the address it reaches)"
                } else {
                    "never the address an accepted connection reached (only a wildcard listener at listen)"
                };
                out.push(Warning {
                    rule: Some(name.clone()),
                    location: loc(it).or(Some(rule.location)),
                    message: format!(
                        "rule `{name}`: `{key}: {ip}` matches only the unspecified address {ip}, {what}; \
                         to mean any {} address write `{any}`, or leave `{key}` out",
                        if ip.is_ipv4() { "IPv4" } else { "IPv6" }
                    ),
                });
            }
        }
        for it in r.programs.iter().filter_map(|f| f.value.as_ref()).flatten() {
            let p = it.value.as_str();
            if p.is_empty() || p.starts_with(['/', '*', '?', '[']) {
                continue;
            }
            out.push(Warning {
                rule: Some(name.clone()),
                location: loc(it).or(Some(rule.location)),
                message: format!(
                    "rule `{name}`: program `{p}` never matches: patterns match the executable's \
                     absolute path; write `*/{p}` for any program named {p}, or its full path"
                ),
            });
        }
    }
}
