#!/usr/bin/env bash
# Build aengine (release flags) and run the ae.json vs lua-cjson benchmark.
# usage: bench/json_bench.sh [BUILD_DIR] [ROUNDS]     (defaults: build-bench 15)
# Prints the markdown table kept in docs/bench/json.md.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-bench}
rounds=${2:-15}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAE_SPECS=OFF >/dev/null
cmake --build "$build" -j2 --target aengine >/dev/null
AE_LOG_LEVEL=WARNING "$build/aengine" exec bench/json_bench.lua "$rounds"
