//! Helpers shared by the engine's integration tests: load policy text with a fixed
//! name resolver, build facts, record which facts a decision asked for.
#![allow(dead_code)]

use sockexit_engine::{Call, Error, FactSource, Facts, LoadOptions, NameResolver, Policy, Verdict};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Users and groups of a made-up machine, so tests do not depend on /etc/passwd.
pub struct TestUsers;

impl NameResolver for TestUsers {
    fn user(&self, name: &str) -> Option<u32> {
        match name {
            "root" => Some(0),
            "ftp" => Some(107),
            "www-data" => Some(33),
            _ => None,
        }
    }
    fn group(&self, name: &str) -> Option<u32> {
        match name {
            "root" => Some(0),
            "ftp" => Some(113),
            "www-data" => Some(33),
            _ => None,
        }
    }
}

/// The origin path policies loaded from text are reported under.
pub const ORIGIN: &str = "/etc/sockexit/test.yaml";

/// Load policy bytes as if read from `origin`.
pub fn load_at(yaml: impl AsRef<[u8]>, origin: &Path) -> Result<Policy, Error> {
    Policy::from_bytes_with(
        yaml.as_ref(),
        origin,
        &LoadOptions {
            resolver: &TestUsers,
            permissions: sockexit_engine::Permissions::Warn,
        },
    )
}

/// Load policy text reported as [`ORIGIN`].
pub fn load(yaml: impl AsRef<[u8]>) -> Result<Policy, Error> {
    load_at(yaml, Path::new(ORIGIN))
}

/// Load a policy that must be valid.
#[track_caller]
pub fn ok(yaml: &str) -> Policy {
    match load(yaml) {
        Ok(p) => p,
        Err(e) => panic!("policy should load, got: {e}\n---\n{yaml}"),
    }
}

/// Load a policy that must be refused; returns the error and its `Display` text.
#[track_caller]
pub fn bad(yaml: impl AsRef<[u8]>) -> (Error, String) {
    match load(yaml) {
        Ok(_) => panic!("policy should have been refused"),
        Err(e) => {
            let s = e.to_string();
            (e, s)
        }
    }
}

pub fn sa(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| panic!("bad socket address {s}"))
}

/// Facts of an accepted connection: peer `remote`, reached at `local`.
pub fn accept(remote: &str, local: &str) -> Facts {
    Facts {
        remote: Some(sa(remote)),
        local: Some(sa(local)),
        ..Facts::default()
    }
}

/// Facts of an outgoing connect to `remote` from an unbound socket.
pub fn connect(remote: &str) -> Facts {
    Facts {
        remote: Some(sa(remote)),
        ..Facts::default()
    }
}

/// Facts of a listen on `local`.
pub fn listen(local: &str) -> Facts {
    Facts {
        local: Some(sa(local)),
        ..Facts::default()
    }
}

/// Add process facts to socket facts.
pub fn by(mut f: Facts, uid: u32, gid: u32, program: &str) -> Facts {
    f.uid = Some(uid);
    f.gid = Some(gid);
    f.program = Some(PathBuf::from(program));
    f
}

/// Decide and return (verdict, rule name).
pub fn decide(p: &Policy, call: Call, mut f: Facts) -> (Verdict, String) {
    let d = p.decide(call, &mut f);
    (d.verdict, d.rule.to_string())
}

pub const ALLOW: Verdict = Verdict::Allow;
pub const DENY: Verdict = Verdict::Deny;

/// A [`FactSource`] that records every fact the engine asks for.
pub struct Recorder {
    pub facts: Facts,
    program: Vec<u8>,
    pub asked: Vec<&'static str>,
}

impl Recorder {
    pub fn new(facts: Facts) -> Recorder {
        use std::os::unix::ffi::OsStrExt;
        let program = facts
            .program
            .as_deref()
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .unwrap_or_default();
        Recorder {
            facts,
            program,
            asked: Vec::new(),
        }
    }
    pub fn asked(&self, what: &str) -> bool {
        self.asked.contains(&what)
    }
}

impl FactSource for Recorder {
    fn remote(&mut self) -> Option<SocketAddr> {
        self.asked.push("remote");
        self.facts.remote
    }
    fn local(&mut self) -> Option<SocketAddr> {
        self.asked.push("local");
        self.facts.local
    }
    fn uid(&mut self) -> Option<u32> {
        self.asked.push("uid");
        self.facts.uid
    }
    fn gid(&mut self) -> Option<u32> {
        self.asked.push("gid");
        self.facts.gid
    }
    fn program(&mut self) -> Option<&[u8]> {
        self.asked.push("program");
        self.facts.program.as_ref().map(|_| &self.program[..])
    }
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "sockexit-engine-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// Write `contents` to `name` inside the directory and return its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `version: 1` and `default: deny`, to prefix test policies with.
pub const HEAD: &str = "version: 1\ndefault: deny\n";
