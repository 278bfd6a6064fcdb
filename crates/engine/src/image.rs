//! The published policy: what `sockexit apply` writes and running processes read.
//!
//! An **image** holds everything a load of the policy read — the policy text, every
//! set file's bytes, every user and group name with the id it resolved to — so a
//! process that loads it does no I/O but reading the image, and decides exactly as
//! the policy did when it was applied (not as the files are now). Format (all integers
//! little-endian):
//!
//! ```text
//! magic "SOCKEXIT-IMAGE\0\x01" (16) | generation u64 | payload length u64 |
//! FNV-1a 64 of the payload u64 | payload
//! payload: origin | policy bytes | u32 n, n × (path | bytes) set files |
//!          u32 n, n × (name | u8 known | u32 id) users | the same for groups
//! (a string or byte run is a u32 length and the bytes)
//! ```
//!
//! A truncated, corrupted or hostile image is an [`Error`] (the caller fails closed or
//! keeps the policy it has), never a panic: every length is checked against what is
//! left. The checksum catches accidents; who may write an image is the permission
//! rule's business (the publication directory must be trusted like the policy).
//!
//! The **generation file** (`generation` in the publication directory) is one page:
//! magic "SOCKEXIT-GEN\0\0\0\x01" (16), then the generation as a u64 at offset 16,
//! which processes read from a shared read-only mapping with one atomic load per call.

use crate::policy::{CapturedFile, SetFiles};
use crate::{Error, LoadOptions, Permissions, Policy, Snapshot};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 16] = b"SOCKEXIT-IMAGE\0\x01";
const HEADER: usize = 40;
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
    /// The image of this snapshot, as generation `generation`.
    pub fn to_image(&self, generation: u64) -> Vec<u8> {
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
        let mut out = Vec::with_capacity(HEADER + p.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&generation.to_le_bytes());
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(&fnv1a64(&p).to_le_bytes());
        out.extend_from_slice(&p);
        out
    }

    /// The digest of what this snapshot read (policy, set files, names): equal for
    /// equal inputs, so `status` can tell whether the files differ from what runs.
    pub fn digest(&self) -> u64 {
        let img = self.to_image(0);
        u64::from_le_bytes(img[32..40].try_into().expect("header"))
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

/// Check an image's header and checksum; `file` names it in errors.
pub fn image_info(bytes: &[u8], file: &Path) -> Result<ImageInfo, Error> {
    let r = Reader { b: bytes, file };
    if bytes.len() < HEADER || &bytes[..16] != MAGIC {
        return Err(r.err("not a sockexit policy image (bad magic)"));
    }
    let le = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let (generation, len, sum) = (le(16), le(24) as usize, le(32));
    if bytes.len() - HEADER != len {
        return Err(r.err("length does not match its header (truncated?)"));
    }
    if fnv1a64(&bytes[HEADER..]) != sum {
        return Err(r.err("checksum mismatch"));
    }
    Ok(ImageInfo {
        generation,
        digest: sum,
    })
}

/// Decode an image into the policy it holds, with no I/O: the same [`Policy`] a load
/// of the files as they were at `apply` gives.
pub fn decode_image(bytes: &[u8], file: &Path) -> Result<(ImageInfo, Policy), Error> {
    let info = image_info(bytes, file)?;
    let mut r = Reader {
        b: &bytes[HEADER..],
        file,
    };
    let origin = PathBuf::from(r.string("origin")?);
    let policy = r.bytes("policy")?.to_vec();
    let n = r.u32("set files")? as usize;
    if n > r.b.len() / 8 {
        return Err(r.err("set files"));
    }
    let mut set_files = Vec::with_capacity(n);
    for _ in 0..n {
        let path = PathBuf::from(r.string("set file path")?);
        let bytes = r.bytes("set file")?.to_vec();
        set_files.push(CapturedFile {
            path,
            bytes,
            warnings: Vec::new(),
        });
    }
    let users = r.names("users")?;
    let groups = r.names("groups")?;
    if !r.b.is_empty() {
        return Err(r.err("trailing bytes"));
    }
    let replay = crate::snapshot::Replay {
        users: &users,
        groups: &groups,
    };
    let p = crate::policy::compile(
        &policy,
        &origin,
        &LoadOptions {
            resolver: &replay,
            permissions: Permissions::Warn,
        },
        SetFiles::Replay(&set_files),
    )?;
    Ok((info, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(text: &str) -> (tempdir::Dir, Snapshot) {
        let d = tempdir::Dir::new();
        let p = d.0.join("p.yaml");
        std::fs::write(&p, text).unwrap();
        std::fs::write(d.0.join("b.txt"), "127.0.0.2\n10.0.0.0/8\n").unwrap();
        let s = Snapshot::read_with(
            &p,
            &LoadOptions {
                resolver: &crate::FilesResolver::default(),
                permissions: Permissions::Warn,
            },
        )
        .unwrap();
        (d, s)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "sockexit-image-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    const POLICY: &str = "version: 1\ndefault: allow\nsets:\n  b: { file: b.txt }\nrules:\n  - { name: no-b, action: deny, remote: [\"@b\"], users: [root] }\n";

    #[test]
    fn an_image_decides_as_the_files_did() {
        let (_d, s) = snap(POLICY);
        let img = s.to_image(7);
        let (info, p) = decode_image(&img, Path::new("x.image")).unwrap();
        assert_eq!(info.generation, 7);
        assert_eq!(info.digest, s.digest());
        let mut f = crate::Facts {
            remote: Some("10.1.2.3:80".parse().unwrap()),
            uid: Some(0),
            ..Default::default()
        };
        assert_eq!(p.decide(crate::Call::Connect, &mut f).rule, "no-b");
        f.remote = Some("127.0.0.3:80".parse().unwrap());
        assert_eq!(p.decide(crate::Call::Connect, &mut f).rule, "default");
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error_not_a_panic() {
        let (_d, s) = snap(POLICY);
        let img = s.to_image(1);
        for n in 0..img.len() {
            assert!(
                decode_image(&img[..n], Path::new("x")).is_err(),
                "truncated at {n}"
            );
        }
        for i in 0..img.len() {
            let mut bad = img.clone();
            bad[i] ^= 0x41;
            // A flip in the generation field is still a valid image of another generation.
            if (16..24).contains(&i) {
                continue;
            }
            assert!(decode_image(&bad, Path::new("x")).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn a_hostile_payload_with_a_valid_checksum_is_an_error() {
        let mut p = Vec::new();
        put(&mut p, b"/x.yaml");
        put(&mut p, b"version: 1\n");
        p.extend_from_slice(&u32::MAX.to_le_bytes()); // set-file count
        let mut img = MAGIC.to_vec();
        img.extend_from_slice(&1u64.to_le_bytes());
        img.extend_from_slice(&(p.len() as u64).to_le_bytes());
        img.extend_from_slice(&fnv1a64(&p).to_le_bytes());
        img.extend_from_slice(&p);
        assert!(decode_image(&img, Path::new("x")).is_err());
    }
}
