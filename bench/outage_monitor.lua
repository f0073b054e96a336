-- Process B of bench/outage_bench.sh: the service-outage-monitor outage
-- process alone (bench/outage_driver.lua runs one cycle on demand), outage
-- mode over the four sandbox hosts, production, no lease.
-- Environment: NATS_SERVER1, REDIS_HOSTNAME, OUTAGE_BENCH_DIR (go/done files),
-- OUTAGE_QUARANTINE_SECONDS (re-check delay; the bench uses 0).
local dir = assert(os.getenv("OUTAGE_BENCH_DIR"), "OUTAGE_BENCH_DIR is needed")
local hosts = "mettel.velocloud.net:metvco02.mettel.net:metvco03.mettel.net:metvco04.mettel.net"
return {
  scripts = "scripts",
  shutdown_deadline = 5,
  log = { level = os.getenv("AE_LOG_LEVEL") or "INFO" },
  http = { listen = os.getenv("AE_HTTP_LISTEN_B") or "127.0.0.1:0" },
  console = { socket = dir .. "/b.sock" },
  redis = { main = os.getenv("REDIS_HOSTNAME") or "127.0.0.1:6379" },
  nats = { send_asap = os.getenv("OUTAGE_BENCH_SEND_ASAP") ~= "0" },
  -- a use-case engine: a ~40 MB live Lua heap and a few replies of 16-18 MB per cycle. Buffers of 1 MB and
  -- more get their own mapping, so they do not fragment the heap (docs/engine.md, "Memory allocator")
  malloc = { mmap_threshold_mb = tonumber(os.getenv("OUTAGE_BENCH_B_MMAP_MB")) or 1,
    trim_threshold_mb = tonumber(os.getenv("OUTAGE_BENCH_B_TRIM_MB")) },
  defaults = { memory_limit_mb = 1024, instruction_budget = 1e9 },
  units = {
    { name = "service_outage_monitor", script = "bench/outage_driver.lua",
      config = { triage = 0, environment = "production", environment_name = "sandbox", velocloud_hosts = hosts,
        velocloud_hosts_filter = "[]:[]:[]:[]", outage_interval = 600, lease = 0,
        quarantine = tonumber(os.getenv("OUTAGE_QUARANTINE_SECONDS")) or 0,
        go_file = dir .. "/go", done_file = dir .. "/done" } },
  },
}
