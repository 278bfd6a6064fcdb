#!/usr/bin/env python3
"""Profile sockexit's allow path (bench/run.sh --profile).

Runs the connection loop (bench/c/connrate.c) preloaded with the 20-rule +
100k-prefix policy twice, with N and 2N connections, under callgrind and under strace,
and reports the *difference* divided by the extra connections: what one more
connection costs, with the one-time costs (loading the library, parsing the policy)
cancelled out. Per connection the library runs two hooks: connect (client side) and
accept (server side).

Reports:
  - user-space instructions executed inside libsockexit.so per connection,
  - every call from libsockexit.so into another object (libc, ld.so) per connection:
    an allocation (malloc), a lock, an extra syscall wrapper shows up here by name,
  - syscalls per connection, preloaded minus plain (strace -f -c).
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the generators of the benchmark inputs)


def iterations(n):
    """connrate runs a warm-up of n/20 + 10 connections before the timed n."""
    return n + n // 20 + 10


def parse_callgrind(path, lib_name):
    """Self cost of libsockexit's functions, and its calls into other objects.

    Returns (self_ir_total, {callee: [calls, inclusive_ir]}).
    """
    names = {"ob": {}, "fn": {}}
    cur_ob = cur_fn = None
    pend_cob = pend_cfn = None
    in_call = False
    self_ir = 0
    ext = collections.defaultdict(lambda: [0, 0])
    calls_count = 0

    def name(kind, val):
        m = re.match(r"\((\d+)\)(?: (.*))?$", val)
        if not m:
            return val
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), val)

    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                if in_call:
                    cost = int(parts[1]) if len(parts) > 1 else 0
                    callee_ob = pend_cob if pend_cob is not None else cur_ob
                    if cur_ob and lib_name in cur_ob and lib_name not in (callee_ob or ""):
                        e = ext[pend_cfn]
                        e[0] += calls_count
                        e[1] += cost
                    in_call = False
                    pend_cob = pend_cfn = None
                elif cur_ob and lib_name in cur_ob and len(parts) > 1:
                    self_ir += int(parts[1])
                continue
            key, _, val = line.partition("=")
            if key == "ob":
                cur_ob = name("ob", val)
            elif key == "fn":
                cur_fn = name("fn", val)
            elif key == "cob":
                pend_cob = name("ob", val)
            elif key == "cfn":
                pend_cfn = name("fn", val)
            elif key == "calls":
                calls_count = int(val.split()[0])
                in_call = True
    del cur_fn
    return self_ir, ext


def callgrind(args, n, env, out):
    cmd = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
        f"{args.bin}/connrate", "allow", str(n),
    ]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        sys.exit(f"profile: {' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return parse_callgrind(out, "libsockexit.so")


def strace_counts(args, n, env, out):
    cmd = ["strace", "-f", "-c", "-o", out, f"{args.bin}/connrate", "allow", str(n)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        sys.exit(f"profile: {' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    counts = {}
    with open(out) as f:
        for line in f:
            parts = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(parts) >= 5 and parts[3].isdigit() and not line.startswith("100.00"):
                counts[parts[-1]] = int(parts[3])
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("-n", type=int, default=1000, help="connections in the smaller run")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sockexit-profile-")
    block = os.path.join(tmp, "blocklist.txt")
    with open(block, "w") as f:
        f.write("\n".join(bench.gen_prefixes(100_000)) + "\n")
    pol = os.path.join(tmp, "policy.yaml")
    with open(pol, "w") as f:
        f.write(bench.policy_20(block))
    env = bench.preload_env(args.lib, pol)
    n1, n2 = args.n, 2 * args.n
    extra = iterations(n2) - iterations(n1)

    print(f"# sockexit allow path, per connection (connect hook + accept hook); "
          f"20 rules + 100k-prefix set, peer 127.0.0.1 allowed by rule 20\n")
    s1, e1 = callgrind(args, n1, env, os.path.join(tmp, "cg1.out"))
    s2, e2 = callgrind(args, n2, env, os.path.join(tmp, "cg2.out"))
    print(f"instructions executed inside libsockexit.so: {(s2 - s1) / extra:,.0f} per connection")
    print(f"(and once, at load: {s1 - (s2 - s1) * iterations(n1) / extra:,.0f} — constructor, policy parse)\n")
    print("calls from libsockexit.so into other objects, per connection:")
    print(f"  {'function':40} {'calls':>8} {'instr. inside':>14}")
    rows = []
    for fn in set(e1) | set(e2):
        c = (e2.get(fn, [0, 0])[0] - e1.get(fn, [0, 0])[0]) / extra
        ir = (e2.get(fn, [0, 0])[1] - e1.get(fn, [0, 0])[1]) / extra
        if abs(c) >= 0.01:
            rows.append((fn, c, ir))
    for fn, c, ir in sorted(rows, key=lambda r: -r[2]):
        print(f"  {fn:40} {c:8.2f} {ir:14,.0f}")
    if not rows:
        print("  (none)")
    alloc = re.compile(r"(^|_)(malloc|calloc|realloc|free|memalign|posix_memalign|aligned_alloc|mmap|munmap|brk|sbrk)$|__rust_(alloc|dealloc|realloc)")
    lock = re.compile(r"pthread_(mutex|rwlock|spin|cond|once)|__lll_lock|futex|sem_(wait|post)")
    n_alloc = sum(c for fn, c, _ in rows if alloc.search(fn or ""))
    n_lock = sum(c for fn, c, _ in rows if lock.search(fn or ""))
    print(f"\nallocations per connection: {n_alloc:.2f}; lock operations per connection: {n_lock:.2f}")

    print("\nsyscalls per connection, preloaded minus plain (strace -f -c):")
    plain = bench.clean_env()
    p1 = strace_counts(args, n1, plain, os.path.join(tmp, "sp1"))
    p2 = strace_counts(args, n2, plain, os.path.join(tmp, "sp2"))
    q1 = strace_counts(args, n1, env, os.path.join(tmp, "sq1"))
    q2 = strace_counts(args, n2, env, os.path.join(tmp, "sq2"))
    any_extra = False
    for sc in sorted(set(p1) | set(p2) | set(q1) | set(q2)):
        per_plain = (p2.get(sc, 0) - p1.get(sc, 0)) / extra
        per_pre = (q2.get(sc, 0) - q1.get(sc, 0)) / extra
        if abs(per_pre - per_plain) >= 0.01 or per_plain >= 0.5:
            mark = "" if abs(per_pre - per_plain) < 0.01 else "   <-- extra"
            any_extra |= bool(mark)
            print(f"  {sc:16} plain {per_plain:5.2f}  preloaded {per_pre:5.2f}{mark}")
    if not any_extra:
        print("  no syscall beyond the program's own")
    exec_hook(args, env, tmp)
    for fn in os.listdir(tmp):
        os.unlink(os.path.join(tmp, fn))
    os.rmdir(tmp)


def exec_hook(args, env, tmp):
    """What the exec-family hooks cost the process that execs (issue 15): callgrind
    of a preloaded execloop that posix_spawns /bin/true 100 and 200 times; the
    difference per spawn is the hook (the children are not traced). Twice: with an
    environment that already carries the library and the policy (the common case: a
    scan, nothing built), and with one that lacks them (the environment is rebuilt)."""
    print("\nexec-family hooks, instructions inside libsockexit.so per posix_spawn (the parent's side):")
    for label, child_env in (
        ("environment already carries the library and the policy", True),
        ("environment lacks them (rebuilt on the stack)", False),
    ):
        e = dict(env)
        if child_env:
            e["BENCH_CHILD_LD_PRELOAD"] = e["LD_PRELOAD"]
            e["BENCH_CHILD_POLICY"] = e["SOCKEXIT_POLICY"]
        ir = []
        for n in (100, 200):
            out = os.path.join(tmp, f"ex{n}.out")
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                   f"{args.bin}/execloop", str(n), "/bin/true"]
            p = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=900)
            if p.returncode != 0:
                sys.exit(f"profile: {' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
            ir.append(parse_callgrind(out, "libsockexit.so")[0])
        print(f"  {label}: {(ir[1] - ir[0]) / 100:,.0f}")


if __name__ == "__main__":
    main()
