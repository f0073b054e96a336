#!/usr/bin/env bash
# Set everything up and run every test: hygiene (luacheck, clang-format), the
# ctest suite built with AddressSanitizer + UndefinedBehaviorSanitizer, then the
# whole ctest suite on the normal build (C tests + busted specs against real
# nats-server/redis-server, the sandbox simulators and an SMTP sink).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh

echo "== luacheck"
luacheck --config .luacheckrc scripts spec core/lua bench

echo "== clang-format"
clang-format --dry-run -Werror core/*.c core/*.h tests/c/*.c bench/*.c

echo "== C tests and specs under ASan + UBSan"
# Every test but the ones that measure process memory or timing of child
# processes (ASan's quarantine and slowdown make those meaningless).
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DAE_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$(nproc)"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j2 -E 'spec\.(reload|console)')

echo "== all tests"
(cd build && ctest --output-on-failure -j2)
