//! The policy as serde reads it (`Raw*`): every field optional, positions kept
//! (`Spanned`) where an error must point at a value. Validation is `compile`'s job.

use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) version: Option<Spanned<NumOrStr>>,
    pub(super) default: Option<Spanned<String>>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) stealth: Option<bool>,
    pub(super) blocking_accept: Option<Spanned<String>>,
    pub(super) audit: Option<RawAudit>,
    pub(super) sets: Option<BTreeMap<String, Spanned<RawSet>>>,
    pub(super) rules: Option<Vec<Spanned<RawRule>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) log: Option<Spanned<String>>,
    pub(super) events: Option<Spanned<String>>,
}

/// A set: an inline list of addresses, or `{ file: PATH }`. Written by hand instead of
/// `#[serde(untagged)]` so an unknown key (`{ fil: x }`) is named in the error, items keep
/// their line and column, and no value of arbitrary shape is ever buffered (an alias bomb
/// fails on its first nested list instead of expanding).
pub(super) enum RawSet {
    List(Vec<Spanned<String>>),
    File(String),
    /// `{ dynamic: true }`: entries changed at run time by `sockexit set`.
    Dynamic,
    /// `lan:` with no value (its entries commented out?): refused by `compile`, which
    /// knows the set's name for the message.
    Null,
}

impl<'de> Deserialize<'de> for RawSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawSet;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of addresses, `{ file: PATH }` or `{ dynamic: true }`")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<RawSet, E> {
                Ok(RawSet::Null)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<RawSet, E> {
                Ok(RawSet::Null)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<RawSet, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = s.next_element::<Spanned<String>>()? {
                    v.push(x);
                }
                Ok(RawSet::List(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<RawSet, A::Error> {
                use serde::de::Error as _;
                let mut file = None;
                let mut dynamic = None;
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "file" if file.is_some() => return Err(A::Error::duplicate_field("file")),
                        "file" => file = Some(m.next_value::<String>()?),
                        "dynamic" if dynamic.is_some() => {
                            return Err(A::Error::duplicate_field("dynamic"))
                        }
                        "dynamic" => dynamic = Some(m.next_value::<bool>()?),
                        _ => return Err(A::Error::unknown_field(&k, &["file", "dynamic"])),
                    }
                }
                match (file, dynamic) {
                    (Some(f), None | Some(false)) => Ok(RawSet::File(f)),
                    (None, Some(true)) => Ok(RawSet::Dynamic),
                    (Some(_), Some(true)) => Err(A::Error::custom(
                        "a set is either `{ file: PATH }` or `{ dynamic: true }`, not both",
                    )),
                    (None, Some(false)) => Err(A::Error::custom(
                        "`dynamic: false` is not a set: list addresses or write `{ file: PATH }`",
                    )),
                    (None, None) => Err(A::Error::missing_field("file")),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A port, port range, user or group: a YAML number or a string. Hand-written (not
/// untagged) so a wrong type says what was expected.
pub(super) enum NumOrStr {
    Num(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for NumOrStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = NumOrStr;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number, or text such as \"1024-65535\" or a name")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Num(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<NumOrStr, E> {
                // Above i64::MAX: out of range for every use, reported as such.
                Ok(NumOrStr::Num(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Str(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl std::fmt::Display for NumOrStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumOrStr::Num(n) => write!(f, "{n}"),
            NumOrStr::Str(s) => f.write_str(s),
        }
    }
}

/// A rule's list field: `None` when the key is absent (the field matches anything),
/// `Some` with a `None` value when the key is there with no value, as when its only
/// entry was commented out. Serde reads both as `None` for a plain `Option<Vec<_>>`,
/// and that null would silently widen the rule, so [`present`] keeps them apart and
/// `compile` refuses the null like `[]`. `Spanned` points the error at the value.
pub(super) type ListField<T> = Option<Spanned<Option<Vec<T>>>>;

/// `deserialize_with` for [`ListField`]: a key that is there is `Some`, whatever its
/// value (an absent key is `None` through `#[serde(default)]`).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: Option<Spanned<String>>,
    pub(super) action: Option<Spanned<String>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) calls: ListField<Spanned<String>>,

    #[serde(default, deserialize_with = "present")]
    pub(super) remote: ListField<Spanned<String>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) remote_ports: ListField<Spanned<NumOrStr>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) local: ListField<Spanned<String>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) local_ports: ListField<Spanned<NumOrStr>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) users: ListField<Spanned<NumOrStr>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) groups: ListField<Spanned<NumOrStr>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) programs: ListField<Spanned<String>>,
    #[serde(default, deserialize_with = "present")]
    pub(super) families: ListField<Spanned<String>>,
}
