//! Times `Policy::decide` for one call against a loaded policy, the way the preload
//! library asks for every connection (facts already known, nothing else to gather).
//!
//! usage: engine-decide POLICY CALL REMOTE LOCAL EXPECT MIN_CALLS MIN_MS
//!   CALL    accept | connect | listen
//!   REMOTE  peer address with port, e.g. 127.0.0.1:40000 (`-` for none)
//!   LOCAL   the socket's own address, e.g. 127.0.0.1:8080 (`-` for none)
//!   EXPECT  allow | deny: the run fails when the decision differs, so a policy that
//!           does not say what the benchmark assumes never produces a number
//!
//! Prints one line: `load_ms=L calls=N ns_per_call=X verdict=V rule=R`.

use sockexit_engine::{Call, Facts, Policy, Verdict};
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

fn addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s == "-" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e| format!("bad address {s:?}: {e}"))
}

fn run(args: &[String]) -> Result<String, String> {
    let [policy, call, remote, local, expect, min_calls, min_ms] = args else {
        return Err(
            "usage: engine-decide POLICY CALL REMOTE LOCAL allow|deny MIN_CALLS MIN_MS".into(),
        );
    };
    let call = match call.as_str() {
        "accept" => Call::Accept,
        "connect" => Call::Connect,
        "listen" => Call::Listen,
        other => return Err(format!("unknown call {other:?}")),
    };
    let expect = match expect.as_str() {
        "allow" => Verdict::Allow,
        "deny" => Verdict::Deny,
        other => return Err(format!("EXPECT must be allow or deny, not {other:?}")),
    };
    let min_calls: u64 = min_calls.parse().map_err(|e| format!("MIN_CALLS: {e}"))?;
    let min_ms: f64 = min_ms.parse().map_err(|e| format!("MIN_MS: {e}"))?;
    let mut facts = Facts {
        remote: addr(remote)?,
        local: addr(local)?,
        // Stand-ins for the process facts: the benchmark policies do not match on them
        // for this peer; they are here so a rule that asks gets an answer.
        uid: Some(65534),
        gid: Some(65534),
        program: Some("/usr/sbin/benchd".into()),
    };

    let t = Instant::now();
    let p = Policy::load(Path::new(policy)).map_err(|e| format!("cannot load policy: {e}"))?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;

    let d = p.decide(call, &mut facts);
    if d.verdict != expect {
        return Err(format!(
            "decision is {} (rule {}), expected {}",
            d.verdict.as_str(),
            d.rule,
            expect.as_str()
        ));
    }
    let rule = d.rule.to_string();

    // Batches of 1024 between clock reads, so the clock is not what is measured.
    let mut n: u64 = 0;
    let t = Instant::now();
    loop {
        for _ in 0..1024 {
            let d = p.decide(black_box(call), black_box(&mut facts));
            black_box(d.verdict);
        }
        n += 1024;
        if n >= min_calls && t.elapsed().as_secs_f64() * 1e3 >= min_ms {
            break;
        }
    }
    let ns = t.elapsed().as_secs_f64() * 1e9 / n as f64;
    Ok(format!(
        "load_ms={load_ms:.3} calls={n} ns_per_call={ns:.2} verdict={} rule={rule}",
        expect.as_str()
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("engine-decide: {e}");
            ExitCode::from(3)
        }
    }
}
