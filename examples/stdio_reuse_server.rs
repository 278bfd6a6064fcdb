//! A daemon that closes fds 0–2 and reopens them on its own data file, as classic
//! daemons do (`close(0..2)`, then the next `open` gets 0, `dup2` onto 1 and 2).
//!
//! Usage: `stdio_reuse_server OWN_FILE`
//!
//! Stdout: `listening 127.0.0.1:PORT` once ready. Then it closes 0, 1 and 2, opens
//! OWN_FILE (truncating) and makes it fds 0, 1 and 2, accepts until one connection is
//! let through (refused peers never reach it), writes `220 stdio-reuse\r\n` to it,
//! writes `own data\n` into OWN_FILE through fd 2, and exits. Anything else found in
//! OWN_FILE was written by someone else (the library's diagnostics or audit lines).

use std::io::Write;
use std::net::TcpListener;
use std::process::exit;

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        eprintln!("usage: stdio_reuse_server OWN_FILE");
        exit(2)
    });
    let cpath = std::ffi::CString::new(path).expect("path without NUL");
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("listening {}", l.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    // SAFETY: closing the standard descriptors and reopening them on our own file
    // (a daemon's start-up); all arguments are valid.
    unsafe {
        for fd in 0..=2 {
            libc::close(fd);
        }
        let own = libc::open(
            cpath.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o600 as libc::c_uint,
        );
        if own != 0 || libc::dup2(0, 1) != 1 || libc::dup2(0, 2) != 2 {
            exit(1);
        }
    }
    // ECONNABORTED: what the library returns after refusing a peer on a blocking
    // listener with nothing else pending; servers retry.
    let (mut c, _) = loop {
        match l.accept() {
            Ok(x) => break x,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
            Err(_) => exit(1),
        }
    };
    let _ = c.write_all(b"220 stdio-reuse\r\n");
    drop(c);
    let data = b"own data\n";
    // SAFETY: fd 2 is this program's own file now; data is a valid buffer.
    let n = unsafe { libc::write(2, data.as_ptr() as *const libc::c_void, data.len()) };
    exit(if n == data.len() as isize { 0 } else { 1 });
}
