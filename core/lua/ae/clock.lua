--- ae.clock: the engine clock; a manual mode for specs.
-- In manual mode time stands still until advance() moves it; the timers that
-- come due fire in deadline order, and the engine is let settle (no task
-- ready, no I/O outstanding) before each step, so cycles run instantly.
local core = require "ae.core.clock"
local task = require "ae.core.task"

local M = {}

M.now = core.now
M.monotonic = core.monotonic

local function to_epoch(at)
  if type(at) == "string" then
    local t = require("ae.time").parse(at)
    if not t then error("ae.clock: cannot parse time '" .. at .. "'", 3) end
    return t
  end
  return at
end

--- freeze([at]): switch to the manual clock, at `at` (epoch seconds or an
-- ISO-8601 string) or at the current time.
function M.freeze(at)
  core.manual(true, at and to_epoch(at) or nil)
end

--- unfreeze(): back to real time, continuing from where the clock stands.
function M.unfreeze()
  core.manual(false)
end

function M.is_manual()
  return core.manual()
end

--- advance(seconds, {settle = s}): move a manual clock forward, firing timers
-- in order. settle: real seconds an I/O wait may take before time moves on
-- anyway (default 0.5; a request that never gets an answer costs that much).
function M.advance(seconds, opts)
  if not core.manual() then error("ae.clock.advance needs a manual clock (call ae.clock.freeze first)", 2) end
  local grace = (opts and opts.settle) or 0.5
  local target = core.now() + seconds
  task.settle(grace)
  while true do
    local d = core.next_deadline()
    if not d or d > target then break end
    if d > core.now() then core.set(d) end
    task.settle(grace)
  end
  core.set(target)
  task.settle(grace)
  return core.now()
end

--- advance_to(at): advance to an absolute time (epoch seconds or ISO string).
function M.advance_to(at, opts)
  return M.advance(to_epoch(at) - core.now(), opts)
end

return M
