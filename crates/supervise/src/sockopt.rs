//! Accept-by-filter mode: the program's own `setsockopt(SOL_SOCKET, SO_ATTACH_FILTER
//! | SO_ATTACH_BPF | SO_DETACH_FILTER | SO_LOCK_FILTER)` (the only setsockopt calls
//! the seccomp filter sends here). On an IP stream socket they would replace, remove
//! or lock the filter that decides its accepts: `EPERM`. On any other socket (packet
//! capture, DHCP clients, UDP, unix) the supervisor performs them on the duplicate
//! (the same socket) with the arguments copied out of the target, and answers with
//! the result: never CONTINUE, since the target could swap the fd number in between.

use crate::notify::{dup_fd, Caller, Reply, Sup};
use crate::sys::{self, Notif};
use sockexit_engine::bpf::{SockFilter, MAX_INSNS};
use std::os::fd::OwnedFd;

/// `sizeof(struct sock_fprog)` on x86-64.
const FPROG_LEN: u32 = 16;

/// Answer one filter option call.
pub fn on_setsockopt(s: &Sup, n: Notif) -> Reply {
    let mut caller = Caller::new(n.pid);
    let d = match dup_fd(s, &n, &mut caller, n.args[0]) {
        Ok(d) => d,
        Err(-1) => return Reply::Nothing,
        Err(e) => return Reply::Done(Err(e)),
    };
    if sys::domain(&d).is_none() {
        return Reply::Done(Err(libc::ENOTSOCK));
    }
    if crate::byfilter::ip_stream(&d).is_some() {
        return Reply::Done(Err(libc::EPERM));
    }
    let r = perform(&n, &d);
    if !sys::notif_id_valid(&s.lfd, n.id) {
        return Reply::Nothing;
    }
    Reply::Done(r)
}

fn perform(n: &Notif, d: &OwnedFd) -> Result<i64, i32> {
    let (opt, val, len) = (n.args[2] as i32, n.args[3], n.args[4] as u32);
    if len < 4 {
        return Err(libc::EINVAL);
    }
    match opt {
        libc::SO_ATTACH_FILTER => {
            if len != FPROG_LEN {
                return Err(libc::EINVAL);
            }
            let mut fp = [0u8; 16];
            sys::read_mem(n.pid, val, &mut fp).map_err(|_| libc::EFAULT)?;
            let count = usize::from(u16::from_ne_bytes([fp[0], fp[1]]));
            let ptr = u64::from_ne_bytes(fp[8..16].try_into().expect("8"));
            if count == 0 || count > MAX_INSNS {
                return Err(libc::EINVAL);
            }
            let mut raw = vec![0u8; count * 8];
            sys::read_mem(n.pid, ptr, &mut raw).map_err(|_| libc::EFAULT)?;
            let prog: Vec<SockFilter> = raw.chunks(8).map(insn).collect();
            sys::attach_filter(d, &prog)
                .map(|()| 0)
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EINVAL))
        }
        libc::SO_ATTACH_BPF => {
            let prog_fd = read_int(n, val)?;
            let pidfd = sys::pidfd_open(n.pid, || n.pid).map_err(|_| libc::ESRCH)?;
            let ours = sys::pidfd_getfd(&pidfd, prog_fd).map_err(|_| libc::EBADF)?;
            use std::os::fd::AsRawFd;
            sys::setsockopt_int(d, libc::SO_ATTACH_BPF, ours.as_raw_fd())
        }
        libc::SO_DETACH_FILTER | libc::SO_LOCK_FILTER => {
            sys::setsockopt_int(d, opt, read_int(n, val)?)
        }
        _ => Err(libc::ENOPROTOOPT),
    }
}

fn read_int(n: &Notif, at: u64) -> Result<i32, i32> {
    let mut b = [0u8; 4];
    sys::read_mem(n.pid, at, &mut b).map_err(|_| libc::EFAULT)?;
    Ok(i32::from_ne_bytes(b))
}

/// One `struct sock_filter` from its 8 bytes.
fn insn(b: &[u8]) -> SockFilter {
    SockFilter {
        code: u16::from_ne_bytes([b[0], b[1]]),
        jt: b[2],
        jf: b[3],
        k: u32::from_ne_bytes(b[4..8].try_into().expect("4")),
    }
}
