#!/usr/bin/env bash
# Start or stop the nats-server and redis-server that the busted specs share,
# on free loopback ports. `start DIR` writes DIR/env (sourced by run_spec.sh).
set -euo pipefail
cmd=$1
dir=$2

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() { # host port
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "servers.sh: nothing listens on $1:$2" >&2
  return 1
}

case "$cmd" in
start)
  "$0" stop "$dir" 2>/dev/null || true
  mkdir -p "$dir"
  nats_port=$(free_port)
  redis_port=$(free_port)
  # detached from our stdio: ctest waits for the pipes of its tests to close
  setsid nats-server -a 127.0.0.1 -p "$nats_port" -P "$dir/nats.pid" -l "$dir/nats.log" \
    </dev/null >/dev/null 2>&1 &
  redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
  wait_port 127.0.0.1 "$nats_port"
  wait_port 127.0.0.1 "$redis_port"
  cat > "$dir/env" <<EOT
export AE_TEST_NATS_URL=nats://127.0.0.1:$nats_port
export AE_TEST_REDIS_URL=redis://127.0.0.1:$redis_port
export AE_TEST_NATS_PORT=$nats_port
export AE_TEST_REDIS_PORT=$redis_port
EOT
  echo "nats on $nats_port, redis on $redis_port"
  ;;
stop)
  for f in nats redis; do
    if [ -f "$dir/$f.pid" ]; then
      kill "$(cat "$dir/$f.pid")" 2>/dev/null || true
      rm -f "$dir/$f.pid"
    fi
  done
  ;;
*)
  echo "usage: servers.sh start|stop DIR" >&2
  exit 2
  ;;
esac
