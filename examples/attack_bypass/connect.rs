//! `connect` and `udp-connect`: a chosen sockaddr length, a bound source, a device.

use crate::support::*;

/// `udp-connect ADDR`: a UDP socket connected to ADDR, then `hello\n` sent on it.
pub(crate) fn cmd_udp_connect(args: &[String]) {
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

pub(crate) fn bind_ip(fd: c_int, ip: IpAddr) {
    let (sa, len) = raw_addr(&SocketAddr::new(ip, 0));
    // SAFETY: sa is a sockaddr of len bytes, alive across the call.
    if unsafe { libc::bind(fd, (&sa as *const sockaddr_storage).cast(), len) } < 0 {
        die("bind");
    }
}

pub(crate) fn bind_device(fd: c_int, dev: &str) {
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

pub(crate) fn cmd_connect(args: &[String]) {
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
