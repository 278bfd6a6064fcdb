//! `sockexit check --listeners PID...`: which TCP listening sockets of running
//! processes carry a socket filter (what `stealth: true` attaches at listen), and its
//! size, read from the kernel.
//!
//! What the kernel can tell, and how: a process's listening sockets are the socket
//! inodes among `/proc/PID/fd` that `/proc/PID/net/tcp{,6}` lists in state LISTEN
//! (in the process's own network namespace); a duplicate of the fd
//! (`pidfd_getfd`, which needs the right to ptrace the process: its user, or root)
//! answers `getsockopt(SO_GET_FILTER)` with the number of instructions attached, 0 for
//! none. The kernel keeps no count of what a filter dropped on its own: the socket's
//! drop counter (`ss -tlnm`, `skmem:(...,d N)`) counts the SYNs its filter dropped
//! together with connections dropped for a full accept queue.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One listening socket found in a process.
struct Listener {
    fd: i32,
    local: SocketAddr,
    /// Instructions of the attached filter (0: none), or why it could not be read.
    filter: Result<u32, String>,
}

/// Listening sockets by inode, from `/proc/PID/net/tcp` and `tcp6`.
fn listening_inodes(pid: u32) -> HashMap<u64, SocketAddr> {
    let mut out = HashMap::new();
    for (file, v6) in [("tcp", false), ("tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retr uid timeout inode
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let (Some(local), Ok(inode)) = (parse_proc_addr(f[1], v6), f[9].parse::<u64>()) else {
                continue;
            };
            out.insert(inode, local);
        }
    }
    out
}

/// `0100007F:0050` / `00000000000000000000000001000000:0050` (each 32-bit word in host
/// byte order, as the kernel prints them).
fn parse_proc_addr(s: &str, v6: bool) -> Option<SocketAddr> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(a.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = if v6 {
        let mut b = [0u8; 16];
        for i in 0..4 {
            b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::from(word(0)?))
    };
    Some(SocketAddr::new(ip, port))
}

/// The instructions of the filter on `fd` of process `pid` (0: none).
fn filter_len(pid: u32, fd: i32) -> Result<u32, String> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if pidfd < 0 {
        return Err(format!("pidfd_open: {}", std::io::Error::last_os_error()));
    }
    let pidfd = pidfd as i32;
    // SAFETY: pidfd_getfd duplicates the target's fd into this process, or fails.
    let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) };
    let err = std::io::Error::last_os_error();
    // SAFETY: pidfd is ours, opened above, closed once.
    unsafe { libc::close(pidfd) };
    if dup < 0 {
        return Err(format!(
            "cannot read its filter: pidfd_getfd: {err} (run as root or as the process's user)"
        ));
    }
    let dup = dup as i32;
    let mut len: libc::socklen_t = 0;
    // SAFETY: SO_GET_FILTER with a zero length writes nothing to optval (null) and
    // stores the number of instructions in `len`.
    let rc = unsafe {
        libc::getsockopt(
            dup,
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            std::ptr::null_mut(),
            &mut len,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: dup is our own duplicate, closed once; closing it leaves the target's
    // socket open.
    unsafe { libc::close(dup) };
    if rc < 0 {
        return Err(format!("getsockopt(SO_GET_FILTER): {err}"));
    }
    Ok(len)
}

fn listeners_of(pid: u32) -> Result<Vec<Listener>, String> {
    let inodes = listening_inodes(pid);
    let dir =
        std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| format!("/proc/{pid}/fd: {e}"))?;
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        let Some(inode) = t
            .strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if let Some(&local) = inodes.get(&inode) {
            out.push(Listener {
                fd,
                local,
                filter: filter_len(pid, fd),
            });
        }
    }
    out.sort_by_key(|l| l.fd);
    Ok(out)
}

/// One line per listening socket of each process: `listener: PID (COMM) fd N ADDR:
/// socket filter of K instructions` / `no socket filter` / why it cannot be read.
/// Exit status 0, or 1 when a process cannot be inspected at all.
pub fn main(pids: &[u32]) -> std::process::ExitCode {
    let mut code = 0;
    for &pid in pids {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        match listeners_of(pid) {
            Err(e) => {
                eprintln!("error: process {pid}: {e}");
                code = 1;
            }
            Ok(ls) if ls.is_empty() => {
                crate::out::say(format_args!(
                    "listener: {pid} ({comm}): no TCP listening socket"
                ));
            }
            Ok(ls) => {
                for l in ls {
                    let what = match l.filter {
                        Ok(0) => "no socket filter: every SYN reaches the accept-time check".into(),
                        Ok(n) => format!(
                            "socket filter of {n} instructions (drops refused SYNs; the socket's \
                             drop count: ss -tlnm 'sport = :{}', skmem d)",
                            l.local.port()
                        ),
                        Err(e) => e,
                    };
                    crate::out::say(format_args!(
                        "listener: {pid} ({comm}) fd {} {}: {what}",
                        l.fd, l.local
                    ));
                }
            }
        }
    }
    std::process::ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::parse_proc_addr;

    #[test]
    fn proc_net_addresses() {
        assert_eq!(
            parse_proc_addr("0100007F:0050", false),
            Some("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            parse_proc_addr("00000000000000000000000001000000:0016", true),
            Some("[::1]:22".parse().unwrap())
        );
        assert_eq!(
            parse_proc_addr("0000000000000000FFFF00000100007F:0015", true),
            Some("[::ffff:127.0.0.1]:21".parse().unwrap())
        );
    }
}
