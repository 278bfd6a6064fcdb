//! A policy in a temp dir, published into its own `SOCKEXIT_RUN_DIR` (never
//! `/run/sockexit`), and the sample servers run under it.
#![allow(dead_code)]

use super::proc::Proc;
use super::tcp_peer::Reply;
use super::{cli_path, example_path, preloaded, TempDir};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Live {
    pub dir: TempDir,
    pub policy: PathBuf,
    pub run: PathBuf,
}

impl Live {
    pub fn new(tag: &str, text: &str) -> Live {
        let dir = TempDir::new(tag);
        let policy = dir.write("policy.yaml", text);
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        Live { dir, policy, run }
    }

    pub fn sockexit(&self, args: &[&str]) -> Output {
        Command::new(cli_path())
            .args(args)
            .arg(&self.policy)
            .env("SOCKEXIT_RUN_DIR", &self.run)
            .env_remove("SOCKEXIT_POLICY")
            .output()
            .expect("run sockexit")
    }

    /// Write `text` to the policy file and apply it; the command's output.
    pub fn apply(&self, text: &str) -> Output {
        std::fs::write(&self.policy, text).unwrap();
        self.sockexit(&["apply"])
    }

    pub fn apply_ok(&self, text: &str) {
        let o = self.apply(text);
        assert!(o.status.success(), "apply failed: {o:?}");
    }

    pub fn cmd(&self, program: &str, args: &[&str]) -> Command {
        let mut c = preloaded(example_path(program), &self.policy);
        c.args(args).env("SOCKEXIT_RUN_DIR", &self.run);
        c
    }

    pub fn server(&self, program: &str) -> (Proc, SocketAddr) {
        let mut p = Proc::start(self.cmd(program, &["127.0.0.1:0"]));
        let a = p.listening();
        (p, a)
    }
}

pub fn served(r: &Reply, banner: &[u8]) -> bool {
    r.bytes == banner
}

/// Poll until `want` holds for a fresh peer, for at most `within`.
pub fn within(within: Duration, mut want: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if want() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Live {
    /// `sockexit set OP POLICY ARGS...`
    pub fn set(&self, op: &str, args: &[&str]) -> Output {
        Command::new(cli_path())
            .args(["set", op])
            .arg(&self.policy)
            .args(args)
            .env("SOCKEXIT_RUN_DIR", &self.run)
            .env_remove("SOCKEXIT_POLICY")
            .output()
            .expect("run sockexit set")
    }

    #[track_caller]
    pub fn set_ok(&self, op: &str, args: &[&str]) -> String {
        let o = self.set(op, args);
        assert!(o.status.success(), "sockexit set {op} {args:?}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Write a word of the generation page by hand (offset 16: the generation; 24:
    /// the dynamic-set revision), as `sockexit apply` / `set` publish one.
    pub fn store_word(&self, offset: u64, v: u64) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.publication().join("generation"))
            .unwrap();
        f.write_at(&v.to_le_bytes(), offset).unwrap();
    }

    /// The only publication directory under the run directory.
    pub fn publication(&self) -> PathBuf {
        std::fs::read_dir(&self.run)
            .unwrap()
            .next()
            .expect("a publication")
            .unwrap()
            .path()
    }
}
