//! `listen`: the listen forms.

use crate::doors::local_of;
use crate::support::*;

pub(crate) fn cmd_listen(args: &[String]) {
    let pos = positional(args, &["--v6only"]);
    let target = pos.first().unwrap_or_else(|| usage()).as_str();
    let v6only: Option<c_int> =
        opt_value(args, "--v6only").map(|v| v.parse().unwrap_or_else(|_| usage()));
    let (fd, addr) = match target {
        "unbound4" => (tcp_socket(libc::AF_INET), None),
        "unbound6" => (tcp_socket(libc::AF_INET6), None),
        a => {
            let a = parse_addr(a);
            (tcp_socket(family_of(&a)), Some(a))
        }
    };
    if let Some(v) = v6only {
        // SAFETY: option value is a live c_int.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                (&v as *const c_int).cast(),
                mem::size_of::<c_int>() as socklen_t,
            )
        };
        if r < 0 {
            die("setsockopt(IPV6_V6ONLY)");
        }
    }
    if let Some(a) = addr {
        let (sa, len) = raw_addr(&a);
        // SAFETY: sa is a sockaddr of len bytes.
        if unsafe { libc::bind(fd, (&sa as *const sockaddr_storage).cast(), len) } < 0 {
            let e = errno();
            println!("error {} {e}", ename(e));
            eprintln!("attack_bypass: bind {a}: {}", Error::from_raw_os_error(e));
            exit(1);
        }
    }
    // SAFETY: listen on our own socket.
    let r = unsafe { libc::listen(fd, 16) };
    if r < 0 {
        println!("{}", res(-1));
    } else {
        println!("ok {}", local_of(fd));
    }
}
