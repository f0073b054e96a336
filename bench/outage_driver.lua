--- bench/outage_driver.lua: process B of bench/outage_bench.sh. The
-- service-outage-monitor's outage process (usecases.outage.*, the real lib
-- clients over NATS, its config loaded exactly as the unit loads it), with
-- no interval job: it waits for the file `go` (config.go_file), runs exactly
-- one cycle, waits for the re-checks it scheduled (quarantine seconds later)
-- and writes `ok|failed first_pass_s recheck_span_s total_s` to config.done_file
-- (total: from the cycle start to the end of the last re-check, or of the first pass).
local unit = require "ae.unit"
local timer = require "ae.timer"
local task = require "ae.task"
local time = require "ae.time"
local metrics = require "ae.metrics"
local log = require "ae.log"
local rpc = require "lib.rpc"
local config = require "usecases.outage.config"

local ucfg = unit.config
local cfg = config.load(ucfg)
rpc.configure({ environment = cfg.environment, retry = cfg.nats_retry })

local m = {
  outage_ticket = metrics.counter("outage_ticket_counter", "Tickets created"),
  autoresolve = metrics.counter("autoresolve_counter", "Tickets auto-resolved"),
  reopened = metrics.counter("reopened_counter", "Tickets reopened"),
  outage_monitoring_edge = metrics.counter("outage_monitoring_edge_counter", "Edges processed"),
  first_triage_error = metrics.counter("first_triage_error_counter", "Errors adding first triage"),
  cycle_runtime = metrics.gauge("cycle_runtime_gauge", "How many minutes last cycle took to run"),
}

-- re-checks: counted, and the span from the first start to the last end
-- (the cycle's work after the quarantine wait)
local pending, first_start, last_end = 0, nil, nil
local function after(delay, fn, opts)
  pending = pending + 1
  return timer.after(delay, function()
    first_start = first_start or time.now()
    local ok, err = pcall(fn)
    last_end = time.now()
    if not ok then log.error("outage bench: re-check failed: %s", tostring(err)) end
    pending = pending - 1
  end, opts)
end

local repo = require("usecases.outage.repo").new(cfg)
local outage = require("usecases.outage.outage").new({ cfg = cfg, repo = repo, metrics = m, after = after })

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

-- OUTAGE_BENCH_HEAP=1 (diagnostics only, changes the run): every second log the Lua heap before and after a
-- full collection, i.e. allocated vs live
-- OUTAGE_BENCH_HEAP=2: every 0.1 s the allocated Lua heap and the process RSS, no collection
if os.getenv("OUTAGE_BENCH_HEAP") == "2" then
  timer.every(0.1, function()
    local f = io.open("/proc/self/status")
    local rss = f and f:read("a"):match("VmRSS:%s*(%d+)")
    if f then f:close() end
    -- where the RSS is: the brk heap vs anonymous mappings (mmapped buffers, thread arenas)
    local heap, anon, cur = 0, 0, nil
    f = io.open("/proc/self/smaps")
    for line in f and f:lines() or function() end do
      if line:match("^%x+%-%x+ ") then
        cur = line:match("%[heap%]") and "heap" or (line:match("^%S+ %S+ %S+ %S+ 0%s*$") and "anon" or nil)
      elseif cur and line:match("^Rss:") then
        local kb = tonumber(line:match("(%d+)"))
        if cur == "heap" then heap = heap + kb else anon = anon + kb end
      end
    end
    if f then f:close() end
    log.info("outage bench heap: %.0f KB allocated, RSS %s KB (brk heap %d KB, anonymous maps %d KB)",
      collectgarbage("count"), tostring(rss), heap, anon)
  end, { name = "_outage_bench_heap" })
end
if os.getenv("OUTAGE_BENCH_HEAP") == "1" then
  timer.every(1, function()
    local before = collectgarbage("count")
    collectgarbage("collect")
    log.info("outage bench heap: %.0f KB allocated, %.0f KB live", before, collectgarbage("count"))
  end, { name = "_outage_bench_heap" })
end

-- The unit's garbage-collector mode: generational, as scripts/usecases/service_outage_monitor.lua sets it;
-- OUTAGE_BENCH_GC=incremental to compare
if os.getenv("OUTAGE_BENCH_GC") == "incremental" then
  collectgarbage("incremental")
else
  require("usecases.outage.outage").collector(tonumber(os.getenv("OUTAGE_BENCH_GC_MAJOR")),
    tonumber(os.getenv("OUTAGE_BENCH_GC_PAUSE")))
end

task.spawn(function()
  while not exists(ucfg.go_file) do task.sleep(0.05) end
  local clock = time.now
  local t0 = clock()
  local ran = outage.run_cycle()
  local t1 = clock()
  while pending > 0 do task.sleep(0.01) end
  local recheck = first_start and (last_end - first_start) or 0
  local total = math.max(t1, last_end or t1) - t0
  -- a cycle whose hosts all failed (e.g. every links request answered 500) is not a measurement
  local mapped = m.outage_monitoring_edge:value() or 0
  if ran and mapped == 0 then
    log.error("outage bench: the cycle mapped no edge (see the errors above)")
    ran = false
  end
  log.info("outage bench: cycle %s in %.2f s: first pass %.2f s, re-checks %.2f s (first start to last end, " ..
    "quarantine %s s); Lua heap now %.0f KB", ran and "ran" or "did not run", total, t1 - t0, recheck,
    tostring(cfg.quarantine), collectgarbage("count"))
  local f = assert(io.open(ucfg.done_file, "w"))
  f:write(string.format("%s %.3f %.3f %.3f\n", ran and "ok" or "failed", t1 - t0, recheck, total))
  f:close()
end)
