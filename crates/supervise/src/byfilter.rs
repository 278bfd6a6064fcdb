//! Accept-by-filter mode: accepts are not notified; every TCP listener of the
//! supervised tree carries a classic BPF socket filter compiled by the engine
//! (`bpf::compile_conservative`) from the generation in force, which drops the SYNs
//! of refused peers. Chosen once at start ([`choose`]), since the seccomp filter is
//! fixed for the run. The supervisor attaches the filter at every judged `listen`
//! (before performing it on the duplicate), to listeners inherited at start, and
//! again to every listener of the tree when a new generation is published
//! (`crate::walk`). The program cannot change a TCP socket's filter: the seccomp
//! filter sends its `SO_ATTACH_FILTER`, `SO_ATTACH_BPF`, `SO_DETACH_FILTER` and
//! `SO_LOCK_FILTER` here (`crate::sockopt`).

use crate::live::Current;
use crate::notify::{Reply, Sup};
use crate::sys;
use sockexit_engine::bpf::{compile, compile_conservative, Listener, Outcome, SockFilter};
use sockexit_engine::bpf::{op, RET_ACCEPT, RET_DROP};
use sockexit_engine::{AuditEvents, AuditLog, Call, Mode, Policy};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

/// What the command line asks for (`--accept=auto|notify|filter`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Choice {
    /// Accept-by-filter mode when the policy qualifies, else notified accepts.
    Auto,
    /// Every accept is notified.
    Notify,
    /// Accept-by-filter mode, or nothing is started.
    Filter,
}

/// Why accepts under `p` cannot be decided by socket filters alone, or `Ok`.
pub fn qualifies(p: &Policy) -> Result<(), String> {
    enforcing_stealth(p)?;
    let a = p.audit();
    if a.events == AuditEvents::All && a.log != AuditLog::Off {
        return Err("`audit.events: all` asks for a line for every allowed accept".into());
    }
    for r in p.rules().iter().filter(|r| r.applies_to(Call::Accept)) {
        let what = if r.users().is_some() {
            "users"
        } else if r.groups().is_some() {
            "groups"
        } else if r.programs().is_some() {
            "programs"
        } else if !(r.remote_dynamic().is_empty() && r.local_dynamic().is_empty()) {
            "a dynamic set"
        } else {
            continue;
        };
        return Err(format!(
            "rule `{}` looks at {what}, which a socket filter cannot see",
            r.name()
        ));
    }
    for local in ["0.0.0.0:0", "[::]:0"] {
        let c = compile(p, &wildcard(local.parse().expect("address")));
        if let Outcome::TooLarge { .. } = c.outcome {
            return Err(format!("the accept rules need a {}", c.describe()));
        }
        if let Some(why) = c.partial.first() {
            return Err(why.clone());
        }
    }
    Ok(())
}

/// The policy-wide part of [`qualifies`] that a later generation can change (its
/// `audit:` section is not used: the audit target is that of the start).
fn enforcing_stealth(p: &Policy) -> Result<(), String> {
    if !p.stealth() {
        return Err(
            "the policy does not set `stealth: true` (a refused peer's SYN would be \
                    dropped instead of the connection being reset)"
                .into(),
        );
    }
    if p.mode() == Mode::Audit {
        return Err("`mode: audit` must see every accept to log it".into());
    }
    Ok(())
}

fn wildcard(local: SocketAddr) -> Listener<'static> {
    Listener {
        local,
        v6_only: false,
        uid: None,
        gid: None,
        program: None,
    }
}

/// Whether the kernel lets the supervisor attach a socket filter (a hardened kernel
/// may refuse `SO_ATTACH_FILTER` without `CAP_NET_ADMIN`).
pub fn probe_attach() -> Result<(), String> {
    let fd = sys::tcp_socket().map_err(|e| format!("cannot make a test socket ({e})"))?;
    let accept_all = [SockFilter {
        code: op::RET | op::K,
        jt: 0,
        jf: 0,
        k: RET_ACCEPT,
    }];
    sys::attach_filter(&fd, &accept_all)
        .map_err(|e| format!("the kernel refuses SO_ATTACH_FILTER to the supervisor ({e})"))
}

/// What a listener gets under one generation.
pub enum Plan {
    /// This filter.
    Attach(Vec<SockFilter>),
    /// No filter: every peer is allowed.
    Detach,
}

/// The socket key of a listener: `(st_dev, st_ino)`.
pub type Key = (u64, u64);

/// The listeners of the tree and the generation their filters were compiled from.
#[derive(Default)]
pub struct Registry {
    /// Every listener a filter was attached to, by socket inode.
    pub listeners: HashSet<Key>,
    /// Listeners the last walks did not find though they still listen: when
    /// first missed, and the generation their filter has.
    pub missing: HashMap<Key, (std::time::Instant, Option<u64>)>,
    /// The generation every found listener's filter comes from.
    pub applied: Option<u64>,
}

/// The mode's state, shared by the listen handler and the reload walk.
pub struct ByFilter {
    /// Held while a filter is compiled and attached, and across a whole walk: a
    /// listen racing a walk either is recorded before it or uses its generation.
    pub registry: Mutex<Registry>,
    /// Generations already reported as not qualifying.
    reported: Mutex<HashSet<Option<u64>>>,
    /// Diagnostics (stderr of `sockexit`).
    pub say: Box<dyn Fn(&str) + Send + Sync>,
}

impl ByFilter {
    /// The mode's state, with the generation in force at start.
    pub fn new(start: Option<u64>, say: Box<dyn Fn(&str) + Send + Sync>) -> ByFilter {
        ByFilter {
            registry: Mutex::new(Registry {
                applied: start,
                ..Registry::default()
            }),
            reported: Mutex::new(HashSet::new()),
            say,
        }
    }

    /// The filter for the TCP listener `d` under `cur`. Always compiled
    /// conservatively (identical to the exact filter for a qualifying generation);
    /// a generation that does not qualify is reported once.
    pub fn plan(&self, cur: &Current, d: &OwnedFd) -> Plan {
        let Some(local) = local_of(d) else {
            return Plan::Attach(drop_all());
        };
        let v6_only = local.is_ipv6() && sys::v6only(d);
        let c = compile_conservative(
            &cur.policy,
            &Listener {
                v6_only,
                ..wildcard(local)
            },
        );
        let too_large = matches!(c.outcome, Outcome::TooLarge { .. });
        let why = enforcing_stealth(&cur.policy)
            .err()
            .or_else(|| c.partial.first().cloned())
            .or_else(|| too_large.then(|| c.describe()));
        if let Some(why) = why {
            self.report(cur.generation, &why, &c.partial);
        }
        match c.outcome {
            Outcome::Filter(f) => Plan::Attach(f),
            Outcome::AcceptAll => Plan::Detach,
            // Fail closed: nothing else decides these accepts.
            Outcome::TooLarge { .. } | Outcome::AuditMode => Plan::Attach(drop_all()),
        }
    }

    fn report(&self, g: Option<u64>, why: &str, partial: &[String]) {
        if !self
            .reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(g)
        {
            return;
        }
        let gen = g.map_or("the policy".into(), |g| format!("generation {g}"));
        let mut m = format!(
            "{gen} does not qualify for accept-by-filter mode ({why}); accepts stay judged \
             by socket filters, compiled to refuse at least what it refuses, until the \
             service restarts"
        );
        for p in partial.iter().filter(|p| *p != why) {
            m.push_str("; ");
            m.push_str(p);
        }
        (self.say)(&m);
    }

    /// Attach `cur`'s filter to the TCP listener-to-be `d`. `Err`: it could not be
    /// attached (the listen is then refused).
    pub fn attach(&self, cur: &Current, d: &OwnedFd) -> Result<(), String> {
        match self.plan(cur, d) {
            Plan::Attach(f) => sys::attach_filter(d, &f).map_err(|e| e.to_string()),
            Plan::Detach => match sys::setsockopt_int(d, libc::SO_DETACH_FILTER, 0) {
                Ok(_) | Err(libc::ENOENT) => Ok(()),
                Err(e) => Err(std::io::Error::from_raw_os_error(e).to_string()),
            },
        }
    }
}

/// A filter that drops every packet.
fn drop_all() -> Vec<SockFilter> {
    vec![SockFilter {
        code: op::RET | op::K,
        jt: 0,
        jf: 0,
        k: RET_DROP,
    }]
}

fn local_of(d: &OwnedFd) -> Option<SocketAddr> {
    match crate::notify::decode(&sys::getsockname(d)?) {
        crate::notify::Addr::Ip(a) => Some(a),
        _ => None,
    }
}

/// Whether `d` is an IP stream socket, and if so whether it is TCP.
pub fn ip_stream(d: &OwnedFd) -> Option<bool> {
    if !matches!(sys::domain(d), Some(libc::AF_INET | libc::AF_INET6)) {
        return None;
    }
    match sys::type_and_protocol(d) {
        (Some(libc::SOCK_STREAM), p) => Some(p == Some(libc::IPPROTO_TCP)),
        _ => None,
    }
}

/// Listeners `sockexit` itself holds and CMD will inherit (socket activation, `fd:N`
/// arguments): their filters, attached before the spawn, and their keys. `Err`: one
/// that cannot carry a filter (not TCP), so the mode cannot be used.
pub fn inherited(bf: &ByFilter, cur: &Current) -> Result<Vec<Key>, String> {
    let mut keys = Vec::new();
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("/proc/self/fd: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        let Some(d) = sys::inherited_dup(fd) else {
            continue;
        };
        if !sys::accepting(&d) {
            continue;
        }
        match ip_stream(&d) {
            None => continue,
            Some(false) => {
                return Err(format!(
                    "inherited fd {fd} is an IP stream listener that is not TCP (SCTP?), \
                     which a socket filter cannot judge"
                ))
            }
            Some(true) => {}
        }
        bf.attach(cur, &d)
            .map_err(|e| format!("cannot attach a filter to inherited listener fd {fd}: {e}"))?;
        keys.extend(sys::inode(&d));
    }
    Ok(keys)
}

/// The mode to run in, and the sentence that says why. `Err`: `--accept=filter`
/// was asked for and cannot be had.
pub fn choose(choice: Choice, p: &Policy) -> Result<(crate::filter::Accepts, String), String> {
    use crate::filter::Accepts;
    if choice == Choice::Notify {
        return Ok((Accepts::Notify, "notified accepts (--accept=notify)".into()));
    }
    match qualifies(p).and_then(|()| probe_attach()) {
        Ok(()) => Ok((
            Accepts::Filter,
            "accept-by-filter mode: accepts are not notified; each listener's socket filter \
             drops refused peers' SYNs (stealth policy whose accept rules look only at the \
             packet)"
                .into(),
        )),
        Err(why) if choice == Choice::Filter => Err(format!(
            "--accept=filter: accept-by-filter mode cannot be used: {why}"
        )),
        Err(why) => Ok((
            Accepts::Notify,
            format!("notified accepts (accept-by-filter mode not chosen: {why})"),
        )),
    }
}

/// Accept-by-filter mode: attach the filter of the generation in force (taken again
/// under the registry lock, so a reload walk either finds this listener recorded or
/// ran before and this uses its generation), record the listener, then listen. An
/// IP stream socket that is not TCP (SCTP) cannot carry a filter that judges it: its
/// listen is refused.
pub(crate) fn listen(s: &Sup, bf: &ByFilter, d: &OwnedFd, backlog: i32) -> Reply {
    let Some(tcp) = ip_stream(d) else {
        return Reply::Done(sys::listen(d, backlog));
    };
    if !tcp {
        (bf.say)(
            "listen refused on an IP stream socket that is not TCP (SCTP): in \
             accept-by-filter mode nothing would judge its accepts (--accept=notify)",
        );
        return Reply::Done(Err(libc::EACCES));
    }
    let mut reg = bf.registry.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = bf.attach(&s.source.current(), d) {
        drop(reg);
        (bf.say)(&format!(
            "listen refused: cannot attach its socket filter ({e})"
        ));
        return Reply::Done(Err(libc::EACCES));
    }
    let key = sys::inode(d);
    let r = sys::listen(d, backlog);
    if let Some(k) = key {
        if r.is_ok() || sys::accepting(d) {
            reg.listeners.insert(k);
        }
    }
    Reply::Done(r)
}
