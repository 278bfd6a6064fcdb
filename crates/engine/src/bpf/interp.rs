//! A userspace classic BPF interpreter (tests, `sockexit explain`).

use super::{op, SockFilter, MAX_INSNS, SKF_NET_OFF};
use std::net::{IpAddr, SocketAddr};

/// Check a program the way the kernel's `bpf_check_classic` does for what this
/// module emits: known opcodes, jumps inside the program, a return at the end.
pub fn validate(prog: &[SockFilter]) -> Result<(), String> {
    if prog.is_empty() || prog.len() > MAX_INSNS {
        return Err(format!(
            "program length {} out of 1..={MAX_INSNS}",
            prog.len()
        ));
    }
    let n = prog.len();
    for (pc, i) in prog.iter().enumerate() {
        let class = i.code & 0x07;
        if class == op::JMP {
            let reach = |off: u64| pc as u64 + 1 + off < n as u64;
            let ok = if i.code == op::JMP | op::JA {
                reach(i.k as u64)
            } else {
                reach(i.jt as u64) && reach(i.jf as u64)
            };
            if !ok {
                return Err(format!("jump out of the program at {pc}"));
            }
        }
    }
    match prog[n - 1].code {
        c if c == op::RET | op::K || c == op::RET | op::A => Ok(()),
        _ => Err("the last instruction is not a return".into()),
    }
}

/// Run `prog` on a packet whose network header starts `net` and whose `skb->data`
/// (what non-negative offsets address: for TCP, the TCP header) starts at byte
/// `data_off` of `net`. Returns the filter's value (0 = drop). A load outside the
/// packet ends the program with 0, as in the kernel.
pub fn run(prog: &[SockFilter], net: &[u8], data_off: usize) -> Result<u32, String> {
    validate(prog)?;
    let (mut a, mut x): (u32, u32) = (0, 0);
    let mut pc = 0usize;
    let load = |k: u32, size: usize| -> Option<u32> {
        let k = k as i32;
        let off = if (SKF_NET_OFF..0).contains(&k) {
            (k - SKF_NET_OFF) as usize
        } else if k >= 0 {
            data_off.checked_add(k as usize)?
        } else {
            return None;
        };
        let b = net.get(off..off.checked_add(size)?)?;
        Some(b.iter().fold(0u32, |v, &x| (v << 8) | x as u32))
    };
    loop {
        let i = *prog.get(pc).ok_or("ran off the end")?;
        pc += 1;
        let size = |code: u16| match code & 0x18 {
            op::W => 4,
            op::H => 2,
            _ => 1,
        };
        match i.code & 0x07 {
            op::LD => match i.code & 0xe0 {
                op::ABS => match load(i.k, size(i.code)) {
                    Some(v) => a = v,
                    None => return Ok(0),
                },
                op::IND => match load(x.wrapping_add(i.k), size(i.code)) {
                    Some(v) => a = v,
                    None => return Ok(0),
                },
                op::IMM => a = i.k,
                m => return Err(format!("unsupported load mode {m:#x}")),
            },
            op::LDX => match i.code & 0xe0 {
                op::MSH => match load(i.k, 1) {
                    Some(v) => x = 4 * (v & 0xf),
                    None => return Ok(0),
                },
                op::IMM => x = i.k,
                m => return Err(format!("unsupported ldx mode {m:#x}")),
            },
            op::ALU => {
                let s = if i.code & op::X != 0 { x } else { i.k };
                a = match i.code & 0xf0 {
                    op::ADD => a.wrapping_add(s),
                    op::SUB => a.wrapping_sub(s),
                    op::OR => a | s,
                    op::AND => a & s,
                    op::LSH => a.checked_shl(s).unwrap_or(0),
                    op::RSH => a.checked_shr(s).unwrap_or(0),
                    o => return Err(format!("unsupported alu op {o:#x}")),
                }
            }
            op::JMP => {
                let s = if i.code & op::X != 0 { x } else { i.k };
                let take = match i.code & 0xf0 {
                    op::JA => {
                        pc += i.k as usize;
                        continue;
                    }
                    op::JEQ => a == s,
                    op::JGT => a > s,
                    op::JGE => a >= s,
                    op::JSET => a & s != 0,
                    o => return Err(format!("unsupported jump {o:#x}")),
                };
                pc += if take { i.jt } else { i.jf } as usize;
            }
            op::RET => {
                return Ok(if i.code & 0x18 == op::A { a } else { i.k });
            }
            op::MISC => {
                if i.code & 0xf8 == op::TXA {
                    a = x
                } else {
                    x = a
                }
            }
            c => return Err(format!("unsupported class {c:#x}")),
        }
    }
}

/// A minimal TCP SYN from `src` to `dst` as the filter sees it: the network header
/// bytes followed by the TCP header, and the offset of the TCP header. An IPv4 source
/// (or a v4-mapped one) to an IPv4, v4-mapped or unspecified destination (a wildcard
/// listener) makes an IPv4 packet, as on a dual-stack socket; anything else IPv6.
pub fn syn_packet(src: SocketAddr, dst: SocketAddr) -> (Vec<u8>, usize) {
    let (s, d) = (src.ip().to_canonical(), dst.ip().to_canonical());
    let d = match d {
        IpAddr::V6(a) if a.is_unspecified() && s.is_ipv4() => IpAddr::V4(0.into()),
        d => d,
    };
    let mut p = Vec::new();
    match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            p.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
            p.extend_from_slice(&v6(src.ip()).octets());
            p.extend_from_slice(&v6(dst.ip()).octets());
        }
    }
    let off = p.len();
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    (p, off)
}
