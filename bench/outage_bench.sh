#!/usr/bin/env bash
# One full service-outage-monitor outage cycle (first pass over the four
# sandbox hosts + the re-check of the edges in outage) against the sandbox
# simulators with zero simulated latency. Three engines on one nats-server and
# one redis-server (started here on free ports, stopped at the end):
#   S = the simulators (bench/outage_sims.lua, OUTAGE_BENCH_PART=sims: config/sandbox.lua's simulators,
#       customer_cache keys seeded by bench/outage_seed.lua, 2 % of the edges OFFLINE)
#   C = the capabilities (same file, OUTAGE_BENCH_PART=caps: bridges, notifier, customer-cache serving)
#   B = the outage process alone (bench/outage_monitor.lua + bench/outage_driver.lua)
# Prints one table row per fleet size: wall time of the cycle, CPU (user+sys) of B, C and S during
# the cycle, peak RSS (VmHWM) of B, C and S.
#
#   bench/outage_bench.sh [BUILD_DIR] [EDGES ...]      default: build-obench 10000 50000
# Environment: OUTAGE_BENCH_DOWN (residues mod OUTAGE_BENCH_DOWN_MOD=200 of the edge index that go OFFLINE,
# "13,30,51,80" = 2 % spread over the 4 hosts,
# "" = none), OUTAGE_QUARANTINE_SECONDS (0: the re-check of a host runs as soon as its first pass is done), OUTAGE_BENCH_KEEP=1 keeps the logs in $WORK.
# OUTAGE_BENCH_NATS_GOMAXPROCS (default 1; empty = Go's default) for nats-server.
# OUTAGE_BENCH_PROFILE=1: each engine writes a Lua profile (AE_PROFILE, docs/operating.md) to $WORK/<N>/{s,c,b}.prof
# (implies OUTAGE_BENCH_KEEP=1).
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

# nats-server shares the 2 cores with five busy processes here: with Go's default GOMAXPROCS=2 its idle
# scheduler threads spin looking for work, which measured 12-14 s of nats-server CPU per 50,000-edge cycle
# against 6-9 s with 1 (in production nats-server has its own machine). OUTAGE_BENCH_NATS_GOMAXPROCS= keeps Go's default.
NATS_PROCS=${OUTAGE_BENCH_NATS_GOMAXPROCS-1}
if [ -n "$NATS_PROCS" ]; then
  GOMAXPROCS=$NATS_PROCS tests/servers.sh start "$WORK/srv" >/dev/null
else
  tests/servers.sh start "$WORK/srv" >/dev/null
fi
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

# A sleep without a fork: the harness polls while the cycle runs, and forking
# `sleep` 20 times a second cost ~8 % of the machine's CPU samples (perf).
exec {SNOOZE_FD}<> <(:)
snooze() { read -r -t "$1" -u "$SNOOZE_FD" || true; }
ctxt() { # pid -> voluntary+involuntary context switches of all its threads
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { n += $2 } END { print n + 0 }'
}
cpu() { # pid -> user+sys clock ticks
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}
hwm() { # pid -> VmHWM in MB
  awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"
}
wait_for() { # file pattern seconds
  for _ in $(seq 1 $(($3 * 20))); do
    if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
    snooze 0.05
  done
  echo "outage_bench: timed out waiting for '$2' in $1" >&2
  tail -20 "$1" >&2
  return 1
}

export NATS_SERVER1=$AE_TEST_NATS_URL
export REDIS_HOSTNAME=127.0.0.1:$AE_TEST_REDIS_PORT
export OUTAGE_BENCH_DOWN=${OUTAGE_BENCH_DOWN-13,30,51,80}
export OUTAGE_QUARANTINE_SECONDS=${OUTAGE_QUARANTINE_SECONDS:-0}
export AE_LOG_LEVEL=${AE_LOG_LEVEL:-INFO}
PROFILE=${OUTAGE_BENCH_PROFILE:-0}
[ "$PROFILE" = 1 ] && OUTAGE_BENCH_KEEP=1
prof() { [ "$PROFILE" = 1 ] && echo "$1" || true; }

printf '| edges | cached | OFFLINE | cycle wall (first pass; re-check span) | CPU B / C / S | CPU nats-server / redis | peak RSS B / C / S |\n'
printf '|---|---|---|---|---|---|---|\n'
# OUTAGE_BENCH_RUNS=K runs each size K times (a row each): the shared machine varies by ±20 % within minutes.
RUNS=${OUTAGE_BENCH_RUNS:-1}
ALL=()
for N in "${SIZES[@]}"; do for _ in $(seq 1 "$RUNS"); do ALL+=("$N"); done; done
RUN=0
for N in "${ALL[@]}"; do
  RUN=$((RUN + 1))
  D="$WORK/$N"
  [ "$RUNS" -gt 1 ] && D="$WORK/$N.$RUN"
  mkdir -p "$D"
  redis-cli -p "$AE_TEST_REDIS_PORT" FLUSHALL >/dev/null
  PORT=$(free_port)
  export SANDBOX_EDGES=$N OUTAGE_BENCH_SIMS_LISTEN=127.0.0.1:$PORT
  AE_PROFILE=$(prof "$D/s.prof") AE_HTTP_LISTEN=127.0.0.1:$PORT OUTAGE_BENCH_PART=sims AE_CONSOLE_SOCKET=$D/s.sock "$AENGINE" run -c bench/outage_sims.lua >"$D/s.log" 2>&1 &
  S=$!
  pids+=("$S")
  wait_for "$D/s.log" "outage bench seed done" 300
  AE_PROFILE=$(prof "$D/c.prof") AE_HTTP_LISTEN=127.0.0.1:0 OUTAGE_BENCH_PART=caps AE_CONSOLE_SOCKET=$D/c.sock "$AENGINE" run -c bench/outage_sims.lua >"$D/c.log" 2>&1 &
  C=$!
  pids+=("$C")
  wait_for "$D/c.log" "customer-cache serving" 30
  for _ in 1 2 3 4; do wait_for "$D/c.log" "logged in to" 30; done
  wait_for "$D/c.log" "bruin-bridge serving" 30
  AE_PROFILE=$(prof "$D/b.prof") OUTAGE_BENCH_DIR=$D "$AENGINE" run -c bench/outage_monitor.lua >"$D/b.log" 2>&1 &
  B=$!
  pids+=("$B")
  wait_for "$D/b.log" "started\|unit service_outage_monitor" 30 || true
  sleep 1
  NP=$(cat "$WORK/srv/nats.pid")
  RP=$(cat "$WORK/srv/redis.pid")
  s0=$(cpu "$S")
  c0=$(cpu "$C")
  b0=$(cpu "$B")
  n0=$(cpu "$NP")
  r0=$(cpu "$RP")
  x0="$(ctxt "$B") $(ctxt "$C") $(ctxt "$S") $(ctxt "$NP")"
  : >"$D/go"
  for _ in $(seq 1 6000); do [ -s "$D/done" ] && break; snooze 0.05; done
  [ -s "$D/done" ] || { echo "outage_bench: no cycle result for $N edges" >&2; tail -20 "$D/b.log" >&2; exit 1; }
  s1=$(cpu "$S")
  c1=$(cpu "$C")
  b1=$(cpu "$B")
  n1=$(cpu "$NP")
  r1=$(cpu "$RP")
  x1="$(ctxt "$B") $(ctxt "$C") $(ctxt "$S") $(ctxt "$NP")"
  read -r status first recheck total <"$D/done"
  cached=$(sed -n 's/.*seed done: \([0-9]*\) cache entries.*/\1/p' "$D/s.log")
  off=$(sed -n 's/.*, \([0-9]*\) edges OFFLINE.*/\1/p' "$D/s.log")
  secs() { echo "($2 - $1) / $TCK" | bc -l; }
  printf '| %d | %s | %s | %.1f s (%.1f; %.1f)%s | %.1f / %.1f / %.1f s | %.1f / %.1f s | %s / %s / %s MB |\n' "$N" \
    "$cached" "$off" "$total" "$first" "$recheck" "$([ "$status" = ok ] || echo ' FAILED')" \
    "$(secs "$b0" "$b1")" "$(secs "$c0" "$c1")" "$(secs "$s0" "$s1")" "$(secs "$n0" "$n1")" "$(secs "$r0" "$r1")" \
    "$(hwm "$B")" "$(hwm "$C")" "$(hwm "$S")"
  echo "$x0 $x1" | awk '{ printf "    context switches B / C / S / nats-server: %d / %d / %d / %d\n", $5 - $1, $6 - $2, $7 - $3, $8 - $4 }' >&2
  grep -h "outage cycle done\|outage bench:" "$D/b.log" | sed 's/^/    /' >&2
  kill "$B" "$C" "$S"
  for p in "$B" "$C" "$S"; do wait "$p" 2>/dev/null || true; done
  pids=()
done
