#!/usr/bin/env bash
# Set everything up and run the engine on its default config: starts a local
# nats-server and redis-server (on 4222/6379 unless AE_NATS_PORT/AE_REDIS_PORT
# say otherwise), then `aengine run -c config/engine.lua`. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh

NATS_PORT=${AE_NATS_PORT:-4222}
REDIS_PORT=${AE_REDIS_PORT:-6379}
RUN_DIR=${AE_RUN_DIR:-$PWD/build/run}
mkdir -p "$RUN_DIR"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open "$NATS_PORT"; then
  nats-server -a 127.0.0.1 -p "$NATS_PORT" -l "$RUN_DIR/nats.log" &
  pids+=($!)
fi
if ! port_open "$REDIS_PORT"; then
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$RUN_DIR" \
    --logfile "$RUN_DIR/redis.log" &
  pids+=($!)
fi
for _ in $(seq 1 100); do port_open "$NATS_PORT" && port_open "$REDIS_PORT" && break; sleep 0.05; done
# a config that sends mail to the sandbox SMTP sink (config/sandbox.lua) gets it started
if grep -q SANDBOX_SMTP_PORT "${AE_CONFIG_FILE:-config/engine.lua}" && ! port_open "${SANDBOX_SMTP_PORT:-2525}"; then
  /usr/bin/python3 scripts/sandbox/smtp_sink.py --port "${SANDBOX_SMTP_PORT:-2525}" --tls-port -1 \
    >"$RUN_DIR/smtp_sink.log" 2>&1 &
  pids+=($!)
fi

export NATS_SERVER1=${NATS_SERVER1:-nats://127.0.0.1:$NATS_PORT}
export REDIS_HOSTNAME=${REDIS_HOSTNAME:-127.0.0.1:$REDIS_PORT}
export AE_HTTP_LISTEN=${AE_HTTP_LISTEN:-127.0.0.1:5000}

cat <<EOT
aengine: nats $NATS_SERVER1, redis $REDIS_HOSTNAME
  health:  curl http://$AE_HTTP_LISTEN/_health
  metrics: curl http://$AE_HTTP_LISTEN/metrics
  console: build/aengine console
  logs:    below (Ctrl-C to stop)
EOT
# own session: a terminal Ctrl-C reaches this script only, which asks the
# engine once for a graceful stop (a second signal would make it exit at once)
setsid build/aengine run -c "${AE_CONFIG_FILE:-config/engine.lua}" &
engine=$!
trap 'kill -TERM $engine 2>/dev/null || true' INT TERM
wait $engine || true
wait $engine 2>/dev/null || true
