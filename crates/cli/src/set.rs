//! `sockexit set add|del|list`: change a dynamic set (`sets: { NAME: { dynamic: true } }`)
//! of a published policy. Every process running under the policy decides with the
//! change from its next call that looks at the set; nothing is recompiled.
//!
//! The entries live in the publication directory's `dynamic` file (format in the
//! engine's `dynset` module), rewritten under the directory's lock and renamed into
//! place; then the set revision (offset `DYN_REV_OFFSET` of the generation page) is
//! bumped with one atomic store, which the processes compare before they look a set up.

use crate::apply::{generation, lock, publication, read_word, store_word};
use crate::out::{fail, say, write_atomically};
use sockexit_engine::{
    decode_image, image_path, unix_now, DynContent, DynSets, IpNet, DYN_REV_OFFSET,
    MAX_DYNAMIC_BYTES,
};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Change or list a dynamic set.
#[derive(clap::Args)]
#[command(
    about = "Add, remove or list the addresses of a dynamic set of a published policy",
    long_about = "Change a set declared `{ dynamic: true }` in a published policy (see `sockexit \
        apply`). Every process running under the policy uses the change from its next call \
        that looks at the set, without a restart and without recompiling the policy. An \
        entry added with --ttl stops matching when it expires, in every process.",
    after_help = "Examples:\n  sockexit set add /etc/sockexit/policy.yaml banned 203.0.113.7 --ttl 1h\n  \
        sockexit set del /etc/sockexit/policy.yaml banned 203.0.113.7\n  \
        sockexit set list /etc/sockexit/policy.yaml banned"
)]
pub struct Args {
    #[command(subcommand)]
    op: Op,
}

#[derive(clap::Subcommand)]
enum Op {
    /// Add addresses or prefixes (an existing entry gets the new TTL)
    Add {
        /// The policy file (as applied)
        policy: PathBuf,
        /// The dynamic set
        set: String,
        /// Addresses or CIDR prefixes
        #[arg(required = true, value_name = "ADDR|CIDR")]
        addrs: Vec<String>,
        /// Remove the entries after this long: 90s, 10m, 1h, 7d, 2w, or seconds
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
    },
    /// Remove entries (each exactly as it was added)
    Del {
        /// The policy file (as applied)
        policy: PathBuf,
        /// The dynamic set
        set: String,
        /// Addresses or CIDR prefixes
        #[arg(required = true, value_name = "ADDR|CIDR")]
        addrs: Vec<String>,
    },
    /// List the entries that have not expired, with their time left
    List {
        /// The policy file (as applied)
        policy: PathBuf,
        /// The dynamic set
        set: String,
    },
}

/// `90s`, `10m`, `1h`, `7d`, `2w`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => 0,
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 && mult > 0 => n
            .checked_mul(mult)
            .ok_or_else(|| format!("--ttl {s}: too long")),
        _ => Err(format!(
            "--ttl {s}: not a duration (write e.g. 90s, 10m, 1h, 7d, 2w, or seconds)"
        )),
    }
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    t.parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is not an IP address or CIDR prefix"))
}

/// The publication directory of `policy`, when the set is a dynamic set of the
/// generation that runs there.
fn published_set(policy: &Path, set: &str) -> Result<PathBuf, String> {
    let dir = publication(policy).ok_or_else(|| format!("{}: no such file", policy.display()))?;
    let g = generation(&dir);
    if g == 0 {
        return Err(format!(
            "{} was never applied: run `sockexit apply {}` first (processes look dynamic sets \
             up only under a published policy)",
            policy.display(),
            policy.display()
        ));
    }
    let img = image_path(&dir, g);
    let bytes = std::fs::read(&img).map_err(|e| format!("{}: {e}", img.display()))?;
    let (_, p) = decode_image(&bytes, &img).map_err(|e| e.to_string())?;
    if !p.dynamic_sets().iter().any(|s| s == set) {
        let known = p.dynamic_sets().join(", ");
        return Err(format!(
            "`{set}` is not a dynamic set of {} as published (generation {g}); its dynamic sets: {}{}",
            policy.display(),
            if known.is_empty() { "none" } else { &known },
            " (declare it `{ dynamic: true }` and apply the policy)"
        ));
    }
    Ok(dir)
}

/// The entries as `dir` holds them now (none yet: empty).
fn read_content(dir: &Path) -> Result<DynContent, String> {
    let path = dir.join("dynamic");
    let mut bytes = Vec::new();
    match std::fs::File::open(&path) {
        Ok(f) => f
            .take(MAX_DYNAMIC_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DynContent::default()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if bytes.len() > MAX_DYNAMIC_BYTES {
        return Err(format!(
            "{}: larger than {MAX_DYNAMIC_BYTES} bytes",
            path.display()
        ));
    }
    DynContent::decode(&bytes, &path).map_err(|e| {
        format!(
            "{e} (remove {} to start the dynamic sets empty)",
            path.display()
        )
    })
}

/// The dynamic sets' entries as the processes under `policy` see them: empty when the
/// policy was never applied (nothing can have been added), `None` when the published
/// entries cannot be read (the library then fails closed on the rules that name them).
pub fn current(policy: &Path) -> Option<std::sync::Arc<DynSets>> {
    let Some(dir) = publication(policy).filter(|d| generation(d) > 0) else {
        return Some(std::sync::Arc::new(DynSets::empty(0)));
    };
    let c = read_content(&dir).ok()?;
    Some(std::sync::Arc::new(DynSets::build(&c)))
}

/// One line per dynamic set of `names` for `check` and `status`: how many entries
/// are in force for the processes under `policy`.
pub fn notes(policy: &Path, names: &[String]) -> Vec<String> {
    if names.is_empty() {
        return Vec::new();
    }
    let Some(dir) = publication(policy).filter(|d| generation(d) > 0) else {
        return vec![format!(
            "dynamic sets {}: empty until the policy is applied (`sockexit apply`), then \
             changed with `sockexit set add|del`",
            names.join(", ")
        )];
    };
    match read_content(&dir) {
        Ok(c) => {
            let now = unix_now();
            names
                .iter()
                .map(|n| {
                    let live = c.sets.get(n).map_or(0, |v| {
                        v.iter()
                            .filter(|e| e.expires.is_none_or(|x| x > now))
                            .count()
                    });
                    format!(
                        "dynamic set {n}: {live} entr{} in force (revision {})",
                        if live == 1 { "y" } else { "ies" },
                        c.revision
                    )
                })
                .collect()
        }
        Err(e) => vec![format!(
            "dynamic sets: {e}; the rules that name them fail closed"
        )],
    }
}

/// Change the entries of `set` under the lock, write them, bump the revision.
fn change(
    policy: &Path,
    set: &str,
    f: impl FnOnce(&mut DynContent, u64) -> Result<String, String>,
) -> Result<String, String> {
    let dir = published_set(policy, set)?;
    let _lock = lock(&dir)?;
    let mut c = read_content(&dir)?;
    let now = unix_now();
    let what = f(&mut c, now)?;
    c.prune(now);
    c.revision = c.revision.max(read_word(&dir, DYN_REV_OFFSET)) + 1;
    write_atomically(&dir.join("dynamic"), &c.encode())?;
    store_word(&dir, DYN_REV_OFFSET, c.revision)?;
    Ok(format!("{what}; revision {}", c.revision))
}

fn left(expires: Option<u64>, now: u64) -> String {
    match expires {
        None => "never expires".into(),
        Some(e) => {
            let s = e.saturating_sub(now);
            format!("expires in {}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
        }
    }
}

pub fn main(a: Args) -> ExitCode {
    let out = match a.op {
        Op::Add {
            policy,
            set,
            addrs,
            ttl,
        } => (|| {
            let ttl = ttl.as_deref().map(parse_duration).transpose()?;
            let nets = addrs
                .iter()
                .map(|s| parse_net(s))
                .collect::<Result<Vec<_>, _>>()?;
            change(&policy, &set, |c, now| {
                let exp = ttl.map(|t| now.saturating_add(t));
                for n in &nets {
                    c.add(&set, *n, exp, now);
                }
                let names: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
                Ok(format!(
                    "added to {set}: {} ({})",
                    names.join(", "),
                    left(exp, now)
                ))
            })
        })(),
        Op::Del { policy, set, addrs } => (|| {
            let nets = addrs
                .iter()
                .map(|s| parse_net(s))
                .collect::<Result<Vec<_>, _>>()?;
            change(&policy, &set, |c, now| {
                let missing: Vec<String> = nets
                    .iter()
                    .filter(|n| !c.del(&set, **n, now))
                    .map(|n| n.to_string())
                    .collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "not in {set}: {} (remove an entry exactly as it was added; `sockexit set list` shows them)",
                        missing.join(", ")
                    ));
                }
                let names: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
                Ok(format!("removed from {set}: {}", names.join(", ")))
            })
        })(),
        Op::List { policy, set } => (|| {
            let dir = published_set(&policy, &set)?;
            let c = read_content(&dir)?;
            let now = unix_now();
            for e in c.sets.get(&set).into_iter().flatten() {
                if e.expires.is_none_or(|x| x > now) {
                    say(format_args!("{}\t{}", e.net, left(e.expires, now)));
                }
            }
            Ok(String::new())
        })(),
    };
    match out {
        Ok(m) if m.is_empty() => ExitCode::SUCCESS,
        Ok(m) => {
            say(m);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("2w"), Ok(1_209_600));
        for bad in ["", "0", "1y", "h", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
