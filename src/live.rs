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
//! Trust (who may own the run directory, the publication and its files) is checked by
//! the engine's `Publication`, which the supervisor uses too.

use crate::sys::shared::{self, Retired, Swap};
use sockexit_engine::{
    decode_image_in_place, DynSets, Policy, Publication, DYN_REV_OFFSET, GEN_FILE_BYTES, GEN_OFFSET,
};
use std::path::Path;
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
    publication: Publication,
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
}

impl Live {
    /// The live state for the policy at `canonical`, or `None` when that path was never
    /// applied (today's behaviour: the file is read). `Err` when it was applied but the
    /// publication cannot be trusted or read: the caller fails closed. The trust checks
    /// and the image decode are the engine's ([`Publication`]), shared with the
    /// supervisor; the mapping is ours.
    pub fn open(canonical: &Path, run_dir: &Path) -> Option<Result<Live, String>> {
        let (publication, f) = match Publication::open(canonical, run_dir)? {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        Some(Self::mapped(publication, &f))
    }

    fn mapped(publication: Publication, f: &std::fs::File) -> Result<Live, String> {
        let words = shared::map_words(f, GEN_FILE_BYTES)
            .ok_or_else(|| format!("{}/generation: cannot map it", publication.dir().display()))?;
        let live = Live {
            publication,
            generation: &words[GEN_OFFSET / 8],
            current: Swap::empty(),
            dyn_rev: &words[DYN_REV_OFFSET / 8],
            dynamic: Swap::empty(),
            dyn_failed: AtomicU64::new(u64::MAX),
            dyn_retired: Mutex::new(Vec::new()),
            failed: AtomicU64::new(0),
            lock: AtomicI32::new(0),
            retired: Mutex::new(Vec::new()),
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

    /// Generation `g`'s image, mapped (not read: the big arrays stay in the page
    /// cache, shared by every process under the policy, and are used in place) and
    /// decoded.
    fn read(&self, g: u64) -> Result<Current, String> {
        let (f, p, len) = self.publication.open_image(g)?;
        let image = shared::Mapped::new(&f, len)
            .ok_or_else(|| format!("{}: cannot map it (empty?)", p.display()))?;
        let (info, policy) = decode_image_in_place(image.bytes(), &p).map_err(|e| e.to_string())?;
        sockexit_engine::check_generation(&p, info.generation, g)?;
        Ok(Current {
            generation: g,
            digest: info.digest,
            policy,
            _image: image,
        })
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
        match self.publication.read_dynamic(w) {
            Ok(sets) => {
                log::debug!(
                    "dynamic sets revision {w} loaded from {}",
                    self.publication.dir().display()
                );
                if let Some(r) = self.dynamic.replace(Box::new(Dynamic { word: w, sets })) {
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
                    self.publication.dir().display()
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
