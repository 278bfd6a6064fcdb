//! Every kind of bad policy is refused with a message that says what is wrong and
//! where (file, line, column, key) — never a panic, never a silently wider policy.
mod common;

use common::*;
use sockexit_engine::Call;

const RULE: &str = "rules:\n  - name: r\n    action: allow\n";

/// Policy with one rule `r` whose extra field lines start on line 6.
fn rule(fields: &str) -> String {
    format!("{HEAD}{RULE}{fields}")
}

#[track_caller]
fn refused(yaml: impl AsRef<[u8]>, want: &str) -> sockexit_engine::Error {
    let (e, text) = bad(yaml);
    assert_eq!(text, format!("{ORIGIN}{want}"));
    e
}

#[test]
fn unknown_key_in_a_rule_names_the_key_line_and_column() {
    let e = refused(
        rule("    remote: [10.0.0.0/8]\n    remote_prots: [21]\n"),
        ":7:5: key `remote_prots`: unknown field `remote_prots`, expected one of name, action, calls, remote, remote_ports, local, local_ports, users, groups, programs, families",
    );
    assert_eq!(e.key.as_deref(), Some("remote_prots"));
    assert_eq!(e.location, Some((7, 5)));
    assert_eq!(e.file, std::path::Path::new(ORIGIN));
    // Flow style: the column is that of the key inside the braces.
    refused(
        format!("{HEAD}rules:\n  - {{ name: r, action: deny, remote_port: [21] }}\n"),
        ":4:30: key `remote_port`: unknown field `remote_port`, expected one of name, action, calls, remote, remote_ports, local, local_ports, users, groups, programs, families",
    );
}

#[test]
fn unknown_key_at_top_level() {
    refused(
        format!("{HEAD}rulez:\n  - name: r\n"),
        ":3:1: key `rulez`: unknown field `rulez`, expected one of version, default, mode, stealth, blocking_accept, audit, sets, rules",
    );
    // `defaults` for `default`: refused, not read as "no default".
    refused(
        "version: 1\ndefaults: allow\n",
        ":2:1: key `defaults`: unknown field `defaults`, expected one of version, default, mode, stealth, blocking_accept, audit, sets, rules",
    );
}

#[test]
fn unknown_key_inside_audit() {
    refused(
        format!("{HEAD}audit:\n  log: off\n  event: all\n"),
        ":5:3: key `event`: unknown field `event`, expected one of log, events",
    );
}

#[test]
fn unknown_key_inside_a_set_file_entry() {
    let e = refused(
        format!("{HEAD}sets:\n  drop: {{ fil: drop.txt }}\n"),
        ":4:11: key `fil`: unknown field `fil`, expected one of file, dynamic",
    );
    assert_eq!(e.key.as_deref(), Some("fil"));
    refused(
        format!("{HEAD}sets:\n  drop:\n    file: drop.txt\n    format: lines\n"),
        ":6:5: key `format`: unknown field `format`, expected one of file, dynamic",
    );
}

#[test]
fn duplicate_key_is_refused_not_last_one_wins() {
    let e = refused(
        rule("    action: deny\n"),
        ":6:5: key `action`: duplicate key `action`",
    );
    assert_eq!(e.key.as_deref(), Some("action"));
}

#[test]
fn bad_cidr_and_bad_address() {
    refused(
        rule("    remote: [10.0.0.0/8, 10.0.0.0/33]\n"),
        ":6:26: key `remote`: rule `r`: `10.0.0.0/33` is not an IP address, CIDR prefix or @set",
    );
    refused(
        rule("    local: [\"10.0.0.300\"]\n"),
        ":6:13: key `local`: rule `r`: `10.0.0.300` is not an IP address, CIDR prefix or @set",
    );
    refused(
        rule("    remote: [\"2001:db8::/129\"]\n"),
        ":6:14: key `remote`: rule `r`: `2001:db8::/129` is not an IP address, CIDR prefix or @set",
    );
    for bad in [
        "10.0.0.0/+8",
        "10.0.0.0/ 8",
        "/8",
        "10.0.0.0/8/8",
        "10.0.0.0/0008",
        "1.2.3/24",
    ] {
        refused(
            rule(&format!("    remote: [\"{bad}\"]\n")),
            &format!(
                ":6:14: key `remote`: rule `r`: `{bad}` is not an IP address, CIDR prefix or @set"
            ),
        );
    }
    refused(
        rule("    remote: [lan]\n"),
        ":6:14: key `remote`: rule `r`: `lan` is not an IP address, CIDR prefix or @set",
    );
    refused(
        format!("{HEAD}sets:\n  lan: [10.0.0.0/8, 10.0.0.0/]\n"),
        ":4:21: key `lan`: set `lan`: `10.0.0.0/` is not an IP address or CIDR prefix",
    );
}

#[test]
fn port_zero_and_65536_are_refused() {
    refused(
        rule("    remote_ports: [21, 0]\n"),
        ":6:24: key `remote_ports`: rule `r`: port 0 is out of range 1-65535",
    );
    refused(
        rule("    local_ports: [65536]\n"),
        ":6:19: key `local_ports`: rule `r`: port 65536 is out of range 1-65535",
    );
    refused(
        rule("    local_ports: [\"0-80\"]\n"),
        ":6:19: key `local_ports`: rule `r`: port range `0-80`: port 0 is out of range 1-65535",
    );
    refused(
        rule("    local_ports: [\"1024-65536\"]\n"),
        ":6:19: key `local_ports`: rule `r`: port range `1024-65536`: port 65536 is out of range 1-65535",
    );
    refused(
        rule("    remote_ports: [-21]\n"),
        ":6:20: key `remote_ports`: rule `r`: port -21 is out of range 1-65535",
    );
    refused(
        rule("    remote_ports: [http]\n"),
        ":6:20: key `remote_ports`: rule `r`: `http` is not a port or a \"lo-hi\" port range",
    );
    refused(
        rule("    remote_ports: [21.5]\n"),
        ":6:20: invalid type: floating point `21.5`, expected a number, or text such as \"1024-65535\" or a name",
    );
}

#[test]
fn reversed_port_range() {
    refused(
        rule("    remote_ports: [\"2048-1024\"]\n"),
        ":6:20: key `remote_ports`: rule `r`: port range `2048-1024` is reversed (low end above high end)",
    );
}

#[test]
fn duplicate_rule_name() {
    refused(
        format!("{HEAD}rules:\n  - name: ftp\n    action: allow\n  - name: web\n    action: allow\n  - name: ftp\n    action: deny\n"),
        ":8:11: key `name`: duplicate rule name `ftp`",
    );
}

#[test]
fn missing_or_reserved_rule_name_and_bad_action() {
    refused(
        format!("{HEAD}rules:\n  - action: allow\n"),
        ":4:5: key `name`: every rule needs a `name`",
    );
    refused(
        format!("{HEAD}rules:\n  - name: default\n    action: allow\n"),
        ":4:11: key `name`: `default` is reserved for the policy's default verdict",
    );
    refused(
        format!("{HEAD}rules:\n  - name: r\n    action: permit\n"),
        ":5:13: key `action`: rule `r`: `permit` is not allow or deny",
    );
    refused(
        format!("{HEAD}rules:\n  - name: r\n"),
        ":4:5: key `action`: rule `r`: missing `action: allow|deny`",
    );
}

#[test]
fn bad_calls_families_programs_and_empty_lists() {
    refused(
        rule("    calls: [accept, conect]\n"),
        ":6:21: key `calls`: rule `r`: `conect` is not accept, connect or listen",
    );
    refused(
        rule("    calls: []\n"),
        ":6:12: key `calls`: rule `r`: empty list: the rule would apply to nothing",
    );
    refused(
        rule("    families: [inet]\n"),
        ":6:16: key `families`: rule `r`: `inet` is not ipv4 or ipv6",
    );
    refused(
        rule("    programs: [\"/usr/sbin/[vsftpd\"]\n"),
        ":6:16: key `programs`: rule `r`: unterminated `[` in pattern `/usr/sbin/[vsftpd`",
    );
    refused(
        rule("    remote: []\n"),
        ":6:13: key `remote`: rule `r`: empty list: write the field out or list addresses",
    );
    refused(
        rule("    users: []\n"),
        ":6:12: key `users`: rule `r`: empty list",
    );
}

#[test]
fn unknown_user_and_group() {
    refused(
        rule("    users: [ftp, nosuchuser]\n"),
        ":6:18: key `users`: rule `r`: unknown user `nosuchuser`",
    );
    refused(
        rule("    groups: [wheel]\n"),
        ":6:14: key `groups`: rule `r`: unknown group `wheel`",
    );
    refused(
        rule("    users: [-1]\n"),
        ":6:13: key `users`: rule `r`: user id -1 is out of range",
    );
    refused(
        rule("    groups: [4294967296]\n"),
        ":6:14: key `groups`: rule `r`: group id 4294967296 is out of range",
    );
}

#[test]
fn unknown_set() {
    refused(
        format!("{HEAD}sets:\n  lan: [10.0.0.0/8]\n{RULE}    remote: [\"@lan\", \"@lna\"]\n"),
        ":8:22: key `remote`: rule `r`: unknown set `@lna` (define it under `sets:`)",
    );
}

#[test]
fn wrong_or_missing_version() {
    refused(
        "version: 2\ndefault: deny\n",
        ":1:10: key `version`: unsupported policy version 2; this sockexit reads version 1",
    );
    refused(
        "version: 0\ndefault: deny\n",
        ":1:10: key `version`: unsupported policy version 0; this sockexit reads version 1",
    );
    refused(
        "version: one\ndefault: deny\n",
        ":1:10: key `version`: unsupported policy version one; this sockexit reads version 1",
    );
    refused("default: deny\n", ": key `version`: missing `version: 1`");
    refused(
        "version: 1\n",
        ": key `default`: missing `default: allow|deny` (the verdict when no rule matches)",
    );
    refused(
        "version: 1\ndefault: block\n",
        ":2:10: key `default`: `block` is not allow or deny",
    );
}

#[test]
fn empty_file() {
    let want = ": policy is empty: it needs at least `version: 1` and `default: allow|deny`";
    refused("", want);
    refused("\n\n   \n", want);
    refused("# only a comment\n---\n", want);
}

#[test]
fn not_a_mapping() {
    refused("~\n", ":1:1: expected a mapping (`key: value` lines) here; a list item (`- `) at the wrong indentation level?");
    refused(
        "- version: 1\n",
        ":1:1: expected a mapping (`key: value` lines) here; a list item (`- `) at the wrong indentation level?",
    );
    refused(
        format!("{HEAD}rules: [ftp]\n"),
        ":3:9: expected a mapping (`key: value` lines) here; a list item (`- `) at the wrong indentation level?",
    );
}

#[test]
fn bad_value_for_blocking_accept_names_line_column_and_key() {
    let e = refused(
        format!("{HEAD}blocking_accept: block\n"),
        ":3:18: key `blocking_accept`: `block` is not return or wait",
    );
    assert_eq!(e.location, Some((3, 18)));
    assert_eq!(e.key.as_deref(), Some("blocking_accept"));
    // A list or a boolean is no keyword either: refused, never read as the default.
    bad(format!("{HEAD}blocking_accept: [wait]\n"));
    refused(
        format!("{HEAD}blocking_accept: true\n"),
        ":3:18: key `blocking_accept`: `true` is not return or wait",
    );
}

#[test]
fn bad_values_for_mode_stealth_audit() {
    refused(
        format!("{HEAD}mode: permissive\n"),
        ":3:7: key `mode`: `permissive` is not enforce or audit",
    );
    refused(
        format!("{HEAD}stealth: maybe\n"),
        ":3:10: expected true or false",
    );
    refused(
        format!("{HEAD}audit:\n  events: some\n"),
        ":4:11: key `events`: `some` is not deny or all",
    );
    refused(
        format!("{HEAD}audit:\n  log: \"\"\n"),
        ":4:8: key `log`: empty audit log path",
    );
}

#[test]
fn non_utf8() {
    let mut yaml = b"version: 1\ndefault: deny\nrules:\n  - name: caf".to_vec();
    yaml.extend_from_slice(b"\xe9\n    action: allow\n");
    refused(yaml, ":4:1: policy is not valid UTF-8");
    refused(b"\xff\xfe\x00v", ":1:1: policy is not valid UTF-8");
}

#[test]
fn common_yaml_slips_get_a_hint() {
    // An unquoted glob is a YAML alias.
    refused(
        rule("    programs: [*/nginx]\n"),
        ":6:16: unknown YAML alias: `*` starts an alias; quote a program glob (\"*/nginx\")",
    );
    // `@` is reserved in YAML.
    refused(
        rule("    remote: [@lan]\n"),
        ":6:14: `@` cannot start a plain YAML value; quote set references (\"@lan\")",
    );
    // One address where a list is expected: refused, not guessed at.
    refused(
        rule("    remote: 10.0.0.0/8\n"),
        ":6:13: expected a list (`[a, b]` or `- a` lines) here",
    );
    refused(
        rule("    calls: accept\n"),
        ":6:12: expected a list (`[a, b]` or `- a` lines) here",
    );
    // Two documents: which one would apply?
    refused(
        "version: 1\ndefault: deny\n---\nversion: 1\ndefault: allow\n",
        ":3:1: more than one YAML document (`---`): a policy is one document",
    );
}

#[test]
fn yaml_syntax_errors_point_at_the_spot() {
    refused("version: 1\ndefault: \"deny\n", ":2:10: unclosed quote");
    refused(
        format!("{HEAD}rules:\n  - name: r\n   action: allow\n"),
        ":5:4: indentation: this line does not line up with the lines above it: the keys of one rule line up under its first key (after `- `), and a new list item starts with `- ` at the level of the others",
    );
}

#[test]
fn deeply_nested_yaml() {
    // Every container in a policy has a type, so block nesting fails at the first level
    // that does not fit, however deep the rest goes.
    let not_a_list = ": expected a single value (text or a number) here, not a list or mapping";
    // Flow style: 10,000 `[`.
    let flow = format!(
        "{HEAD}sets:\n  x: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    // The parser's own nesting limit stops it, before any value is typed.
    refused(&flow, ":4:38: YAML nested too deeply (more than 32 levels)");
    // Block style: a sequence of sequences 1,000 levels deep.
    let mut block = format!("{HEAD}sets:\n  x:\n");
    for depth in 0..1000 {
        block.push_str(&" ".repeat(4 + 2 * depth));
        block.push_str("-\n");
    }
    refused(&block, &format!(":6:7{not_a_list}"));
    // Unclosed, at the top.
    refused(
        "[".repeat(100_000),
        ":1:33: YAML nested too deeply (more than 32 levels)",
    );
}

/// Nine levels of nine aliases each: 9^9 (387 million) strings once expanded.
fn billion_laughs() -> String {
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    let mut levels = vec![format!("&a [{}]", ["\"lol\""; 9].join(","))];
    for w in names.windows(2) {
        let (prev, cur) = (w[0], w[1]);
        levels.push(format!(
            "&{cur} [{}]",
            vec![format!("*{prev}"); 9].join(",")
        ));
    }
    format!("{HEAD}sets:\n  bomb: [{}, *i]\n", levels.join(", "))
}

/// The same with YAML merge keys, which a rule (a mapping) does accept: each rule
/// merges nine copies of the one before.
fn merge_bomb() -> String {
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let mut s = format!("{HEAD}rules:\n  - &a {{name: a, action: allow}}\n");
    for w in names.windows(2) {
        let (prev, cur) = (w[0], w[1]);
        s.push_str(&format!(
            "  - &{cur} {{<<: [{}], name: {cur}}}\n",
            vec![format!("*{prev}"); 9].join(", ")
        ));
    }
    s
}

#[test]
fn alias_bomb() {
    // Nested lists where a set wants addresses: refused at the first nested list,
    // before any expansion.
    refused(
        billion_laughs(),
        ":4:13: expected a single value (text or a number) here, not a list or mapping",
    );
    let (e, text) = bad(merge_bomb());
    assert_eq!(
        text,
        format!("{ORIGIN}:8:18: more than 256 merge keys (`<<`): anchors and aliases expand beyond what a policy needs (an alias bomb?)")
    );
    assert_eq!(e.location, Some((8, 18)));
    // Many aliases in one list: capped too.
    let mut many = format!("{HEAD}{RULE}    users: [&u 0");
    for _ in 0..20_000 {
        many.push_str(", *u");
    }
    many.push_str("]\n");
    let (_, text) = bad(many);
    assert!(
        text.contains(
            "more than 10000 aliases: anchors and aliases expand beyond what a policy needs"
        ),
        "{text}"
    );
}

#[test]
fn aliases_of_reasonable_size_are_fine() {
    let p = ok(&format!(
        "{HEAD}sets:\n  lan: &lan [10.0.0.0/8, 192.168.0.0/16]\n  also: *lan\nrules:\n  - name: a\n    action: allow\n    remote_ports: &ports [21, \"40000-40100\"]\n  - name: b\n    action: allow\n    local_ports: *ports\n"
    ));
    assert_eq!(
        p.rules()[1].local_ports().unwrap().ranges(),
        &[(21, 21), (40000, 40100)]
    );
}

#[test]
fn oversized_policy() {
    let limit = sockexit_engine::MAX_POLICY_BYTES;
    let mut big = String::from(HEAD);
    while big.len() <= limit {
        big.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    refused(
        &big,
        &format!(": policy is larger than {limit} bytes; put long address lists in set files"),
    );
    // Through the file path the size is checked before the file is read.
    let dir = TempDir::new("big");
    let path = dir.write("big.yaml", &big);
    let e = sockexit_engine::Policy::load(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: policy is larger than {limit} bytes", path.display())
    );
}

#[test]
fn missing_policy_file() {
    let e = sockexit_engine::Policy::load(std::path::Path::new("/nonexistent/sockexit.yaml"))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "/nonexistent/sockexit.yaml: No such file or directory (os error 2)"
    );
}

/// Every list field of a rule, with the end of its `[]` message.
const LIST_FIELDS: &[(&str, &str)] = &[
    ("calls", ": the rule would apply to nothing"),
    ("remote", ": write the field out or list addresses"),
    ("remote_ports", ""),
    ("local", ": write the field out or list addresses"),
    ("local_ports", ""),
    ("users", ""),
    ("groups", ""),
    ("programs", ""),
    ("families", ""),
];

#[test]
fn a_list_field_whose_only_entry_is_commented_out_is_refused_not_match_anything() {
    for &(f, why) in LIST_FIELDS {
        // Block style, the half-finished edit the issue describes; another field after it
        // must not hide it.
        let col = 4 + f.len() + 1;
        let after = if f == "families" {
            "calls: [accept]"
        } else {
            "families: [ipv4]"
        };
        let e = refused(
            rule(&format!("    {f}:\n    #  - something\n    {after}\n")),
            &format!(":6:{col}: key `{f}`: rule `r`: empty list (`{f}:` with no value){why}"),
        );
        assert_eq!(e.key.as_deref(), Some(f));
        // ... and as the last key of the file.
        refused(
            rule(&format!("    {f}:\n    # - something\n")),
            &format!(":6:{col}: key `{f}`: rule `r`: empty list (`{f}:` with no value){why}"),
        );
    }
}

#[test]
fn a_null_list_field_in_flow_style_is_refused_with_its_position() {
    for &(f, why) in LIST_FIELDS {
        let key_col = "  - { name: r, action: allow, ".len() + 1;
        let msg = format!("key `{f}`: rule `r`: empty list (`{f}:` with no value){why}");
        // Nothing after the colon: the position is the colon's.
        refused(
            format!("{HEAD}rules:\n  - {{ name: r, action: allow, {f}: }}\n"),
            &format!(":4:{}: {msg}", key_col + f.len()),
        );
        // An explicit null, `~` or `null`: the position is the value's.
        for null in ["~", "null"] {
            refused(
                format!("{HEAD}rules:\n  - {{ name: r, action: allow, {f}: {null} }}\n"),
                &format!(":4:{}: {msg}", key_col + f.len() + 2),
            );
        }
    }
}

#[test]
fn a_null_list_field_in_block_style_is_refused() {
    for &(f, why) in LIST_FIELDS {
        refused(
            rule(&format!("    {f}: ~\n")),
            &format!(
                ":6:{}: key `{f}`: rule `r`: empty list (`{f}:` with no value){why}",
                4 + f.len() + 3
            ),
        );
    }
}

#[test]
fn an_absent_list_field_still_matches_anything() {
    let p = ok(&rule(""));
    assert_eq!(decide(&p, Call::Connect, connect("192.0.2.1:80")).0, ALLOW);
}

#[test]
fn a_null_set_is_refused_naming_the_set() {
    let msg = "set `lan` has no value (its entries commented out?): list addresses, write `[]` for an empty set, or `{ file: PATH }`";
    let e = refused(
        format!("{HEAD}sets: {{lan: }}\n"),
        &format!(":3:11: key `lan`: {msg}"),
    );
    assert_eq!(e.key.as_deref(), Some("lan"));
    refused(
        format!("{HEAD}sets:\n  lan:\n  #  - 10.0.0.0/8\n  wan: [192.0.2.0/24]\n"),
        &format!(":4:6: key `lan`: {msg}"),
    );
    refused(
        format!("{HEAD}sets:\n  lan: ~\n"),
        &format!(":4:8: key `lan`: {msg}"),
    );
    // `[]` is an empty set on purpose: it loads, with a warning (tests/warnings.rs).
    ok(&format!("{HEAD}sets:\n  lan: []\n"));
}

#[test]
fn an_empty_list_item_is_refused_in_plain_words() {
    refused(
        format!("{HEAD}rules:\n  - {{ name: r, action: allow, remote: [~] }}\n"),
        ":4:40: no value (null) where text is expected",
    );
    refused(
        rule("    remote:\n      -\n"),
        ":7:8: no value (null) where text is expected",
    );
    let (_, text) = bad(rule("    local_ports: [~]\n"));
    assert!(
        text.contains("no value (null)") && text.contains(":6:19:"),
        "{text}"
    );
}
