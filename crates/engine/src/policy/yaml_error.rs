//! serde-saphyr's options for a policy, and its errors in a policy author's words.

use crate::Error;
use std::path::Path;

/// Deepest nesting a policy may use (a policy needs 4: top map, rules, rule, list).
pub(crate) const MAX_YAML_DEPTH: usize = 32;

/// serde-saphyr's options, tightened for a hand-written policy: its default budget is
/// sized for general documents. Alias replay is capped far below the defaults so an
/// alias bomb fails in microseconds; duplicate keys are an error (never last-one-wins).
pub(super) fn yaml_options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    let mut b = serde_saphyr::Budget::default();
    b.max_depth = MAX_YAML_DEPTH;
    b.flow_nesting_limit = MAX_YAML_DEPTH;
    b.max_documents = 1;
    b.max_aliases = 10_000;
    b.max_anchors = 10_000;
    b.max_nodes = 500_000;
    b.max_recorded_anchor_events = 100_000;
    b.max_merge_keys = 256;
    o.budget = Some(b);
    o.alias_limits.max_total_replayed_events = 100_000;
    o.alias_limits.max_replay_stack_depth = MAX_YAML_DEPTH;
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    o.with_snippet = false;
    o
}

/// The error inside serde-saphyr's snippet and alias wrappers.
fn root_error(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    loop {
        match e {
            serde_saphyr::Error::WithSnippet { error, .. }
            | serde_saphyr::Error::AliasError { error, .. } => e = error,
            _ => return e,
        }
    }
}

/// Turn a serde-saphyr error into ours: plain words a policy author understands, its
/// location, and the offending key (unknown or duplicate) when there is one.
pub(super) fn yaml_error(file: &Path, e: serde_saphyr::Error) -> Error {
    use serde_saphyr::budget::BudgetBreach;
    let location = e
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| (l.line() as usize, l.column() as usize));
    let mut key = None;
    let too_much = |what: String| {
        format!("{what}: anchors and aliases expand beyond what a policy needs (an alias bomb?)")
    };
    let message = match root_error(&e) {
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            BudgetBreach::Depth { .. } => {
                format!("YAML nested too deeply (more than {MAX_YAML_DEPTH} levels)")
            }
            BudgetBreach::Documents { .. } => {
                "more than one YAML document (`---`): a policy is one document".to_string()
            }
            BudgetBreach::Nodes { nodes } => {
                too_much(format!("more than {} YAML nodes", nodes.saturating_sub(1)))
            }
            BudgetBreach::MergeKeys { merge_keys } => too_much(format!(
                "more than {} merge keys (`<<`)",
                merge_keys.saturating_sub(1)
            )),
            BudgetBreach::Aliases { aliases } => {
                too_much(format!("more than {} aliases", aliases.saturating_sub(1)))
            }
            other => too_much(format!("YAML limit exceeded ({other:?})")),
        },
        serde_saphyr::Error::AliasReplayLimitExceeded {
            max_total_replayed_events,
            ..
        } => too_much(format!(
            "aliases replay more than {max_total_replayed_events} YAML events"
        )),
        serde_saphyr::Error::AliasReplayStackDepthExceeded { max_depth, .. } => {
            too_much(format!("aliases nest more than {max_depth} levels"))
        }
        serde_saphyr::Error::AliasExpansionLimitExceeded { expansions, .. } => {
            too_much(format!("one anchor expanded {expansions} times"))
        }
        serde_saphyr::Error::DuplicateMappingKey { key: k, .. } => {
            key = k.clone();
            match k {
                Some(k) => format!("duplicate key `{k}`"),
                None => "duplicate key".to_string(),
            }
        }
        other => plain_message(&other.to_string()),
    };
    if key.is_none() {
        key = message
            .find("unknown field `")
            .map(|i| &message[i + 15..])
            .and_then(|r| r.find('`').map(|j| r[..j].to_string()));
    }
    Error {
        file: file.to_path_buf(),
        location,
        key,
        message,
    }
}

/// First line of a serde-saphyr message, without the location (ours to print, once)
/// and with the parser's terse phrases reworded.
fn plain_message(text: &str) -> String {
    let mut message = text
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .to_string();
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    if let Some(rest) = message.strip_prefix("error: ") {
        message = rest.to_string();
    }
    // "line L column C: msg"
    if message.starts_with("line ") {
        if let Some(i) = message.find(": ") {
            message = message[i + 2..].to_string();
        }
    }
    // A list item or value left empty (`- ` alone, `[~]`): serde's words name Rust types.
    if message.starts_with("cannot deserialize null into ") {
        return "no value (null) where text is expected".to_string();
    }
    if let Some(rest) = message.strip_prefix("invalid type: unit value") {
        message = format!("no value (null){rest}");
    }
    let lower = message.to_ascii_lowercase();
    if lower.contains("tab") && (lower.contains("indent") || lower.contains("disallowed")) {
        return "a tab in the indentation: YAML indents with spaces only; replace the tab with spaces"
            .to_string();
    }
    if lower.contains("did not find expected '-' indicator")
        || lower.contains("did not find expected key")
    {
        return "indentation: this line does not line up with the lines above it: the keys of one \
                rule line up under its first key (after `- `), and a new list item starts with `- ` \
                at the level of the others"
            .to_string();
    }
    if lower.contains("mapping values are not allowed") {
        return "indentation: a `key: value` where none can be: a list item (`- `) or key indented \
                deeper than the lines it belongs with, or a value with `: ` in it that needs quotes"
            .to_string();
    }
    match message.as_str() {
        "expected mapping start" => {
            "expected a mapping (`key: value` lines) here; a list item (`- `) at the wrong \
             indentation level?"
                .to_string()
        }
        "invalid boolean" => "expected true or false".to_string(),
        "alias references unknown anchor" => {
            "unknown YAML alias: `*` starts an alias; quote a program glob (\"*/nginx\")"
                .to_string()
        }
        "unexpected character: `@'" => {
            "`@` cannot start a plain YAML value; quote set references (\"@lan\")".to_string()
        }
        "expected sequence start" => "expected a list (`[a, b]` or `- a` lines) here".to_string(),
        "expected string scalar" => {
            "expected a single value (text or a number) here, not a list or mapping".to_string()
        }
        "recursion limit exceeded" => {
            format!("YAML nested too deeply (more than {MAX_YAML_DEPTH} levels)")
        }
        _ => message,
    }
}
