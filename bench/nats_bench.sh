#!/usr/bin/env bash
# ae.nats vs raw nats.c request/reply benchmark on a private nats-server.
# usage: bench/nats_bench.sh BUILD_DIR [SECONDS]
set -euo pipefail
build=${1:-build}
secs=${2:-2}
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nats-server -a 127.0.0.1 -p "$port" -P "$dir/nats.pid" -l "$dir/nats.log" &
trap 'kill "$(cat "$dir/nats.pid")" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
export NATS_SERVER1=nats://127.0.0.1:$port AE_LOG_LEVEL=ERROR
# raw nats.c both ways: batched by its flusher (its default) and send-asap (ae.nats's default)
for mode in batch asap; do
  "$build/bench/bench_nats_raw" "$NATS_SERVER1" 1 "$secs" "$mode" | sed "s/^raw/raw-$mode/"
  "$build/bench/bench_nats_raw" "$NATS_SERVER1" 100 "$secs" "$mode" | sed "s/^raw/raw-$mode/"
done
"$build/aengine" exec bench/nats_bench.lua "$secs"
