#!/usr/bin/env bash
# The console in a real terminal (tmux): typing a command and seeing its
# output, history with the up arrow, tab completion of commands, units and
# jobs. usage: tests/console_tty.sh AENGINE
set -euo pipefail
aengine=$(readlink -f "${1:-build/aengine}")
command -v tmux >/dev/null || { echo "SKIP: tmux is not installed"; exit 77; }

dir=$(mktemp -d /tmp/ae-tty.XXXXXX)
sock=$dir/c.sock
session=ae-tty-$$
pid=
cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

cat > "$dir/heartbeat.lua" <<'EOF'
local timer = require "ae.timer"
timer.every(3600, function() end, { name = "nightly_sync" })
EOF
cat > "$dir/engine.lua" <<EOF
return {
  console = { socket = "$sock" },
  units = { { name = "heartbeat", script = "$dir/heartbeat.lua" } },
}
EOF
AE_LOG_LEVEL=WARNING "$aengine" run -c "$dir/engine.lua" > "$dir/engine.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { echo "FAIL: the engine did not open $sock"; cat "$dir/engine.log"; exit 1; }

fail() {
    echo "FAIL: $1"
    echo "---- screen ----"
    tmux capture-pane -p -t "$session" || true
    exit 1
}

# wait until the screen matches a regex (5 s)
expect() {
    for _ in $(seq 100); do
        if tmux capture-pane -p -t "$session" | grep -Eq -- "$1"; then return 0; fi
        sleep 0.05
    done
    fail "expected /$1/ on the screen"
}

count() { tmux capture-pane -p -t "$session" | grep -Ec -- "$1" || true; }

tmux new-session -d -s "$session" -x 160 -y 50 \
    "env HOME=$dir TERM=xterm $aengine console --socket $sock; sleep 30"
expect 'aengine>'

# 1. a command and its output
tmux send-keys -t "$session" 'units' Enter
expect 'heartbeat +running +1 '

# 2. history: the up arrow brings `units` back
tmux send-keys -t "$session" 'clear' C-u # nothing typed
tmux send-keys -t "$session" Up
expect 'aengine> units$'
tmux send-keys -t "$session" Enter
for _ in $(seq 100); do [ "$(count 'heartbeat +running')" -ge 2 ] && break; sleep 0.05; done
[ "$(count 'heartbeat +running')" -ge 2 ] || fail "the recalled command did not run"

# 3. tab completion of a command: `tim` -> `timers`
tmux send-keys -t "$session" 'tim' Tab
expect 'aengine> timers *$'
tmux send-keys -t "$session" Enter
expect 'heartbeat +nightly_sync +every +3600s'

# 4. completion of a unit name and a job name: `run hea<Tab> nig<Tab>`
tmux send-keys -t "$session" 'run hea' Tab
expect 'aengine> run heartbeat *$'
tmux send-keys -t "$session" 'nig' Tab
expect 'aengine> run heartbeat nightly_sync *$'
tmux send-keys -t "$session" Enter
expect "job 'nightly_sync' started"

# 5. errors are shown, the session goes on; quit leaves and saves history
tmux send-keys -t "$session" 'bogus' Enter
expect "unknown command 'bogus'"
tmux send-keys -t "$session" 'quit' Enter
for _ in $(seq 100); do [ -s "$dir/.aengine_history" ] && break; sleep 0.05; done
grep -q 'nightly_sync' "$dir/.aengine_history" || fail "history was not saved"

echo "PASS: console in a terminal (output, history, completion)"
