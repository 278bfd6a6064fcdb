#!/bin/sh
# What `sockexit run --supervise` adds to one connect and one accept (bench/c/callcost.c,
# timed call by call), plain against supervised, alternated twice, and the
# supervisor's RSS and CPU time (user + system, all its threads, in clock ticks, read
# from /proc when the program ends: less sensitive to other load than wall clock).
# Loopback only, bounded (N connections per run). Needs gcc and a release build
# (cargo build --release -p sockexit-cli); SOCKEXIT=path times another binary.
set -eu
N=${N:-5000}
here=$(cd "$(dirname "$0")/.." && pwd)
sockexit=${SOCKEXIT:-$here/target/release/sockexit}
d=$(mktemp -d "$here/target/supervise-calls.XXXXXX")
trap 'rm -rf "$d"' EXIT
gcc -O2 -static -o "$d/callcost" "$here/bench/c/callcost.c"
cat > "$d/policy.yaml" <<CONF
version: 1
default: allow
audit: { log: off }
rules:
  - { name: no-127-0-0-2, action: deny, calls: [accept], remote: [127.0.0.2] }
  - { name: no-port-9, action: deny, calls: [connect], remote_ports: [9] }
CONF
export SOCKEXIT_RUN_DIR="$d/run"
for listener in nonblock block; do
    for mode in plain supervised plain supervised; do
        if [ $mode = plain ]; then
            echo "$mode $("$d/callcost" $listener "$N")"
        else
            "$sockexit" run --supervise --policy "$d/policy.yaml" -- \
                sh -c "'$d/callcost' $listener $N; ps -o rss= -p \$PPID > '$d/rss'; cut -d' ' -f14,15 /proc/\$PPID/stat > '$d/cpu'" > "$d/out" &
            wait $!
            echo "$mode $(cat "$d/out") supervisor_rss_kib=$(tr -d ' ' < "$d/rss") supervisor_cpu_us_per_conn=$(awk -v n="$N" -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($1 + $2) * 1e6 / hz / n}' "$d/cpu")"
        fi
    done
done
