//! The seccomp filter (classic BPF), built by a small label assembler and checked
//! by an interpreter in the tests, as the engine's socket-filter compiler is.
//!
//! Layout: the architecture must be x86-64 (an i386 `int 0x80` call carries
//! `AUDIT_ARCH_I386` and gets `ENOSYS`); x32 system call numbers (bit 30 set) get
//! `ENOSYS`; `connect`, `accept`, `accept4`, `listen` are sent to the supervisor;
//! `sendto`/`sendmmsg` (flags in the fourth argument) and `sendmsg` (third) only when
//! their flags carry `MSG_FASTOPEN`; the three io_uring calls get `ENOSYS`, so
//! liburing, Go and tokio fall back to ordinary system calls; all else is allowed.
//!
//! In accept-by-filter mode ([`Accepts::Filter`]) `accept`/`accept4` are allowed in
//! the kernel (each listener carries a socket filter the supervisor attached), and
//! instead `setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER | SO_ATTACH_BPF |
//! SO_DETACH_FILTER | SO_LOCK_FILTER, ..)` is sent to the supervisor (level and name
//! are register values: no other setsockopt wakes it), and an MPTCP
//! `socket(AF_INET | AF_INET6, .., IPPROTO_MPTCP)` gets `EPROTONOSUPPORT` (a socket
//! filter on an MPTCP listener does not see its subflows' SYNs; Go and others fall
//! back to TCP, as on a kernel without MPTCP); `pidfd_getfd` gets `EPERM` (a
//! listener taken from a process outside the tree would carry no filter).

use sockexit_engine::bpf::{op, SockFilter};

/// `AUDIT_ARCH_X86_64`.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `SECCOMP_RET_ALLOW`.
pub const RET_ALLOW: u32 = 0x7fff_0000;
/// `SECCOMP_RET_USER_NOTIF`.
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// `SECCOMP_RET_ERRNO | ENOSYS`.
pub const RET_ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;
/// `__X32_SYSCALL_BIT`.
pub const X32_BIT: u32 = 0x4000_0000;
/// `MSG_FASTOPEN`.
pub const MSG_FASTOPEN: u32 = 0x2000_0000;
/// `SECCOMP_RET_ERRNO | EPROTONOSUPPORT`.
pub const RET_EPROTONOSUPPORT: u32 = 0x0005_0000 | libc::EPROTONOSUPPORT as u32;
/// `SECCOMP_RET_ERRNO | EPERM`.
pub const RET_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
/// `IPPROTO_MPTCP`.
pub const IPPROTO_MPTCP: u32 = 262;
/// The socket options that attach, replace, detach or lock a socket filter.
pub const FILTER_OPTS: [u32; 4] = [
    libc::SO_ATTACH_FILTER as u32,
    libc::SO_DETACH_FILTER as u32,
    libc::SO_LOCK_FILTER as u32,
    libc::SO_ATTACH_BPF as u32,
];

/// How accepts are judged for the whole run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Accepts {
    /// Every `accept`/`accept4` is a notification.
    Notify,
    /// Accepts run in the kernel; listeners carry the supervisor's socket filter.
    Filter,
}

/// x86-64 system call numbers the filter names.
#[allow(missing_docs)]
pub mod nr {
    pub const CONNECT: u32 = 42;
    pub const ACCEPT: u32 = 43;
    pub const SENDTO: u32 = 44;
    pub const SENDMSG: u32 = 46;
    pub const LISTEN: u32 = 50;
    pub const ACCEPT4: u32 = 288;
    pub const SOCKET: u32 = 41;
    pub const SETSOCKOPT: u32 = 54;
    pub const PIDFD_GETFD: u32 = 438;
    pub const SENDMMSG: u32 = 307;
    pub const IO_URING_SETUP: u32 = 425;
    pub const IO_URING_ENTER: u32 = 426;
    pub const IO_URING_REGISTER: u32 = 427;
}

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// Low 32 bits of argument `i` (little-endian).
const fn off_arg(i: u32) -> u32 {
    16 + 8 * i
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum L {
    Allow,
    Notify,
    Enosys,
    SendTo,
    SendMsg,
    SetSockOpt,
    Socket,
    Eproto,
    Eperm,
    Next,
}

enum Item {
    Stmt(u16, u32),
    Jump(u16, u32, L, L),
    Label(L),
}

/// The filter program (see the module documentation for the two modes).
pub fn program(accepts: Accepts) -> Vec<SockFilter> {
    use Item::*;
    let jeq = op::JMP | op::JEQ | op::K;
    let filter = accepts == Accepts::Filter;
    let on_accept = if filter { L::Allow } else { L::Notify };
    let (on_setsockopt, on_socket, on_getfd) = if filter {
        (L::SetSockOpt, L::Socket, L::Eperm)
    } else {
        (L::Allow, L::Allow, L::Allow)
    };
    let items = [
        Stmt(op::LD | op::W | op::ABS, OFF_ARCH),
        Jump(jeq, AUDIT_ARCH_X86_64, L::Next, L::Enosys),
        Label(L::Next),
        Stmt(op::LD | op::W | op::ABS, OFF_NR),
        Jump(op::JMP | op::JGE | op::K, X32_BIT, L::Enosys, L::Next),
        Label(L::Next),
        Jump(jeq, nr::CONNECT, L::Notify, L::Next),
        Label(L::Next),
        Jump(jeq, nr::ACCEPT, on_accept, L::Next),
        Label(L::Next),
        Jump(jeq, nr::ACCEPT4, on_accept, L::Next),
        Label(L::Next),
        Jump(jeq, nr::SETSOCKOPT, on_setsockopt, L::Next),
        Label(L::Next),
        Jump(jeq, nr::SOCKET, on_socket, L::Next),
        Label(L::Next),
        Jump(jeq, nr::PIDFD_GETFD, on_getfd, L::Next),
        Label(L::Next),
        Jump(jeq, nr::LISTEN, L::Notify, L::Next),
        Label(L::Next),
        Jump(jeq, nr::SENDTO, L::SendTo, L::Next),
        Label(L::Next),
        Jump(jeq, nr::SENDMMSG, L::SendTo, L::Next),
        Label(L::Next),
        Jump(jeq, nr::SENDMSG, L::SendMsg, L::Next),
        Label(L::Next),
        Jump(jeq, nr::IO_URING_SETUP, L::Enosys, L::Next),
        Label(L::Next),
        Jump(jeq, nr::IO_URING_ENTER, L::Enosys, L::Next),
        Label(L::Next),
        Jump(jeq, nr::IO_URING_REGISTER, L::Enosys, L::Allow),
        Label(L::SendTo),
        Stmt(op::LD | op::W | op::ABS, off_arg(3)),
        Jump(
            op::JMP | op::JSET | op::K,
            MSG_FASTOPEN,
            L::Notify,
            L::Allow,
        ),
        Label(L::SendMsg),
        Stmt(op::LD | op::W | op::ABS, off_arg(2)),
        Jump(
            op::JMP | op::JSET | op::K,
            MSG_FASTOPEN,
            L::Notify,
            L::Allow,
        ),
        // setsockopt(fd, SOL_SOCKET, one of FILTER_OPTS, ..)
        Label(L::SetSockOpt),
        Stmt(op::LD | op::W | op::ABS, off_arg(1)),
        Jump(jeq, libc::SOL_SOCKET as u32, L::Next, L::Allow),
        Label(L::Next),
        Stmt(op::LD | op::W | op::ABS, off_arg(2)),
        Jump(jeq, FILTER_OPTS[0], L::Notify, L::Next),
        Label(L::Next),
        Jump(jeq, FILTER_OPTS[1], L::Notify, L::Next),
        Label(L::Next),
        Jump(jeq, FILTER_OPTS[2], L::Notify, L::Next),
        Label(L::Next),
        Jump(jeq, FILTER_OPTS[3], L::Notify, L::Allow),
        // socket(AF_INET | AF_INET6, .., IPPROTO_MPTCP)
        Label(L::Socket),
        Stmt(op::LD | op::W | op::ABS, off_arg(2)),
        Jump(jeq, IPPROTO_MPTCP, L::Next, L::Allow),
        Label(L::Next),
        Stmt(op::LD | op::W | op::ABS, off_arg(0)),
        Jump(jeq, libc::AF_INET as u32, L::Eproto, L::Next),
        Label(L::Next),
        Jump(jeq, libc::AF_INET6 as u32, L::Eproto, L::Allow),
        Label(L::Eproto),
        Stmt(op::RET | op::K, RET_EPROTONOSUPPORT),
        Label(L::Eperm),
        Stmt(op::RET | op::K, RET_EPERM),
        Label(L::Allow),
        Stmt(op::RET | op::K, RET_ALLOW),
        Label(L::Notify),
        Stmt(op::RET | op::K, RET_USER_NOTIF),
        Label(L::Enosys),
        Stmt(op::RET | op::K, RET_ENOSYS),
    ];
    // Instruction index of each item, and where each label stands.
    let mut pc = Vec::with_capacity(items.len());
    let mut n = 0usize;
    for it in &items {
        pc.push(n);
        if !matches!(it, Label(_)) {
            n += 1;
        }
    }
    // A jump to `Next` goes to the next label `Next`; others to their one label.
    let find = |from: usize, l: L| -> usize {
        let (i, _) = items
            .iter()
            .enumerate()
            .skip(from + 1)
            .find(|(_, it)| matches!(it, Label(x) if *x == l))
            .or_else(|| {
                items
                    .iter()
                    .enumerate()
                    .find(|(_, it)| matches!(it, Label(x) if *x == l))
            })
            .expect("label defined");
        pc[i]
    };
    let mut out = Vec::with_capacity(n);
    for (i, it) in items.iter().enumerate() {
        match *it {
            Stmt(code, k) => out.push(SockFilter {
                code,
                jt: 0,
                jf: 0,
                k,
            }),
            Jump(code, k, t, f) => {
                let here = pc[i] + 1;
                let rel = |l: L| {
                    let to = find(i, l);
                    assert!(to >= here, "forward jumps only");
                    u8::try_from(to - here).expect("jump within 255")
                };
                out.push(SockFilter {
                    code,
                    jt: rel(t),
                    jf: rel(f),
                    k,
                })
            }
            Label(_) => {}
        }
    }
    out
}

/// Run `prog` on a `seccomp_data` (tests, and a start-up self-check).
pub fn eval(prog: &[SockFilter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let ins = prog[pc];
        pc += 1;
        match ins.code {
            c if c == op::LD | op::W | op::ABS => {
                let k = ins.k as usize;
                a = u32::from_le_bytes(data[k..k + 4].try_into().expect("4 bytes"));
            }
            c if c == op::RET | op::K => return ins.k,
            c if c == op::JMP | op::JEQ | op::K => {
                pc += usize::from(if a == ins.k { ins.jt } else { ins.jf })
            }
            c if c == op::JMP | op::JGE | op::K => {
                pc += usize::from(if a >= ins.k { ins.jt } else { ins.jf })
            }
            c if c == op::JMP | op::JSET | op::K => {
                pc += usize::from(if a & ins.k != 0 { ins.jt } else { ins.jf })
            }
            c => panic!("opcode {c:#x} not produced by this assembler"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(nr: u32, args: [u64; 6]) -> u32 {
        eval(&program(Accepts::Notify), nr, AUDIT_ARCH_X86_64, args)
    }

    #[test]
    fn socket_calls_are_notified() {
        for n in [nr::CONNECT, nr::ACCEPT, nr::ACCEPT4, nr::LISTEN] {
            assert_eq!(run(n, [0; 6]), RET_USER_NOTIF, "nr {n}");
        }
    }

    #[test]
    fn sends_only_with_fastopen() {
        let fo = u64::from(MSG_FASTOPEN);
        assert_eq!(run(nr::SENDTO, [3, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(nr::SENDTO, [3, 0, 0, fo | 0x40, 0, 0]), RET_USER_NOTIF);
        assert_eq!(run(nr::SENDMMSG, [3, 0, 0, fo, 0, 0]), RET_USER_NOTIF);
        assert_eq!(run(nr::SENDMMSG, [3, 0, 0, 0x4000, 0, 0]), RET_ALLOW);
        assert_eq!(run(nr::SENDMSG, [3, 0, fo, 0, 0, 0]), RET_USER_NOTIF);
        assert_eq!(run(nr::SENDMSG, [3, 0, 0, fo, 0, 0]), RET_ALLOW);
        // High bits of the flags argument are ignored by the kernel (int flags).
        assert_eq!(run(nr::SENDMSG, [3, 0, 1 << 40, 0, 0, 0]), RET_ALLOW);
    }

    #[test]
    fn io_uring_gets_enosys_and_other_calls_pass() {
        for n in [
            nr::IO_URING_SETUP,
            nr::IO_URING_ENTER,
            nr::IO_URING_REGISTER,
        ] {
            assert_eq!(run(n, [0; 6]), RET_ENOSYS);
        }
        for n in [0, 1, 2, 41, 45, 47, 49, 59, 231, 424, 428] {
            assert_eq!(run(n, [u64::MAX; 6]), RET_ALLOW, "nr {n}");
        }
    }

    #[test]
    fn other_abis_are_refused() {
        // i386 `int 0x80`: socketcall (102) or connect (362) there.
        let p = program(Accepts::Notify);
        for n in [102, 362, 42, 0] {
            assert_eq!(eval(&p, n, 0x4000_0003, [0; 6]), RET_ENOSYS);
        }
        // x32: connect | 0x40000000, and any other.
        assert_eq!(run(X32_BIT | nr::CONNECT, [0; 6]), RET_ENOSYS);
        assert_eq!(run(X32_BIT, [0; 6]), RET_ENOSYS);
    }

    fn run_f(nr: u32, args: [u64; 6]) -> u32 {
        eval(&program(Accepts::Filter), nr, AUDIT_ARCH_X86_64, args)
    }

    #[test]
    fn filter_mode_lets_accepts_run_and_notifies_filter_options() {
        for n in [nr::ACCEPT, nr::ACCEPT4] {
            assert_eq!(run_f(n, [3, 0, 0, 0, 0, 0]), RET_ALLOW, "nr {n}");
        }
        for n in [nr::CONNECT, nr::LISTEN] {
            assert_eq!(run_f(n, [0; 6]), RET_USER_NOTIF, "nr {n}");
        }
        let sol = libc::SOL_SOCKET as u64;
        for o in FILTER_OPTS {
            assert_eq!(
                run_f(nr::SETSOCKOPT, [3, sol, o.into(), 0, 0, 0]),
                RET_USER_NOTIF
            );
            // High bits of int arguments are ignored, as by the kernel.
            assert_eq!(
                run_f(
                    nr::SETSOCKOPT,
                    [3, sol | 1 << 40, u64::from(o) | 1 << 33, 0, 0, 0]
                ),
                RET_USER_NOTIF
            );
            // Same number at another level (IPPROTO_IP = 0, IPPROTO_TCP = 6).
            assert_eq!(run_f(nr::SETSOCKOPT, [3, 0, o.into(), 0, 0, 0]), RET_ALLOW);
            assert_eq!(run_f(nr::SETSOCKOPT, [3, 6, o.into(), 0, 0, 0]), RET_ALLOW);
            // Not notified without the mode.
            assert_eq!(run(nr::SETSOCKOPT, [3, sol, o.into(), 0, 0, 0]), RET_ALLOW);
        }
        for o in [
            libc::SO_REUSEADDR,
            libc::SO_LINGER,
            libc::SO_ATTACH_REUSEPORT_CBPF,
        ] {
            assert_eq!(
                run_f(nr::SETSOCKOPT, [3, sol, o as u64, 0, 0, 0]),
                RET_ALLOW
            );
        }
        let mptcp = u64::from(IPPROTO_MPTCP);
        assert_eq!(
            run_f(nr::SOCKET, [2, 1, mptcp, 0, 0, 0]),
            RET_EPROTONOSUPPORT
        );
        assert_eq!(
            run_f(nr::SOCKET, [10, 1, mptcp, 0, 0, 0]),
            RET_EPROTONOSUPPORT
        );
        assert_eq!(run_f(nr::SOCKET, [2, 1, 6, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run_f(nr::SOCKET, [1, 1, mptcp, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(nr::SOCKET, [2, 1, mptcp, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run_f(nr::PIDFD_GETFD, [3, 4, 0, 0, 0, 0]), RET_EPERM);
        assert_eq!(run(nr::PIDFD_GETFD, [3, 4, 0, 0, 0, 0]), RET_ALLOW);
        // The rest of the filter is the same in both modes.
        let p = program(Accepts::Filter);
        assert_eq!(eval(&p, 42, 0x4000_0003, [0; 6]), RET_ENOSYS);
        assert_eq!(run_f(nr::IO_URING_SETUP, [0; 6]), RET_ENOSYS);
        assert_eq!(
            run_f(nr::SENDTO, [3, 0, 0, u64::from(MSG_FASTOPEN), 0, 0]),
            RET_USER_NOTIF
        );
    }
}
