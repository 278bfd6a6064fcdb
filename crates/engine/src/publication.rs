//! Reading a published policy: the trust checks on the run directory, the
//! publication directory and its files, and the read and decode of one generation's
//! image. Both backends use it — the preload (`src/live.rs`) and the supervisor
//! (`crates/supervise/src/live.rs`) — so they trust and refuse exactly the same
//! publications. Mapping the generation word is each backend's own (unsafe) business:
//! [`Publication::open`] hands back the checked generation file for that.
//!
//! Trust, as for the policy file: the run directory must be owned by root or by this
//! process's user and not writable by others (a sticky directory is fine); the
//! publication directory and its files must be owned by root, this process's user or
//! the policy file's owner, and writable by no one else. Nothing is followed through a
//! symlink.

use crate::{
    decode_image, image_path, DynContent, DynSets, Policy, GEN_FILE_BYTES, GEN_MAGIC,
    MAX_DYNAMIC_BYTES, MAX_IMAGE_BYTES,
};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// One generation of a published policy, decoded.
pub struct Generation {
    /// The generation number `apply` published it as.
    pub generation: u64,
    /// FNV-1a 64 of what the load read (what `status` shows).
    pub digest: u64,
    /// The compiled policy.
    pub policy: Policy,
}

/// A trusted publication directory of one policy path.
pub struct Publication {
    dir: PathBuf,
    trusted: [u32; 3],
}

fn open_nofollow(p: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(p)
}

/// Owned by a trusted uid and writable by no one else.
fn trusted(m: &std::fs::Metadata, uids: &[u32]) -> bool {
    uids.contains(&m.uid()) && m.mode() & 0o022 == 0
}

impl Publication {
    /// The publication of the policy at `canonical` under `run_dir`, with its checked
    /// generation file (one page, the magic verified) for the caller to map; `None`
    /// when that path was never applied. `Err` when it was applied but cannot be
    /// trusted or read: the caller fails closed.
    pub fn open(canonical: &Path, run_dir: &Path) -> Option<Result<(Publication, File), String>> {
        let dir = crate::publication_dir(run_dir, canonical);
        let gen_path = dir.join("generation");
        // Only a generation file that does not exist means "never applied": one this
        // process cannot see (a directory it may not search) must not send it to the
        // unapplied file instead.
        let gen_meta = match std::fs::symlink_metadata(&gen_path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Unless the directory above it is what cannot be read.
                match std::fs::symlink_metadata(&dir) {
                    Err(d) if d.kind() != std::io::ErrorKind::NotFound => {
                        return Some(Err(format!("{}: {d}", dir.display())));
                    }
                    _ => return None,
                }
            }
            Err(e) => return Some(Err(format!("{}: {e}", gen_path.display()))),
        };
        Some(Self::open_checked(
            canonical, run_dir, dir, &gen_path, gen_meta,
        ))
    }

    fn open_checked(
        canonical: &Path,
        run_dir: &Path,
        dir: PathBuf,
        gen_path: &Path,
        gen_meta: std::fs::Metadata,
    ) -> Result<(Publication, File), String> {
        let euid = crate::perms::euid();
        let owner = std::fs::metadata(canonical).map(|m| m.uid()).unwrap_or(0);
        let uids = [0, euid, owner];
        let run = std::fs::symlink_metadata(run_dir)
            .map_err(|e| format!("{}: {e}", run_dir.display()))?;
        let sticky = run.mode() & 0o1000 != 0;
        if !(run.is_dir() && [0, euid].contains(&run.uid()) && (sticky || run.mode() & 0o022 == 0))
        {
            return Err(format!(
                "{}: not a directory owned by root or uid {euid} that others cannot write (mode {:o}, owner {})",
                run_dir.display(),
                run.mode() & 0o7777,
                run.uid()
            ));
        }
        let d = std::fs::symlink_metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !d.is_dir() || !trusted(&d, &uids) {
            return Err(format!(
                "{}: not a directory owned by root, uid {euid} or the policy's owner, writable only by its owner (mode {:o}, owner {})",
                dir.display(),
                d.mode() & 0o7777,
                d.uid()
            ));
        }
        let f = open_nofollow(gen_path).map_err(|e| format!("{}: {e}", gen_path.display()))?;
        let m = f.metadata().map_err(|e| e.to_string())?;
        if !m.is_file()
            || !trusted(&m, &uids)
            || m.len() != GEN_FILE_BYTES as u64
            || m.ino() != gen_meta.ino()
        {
            return Err(format!(
                "{}: not a trusted {GEN_FILE_BYTES}-byte regular file",
                gen_path.display()
            ));
        }
        let mut head = [0u8; 16];
        (&f).read_exact(&mut head).map_err(|e| e.to_string())?;
        if &head != GEN_MAGIC {
            return Err(format!(
                "{}: not a sockexit generation file",
                gen_path.display()
            ));
        }
        Ok((Publication { dir, trusted: uids }, f))
    }

    /// The publication directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Generation `g`'s image, opened and checked (trusted owner and mode, a regular
    /// file, not too big), with its size: for a backend to map and decode in place.
    pub fn open_image(&self, g: u64) -> Result<(File, PathBuf, usize), String> {
        let p = image_path(&self.dir, g);
        let f = open_nofollow(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let m = f.metadata().map_err(|e| e.to_string())?;
        if !m.is_file() || !trusted(&m, &self.trusted) {
            return Err(format!(
                "{}: not a regular file owned by root, this user or the policy's owner, writable only by its owner",
                p.display()
            ));
        }
        if m.len() > MAX_IMAGE_BYTES as u64 {
            return Err(format!(
                "{}: larger than {MAX_IMAGE_BYTES} bytes",
                p.display()
            ));
        }
        Ok((f, p, m.len() as usize))
    }

    /// Read and decode generation `g`'s image (copied: for a backend that does not
    /// map it); an image that is not trusted, cannot be read, is corrupt or holds
    /// another generation is an `Err` (the caller fails closed at start-up, or keeps
    /// the policy it has).
    pub fn read(&self, g: u64) -> Result<Generation, String> {
        let (f, p, len) = self.open_image(g)?;
        let mut bytes = Vec::with_capacity(len);
        f.take(MAX_IMAGE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        let (info, policy) = decode_image(&bytes, &p).map_err(|e| e.to_string())?;
        check_generation(&p, info.generation, g)?;
        Ok(Generation {
            generation: g,
            digest: info.digest,
            policy,
        })
    }

    /// The dynamic sets' entries as of set revision `w` (`dynamic`, absent before
    /// the first `sockexit set`: then empty), checked like an image.
    pub fn read_dynamic(&self, w: u64) -> Result<DynSets, String> {
        let p = self.dir.join("dynamic");
        let f = match open_nofollow(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && w == 0 => {
                return Ok(DynSets::empty(0))
            }
            Err(e) => return Err(format!("{}: {e}", p.display())),
        };
        let m = f.metadata().map_err(|e| e.to_string())?;
        if !m.is_file() || !trusted(&m, &self.trusted) {
            return Err(format!(
                "{}: not a regular file owned by root, this user or the policy's owner, writable only by its owner",
                p.display()
            ));
        }
        let mut bytes = Vec::with_capacity(m.len().min(MAX_DYNAMIC_BYTES as u64) as usize);
        f.take(MAX_DYNAMIC_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        if bytes.len() > MAX_DYNAMIC_BYTES {
            return Err(format!(
                "{}: larger than {MAX_DYNAMIC_BYTES} bytes",
                p.display()
            ));
        }
        let c = DynContent::decode(&bytes, &p).map_err(|e| e.to_string())?;
        Ok(DynSets::build(&c))
    }
}

/// An image must hold the generation it is named for.
pub fn check_generation(p: &Path, holds: u64, g: u64) -> Result<(), String> {
    if holds != g {
        return Err(format!("{}: holds generation {holds}", p.display()));
    }
    Ok(())
}
