//! Policy text → validated, compiled [`Policy`](crate::Policy): parsing (serde-saphyr),
//! validation with file/line/column errors, compilation into range indexes, lint
//! warnings.
//!
//! - [`raw`]: the document as serde reads it, before validation;
//! - [`yaml_error`]: serde-saphyr's options and its errors in a policy author's words;
//! - [`files`]: reading the policy and set files, parsing set-file text;
//! - [`compile`]: raw document → [`Rule`]s and the per-call tables;
//! - [`rule`]: a compiled rule and how it matches;
//! - [`lint`]: warnings about policies that load but cannot do what they say.

mod compile;
mod files;
mod lint;
mod raw;
mod rule;
pub(crate) mod table;
mod yaml_error;

pub(crate) use compile::compile;
pub(crate) use files::{read_policy_bytes, CapturedFile, SetFiles};
pub use rule::Rule;

use crate::Error;
use serde_saphyr::Spanned;
use std::path::Path;

/// Policies larger than this are refused before parsing (a policy is hand-written;
/// big address lists belong in set files).
pub const MAX_POLICY_BYTES: usize = 4 << 20;
/// Set files larger than this are refused.
pub const MAX_SET_FILE_BYTES: u64 = 64 << 20;

/// The file errors are reported in.
struct Ctx<'a> {
    file: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, loc: Option<(usize, usize)>, key: Option<&str>, msg: impl Into<String>) -> Error {
        Error {
            file: self.file.to_path_buf(),
            location: loc,
            key: key.map(str::to_owned),
            message: msg.into(),
        }
    }
}

/// 1-based line and column of a value, when serde-saphyr knows it.
fn loc<T>(s: &Spanned<T>) -> Option<(usize, usize)> {
    let l = &s.referenced;
    (l.line() > 0).then(|| (l.line() as usize, l.column() as usize))
}
