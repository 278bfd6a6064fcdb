//! The published policy: what `sockexit apply` writes and running processes read.
//!
//! An **image** holds the compiled policy — the rule table, every rule's address set
//! and the address dispatch — and the record of what the load read (the policy text,
//! the small set files, every user and group name with the id it resolved to), so a
//! process that loads it does no I/O but mapping the image, parses nothing, and
//! decides exactly as the policy did when it was applied (not as the files are now).
//! Format (all integers little-endian):
//!
//! ```text
//! magic "SOCKEXIT-IMAGE\0\x02" (16) | generation u64 | payload length u64 |
//! FNV-1a 64 of the payload u64 | compiled length u64 | hash of the compiled u64 |
//! 8 zero bytes | payload | zero padding to 16 | compiled section
//! payload: digest u64 | origin | policy bytes |
//!          u32 n, n × (path | u8 kind | kind 0: bytes) set files |
//!          u32 n, n × (name | u8 known | u32 id) users | the same for groups
//! (a string or byte run is a u32 length and the bytes; kind 1: a set file of at
//! least [`COMPILED_SET_BYTES`] whose text is not kept: its ranges are in the rules'
//! sets)
//! ```
//!
//! The **compiled section** (`crate::compiled`): the rule table
//! (`crate::policy::table`), the ranges of every rule's `remote` and `local` set, and
//! the address dispatch. A process maps the image and decides with those arrays in
//! place — shared with every other process through the page cache, checked (sum,
//! lengths, offsets and what lookups index) but neither parsed nor copied. The payload
//! is checked too but not used to decide: it is the record of what was applied.
//!
//! A truncated, corrupted or hostile image is an [`Error`] (the caller fails closed or
//! keeps the policy it has), never a panic: every length is checked against what is
//! left. The checksum catches accidents; who may write an image is the permission
//! rule's business (the publication directory must be trusted like the policy).
//!
//! The **generation file** (`generation` in the publication directory) is one page:
//! magic "SOCKEXIT-GEN\0\0\0\x01" (16), then the generation as a u64 at offset 16,
//! which processes read from a shared read-only mapping with one atomic load per call,
//! and the dynamic-set revision at offset 24 (`crate::dynset`).

use crate::{Error, Policy, Snapshot};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 16] = b"SOCKEXIT-IMAGE\0\x02";
const HEADER: usize = 64;
/// Set files of at least this many bytes are not kept as text in the image (their
/// ranges are in the compiled rules).
pub const COMPILED_SET_BYTES: usize = 16 * 1024;
/// An image larger than this is refused (every set file may be 64 MiB; a policy with
/// many of them is not a hand-written file any more).
pub const MAX_IMAGE_BYTES: usize = 512 << 20;

/// Magic of the generation file.
pub const GEN_MAGIC: &[u8; 16] = b"SOCKEXIT-GEN\0\0\0\x01";
/// Offset of the generation (u64, 8-byte aligned) in the generation file.
pub const GEN_OFFSET: usize = 16;
/// Size of the generation file.
pub const GEN_FILE_BYTES: usize = 4096;

/// FNV-1a, 64 bits: the image checksum and the digest `status` and audit lines show.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The directory under `run_dir` where the policy at `canonical` is published: one
/// per policy path (the hash of the canonical path), so every process that runs under
/// that path finds it without being told.
pub fn publication_dir(run_dir: &Path, canonical: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    run_dir.join(format!(
        "{:016x}",
        fnv1a64(canonical.as_os_str().as_bytes())
    ))
}

/// The image of generation `g` in a publication directory.
pub fn image_path(dir: &Path, g: u64) -> PathBuf {
    dir.join(format!("{g}.image"))
}

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_names(out: &mut Vec<u8>, names: &[(String, Option<u32>)]) {
    out.extend_from_slice(&(names.len() as u32).to_le_bytes());
    for (n, id) in names {
        put(out, n.as_bytes());
        out.push(id.is_some() as u8);
        out.extend_from_slice(&id.unwrap_or(0).to_le_bytes());
    }
}

impl Snapshot {
    /// What the load read, in the first image format: what [`Snapshot::digest`] hashes.
    fn sources(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut p = Vec::with_capacity(self.policy.len() + self.set_file_bytes() + 256);
        put(&mut p, self.origin.as_os_str().as_bytes());
        put(&mut p, &self.policy);
        p.extend_from_slice(&(self.set_files.len() as u32).to_le_bytes());
        for f in &self.set_files {
            put(&mut p, f.path.as_os_str().as_bytes());
            put(&mut p, &f.bytes);
        }
        put_names(&mut p, &self.users);
        put_names(&mut p, &self.groups);
        p
    }

    /// The image of this snapshot as generation `generation`; `policy` is what
    /// [`Snapshot::compile`] made of it (its dispatch goes into the image).
    pub fn to_image(&self, generation: u64, policy: &Policy) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut p = Vec::with_capacity(self.policy.len() + 4096);
        p.extend_from_slice(&self.digest().to_le_bytes());
        put(&mut p, self.origin.as_os_str().as_bytes());
        put(&mut p, &self.policy);
        p.extend_from_slice(&(self.set_files.len() as u32).to_le_bytes());
        for f in &self.set_files {
            put(&mut p, f.path.as_os_str().as_bytes());
            // A big set file's text is not kept: its ranges are in the rules' sets.
            if !f.is_program_link() && f.bytes.len() >= COMPILED_SET_BYTES {
                p.push(1);
            } else {
                p.push(0);
                put(&mut p, &f.bytes);
            }
        }
        put_names(&mut p, &self.users);
        put_names(&mut p, &self.groups);
        let (table, sets) = crate::policy::table::encode(policy);
        let sec = crate::compiled::Writer::section(&table, &sets, policy.dispatch_parts());
        let mut out = Vec::with_capacity(HEADER + p.len() + 16 + sec.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&generation.to_le_bytes());
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(&fnv1a64(&p).to_le_bytes());
        out.extend_from_slice(&(sec.len() as u64).to_le_bytes());
        out.extend_from_slice(&crate::compiled::fast_hash(&sec).to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&p);
        while !out.len().is_multiple_of(16) {
            out.push(0);
        }
        out.extend_from_slice(&sec);
        out
    }

    /// The digest of what this snapshot read (policy, set files, names): equal for
    /// equal inputs, so `status` can tell whether the files differ from what runs.
    pub fn digest(&self) -> u64 {
        fnv1a64(&self.sources())
    }
}

/// What an image says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// The generation it was published as.
    pub generation: u64,
    /// FNV-1a 64 of its payload: the same for the same inputs.
    pub digest: u64,
}

struct Reader<'a> {
    b: &'a [u8],
    file: &'a Path,
}

impl<'a> Reader<'a> {
    fn err(&self, what: &str) -> Error {
        Error {
            file: self.file.to_path_buf(),
            location: None,
            key: None,
            message: format!("corrupt policy image: {what}"),
        }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Error> {
        if self.b.len() < n {
            return Err(self.err(&format!("truncated in {what}")));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u32(&mut self, what: &str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn bytes(&mut self, what: &str) -> Result<&'a [u8], Error> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    fn string(&mut self, what: &str) -> Result<String, Error> {
        String::from_utf8(self.bytes(what)?.to_vec()).map_err(|_| self.err(what))
    }
    fn names(&mut self, what: &str) -> Result<Vec<(String, Option<u32>)>, Error> {
        let n = self.u32(what)? as usize;
        // Each entry is at least 9 bytes: a hostile count cannot make us allocate.
        if n > self.b.len() / 9 {
            return Err(self.err(what));
        }
        (0..n)
            .map(|_| {
                let name = self.string(what)?;
                let known = self.take(1, what)?[0] != 0;
                let id = self.u32(what)?;
                Ok((name, known.then_some(id)))
            })
            .collect()
    }
}

/// Where the parts of an image are, once its header and checksums hold.
struct Layout<'a> {
    info: ImageInfo,
    payload: &'a [u8],
    section: std::ops::Range<usize>,
}

fn layout<'a>(bytes: &'a [u8], file: &'a Path) -> Result<Layout<'a>, Error> {
    let r = Reader { b: bytes, file };
    if bytes.len() < HEADER || &bytes[..16] != MAGIC {
        return Err(r.err("not a sockexit policy image of this version (bad magic)"));
    }
    let le = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let (generation, plen, psum, slen, shash) = (le(16), le(24), le(32), le(40), le(48));
    if le(56) != 0 {
        return Err(r.err("header padding"));
    }
    let pend = usize::try_from(plen)
        .ok()
        .and_then(|l| l.checked_add(HEADER))
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| r.err("length does not match its header (truncated?)"))?;
    let sstart = pend.next_multiple_of(16);
    let send = usize::try_from(slen)
        .ok()
        .and_then(|l| l.checked_add(sstart))
        .ok_or_else(|| r.err("length does not match its header (truncated?)"))?;
    if send != bytes.len() || sstart > bytes.len() {
        return Err(r.err("length does not match its header (truncated?)"));
    }
    let payload = &bytes[HEADER..pend];
    if fnv1a64(payload) != psum {
        return Err(r.err("checksum mismatch"));
    }
    if bytes[pend..sstart].iter().any(|&b| b != 0) {
        return Err(r.err("padding"));
    }
    if crate::compiled::fast_hash(&bytes[sstart..]) != shash {
        return Err(r.err("checksum mismatch in the compiled section"));
    }
    let digest = u64::from_le_bytes(
        payload
            .get(..8)
            .ok_or_else(|| r.err("truncated in digest"))?
            .try_into()
            .expect("8 bytes"),
    );
    Ok(Layout {
        info: ImageInfo { generation, digest },
        payload,
        section: sstart..send,
    })
}

/// Check an image's header and checksums; `file` names it in errors.
pub fn image_info(bytes: &[u8], file: &Path) -> Result<ImageInfo, Error> {
    layout(bytes, file).map(|l| l.info)
}

/// Decode an image into the policy it holds, with no I/O: the same [`Policy`] a load
/// of the files as they were at `apply` gives. Its compiled arrays are copied.
pub fn decode_image(bytes: &[u8], file: &Path) -> Result<(ImageInfo, Policy), Error> {
    decode(bytes, None, file)
}

/// [`decode_image`] for an image that stays in memory, unchanged, for as long as the
/// policy is used (a read-only mapping): the compiled arrays are used in place.
pub fn decode_image_in_place(
    bytes: &'static [u8],
    file: &Path,
) -> Result<(ImageInfo, Policy), Error> {
    decode(bytes, Some(bytes), file)
}

fn decode(
    bytes: &[u8],
    st: Option<&'static [u8]>,
    file: &Path,
) -> Result<(ImageInfo, Policy), Error> {
    let l = layout(bytes, file)?;
    let mut r = Reader {
        b: &l.payload[8..],
        file,
    };
    let origin = r.string("origin")?;
    let policy = r.bytes("policy")?;
    let n = r.u32("set files")? as usize;
    if n > r.b.len() / 5 {
        return Err(r.err("set files"));
    }
    for _ in 0..n {
        r.string("set file path")?;
        match r.take(1, "set file kind")?[0] {
            0 => {
                r.bytes("set file")?;
            }
            1 => {}
            _ => return Err(r.err("set file kind")),
        }
    }
    r.names("users")?;
    r.names("groups")?;
    if !r.b.is_empty() {
        return Err(r.err("trailing bytes"));
    }
    // The payload is the record of what was applied; the policy comes from the
    // compiled section: no YAML parse, no set-file parse.
    let _ = (origin, policy);
    let bad = |what: &str| r.err(&format!("compiled section: {what}"));
    let sec = &bytes[l.section.clone()];
    let st_sec = st.map(|s| &s[l.section.clone()]);
    let mut c = crate::compiled::Reader::new(sec, st_sec).map_err(bad)?;
    let table = c.table().map_err(bad)?;
    let n = c.u32().map_err(bad)? as usize;
    if n > sec.len() / 32 {
        return Err(bad("set count"));
    }
    let sets = (0..n)
        .map(|_| c.set().map(Some))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let dispatch = if c.flag().map_err(bad)? {
        Some(Box::new(c.dispatch().map_err(bad)?))
    } else {
        None
    };
    if !c.done() {
        return Err(bad("trailing bytes"));
    }
    let p = crate::policy::table::decode(&table, sets, dispatch).map_err(bad)?;
    Ok((l.info, p))
}

#[cfg(test)]
mod tests;
