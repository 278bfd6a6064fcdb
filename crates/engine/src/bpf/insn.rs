//! The kernel's classic BPF instruction, and the constants a socket filter needs.

/// `struct sock_filter` of `<linux/filter.h>`: one classic BPF instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct SockFilter {
    /// Opcode: class | size | mode, or class | op | source.
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

/// `BPF_MAXINSNS`: the most instructions `SO_ATTACH_FILTER` accepts.
pub const MAX_INSNS: usize = 4096;

/// `SKF_NET_OFF`: loads at `SKF_NET_OFF + n` read byte `n` of the network header,
/// whatever `skb->data` points at (for TCP sockets: the TCP header).
pub const SKF_NET_OFF: i32 = -0x100000;

/// Return value that keeps the whole packet (the filter's result is a length to trim
/// to; anything shorter than a TCP packet would corrupt or drop it).
pub const RET_ACCEPT: u32 = 0xffff_ffff;
/// Return value that drops the packet.
pub const RET_DROP: u32 = 0;
