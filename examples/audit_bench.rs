//! What recording every decision (`audit.events: all`) costs per accepted connection.
//!
//! Usage: `audit_bench LIBSOCKEXIT.so [CONNECTIONS] [ROUNDS]` (defaults 2000 and 5).
//!
//! Starts this program again as a server (`--serve N`) under the preload with three
//! policies that all allow the loopback client — `events: deny` (nothing recorded for
//! allowed connections: the baseline), `events: all` to a file, and no preload at all —
//! and times CONNECTIONS connect + 1-byte read + close round trips from this
//! (un-preloaded) process. Rounds alternate the variants so drift hits them equally;
//! the median per-connection time of each is printed with its ratio to the baseline.

mod common;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn serve(n: usize) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("listening {}", l.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    for _ in 0..n {
        let (mut c, _) = common::accept_next(&l);
        let _ = c.write_all(b"x");
    }
}

fn policy(dir: &Path, events: &str) -> PathBuf {
    let p = dir.join(format!("bench-{events}.yaml"));
    let text = format!(
        "version: 1\ndefault: allow\nrules:\n  - {{ name: no-testnet, action: deny, calls: [accept], remote: [192.0.2.0/24] }}\naudit:\n  log: {}\n  events: {events}\n",
        dir.join(format!("audit-{events}.jsonl")).display()
    );
    std::fs::write(&p, text).expect("write policy");
    p
}

/// Seconds per connection for one run of `n` connections.
fn run(lib: Option<&Path>, policy: Option<&Path>, n: usize) -> f64 {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--serve").arg(n.to_string()).stdout(Stdio::piped());
    cmd.env_remove("SOCKEXIT_LOG");
    if let (Some(lib), Some(p)) = (lib, policy) {
        cmd.env("LD_PRELOAD", lib).env("SOCKEXIT_POLICY", p);
    }
    let mut child = cmd.spawn().expect("spawn server");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("read port");
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("server said {line:?}"))
        .parse()
        .unwrap();
    let start = Instant::now();
    for _ in 0..n {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).expect("server byte");
    }
    let t = start.elapsed().as_secs_f64() / n as f64;
    child.wait().expect("server exit");
    t
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        serve(args[1].parse().expect("N"));
        return;
    }
    let Some(lib) = args.first().map(PathBuf::from) else {
        eprintln!("usage: audit_bench LIBSOCKEXIT.so [CONNECTIONS] [ROUNDS]");
        std::process::exit(2);
    };
    let n: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(2000);
    let rounds: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(5);
    let dir = std::env::temp_dir().join(format!("sockexit-audit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let deny = policy(&dir, "deny");
    let all = policy(&dir, "all");
    let (mut t_none, mut t_deny, mut t_all) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        t_none.push(run(None, None, n));
        t_deny.push(run(Some(&lib), Some(&deny), n));
        t_all.push(run(Some(&lib), Some(&all), n));
    }
    let lines = std::fs::read_to_string(dir.join("audit-all.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let (none, deny_t, all_t) = (median(&mut t_none), median(&mut t_deny), median(&mut t_all));
    println!(
        "connections per run {n}, rounds {rounds}, audit lines per run with events: all {}",
        lines / rounds
    );
    println!("no preload           {:8.2} us/conn", none * 1e6);
    println!("events: deny (base)  {:8.2} us/conn", deny_t * 1e6);
    println!(
        "events: all, file    {:8.2} us/conn  ratio {:.3}  (+{:.2} us/conn)",
        all_t * 1e6,
        all_t / deny_t,
        (all_t - deny_t) * 1e6
    );
    let _ = std::fs::remove_dir_all(&dir);
}
