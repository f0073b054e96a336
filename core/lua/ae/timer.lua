--- ae.timer: scheduled jobs on the engine clock.
--   every(interval, fn, {now=, name=, grace=})  fixed-rate grid anchored when
--       added; a tick that comes while the previous run is still going is
--       skipped (logged), never queued; late ticks coalesce into one run.
--   after(delay, fn, {name=})                    one shot.
--   cron("m h dom mon dow", fn, {tz=, name=})    5-field cron in an IANA zone.
-- Each returns a job: job:cancel(), job:run_now(), job:next_run(), job:info().
local core = require "ae.core.timer"
local clock = require "ae.core.clock"
local ctask = require "ae.core.task"
local log = require "ae.log"

local M = {}

local jobs = {} -- name -> job, for the console's `timers` and `run`
local anon = 0

local Job = {}
Job.__index = Job

local function register(job)
  if not job.name then
    anon = anon + 1
    job.name = job.kind .. "#" .. anon
  end
  if jobs[job.name] and not jobs[job.name].cancelled then
    if job.replace == false then
      error("ae.timer: a job named '" .. job.name .. "' already exists", 3)
    end
    jobs[job.name]:cancel()
  end
  jobs[job.name] = job
end

-- Run the job body once, unless the previous run is still going.
local function run_body(job, reason)
  if job.running then
    job.skipped = job.skipped + 1
    log.warning("job '%s' %s skipped: previous run still running (max_instances=1)", job.name, reason)
    return
  end
  job.running = true
  job.runs = job.runs + 1
  job.last_start = clock.now()
  ctask.name(nil, job.name)
  local ok, err = xpcall(job.fn, debug.traceback)
  job.running = false
  job.last_end = clock.now()
  if not ok then
    job.errors = job.errors + 1
    ctask.report_error(string.format("job '%s': %s", job.name, tostring(err)))
  end
end

local function on_fire(job)
  if job.cancelled then return end
  local deadline = job.scheduled
  local now = clock.now()
  -- schedule the next tick before running, so a long run cannot shift the grid
  local nxt = job.next_after and job.next_after(job, math.max(now, deadline))
  if nxt then
    job.scheduled = nxt
    job.timer:start(nxt)
  else
    -- one-shot (or a cron with no next match): release the timer now
    job.scheduled = nil
    job.done = true
    job.timer:close()
    if jobs[job.name] == job then jobs[job.name] = nil end
  end
  if job.grace and now - deadline > job.grace then
    job.misfired = job.misfired + 1
    log.warning("job '%s' missed its run time by %.3f s (grace %.3f s): run dropped", job.name, now - deadline,
      job.grace)
    return
  end
  run_body(job, "tick")
end

local function new_job(kind, fn, opts)
  assert(type(fn) == "function", "ae.timer: fn must be a function")
  opts = opts or {}
  local job = setmetatable({
    kind = kind, fn = fn, name = opts.name, grace = opts.grace, replace = opts.replace,
    runs = 0, skipped = 0, errors = 0, misfired = 0, running = false, cancelled = false,
  }, Job)
  register(job)
  job.timer = core.new(function() on_fire(job) end, job.name)
  return job
end

local function arm(job, at)
  job.scheduled = at
  job.timer:start(at)
end

--- every(interval, fn, opts) -> job
function M.every(interval, fn, opts)
  assert(type(interval) == "number" and interval > 0, "ae.timer.every: interval must be a positive number")
  local job = new_job("every", fn, opts)
  job.interval = interval
  job.anchor = clock.now()
  job.next_after = function(j, t)
    local k = math.floor((t - j.anchor) / j.interval) + 1
    return j.anchor + k * j.interval
  end
  arm(job, (opts and opts.now) and job.anchor or job.anchor + interval)
  return job
end

--- after(delay, fn, opts) -> job
function M.after(delay, fn, opts)
  assert(type(delay) == "number" and delay >= 0, "ae.timer.after: delay must be a number >= 0")
  local job = new_job("after", fn, opts)
  arm(job, clock.now() + delay)
  return job
end

--- cron(expr, fn, opts) -> job. opts.tz: IANA zone (default "UTC").
function M.cron(expr, fn, opts)
  local time = require "ae.time"
  local tz = (opts and opts.tz) or "UTC"
  local first, err = time.cron_next(expr, clock.now(), tz)
  if not first then error("ae.timer.cron: " .. tostring(err), 2) end
  local job = new_job("cron", fn, opts)
  job.expr, job.tz = expr, tz
  job.next_after = function(j, t) return time.cron_next(j.expr, t, j.tz) end
  arm(job, first)
  return job
end

function Job:cancel()
  if self.cancelled then return end
  self.cancelled = true
  self.timer:close()
  if jobs[self.name] == self then jobs[self.name] = nil end
end

--- job:run_now(): run the body now in a new task (skipped if still running).
function Job:run_now()
  ctask.spawn(function() run_body(self, "manual run") end)
end

function Job:next_run()
  return self.scheduled
end

function Job:info()
  return {
    name = self.name, kind = self.kind, interval = self.interval, expr = self.expr, tz = self.tz,
    next_run = self.scheduled, running = self.running, runs = self.runs, skipped = self.skipped,
    errors = self.errors, misfired = self.misfired, last_start = self.last_start, last_end = self.last_end,
  }
end

--- jobs() -> list of job:info() of this unit's live jobs, sorted by name.
function M.jobs()
  local list = {}
  for _, job in pairs(jobs) do list[#list + 1] = job:info() end
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

--- get(name) -> job or nil
function M.get(name)
  return jobs[name]
end

--- run(name): trigger a job now (console `run <unit> <job>`).
function M.run(name)
  local job = jobs[name]
  if not job then return nil, "no job named '" .. tostring(name) .. "'" end
  job:run_now()
  return true
end

return M
