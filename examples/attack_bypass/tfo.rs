//! `tfo`, `tfo-connect`: TCP Fast Open by every send form.

use crate::support::*;

/// `dlsym(dlopen("libc.so.6", RTLD_NOW), name)`, null when missing.
pub(crate) fn libc_sym(name: &CStr) -> *mut c_void {
    // SAFETY: dlopen/dlsym with NUL-terminated names.
    unsafe {
        let h = libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOW);
        if h.is_null() {
            return ptr::null_mut();
        }
        libc::dlsym(h, name.as_ptr())
    }
}

pub(crate) fn cmd_tfo(args: &[String]) {
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

pub(crate) fn cmd_tfo_connect(args: &[String]) {
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
