//! Judge a call as the kernel will carry it out, not as its arguments spell it.
//!
//! Three address forms reach more than they say:
//! - a `connect` to `0.0.0.0`, `::` or `::ffff:0.0.0.0` reaches the local host (Linux
//!   routes it to loopback: `ip_route_output_key_hash_rcu`, `tcp_v6_connect`);
//! - a `listen` on a dual-stack `[::]` socket (`IPV6_V6ONLY` off) also listens on
//!   `0.0.0.0`;
//! - a peer or destination in the NAT64 well-known prefix `64:ff9b::/96` (RFC 6052)
//!   is an IPv4 host behind a translator.
//!
//! [`Policy::judge`] decides each such call once per form it really has and refuses it
//! when any form is refused. Everything else is one [`Policy::decide`]; the checks that
//! tell the forms apart are a few compares, so the allowed path costs nothing extra.
//!
//! IPv4-compatible addresses (`::a.b.c.d`, deprecated by RFC 4291) are judged as the
//! plain IPv6 addresses they are: Linux does not translate them (automatic `sit`
//! tunnels to `::/96` are not configured by default, and a host that configures one
//! should write its rules for both forms).

use crate::{Call, Decision, FactSource, Policy, Verdict};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The destination a `connect(2)` to `dest` reaches, given the address the socket is
/// bound to (`None` when unbound or unknown).
///
/// - IPv4 `0.0.0.0`: the bound source address if there is one, else `127.0.0.1`
///   (the kernel uses the source as destination, or loopback for both).
/// - IPv6 `::`: `::1`, or `::ffff:127.0.0.1` on a socket bound to a v4-mapped address.
/// - `::ffff:0.0.0.0`: as IPv4 `0.0.0.0`, written v4-mapped.
///
/// Every other destination is returned unchanged.
pub fn connect_target(dest: SocketAddr, bound: Option<SocketAddr>) -> SocketAddr {
    let port = dest.port();
    let bound_v4 = || match bound.map(|b| b.ip().to_canonical()) {
        Some(IpAddr::V4(b)) if !b.is_unspecified() => b,
        _ => Ipv4Addr::LOCALHOST,
    };
    match dest {
        SocketAddr::V4(d) if d.ip().is_unspecified() => {
            SocketAddr::V4(SocketAddrV4::new(bound_v4(), port))
        }
        SocketAddr::V6(d) => {
            if let Some(v4) = d.ip().to_ipv4_mapped() {
                if v4.is_unspecified() {
                    return SocketAddr::V6(SocketAddrV6::new(
                        bound_v4().to_ipv6_mapped(),
                        port,
                        d.flowinfo(),
                        d.scope_id(),
                    ));
                }
            } else if d.ip().is_unspecified() {
                let bound_mapped =
                    matches!(bound, Some(SocketAddr::V6(b)) if b.ip().to_ipv4_mapped().is_some());
                let lo = if bound_mapped {
                    Ipv4Addr::LOCALHOST.to_ipv6_mapped()
                } else {
                    Ipv6Addr::LOCALHOST
                };
                return SocketAddr::V6(SocketAddrV6::new(lo, port, d.flowinfo(), d.scope_id()));
            }
            dest
        }
        _ => dest,
    }
}

/// The IPv4 address embedded in a NAT64 well-known-prefix address (`64:ff9b::/96`,
/// RFC 6052 section 2.1), `None` for every other address.
pub fn nat64_embedded(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = ip.octets();
    if o[..12] == [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0] {
        Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
    } else {
        None
    }
}

/// What [`Policy::judge`] decided, and the addresses of the form that decided it (for
/// audit lines and `explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged<'p> {
    /// The verdict and rule.
    pub decision: Decision<'p>,
    /// The remote address as judged (a `connect` to `0.0.0.0` shows the loopback or
    /// bound address it reaches; a NAT64 peer its IPv4 form when that refused it).
    pub remote: Option<SocketAddr>,
    /// The local address as judged (a dual-stack listener shows `0.0.0.0:PORT` when
    /// its IPv4 side refused it), `None` when the caller's own fact stands.
    pub local: Option<SocketAddr>,
}

/// Facts with the remote and/or local address replaced.
struct Override<'a> {
    inner: &'a mut dyn FactSource,
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
}

impl FactSource for Override<'_> {
    fn remote(&mut self) -> Option<SocketAddr> {
        self.remote.or_else(|| self.inner.remote())
    }
    fn local(&mut self) -> Option<SocketAddr> {
        self.local.or_else(|| self.inner.local())
    }
    fn uid(&mut self) -> Option<u32> {
        self.inner.uid()
    }
    fn gid(&mut self) -> Option<u32> {
        self.inner.gid()
    }
    fn program(&mut self) -> Option<&[u8]> {
        self.inner.program()
    }
    fn dual_stack(&mut self) -> bool {
        self.inner.dual_stack()
    }
}

impl Policy {
    /// Decide `call` as the kernel will carry it out (see the module documentation):
    /// an unspecified `connect` destination is judged as the address it reaches, a
    /// NAT64 remote as itself and as its IPv4 host, a dual-stack `[::]` listener as
    /// `[::]` and as `0.0.0.0`; refused when any of its forms is refused.
    #[inline]
    pub fn judge(&self, call: Call, facts: &mut dyn FactSource) -> Judged<'_> {
        let remote = match call {
            Call::Listen => None,
            Call::Accept | Call::Connect => facts.remote(),
        };
        if let Some(r) = remote {
            if call == Call::Connect && r.ip().to_canonical().is_unspecified() {
                return self.judge_unspecified(r, facts);
            }
            if let SocketAddr::V6(v6) = r {
                if let Some(v4) = nat64_embedded(*v6.ip()) {
                    return self.judge_nat64(call, r, v4, facts);
                }
            }
        } else if call == Call::Listen {
            if let Some(SocketAddr::V6(l)) = facts.local() {
                if l.ip().is_unspecified() && facts.dual_stack() {
                    return self.judge_dual_stack(l.port(), facts);
                }
            }
        }
        Judged {
            decision: self.decide(call, facts),
            remote,
            local: None,
        }
    }

    #[cold]
    #[inline(never)]
    fn judge_unspecified(&self, dest: SocketAddr, facts: &mut dyn FactSource) -> Judged<'_> {
        let bound = facts.local();
        let target = connect_target(dest, bound);
        let mut f = Override {
            inner: facts,
            remote: Some(target),
            local: None,
        };
        Judged {
            decision: self.decide(Call::Connect, &mut f),
            remote: Some(target),
            local: None,
        }
    }

    #[cold]
    #[inline(never)]
    fn judge_nat64(
        &self,
        call: Call,
        remote: SocketAddr,
        v4: Ipv4Addr,
        facts: &mut dyn FactSource,
    ) -> Judged<'_> {
        let as_v6 = self.decide(call, facts);
        if as_v6.verdict == Verdict::Deny {
            return Judged {
                decision: as_v6,
                remote: Some(remote),
                local: None,
            };
        }
        let host = SocketAddr::V4(SocketAddrV4::new(v4, remote.port()));
        let mut f = Override {
            inner: facts,
            remote: Some(host),
            local: None,
        };
        let as_v4 = self.decide(call, &mut f);
        if as_v4.verdict == Verdict::Deny {
            Judged {
                decision: as_v4,
                remote: Some(host),
                local: None,
            }
        } else {
            Judged {
                decision: as_v6,
                remote: Some(remote),
                local: None,
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn judge_dual_stack(&self, port: u16, facts: &mut dyn FactSource) -> Judged<'_> {
        let as_v6 = self.decide(Call::Listen, facts);
        if as_v6.verdict == Verdict::Deny {
            return Judged {
                decision: as_v6,
                remote: None,
                local: None,
            };
        }
        let any4 = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
        let mut f = Override {
            inner: facts,
            remote: None,
            local: Some(any4),
        };
        let as_v4 = self.decide(Call::Listen, &mut f);
        if as_v4.verdict == Verdict::Deny {
            Judged {
                decision: as_v4,
                remote: None,
                local: Some(any4),
            }
        } else {
            Judged {
                decision: as_v6,
                remote: None,
                local: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unspecified_destinations_reach_loopback_or_the_bound_source() {
        assert_eq!(connect_target(sa("0.0.0.0:80"), None), sa("127.0.0.1:80"));
        assert_eq!(
            connect_target(sa("0.0.0.0:80"), Some(sa("0.0.0.0:0"))),
            sa("127.0.0.1:80")
        );
        assert_eq!(
            connect_target(sa("0.0.0.0:80"), Some(sa("127.0.0.5:4000"))),
            sa("127.0.0.5:80")
        );
        assert_eq!(connect_target(sa("[::]:80"), None), sa("[::1]:80"));
        assert_eq!(
            connect_target(sa("[::]:80"), Some(sa("[::ffff:127.0.0.9]:1"))),
            sa("[::ffff:127.0.0.1]:80")
        );
        assert_eq!(
            connect_target(sa("[::ffff:0.0.0.0]:80"), None),
            sa("[::ffff:127.0.0.1]:80")
        );
        assert_eq!(
            connect_target(sa("[::ffff:0.0.0.0]:80"), Some(sa("[::ffff:127.0.0.7]:9"))),
            sa("[::ffff:127.0.0.7]:80")
        );
        // Everything else as given.
        for d in [
            "10.1.2.3:80",
            "[::1]:80",
            "[2001:db8::1]:80",
            "[::ffff:10.0.0.1]:1",
        ] {
            assert_eq!(connect_target(sa(d), Some(sa("127.0.0.5:1"))), sa(d));
        }
    }

    #[test]
    fn nat64_prefix_only() {
        assert_eq!(
            nat64_embedded("64:ff9b::7f00:2".parse().unwrap()),
            Some(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert_eq!(nat64_embedded("64:ff9b:1::7f00:2".parse().unwrap()), None);
        assert_eq!(nat64_embedded("::7f00:2".parse().unwrap()), None);
        assert_eq!(nat64_embedded("::ffff:7f00:2".parse().unwrap()), None);
    }
}
