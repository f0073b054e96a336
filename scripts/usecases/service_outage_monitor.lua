--- service-outage-monitor: VeloCloud outage monitoring and triage (spec
-- service-outage-monitor.md). Like the original, one script and two
-- mutually exclusive processes chosen at start: ENABLE_TRIAGE_MONITORING=0
-- (or config triage = 0) runs the outage monitoring of VELOCLOUD_HOSTS every
-- 600 s with a 180 s re-check; ENABLE_TRIAGE_MONITORING=1 runs the triage
-- every 10 minutes. Both run at start. List the unit twice in the engine
-- config (two names, two config tables) to run both in one engine.
--
-- Every interval, window, limit and semaphore can be overridden from the
-- unit config or an environment variable: usecases/outage/config.lua, and
-- docs/usecases/service-outage-monitor.md.
local unit = require "ae.unit"
local timer = require "ae.timer"
local metrics = require "ae.metrics"
local log = require "ae.log"
local rpc = require "lib.rpc"
local config = require "usecases.outage.config"

-- A cycle decodes a few large replies (customer cache, each host's links:
-- tens of MB of tables at 50,000 edges) that are garbage a moment later;
-- the generational collector frees them at its next minor collection
-- instead of letting the heap double first (docs/bench/outage.md).
require("usecases.outage.outage").collector()

local okc, cfg = pcall(config.load, unit.config)
if not okc then
  log.error("%s", tostring(cfg))
  -- the original process exits with status 1: do so when this unit is the
  -- engine's only one (`aengine run service_outage_monitor.lua`); in a
  -- multi-unit engine only this unit fails to start
  local engine = require "ae.engine"
  local others = 0
  for _, u in ipairs(engine.units()) do
    if u.name ~= unit.name and u.state ~= "stopped" then others = others + 1 end
  end
  if others == 0 then engine.stop(1) end
  error(cfg, 0)
end

rpc.configure({ environment = cfg.environment, retry = cfg.nats_retry })

-- platform.md §7: every instance registers both families.
local m = {
  outage_ticket = metrics.counter("outage_ticket_counter", "Tickets created"),
  autoresolve = metrics.counter("autoresolve_counter", "Tickets auto-resolved"),
  reopened = metrics.counter("reopened_counter", "Tickets reopened"),
  outage_monitoring_edge = metrics.counter("outage_monitoring_edge_counter", "Edges processed"),
  max_retry_error = metrics.counter("max_retry_error_counter", "Times that max retries were exceeded"),
  temp_cache_error = metrics.counter("temp_cache_error_counter", "Errors adding to temp cache"),
  first_triage_error = metrics.counter("first_triage_error_counter", "Errors adding first triage"),
  cycle_runtime = metrics.gauge("cycle_runtime_gauge", "How many minutes last cycle took to run"),
  tickets_with_triage = metrics.counter("tickets_with_triage_counter", "Tickets with triage processed"),
  tickets_without_triage = metrics.counter("tickets_without_triage_counter", "Tickets without triage processed"),
  triage_note = metrics.counter("triage_note_counter", "Triage notes appended"),
  open_ticket_error = metrics.counter("open_ticket_error_counter", "Errors while getting open tickets"),
  triage_error_note = metrics.counter("triage_error_note_counter", "Errors while appending triage notes"),
  monitor_map_error = metrics.counter("monitor_map_error_counter", "Errors in monitor map"),
}

local repo = require("usecases.outage.repo").new(cfg)
local outage = require("usecases.outage.outage").new({ cfg = cfg, repo = repo, metrics = m, after = timer.after })

local job_name, interval, run
if cfg.mode == "triage" then
  local triage = require("usecases.outage.triage").new({ cfg = cfg, repo = repo, metrics = m,
    deliver = outage.deliver_triage_note })
  job_name, interval, run = "_triage_process", cfg.triage_interval, triage.run_cycle
else
  job_name, interval, run = "_service_outage_monitor_process", cfg.outage_interval, outage.run_cycle
end

local cycle = run
if cfg.lease == 1 then
  local key = cfg.lease_key
    or ("aengine:lease:service-outage-monitor:" .. cfg.mode .. ":" .. table.concat(cfg.hosts, ":"))
  local lease = require("usecases.outage.lease").new({ key = key, ttl = cfg.lease_ttl })
  cycle = function() return lease:run(interval, run) end
end

timer.every(interval, cycle, { now = true, name = job_name })
log.info("service-outage-monitor started: %s process every %s s, environment %s, hosts %s", cfg.mode,
  tostring(interval), tostring(cfg.environment), cfg.mode == "triage" and table.concat(cfg.triage_velo_hosts, ",")
  or table.concat(cfg.hosts, ","))
