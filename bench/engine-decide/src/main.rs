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
//!
//! usage: engine-decide --walk POLICY CALL REMOTE LOCAL MIN_CALLS MIN_MS
//!   Checks that `Policy::decide` (with the address dispatch the engine builds for long
//!   or big policies) gives exactly the verdict and rule of `Policy::decide_walk` (the
//!   plain first-match walk) on thousands of generated peers (accept, connect and
//!   listen), then times both on the given call. Prints one line: `checked=N walk_ns=A
//!   decide_ns=B intervals=I classes=C table_kb=K load_ms=L verdict=V rule=R`
//!   (intervals=0 when the policy has no dispatch table).

use sockexit_engine::{Call, Facts, Policy, Verdict};
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
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

fn parse_call(s: &str) -> Result<Call, String> {
    match s {
        "accept" => Ok(Call::Accept),
        "connect" => Ok(Call::Connect),
        "listen" => Ok(Call::Listen),
        other => Err(format!("unknown call {other:?}")),
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let [policy, call, remote, local, expect, min_calls, min_ms] = args else {
        return Err(
            "usage: engine-decide POLICY CALL REMOTE LOCAL allow|deny MIN_CALLS MIN_MS".into(),
        );
    };
    let call = parse_call(call)?;
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
        dynamic: None,
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

/// Calls `f` in batches of 1024 until both minimums are reached; ns per call.
fn time(min_calls: u64, min_ms: f64, mut f: impl FnMut()) -> f64 {
    let mut n: u64 = 0;
    let t = Instant::now();
    loop {
        for _ in 0..1024 {
            f();
        }
        n += 1024;
        if n >= min_calls && t.elapsed().as_secs_f64() * 1e3 >= min_ms {
            break;
        }
    }
    t.elapsed().as_secs_f64() * 1e9 / n as f64
}

fn run_walk(args: &[String]) -> Result<String, String> {
    let [policy, call, remote, local, min_calls, min_ms] = args else {
        return Err("usage: engine-decide --walk POLICY CALL REMOTE LOCAL MIN_CALLS MIN_MS".into());
    };
    let call = parse_call(call)?;
    let min_calls: u64 = min_calls.parse().map_err(|e| format!("MIN_CALLS: {e}"))?;
    let min_ms: f64 = min_ms.parse().map_err(|e| format!("MIN_MS: {e}"))?;
    let t = Instant::now();
    let p = Policy::load(Path::new(policy)).map_err(|e| format!("cannot load policy: {e}"))?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let facts = |remote: Option<SocketAddr>, local: Option<SocketAddr>| Facts {
        remote,
        local,
        uid: Some(65534),
        gid: Some(65534),
        program: Some("/usr/sbin/benchd".into()),
        dynamic: None,
    };

    // The same verdict and rule both ways, or no number.
    let locals: [Option<SocketAddr>; 3] = [
        addr("127.0.0.1:8080")?,
        addr("10.0.0.5:21")?,
        addr("[::1]:443")?,
    ];
    let mut checked = 0u64;
    for (k, peer) in sample_peers(&p, 4000).into_iter().enumerate() {
        let local = locals[k % locals.len()];
        for c in [Call::Accept, Call::Connect, Call::Listen] {
            let remote = if c == Call::Listen { None } else { Some(peer) };
            let want = p.decide_walk(c, &mut facts(remote, local));
            let got = p.decide(c, &mut facts(remote, local));
            if got != want {
                return Err(format!(
                    "decide differs from decide_walk for {} {peer} (local {local:?}): \
                     {}/{} instead of {}/{}",
                    c.as_str(),
                    got.verdict.as_str(),
                    got.rule,
                    want.verdict.as_str(),
                    want.rule
                ));
            }
            checked += 1;
        }
    }

    let mut f = facts(addr(remote)?, addr(local)?);
    let want = p.decide(call, &mut f);
    let walk = time(min_calls, min_ms, || {
        black_box(p.decide_walk(black_box(call), black_box(&mut f)).verdict);
    });
    let decide = time(min_calls, min_ms, || {
        black_box(p.decide(black_box(call), black_box(&mut f)).verdict);
    });
    let (intervals, classes, bytes) = p.dispatch_size().unwrap_or((0, 0, 0));
    Ok(format!(
        "checked={checked} walk_ns={walk:.2} decide_ns={decide:.2} intervals={intervals} \
         classes={classes} table_kb={:.0} load_ms={load_ms:.1} verdict={} rule={}",
        bytes as f64 / 1024.0,
        want.verdict.as_str(),
        want.rule
    ))
}

/// Peers to compare `decide` and `decide_walk` on: every set boundary (each side of it), plus
/// loopback and a spread of other addresses, on a few ports.
fn sample_peers(p: &Policy, limit: usize) -> Vec<SocketAddr> {
    let mut ips: Vec<IpAddr> = vec![
        "127.0.0.1".parse().unwrap(),
        "::1".parse().unwrap(),
        "::ffff:127.0.0.1".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
        "192.168.1.5".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
        "0.0.0.0".parse().unwrap(),
        "255.255.255.255".parse().unwrap(),
    ];
    for r in p.rules() {
        for s in [r.remote(), r.local()].into_iter().flatten() {
            let v4 = s.v4_ranges();
            let step = (v4.len() / (limit / 8).max(1)).max(1);
            for &[lo, hi] in v4.iter().step_by(step) {
                for x in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                    ips.push(IpAddr::from(x.to_be_bytes()));
                }
            }
            let v6 = s.v6_ranges();
            let step = (v6.len() / (limit / 8).max(1)).max(1);
            for &[lo, hi] in v6.iter().step_by(step) {
                for x in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                    ips.push(IpAddr::from(x.to_be_bytes()));
                }
            }
        }
    }
    let ports = [21u16, 22, 25, 53, 80, 443, 445, 5432, 40000];
    let mut out = Vec::new();
    for (k, ip) in ips.into_iter().enumerate() {
        for j in 0..3 {
            out.push(SocketAddr::new(ip, ports[(k * 3 + j) % ports.len()]));
        }
    }
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("--walk") => run_walk(&args[1..]),
        _ => run(&args),
    };
    match res {
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
