//! A daemon that does what the audit log must survive: it closes every descriptor from
//! 3 to 1023 (the library's audit log and directory handles included), opens its own
//! file and `dup2`s it onto the numbers the library used (900..=920), then serves.
//!
//! Usage: `audit_fd_reuse_server OWN_FILE`
//!
//! Stdout: `listening 127.0.0.1:PORT` once ready; then it accepts until one connection
//! is let through (refused peers never reach it), writes `220 fd-reuse\r\n` to it,
//! writes `own data\n` into OWN_FILE through its own descriptor and prints `served 1`.
//! Anything else found in OWN_FILE was written by someone else.

mod common;
use std::io::Write;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::exit;

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        eprintln!("usage: audit_fd_reuse_server OWN_FILE");
        exit(2)
    });
    for fd in 3..1024 {
        // SAFETY: closing descriptors this program does not use (a daemon's close loop).
        unsafe { libc::close(fd) };
    }
    let cpath = std::ffi::CString::new(path).expect("path without NUL");
    // SAFETY: a valid NUL-terminated path and plain flags.
    let own = unsafe {
        libc::open(
            cpath.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o600 as libc::c_uint,
        )
    };
    if own < 0 {
        eprintln!("open: {}", std::io::Error::last_os_error());
        exit(1);
    }
    for fd in 900..=920 {
        // SAFETY: dup2 onto numbers this program now owns.
        if unsafe { libc::dup2(own, fd) } != fd {
            eprintln!("dup2 {fd}: {}", std::io::Error::last_os_error());
            exit(1);
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("listening {}", l.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    let (mut c, _) = common::accept_next(&l);
    let _ = c.write_all(b"220 fd-reuse\r\n");
    drop(c);
    let data = b"own data\n";
    // SAFETY: `own` is this program's open file; data is a valid buffer.
    let n = unsafe { libc::write(own, data.as_ptr() as *const libc::c_void, data.len()) };
    assert_eq!(n, data.len() as isize);
    let _ = l.as_raw_fd();
    println!("served 1");
}
