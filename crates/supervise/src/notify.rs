//! The notification loop: copy the arguments out of the target, judge them with the
//! engine, perform the allowed call on a duplicate of the target's socket, and answer
//! with its real result. A call that may block runs on its own thread, so one
//! thread's blocking accept or connect never stalls the supervisor for the others.

use crate::audit::Audit;
use crate::filter::nr;
use crate::live::{Current, Source};
use crate::sys::{self, Notif};
use sockexit_engine::{BlockingAccept, Call, FactSource, Mode, Verdict};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Serializes the accepts the supervisor makes on one blocking listener.
pub type AcceptLock = Arc<Mutex<()>>;

/// Everything the loop and its workers share.
pub struct Sup {
    /// The seccomp listener.
    pub lfd: OwnedFd,
    /// The policy: the published generation, followed live, or the file read at start.
    pub source: Source,
    /// Where audit lines go.
    pub audit: Audit,
    /// One lock per blocking listener (by socket inode), held from the last poll to
    /// the accept: every accept on it comes through here, so under the lock a
    /// readable listener's accept cannot block.
    pub accept_locks: Mutex<HashMap<(u64, u64), AcceptLock>>,
    /// Allowed connections whose caller stopped waiting, for the next accept.
    pub stash: crate::stash::Stash,
    /// Accept-by-filter mode (`None`: every accept is notified).
    pub byfilter: Option<Arc<crate::byfilter::ByFilter>>,
}

/// How a notification is answered.
pub(crate) enum Reply {
    Done(Result<i64, i32>),
    /// Let the kernel run it: only for sockets of non-IP families (see [`ip_socket`]).
    Continue,
    /// Already answered (ADDFD with SEND), or the caller is gone.
    Nothing,
}

/// Serve notifications until no process uses the filter anymore.
pub fn serve(s: Arc<Sup>) {
    while let Ok(Some(n)) = sys::notif_recv(&s.lfd) {
        s.stash.expire();
        // A bug here must neither leave the caller waiting forever nor let its call
        // through: a panic refuses the call (EACCES) and the loop goes on.
        let r = guarded(|| match n.nr as u32 {
            nr::CONNECT => on_connect(&s, n),
            nr::ACCEPT => on_accept(&s, n, 0),
            nr::ACCEPT4 => on_accept(&s, n, n.args[3] as i32),
            nr::LISTEN => on_listen(&s, n),
            nr::SENDTO => on_sendto(&s, n),
            nr::SENDMSG => on_sendmsg(&s, n, None),
            nr::SENDMMSG => on_sendmmsg(&s, n),
            nr::SETSOCKOPT => crate::sockopt::on_setsockopt(&s, n),
            _ => Reply::Done(Err(libc::ENOSYS)),
        });
        answer(&s, n.id, r);
    }
}

/// `f()`, or a refusal if it panics.
fn guarded(f: impl FnOnce() -> Reply) -> Reply {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or(Reply::Done(Err(libc::EACCES)))
}

fn answer(s: &Sup, id: u64, r: Reply) {
    match r {
        Reply::Done(res) => sys::notif_send(&s.lfd, id, res, false),
        Reply::Continue => sys::notif_send(&s.lfd, id, Ok(0), true),
        Reply::Nothing => {}
    }
}

/// What a copied sockaddr is.
#[derive(Debug, PartialEq, Eq)]
pub enum Addr {
    /// An IPv4 or IPv6 address.
    Ip(SocketAddr),
    /// `AF_UNSPEC` (a connect that dissolves the association).
    Unspec,
    /// Another family.
    Other,
    /// An IP family too short to read: refused.
    Bad,
}

/// Decode a raw sockaddr as the kernel does (a 24-byte `sockaddr_in6` is valid).
pub fn decode(b: &[u8]) -> Addr {
    if b.len() < 2 {
        return Addr::Bad;
    }
    let fam = i32::from(u16::from_ne_bytes([b[0], b[1]]));
    match fam {
        libc::AF_INET if b.len() >= 16 => Addr::Ip(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(b[4], b[5], b[6], b[7]),
            u16::from_be_bytes([b[2], b[3]]),
        ))),
        libc::AF_INET6 if b.len() >= 24 => {
            let ip: [u8; 16] = b[8..24].try_into().expect("16 bytes");
            let flow = u32::from_be_bytes(b[4..8].try_into().expect("4"));
            let scope = if b.len() >= 28 {
                u32::from_ne_bytes(b[24..28].try_into().expect("4"))
            } else {
                0
            };
            Addr::Ip(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                u16::from_be_bytes([b[2], b[3]]),
                flow,
                scope,
            )))
        }
        libc::AF_INET | libc::AF_INET6 => Addr::Bad,
        libc::AF_UNSPEC => Addr::Unspec,
        _ => Addr::Other,
    }
}

/// The raw sockaddr of `a` (for writing a peer back into the target).
pub fn encode(a: SocketAddr) -> Vec<u8> {
    match a {
        SocketAddr::V4(v) => {
            let mut b = vec![0u8; 16];
            b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&v.port().to_be_bytes());
            b[4..8].copy_from_slice(&v.ip().octets());
            b
        }
        SocketAddr::V6(v) => {
            let mut b = vec![0u8; 28];
            b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&v.port().to_be_bytes());
            b[4..8].copy_from_slice(&v.flowinfo().to_be_bytes());
            b[8..24].copy_from_slice(&v.ip().octets());
            b[24..28].copy_from_slice(&v.scope_id().to_ne_bytes());
            b
        }
    }
}

/// The calling thread: its tid and, once asked, what `/proc` says about it.
pub struct Caller {
    /// Thread id.
    pub tid: u32,
    status: Option<Option<(u32, u32, u32)>>,
    exe: Option<Option<Vec<u8>>>,
}

impl Caller {
    pub(crate) fn new(tid: u32) -> Self {
        Caller {
            tid,
            status: None,
            exe: None,
        }
    }

    /// (tgid, euid, egid) from `/proc/TID/status`.
    pub fn status(&mut self) -> Option<(u32, u32, u32)> {
        let tid = self.tid;
        *self.status.get_or_insert_with(|| {
            let s = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
            let field = |k: &str, i: usize| -> Option<u32> {
                s.lines()
                    .find_map(|l| l.strip_prefix(k))?
                    .split_whitespace()
                    .nth(i)?
                    .parse()
                    .ok()
            };
            Some((field("Tgid:", 0)?, field("Uid:", 1)?, field("Gid:", 1)?))
        })
    }

    /// `/proc/TID/exe`.
    pub fn exe(&mut self) -> Option<&[u8]> {
        let tid = self.tid;
        self.exe
            .get_or_insert_with(|| {
                use std::os::unix::ffi::OsStringExt;
                std::fs::read_link(format!("/proc/{tid}/exe"))
                    .ok()
                    .map(|p| p.into_os_string().into_vec())
            })
            .as_deref()
    }
}

struct Facts<'a> {
    caller: &'a mut Caller,
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
    dual: bool,
    dynamic: Option<std::sync::Arc<sockexit_engine::DynSets>>,
}

impl FactSource for Facts<'_> {
    fn remote(&mut self) -> Option<SocketAddr> {
        self.remote
    }
    fn local(&mut self) -> Option<SocketAddr> {
        self.local
    }
    fn uid(&mut self) -> Option<u32> {
        self.caller.status().map(|s| s.1)
    }
    fn gid(&mut self) -> Option<u32> {
        self.caller.status().map(|s| s.2)
    }
    fn program(&mut self) -> Option<&[u8]> {
        self.caller.exe()
    }
    fn dual_stack(&mut self) -> bool {
        self.dual
    }
    fn dynamic(&mut self) -> Option<&sockexit_engine::DynSets> {
        self.dynamic.as_deref()
    }
}

/// Judge and record one call with the policy in use; whether to perform it (audit
/// mode performs all).
fn judge(
    s: &Sup,
    cur: &Current,
    caller: &mut Caller,
    call: Call,
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
    dual: bool,
) -> bool {
    let dynamic = if cur.policy.dynamic_sets().is_empty() {
        None
    } else {
        s.source.dynamic()
    };
    let sets = dynamic.as_ref().map(|d| d.revision());
    let mut f = Facts {
        caller,
        remote,
        local,
        dual,
        dynamic,
    };
    let j = cur.policy.judge(call, &mut f);
    let ev = sockexit_engine::audit_line::Event {
        call,
        verdict: j.decision.verdict,
        rule: j.decision.rule,
        mode: cur.policy.mode(),
        local: j.local.or(local),
        remote: j.remote.or(remote),
    };
    s.audit.record(&ev, cur.generation, sets, caller);
    j.decision.verdict == Verdict::Allow || cur.policy.mode() == Mode::Audit
}

/// A duplicate of the caller's fd `fd`, checked to belong to a still-pending call.
pub(crate) fn dup_fd(s: &Sup, n: &Notif, caller: &mut Caller, fd: u64) -> Result<OwnedFd, i32> {
    let fd = i32::try_from(fd as i64).map_err(|_| libc::EBADF)?;
    let pidfd = sys::pidfd_open(n.pid, || caller.status().map(|s| s.0).unwrap_or(n.pid))
        .map_err(|_| libc::ESRCH)?;
    // The pid in the notification may have been reused: the check comes after.
    let d = sys::pidfd_getfd(&pidfd, fd).map_err(|e| match e.raw_os_error() {
        Some(libc::EBADF) => libc::EBADF,
        _ => libc::EPERM,
    });
    if !sys::notif_id_valid(&s.lfd, n.id) {
        return Err(-1);
    }
    d
}

/// Whether the duplicate is an IP socket. Only calls on IP sockets are judged; on
/// any other socket the kernel is let to run the call (`CONTINUE`). Why that is
/// sound: the family of a socket never changes, and v1 policies do not judge
/// non-IP sockets at all, so rewriting the sockaddr after our look gains nothing
/// (an AF_INET address on an AF_UNIX socket is EINVAL). Performing AF_UNIX connects
/// ourselves would be wrong (path resolved in our cwd and root, and the server's
/// SO_PEERCRED would name the supervisor). The one residual race is a second
/// thread replacing the fd number itself (dup2 of an IP socket onto it) between
/// our `pidfd_getfd` and the kernel's own fd lookup: docs/supervise.md says so.
fn ip_socket(d: &OwnedFd) -> Result<bool, i32> {
    match sys::domain(d) {
        Some(libc::AF_INET | libc::AF_INET6) => Ok(true),
        Some(_) => Ok(false),
        None => Err(libc::ENOTSOCK),
    }
}

/// Copy `len` bytes of sockaddr from the target (at most 128, as the kernel).
fn read_addr(n: &Notif, ptr: u64, len: u64) -> Result<Vec<u8>, i32> {
    let len = len as u32 as i32;
    if !(0..=128).contains(&len) {
        return Err(libc::EINVAL);
    }
    let mut b = vec![0u8; len as usize];
    sys::read_mem(n.pid, ptr, &mut b)?;
    Ok(b)
}

fn local_of(d: &OwnedFd) -> Option<SocketAddr> {
    match decode(&sys::getsockname(d)?) {
        Addr::Ip(a) => Some(a),
        _ => None,
    }
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(-1) => return Reply::Nothing,
            Err(e) => return Reply::Done(Err(e)),
        }
    };
}

/// Run `f` on a thread of its own (a pooled one) when the socket blocks, else here.
fn maybe_worker(
    s: &Arc<Sup>,
    id: u64,
    blocking: bool,
    f: impl FnOnce(&Sup) -> Reply + Send + 'static,
) -> Reply {
    if !blocking {
        return f(s);
    }
    let s2 = Arc::clone(s);
    let spawned = crate::pool::POOL.run(Box::new(move || {
        let r = guarded(|| f(&s2));
        answer(&s2, id, r);
    }));
    match spawned {
        Ok(_) => Reply::Nothing,
        Err(_) => Reply::Done(Err(libc::EAGAIN)),
    }
}

fn on_connect(s: &Arc<Sup>, n: Notif) -> Reply {
    connecting(s, n, |n| {
        read_addr(n, n.args[1], n.args[2]).map(Connecting::Connect)
    })
}

/// A call that connects: `connect(2)`, or a send with `MSG_FASTOPEN` (TCP Fast Open),
/// both judged as `connect` to their destination.
enum Connecting {
    /// `connect(2)` to this sockaddr.
    Connect(Vec<u8>),
    /// A Fast Open send of `buf` with `flags`, to `name` if it has one.
    Send {
        buf: Vec<u8>,
        flags: i32,
        name: Option<Vec<u8>>,
    },
}

/// Duplicate the caller's socket (a non-IP one is the kernel's), read the call
/// (`read`, once the socket is known to be IP), judge its destination with the
/// engine (audited), and perform it on the duplicate, on a worker if it may block.
fn connecting(
    s: &Arc<Sup>,
    n: Notif,
    read: impl FnOnce(&Notif) -> Result<Connecting, i32>,
) -> Reply {
    let mut caller = Caller::new(n.pid);
    let d = tri!(dup_fd(s, &n, &mut caller, n.args[0]));
    if !tri!(ip_socket(&d)) {
        return Reply::Continue;
    }
    let call = tri!(read(&n));
    if !sys::notif_id_valid(&s.lfd, n.id) {
        return Reply::Nothing;
    }
    let (dest, dontwait) = match &call {
        Connecting::Connect(raw) => (Some(&raw[..]), false),
        Connecting::Send { flags, name, .. } => (name.as_deref(), flags & libc::MSG_DONTWAIT != 0),
    };
    match dest.map(decode) {
        Some(Addr::Ip(dest)) => {
            if !judge(
                s,
                &s.source.current(),
                &mut caller,
                Call::Connect,
                Some(dest),
                local_of(&d),
                false,
            ) {
                return Reply::Done(Err(libc::EACCES));
            }
        }
        // The kernel refuses these on an IP socket's connect; so do we, without
        // trying. (A send's destination of another family is the kernel's to refuse.)
        Some(Addr::Other) if matches!(call, Connecting::Connect(_)) => {
            return Reply::Done(Err(libc::EAFNOSUPPORT))
        }
        Some(Addr::Bad) => return Reply::Done(Err(libc::EINVAL)),
        // Dissolving an association reaches nobody; a send without a destination
        // goes to the peer already connected.
        Some(Addr::Unspec | Addr::Other) | None => {}
    }
    let blocking = !sys::nonblocking(&d) && !dontwait;
    maybe_worker(s, n.id, blocking, move |_| {
        Reply::Done(match &call {
            Connecting::Connect(raw) => sys::connect(&d, raw),
            Connecting::Send { buf, flags, name } => {
                sys::send_flat(&d, buf, *flags, name.as_deref())
            }
        })
    })
}

fn on_listen(s: &Arc<Sup>, n: Notif) -> Reply {
    let mut caller = Caller::new(n.pid);
    let d = tri!(dup_fd(s, &n, &mut caller, n.args[0]));
    if !tri!(ip_socket(&d)) {
        return Reply::Continue;
    }
    tri!(bind_as_listen_would(&d));
    let local = local_of(&d);
    let dual = sys::domain(&d) == Some(libc::AF_INET6) && !sys::v6only(&d);
    let cur = s.source.current();
    if !judge(s, &cur, &mut caller, Call::Listen, None, local, dual) {
        return Reply::Done(Err(libc::EACCES));
    }
    if let Some(bf) = &s.byfilter {
        return crate::byfilter::listen(s, bf, &d, n.args[1] as i32);
    }
    if cur.policy.stealth() {
        if let Some(l) = local {
            stealth(&cur, &mut caller, &d, l);
        }
    }
    Reply::Done(sys::listen(&d, n.args[1] as i32))
}

/// `listen(2)` on an unbound socket binds it to an ephemeral port first: do that now
/// (as the preload does), so the listen is judged on the port it will listen on. A
/// bind that fails is the error the listen's own bind would have had.
fn bind_as_listen_would(d: &OwnedFd) -> Result<(), i32> {
    let Some(local) = local_of(d) else {
        return Ok(());
    };
    if local.port() != 0 {
        return Ok(());
    }
    let mut any = local;
    any.set_port(0);
    sys::bind(d, &encode(any))?;
    if local_of(d).is_some_and(|l| l.port() == 0) {
        // IP_BIND_ADDRESS_NO_PORT deferred the port again: pick it now.
        sys::bind_port_now(d);
        sys::bind(d, &encode(any))?;
    }
    Ok(())
}

/// `stealth: true`: before the listen, attach the engine's SYN filter for this
/// listener through the duplicate (the same socket), as the preload does, unless the
/// program has its own filter. The accept-time check stays the authority: the user
/// and group are left unknown (they may change after listen), which the compiler
/// turns into "let through to accept".
fn stealth(cur: &Current, caller: &mut Caller, d: &OwnedFd, local: SocketAddr) {
    use sockexit_engine::bpf::{compile, Listener, Outcome};
    if sys::type_and_protocol(d) != (Some(libc::SOCK_STREAM), Some(libc::IPPROTO_TCP)) {
        return;
    }
    let v6_only = local.is_ipv6() && sys::v6only(d);
    let program = caller.exe().map(<[u8]>::to_vec);
    let compiled = compile(
        &cur.policy,
        &Listener {
            local,
            v6_only,
            uid: None,
            gid: None,
            program: program.as_deref(),
        },
    );
    if let Outcome::Filter(prog) = &compiled.outcome {
        if sys::attached_filter_len(d) == Some(0) {
            let _ = sys::attach_filter(d, prog);
        }
    }
}

fn on_accept(s: &Arc<Sup>, n: Notif, flags: i32) -> Reply {
    if flags & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) != 0 {
        return Reply::Done(Err(libc::EINVAL));
    }
    let mut caller = Caller::new(n.pid);
    let d = tri!(dup_fd(s, &n, &mut caller, n.args[0]));
    if !tri!(ip_socket(&d)) {
        return Reply::Continue;
    }
    let blocking = !sys::nonblocking(&d);
    maybe_worker(s, n.id, blocking, move |s| {
        accept_loop(s, n, caller, d, flags, blocking)
    })
}

/// How long a blocked accept waits between checks that its caller still waits.
const SLICE_MS: i32 = 200;

fn accept_loop(
    s: &Sup,
    n: Notif,
    mut caller: Caller,
    d: OwnedFd,
    flags: i32,
    blocking: bool,
) -> Reply {
    let started = Instant::now();
    let deadline = if blocking {
        sys::rcvtimeo(&d).map(|t| started + t)
    } else {
        None
    };
    let key = sys::inode(&d);
    let lock = blocking.then(|| {
        let mut m = s.accept_locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(m.entry(key.unwrap_or((0, 0))).or_default())
    });
    loop {
        // A connection allowed for a caller that stopped waiting comes first, judged
        // again for this caller.
        if let Some(h) = key.and_then(|k| s.stash.take(k)) {
            if accept_allowed(s, &s.source.current(), &mut caller, &h.peer, &h.conn) {
                sys::set_nonblocking(&h.conn, flags & libc::SOCK_NONBLOCK != 0);
                return deliver(s, &n, h.conn, &h.peer, flags, key);
            }
            sys::reset_and_close(h.conn);
            continue;
        }
        let mut _held = None;
        if blocking {
            // Wait readable, never past SO_RCVTIMEO, giving up when the caller does
            // (a signal interrupted it, or it died).
            loop {
                if !sys::notif_id_valid(&s.lfd, n.id) {
                    return Reply::Nothing;
                }
                let mut ms = SLICE_MS;
                if let Some(dl) = deadline {
                    let left = dl.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Reply::Done(Err(libc::EAGAIN));
                    }
                    ms = ms.min(left.as_millis().max(1) as i32);
                }
                if sys::readable(&d, ms) {
                    // Readable still, under the lock: no other thread of ours takes
                    // this connection first, so the accept below returns at once.
                    let g = lock
                        .as_ref()
                        .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()));
                    if !sys::notif_id_valid(&s.lfd, n.id) {
                        return Reply::Nothing;
                    }
                    if sys::readable(&d, 0) {
                        _held = g;
                        break;
                    }
                }
            }
        }
        let ours = (flags & libc::SOCK_NONBLOCK) | libc::SOCK_CLOEXEC;
        let (c, peer) = match sys::accept4(&d, ours) {
            Ok(x) => x,
            Err(e) => return Reply::Done(Err(e)),
        };
        // Judged with the policy in use now: a blocked accept follows an apply too.
        let cur = s.source.current();
        if accept_allowed(s, &cur, &mut caller, &peer, &c) {
            return deliver(s, &n, c, &peer, flags, key);
        }
        sys::reset_and_close(c);
        // As the preload: take the next only if one is already pending.
        if sys::readable(&d, 0) {
            continue;
        }
        if !blocking {
            return Reply::Done(Err(libc::EAGAIN));
        }
        match cur.policy.blocking_accept() {
            BlockingAccept::Return => return Reply::Done(Err(libc::ECONNABORTED)),
            BlockingAccept::Wait => continue,
        }
    }
}

/// Whether the connection `conn` accepted from `peer` may be handed to this caller.
fn accept_allowed(
    s: &Sup,
    cur: &Current,
    caller: &mut Caller,
    peer: &[u8],
    conn: &OwnedFd,
) -> bool {
    match decode(peer) {
        Addr::Ip(p) => judge(s, cur, caller, Call::Accept, Some(p), local_of(conn), false),
        Addr::Other | Addr::Unspec => true,
        Addr::Bad => false,
    }
}

/// Write the peer back (`min(*addrlen, real)` bytes, the real length), then install
/// the connection as the call's result. If the caller has stopped waiting, the
/// allowed connection is kept for the next accept on the listener `key`
/// (`crate::stash`), not reset.
fn deliver(
    s: &Sup,
    n: &Notif,
    c: OwnedFd,
    peer: &[u8],
    flags: i32,
    key: Option<(u64, u64)>,
) -> Reply {
    let (ap, lp) = (n.args[1], n.args[2]);
    if ap != 0 && lp != 0 {
        let mut lb = [0u8; 4];
        let ok = sys::read_mem(n.pid, lp, &mut lb).and_then(|()| {
            let want = i32::from_ne_bytes(lb);
            if want < 0 {
                return Err(libc::EINVAL);
            }
            let k = (want as usize).min(peer.len());
            sys::write_mem(n.pid, ap, &peer[..k])?;
            sys::write_mem(n.pid, lp, &(peer.len() as u32).to_ne_bytes())
        });
        if let Err(e) = ok {
            if !sys::notif_id_valid(&s.lfd, n.id) {
                return stash_or_reset(s, c, peer, key);
            }
            sys::reset_and_close(c);
            return Reply::Done(Err(e));
        }
    }
    match sys::notif_addfd_send(&s.lfd, n.id, &c, flags & libc::SOCK_CLOEXEC != 0) {
        Ok(_) => Reply::Nothing,
        // The caller stopped waiting (a signal, or it died): keep the connection.
        // Still waiting (it has no free descriptor: EMFILE): it gets the error, as
        // from the kernel, and the connection waits for its next accept.
        Err(e) => {
            let waiting = sys::notif_id_valid(&s.lfd, n.id);
            stash_or_reset(s, c, peer, key);
            if waiting {
                Reply::Done(Err(e.raw_os_error().unwrap_or(libc::EMFILE)))
            } else {
                Reply::Nothing
            }
        }
    }
}

fn stash_or_reset(s: &Sup, c: OwnedFd, peer: &[u8], key: Option<(u64, u64)>) -> Reply {
    match key {
        Some(k) => s.stash.put(k, c, peer.to_vec()),
        None => sys::reset_and_close(c),
    }
    Reply::Nothing
}

/// The most bytes a Fast Open send copies out of the target; a longer one sends
/// this much and returns the count, as a stream send may.
const SEND_MAX: usize = 1 << 20;

fn read_buf(n: &Notif, ptr: u64, len: u64) -> Result<Vec<u8>, i32> {
    let mut b = vec![0u8; (len as usize).min(SEND_MAX)];
    sys::read_mem(n.pid, ptr, &mut b)?;
    Ok(b)
}

fn on_sendto(s: &Arc<Sup>, n: Notif) -> Reply {
    let buf = tri!(read_buf(&n, n.args[1], n.args[2]));
    let name = if n.args[4] != 0 {
        Some(tri!(read_addr(&n, n.args[4], n.args[5])))
    } else {
        None
    };
    let flags = n.args[3] as i32;
    connecting(s, n, move |_| Ok(Connecting::Send { buf, flags, name }))
}

/// `sendmsg` with `MSG_FASTOPEN` (also one message of `sendmmsg`, at `hdr`).
fn on_sendmsg(s: &Arc<Sup>, n: Notif, hdr: Option<u64>) -> Reply {
    let (mp, flags) = match hdr {
        Some(h) => (h, n.args[3] as i32),
        None => (n.args[1], n.args[2] as i32),
    };
    let mut m = [0u8; 56];
    tri!(sys::read_mem(n.pid, mp, &mut m));
    let u = |o: usize| u64::from_ne_bytes(m[o..o + 8].try_into().expect("8"));
    let (name_p, name_l, iov_p, iov_n, ctl_l) = (u(0), u(8) & 0xffff_ffff, u(16), u(24), u(40));
    if ctl_l != 0 {
        // Control data is not carried over to a send the supervisor performs.
        return Reply::Done(Err(libc::EOPNOTSUPP));
    }
    if iov_n > 1024 {
        return Reply::Done(Err(libc::EMSGSIZE));
    }
    let mut iovs = vec![0u8; 16 * iov_n as usize];
    tri!(sys::read_mem(n.pid, iov_p, &mut iovs));
    let mut buf = Vec::new();
    for v in iovs.chunks(16) {
        let base = u64::from_ne_bytes(v[0..8].try_into().expect("8"));
        let len = u64::from_ne_bytes(v[8..16].try_into().expect("8")) as usize;
        let take = len.min(SEND_MAX - buf.len());
        let at = buf.len();
        buf.resize(at + take, 0);
        tri!(sys::read_mem(n.pid, base, &mut buf[at..]));
    }
    let name = if name_p != 0 {
        Some(tri!(read_addr(&n, name_p, name_l)))
    } else {
        None
    };
    connecting(s, n, move |_| Ok(Connecting::Send { buf, flags, name }))
}

/// `sendmmsg` with `MSG_FASTOPEN`: the first message is sent (as `sendmsg`), and 1
/// returned; a caller sends the rest with its next call, as after any short count.
fn on_sendmmsg(s: &Arc<Sup>, n: Notif) -> Reply {
    if n.args[2] == 0 {
        return Reply::Done(Ok(0));
    }
    match on_sendmsg(s, n, Some(n.args[1])) {
        Reply::Done(Ok(sent)) => {
            tri!(sys::write_mem(
                n.pid,
                n.args[1] + 56,
                &(sent as u32).to_ne_bytes()
            ));
            Reply::Done(Ok(1))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddrs_decode_as_the_kernel_reads_them() {
        let a: SocketAddr = "10.1.2.3:80".parse().unwrap();
        assert_eq!(decode(&encode(a)), Addr::Ip(a));
        let b: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(decode(&encode(b)), Addr::Ip(b));
        // A 24-byte sockaddr_in6 (no scope id) is valid.
        assert_eq!(decode(&encode(b)[..24]), Addr::Ip(b));
        assert_eq!(decode(&encode(b)[..23]), Addr::Bad);
        assert_eq!(decode(&encode(a)[..15]), Addr::Bad);
        assert_eq!(decode(&[0, 0]), Addr::Unspec);
        assert_eq!(decode(&(libc::AF_UNIX as u16).to_ne_bytes()), Addr::Other);
        assert_eq!(decode(&[2]), Addr::Bad);
    }
}
