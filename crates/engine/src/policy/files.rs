//! Reading the policy and set files (bounded), and parsing set-file text.

use super::{Ctx, MAX_POLICY_BYTES, MAX_SET_FILE_BYTES};
use crate::files::{read_regular, ReadError};
use crate::ranges::{AddrSet, AddrSetBuilder};
use crate::{Error, Permissions, Warning};
use std::path::{Path, PathBuf};

/// An address or `addr/len` prefix, host bits dropped. std's address parser, a byte
/// scan for `/` and a plain length check: a quarter fewer instructions than `ipnet`'s
/// combinator parser on a 100k-line set file.
pub(super) fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    match s.bytes().position(|c| c == b'/') {
        None => s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from),
        Some(i) => {
            let (addr, len) = (&s[..i], &s[i + 1..]);
            if len.is_empty() || len.len() > 3 || !len.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let addr = addr.parse::<std::net::IpAddr>().ok()?;
            let len = len.parse::<u8>().ok()?;
            ipnet::IpNet::new(addr, len).ok().map(|n| n.trunc())
        }
    }
}

/// `str::lines` (LF or CRLF endings) by a plain byte loop: set-file lines are ~15
/// bytes, where memchr's per-call setup costs more than it saves.
fn short_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let t = rest.filter(|t| !t.is_empty())?;
        let (line, next) = match t.bytes().position(|c| c == b'\n') {
            Some(e) => (&t[..e], Some(&t[e + 1..])),
            None => (t, None),
        };
        rest = next;
        Some(line.strip_suffix('\r').unwrap_or(line))
    })
}

/// The policy file's bytes: a regular file of at most [`MAX_POLICY_BYTES`], read
/// without blocking and without reading past the limit (`crate::files`); and, under
/// [`Permissions::Warn`], what the permission rule found (under `Strict` an error).
pub(crate) fn read_policy_bytes(
    path: &Path,
    perms: Permissions,
) -> Result<(Vec<u8>, Vec<Warning>), Error> {
    let err = |message: String| Error {
        file: path.to_path_buf(),
        location: None,
        key: None,
        message,
    };
    let (bytes, meta) = read_regular(path, MAX_POLICY_BYTES as u64).map_err(|e| {
        err(match e {
            ReadError::TooBig => format!("policy is larger than {MAX_POLICY_BYTES} bytes"),
            other => other.to_string(),
        })
    })?;
    let mut warnings = Vec::new();
    for v in crate::perms::check(path, &meta, "a policy") {
        // The path is the policy's own (canonical) one, or a directory above it.
        let text = if v.path == path {
            v.text
        } else {
            v.to_string()
        };
        match perms {
            Permissions::Strict => return Err(err(text)),
            Permissions::Warn => warnings.push(Warning {
                rule: None,
                location: None,
                message: text,
            }),
        }
    }
    Ok((bytes, warnings))
}

/// A set file as read for a [`crate::Snapshot`]: its bytes, and the permission
/// warnings found when it was read, replayed with them.
///
/// Also, under a path that starts with [`LINK_MARK`] (a NUL byte, which no file path
/// can contain, so no set file is ever mistaken for one), what a `programs:` path
/// resolved to when the policy was read: the bytes are the target path, empty when it
/// resolved to nothing else. A replay (and a published image, which carries captured
/// files as path and bytes) resolves it the same way without any I/O.
#[derive(Debug)]
pub(crate) struct CapturedFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub warnings: Vec<Warning>,
}

/// The start of a captured `programs:` resolution's path (see [`CapturedFile`]).
pub(crate) const LINK_MARK: &str = "\0program:";

impl CapturedFile {
    /// Whether this is a `programs:` resolution, not a set file.
    pub(crate) fn is_program_link(&self) -> bool {
        use std::os::unix::ffi::OsStrExt;
        self.path
            .as_os_str()
            .as_bytes()
            .starts_with(LINK_MARK.as_bytes())
    }
}

/// What a `programs:` pattern without glob characters resolves to, when that is
/// another path: the executable the kernel runs, as `/proc/self/exe` names it
/// (every symlink on the path followed). `None` for a glob, a relative name, a path
/// that does not exist, or one that is already canonical.
pub(crate) fn resolve_program(pattern: &str) -> Option<PathBuf> {
    if !pattern.starts_with('/') || pattern.contains(['*', '?', '[']) {
        return None;
    }
    let target = std::fs::canonicalize(pattern).ok()?;
    (target.as_os_str() != std::ffi::OsStr::new(pattern)).then_some(target)
}

impl SetFiles<'_> {
    /// [`resolve_program`] now (`Disk`), recorded (`Capture`) or replayed (`Replay`).
    pub(crate) fn program_link(&mut self, pattern: &str) -> Option<PathBuf> {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let key = PathBuf::from(format!("{LINK_MARK}{pattern}"));
        match self {
            SetFiles::Disk => resolve_program(pattern),
            SetFiles::Capture { into, .. } => {
                let link = resolve_program(pattern);
                if !into.iter().any(|c| c.path == key) {
                    into.push(CapturedFile {
                        path: key,
                        bytes: link
                            .as_ref()
                            .map(|t| t.as_os_str().as_bytes().to_vec())
                            .unwrap_or_default(),
                        warnings: Vec::new(),
                    });
                }
                link
            }
            SetFiles::Replay(from) => from
                .iter()
                .find(|c| c.path == key)
                .filter(|c| !c.bytes.is_empty())
                .map(|c| PathBuf::from(std::ffi::OsString::from_vec(c.bytes.clone()))),
        }
    }
}

/// How [`compile`](super::compile) gets the contents of `sets: { NAME: { file: PATH } }`.
pub(crate) enum SetFiles<'a> {
    /// Read and parse each file now (`Policy::load`).
    Disk,
    /// Read each file into the list: the I/O of a [`crate::Snapshot`]. Files of at
    /// most `parse_up_to` bytes are parsed now too; bigger ones leave their set empty
    /// until [`crate::Snapshot::compile`].
    Capture {
        into: &'a mut Vec<CapturedFile>,
        parse_up_to: usize,
    },
    /// Parse the bytes captured earlier; no I/O.
    Replay(&'a [CapturedFile]),
}

/// The bytes of one set file, with the same limits and errors whoever reads it, and
/// the permission rule's findings as [`read_policy_bytes`] has them (errors and
/// warnings name the policy, the set's line and column, and the set).
pub(super) fn read_set_bytes(
    ctx: &Ctx<'_>,
    set: &str,
    at: Option<(usize, usize)>,
    path: &Path,
    perms: Permissions,
) -> Result<(Vec<u8>, Vec<Warning>), Error> {
    let (bytes, meta) = read_regular(path, MAX_SET_FILE_BYTES).map_err(|e| match e {
        ReadError::TooBig => Error {
            file: path.to_path_buf(),
            location: None,
            key: None,
            message: format!("set file is larger than {MAX_SET_FILE_BYTES} bytes"),
        },
        other => ctx.err(
            at,
            Some(set),
            format!("cannot read set file {}: {other}", path.display()),
        ),
    })?;
    let mut warnings = Vec::new();
    for v in crate::perms::check(path, &meta, "a set file") {
        let text = if v.path == path {
            format!("set file {}: {}", path.display(), v.text)
        } else {
            format!("set file {}: {v}", path.display())
        };
        match perms {
            Permissions::Strict => return Err(ctx.err(at, Some(set), text)),
            Permissions::Warn => warnings.push(Warning {
                rule: None,
                location: at,
                message: text,
            }),
        }
    }
    Ok((bytes, warnings))
}

/// A set file's text (one address or prefix per line, `#` comments) as a set; errors
/// name the set file, line and column.
pub(super) fn parse_set_text(path: &Path, bytes: &[u8]) -> Result<AddrSet, Error> {
    let ferr = |loc, msg: String| Error {
        file: path.to_path_buf(),
        location: loc,
        key: None,
        message: msg,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        ferr(Some((line, 1)), "not valid UTF-8".into())
    })?;
    let mut b = AddrSetBuilder::default();
    for (i, raw) in short_lines(text).enumerate() {
        // A byte loop, not `split('#')`: lines are short and memchr's setup cost per
        // call dominated the load of a 100k-line file.
        let end = raw.bytes().position(|c| c == b'#').unwrap_or(raw.len());
        let line = raw[..end].trim();
        if line.is_empty() {
            continue;
        }
        let net = parse_net(line).ok_or_else(|| {
            let col = raw.find(line).unwrap_or(0) + 1;
            ferr(
                Some((i + 1, col)),
                format!("`{line}` is not an IP address or CIDR prefix"),
            )
        })?;
        b.add(net);
    }
    Ok(b.build())
}
