//! `sockexit apply` and `sockexit status`: publish a policy to the processes running
//! under its path, and say what is published.
//!
//! Layout (`crate::live` in the library reads it): `$SOCKEXIT_RUN_DIR` (default
//! `/run/sockexit`) / one directory per canonical policy path / `generation` (one page;
//! the u64 at offset 16 is bumped with an atomic store through a shared mapping, which
//! every process has mapped read-only) and `G.image` per generation, plus
//! `published` (what `status` shows). The image is written and renamed into place
//! before the generation changes, so a process that sees generation G finds G.image.

use crate::check::warning_line;
use crate::out::{fail, say, write_atomically};
use sockexit_engine::{
    image_path, publication_dir, FilesResolver, LoadOptions, Permissions, Snapshot, GEN_FILE_BYTES,
    GEN_MAGIC, GEN_OFFSET,
};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

/// Publish POLICY to every process running under its path.
#[derive(clap::Args)]
#[command(
    about = "Validate a policy and, only if it is valid, publish it to every process running under its path",
    long_about = "Load and lint the policy exactly as `check` does; if and only if it is valid, \
        publish it as a new generation: every process running under that policy path (every \
        worker, backend, forked child and thread) decides with it from its next call, without \
        a restart or a signal. A broken policy is never published: everything keeps the last \
        published policy. Once a path has been applied, processes started later use the \
        published policy too, until the next successful apply; an edit that was never applied \
        changes nothing."
)]
pub struct Args {
    /// Policy file [default: $SOCKEXIT_POLICY, else /etc/sockexit/policy.yaml]
    #[arg(value_name = "POLICY")]
    policy: Option<PathBuf>,
    /// Say nothing on success
    #[arg(long, short)]
    quiet: bool,
}

/// Show what is published for POLICY.
#[derive(clap::Args)]
#[command(
    about = "Show the published generation of a policy, and whether the file differs from it"
)]
pub struct StatusArgs {
    /// Policy file [default: $SOCKEXIT_POLICY, else /etc/sockexit/policy.yaml]
    #[arg(value_name = "POLICY")]
    policy: Option<PathBuf>,
}

/// `$SOCKEXIT_RUN_DIR`, else `/run/sockexit`: where publications live, as the library
/// looks for them.
pub fn run_dir() -> PathBuf {
    std::env::var_os("SOCKEXIT_RUN_DIR")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/sockexit"))
}

/// The publication directory of `policy`, `None` when the file does not exist.
pub fn publication(policy: &Path) -> Option<PathBuf> {
    let canonical = fs::canonicalize(policy).ok()?;
    Some(publication_dir(&run_dir(), &canonical))
}

/// The published generation in `dir`, 0 when none.
pub fn generation(dir: &Path) -> u64 {
    read_word(dir, GEN_OFFSET)
}

/// What `publish` did.
pub struct Published {
    pub generation: u64,
    pub digest: u64,
    pub dir: PathBuf,
}

/// Load POLICY as `check` does and publish it. `Err` is the message to print.
pub fn publish(path: &Path, warn: bool) -> Result<Published, String> {
    let opts = LoadOptions {
        resolver: &FilesResolver::default(),
        permissions: Permissions::for_process(),
    };
    let snap = Snapshot::read_with(path, &opts).map_err(|e| e.to_string())?;
    let policy = snap.compile().map_err(|e| e.to_string())?;
    if warn {
        for w in policy.warnings() {
            eprintln!("warning: {}", warning_line(path, w));
        }
    }
    let run = run_dir();
    let canonical = fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = publication_dir(&run, &canonical);
    for d in [&run, &dir] {
        if !d.is_dir() {
            fs::DirBuilder::new()
                .mode(0o755)
                .create(d)
                .map_err(|e| format!("cannot create {}: {e} (set SOCKEXIT_RUN_DIR to a directory you own, or apply as root)", d.display()))?;
        }
    }
    let _lock = lock(&dir)?;
    let g = generation(&dir) + 1;
    let img = snap.to_image(g, &policy);
    let digest = snap.digest();
    write_atomically(&image_path(&dir, g), &img)?;
    let note = format!(
        "path {}\ngeneration {g}\ndigest {digest:016x}\napplied {}\n",
        canonical.display(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    write_atomically(&dir.join("published"), note.as_bytes())?;
    set_generation(&dir, g)?;
    // Keep the previous image for processes reading it right now; older ones go.
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name();
            let n = name.to_string_lossy();
            if let Some(old) = n.strip_suffix(".image").and_then(|s| s.parse::<u64>().ok()) {
                if old + 1 < g {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
    Ok(Published {
        generation: g,
        digest,
        dir,
    })
}

/// Bump the generation: create the file the first time, else one atomic store
/// through a shared mapping (what the processes read with one atomic load).
fn set_generation(dir: &Path, g: u64) -> Result<(), String> {
    let path = dir.join("generation");
    if !path.exists() {
        let mut page = vec![0u8; GEN_FILE_BYTES];
        page[..16].copy_from_slice(GEN_MAGIC);
        page[GEN_OFFSET..GEN_OFFSET + 8].copy_from_slice(&g.to_le_bytes());
        return write_atomically(&path, &page);
    }
    store_word(dir, GEN_OFFSET, g)
}

/// One atomic store of `v` at `offset` of the existing generation page, through a
/// shared mapping: processes read that word with one atomic load.
pub fn store_word(dir: &Path, offset: usize, v: u64) -> Result<(), String> {
    let path = dir.join("generation");
    let err = |e: std::io::Error| format!("cannot publish {}: {e}", path.display());
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(err)?;
    let _ = f.set_permissions(fs::Permissions::from_mode(0o644));
    if f.metadata().map_err(err)?.len() != GEN_FILE_BYTES as u64
        || !offset.is_multiple_of(8)
        || offset + 8 > GEN_FILE_BYTES
    {
        return Err(format!("{}: not a generation file", path.display()));
    }
    // SAFETY: a fresh shared read-write mapping of the whole one-page file, checked for
    // MAP_FAILED, unmapped below; the store is to an 8-aligned u64 inside it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            GEN_FILE_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(err(std::io::Error::last_os_error()));
        }
        let word = &*((p as *const u8).add(offset) as *const AtomicU64);
        word.store(v, Ordering::Release);
        libc::munmap(p, GEN_FILE_BYTES);
    }
    Ok(())
}

/// The word at `offset` of the generation page, 0 when there is none.
pub fn read_word(dir: &Path, offset: usize) -> u64 {
    let mut b = vec![0u8; offset + 8];
    match File::open(dir.join("generation")).and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) if &b[..16] == GEN_MAGIC => u64::from_le_bytes(b[offset..].try_into().unwrap()),
        _ => 0,
    }
}

/// An exclusive lock on the publication directory, held until dropped: applies and
/// set changes (fail2ban may ban from several threads at once) never interleave.
pub fn lock(dir: &Path) -> Result<File, String> {
    let path = dir.join("lock");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    // SAFETY: flock on an fd we own; blocks until the other holder is done.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!(
            "cannot lock {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(f)
}

pub fn main(a: Args) -> ExitCode {
    let path = crate::policy_path(a.policy);
    match publish(&path, true) {
        Ok(p) => {
            if !a.quiet {
                say(format_args!(
                    "applied: {}: generation {} (digest {:016x}) published in {}",
                    path.display(),
                    p.generation,
                    p.digest,
                    p.dir.display()
                ));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("error: not applied: every process keeps the policy it has");
            ExitCode::from(1)
        }
    }
}

/// One line for `check` and `status`: whether the files differ from what is published.
pub fn differs_note(path: &Path) -> Option<String> {
    let dir = publication(path)?;
    let g = generation(&dir);
    if g == 0 {
        return None;
    }
    let published = fs::read_to_string(dir.join("published")).unwrap_or_default();
    let digest = published
        .lines()
        .find_map(|l| l.strip_prefix("digest "))
        .unwrap_or("")
        .to_owned();
    let opts = LoadOptions {
        resolver: &FilesResolver::default(),
        permissions: Permissions::Warn,
    };
    let now = Snapshot::read_with(path, &opts)
        .map(|s| format!("{:016x}", s.digest()))
        .unwrap_or_default();
    Some(if now == digest {
        format!("published: generation {g} is what runs, and the files are unchanged")
    } else {
        format!(
            "published: generation {g} is what runs; the file differs from what is running \
             (run `sockexit apply {}` to publish it)",
            path.display()
        )
    })
}

pub fn status(a: StatusArgs) -> ExitCode {
    let path = crate::policy_path(a.policy);
    let Some(dir) = publication(&path) else {
        return fail(format_args!("{}: no such file", path.display()));
    };
    let g = generation(&dir);
    if g == 0 {
        say(format_args!(
            "{}: never applied: each process reads the file when it starts",
            path.display()
        ));
        return ExitCode::SUCCESS;
    }
    let published = fs::read_to_string(dir.join("published")).unwrap_or_default();
    let field = |k: &str| {
        published
            .lines()
            .find_map(|l| l.strip_prefix(k).map(str::to_owned))
            .unwrap_or_default()
    };
    say(format_args!(
        "{}: generation {g}, digest {}, applied at {} (unix time), in {}",
        path.display(),
        field("digest "),
        field("applied "),
        dir.display()
    ));
    if let Some(n) = differs_note(&path) {
        say(n);
    }
    let img = image_path(&dir, g);
    if let Some((_, p)) = fs::read(&img)
        .ok()
        .and_then(|b| sockexit_engine::decode_image(&b, &img).ok())
    {
        for n in crate::set::notes(&path, p.dynamic_sets()) {
            say(n);
        }
    }
    ExitCode::SUCCESS
}
