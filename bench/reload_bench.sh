#!/usr/bin/env bash
# Hot reload under load: a unit serving NATS requests is reloaded (SIGHUP)
# RELOADS times while a requester (bench/reload_bench.lua) sends RATE
# requests per second. Reports the time from SIGHUP to the first reply of the
# new version, the engine's own "started in" time, and requests lost.
# usage: bench/reload_bench.sh BUILD_DIR [RATE] [RELOADS]
set -euo pipefail
build=$(readlink -f "${1:-build}")
rate=${2:-3000}
reloads=${3:-5}
secs=$(python3 -c "print($reloads * 0.5 + 1.5)")
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nats-server -a 127.0.0.1 -p "$port" -P "$dir/nats.pid" -l "$dir/nats.log" &
engine=
cleanup() {
  [ -n "$engine" ] && kill "$engine" 2>/dev/null && wait "$engine" 2>/dev/null
  kill "$(cat "$dir/nats.pid")" 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
export NATS_SERVER1=nats://127.0.0.1:$port
subject=bench.reload.$$

write_unit() {
  cat > "$dir/serve.lua" <<LUA
local nats = require "ae.nats"
local unit = require "ae.unit"
assert(nats.serve("$subject", function(req) return { n = req.n, v = unit.version } end, { queue = "bench" }))
assert(nats.flush(5))
-- edit $1
LUA
}
write_unit 0
cat > "$dir/engine.lua" <<LUA
return { console = { socket = "$dir/c.sock" }, units = { { name = "serve", script = "$dir/serve.lua" } } }
LUA
AE_LOG_LEVEL=INFO "$build/aengine" run -c "$dir/engine.lua" > "$dir/engine.log" 2>&1 &
engine=$!
for _ in $(seq 1 100); do [ -S "$dir/c.sock" ] && break; sleep 0.05; done

AE_LOG_LEVEL=ERROR "$build/aengine" exec "$(dirname "$0")/reload_bench.lua" "$subject" "$rate" "$secs" \
  > "$dir/requester.out" &
requester=$!
sleep 1
: > "$dir/hup.times"
for i in $(seq 1 "$reloads"); do
  write_unit "$i"
  date +%s.%N >> "$dir/hup.times"
  kill -HUP "$engine"
  sleep 0.5
done
wait "$requester"

python3 - "$dir" "$rate" <<'PY'
import re, sys
d, rate = sys.argv[1], sys.argv[2]
hups = [float(x) for x in open(d + "/hup.times").read().split()]
out = open(d + "/requester.out").read()
first = {int(v): float(t) for v, t in re.findall(r"first (\d+) ([\d.]+)", out)}
summary = re.search(r"sent (\d+) ok (\d+) lost (\d+) dup (\d+) rate (\d+)", out)
started = [float(x) for x in re.findall(r"reload: version \d+ started in ([\d.]+) ms", open(d + "/engine.log").read())]
print("| reload | SIGHUP -> first reply of the new version (ms) | engine: new version started (ms) |")
print("|---|---|---|")
for i, t in enumerate(hups):
    v = i + 2
    lat = "%.1f" % ((first[v] - t) * 1000) if v in first else "no reply"
    st = "%.1f" % started[i] if i < len(started) else "-"
    print("| %d | %s | %s |" % (i + 1, lat, st))
if summary:
    s, ok, lost, dup, r = summary.groups()
    print()
    print("requests: sent %s (%s/s achieved, %s/s asked), answered %s, lost %s, duplicate replies %s" % (s, r, rate, ok, lost, dup))
for e in re.findall(r"error (.*)", out):
    print("error:", e)
PY
