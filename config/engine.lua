-- aengine minimal configuration: the example unit alone (AE_CONFIG_FILE=config/engine.lua tools/run.sh);
-- tools/run.sh runs config/sandbox.lua by default.
-- Connections fall back to the original services' environment variables
-- (NATS_SERVER1, REDIS_HOSTNAME, ...) when not set here. Secrets never go in
-- this file: units read them from the environment.
return {
  scripts = "scripts", -- require root: require "lib.x" loads scripts/lib/x.lua
  shutdown_deadline = 20, -- seconds running tasks get on SIGTERM
  log = { level = os.getenv("AE_LOG_LEVEL") or "INFO" },
  http = { listen = os.getenv("AE_HTTP_LISTEN") or "127.0.0.1:5000" },
  console = { socket = os.getenv("AE_CONSOLE_SOCKET") or "build/run/aengine.sock" },
  defaults = {
    memory_limit_mb = 1024, -- per unit
    instruction_budget = 1e9, -- Lua instructions per resume, per task
  },
  units = {
    { name = "heartbeat", script = "scripts/examples/heartbeat.lua", config = { interval = 5 } },
  },
}
