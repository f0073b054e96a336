--- Core benchmark, side by side in one run:
--   1. task spawn + resume (ae.core.task spawn, run to completion) vs a bare
--      coroutine.create + coroutine.resume loop doing the same work;
--   2. suspend/wake round trips between two tasks vs coroutine yield/resume;
--   3. timer dispatch: N ae.timer.after(0) jobs fired by the loop vs N tasks
--      spawned directly (the floor a timer cannot beat).
-- usage: aengine exec bench/core_bench.lua [N]
local core = require "ae.core.task"
local timer = require "ae.timer"
local clock = require "ae.clock"

local N = tonumber((...)) or 200000

local function best_of(runs, fn)
  local best = math.huge
  for _ = 1, runs do
    collectgarbage()
    local t0 = clock.monotonic()
    fn()
    local dt = clock.monotonic() - t0
    if dt < best then best = dt end
  end
  return best
end

local function body(x) return x + 1 end

-- 1. spawn + resume
local bare_spawn = best_of(5, function()
  for i = 1, N do
    local co = coroutine.create(body)
    coroutine.resume(co, i)
  end
end)

local ae_spawn = best_of(5, function()
  local me = core.current()
  local left = N
  local function job(x)
    body(x)
    left = left - 1
    if left == 0 then core.wake(me) end
  end
  for i = 1, N do core.spawn(job, i) end
  core.suspend()
end)

-- 2. ping-pong: wake/suspend vs yield/resume
local M = N
local bare_pingpong = best_of(5, function()
  local co = coroutine.wrap(function()
    for _ = 1, M do coroutine.yield() end
  end)
  for _ = 1, M do co() end
end)

local ae_pingpong = best_of(5, function()
  local me = core.current()
  local other
  local done = false
  other = core.spawn(function()
    for _ = 1, M do
      core.wake(me)
      core.suspend()
    end
    done = true
    core.wake(me)
  end)
  while not done do
    core.suspend()
    core.wake(other)
  end
end)

-- 3. timers
local T = N // 4
local ae_timers = best_of(3, function()
  local me = core.current()
  local left = T
  local function fire()
    left = left - 1
    if left == 0 then core.wake(me) end
  end
  for _ = 1, T do timer.after(0, fire) end
  core.suspend()
end)
local spawned = best_of(3, function()
  local me = core.current()
  local left = T
  local function fire()
    left = left - 1
    if left == 0 then core.wake(me) end
  end
  for _ = 1, T do core.spawn(fire) end
  core.suspend()
end)

local function row(name, n, a, b, bname)
  print(string.format("| %s | %d | %.0f /s | %.0f /s | %s | %.2fx |", name, n, n / a, n / b, bname, a / b))
end

print("| benchmark | n | aengine | baseline | baseline is | cost |")
print("|---|---|---|---|---|---|")
row("task spawn + run to end", N, ae_spawn, bare_spawn, "coroutine.create+resume")
row("task suspend/wake round trip", M, ae_pingpong, bare_pingpong, "coroutine yield/resume")
row("timer.after(0) dispatch", T, ae_timers, spawned, "task spawn")
