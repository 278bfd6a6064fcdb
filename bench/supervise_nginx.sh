#!/bin/sh
# nginx `Connection: close` req/s, plain against `sockexit run --supervise`, one run
# each, alternated twice (docs/supervise.md "Cost"). Loopback only, bounded: N
# sequential requests from one Python client. Needs nginx, python3 and a release
# build (cargo build --release -p sockexit-cli).
set -eu
N=${N:-3000}
PORT=${PORT:-7880}
here=$(cd "$(dirname "$0")/.." && pwd)
sockexit=$here/target/release/sockexit
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
rules:
  - { name: no-127-0-0-2, action: deny, calls: [accept], remote: [127.0.0.2] }
CONF
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
for mode in plain supervised plain supervised; do
    if [ $mode = plain ]; then
        nginx -p "$d" -c "$d/nginx.conf" &
    else
        "$sockexit" run --supervise --policy "$d/policy.yaml" -- nginx -p "$d" -c "$d/nginx.conf" &
    fi
    pid=$!
    sleep 1
    python3 "$d/client.py" "$PORT" 300 > /dev/null
    echo "$mode $(python3 "$d/client.py" "$PORT" "$N") req/s"
    if [ $mode = supervised ]; then
        echo "supervisor RSS $(ps -o rss= -p $pid) KiB"
    fi
    kill -TERM $pid
    wait $pid || true
done
