//! Programs under test as child processes: bounded waits, stdout line by line, stderr
//! collected, the whole process group killed if a test ends early.

use super::{example_path, preloaded, IO, PATIENCE};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A program under test, in its own process group (killed, with any children it
/// forked, if the test ends early).
pub struct Proc {
    name: String,
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
    done: bool,
}

/// What a program left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Stdout lines not yet consumed with [`Proc::line`].
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl Proc {
    pub fn start(mut cmd: Command) -> Proc {
        cmd.stderr(Stdio::piped());
        Proc::start_with_stderr(cmd)
    }

    /// Like [`Proc::start`], with the stderr `cmd` was given (then [`Finished::stderr`]
    /// is empty).
    pub fn start_with_stderr(mut cmd: Command) -> Proc {
        let name = Path::new(cmd.get_program())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (etx, err) = mpsc::channel();
        match child.stderr.take() {
            Some(mut stderr) => {
                std::thread::spawn(move || {
                    let mut s = String::new();
                    let _ = stderr.read_to_string(&mut s);
                    let _ = etx.send(s);
                });
            }
            None => etx.send(String::new()).expect("receiver alive"),
        }
        Proc {
            name,
            child,
            out,
            err,
            done: false,
        }
    }

    /// The program's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line.
    pub fn line(&mut self) -> String {
        match self.out.recv_timeout(PATIENCE) {
            Ok(l) => l,
            Err(e) => self.die(&format!("no stdout line within {PATIENCE:?} ({e:?})")),
        }
    }

    /// The address from the `listening ADDR` line a server prints once ready.
    pub fn listening(&mut self) -> SocketAddr {
        let l = self.line();
        match l.strip_prefix("listening ").and_then(|a| a.parse().ok()) {
            Some(a) => a,
            None => self.die(&format!("expected `listening ADDR`, got {l:?}")),
        }
    }

    /// Waits for the program to exit by itself.
    pub fn wait(&mut self) -> Finished {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => self.die(&format!("did not exit within {PATIENCE:?}")),
                Err(e) => self.die(&format!("wait: {e}")),
            }
        };
        self.done = true;
        let mut stdout = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left.max(Duration::from_millis(100))) {
                Ok(l) => stdout.push(l),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{}: exited but its stdout stays open (a stuck child?)",
                        self.name
                    )
                }
            }
        }
        let stderr = self.err.recv_timeout(IO).unwrap_or_default();
        Finished {
            status,
            stdout,
            stderr,
        }
    }

    /// SIGTERM, then [`Proc::wait`].
    pub fn terminate(&mut self) -> Finished {
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait()
    }

    /// Kills the program and fails the test with `msg` and its stderr.
    pub fn die(&mut self, msg: &str) -> ! {
        self.kill();
        let stderr = self.err.recv_timeout(IO).unwrap_or_default();
        panic!("{}: {msg}\n--- stderr ---\n{stderr}", self.name)
    }

    /// Kills the program; returns the stdout lines not yet consumed.
    pub fn kill_and_collect(&mut self) -> Vec<String> {
        self.kill();
        let mut lines = Vec::new();
        while let Ok(l) = self.out.recv_timeout(IO) {
            lines.push(l);
        }
        lines
    }

    pub fn kill(&mut self) {
        if !self.done {
            // SAFETY: killpg on the group our unreaped child leads.
            unsafe { libc::killpg(self.child.id() as i32, libc::SIGKILL) };
            let _ = self.child.wait();
            self.done = true;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a short-lived program to completion: its first stdout line and the rest.
pub fn run(cmd: Command) -> (String, Finished) {
    let mut p = Proc::start(cmd);
    let first = p.line();
    let f = p.wait();
    (first, f)
}

/// A sample program under the preload with `policy`, with `args`.
pub fn sample(name: &str, policy: &Path, args: &[&str]) -> Command {
    let mut c = preloaded(example_path(name), policy);
    c.args(args);
    c
}

/// Starts a sample server and returns it with the address it listens on.
pub fn server(name: &str, policy: &Path, args: &[&str]) -> (Proc, SocketAddr) {
    let mut p = Proc::start(sample(name, policy, args));
    let a = p.listening();
    (p, a)
}
