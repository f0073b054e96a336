#!/usr/bin/env bash
# HTTP client benchmark: ae.http (Lua tasks) vs a plain C libcurl-multi program,
# side by side, against the same local evhttp server, at 1, 64 and 512 in flight.
# usage: bench/http_client_bench.sh BUILD_DIR [TOTAL]
set -euo pipefail
build=${1:-build}
total=${2:-20000}
bench="$build/bench"
exec 3< <(sleep 600)   # the server's stdin: it exits when this script does
keeper=$!
"$bench/bench_http_bench_server" 0 <&3 >"/tmp/http_bench_server.$$" &
srv=$!
trap 'kill $srv $keeper 2>/dev/null || true; rm -f /tmp/http_bench_server.$$' EXIT
for _ in $(seq 1 50); do grep -q port "/tmp/http_bench_server.$$" 2>/dev/null && break; sleep 0.05; done
port=$(awk '/port/ {print $2}' "/tmp/http_bench_server.$$")
url="http://127.0.0.1:$port/hello"
printf '| in flight | requests | raw C libcurl multi (req/s) | ae.http from Lua (req/s) | ratio |\n'
printf '|---|---|---|---|---|\n'
for conc in 1 64 512; do
  n=$total
  [ "$conc" = 1 ] && n=$((total / 4))
  raw=$("$bench/bench_curl_multi_raw" "$url" "$n" "$conc" | sed -n 's/.*rps=\([0-9]*\).*/\1/p')
  lua=$(AE_LOG_LEVEL=ERROR "$build/aengine" exec bench/http_client_bench.lua "$url" "$n" "$conc" |
    sed -n 's/.*rps=\([0-9]*\).*/\1/p')
  ratio=$(awk -v a="$lua" -v b="$raw" 'BEGIN { printf "%.2f", a / b }')
  printf '| %s | %s | %s | %s | %sx |\n' "$conc" "$n" "$raw" "$lua" "$ratio"
done
