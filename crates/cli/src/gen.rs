//! `sockexit __generate-docs --man DIR --completions DIR`: man pages (clap_mangen) and shell completions
//! (clap_complete) from the real command definition, for `make install`.
//!
//! Recognised by `main` before `Cli` parses, so it appears in neither `--help`, the man
//! pages nor the completions; part of the one binary so `cargo build` of the workspace
//! stays as it is.

use clap::{CommandFactory, Parser};
use clap_complete::Shell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The first argument that selects the generator.
pub const ARG: &str = "__generate-docs";

#[derive(Parser)]
#[command(name = "sockexit __generate-docs")]
struct Args {
    /// Write sockexit.1 and sockexit-SUBCOMMAND.1 into DIR
    #[arg(long, value_name = "DIR")]
    man: Option<PathBuf>,
    /// Write sockexit.bash, _sockexit (zsh) and sockexit.fish into DIR
    #[arg(long, value_name = "DIR")]
    completions: Option<PathBuf>,
}

/// Every page: the command itself, then each visible subcommand (recursively, as
/// `sockexit-system-enable.1`).
fn man_pages(cmd: &clap::Command, name: &str, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    // A one-shot generator: leaking the page names is fine.
    let page = cmd.clone().name(&*name.to_owned().leak());
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    let path = dir.join(format!("{name}.1"));
    fs::write(&path, buf)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        written.extend(man_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?);
    }
    Ok(written)
}

pub fn main() -> ExitCode {
    let a = Args::parse_from(std::env::args_os().skip(1));
    let mut cmd = crate::Cli::command();
    cmd.build();
    let res = (|| -> std::io::Result<()> {
        if let Some(dir) = &a.man {
            fs::create_dir_all(dir)?;
            man_pages(&cmd, "sockexit", dir)?;
        }
        if let Some(dir) = &a.completions {
            fs::create_dir_all(dir)?;
            for (shell, file) in [
                (Shell::Bash, "sockexit.bash"),
                (Shell::Zsh, "_sockexit"),
                (Shell::Fish, "sockexit.fish"),
            ] {
                let mut buf = Vec::new();
                clap_complete::generate(shell, &mut cmd.clone(), "sockexit", &mut buf);
                fs::write(dir.join(file), buf)?;
            }
        }
        Ok(())
    })();
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::out::fail(e),
    }
}
