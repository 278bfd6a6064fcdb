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

#[path = "../common/mod.rs"]
mod common;

mod badptr;
mod connect;
mod doors;
mod exec;
mod listen;
mod rcmd;
mod signals;
mod support;
mod tfo;

use badptr::cmd_badptr;
use connect::{cmd_connect, cmd_udp_connect};
use doors::{cmd_dlsym_sanity, cmd_door};
use exec::cmd_exec;
use listen::cmd_listen;
use rcmd::cmd_rcmd;
use signals::{cmd_sig_connect, cmd_sigio_server};
use std::process::exit;
use std::time::{Duration, Instant};
use support::{die, usage};
use tfo::{cmd_tfo, cmd_tfo_connect};

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
