//! Configuration from the environment and the loaded policy, built once at load time.

use crate::sys;
use sockexit_engine::{AuditLog, Call, Policy};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Where the policy lives when `SOCKEXIT_POLICY` is unset or untrusted.
pub const DEFAULT_POLICY: &str = "/etc/sockexit/policy.yaml";

/// The outcome of loading the policy.
pub enum Loaded {
    /// A valid policy.
    Policy(Policy),
    /// Loading failed: refuse every IP call unless `SOCKEXIT_ON_ERROR=allow`.
    Failed { allow: bool },
}

/// Everything the hooks need, immutable after load.
pub struct State {
    pub loaded: Loaded,
    /// `/proc/self/exe`, read at load time when rules or audit lines need it.
    pub program: Option<Vec<u8>>,
    pub audit_enabled: bool,
}

static STATE: OnceLock<State> = OnceLock::new();

/// The state, loading it on first use (normally in the constructor).
pub fn state() -> &'static State {
    STATE.get_or_init(load)
}

/// Whether `SOCKEXIT_*` variables may be trusted: not in setuid/setgid processes,
/// whose environment belongs to a less privileged user.
pub fn env_trusted() -> bool {
    !sys::at_secure()
}

/// A `SOCKEXIT_*` variable, or `None` when unset or untrusted.
pub fn env_var(name: &str) -> Option<String> {
    if env_trusted() {
        std::env::var(name).ok()
    } else {
        None
    }
}

fn load() -> State {
    let path = env_var("SOCKEXIT_POLICY")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_POLICY));
    let loaded = match Policy::load(&path) {
        Ok(p) => {
            log::debug!("policy {} loaded: {} rules", path.display(), p.rule_count());
            Loaded::Policy(p)
        }
        Err(e) => {
            let allow = env_var("SOCKEXIT_ON_ERROR").as_deref() == Some("allow");
            log::error!(
                "cannot load policy: {e}; {}",
                if allow {
                    "SOCKEXIT_ON_ERROR=allow: every call is allowed"
                } else {
                    "failing closed: every IP accept, connect and listen is refused"
                }
            );
            Loaded::Failed { allow }
        }
    };
    let (needs_program, audit_enabled) = match &loaded {
        Loaded::Policy(p) => (
            [Call::Accept, Call::Connect, Call::Listen]
                .iter()
                .any(|c| p.needs(*c).program),
            p.audit().log != AuditLog::Off,
        ),
        Loaded::Failed { .. } => (false, false),
    };
    let program = if needs_program || audit_enabled {
        use std::os::unix::ffi::OsStringExt;
        sys::exe_path().map(|s| s.into_vec())
    } else {
        None
    };
    State {
        loaded,
        program,
        audit_enabled,
    }
}
