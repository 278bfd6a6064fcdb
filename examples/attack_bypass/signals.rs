//! `sig-connect`, `sigio-server`: IP calls from signal handlers.

use crate::connect::bind_ip;
use crate::doors::local_of;
use crate::support::*;

pub(crate) static SIG_FD: AtomicI32 = AtomicI32::new(-1);
pub(crate) static SIG_DEST: AtomicUsize = AtomicUsize::new(0);
pub(crate) static SIG_DEST_LEN: AtomicU32 = AtomicU32::new(0);
pub(crate) static SIG_LISTEN: AtomicI32 = AtomicI32::new(0);
pub(crate) static SIG_RESULT: AtomicI32 = AtomicI32::new(i32::MIN);
pub(crate) static SIG_ERRNO: AtomicI32 = AtomicI32::new(0);
pub(crate) static ACC_RESULT: AtomicI32 = AtomicI32::new(i32::MIN);
pub(crate) static ACC_ERRNO: AtomicI32 = AtomicI32::new(0);
pub(crate) static ACC_TID: AtomicI32 = AtomicI32::new(0);

pub(crate) extern "C" fn on_usr1(_sig: c_int) {
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

pub(crate) fn install(sig: c_int, handler: extern "C" fn(c_int), restart: bool) {
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
pub(crate) fn blocked_syscall(tid: i32) -> Option<i64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

pub(crate) fn cmd_sig_connect(args: &[String]) {
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

pub(crate) static IO_FD: AtomicI32 = AtomicI32::new(-1);
pub(crate) static SERVED: AtomicU32 = AtomicU32::new(0);
pub(crate) static MAX: AtomicU32 = AtomicU32::new(1);

/// Formats `accepted a.b.c.d:port\n` into `buf` without allocating (signal handler).
pub(crate) fn fmt_peer_line(buf: &mut [u8; 64], ss: &sockaddr_storage) -> usize {
    pub(crate) fn put(buf: &mut [u8; 64], n: &mut usize, s: &[u8]) {
        for &b in s {
            if *n < buf.len() {
                buf[*n] = b;
                *n += 1;
            }
        }
    }
    pub(crate) fn put_num(buf: &mut [u8; 64], n: &mut usize, mut v: u32) {
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

pub(crate) extern "C" fn on_sigio(_sig: c_int) {
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

pub(crate) fn cmd_sigio_server(args: &[String]) {
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
