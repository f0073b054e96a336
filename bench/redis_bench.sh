#!/usr/bin/env bash
# Compare ae.redis (bench/redis_bench.lua) with redis-benchmark against the same
# fresh redis-server. usage: bench/redis_bench.sh [AENGINE] [N]
set -euo pipefail
aengine=${1:-build/aengine}
n=${2:-50000}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/ae-redis-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --daemonize yes \
  --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
cleanup() {
  if [ -f "$dir/redis.pid" ]; then kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.05
done

echo "== redis-benchmark -t set,get -n $n -c 50 -q"
rb=$(redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -n "$n" -c 50 -q 2>/dev/null | tr '\r' '\n' | grep 'requests per second')
echo "$rb"
echo "== redis-benchmark -t set,get -n $n -c 50 -P 100 -q (pipelined)"
rbp=$(redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -n "$n" -c 50 -P 100 -q 2>/dev/null | tr '\r' '\n' | grep 'requests per second')
echo "$rbp"
echo "== ae.redis ($aengine run bench/redis_bench.lua)"
ae=$(REDIS_HOSTNAME="redis://127.0.0.1:$port" BENCH_N=$n AE_LOG_LEVEL=WARNING "$aengine" run "$here/redis_bench.lua")
echo "$ae"

rate() { # text, pattern -> ops/s
  echo "$1" | grep "$2" | head -1 | grep -oE '[0-9]+(\.[0-9]+)? (requests per second|ops/s)' | grep -oE '^[0-9.]+'
}
echo
printf '%-10s %14s %14s %8s\n' case redis-benchmark ae.redis ratio
for c in SET GET; do
  a=$(rate "$rb" "^$c:")
  b=$(rate "$ae" "^$c (5")
  printf '%-10s %14.0f %14.0f %7.2fx\n' "$c" "$a" "$b" "$(echo "$b / $a" | bc -l)"
  a=$(rate "$rbp" "^$c:")
  b=$(rate "$ae" "^$c (pipeline")
  printf '%-10s %14.0f %14.0f %7.2fx\n' "$c -P100" "$a" "$b" "$(echo "$b / $a" | bc -l)"
done
