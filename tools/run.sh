#!/usr/bin/env bash
# Set everything up and run the engine on its default config, the sandbox:
# starts a local nats-server and redis-server (on 4222/6379 unless
# AE_NATS_PORT/AE_REDIS_PORT say otherwise) and the SMTP sink, then
# `aengine run -c config/sandbox.lua` (AE_CONFIG_FILE picks another config,
# e.g. config/engine.lua: the minimal example). Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh

NATS_PORT=${AE_NATS_PORT:-4222}
REDIS_PORT=${AE_REDIS_PORT:-6379}
RUN_DIR=${AE_RUN_DIR:-$PWD/build/run}
CONFIG=${AE_CONFIG_FILE:-config/sandbox.lua}
SMTP_HTTP_PORT=${SANDBOX_SMTP_HTTP_PORT:-2580}
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
if grep -q SANDBOX_SMTP_PORT "$CONFIG" && ! port_open "${SANDBOX_SMTP_PORT:-2525}"; then
  /usr/bin/python3 scripts/sandbox/smtp_sink.py --port "${SANDBOX_SMTP_PORT:-2525}" --tls-port -1 \
    --http-port "$SMTP_HTTP_PORT" --dir "$RUN_DIR/mail" \
    >"$RUN_DIR/smtp_sink.log" 2>&1 &
  pids+=($!)
fi

export NATS_SERVER1=${NATS_SERVER1:-nats://127.0.0.1:$NATS_PORT}
export REDIS_HOSTNAME=${REDIS_HOSTNAME:-127.0.0.1:$REDIS_PORT}
export AE_HTTP_LISTEN=${AE_HTTP_LISTEN:-127.0.0.1:5000}
export AE_CONSOLE_SOCKET=${AE_CONSOLE_SOCKET:-$RUN_DIR/aengine.sock}

cat <<EOT
aengine on $CONFIG: nats $NATS_SERVER1, redis $REDIS_HOSTNAME
  health:    curl http://$AE_HTTP_LISTEN/_health
  metrics:   curl -s http://$AE_HTTP_LISTEN/metrics | grep -E '^(outage_ticket|autoresolve|reopened)_counter_total|^aengine_unit'
  console:   build/aengine console --socket $AE_CONSOLE_SOCKET      (try: units, timers, help)
EOT
if [ "$CONFIG" = config/sandbox.lua ]; then
cat <<EOT
  tickets:   curl -s http://$AE_HTTP_LISTEN/sim/bruin/_calls?path=repair     (outage tickets asked of the simulated Bruin)
  slack:     curl -s http://$AE_HTTP_LISTEN/sim/slack/_messages
  email:     curl -s http://127.0.0.1:$SMTP_HTTP_PORT/messages
  in the logs below: "outage ticket ... created", "triage note appended", "autoresolved" (first tickets ~2 minutes in)
EOT
fi
echo "  logs:      below (Ctrl-C to stop)"
# own session: a terminal Ctrl-C reaches this script only, which asks the
# engine once for a graceful stop (a second signal would make it exit at once)
setsid build/aengine run -c "$CONFIG" &
engine=$!
trap 'kill -TERM $engine 2>/dev/null || true' INT TERM
wait $engine || true
wait $engine 2>/dev/null || true
