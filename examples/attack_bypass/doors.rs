//! `door`, `dlsym-sanity`: libc's side doors (aliases, `dlsym`, `dlvsym`).

use crate::support::*;

pub(crate) fn version_of(name: &str) -> &'static CStr {
    if name == "accept4" {
        ver::ACCEPT4
    } else {
        ver::BASE
    }
}

/// The function `name` (`connect`, `accept`, `accept4`, `listen`) as reached through
/// `method`; null when that door has no such symbol.
pub(crate) fn resolve(method: &str, name: &str) -> *mut c_void {
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

pub(crate) fn cmd_door(args: &[String]) {
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

pub(crate) fn fmt_storage(ss: &sockaddr_storage) -> String {
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

pub(crate) fn local_of(fd: c_int) -> String {
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

pub(crate) fn cmd_dlsym_sanity() {
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
