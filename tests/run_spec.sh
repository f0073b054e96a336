#!/usr/bin/env bash
# Run one busted spec file inside the engine, with the shared test servers.
# usage: run_spec.sh AENGINE SERVERS_DIR SPEC_FILE
set -euo pipefail
aengine=$1
servers=$2
spec=$3
# shellcheck disable=SC1091
[ -f "$servers/env" ] && . "$servers/env"
export AE_TEST_AENGINE="$aengine"
# the bindings' default connections, as the original services' variables
export NATS_SERVER1=${AE_TEST_NATS_URL:-}
export REDIS_HOSTNAME=${AE_TEST_REDIS_URL:-}
export AE_LOG_LEVEL=${AE_LOG_LEVEL:-WARNING}
# the engine's main HTTP server on a free loopback port (never 0.0.0.0:5000 in tests)
export AE_HTTP_LISTEN=${AE_HTTP_LISTEN:-127.0.0.1:0}
exec "$aengine" test --output=plainTerminal "$spec"
