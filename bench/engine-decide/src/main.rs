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
//! usage: engine-decide --proto POLICY CALL REMOTE LOCAL MIN_CALLS MIN_MS
//!   Builds the two prototype strategies of `proto.rs`, checks that they give exactly
//!   `Policy::decide`'s verdict and rule on thousands of generated peers (accept,
//!   connect and listen), then times all three on the given call. Prints one line:
//!   `checked=N current_ns=A peer_once_ns=B bucketed_ns=B2 dispatch_ns=C intervals=I
//!   lists=L build_ms=T verdict=V rule=R`.

mod proto;

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

fn run_proto(args: &[String]) -> Result<String, String> {
    let [policy, call, remote, local, min_calls, min_ms] = args else {
        return Err(
            "usage: engine-decide --proto POLICY CALL REMOTE LOCAL MIN_CALLS MIN_MS".into(),
        );
    };
    let call = match call.as_str() {
        "accept" => Call::Accept,
        "connect" => Call::Connect,
        "listen" => Call::Listen,
        other => return Err(format!("unknown call {other:?}")),
    };
    let min_calls: u64 = min_calls.parse().map_err(|e| format!("MIN_CALLS: {e}"))?;
    let min_ms: f64 = min_ms.parse().map_err(|e| format!("MIN_MS: {e}"))?;
    let p = Policy::load(Path::new(policy)).map_err(|e| format!("cannot load policy: {e}"))?;
    let t = Instant::now();
    let once = proto::PeerOnce::new(&p, false);
    let bucketed = proto::PeerOnce::new(&p, true);
    let disp = proto::Dispatch::new(&p);
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let facts = |remote: Option<SocketAddr>, local: Option<SocketAddr>| Facts {
        remote,
        local,
        uid: Some(65534),
        gid: Some(65534),
        program: Some("/usr/sbin/benchd".into()),
    };

    // Same verdict and rule as the engine, or no number.
    let locals: [Option<SocketAddr>; 3] = [
        addr("127.0.0.1:8080")?,
        addr("10.0.0.5:21")?,
        addr("[::1]:443")?,
    ];
    let mut checked = 0u64;
    for (k, peer) in proto::sample_peers(&p, 4000).into_iter().enumerate() {
        let local = locals[k % locals.len()];
        for c in [Call::Accept, Call::Connect, Call::Listen] {
            let remote = if c == Call::Listen { None } else { Some(peer) };
            let want = p.decide(c, &mut facts(remote, local));
            let got1 = once.decide(c, &mut facts(remote, local));
            let got2 = disp.decide(c, &mut facts(remote, local));
            let got3 = bucketed.decide(c, &mut facts(remote, local));
            for (what, got) in [("peer-once", got1), ("dispatch", got2), ("bucketed", got3)] {
                if got != (want.verdict, want.rule) {
                    return Err(format!(
                        "{what} differs from Policy::decide for {} {peer} (local {local:?}): \
                         {}/{} instead of {}/{}",
                        c.as_str(),
                        got.0.as_str(),
                        got.1,
                        want.verdict.as_str(),
                        want.rule
                    ));
                }
            }
            checked += 1;
        }
    }

    let mut f = facts(addr(remote)?, addr(local)?);
    let want = p.decide(call, &mut f);
    let current = time(min_calls, min_ms, || {
        black_box(p.decide(black_box(call), black_box(&mut f)).verdict);
    });
    let peer_once = time(min_calls, min_ms, || {
        black_box(once.decide(black_box(call), black_box(&mut f)).0);
    });
    let bucket = time(min_calls, min_ms, || {
        black_box(bucketed.decide(black_box(call), black_box(&mut f)).0);
    });
    let dispatch = time(min_calls, min_ms, || {
        black_box(disp.decide(black_box(call), black_box(&mut f)).0);
    });
    let (intervals, lists) = disp.size();
    Ok(format!(
        "checked={checked} current_ns={current:.2} peer_once_ns={peer_once:.2} \
         bucketed_ns={bucket:.2} dispatch_ns={dispatch:.2} intervals={intervals} lists={lists} build_ms={build_ms:.1} \
         verdict={} rule={}",
        want.verdict.as_str(),
        want.rule
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("--proto") => run_proto(&args[1..]),
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
