#!/bin/sh
# nginx `Connection: close` req/s, plain against `sockexit run --supervise` with
# notified accepts (`--accept=notify`, the policy below) and in accept-by-filter mode
# (`--accept=filter`, the same policy with `stealth: true`), in ROUNDS interleaved
# rounds (the order rotates each round); prints each round's req/s and ratios, then
# the median ratios (docs/supervise.md "Cost"). Loopback only,
# bounded: N sequential requests from one Python client per run. Needs nginx, python3
# and a release build (cargo build --release -p sockexit-cli). SOCKEXIT=path times
# another sockexit binary; POLICY_EXTRA adds a top-level policy line (`stealth: true`).
set -eu
N=${N:-3000}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-7880}
here=$(cd "$(dirname "$0")/.." && pwd)
sockexit=${SOCKEXIT:-$here/target/release/sockexit}
d=$(mktemp -d "$here/target/supervise-bench.XXXXXX")
trap 'rm -rf "$d"' EXIT
mkdir -p "$d/logs" "$d/tmp"
cat > "$d/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
error_log $d/logs/error.log;
pid $d/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $d/tmp; proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp; uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
  server { listen 127.0.0.1:$PORT; location / { return 200 "page\n"; } }
}
CONF
cat > "$d/policy.yaml" <<CONF
version: 1
default: allow
audit: { log: off }
${POLICY_EXTRA:-}
rules:
  - { name: no-127-0-0-2, action: deny, calls: [accept], remote: [127.0.0.2] }
CONF
sed 's/^default: allow$/default: allow\nstealth: true/' "$d/policy.yaml" > "$d/policy-filter.yaml"
cat > "$d/client.py" <<'PY'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
t = time.perf_counter()
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    while s.recv(4096):
        pass
    s.close()
print(f"{n / (time.perf_counter() - t):.0f}")
PY
export SOCKEXIT_RUN_DIR="$d/run"
one() {
    case "$1" in
    plain) nginx -p "$d" -c "$d/nginx.conf" & ;;
    notify) "$sockexit" run --supervise --accept=notify --policy "$d/policy.yaml" -- \
        nginx -p "$d" -c "$d/nginx.conf" & ;;
    filter) "$sockexit" run --supervise --accept=filter --policy "$d/policy-filter.yaml" -- \
        nginx -p "$d" -c "$d/nginx.conf" & ;;
    esac
    pid=$!
    sleep 1
    python3 "$d/client.py" "$PORT" 300 > /dev/null
    rate=$(python3 "$d/client.py" "$PORT" "$N")
    if [ "$1" != plain ]; then
        echo "supervisor ($1) RSS $(ps -o rss= -p $pid) KiB" >&2
    fi
    kill -TERM $pid
    wait $pid || true
    echo "$rate"
}
: > "$d/ratios"
r=1
while [ $r -le "$ROUNDS" ]; do
    case $((r % 3)) in
    1) p=$(one plain); n=$(one notify); f=$(one filter) ;;
    2) n=$(one notify); f=$(one filter); p=$(one plain) ;;
    0) f=$(one filter); p=$(one plain); n=$(one notify) ;;
    esac
    rn=$(python3 -c "print(f'{$n / $p:.3f}')")
    rf=$(python3 -c "print(f'{$f / $p:.3f}')")
    echo "round $r: plain $p req/s, notified $n req/s (ratio $rn), by filter $f req/s (ratio $rf)"
    echo "$rn $rf" >> "$d/ratios"
    r=$((r + 1))
done
python3 - "$d/ratios" <<'PY'
import statistics, sys
rows = [[float(x) for x in l.split()] for l in open(sys.argv[1])]
for i, name in enumerate(["notified accepts", "accept-by-filter"]):
    v = [r[i] for r in rows]
    print(f"{name}: median ratio {statistics.median(v):.3f} over {len(v)} rounds (min {min(v):.3f}, max {max(v):.3f})")
PY
