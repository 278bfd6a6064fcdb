#!/usr/bin/env bash
# sockexit benchmarks: see BENCHMARKS.md. Installs nothing: it says what is missing.
#
#   bench/run.sh                 full run (about 6 minutes on 2 cores), table on stdout
#   bench/run.sh --quick         tiny counts: checks the script, not the numbers
#   bench/run.sh --only conn,exec --markdown /tmp/bench.md
#   bench/run.sh --only sysexec  system-wide exec cost (item 7; valgrind for its instruction counts)
#   bench/run.sh --profile       callgrind + strace of the allow path (needs valgrind, strace)
#
# Builds (release) libsockexit.so, bench/c/*.c and bench/engine-decide into
# $CARGO_TARGET_DIR (default: <repo>/target). SOCKEXIT_BENCH_LIB=path skips the
# library build and uses that file.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
# nginx lives in /usr/sbin, which a non-root PATH may lack.
export PATH=$PATH:/usr/sbin:/sbin
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}

profile=0
args=()
only=conn,nginx,exec,rss,libwrap,decide,sysexec
prev=
for a in "$@"; do
    if [ "$a" = "--profile" ]; then profile=1; else args+=("$a"); fi
    [ "$prev" = "--only" ] && only=$a
    case $a in --only=*) only=${a#--only=} ;; esac
    prev=$a
done
# Whether item $1 is among those asked for (nginx, wrk and libwrap are needed only by
# theirs, so `--only sysexec` runs on a machine without them).
wants() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# Debian packages each tool comes from; nothing is installed here.
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2 (for $1)"); }
need gcc gcc
need python3 python3
need cargo "a Rust toolchain"
if [ "$profile" = 0 ] && wants nginx; then
    need nginx nginx-light
    need wrk wrk
fi
need ps procps
need taskset util-linux
if [ "$profile" = 0 ] && wants libwrap; then
    [ -f /usr/include/tcpd.h ] || missing+=("libwrap0-dev (for tcpd.h and -lwrap)")
fi
wants sysexec && [ "$profile" = 0 ] && ! command -v valgrind >/dev/null 2>&1 &&
    echo "bench/run.sh: no valgrind: item 7 reports no instruction counts" >&2
if [ "$profile" = 1 ]; then
    need valgrind valgrind
    need strace strace
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench/run.sh: missing prerequisites:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    echo "install them, e.g.: apt-get install -y nginx-light wrk libwrap0-dev gcc python3 valgrind strace" >&2
    exit 2
fi

bin=$target/bench-bin
mkdir -p "$bin"
for p in connrate execloop rssprobe firstcall setload; do
    gcc -O2 -g -Wall -Wextra -Werror -o "$bin/$p" "$repo/bench/c/$p.c"
done
if [ -f /usr/include/tcpd.h ]; then
    gcc -O2 -g -Wall -Wextra -Werror -o "$bin/wrapbench" "$repo/bench/c/wrapbench.c" -lwrap
fi
gcc -O2 -g -Wall -Wextra -Werror -shared -fPIC -o "$bin/nullhook.so" "$repo/bench/c/nullhook.c" -ldl

if [ -n "${SOCKEXIT_BENCH_LIB:-}" ]; then
    lib=$SOCKEXIT_BENCH_LIB
else
    # As installed (Makefile): the core from the release profile, the front from the
    # `front` profile (no standard library), side by side.
    (cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release -p sockexit --quiet)
    (cd "$repo" && CARGO_TARGET_DIR=$target cargo build --profile front -p sockexit-front --quiet)
    mkdir -p "$target/bench-lib"
    cp "$target/release/libsockexit_core.so" "$target/front/libsockexit.so" "$target/bench-lib/"
    lib=$target/bench-lib/libsockexit.so
fi
[ -f "$lib" ] || { echo "bench/run.sh: no library at $lib" >&2; exit 2; }
(cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release -p sockexit-cli --bin sockexit --quiet)
cli=$target/release/sockexit
(cd "$repo/bench/engine-decide" && CARGO_TARGET_DIR=$target/bench-engine-decide cargo build --release --quiet)
decide=$target/bench-engine-decide/release/sockexit-bench-engine-decide

if [ "$profile" = 1 ]; then
    exec python3 "$repo/bench/allowpath.py" --lib "$lib" --bin "$bin" "${args[@]}"
fi
exec python3 "$repo/bench/run.py" --lib "$lib" --bin "$bin" --engine-decide "$decide" \
    --nullhook "$bin/nullhook.so" --nginx "$(command -v nginx)" --cli "$cli" "${args[@]}"
