#!/usr/bin/env bash
# Checks that bench/outage_seed.lua writes the customer_cache keys a real
# refresh would write: builds the cache of a small fleet through the bridges
# (customer-cache refresh against the simulators), then seeds it, and compares
# the four host keys entry by entry (last_contact compared as "present";
# both are the VeloCloud simulator's clock-relative value).
#   bench/outage_seed_check.sh [BUILD_DIR] [EDGES]      default: build-obench 200
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-obench}
N=${2:-200}
AENGINE=$PWD/$BUILD/aengine
WORK=$(mktemp -d /tmp/outage-seed-check.XXXXXX)
tests/servers.sh start "$WORK/srv" >/dev/null
# shellcheck disable=SC1091
. "$WORK/srv/env"
pid=
cleanup() {
  [ -z "$pid" ] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  tests/servers.sh stop "$WORK/srv" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export NATS_SERVER1=$AE_TEST_NATS_URL REDIS_HOSTNAME=127.0.0.1:$AE_TEST_REDIS_PORT SANDBOX_EDGES=$N
export OUTAGE_BENCH_DOWN='' OUTAGE_BENCH_PART=all AE_CONSOLE_SOCKET=$WORK/a.sock
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
dump() { # -> file: the four keys of db 1 (the sandbox customer_cache connection)
  for h in mettel.velocloud.net metvco02.mettel.net metvco03.mettel.net metvco04.mettel.net; do
    printf '%s\t' "$h"; redis-cli -p "$AE_TEST_REDIS_PORT" -n 1 GET "$h"
  done >"$1"
}
run() { # name refresh seed pattern count
  redis-cli -p "$AE_TEST_REDIS_PORT" FLUSHALL >/dev/null
  AE_HTTP_LISTEN=127.0.0.1:$port OUTAGE_BENCH_REFRESH=$2 OUTAGE_BENCH_SEED=$3 \
    "$AENGINE" run -c bench/outage_sims.lua >"$WORK/$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 1800); do
    [ "$(grep -c "$4" "$WORK/$1.log")" -ge "$5" ] && break
    sleep 0.1
  done
  [ "$(grep -c "$4" "$WORK/$1.log")" -ge "$5" ] || { echo "no '$4' in $1 run" >&2; tail "$WORK/$1.log" >&2; exit 1; }
  dump "$WORK/$1.keys"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}
run built 1 0 "cache of .* stored" 4
run seeded 0 1 "outage bench seed done" 1
python3 - "$WORK/built.keys" "$WORK/seeded.keys" <<'PY'
import json, sys
def load(p):
    out = {}
    for line in open(p):
        host, _, doc = line.rstrip("\n").partition("\t")
        entries = json.loads(doc) if doc else []
        for e in entries:
            assert e.get("last_contact"), e
            e["last_contact"] = "present"
        out[host] = entries
    return out
built, seeded = load(sys.argv[1]), load(sys.argv[2])
bad = 0
for host in built:
    b = sorted(built[host], key=lambda e: e["edge"]["edge_id"])
    s = sorted(seeded[host], key=lambda e: e["edge"]["edge_id"])
    if b != s:
        bad += 1
        print(f"{host}: built {len(b)} entries, seeded {len(s)}: DIFFERENT")
    else:
        print(f"{host}: {len(b)} entries, identical")
sys.exit(1 if bad else 0)
PY
