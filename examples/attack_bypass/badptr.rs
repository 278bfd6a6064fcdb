//! `badptr`: bad and straddling pointers.

use crate::connect::bind_ip;
use crate::support::*;

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
pub(crate) fn guarded_page() -> *mut u8 {
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

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf takes a plain integer.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// A listener on 127.0.0.1 with one connection pending (made by this program).
pub(crate) fn listener_with_pending() -> (c_int, c_int) {
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
pub(crate) fn cmd_badptr(args: &[String]) {
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
