//! `rcmd`: libc functions that connect for the program.

use crate::support::*;

pub(crate) fn cmd_rcmd(args: &[String]) {
    let (Some(kind), Some(ip), Some(port)) = (args.first(), args.get(1), args.get(2)) else {
        usage()
    };
    let port: u16 = port.parse().unwrap_or_else(|_| usage());
    let host = std::ffi::CString::new(ip.as_str()).expect("no NUL");
    let mut hp = host.as_ptr() as *mut libc::c_char;
    let af = if ip.contains(':') {
        libc::AF_INET6
    } else {
        libc::AF_INET
    } as libc::sa_family_t;
    // SAFETY: the C strings live across the calls; fd2p NULL means no stderr channel.
    let r = unsafe {
        match kind.as_str() {
            "rcmd" => rcmd(
                &mut hp,
                port.to_be(),
                c"root".as_ptr(),
                c"root".as_ptr(),
                c"id".as_ptr(),
                ptr::null_mut(),
            ),
            "rcmd_af" => rcmd_af(
                &mut hp,
                port.to_be(),
                c"root".as_ptr(),
                c"root".as_ptr(),
                c"id".as_ptr(),
                ptr::null_mut(),
                af,
            ),
            "rexec" => rexec(
                &mut hp,
                c_int::from(port.to_be()),
                c"root".as_ptr(),
                c"pw".as_ptr(),
                c"id".as_ptr(),
                ptr::null_mut(),
            ),
            "rexec_af" => rexec_af(
                &mut hp,
                c_int::from(port.to_be()),
                c"root".as_ptr(),
                c"pw".as_ptr(),
                c"id".as_ptr(),
                ptr::null_mut(),
                af,
            ),
            _ => usage(),
        }
    };
    if r < 0 {
        println!("{}", res(-1));
    } else {
        println!("ok {r}");
    }
}
