--- heartbeat: the example unit of the default config. Every few seconds it
-- fans out a few simulated checks as tasks (at most 2 at a time), gathers
-- their results and errors, and logs a JSON summary; a cron job in
-- US/Eastern reports once a minute. Shows ae.timer, ae.task, ae.json, ae.log.
local task = require "ae.task"
local timer = require "ae.timer"
local json = require "ae.json"
local log = require "ae.log"
local time = require "ae.time"
local unit = require "ae.unit"

local config = {
  interval = tonumber(os.getenv("HEARTBEAT_INTERVAL")) or unit.config.interval or 5,
  sites = unit.config.sites or { "site-a", "site-b", "site-c", "site-d" },
  limit = unit.config.limit or 2,
}

local cycle = 0

-- One simulated check: waits like an I/O call would, sometimes fails.
local function check(site)
  task.sleep(0.05 + math.random() * 0.1)
  if math.random() < 0.2 then error("no answer from " .. site, 0) end
  return { site = site, latency_ms = math.random(5, 80), links = json.array({}) }
end

local function run_cycle()
  cycle = cycle + 1
  local results, errors, nerrors = task.map(config.sites, check, { limit = config.limit })
  local summary = { cycle = cycle, at = time.iso(time.now()), ok = json.array({}), failed = json.array({}) }
  for i, site in ipairs(config.sites) do
    if results[i] then
      summary.ok[#summary.ok + 1] = results[i]
    else
      summary.failed[#summary.failed + 1] = { site = site, error = errors[i] }
    end
  end
  log.info("cycle %d: %d ok, %d failed: %s", cycle, #summary.ok, nerrors, json.encode(summary))
end

timer.every(config.interval, run_cycle, { now = true, name = "_heartbeat_cycle" })
timer.cron("* * * * *", function()
  log.info("cron tick, US/Eastern local time %s", time.format(time.now(), "%Y-%m-%d %H:%M %Z", "US/Eastern"))
end, { tz = "US/Eastern", name = "_heartbeat_minute" })
log.info("heartbeat started: every %s s over %d sites", config.interval, #config.sites)
