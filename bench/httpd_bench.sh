#!/usr/bin/env bash
# HTTP server throughput: an aengine Lua route vs a minimal evhttp C server,
# side by side under wrk (short runs: the machine is shared).
# usage: bench/httpd_bench.sh [BUILD_DIR] [DURATION]   (default build, 3s)
set -euo pipefail
build=${1:-build}
dur=${2:-3s}
here=$(cd "$(dirname "$0")" && pwd)
port_raw=$((20000 + RANDOM % 10000))
port_ae=$((port_raw + 1))
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
"$build/bench/bench_evhttp_raw" "$port_raw" & pids+=($!)
AE_LOG_LEVEL=WARNING AE_HTTP_LISTEN=127.0.0.1:$port_ae "$build/aengine" run "$here/httpd_unit.lua" & pids+=($!)
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$port_ae/hello" >/dev/null && curl -sf "http://127.0.0.1:$port_raw/hello" >/dev/null && break
  sleep 0.1
done
run() { wrk -t1 -c50 -d"$dur" "$1" | awk '/Requests\/sec/ {print $2} /Latency/ && !l {print $2; l=1}'; }
read -r lat_raw rps_raw < <(run "http://127.0.0.1:$port_raw/hello" | paste -sd' ')
read -r lat_ae rps_ae < <(run "http://127.0.0.1:$port_ae/hello" | paste -sd' ')
read -r lat_js rps_js < <(run "http://127.0.0.1:$port_ae/hello-json" | paste -sd' ')
printf '| server | requests/s | avg latency | ratio |\n|---|---|---|---|\n'
printf '| evhttp C (bench/evhttp_raw.c) | %s | %s | 1.00 |\n' "$rps_raw" "$lat_raw"
printf '| aengine Lua route, body string | %s | %s | %.2f |\n' "$rps_ae" "$lat_ae" "$(echo "$rps_ae / $rps_raw" | bc -l)"
printf '| aengine Lua route, json = {...} | %s | %s | %.2f |\n' "$rps_js" "$lat_js" "$(echo "$rps_js / $rps_raw" | bc -l)"
