//! Facts about a call, gathered only when a rule asks (seccomp-sandboxed servers must
//! not see a syscall the policy never needed).

use crate::sys::{self, c_int};
use sockexit_engine::{Call, DynSets, FactSource};
use std::net::SocketAddr;

/// Lazily gathered, per-call facts. Nothing here allocates.
pub struct LazyFacts<'a> {
    call: Call,
    fd: c_int,
    remote: Option<SocketAddr>,
    local: Option<Option<SocketAddr>>,
    program: Option<&'a [u8]>,
    live: Option<&'static crate::live::Live>,
}

/// The dynamic sets of a policy that was never applied: nothing can have been added
/// to them (`sockexit set` needs a published policy).
static NEVER_APPLIED: DynSets = DynSets::empty(0);

impl<'a> LazyFacts<'a> {
    /// `fd` is the socket whose own address is "local": the accepted connection for
    /// accept (the address the peer actually reached), the socket itself otherwise.
    pub fn new(
        call: Call,
        fd: c_int,
        remote: Option<SocketAddr>,
        program: Option<&'a [u8]>,
        live: Option<&'static crate::live::Live>,
    ) -> LazyFacts<'a> {
        LazyFacts {
            call,
            fd,
            remote,
            local: None,
            program,
            live,
        }
    }

    /// The local address for an audit line: whatever was already looked up, else one
    /// `getsockname` (audit lines name both ends).
    pub fn local_cached(&mut self) -> Option<SocketAddr> {
        self.local()
    }
}

impl FactSource for LazyFacts<'_> {
    fn remote(&mut self) -> Option<SocketAddr> {
        self.remote
    }

    fn local(&mut self) -> Option<SocketAddr> {
        if self.local.is_none() {
            // An unbound connecting socket reports 0.0.0.0:0, which is the truth.
            self.local = Some(sys::local_addr(self.fd));
        }
        self.local.flatten()
    }

    fn uid(&mut self) -> Option<u32> {
        // Asked each time: servers drop privileges after start-up.
        Some(sys::euid())
    }

    fn gid(&mut self) -> Option<u32> {
        Some(sys::egid())
    }

    fn program(&mut self) -> Option<&[u8]> {
        self.program
    }

    fn dynamic(&mut self) -> Option<&DynSets> {
        // Asked only when a rule naming a dynamic set is evaluated.
        match self.live {
            Some(l) => l.dynamic(),
            None => Some(&NEVER_APPLIED),
        }
    }

    fn dual_stack(&mut self) -> bool {
        // Asked only for a listen on [::]: then IPV6_V6ONLY decides whether the socket
        // also listens on 0.0.0.0.
        self.call == Call::Listen && !sys::v6_only(self.fd)
    }
}
