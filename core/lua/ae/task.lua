--- ae.task: spawn tasks, sleep, gather with a concurrency limit, semaphores.
-- Built on the C primitives of ae.core.task (spawn, suspend/wake, sleep).
local core = require "ae.core.task"

local M = {}

M.sleep = core.sleep
M.current = core.current
M.name = core.name
M.list = core.list
M.settle = core.settle

--- Let other ready tasks run, then continue.
function M.yield()
  coroutine.yield()
end

local function capture(err)
  return { err = err, traceback = debug.traceback(tostring(err), 2) }
end

-- The error value of a failed xpcall. Memory errors skip the message
-- handler, so the value may be the raw error rather than capture()'s table.
local function unpack_error(e)
  if type(e) == "table" and e.traceback then return e.err, e.traceback end
  return e, tostring(e)
end

local Task = {}
Task.__index = Task

--- spawn(fn, ...) -> task: run fn(...) in a new task. The error of a task is
-- logged and counted; task:wait() also returns it.
function M.spawn(fn, ...)
  assert(type(fn) == "function", "ae.task.spawn: first argument must be a function")
  local self = setmetatable({ done = false, waiters = {} }, Task)
  self.handle = core.spawn(function(...)
    local res = table.pack(xpcall(fn, capture, ...))
    self.done, self.ok = true, res[1]
    local traceback
    if res[1] then
      self.results = table.pack(table.unpack(res, 2, res.n))
    else
      self.err, traceback = unpack_error(res[2])
    end
    local waiters = self.waiters
    self.waiters = {}
    for _, w in ipairs(waiters) do core.wake(w) end
    if traceback then core.report_error(traceback) end
  end, ...)
  return self
end

--- task:wait() -> true, results... | false, err  (like pcall)
function Task:wait()
  while not self.done do
    local me = core.current()
    if not me then error("ae.task: wait() must be called inside a task", 2) end
    self.waiters[#self.waiters + 1] = me
    core.suspend()
  end
  if self.ok then return true, table.unpack(self.results, 1, self.results.n) end
  return false, self.err
end

function Task:status()
  return core.status(self.handle)
end

--- gather(fns, {limit = n}) -> results, errors, nerrors
-- Runs every function of the list, at most `limit` at a time, and waits for
-- all of them. results[i] is the first value fns[i] returned, errors[i] its
-- error (nil when it succeeded). No result or error is lost.
function M.gather(fns, opts)
  local n = #fns
  local limit = (opts and opts.limit) or n
  if limit < 1 then limit = 1 end
  if limit > n then limit = n end
  local results, errors, nerrors = {}, {}, 0
  if n == 0 then return results, errors, 0 end
  local me = core.current()
  if not me then error("ae.task.gather must be called inside a task", 2) end
  local next_index, running = 0, limit
  local function worker()
    while true do
      next_index = next_index + 1
      local i = next_index
      if i > n then break end
      local ok, value = xpcall(fns[i], capture)
      if ok then
        results[i] = value
      else
        errors[i] = unpack_error(value)
        nerrors = nerrors + 1
      end
    end
    running = running - 1
    if running == 0 then core.wake(me) end
  end
  for _ = 1, limit do core.spawn(worker) end
  while running > 0 do core.suspend() end
  return results, errors, nerrors
end

--- map(list, fn, {limit = n}) -> results, errors, nerrors
-- gather over fn(item, index) for every item of the list.
function M.map(list, fn, opts)
  local fns = {}
  for i, item in ipairs(list) do
    fns[i] = function() return fn(item, i) end
  end
  return M.gather(fns, opts)
end

local Semaphore = {}
Semaphore.__index = Semaphore

--- semaphore(n): at most n holders at once; waiters served in FIFO order.
-- The wait queue is a ring of explicit head/tail indices (never `#`, which is
-- undefined once served slots have been cleared).
function M.semaphore(n)
  assert(type(n) == "number" and n >= 1, "ae.task.semaphore: n must be >= 1")
  return setmetatable({ free = n, size = n, queue = {}, head = 1, tail = 0 }, Semaphore)
end

function Semaphore:waiting()
  return self.tail - self.head + 1
end

function Semaphore:acquire()
  if self.free > 0 and self.head > self.tail then
    self.free = self.free - 1
    return
  end
  local me = core.current()
  if not me then error("ae.task: semaphore:acquire() must be called inside a task", 2) end
  self.tail = self.tail + 1
  self.queue[self.tail] = me
  core.suspend() -- release() hands its slot over directly
end

function Semaphore:release()
  while self.head <= self.tail do
    local w = self.queue[self.head]
    self.queue[self.head] = nil
    self.head = self.head + 1
    if core.wake(w) then return end -- slot handed over
  end
  self.head, self.tail = 1, 0
  if self.free < self.size then self.free = self.free + 1 end
end

--- sem:with(fn, ...) -> results of fn; releases even when fn raises.
function Semaphore:with(fn, ...)
  self:acquire()
  local res = table.pack(pcall(fn, ...))
  self:release()
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

return M
