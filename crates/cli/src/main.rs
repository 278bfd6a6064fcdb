//! `sockexit`: test a socket policy before trusting it (`check`, `explain`) and run a
//! service under it (`run`).
//!
//! Links only the engine crate. The hook library (`libsockexit.so`) exports `connect`,
//! `accept` and friends; linking it here would hook this very program.

mod addr;
mod apply;
mod check;
mod coverage;
mod elf;
mod enable;
mod explain;
mod gen;
mod listeners;
mod out;
mod run;
mod set;
mod system;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the library and this command look when neither an argument nor
/// `$SOCKEXIT_POLICY` names a policy.
pub const DEFAULT_POLICY: &str = "/etc/sockexit/policy.yaml";

/// Where `make install PREFIX=/usr` and the Debian package put the library; the last
/// place `run`, `enable` and `system` look for it.
pub const INSTALLED_LIB: &str = "/usr/lib/sockexit/libsockexit.so";

/// The policy to use: the argument, else `$SOCKEXIT_POLICY` (non-empty), else the
/// default path. Mirrors the library's own choice so `check` tests what `run` runs.
pub fn policy_path(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| {
            std::env::var("SOCKEXIT_POLICY")
                .ok()
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_POLICY))
}

const TOP_HELP: &str = "\
Examples:
  sockexit check /etc/sockexit/ftpd.yaml
  sockexit explain ftpd.yaml --call accept --remote 203.0.113.9:51234 --local 0.0.0.0:21
  sockexit run --policy /etc/sockexit/ftpd.yaml -- /usr/sbin/vsftpd

The policy path defaults to $SOCKEXIT_POLICY, else /etc/sockexit/policy.yaml,
exactly as libsockexit.so chooses it.";

#[derive(Parser)]
#[command(
    name = "sockexit",
    version,
    about = "Socket exit points for Linux: check, explain and run socket policies",
    long_about = "Socket exit points for Linux.\n\n\
        libsockexit.so, preloaded into a dynamically linked program, approves or refuses \
        every accept, connect and listen against a YAML policy. This command tests a \
        policy before you trust it (check, explain), publishes it (apply, status), starts a \
        service under it (run), puts a systemd unit under it (enable, disable) or, \
        system-wide, every program (system).",
    after_help = TOP_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Check(check::Args),
    Apply(apply::Args),
    Status(apply::StatusArgs),
    Set(set::Args),
    Explain(explain::Args),
    Run(run::Args),
    Enable(enable::EnableArgs),
    Disable(enable::DisableArgs),
    System(system::SystemArgs),
}

fn main() -> ExitCode {
    // `make install`'s generator: outside `Cli`, so no page or completion shows it.
    if std::env::args_os().nth(1).is_some_and(|a| a == gen::ARG) {
        return gen::main();
    }
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check(a) => check::main(a),
        Cmd::Apply(a) => apply::main(a),
        Cmd::Status(a) => apply::status(a),
        Cmd::Set(a) => set::main(a),
        Cmd::Explain(a) => explain::main(a),
        Cmd::Run(a) => run::main(a),
        Cmd::Enable(a) => enable::enable(a),
        Cmd::Disable(a) => enable::disable(a),
        Cmd::System(a) => system::system(a),
    }
}
