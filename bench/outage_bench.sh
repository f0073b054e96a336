#!/usr/bin/env bash
# One full service-outage-monitor outage cycle (first pass over the four
# sandbox hosts + the re-check of the edges in outage) against the sandbox
# simulators with zero simulated latency. Two engines on one nats-server and
# one redis-server (started here on free ports, stopped at the end):
#   A = simulators + capabilities (bench/outage_sims.lua: config/sandbox.lua without the use cases,
#       customer_cache keys seeded by bench/outage_seed.lua, 2 % of the edges OFFLINE)
#   B = the outage process alone (bench/outage_monitor.lua + bench/outage_driver.lua)
# Prints one table row per fleet size: wall time of the cycle, CPU (user+sys) of B and A during
# the cycle, peak RSS (VmHWM) of B and A.
#
#   bench/outage_bench.sh [BUILD_DIR] [EDGES ...]      default: build-obench 10000 50000
# Environment: OUTAGE_BENCH_DOWN (residues mod 100 of the edge index that go OFFLINE, "10,55" = 2 %,
# "" = none), OUTAGE_QUARANTINE_SECONDS (1), OUTAGE_BENCH_KEEP=1 keeps the logs in $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-obench}
shift || true
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(10000 50000)
AENGINE=$PWD/$BUILD/aengine
[ -x "$AENGINE" ] || { echo "no $AENGINE (cmake -S . -B $BUILD -DCMAKE_BUILD_TYPE=Release && cmake --build $BUILD)" >&2; exit 2; }
WORK=${OUTAGE_BENCH_WORK:-$(mktemp -d /tmp/outage-bench.XXXXXX)}
mkdir -p "$WORK"
TCK=$(getconf CLK_TCK)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

tests/servers.sh start "$WORK/srv" >/dev/null
# shellcheck disable=SC1091
. "$WORK/srv/env"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  tests/servers.sh stop "$WORK/srv" >/dev/null 2>&1 || true
  [ "${OUTAGE_BENCH_KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

cpu() { # pid -> user+sys clock ticks
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}
hwm() { # pid -> VmHWM in MB
  awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"
}
wait_for() { # file pattern seconds
  for _ in $(seq 1 $(($3 * 20))); do
    if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "outage_bench: timed out waiting for '$2' in $1" >&2
  tail -20 "$1" >&2
  return 1
}

export NATS_SERVER1=$AE_TEST_NATS_URL
export REDIS_HOSTNAME=127.0.0.1:$AE_TEST_REDIS_PORT
export OUTAGE_BENCH_DOWN=${OUTAGE_BENCH_DOWN-10,55}
export OUTAGE_QUARANTINE_SECONDS=${OUTAGE_QUARANTINE_SECONDS:-1}
export AE_LOG_LEVEL=${AE_LOG_LEVEL:-INFO}

printf '| edges | cached | OFFLINE | cycle wall (first pass + re-check) | B CPU | A CPU (sims + capabilities) | B peak RSS | A peak RSS |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for N in "${SIZES[@]}"; do
  D="$WORK/$N"
  mkdir -p "$D"
  redis-cli -p "$AE_TEST_REDIS_PORT" FLUSHALL >/dev/null
  PORT=$(free_port)
  AE_HTTP_LISTEN=127.0.0.1:$PORT SANDBOX_EDGES=$N AE_CONSOLE_SOCKET=$D/a.sock \
    "$AENGINE" run -c bench/outage_sims.lua >"$D/a.log" 2>&1 &
  A=$!
  pids+=("$A")
  wait_for "$D/a.log" "outage bench seed done" 300
  OUTAGE_BENCH_DIR=$D "$AENGINE" run -c bench/outage_monitor.lua >"$D/b.log" 2>&1 &
  B=$!
  pids+=("$B")
  wait_for "$D/b.log" "started\|unit service_outage_monitor" 30 || true
  sleep 1
  a0=$(cpu "$A")
  b0=$(cpu "$B")
  : >"$D/go"
  for _ in $(seq 1 6000); do [ -s "$D/done" ] && break; sleep 0.05; done
  [ -s "$D/done" ] || { echo "outage_bench: no cycle result for $N edges" >&2; tail -20 "$D/b.log" >&2; exit 1; }
  a1=$(cpu "$A")
  b1=$(cpu "$B")
  read -r status first recheck total <"$D/done"
  cached=$(sed -n 's/.*seed done: \([0-9]*\) cache entries.*/\1/p' "$D/a.log")
  off=$(sed -n 's/.*, \([0-9]*\) edges OFFLINE.*/\1/p' "$D/a.log")
  printf '| %d | %s | %s | %.1f s (%.1f + %.1f)%s | %.1f s | %.1f s | %s MB | %s MB |\n' "$N" "$cached" "$off" \
    "$total" "$first" "$recheck" "$([ "$status" = ok ] || echo ' FAILED')" \
    "$(echo "($b1 - $b0) / $TCK" | bc -l)" "$(echo "($a1 - $a0) / $TCK" | bc -l)" "$(hwm "$B")" "$(hwm "$A")"
  grep -h "outage cycle done\|outage bench:" "$D/b.log" | sed 's/^/    /' >&2
  kill "$B" "$A"
  wait "$B" 2>/dev/null || true
  wait "$A" 2>/dev/null || true
  pids=()
done
