//! The audit line: the engine's shared formatter (`sockexit_engine::audit_line`), so
//! the preload and the supervisor write identical lines.

pub use sockexit_engine::audit_line::*;
