//! Running programs under test — sample servers, Python scripts, real daemons — as
//! child processes in their own process group, killed with everything they forked when
//! the test ends, with their stdout as lines and their stderr kept in a file. Also the
//! `require()` convention: a missing program is a loud `SKIPPED` locally and a failure
//! when `CI` is set.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Write a line to the real stderr, past libtest's capture, so skips always show.
pub fn say(line: &str) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// `name` is not installed: `None` (after a loud `SKIPPED`), or a panic under `CI`.
pub fn missing<T>(name: &str) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("{name} is not installed and CI is set: install the packages in .ci/packages.txt");
    }
    say(&format!(
        "SKIPPED: {name} not installed (apt-get install -y $(grep -v '^#' .ci/packages.txt))"
    ));
    None
}

/// The path of `name` on `PATH` or in the sbin directories, else [`missing`].
pub fn require(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(d));
    }
    match dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        Some(p) => Some(p),
        None => missing(name),
    }
}

/// The real Python interpreter (`python3` on PATH may be a pyenv shim, a shell script
/// that would run a shell and its helpers under the preload too).
pub fn python3() -> Option<PathBuf> {
    let p = require("python3")?;
    let out = Command::new(&p)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("run python3");
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Some(if out.status.success() && !exe.is_empty() {
        PathBuf::from(exe)
    } else {
        p
    })
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    free_port_range(1)
}

/// `n` consecutive free loopback ports, taken below the ephemeral range (32768 and up
/// on Linux): a port picked by bind(0) could be grabbed by one of the soak's thousands of
/// client connections before a slow daemon (the JVM) binds it. Tests in this process
/// take successive ports; the start depends on the pid to keep parallel runs apart.
pub fn free_port_range(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20000;
    const SPAN: u32 = 12000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..500 {
        let off = NEXT.fetch_add(u32::from(n), Ordering::Relaxed) % SPAN;
        if off + u32::from(n) > SPAN {
            continue;
        }
        let base = (LOW + off) as u16;
        let held: Vec<_> = (base..base + n)
            .map_while(|p| TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, p)).ok())
            .collect();
        if held.len() == n as usize {
            return base;
        }
    }
    panic!("no {n} consecutive free ports in {LOW}-{}", LOW + SPAN);
}

/// Whether some socket listens on TCP `port` (read from /proc/net/tcp{,6}: no
/// connection is made, so the daemon sees nothing).
pub fn listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3
                    && cols[3] == "0A"
                    && cols[1]
                        .rsplit(':')
                        .next()
                        .and_then(|p| u16::from_str_radix(p, 16).ok())
                        == Some(port)
            })
        })
    })
}

/// A program under test in its own process group.
pub struct Proc {
    pub name: String,
    child: std::process::Child,
    out: Receiver<String>,
    err: PathBuf,
    logs: Vec<PathBuf>,
    done: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdin `stdin` (e.g. piped, to tell it when to stop), stdout as
    /// lines and stderr into `<dir>/<name>.err`.
    pub fn start(mut cmd: Command, dir: &Path, stdin: Stdio) -> Proc {
        let name = Path::new(cmd.get_program())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let err = dir.join(format!("{name}.err"));
        let f = std::fs::File::create(&err).expect("create stderr file");
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(f)
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
        Proc {
            name,
            child,
            out,
            err,
            logs: Vec::new(),
            done: None,
        }
    }

    /// Also show this log file when the program fails.
    pub fn with_log(mut self, p: PathBuf) -> Proc {
        self.logs.push(p);
        self
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its stdin, when started with `Stdio::piped()`.
    pub fn stdin(&mut self) -> &mut std::process::ChildStdin {
        self.child
            .stdin
            .as_mut()
            .expect("started with a piped stdin")
    }

    /// Closes its stdin.
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Its stderr and log files so far, for failure messages.
    pub fn output(&self) -> String {
        let mut s = String::new();
        for p in std::iter::once(&self.err).chain(&self.logs) {
            let t = std::fs::read_to_string(p).unwrap_or_default();
            let tail: String = t
                .chars()
                .skip(t.chars().count().saturating_sub(4000))
                .collect();
            s += &format!("--- {} ---\n{tail}\n", p.display());
        }
        s
    }

    /// The next stdout line within `within`, or `None`.
    pub fn try_line(&mut self, within: Duration) -> Option<String> {
        self.out.recv_timeout(within).ok()
    }

    /// The next stdout line; fails the test after `within`.
    pub fn line(&mut self, within: Duration) -> String {
        match self.out.recv_timeout(within) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                self.die(&format!("no stdout line within {within:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let st = self.child.wait();
                self.die(&format!("stdout closed ({st:?})"))
            }
        }
    }

    /// The next line, which must start with `prefix`; returns the rest.
    pub fn expect(&mut self, prefix: &str, within: Duration) -> String {
        let l = self.line(within);
        match l.strip_prefix(prefix) {
            Some(rest) => rest.to_string(),
            None => self.die(&format!("expected a line `{prefix}...`, got {l:?}")),
        }
    }

    /// Every stdout line until it closes (the program and its children exited) or
    /// `within` has passed.
    pub fn rest(&mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut v = Vec::new();
        while let Ok(l) = self
            .out
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            v.push(l);
        }
        v
    }

    /// Its exit status if it exits within `within`.
    pub fn exited_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.done {
                return Some(s);
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                self.done = Some(s);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Fails the test if the program has exited.
    pub fn assert_alive(&mut self) {
        if let Some(s) = self.exited_within(Duration::ZERO) {
            let msg = format!("exited: {s:?}");
            self.die(&msg);
        }
    }

    /// Waits until something listens on `port`; fails if the program exits first or
    /// after `within`.
    pub fn wait_listening(&mut self, port: u16, within: Duration) {
        let deadline = Instant::now() + within;
        while !listening(port) {
            self.assert_alive();
            if Instant::now() > deadline {
                self.die(&format!("not listening on {port} after {within:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` to the program itself.
    pub fn signal(&self, sig: i32) {
        if self.done.is_none() {
            // SAFETY: kill(2) on our own, not yet reaped, child.
            unsafe { libc::kill(self.pid(), sig) };
        }
    }

    /// Kills the whole group and fails the test with `msg` and the program's output.
    pub fn die(&mut self, msg: &str) -> ! {
        self.kill();
        panic!("{}: {msg}\n{}", self.name, self.output())
    }

    /// SIGKILL to the whole group.
    pub fn kill(&mut self) {
        // SAFETY: the group our child leads (process_group(0)); it is not reaped
        // before this, so the id cannot have been reused.
        unsafe { libc::killpg(self.pid(), libc::SIGKILL) };
        if self.done.is_none() {
            self.done = self.child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// uid and gid of the account `name`, from /etc/passwd.
pub fn account(name: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}
