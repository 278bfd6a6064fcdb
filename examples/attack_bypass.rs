//! Attack programs for issue 13: every way a program can open, accept or listen on a
//! connection without going through the plain `connect`/`accept`/`listen` PLT entries
//! the library hooks, and the argument forms the library must judge (or survive) as
//! the kernel does. Used by `tests/bypass/`; each subcommand makes the exact libc
//! call named, with the `libc` crate and nothing in between.
//!
//! Output: one line per attempt, `ok [...]` or `error ERRNO-NAME ERRNO`, prefixed by a
//! label where a subcommand makes several. Servers print `listening ADDR` first and
//! `accepted PEER` for every connection they were handed.
//!
//! Subcommands (ADDR is `IP:PORT` or `[IPv6]:PORT`):
//!
//! - `connect ADDR [--len N] [--bind IP] [--device DEV] [--nonblock-ms MS]`: one raw
//!   `connect()` with the sockaddr of ADDR passed with length N (default: the full
//!   struct; a 24-byte `sockaddr_in6` is the RFC 2133 form). `--device` binds the
//!   socket to an interface first (`lo`: nothing can leave the host). With
//!   `--nonblock-ms` the socket is non-blocking and EINPROGRESS is waited out (bounded)
//!   and reported from SO_ERROR. On success writes `hello\n` and closes.
//! - `tfo KIND ADDR [--len N] [--mptcp]`: TCP Fast Open without connect() (on an
//!   IPPROTO_MPTCP socket with `--mptcp`, which supports it too): KIND is `sendto`,
//!   `sendmsg`, `sendmmsg` (one message), `sendmmsg2` (two messages to ADDR), or the
//!   same through libc's other doors: `dl-sendto`, `dl-sendmsg`, `dl-sendmmsg`
//!   (`dlsym(dlopen("libc.so.6"))`), `__sendmmsg` (glibc's GLIBC_PRIVATE alias).
//!   Sends `tfo-data` with `MSG_FASTOPEN`. Stdout: `ok sent N` / `error ...`.
//! - `tfo-connect ADDR`: `setsockopt(TCP_FASTOPEN_CONNECT, 1)`, `connect()`, then
//!   `write("tfo-data")`. Stdout: `connect ok` / `connect error ...`, then `write ...`.
//! - `door METHOD connect ADDR`, `door METHOD listen ADDR`: the call through another
//!   way of reaching libc (see [`resolve`]: `libc`, `__connect`, `dlopen`,
//!   `dlsym-__name`, `dlopen-null`, `dlopen-path`, `dlopen-deepbind`, `dlmopen`,
//!   `dlvsym-default`, `dlvsym-libc`, `rtld-next`, `rtld-default`, `dlsym-of-dlsym`,
//!   `dlvsym-of-dlsym`). Stdout `nosym` when that door does not exist.
//! - `door METHOD accept|accept4 ADDR [--max N]`: a server: `listening ADDR`, then
//!   accepts through the door, writes `220 sockexit attack\r\n` to each connection,
//!   prints `accepted PEER` and closes; exits after N (default 1) connections.
//! - `dlsym-sanity`: lookups of names the library does not hook must keep working;
//!   prints `NAME ok` / `NAME FAILED why` lines, then `done`.
//! - `sig-connect accept|accept4 [--restart] [--handler connect|listen|sendto] DEST`: a thread
//!   blocks in a hooked accept on an idle blocking listener (`sig-connect connect
//!   --block-on ADDR DEST`: in a blocking connect to ADDR, a listener whose accept
//!   queue the test has filled); SIGUSR1 (sigaction
//!   without SA_RESTART unless `--restart`), sent with `pthread_kill` to that thread,
//!   runs a handler that calls `connect(DEST)` (or `listen()` on a socket bound to
//!   DEST, or `--handler sendto`: `sendto(DEST, MSG_FASTOPEN)`). Stdout: `handler ok` / `handler error ...`, then what the accept returned.
//! - `sigio-server [--main accept|sleep] [--restart] [--max N]`: an `O_ASYNC` +
//!   `F_SETOWN` listener on 127.0.0.1:0 whose SIGIO handler accepts (non-blocking)
//!   everything pending, writes the banner, prints `accepted PEER`; the main thread
//!   meanwhile blocks in a hooked `accept()` on a second, idle listener (`accept`,
//!   default) or sleeps (`sleep`). Exits 0 after N (default 1) connections served.
//! - `badptr CASE`: one call with a bad pointer, printing `CASE error NAME N` (the
//!   kernel says EFAULT) and exiting 0 — the process must survive. CASE is one of
//!   [`BADPTR_CASES`].
//! - `udp-connect ADDR`: a UDP socket connected to ADDR, then `hello\n` sent.
//! - `exec FORM ENV SUBCOMMAND ...`: re-executes this program (`/proc/self/exe`)
//!   with SUBCOMMAND, through FORM (`execve`, `execle`, `execvpe`, `fexecve`,
//!   `execveat`, `posix_spawn`: the parent waits and exits with the child's status)
//!   and the environment ENV: `empty`, `no-preload` (ours without LD_PRELOAD) or
//!   `policy=PATH` (ours with SOCKEXIT_POLICY=PATH).
//! - `rcmd KIND IP PORT`: glibc's `rcmd`, `rcmd_af`, `rexec` or `rexec_af` (KIND) to
//!   IP:PORT. They connect through libc's internal connect, which no preload sees.
//!   Stdout `ok FD` / `error NAME N`.
//! - `--fork SUBCOMMAND ...` (first argument): the subcommand runs in a forked child.
//! - `listen ADDR|unbound4|unbound6 [--v6only 0|1]`: socket (+ bind) + listen; stdout
//!   `ok BOUND-ADDR` or `error ...`.

use std::ffi::{c_void, CStr};
use std::io::Error;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::exit;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::raw_addr;

use libc::{c_int, c_uint, sockaddr, sockaddr_storage, socklen_t};

const BANNER: &[u8] = b"220 sockexit attack\r\n";
const TFO_DATA: &[u8] = b"tfo-data";

/// glibc's symbol versions of the hooked calls (`nm -D libc.so.6`).
#[cfg(target_arch = "x86_64")]
mod ver {
    pub const BASE: &std::ffi::CStr = c"GLIBC_2.2.5";
    pub const ACCEPT4: &std::ffi::CStr = c"GLIBC_2.10";
    pub const DLSYM: &std::ffi::CStr = c"GLIBC_2.34";
}
#[cfg(not(target_arch = "x86_64"))]
mod ver {
    pub const BASE: &std::ffi::CStr = c"GLIBC_2.17";
    pub const ACCEPT4: &std::ffi::CStr = c"GLIBC_2.17";
    pub const DLSYM: &std::ffi::CStr = c"GLIBC_2.34";
}

extern "C" {
    fn rcmd(
        ahost: *mut *mut libc::c_char,
        inport: u16,
        locuser: *const libc::c_char,
        remuser: *const libc::c_char,
        cmd: *const libc::c_char,
        fd2p: *mut c_int,
    ) -> c_int;
    fn rcmd_af(
        ahost: *mut *mut libc::c_char,
        inport: u16,
        locuser: *const libc::c_char,
        remuser: *const libc::c_char,
        cmd: *const libc::c_char,
        fd2p: *mut c_int,
        af: libc::sa_family_t,
    ) -> c_int;
    fn rexec(
        ahost: *mut *mut libc::c_char,
        inport: c_int,
        user: *const libc::c_char,
        passwd: *const libc::c_char,
        cmd: *const libc::c_char,
        fd2p: *mut c_int,
    ) -> c_int;
    fn rexec_af(
        ahost: *mut *mut libc::c_char,
        inport: c_int,
        user: *const libc::c_char,
        passwd: *const libc::c_char,
        cmd: *const libc::c_char,
        fd2p: *mut c_int,
        af: libc::sa_family_t,
    ) -> c_int;
    /// glibc 2.34+.
    fn execveat(
        dirfd: c_int,
        path: *const libc::c_char,
        argv: *const *const libc::c_char,
        envp: *const *const libc::c_char,
        flags: c_int,
    ) -> c_int;
    /// glibc's exported alias of connect (a weak `connect` and this share one body).
    fn __connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
}

type ConnectFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
type AcceptFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
type ListenFn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type DlsymFn = unsafe extern "C" fn(*mut c_void, *const libc::c_char) -> *mut c_void;
type SendtoFn =
    unsafe extern "C" fn(c_int, *const c_void, usize, c_int, *const sockaddr, socklen_t) -> isize;
type SendmsgFn = unsafe extern "C" fn(c_int, *const libc::msghdr, c_int) -> isize;
type SendmmsgFn = unsafe extern "C" fn(c_int, *mut libc::mmsghdr, c_uint, c_int) -> c_int;

fn errno() -> c_int {
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Errno names, including the ones the shared helper does not know.
fn ename(e: c_int) -> &'static str {
    match e {
        libc::EFAULT => "EFAULT",
        libc::EINTR => "EINTR",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EISCONN => "EISCONN",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTCONN => "ENOTCONN",
        libc::ENODEV => "ENODEV",
        _ => common::errno_name(e),
    }
}

fn res(r: i64) -> String {
    if r < 0 {
        let e = errno();
        format!("error {} {e}", ename(e))
    } else {
        "ok".to_string()
    }
}

fn die(what: &str) -> ! {
    let e = Error::last_os_error();
    common::fail(what, &e)
}

fn usage() -> ! {
    eprintln!("usage: attack_bypass SUBCOMMAND ... (see the comment at the top of examples/attack_bypass.rs)");
    exit(2)
}

fn parse_addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| usage())
}

fn family_of(a: &SocketAddr) -> c_int {
    if a.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

fn tcp_socket(family: c_int) -> c_int {
    // SAFETY: socket(2) takes plain integers.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        die("socket");
    }
    fd
}

fn opt_value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).map(|i| {
        args.get(i + 1)
            .map(String::as_str)
            .unwrap_or_else(|| usage())
    })
}

fn has_flag(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

/// The positional arguments (not an option or an option's value).
fn positional(args: &[String], with_value: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if with_value.contains(&args[i].as_str()) {
            i += 2;
            continue;
        }
        if !args[i].starts_with("--") {
            out.push(args[i].clone());
        }
        i += 1;
    }
    out
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--fork") {
        args.remove(0);
        fork_and_wait();
    }
    let Some(cmd) = args.first() else { usage() };
    let rest = &args[1..];
    match cmd.as_str() {
        "connect" => cmd_connect(rest),
        "tfo" => cmd_tfo(rest),
        "tfo-connect" => cmd_tfo_connect(rest),
        "door" => cmd_door(rest),
        "dlsym-sanity" => cmd_dlsym_sanity(),
        "sig-connect" => cmd_sig_connect(rest),
        "sigio-server" => cmd_sigio_server(rest),
        "badptr" => cmd_badptr(rest),
        "listen" => cmd_listen(rest),
        "udp-connect" => cmd_udp_connect(rest),
        "exec" => cmd_exec(rest),
        "rcmd" => cmd_rcmd(rest),
        _ => usage(),
    }
}

/// `--fork`: the subcommand runs in a forked child; the parent waits (bounded) and
/// exits with the child's status (a signal death is reported as `child killed by
/// signal N`).
fn fork_and_wait() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: fork in a single-threaded program; the child just goes on with main.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        die("fork");
    }
    if pid == 0 {
        return;
    }
    let until = Instant::now() + Duration::from_secs(15);
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a live status slot.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if Instant::now() > until {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            println!("child hung");
            exit(1);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if libc::WIFSIGNALED(status) {
        println!("child killed by signal {}", libc::WTERMSIG(status));
        exit(1);
    }
    exit(libc::WEXITSTATUS(status));
}

/// `udp-connect ADDR`: a UDP socket connected to ADDR, then `hello\n` sent on it.
fn cmd_udp_connect(args: &[String]) {
    let dest = parse_addr(args.first().unwrap_or_else(|| usage()));
    // SAFETY: socket(2) takes plain integers.
    let fd = unsafe { libc::socket(family_of(&dest), libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        die("socket");
    }
    let (sa, len) = raw_addr(&dest);
    // SAFETY: sa is a sockaddr of len bytes.
    let r = unsafe { libc::connect(fd, (&sa as *const sockaddr_storage).cast(), len) };
    if r < 0 {
        println!("{}", res(-1));
        return;
    }
    // SAFETY: a static buffer to our own socket.
    let w = unsafe { libc::send(fd, b"hello\n".as_ptr().cast(), 6, 0) };
    println!("{}", if w == 6 { "ok".to_string() } else { res(-1) });
}

// ---------------------------------------------------------------------------------
// connect with a chosen sockaddr length
// ---------------------------------------------------------------------------------

fn bind_ip(fd: c_int, ip: IpAddr) {
    let (sa, len) = raw_addr(&SocketAddr::new(ip, 0));
    // SAFETY: sa is a sockaddr of len bytes, alive across the call.
    if unsafe { libc::bind(fd, (&sa as *const sockaddr_storage).cast(), len) } < 0 {
        die("bind");
    }
}

fn bind_device(fd: c_int, dev: &str) {
    // SAFETY: the option value is dev's bytes, of the length given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            dev.as_ptr().cast(),
            dev.len() as socklen_t,
        )
    };
    if r < 0 {
        die("setsockopt(SO_BINDTODEVICE)");
    }
}

fn cmd_connect(args: &[String]) {
    let pos = positional(args, &["--len", "--bind", "--device", "--nonblock-ms"]);
    let dest = parse_addr(pos.first().unwrap_or_else(|| usage()));
    let fd = tcp_socket(family_of(&dest));
    if let Some(dev) = opt_value(args, "--device") {
        bind_device(fd, dev);
    }
    if let Some(b) = opt_value(args, "--bind") {
        bind_ip(fd, b.parse().unwrap_or_else(|_| usage()));
    }
    let nonblock_ms: Option<i32> =
        opt_value(args, "--nonblock-ms").map(|v| v.parse().unwrap_or_else(|_| usage()));
    if nonblock_ms.is_some() {
        // SAFETY: fcntl on our own fd.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    }
    let (sa, full) = raw_addr(&dest);
    let len: socklen_t = opt_value(args, "--len")
        .map(|v| v.parse().unwrap_or_else(|_| usage()))
        .unwrap_or(full);
    // SAFETY: sa is a full sockaddr_storage (128 bytes), so any len up to 128 is readable.
    let r = unsafe { libc::connect(fd, (&sa as *const sockaddr_storage).cast(), len) };
    if r < 0 {
        let e = errno();
        match nonblock_ms {
            Some(ms) if e == libc::EINPROGRESS => {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let n = unsafe { libc::poll(&mut p, 1, ms) };
                if n == 0 {
                    println!("error ETIMEDOUT {}", libc::ETIMEDOUT);
                    return;
                }
                let mut err: c_int = 0;
                let mut l = mem::size_of::<c_int>() as socklen_t;
                // SAFETY: err/l are live locals of the announced size.
                unsafe {
                    libc::getsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_ERROR,
                        (&mut err as *mut c_int).cast(),
                        &mut l,
                    )
                };
                if err != 0 {
                    println!("error {} {err}", ename(err));
                    return;
                }
            }
            _ => {
                println!("error {} {e}", ename(e));
                return;
            }
        }
    }
    // SAFETY: writing a static buffer to our own socket.
    unsafe { libc::write(fd, b"hello\n".as_ptr().cast(), 6) };
    println!("ok");
    // SAFETY: closing our own socket.
    unsafe { libc::close(fd) };
}

// ---------------------------------------------------------------------------------
// TCP Fast Open
// ---------------------------------------------------------------------------------

/// `dlsym(dlopen("libc.so.6", RTLD_NOW), name)`, null when missing.
fn libc_sym(name: &CStr) -> *mut c_void {
    // SAFETY: dlopen/dlsym with NUL-terminated names.
    unsafe {
        let h = libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOW);
        if h.is_null() {
            return ptr::null_mut();
        }
        libc::dlsym(h, name.as_ptr())
    }
}

fn cmd_tfo(args: &[String]) {
    let pos = positional(args, &["--len"]);
    let (Some(kind), Some(dest)) = (pos.first(), pos.get(1)) else {
        usage()
    };
    let dest = parse_addr(dest);
    let fd = if has_flag(args, "--mptcp") {
        // SAFETY: socket(2) takes plain integers.
        let fd = unsafe {
            libc::socket(
                family_of(&dest),
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                libc::IPPROTO_MPTCP,
            )
        };
        if fd < 0 {
            die("socket(IPPROTO_MPTCP)");
        }
        fd
    } else {
        tcp_socket(family_of(&dest))
    };
    let (sa, full) = raw_addr(&dest);
    let len: socklen_t = opt_value(args, "--len")
        .map(|v| v.parse().unwrap_or_else(|_| usage()))
        .unwrap_or(full);
    let sap = (&sa as *const sockaddr_storage).cast::<sockaddr>();
    let mut iov = libc::iovec {
        iov_base: TFO_DATA.as_ptr() as *mut c_void,
        iov_len: TFO_DATA.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = sap as *mut c_void;
    msg.msg_namelen = len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let mut vec = [
        libc::mmsghdr {
            msg_hdr: msg,
            msg_len: 0,
        },
        libc::mmsghdr {
            msg_hdr: msg,
            msg_len: 0,
        },
    ];
    let flags = libc::MSG_FASTOPEN | libc::MSG_NOSIGNAL;
    // SAFETY: every pointer below is to a live local (sa, iov, msg, vec) or a function
    // pointer of the named libc symbol with its C signature.
    let r: i64 = unsafe {
        match kind.as_str() {
            "sendto" => libc::sendto(
                fd,
                TFO_DATA.as_ptr().cast(),
                TFO_DATA.len(),
                flags,
                sap,
                len,
            ) as i64,
            "sendmsg" => libc::sendmsg(fd, &msg, flags) as i64,
            "sendmmsg" => libc::sendmmsg(fd, vec.as_mut_ptr(), 1, flags) as i64,
            "sendmmsg2" => libc::sendmmsg(fd, vec.as_mut_ptr(), 2, flags) as i64,
            "dl-sendto" | "dl-sendmsg" | "dl-sendmmsg" | "__sendmmsg" => {
                let name = match kind.as_str() {
                    "dl-sendto" => c"sendto",
                    "dl-sendmsg" => c"sendmsg",
                    "dl-sendmmsg" => c"sendmmsg",
                    _ => c"__sendmmsg",
                };
                let p = libc_sym(name);
                if p.is_null() {
                    println!("nosym");
                    return;
                }
                match kind.as_str() {
                    "dl-sendto" => mem::transmute::<*mut c_void, SendtoFn>(p)(
                        fd,
                        TFO_DATA.as_ptr().cast(),
                        TFO_DATA.len(),
                        flags,
                        sap,
                        len,
                    ) as i64,
                    "dl-sendmsg" => {
                        mem::transmute::<*mut c_void, SendmsgFn>(p)(fd, &msg, flags) as i64
                    }
                    _ => {
                        mem::transmute::<*mut c_void, SendmmsgFn>(p)(fd, vec.as_mut_ptr(), 1, flags)
                            as i64
                    }
                }
            }
            _ => usage(),
        }
    };
    if r < 0 {
        println!("{}", res(r));
    } else {
        let sent = if kind.contains("sendmmsg") {
            vec[0].msg_len as i64
        } else {
            r
        };
        println!("ok sent {sent}");
    }
    // SAFETY: our own socket.
    unsafe {
        libc::shutdown(fd, libc::SHUT_WR);
        libc::close(fd);
    }
}

fn cmd_tfo_connect(args: &[String]) {
    let dest = parse_addr(args.first().unwrap_or_else(|| usage()));
    let fd = tcp_socket(family_of(&dest));
    let one: c_int = 1;
    // SAFETY: option value is a live c_int.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_FASTOPEN_CONNECT,
            (&one as *const c_int).cast(),
            mem::size_of::<c_int>() as socklen_t,
        )
    };
    if r < 0 {
        println!("setsockopt {}", res(-1));
        exit(1);
    }
    let (sa, len) = raw_addr(&dest);
    // SAFETY: sa is a sockaddr of len bytes.
    let r = unsafe { libc::connect(fd, (&sa as *const sockaddr_storage).cast(), len) };
    println!("connect {}", res(r as i64));
    // SAFETY: writing a static buffer to our own socket.
    let w = unsafe {
        libc::send(
            fd,
            TFO_DATA.as_ptr().cast(),
            TFO_DATA.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    println!("write {}", res(w as i64));
    // SAFETY: our own socket.
    unsafe {
        libc::shutdown(fd, libc::SHUT_WR);
        libc::close(fd);
    }
}

// ---------------------------------------------------------------------------------
// libc side doors
// ---------------------------------------------------------------------------------

fn version_of(name: &str) -> &'static CStr {
    if name == "accept4" {
        ver::ACCEPT4
    } else {
        ver::BASE
    }
}

/// The function `name` (`connect`, `accept`, `accept4`, `listen`) as reached through
/// `method`; null when that door has no such symbol.
fn resolve(method: &str, name: &str) -> *mut c_void {
    let cname = std::ffi::CString::new(name).expect("no NUL");
    // SAFETY: dl* calls with NUL-terminated names and valid handles; the casts of
    // function items to pointers are plain address-taking.
    unsafe {
        let libc_h = libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOW);
        match method {
            "libc" => match name {
                "connect" => libc::connect as *mut c_void,
                "accept" => libc::accept as *mut c_void,
                "accept4" => libc::accept4 as *mut c_void,
                "listen" => libc::listen as *mut c_void,
                _ => usage(),
            },
            "__connect" => match name {
                "connect" => __connect as *mut c_void,
                // glibc exports no __accept/__listen; the name is looked up anyway,
                // in case some version adds one.
                _ => libc::dlsym(
                    libc_h,
                    std::ffi::CString::new(format!("__{name}"))
                        .unwrap()
                        .as_ptr(),
                ),
            },
            "dlopen" => libc::dlsym(libc_h, cname.as_ptr()),
            "dlsym-__name" => {
                let n = std::ffi::CString::new(format!("__{name}")).unwrap();
                libc::dlsym(libc_h, n.as_ptr())
            }
            "dlopen-null" => libc::dlsym(libc::dlopen(ptr::null(), libc::RTLD_NOW), cname.as_ptr()),
            "dlopen-path" => {
                // libc by its full path, as found with dladdr on one of its functions.
                let mut info: libc::Dl_info = mem::zeroed();
                if libc::dladdr(libc::getpid as *const c_void, &mut info) == 0
                    || info.dli_fname.is_null()
                {
                    return ptr::null_mut();
                }
                let h = libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD);
                libc::dlsym(h, cname.as_ptr())
            }
            "dlopen-deepbind" => {
                let h = libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOW | libc::RTLD_DEEPBIND);
                libc::dlsym(h, cname.as_ptr())
            }
            "dlmopen-dlsym-of-dlsym" | "dlmopen-dlvsym" | "dlvsym-of-dlvsym" => {
                type DlvsymFn = unsafe extern "C" fn(
                    *mut c_void,
                    *const libc::c_char,
                    *const libc::c_char,
                ) -> *mut c_void;
                let h = if method == "dlvsym-of-dlvsym" {
                    libc_h
                } else {
                    libc::dlmopen(libc::LM_ID_NEWLM, c"libc.so.6".as_ptr(), libc::RTLD_NOW)
                };
                if h.is_null() {
                    return ptr::null_mut();
                }
                match method {
                    "dlmopen-dlsym-of-dlsym" => {
                        let d = libc::dlsym(h, c"dlsym".as_ptr());
                        if d.is_null() {
                            return d;
                        }
                        mem::transmute::<*mut c_void, DlsymFn>(d)(h, cname.as_ptr())
                    }
                    "dlmopen-dlvsym" => libc::dlvsym(h, cname.as_ptr(), version_of(name).as_ptr()),
                    _ => {
                        let d = libc::dlsym(h, c"dlvsym".as_ptr());
                        if d.is_null() {
                            return d;
                        }
                        mem::transmute::<*mut c_void, DlvsymFn>(d)(
                            h,
                            cname.as_ptr(),
                            version_of(name).as_ptr(),
                        )
                    }
                }
            }
            "dlmopen" => {
                // A second libc in a new link-map namespace, where no LD_PRELOAD is.
                let h = libc::dlmopen(libc::LM_ID_NEWLM, c"libc.so.6".as_ptr(), libc::RTLD_NOW);
                if h.is_null() {
                    return ptr::null_mut();
                }
                libc::dlsym(h, cname.as_ptr())
            }
            "dlvsym-default" => libc::dlvsym(
                libc::RTLD_DEFAULT,
                cname.as_ptr(),
                version_of(name).as_ptr(),
            ),
            "dlvsym-libc" => libc::dlvsym(libc_h, cname.as_ptr(), version_of(name).as_ptr()),
            "rtld-next" => libc::dlsym(libc::RTLD_NEXT, cname.as_ptr()),
            "rtld-default" => libc::dlsym(libc::RTLD_DEFAULT, cname.as_ptr()),
            "dlsym-of-dlsym" => {
                let d = libc::dlsym(libc_h, c"dlsym".as_ptr());
                if d.is_null() {
                    return d;
                }
                mem::transmute::<*mut c_void, DlsymFn>(d)(libc_h, cname.as_ptr())
            }
            "dlvsym-of-dlsym" => {
                let d = libc::dlvsym(libc_h, c"dlsym".as_ptr(), ver::DLSYM.as_ptr());
                if d.is_null() {
                    return d;
                }
                mem::transmute::<*mut c_void, DlsymFn>(d)(libc_h, cname.as_ptr())
            }
            _ => usage(),
        }
    }
}

fn cmd_door(args: &[String]) {
    let pos = positional(args, &["--max"]);
    let (Some(method), Some(call), Some(addr)) = (pos.first(), pos.get(1), pos.get(2)) else {
        usage()
    };
    let addr = parse_addr(addr);
    let p = resolve(method, call);
    if p.is_null() {
        println!("nosym");
        return;
    }
    let (sa, len) = raw_addr(&addr);
    let sap = (&sa as *const sockaddr_storage).cast::<sockaddr>();
    let fd = tcp_socket(family_of(&addr));
    // SAFETY: p is libc's (or the hook's) function of that name with its C signature;
    // the address arguments are live locals of the announced sizes.
    unsafe {
        match call.as_str() {
            "connect" => {
                let r = mem::transmute::<*mut c_void, ConnectFn>(p)(fd, sap, len);
                println!("{}", res(r as i64));
                if r == 0 {
                    libc::write(fd, b"hello\n".as_ptr().cast(), 6);
                }
            }
            "listen" => {
                if libc::bind(fd, sap, len) < 0 {
                    die("bind");
                }
                let r = mem::transmute::<*mut c_void, ListenFn>(p)(fd, 16);
                println!("{}", res(r as i64));
            }
            "accept" | "accept4" => {
                let max: usize = opt_value(args, "--max")
                    .map(|v| v.parse().unwrap_or_else(|_| usage()))
                    .unwrap_or(1);
                if libc::bind(fd, sap, len) < 0 {
                    die("bind");
                }
                if libc::listen(fd, 16) < 0 {
                    die("listen");
                }
                println!("listening {}", local_of(fd));
                let mut served = 0;
                while served < max {
                    let mut peer: sockaddr_storage = mem::zeroed();
                    let mut pl = mem::size_of::<sockaddr_storage>() as socklen_t;
                    let pp = (&mut peer as *mut sockaddr_storage).cast::<sockaddr>();
                    let c = if call == "accept" {
                        mem::transmute::<*mut c_void, AcceptFn>(p)(fd, pp, &mut pl)
                    } else {
                        mem::transmute::<*mut c_void, Accept4Fn>(p)(
                            fd,
                            pp,
                            &mut pl,
                            libc::SOCK_CLOEXEC,
                        )
                    };
                    if c < 0 {
                        let e = errno();
                        if e == libc::EINTR || e == libc::ECONNABORTED {
                            continue;
                        }
                        die(call);
                    }
                    libc::write(c, BANNER.as_ptr().cast(), BANNER.len());
                    println!("accepted {}", fmt_storage(&peer));
                    libc::close(c);
                    served += 1;
                }
                println!("served {served}");
            }
            _ => usage(),
        }
    }
}

fn fmt_storage(ss: &sockaddr_storage) -> String {
    // SAFETY: the family says which struct the storage holds.
    unsafe {
        match ss.ss_family as c_int {
            libc::AF_INET => {
                let s = &*(ss as *const sockaddr_storage).cast::<libc::sockaddr_in>();
                format!(
                    "{}:{}",
                    Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr)),
                    u16::from_be(s.sin_port)
                )
            }
            libc::AF_INET6 => {
                let s = &*(ss as *const sockaddr_storage).cast::<libc::sockaddr_in6>();
                format!(
                    "[{}]:{}",
                    std::net::Ipv6Addr::from(s.sin6_addr.s6_addr),
                    u16::from_be(s.sin6_port)
                )
            }
            f => format!("family-{f}"),
        }
    }
}

fn local_of(fd: c_int) -> String {
    // SAFETY: getsockname into a live sockaddr_storage of the announced size.
    unsafe {
        let mut ss: sockaddr_storage = mem::zeroed();
        let mut l = mem::size_of::<sockaddr_storage>() as socklen_t;
        if libc::getsockname(fd, (&mut ss as *mut sockaddr_storage).cast(), &mut l) < 0 {
            die("getsockname");
        }
        fmt_storage(&ss)
    }
}

fn cmd_dlsym_sanity() {
    // SAFETY: dl* calls with NUL-terminated names; the functions are called with their
    // C signatures.
    unsafe {
        let check = |name: &str, ok: bool, why: &str| {
            if ok {
                println!("{name} ok");
            } else {
                println!("{name} FAILED {why}");
            }
        };
        let libc_h = libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOW);
        check("dlopen-libc", !libc_h.is_null(), "null handle");

        let s = libc::dlsym(libc::RTLD_DEFAULT, c"strlen".as_ptr());
        type StrlenFn = unsafe extern "C" fn(*const libc::c_char) -> usize;
        let n = if s.is_null() {
            0
        } else {
            mem::transmute::<*mut c_void, StrlenFn>(s)(c"sockexit".as_ptr())
        };
        check(
            "dlsym-default-strlen",
            n == 8,
            &format!("strlen via dlsym gave {n}"),
        );

        let s = libc::dlsym(libc_h, c"strlen".as_ptr());
        let n = if s.is_null() {
            0
        } else {
            mem::transmute::<*mut c_void, StrlenFn>(s)(c"abc".as_ptr())
        };
        check(
            "dlsym-libc-strlen",
            n == 3,
            &format!("strlen via dlsym(libc) gave {n}"),
        );

        let m = libc::dlsym(libc::RTLD_NEXT, c"malloc".as_ptr());
        type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
        let ok = !m.is_null() && {
            let p = mem::transmute::<*mut c_void, MallocFn>(m)(64);
            let ok = !p.is_null();
            libc::free(p);
            ok
        };
        check("dlsym-next-malloc", ok, "null or malloc failed");

        let g = libc::dlsym(libc::RTLD_NEXT, c"getpid".as_ptr());
        type GetpidFn = unsafe extern "C" fn() -> libc::pid_t;
        let ok = !g.is_null() && mem::transmute::<*mut c_void, GetpidFn>(g)() == libc::getpid();
        check("dlsym-next-getpid", ok, "null or wrong pid");

        // An unhooked socket call through the doors: socket() still works.
        let so = libc::dlvsym(libc::RTLD_DEFAULT, c"socket".as_ptr(), ver::BASE.as_ptr());
        type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
        let fd = if so.is_null() {
            -1
        } else {
            mem::transmute::<*mut c_void, SocketFn>(so)(libc::AF_INET, libc::SOCK_STREAM, 0)
        };
        check("dlvsym-default-socket", fd >= 0, "null or socket failed");
        if fd >= 0 {
            libc::close(fd);
        }

        libc::dlerror(); // clear
        let missing = libc::dlsym(libc_h, c"sockexit_no_such_symbol_xyz".as_ptr());
        let err = libc::dlerror();
        check(
            "dlsym-missing-null",
            missing.is_null(),
            "non-null for a missing name",
        );
        check(
            "dlsym-missing-dlerror",
            !err.is_null(),
            "dlerror() is NULL after a failed lookup",
        );
        if !err.is_null() {
            let msg = CStr::from_ptr(err).to_string_lossy();
            check(
                "dlerror-names-symbol",
                msg.contains("sockexit_no_such_symbol_xyz"),
                &format!("dlerror says {msg:?}"),
            );
        }
        check(
            "dlerror-cleared",
            libc::dlerror().is_null(),
            "a second dlerror() is not NULL",
        );

        let missing = libc::dlsym(libc::RTLD_NEXT, c"sockexit_no_such_symbol_xyz".as_ptr());
        let err = libc::dlerror();
        check(
            "dlsym-next-missing",
            missing.is_null() && !err.is_null(),
            "RTLD_NEXT lookup of a missing name: null + dlerror expected",
        );

        let missing = libc::dlvsym(
            libc::RTLD_DEFAULT,
            c"connect".as_ptr(),
            c"GLIBC_9.99".as_ptr(),
        );
        let err = libc::dlerror();
        check(
            "dlvsym-bad-version",
            missing.is_null() && !err.is_null(),
            "dlvsym(connect, GLIBC_9.99): null + dlerror expected",
        );

        // The real address of the hooked names is not the point here; that they are
        // found at all is.
        for name in [c"connect", c"accept", c"accept4", c"listen"] {
            let p = libc::dlsym(libc_h, name.as_ptr());
            check(
                &format!("dlsym-libc-{}", name.to_string_lossy()),
                !p.is_null(),
                "null",
            );
        }
    }
    println!("done");
}

// ---------------------------------------------------------------------------------
// Signal handlers
// ---------------------------------------------------------------------------------

static SIG_FD: AtomicI32 = AtomicI32::new(-1);
static SIG_DEST: AtomicUsize = AtomicUsize::new(0);
static SIG_DEST_LEN: AtomicU32 = AtomicU32::new(0);
static SIG_LISTEN: AtomicI32 = AtomicI32::new(0);
static SIG_RESULT: AtomicI32 = AtomicI32::new(i32::MIN);
static SIG_ERRNO: AtomicI32 = AtomicI32::new(0);
static ACC_RESULT: AtomicI32 = AtomicI32::new(i32::MIN);
static ACC_ERRNO: AtomicI32 = AtomicI32::new(0);
static ACC_TID: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_usr1(_sig: c_int) {
    let saved = errno();
    let fd = SIG_FD.load(Ordering::SeqCst);
    // SAFETY: connect/listen are async-signal-safe; the address is a leaked, live
    // sockaddr_storage set before the signal was sent.
    let r = unsafe {
        if SIG_LISTEN.load(Ordering::SeqCst) == 1 {
            libc::listen(fd, 4)
        } else if SIG_LISTEN.load(Ordering::SeqCst) == 2 {
            libc::sendto(
                fd,
                TFO_DATA.as_ptr().cast(),
                TFO_DATA.len(),
                libc::MSG_FASTOPEN | libc::MSG_NOSIGNAL,
                SIG_DEST.load(Ordering::SeqCst) as *const sockaddr,
                SIG_DEST_LEN.load(Ordering::SeqCst),
            ) as c_int
        } else {
            libc::connect(
                fd,
                SIG_DEST.load(Ordering::SeqCst) as *const sockaddr,
                SIG_DEST_LEN.load(Ordering::SeqCst),
            )
        }
    };
    SIG_ERRNO.store(if r < 0 { errno() } else { 0 }, Ordering::SeqCst);
    SIG_RESULT.store(r, Ordering::SeqCst);
    // SAFETY: restoring this thread's errno.
    unsafe { *libc::__errno_location() = saved };
}

fn install(sig: c_int, handler: extern "C" fn(c_int), restart: bool) {
    // SAFETY: sigaction with a zeroed, then filled, struct; the handler is a plain
    // extern "C" fn.
    unsafe {
        let mut sa: libc::sigaction = mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = if restart { libc::SA_RESTART } else { 0 };
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, ptr::null_mut()) < 0 {
            die("sigaction");
        }
    }
}

/// The syscall a thread of this process is blocked in (`/proc/self/task/TID/syscall`).
fn blocked_syscall(tid: i32) -> Option<i64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn cmd_sig_connect(args: &[String]) {
    let pos = positional(args, &["--handler", "--block-on"]);
    let (Some(kind), Some(dest)) = (pos.first(), pos.get(1)) else {
        usage()
    };
    let use4 = match kind.as_str() {
        "accept" | "connect" => false,
        "accept4" => true,
        _ => usage(),
    };
    let block_on: Option<SocketAddr> = opt_value(args, "--block-on").map(parse_addr);
    if kind == "connect" && block_on.is_none() {
        usage();
    }
    let dest = parse_addr(dest);
    let restart = has_flag(args, "--restart");
    let handler = opt_value(args, "--handler").unwrap_or("connect");
    let handler_listen = match handler {
        "connect" | "sendto" => false,
        "listen" => true,
        _ => usage(),
    };
    if handler == "sendto" {
        SIG_LISTEN.store(2, Ordering::SeqCst);
    }

    // The idle, blocking listener the thread waits on (allowed by the tests' policies).
    let lfd = tcp_socket(libc::AF_INET);
    bind_ip(lfd, IpAddr::V4(Ipv4Addr::LOCALHOST));
    // SAFETY: listen on our own socket.
    if unsafe { libc::listen(lfd, 4) } < 0 {
        die("listen");
    }

    let sfd = tcp_socket(family_of(&dest));
    let (sa, len) = raw_addr(&dest);
    if handler_listen {
        // SAFETY: sa is a sockaddr of len bytes.
        if unsafe { libc::bind(sfd, (&sa as *const sockaddr_storage).cast(), len) } < 0 {
            die("bind");
        }
        SIG_LISTEN.store(1, Ordering::SeqCst);
    }
    let sa: &'static sockaddr_storage = Box::leak(Box::new(sa));
    SIG_FD.store(sfd, Ordering::SeqCst);
    SIG_DEST.store(sa as *const sockaddr_storage as usize, Ordering::SeqCst);
    SIG_DEST_LEN.store(len, Ordering::SeqCst);
    install(libc::SIGUSR1, on_usr1, restart);

    let (tx, rx) = std::sync::mpsc::channel::<libc::pthread_t>();
    std::thread::spawn(move || {
        // SAFETY: plain syscalls on our own fds; pthread_self is always valid.
        unsafe {
            ACC_TID.store(libc::gettid(), Ordering::SeqCst);
            tx.send(libc::pthread_self()).unwrap();
            let r = if let Some(b) = block_on {
                // A blocking connect to a listener whose queue is full: the SYN is
                // dropped and the call waits inside the hook.
                let c = tcp_socket(libc::AF_INET);
                let (sa, len) = raw_addr(&b);
                libc::connect(c, (&sa as *const sockaddr_storage).cast(), len)
            } else if use4 {
                libc::accept4(lfd, ptr::null_mut(), ptr::null_mut(), libc::SOCK_CLOEXEC)
            } else {
                libc::accept(lfd, ptr::null_mut(), ptr::null_mut())
            };
            ACC_ERRNO.store(if r < 0 { errno() } else { 0 }, Ordering::SeqCst);
            ACC_RESULT.store(r, Ordering::SeqCst);
        }
    });
    let thread = rx.recv().expect("thread started");
    // Wait until the thread is really blocked in the accept syscall.
    let tid = loop {
        let t = ACC_TID.load(Ordering::SeqCst);
        if t != 0 {
            break t;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let want = if block_on.is_some() {
        libc::SYS_connect
    } else if use4 {
        libc::SYS_accept4
    } else {
        libc::SYS_accept
    };
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if blocked_syscall(tid) == Some(want) {
            break;
        }
        if Instant::now() > until {
            println!("error thread never blocked in {kind}");
            exit(1);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    // SAFETY: signalling a live thread of ours.
    unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
    let until = Instant::now() + Duration::from_secs(10);
    while SIG_RESULT.load(Ordering::SeqCst) == i32::MIN {
        if Instant::now() > until {
            println!("error handler never ran");
            exit(1);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = SIG_RESULT.load(Ordering::SeqCst);
    let e = SIG_ERRNO.load(Ordering::SeqCst);
    if r < 0 {
        println!("handler error {} {e}", ename(e));
    } else {
        println!("handler ok");
    }
    // What the interrupted accept did: EINTR without SA_RESTART, still blocked with it.
    let until = Instant::now() + Duration::from_millis(if restart { 300 } else { 5000 });
    while ACC_RESULT.load(Ordering::SeqCst) == i32::MIN && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    match ACC_RESULT.load(Ordering::SeqCst) {
        i32::MIN => println!("{kind} still blocked"),
        r if r < 0 => {
            let e = ACC_ERRNO.load(Ordering::SeqCst);
            println!("{kind} error {} {e}", ename(e))
        }
        _ => println!("{kind} ok"),
    }
    // SAFETY: flushes nothing we need; the blocked thread dies with the process.
    unsafe { libc::_exit(0) };
}

static IO_FD: AtomicI32 = AtomicI32::new(-1);
static SERVED: AtomicU32 = AtomicU32::new(0);
static MAX: AtomicU32 = AtomicU32::new(1);

/// Formats `accepted a.b.c.d:port\n` into `buf` without allocating (signal handler).
fn fmt_peer_line(buf: &mut [u8; 64], ss: &sockaddr_storage) -> usize {
    fn put(buf: &mut [u8; 64], n: &mut usize, s: &[u8]) {
        for &b in s {
            if *n < buf.len() {
                buf[*n] = b;
                *n += 1;
            }
        }
    }
    fn put_num(buf: &mut [u8; 64], n: &mut usize, mut v: u32) {
        let mut d = [0u8; 10];
        let mut i = 0;
        loop {
            d[i] = b'0' + (v % 10) as u8;
            i += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        while i > 0 {
            i -= 1;
            put(buf, n, &[d[i]]);
        }
    }
    let mut n = 0;
    put(buf, &mut n, b"accepted ");
    if ss.ss_family as c_int == libc::AF_INET {
        // SAFETY: the family says the storage holds a sockaddr_in.
        let s = unsafe { &*(ss as *const sockaddr_storage).cast::<libc::sockaddr_in>() };
        let ip = u32::from_be(s.sin_addr.s_addr).to_be_bytes();
        for (i, o) in ip.iter().enumerate() {
            if i > 0 {
                put(buf, &mut n, b".");
            }
            put_num(buf, &mut n, u32::from(*o));
        }
        put(buf, &mut n, b":");
        put_num(buf, &mut n, u32::from(u16::from_be(s.sin_port)));
    } else {
        put(buf, &mut n, b"non-ipv4");
    }
    put(buf, &mut n, b"\n");
    n
}

extern "C" fn on_sigio(_sig: c_int) {
    let saved = errno();
    let fd = IO_FD.load(Ordering::SeqCst);
    loop {
        // SAFETY: accept/write/close are async-signal-safe; buffers are locals.
        unsafe {
            let mut ss: sockaddr_storage = mem::zeroed();
            let mut l = mem::size_of::<sockaddr_storage>() as socklen_t;
            let c = libc::accept(fd, (&mut ss as *mut sockaddr_storage).cast(), &mut l);
            if c < 0 {
                break;
            }
            libc::write(c, BANNER.as_ptr().cast(), BANNER.len());
            let mut line = [0u8; 64];
            let n = fmt_peer_line(&mut line, &ss);
            libc::write(1, line.as_ptr().cast(), n);
            libc::close(c);
            if SERVED.fetch_add(1, Ordering::SeqCst) + 1 >= MAX.load(Ordering::SeqCst) {
                libc::write(1, b"done\n".as_ptr().cast(), 5);
                libc::_exit(0);
            }
        }
    }
    // SAFETY: restoring this thread's errno.
    unsafe { *libc::__errno_location() = saved };
}

fn cmd_sigio_server(args: &[String]) {
    let main_mode = opt_value(args, "--main").unwrap_or("accept");
    let restart = has_flag(args, "--restart");
    let max: u32 = opt_value(args, "--max")
        .map(|v| v.parse().unwrap_or_else(|_| usage()))
        .unwrap_or(1);
    MAX.store(max, Ordering::SeqCst);

    let afd = tcp_socket(libc::AF_INET);
    bind_ip(afd, IpAddr::V4(Ipv4Addr::LOCALHOST));
    // An idle second listener the main thread blocks on.
    let idle = tcp_socket(libc::AF_INET);
    bind_ip(idle, IpAddr::V4(Ipv4Addr::LOCALHOST));
    // SAFETY: fcntl/listen on our own sockets.
    unsafe {
        if libc::listen(afd, 16) < 0 || libc::listen(idle, 4) < 0 {
            die("listen");
        }
        IO_FD.store(afd, Ordering::SeqCst);
        install(libc::SIGIO, on_sigio, restart);
        // SIGIO to this (the main) thread: F_SETOWN_EX / F_OWNER_TID (fcntl(2)).
        #[repr(C)]
        struct FOwnerEx {
            kind: c_int,
            pid: libc::pid_t,
        }
        const F_SETOWN_EX: c_int = 15;
        const F_OWNER_TID: c_int = 0;
        let owner = FOwnerEx {
            kind: F_OWNER_TID,
            pid: libc::gettid(),
        };
        if libc::fcntl(afd, F_SETOWN_EX, &owner as *const FOwnerEx) < 0
            || libc::fcntl(afd, libc::F_SETFL, libc::O_ASYNC | libc::O_NONBLOCK) < 0
        {
            die("fcntl");
        }
    }
    let listening = format!("listening {}", local_of(afd));
    if main_mode == "accept" {
        // Announce only once the main thread is blocked inside the hooked accept, so
        // every SIGIO lands there. The announcing thread blocks SIGIO itself.
        // SAFETY: gettid has no preconditions.
        let main_tid = unsafe { libc::gettid() };
        std::thread::spawn(move || {
            // SAFETY: a sigset of our own, applied to this thread only.
            unsafe {
                let mut set: libc::sigset_t = mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGIO);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut());
            }
            let until = Instant::now() + Duration::from_secs(10);
            while blocked_syscall(main_tid) != Some(libc::SYS_accept) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(20));
            println!("{listening}");
        });
    } else {
        println!("{listening}");
    }
    loop {
        match main_mode {
            // SAFETY: accept on our own idle listener; nobody connects to it.
            "accept" => unsafe {
                let _ = libc::accept(idle, ptr::null_mut(), ptr::null_mut());
            },
            "sleep" => std::thread::sleep(Duration::from_millis(50)),
            _ => usage(),
        }
    }
}

// ---------------------------------------------------------------------------------
// Bad pointers
// ---------------------------------------------------------------------------------

/// Every `badptr` case.
pub const BADPTR_CASES: &[&str] = &[
    "accept-addr1",
    "accept4-addr1",
    "accept-len-ro",
    "accept4-len-ro",
    "accept-len1",
    "accept-lennull",
    "accept-addr-straddle",
    "connect-addr1",
    "connect6-addr1",
    "connect-addr-straddle",
    "connect6-addr-straddle",
    "sendto-fastopen-addr1",
    "sendto-fastopen-addr-straddle",
    "sendmsg-fastopen-name-straddle",
    "sendmsg-fastopen-name1",
    "sendmsg-fastopen-msg1",
    "sendmmsg-fastopen-vec1",
];

/// Two pages: the first read-write, the second PROT_NONE. Returns the first's address.
fn guarded_page() -> *mut u8 {
    // SAFETY: anonymous private mapping; mprotect of its second page.
    unsafe {
        let pg = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let p = libc::mmap(
            ptr::null_mut(),
            2 * pg,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            die("mmap");
        }
        libc::mprotect((p as *mut u8).add(pg).cast(), pg, libc::PROT_NONE);
        p.cast()
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf takes a plain integer.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// A listener on 127.0.0.1 with one connection pending (made by this program).
fn listener_with_pending() -> (c_int, c_int) {
    let l = tcp_socket(libc::AF_INET);
    bind_ip(l, IpAddr::V4(Ipv4Addr::LOCALHOST));
    // SAFETY: our own sockets; the address is a live local.
    unsafe {
        if libc::listen(l, 4) < 0 {
            die("listen");
        }
        let mut ss: sockaddr_storage = mem::zeroed();
        let mut sl = mem::size_of::<sockaddr_storage>() as socklen_t;
        libc::getsockname(l, (&mut ss as *mut sockaddr_storage).cast(), &mut sl);
        let c = tcp_socket(libc::AF_INET);
        if libc::connect(c, (&ss as *const sockaddr_storage).cast(), sl) < 0 {
            die("connect to own listener");
        }
        (l, c)
    }
}

/// The bad pointers are exactly `(void*)1`, as the review used, not `dangling()`.
#[allow(clippy::manual_dangling_ptr)]
fn cmd_badptr(args: &[String]) {
    let case = args.first().unwrap_or_else(|| usage()).as_str();
    if !BADPTR_CASES.contains(&case) {
        usage();
    }
    let one = 1usize as *mut sockaddr;
    let pg = page_size();
    // SAFETY: this function deliberately passes invalid pointers to the kernel-facing
    // calls; the kernel (and a correct library) must answer EFAULT without touching
    // them from user space. Every other pointer is a live local or our own mapping.
    let r: i64 = unsafe {
        match case {
            "accept-addr1" | "accept4-addr1" => {
                let (l, _c) = listener_with_pending();
                let mut len = mem::size_of::<libc::sockaddr_in>() as socklen_t;
                if case == "accept-addr1" {
                    libc::accept(l, one, &mut len) as i64
                } else {
                    libc::accept4(l, one, &mut len, libc::SOCK_CLOEXEC) as i64
                }
            }
            "accept-len-ro" | "accept4-len-ro" => {
                let (l, _c) = listener_with_pending();
                let p = libc::mmap(
                    ptr::null_mut(),
                    pg,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                if p == libc::MAP_FAILED {
                    die("mmap");
                }
                *(p as *mut socklen_t) = mem::size_of::<sockaddr_storage>() as socklen_t;
                libc::mprotect(p, pg, libc::PROT_READ);
                let mut ss: sockaddr_storage = mem::zeroed();
                let sp = (&mut ss as *mut sockaddr_storage).cast();
                if case == "accept-len-ro" {
                    libc::accept(l, sp, p.cast()) as i64
                } else {
                    libc::accept4(l, sp, p.cast(), 0) as i64
                }
            }
            "accept-len1" => {
                let (l, _c) = listener_with_pending();
                let mut ss: sockaddr_storage = mem::zeroed();
                libc::accept(
                    l,
                    (&mut ss as *mut sockaddr_storage).cast(),
                    1usize as *mut socklen_t,
                ) as i64
            }
            "accept-lennull" => {
                let (l, _c) = listener_with_pending();
                let mut ss: sockaddr_storage = mem::zeroed();
                libc::accept(
                    l,
                    (&mut ss as *mut sockaddr_storage).cast(),
                    ptr::null_mut(),
                ) as i64
            }
            "accept-addr-straddle" => {
                // 8 writable bytes, then a PROT_NONE page; len says 16.
                let (l, _c) = listener_with_pending();
                let p = guarded_page().add(pg - 8);
                let mut len = mem::size_of::<libc::sockaddr_in>() as socklen_t;
                libc::accept(l, p.cast(), &mut len) as i64
            }
            "connect-addr1" => {
                let fd = tcp_socket(libc::AF_INET);
                libc::connect(fd, one, mem::size_of::<libc::sockaddr_in>() as socklen_t) as i64
            }
            "connect6-addr1" => {
                let fd = tcp_socket(libc::AF_INET6);
                libc::connect(fd, one, mem::size_of::<libc::sockaddr_in6>() as socklen_t) as i64
            }
            "connect-addr-straddle" => {
                // A sockaddr_in whose first 8 bytes (family, port, address 127.0.0.1)
                // are readable and whose zero padding lies in a PROT_NONE page.
                let fd = tcp_socket(libc::AF_INET);
                let p = guarded_page().add(pg - 8);
                let (sa, _) = raw_addr(&"127.0.0.1:9".parse().unwrap());
                ptr::copy_nonoverlapping((&sa as *const sockaddr_storage).cast::<u8>(), p, 8);
                libc::connect(
                    fd,
                    p.cast(),
                    mem::size_of::<libc::sockaddr_in>() as socklen_t,
                ) as i64
            }
            "connect6-addr-straddle" => {
                // A sockaddr_in6 for [::1]:9 with its first 24 bytes readable (the whole
                // RFC 2133 form) and the scope id in a PROT_NONE page; len says 28.
                let fd = tcp_socket(libc::AF_INET6);
                let p = guarded_page().add(pg - 24);
                let (sa, _) = raw_addr(&"[::1]:9".parse().unwrap());
                ptr::copy_nonoverlapping((&sa as *const sockaddr_storage).cast::<u8>(), p, 24);
                libc::connect(
                    fd,
                    p.cast(),
                    mem::size_of::<libc::sockaddr_in6>() as socklen_t,
                ) as i64
            }
            "sendto-fastopen-addr-straddle" | "sendmsg-fastopen-name-straddle" => {
                // As connect-addr-straddle, for the TFO sends.
                let fd = tcp_socket(libc::AF_INET);
                let p = guarded_page().add(pg - 8);
                let (sa, _) = raw_addr(&"127.0.0.1:9".parse().unwrap());
                ptr::copy_nonoverlapping((&sa as *const sockaddr_storage).cast::<u8>(), p, 8);
                let flags = libc::MSG_FASTOPEN | libc::MSG_NOSIGNAL;
                if case == "sendto-fastopen-addr-straddle" {
                    libc::sendto(
                        fd,
                        TFO_DATA.as_ptr().cast(),
                        TFO_DATA.len(),
                        flags,
                        p.cast(),
                        16,
                    ) as i64
                } else {
                    let mut iov = libc::iovec {
                        iov_base: TFO_DATA.as_ptr() as *mut c_void,
                        iov_len: TFO_DATA.len(),
                    };
                    let mut msg: libc::msghdr = mem::zeroed();
                    msg.msg_name = p.cast();
                    msg.msg_namelen = 16;
                    msg.msg_iov = &mut iov;
                    msg.msg_iovlen = 1;
                    libc::sendmsg(fd, &msg, flags) as i64
                }
            }
            "sendto-fastopen-addr1" => {
                let fd = tcp_socket(libc::AF_INET);
                libc::sendto(
                    fd,
                    TFO_DATA.as_ptr().cast(),
                    TFO_DATA.len(),
                    libc::MSG_FASTOPEN | libc::MSG_NOSIGNAL,
                    one,
                    16,
                ) as i64
            }
            "sendmsg-fastopen-name1" => {
                let fd = tcp_socket(libc::AF_INET);
                let mut iov = libc::iovec {
                    iov_base: TFO_DATA.as_ptr() as *mut c_void,
                    iov_len: TFO_DATA.len(),
                };
                let mut msg: libc::msghdr = mem::zeroed();
                msg.msg_name = one.cast();
                msg.msg_namelen = 16;
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                libc::sendmsg(fd, &msg, libc::MSG_FASTOPEN | libc::MSG_NOSIGNAL) as i64
            }
            "sendmsg-fastopen-msg1" => {
                let fd = tcp_socket(libc::AF_INET);
                libc::sendmsg(
                    fd,
                    1usize as *const libc::msghdr,
                    libc::MSG_FASTOPEN | libc::MSG_NOSIGNAL,
                ) as i64
            }
            "sendmmsg-fastopen-vec1" => {
                let fd = tcp_socket(libc::AF_INET);
                libc::sendmmsg(
                    fd,
                    1usize as *mut libc::mmsghdr,
                    1,
                    libc::MSG_FASTOPEN | libc::MSG_NOSIGNAL,
                ) as i64
            }
            _ => usage(),
        }
    };
    println!("{case} {}", res(r));
}

// ---------------------------------------------------------------------------------
// listen forms
// ---------------------------------------------------------------------------------

fn cmd_listen(args: &[String]) {
    let pos = positional(args, &["--v6only"]);
    let target = pos.first().unwrap_or_else(|| usage()).as_str();
    let v6only: Option<c_int> =
        opt_value(args, "--v6only").map(|v| v.parse().unwrap_or_else(|_| usage()));
    let (fd, addr) = match target {
        "unbound4" => (tcp_socket(libc::AF_INET), None),
        "unbound6" => (tcp_socket(libc::AF_INET6), None),
        a => {
            let a = parse_addr(a);
            (tcp_socket(family_of(&a)), Some(a))
        }
    };
    if let Some(v) = v6only {
        // SAFETY: option value is a live c_int.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                (&v as *const c_int).cast(),
                mem::size_of::<c_int>() as socklen_t,
            )
        };
        if r < 0 {
            die("setsockopt(IPV6_V6ONLY)");
        }
    }
    if let Some(a) = addr {
        let (sa, len) = raw_addr(&a);
        // SAFETY: sa is a sockaddr of len bytes.
        if unsafe { libc::bind(fd, (&sa as *const sockaddr_storage).cast(), len) } < 0 {
            let e = errno();
            println!("error {} {e}", ename(e));
            eprintln!("attack_bypass: bind {a}: {}", Error::from_raw_os_error(e));
            exit(1);
        }
    }
    // SAFETY: listen on our own socket.
    let r = unsafe { libc::listen(fd, 16) };
    if r < 0 {
        println!("{}", res(-1));
    } else {
        println!("ok {}", local_of(fd));
    }
}

// ---------------------------------------------------------------------------------
// exec with an environment the program builds
// ---------------------------------------------------------------------------------

fn cmd_exec(args: &[String]) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let (Some(form), Some(envmode)) = (args.first(), args.get(1)) else {
        usage()
    };
    let sub = &args[2..];
    if sub.is_empty() {
        usage();
    }
    let exe =
        std::fs::read_link("/proc/self/exe").unwrap_or_else(|_| die("readlink /proc/self/exe"));
    let exe_c = CString::new(exe.as_os_str().as_bytes()).expect("no NUL");
    let mut argv_c: Vec<CString> = vec![exe_c.clone()];
    argv_c.extend(
        sub.iter()
            .map(|a| CString::new(a.as_bytes()).expect("no NUL")),
    );
    let mut env_c: Vec<CString> = Vec::new();
    match envmode.as_str() {
        "empty" => {}
        "no-preload" => {
            for (k, v) in std::env::vars_os() {
                if k != "LD_PRELOAD" {
                    let mut kv = k.as_bytes().to_vec();
                    kv.push(b'=');
                    kv.extend_from_slice(v.as_bytes());
                    env_c.push(CString::new(kv).expect("no NUL"));
                }
            }
        }
        m if m.starts_with("policy=") => {
            for (k, v) in std::env::vars_os() {
                if k != "SOCKEXIT_POLICY" {
                    let mut kv = k.as_bytes().to_vec();
                    kv.push(b'=');
                    kv.extend_from_slice(v.as_bytes());
                    env_c.push(CString::new(kv).expect("no NUL"));
                }
            }
            env_c.push(
                CString::new(format!("SOCKEXIT_POLICY={}", &m["policy=".len()..])).expect("no NUL"),
            );
        }
        _ => usage(),
    }
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(ptr::null());
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(ptr::null());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: argv/envp are NULL-terminated arrays of live C strings; on success the
    // exec forms do not return.
    unsafe {
        match form.as_str() {
            "execve" => {
                libc::execve(exe_c.as_ptr(), argv.as_ptr(), envp.as_ptr());
            }
            "execvpe" => {
                libc::execvpe(exe_c.as_ptr(), argv.as_ptr(), envp.as_ptr());
            }
            "execle" => {
                // execle is variadic: pass the argument list, a NULL, then envp. Up to
                // six subcommand arguments.
                let a = |i: usize| argv.get(i).copied().unwrap_or(ptr::null());
                if argv.len() > 8 {
                    usage();
                }
                libc::execle(
                    exe_c.as_ptr(),
                    a(0),
                    a(1),
                    a(2),
                    a(3),
                    a(4),
                    a(5),
                    a(6),
                    a(7),
                    ptr::null::<libc::c_char>(),
                    envp.as_ptr(),
                );
            }
            "fexecve" => {
                let fd = libc::open(exe_c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    die("open self");
                }
                libc::fexecve(fd, argv.as_ptr(), envp.as_ptr());
            }
            "execveat" => {
                // glibc's wrapper (2.34+), not the raw syscall (which no preload sees).
                execveat(
                    libc::AT_FDCWD,
                    exe_c.as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                    0,
                );
            }
            "vfork" => {
                // vfork + execve with the rebuilt environment: the hook runs in the
                // child, which shares our memory until the exec.
                // libc marks vfork deprecated for Rust callers because the child shares
                // the parent's stack; this child only calls execve and _exit, the
                // pattern vfork exists for (and the one the hook must survive).
                #[allow(deprecated)]
                let pid = libc::vfork();
                if pid == 0 {
                    libc::execve(exe_c.as_ptr(), argv.as_ptr(), envp.as_ptr());
                    libc::_exit(127);
                }
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
                exit(if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    1
                });
            }
            "execv-environ" => {
                // The forms that use the process's own environment, after the program
                // rebuilt it (clearenv + its own entries).
                libc::clearenv();
                for e in envp.iter().take_while(|e| !e.is_null()) {
                    libc::putenv(*e as *mut libc::c_char);
                }
                libc::execv(exe_c.as_ptr(), argv.as_ptr());
            }
            "posix_spawn" => {
                let mut pid: libc::pid_t = 0;
                let r = libc::posix_spawn(
                    &mut pid,
                    exe_c.as_ptr(),
                    ptr::null(),
                    ptr::null(),
                    argv.as_ptr() as *const *mut libc::c_char,
                    envp.as_ptr() as *const *mut libc::c_char,
                );
                if r != 0 {
                    println!("error {} {r}", ename(r));
                    exit(1);
                }
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
                exit(if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    1
                });
            }
            _ => usage(),
        }
    }
    die(form);
}

// ---------------------------------------------------------------------------------
// libc functions that connect for the program
// ---------------------------------------------------------------------------------

fn cmd_rcmd(args: &[String]) {
    let (Some(kind), Some(ip), Some(port)) = (args.first(), args.get(1), args.get(2)) else {
        usage()
    };
    let port: u16 = port.parse().unwrap_or_else(|_| usage());
    let host = std::ffi::CString::new(ip.as_str()).expect("no NUL");
    let mut hp = host.as_ptr() as *mut libc::c_char;
    let af = if ip.contains(':') {
        libc::AF_INET6
    } else {
        libc::AF_INET
    } as libc::sa_family_t;
    // SAFETY: the C strings live across the calls; fd2p NULL means no stderr channel.
    let r = unsafe {
        match kind.as_str() {
            "rcmd" => rcmd(
                &mut hp,
                port.to_be(),
                c"root".as_ptr(),
                c"root".as_ptr(),
                c"id".as_ptr(),
                ptr::null_mut(),
            ),
            "rcmd_af" => rcmd_af(
                &mut hp,
                port.to_be(),
                c"root".as_ptr(),
                c"root".as_ptr(),
                c"id".as_ptr(),
                ptr::null_mut(),
                af,
            ),
            "rexec" => rexec(
                &mut hp,
                c_int::from(port.to_be()),
                c"root".as_ptr(),
                c"pw".as_ptr(),
                c"id".as_ptr(),
                ptr::null_mut(),
            ),
            "rexec_af" => rexec_af(
                &mut hp,
                c_int::from(port.to_be()),
                c"root".as_ptr(),
                c"pw".as_ptr(),
                c"id".as_ptr(),
                ptr::null_mut(),
                af,
            ),
            _ => usage(),
        }
    };
    if r < 0 {
        println!("{}", res(-1));
    } else {
        println!("ok {r}");
    }
}
