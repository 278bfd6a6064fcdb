//! A server that chroots after start-up, as vsftpd and other privilege-separating
//! daemons do (needs root or CAP_SYS_CHROOT).
//!
//! Usage: `audit_chroot_server JAIL`
//!
//! Listens on 127.0.0.1 (port chosen by the kernel), prints `listening 127.0.0.1:PORT`,
//! then `chroot(JAIL)` + `chdir("/")` and prints `chrooted`; accepts until one
//! connection is let through (refused peers never reach it), writes
//! `220 chrooted\r\n` to it and prints `served 1`. Exit code 1 with `error ...` on
//! stdout if the chroot fails.

mod common;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;

fn main() {
    let jail = std::env::args_os().nth(1).unwrap_or_else(|| {
        eprintln!("usage: audit_chroot_server JAIL");
        std::process::exit(2)
    });
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("listening {}", l.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    let c = std::ffi::CString::new(jail.as_bytes()).expect("path without NUL");
    // SAFETY: a valid NUL-terminated path; chdir gets a static one.
    let r = unsafe { libc::chroot(c.as_ptr()) | libc::chdir(c"/".as_ptr()) };
    if r != 0 {
        println!("error {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    println!("chrooted");
    std::io::stdout().flush().unwrap();
    let (mut s, _) = common::accept_next(&l);
    let _ = s.write_all(b"220 chrooted\r\n");
    println!("served 1");
}
