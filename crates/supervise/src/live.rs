//! The policy the supervisor decides with, live as in the preload: once the policy
//! path has been applied (`sockexit run` applies it before it starts CMD), each judged
//! call compares the published generation word (a shared read-only mapping of the
//! `generation` page, one atomic load) with the generation in use, and on a change
//! reads and decodes the new image — the engine's [`Publication`], the same trust
//! checks and decoder as the preload — and switches. An image that cannot be loaded
//! keeps the last good policy and is reported once per generation. A path that was
//! never applied (the run directory is not writable, say) keeps the policy read at
//! start, as a preloaded process does.

use sockexit_engine::{DynSets, Policy, Publication, DYN_REV_OFFSET, GEN_FILE_BYTES, GEN_OFFSET};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A policy in use, and the published generation it is (`None`: read from the file).
pub struct Current {
    /// The published generation, shown in audit lines as `"policy":G`.
    pub generation: Option<u64>,
    /// The compiled policy.
    pub policy: Policy,
}

/// Where the policy comes from.
pub struct Source {
    current: Mutex<Arc<Current>>,
    live: Option<Live>,
}

struct Live {
    publication: Publication,
    word: &'static AtomicU64,
    /// The dynamic-set revision `sockexit set` bumps, and the entries read for one
    /// (`None`: unreadable, so rules naming dynamic sets fail closed).
    dyn_word: &'static AtomicU64,
    dynamic: Mutex<(u64, Option<Arc<DynSets>>)>,
    /// A generation whose image could not be loaded: reported once, not retried.
    failed: AtomicU64,
    /// Held by the one thread that reloads; the others go on with the policy in use.
    reloading: Mutex<()>,
    warn: Box<dyn Fn(&str) + Send + Sync>,
}

impl Source {
    /// A policy that never changes (the path was never applied).
    pub fn fixed(policy: Policy) -> Source {
        Source {
            current: Mutex::new(Arc::new(Current {
                generation: None,
                policy,
            })),
            live: None,
        }
    }

    /// The published policy of `canonical` under `run_dir` when that path was applied,
    /// else `file` (read at start). `Err` when it was applied but the publication or
    /// its current image cannot be trusted or loaded: nothing is started, as a
    /// preloaded process fails closed at start-up. `warn` reports a later image that
    /// cannot be loaded.
    pub fn open(
        canonical: &Path,
        run_dir: &Path,
        file: Policy,
        warn: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Source, String> {
        let (publication, f) = match Publication::open(canonical, run_dir) {
            None => return Ok(Source::fixed(file)),
            Some(r) => r.map_err(|e| format!("published policy: {e}"))?,
        };
        let words = crate::sys::map_words(&f, GEN_FILE_BYTES)
            .ok_or_else(|| format!("{}/generation: cannot map it", publication.dir().display()))?;
        let (word, dyn_word) = (&words[GEN_OFFSET / 8], &words[DYN_REV_OFFSET / 8]);
        let g = word.load(Ordering::Acquire);
        let first = publication
            .read(g)
            .map_err(|e| format!("published policy: {e}"))?;
        Ok(Source {
            current: Mutex::new(Arc::new(Current {
                generation: Some(g),
                policy: first.policy,
            })),
            live: Some(Live {
                publication,
                word,
                dyn_word,
                // Read at the first judged call that needs it.
                dynamic: Mutex::new((u64::MAX, None)),
                failed: AtomicU64::new(0),
                reloading: Mutex::new(()),
                warn,
            }),
        })
    }

    /// The dynamic sets' entries in force: empty for a path that was never applied
    /// (nothing can have been added), re-read when the set revision changed; `None`
    /// when they cannot be read (reported once per revision; the rules naming them
    /// then fail closed).
    pub fn dynamic(&self) -> Option<Arc<DynSets>> {
        let Some(live) = &self.live else {
            return Some(Arc::new(DynSets::empty(0)));
        };
        let w = live.dyn_word.load(Ordering::Acquire);
        let mut held = live.dynamic.lock().unwrap_or_else(|e| e.into_inner());
        if held.0 != w {
            let sets = match live.publication.read_dynamic(w) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    (live.warn)(&format!(
                        "dynamic sets revision {w} cannot be loaded ({e}); {}",
                        if held.1.is_some() {
                            "keeping the entries in use"
                        } else {
                            "rules naming dynamic sets fail closed"
                        }
                    ));
                    held.1.clone()
                }
            };
            *held = (w, sets);
        }
        held.1.clone()
    }

    fn in_use(&self) -> Arc<Current> {
        Arc::clone(&self.current.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The policy to judge a call with: the one in use unless a new generation was
    /// published, which is then loaded first (by one thread; the others meanwhile
    /// judge with the policy in use).
    pub fn current(&self) -> Arc<Current> {
        let cur = self.in_use();
        let Some(live) = &self.live else { return cur };
        let g = live.word.load(Ordering::Acquire);
        if cur.generation == Some(g) || live.failed.load(Ordering::Relaxed) == g {
            return cur;
        }
        self.reload(live, g, cur)
    }

    #[cold]
    fn reload(&self, live: &Live, g: u64, cur: Arc<Current>) -> Arc<Current> {
        let Ok(_held) = live.reloading.try_lock() else {
            return cur;
        };
        // Another thread may have loaded it while we waited for the lock.
        let cur = self.in_use();
        if cur.generation == Some(g) || live.failed.load(Ordering::Relaxed) == g {
            return cur;
        }
        match live.publication.read(g) {
            Ok(new) => {
                let new = Arc::new(Current {
                    generation: Some(g),
                    policy: new.policy,
                });
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&new);
                new
            }
            Err(e) => {
                live.failed.store(g, Ordering::Relaxed);
                (live.warn)(&format!(
                    "published policy generation {g} cannot be loaded ({e}); keeping generation {}",
                    cur.generation.unwrap_or(0)
                ));
                cur
            }
        }
    }
}
