#!/usr/bin/env bash
# Install what aengine needs to build, run and test (Debian packages), then
# configure and build it in build/. Safe to run again: installs only what is
# missing. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config git
  liblua5.4-dev lua5.4 libevent-dev libcurl4-openssl-dev libcjson-dev libnats-dev libhiredis-dev libedit-dev
  nats-server redis-server
  lua-busted lua-cjson lua-check
  python3 python3-aiosmtpd openssl curl tzdata
  clang-format wrk tmux
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}
cmake -S . -B build -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >/dev/null
cmake --build build -j"$(nproc)"
