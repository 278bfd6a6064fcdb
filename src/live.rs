//! The live policy: once `sockexit apply` has published a policy path, every process
//! under that path decides with the published image, and picks up the next one at
//! its next call.
//!
//! Publication directory (see `sockexit_engine::publication_dir`): `generation`, one
//! page whose u64 `apply` bumps with an atomic store, and `G.image` per generation.
//! A process maps `generation` read-only at load; each decision compares it with the
//! generation of the policy in use — one atomic load — and only when they differ
//! reads and decodes the new image, on the cold path, while other threads go on
//! deciding with the old one. An image that cannot be read or decoded is refused like
//! a broken policy: at start-up the process fails closed; later, it keeps the policy it
//! has and says so once per generation.
//!
//! Trust, as for the policy file: the run directory must be owned by root or by this
//! process's user and not writable by others (a sticky directory is fine); the
//! publication directory and its files must be owned by root, this process's user or
//! the policy file's owner, and writable by no one else. Nothing is followed through a
//! symlink.

use crate::sys::shared::{self, Retired, Swap};
use sockexit_engine::{
    decode_image_in_place, image_path, DynContent, DynSets, Policy, DYN_REV_OFFSET, GEN_FILE_BYTES,
    GEN_MAGIC, GEN_OFFSET, MAX_DYNAMIC_BYTES, MAX_IMAGE_BYTES,
};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Mutex;

/// Where publications live unless `SOCKEXIT_RUN_DIR` says otherwise.
pub const RUN_DIR: &str = "/run/sockexit";

/// A published policy in use.
pub struct Current {
    pub generation: u64,
    pub digest: u64,
    /// Borrows the compiled arrays of `image`: declared first, so dropped first.
    pub policy: Policy,
    _image: shared::Mapped,
}

/// The entries of the dynamic sets in use, and the revision word they were read for.
pub struct Dynamic {
    word: u64,
    sets: DynSets,
}

/// The live state of a published policy path.
pub struct Live {
    dir: PathBuf,
    generation: &'static AtomicU64,
    current: Swap<Current>,
    /// The dynamic-set revision `sockexit set` bumps (same page as the generation).
    dyn_rev: &'static AtomicU64,
    dynamic: Swap<Dynamic>,
    /// A revision whose entries could not be read: not retried at every call.
    dyn_failed: AtomicU64,
    dyn_retired: Mutex<Vec<Retired<Dynamic>>>,
    /// A generation whose image could not be loaded: not retried at every call.
    failed: AtomicU64,
    /// The pid of the thread's process that is reloading (0: nobody). A child of
    /// `fork()` takes over a lock its parent held.
    lock: AtomicI32,
    retired: Mutex<Vec<Retired<Current>>>,
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

impl Live {
    /// The live state for the policy at `canonical`, or `None` when that path was never
    /// applied (today's behaviour: the file is read). `Err` when it was applied but the
    /// publication cannot be trusted or read: the caller fails closed.
    pub fn open(canonical: &Path, run_dir: &Path) -> Option<Result<Live, String>> {
        let dir = sockexit_engine::publication_dir(run_dir, canonical);
        let gen_path = dir.join("generation");
        let gen_meta = std::fs::symlink_metadata(&gen_path).ok()?;
        Some(Self::open_published(
            canonical, run_dir, dir, &gen_path, gen_meta,
        ))
    }

    fn open_published(
        canonical: &Path,
        run_dir: &Path,
        dir: PathBuf,
        gen_path: &Path,
        gen_meta: std::fs::Metadata,
    ) -> Result<Live, String> {
        let euid = crate::sys::euid();
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
        let words = shared::map_words(&f, GEN_FILE_BYTES)
            .ok_or_else(|| format!("{}: cannot map it", gen_path.display()))?;
        let live = Live {
            dir,
            generation: &words[GEN_OFFSET / 8],
            current: Swap::empty(),
            dyn_rev: &words[DYN_REV_OFFSET / 8],
            dynamic: Swap::empty(),
            dyn_failed: AtomicU64::new(u64::MAX),
            dyn_retired: Mutex::new(Vec::new()),
            failed: AtomicU64::new(0),
            lock: AtomicI32::new(0),
            retired: Mutex::new(Vec::new()),
            trusted: uids,
        };
        let g = live.generation.load(Ordering::Acquire);
        let cur = live.read(g)?;
        let has_dynamic = !cur.policy.dynamic_sets().is_empty();
        let _ = live.current.replace(Box::new(cur));
        if has_dynamic {
            // Read now, so no call waits for (or races) the first read. On failure the
            // rules naming dynamic sets fail closed until a readable revision comes.
            let w = live.dyn_rev.load(Ordering::Acquire);
            live.install_dynamic(w);
        }
        Ok(live)
    }

    /// The dynamic sets' entries to decide with: one atomic load when nothing changed.
    /// `None` when they cannot be read: the rules that name them fail closed.
    #[inline]
    pub fn dynamic(&self) -> Option<&'static DynSets> {
        let w = self.dyn_rev.load(Ordering::Acquire);
        match self.dynamic.load() {
            Some(d) if d.word == w => Some(&d.sets),
            d => self.reload_dynamic(w, d),
        }
    }

    #[cold]
    #[inline(never)]
    fn reload_dynamic(&self, w: u64, old: Option<&'static Dynamic>) -> Option<&'static DynSets> {
        let old_sets = old.map(|d| &d.sets);
        if self.dyn_failed.load(Ordering::Relaxed) == w || !self.try_lock() {
            return old_sets;
        }
        let out = if self.install_dynamic(w) {
            self.dynamic.load().map(|d| &d.sets)
        } else {
            old_sets
        };
        self.lock.store(0, Ordering::Release);
        out
    }

    /// Read revision `w`'s entries and publish them; false (and one warning per
    /// revision) when they cannot be read.
    fn install_dynamic(&self, w: u64) -> bool {
        match self.read_dynamic(w) {
            Ok(d) => {
                log::debug!(
                    "dynamic sets revision {w} loaded from {}",
                    self.dir.display()
                );
                if let Some(r) = self.dynamic.replace(Box::new(d)) {
                    if let Ok(mut list) = self.dyn_retired.try_lock() {
                        shared::reclaim(&mut list);
                        list.push(r);
                    }
                }
                true
            }
            Err(e) => {
                self.dyn_failed.store(w, Ordering::Relaxed);
                log::warn!(
                    "dynamic sets revision {w} cannot be loaded ({e}); {}",
                    if self.dynamic.load().is_some() {
                        "keeping the entries in use"
                    } else {
                        "rules naming dynamic sets fail closed"
                    }
                );
                false
            }
        }
    }

    /// The `dynamic` file as of revision `w` (absent before the first `sockexit set`).
    fn read_dynamic(&self, w: u64) -> Result<Dynamic, String> {
        let p = self.dir.join("dynamic");
        let f = match open_nofollow(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && w == 0 => {
                return Ok(Dynamic {
                    word: 0,
                    sets: DynSets::empty(0),
                })
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
        Ok(Dynamic {
            word: w,
            sets: DynSets::build(&c),
        })
    }

    /// Read and decode generation `g`'s image.
    fn read(&self, g: u64) -> Result<Current, String> {
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
        // Mapped, not read: the big arrays stay in the page cache, shared by every
        // process under the policy, and are used in place.
        let image = shared::Mapped::new(&f, m.len() as usize)
            .ok_or_else(|| format!("{}: cannot map it (empty?)", p.display()))?;
        let (info, policy) = decode_image_in_place(image.bytes(), &p).map_err(|e| e.to_string())?;
        if info.generation != g {
            return Err(format!(
                "{}: holds generation {}",
                p.display(),
                info.generation
            ));
        }
        Ok(Current {
            generation: g,
            digest: info.digest,
            policy,
            _image: image,
        })
    }

    /// The published policy to decide with: one atomic load when nothing changed.
    #[inline]
    pub fn current(&self) -> Option<&'static Current> {
        let g = self.generation.load(Ordering::Acquire);
        match self.current.load() {
            Some(c) if c.generation == g => Some(c),
            c => self.reload(g, c),
        }
    }

    /// A new generation was published: load it unless another thread is, or it failed
    /// before; meanwhile (and on failure) the policy in use stays.
    #[cold]
    #[inline(never)]
    fn reload(&self, g: u64, old: Option<&'static Current>) -> Option<&'static Current> {
        if self.failed.load(Ordering::Relaxed) == g || !self.try_lock() {
            return old;
        }
        let out = match self.read(g) {
            Ok(c) => {
                log::debug!(
                    "policy generation {g} (digest {:016x}) loaded from {}",
                    c.digest,
                    self.dir.display()
                );
                if !c.policy.dynamic_sets().is_empty() && self.dynamic.load().is_none() {
                    self.install_dynamic(self.dyn_rev.load(Ordering::Acquire));
                }
                if let Some(r) = self.current.replace(Box::new(c)) {
                    if let Ok(mut list) = self.retired.try_lock() {
                        shared::reclaim(&mut list);
                        list.push(r);
                    }
                    // Else (a lock inherited held across fork): leaked, never freed early.
                }
                self.current.load()
            }
            Err(e) => {
                self.failed.store(g, Ordering::Relaxed);
                log::warn!(
                    "published policy generation {g} cannot be loaded ({e}); keeping generation {}",
                    old.map(|c| c.generation.to_string())
                        .unwrap_or_else(|| "none: failing closed".into())
                );
                old
            }
        };
        self.lock.store(0, Ordering::Release);
        out
    }

    fn try_lock(&self) -> bool {
        let me = shared::pid();
        match self
            .lock
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => true,
            // Held by our parent at fork(): nobody in this process will release it.
            Err(h) if h != me => self
                .lock
                .compare_exchange(h, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok(),
            Err(_) => false,
        }
    }
}
