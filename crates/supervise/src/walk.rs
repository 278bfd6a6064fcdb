//! Accept-by-filter mode, live policy: when a new generation is in force, attach its
//! filter to every listener of the supervised tree. The supervisor keeps no
//! duplicates of listeners (that would keep a closed listener bound: `EADDRINUSE`
//! at the program's next `bind`); it walks the tree instead (`sockexit` is a
//! subreaper, so daemons that fork twice stay in it): every process whose parent
//! chain leads to us, every thread's fd table, `socket:[INO]` links whose inode is a
//! recorded listener, each taken once with `pidfd_getfd`. A filter is a property of
//! the socket, so one holder is enough, whoever else shares it (forked workers).
//!
//! A recorded listener not found: if it no longer listens (`/proc/net/tcp{,6}`) it
//! was closed and is forgotten; otherwise it is in flight (an SCM_RIGHTS message) or
//! held outside the tree, and is looked for again at every tick (50 ms) for
//! [`MISSING_FOR`], then reported once with the generation its filter has.

use crate::byfilter::{ByFilter, Key, Registry};
use crate::live::Current;
use crate::notify::Sup;
use crate::sys;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the published generation is looked at.
pub const TICK: Duration = Duration::from_millis(50);
/// How long a listening but unfound listener is looked for before it is reported.
pub const MISSING_FOR: Duration = Duration::from_secs(10);

/// The watcher: follow the published generation and re-attach on each change.
pub fn watch(s: Arc<Sup>, bf: Arc<ByFilter>) {
    let mut reported: HashSet<Key> = HashSet::new();
    loop {
        std::thread::sleep(TICK);
        let cur = s.source.current();
        let mut reg = bf.registry.lock().unwrap_or_else(|e| e.into_inner());
        if reg.applied != cur.generation {
            walk(&bf, &mut reg, &cur, None);
            reg.applied = cur.generation;
        } else if !reg.missing.is_empty() {
            let only: HashSet<Key> = reg.missing.keys().copied().collect();
            walk(&bf, &mut reg, &cur, Some(&only));
        }
        let now = Instant::now();
        for (k, (since, g)) in &reg.missing {
            if now.duration_since(*since) >= MISSING_FOR && reported.insert(*k) {
                (bf.say)(&format!(
                    "listener socket:[{}] still listens but no process of the supervised tree \
                     holds it (passed outside the tree?): its filter stays that of {}",
                    k.1,
                    g.map_or("the policy at start".into(), |g| format!("generation {g}"))
                ));
            }
        }
    }
}

/// Attach `cur`'s filter to the recorded listeners found in the tree (all, or those
/// in `only`). Those not found are forgotten when closed, else marked missing.
fn walk(bf: &ByFilter, reg: &mut Registry, cur: &Current, only: Option<&HashSet<Key>>) {
    let want: HashMap<u64, Key> = reg
        .listeners
        .iter()
        .filter(|k| only.is_none_or(|o| o.contains(k)))
        .map(|k| (k.1, *k))
        .collect();
    if want.is_empty() {
        return;
    }
    let mut done: HashSet<Key> = HashSet::new();
    for tgid in tree() {
        for tid in numeric(&format!("/proc/{tgid}/task")) {
            let dir = format!("/proc/{tgid}/task/{tid}/fd");
            for fd in numeric(&dir) {
                let Some(ino) = socket_inode(&format!("{dir}/{fd}")) else {
                    continue;
                };
                let Some(k) = want.get(&ino) else { continue };
                if done.contains(k) {
                    continue;
                }
                if let Some(d) = take(tid, tgid, fd as i32) {
                    if sys::inode(&d) == Some(*k) {
                        if let Err(e) = bf.attach(cur, &d) {
                            (bf.say)(&format!(
                                "cannot attach generation {:?}'s filter to listener \
                                 socket:[{ino}]: {e}",
                                cur.generation
                            ));
                        }
                        done.insert(*k);
                    }
                }
            }
        }
    }
    let listening = listening_inodes();
    for k in want.values() {
        if done.contains(k) {
            reg.missing.remove(k);
        } else if !listening.contains(&k.1) {
            reg.listeners.remove(k);
            reg.missing.remove(k);
        } else {
            let had = reg.applied;
            reg.missing.entry(*k).or_insert((Instant::now(), had));
        }
    }
}

fn take(tid: u32, tgid: u32, fd: i32) -> Option<std::os::fd::OwnedFd> {
    let pidfd = sys::pidfd_open(tid, || tgid).ok()?;
    sys::pidfd_getfd(&pidfd, fd).ok()
}

/// Numeric entries of a /proc directory.
fn numeric(dir: &str) -> Vec<u32> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn socket_inode(link: &str) -> Option<u64> {
    let t = std::fs::read_link(link).ok()?;
    let t = t.to_str()?;
    t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Every process whose parent chain leads to this one (not this one itself).
fn tree() -> Vec<u32> {
    let me = std::process::id();
    let mut kids: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in numeric("/proc") {
        let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = st
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
        if let Some(pp) = ppid {
            kids.entry(pp).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut todo = kids.remove(&me).unwrap_or_default();
    while let Some(p) = todo.pop() {
        out.push(p);
        todo.extend(kids.remove(&p).unwrap_or_default());
    }
    out
}

/// Inodes of the TCP sockets in LISTEN state in our network namespace.
fn listening_inodes() -> HashSet<u64> {
    let mut out = HashSet::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(t) = std::fs::read_to_string(f) else {
            continue;
        };
        for l in t.lines().skip(1) {
            let c: Vec<&str> = l.split_whitespace().collect();
            if c.len() > 9 && c[3] == "0A" {
                out.extend(c[9].parse::<u64>().ok());
            }
        }
    }
    out
}
