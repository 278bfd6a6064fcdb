//! Warnings about a policy that loads but cannot do what it says.

use super::rule::Rule;
use crate::{Verdict, Warning};

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
    if default == Verdict::Allow && rules.iter().all(|r| r.action == Verdict::Allow) {
        out.push(Warning {
            rule: None,
            location: None,
            message: "`default: allow` with only allow rules: this policy refuses nothing".into(),
        });
    }
}
