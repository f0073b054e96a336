local task = require "ae.task"
local clock = require "ae.clock"

describe("ae.task", function()
  it("spawns a task and waits for its results", function()
    local t = task.spawn(function(a, b)
      task.sleep(0.01)
      return a + b, "x"
    end, 2, 3)
    local ok, sum, x = t:wait()
    assert.is_true(ok)
    assert.equal(5, sum)
    assert.equal("x", x)
    assert.equal("done", t:status())
  end)

  it("returns the error of a failed task to its waiter", function()
    local t = task.spawn(function() error("broken", 0) end)
    local ok, err = t:wait()
    assert.is_false(ok)
    assert.equal("broken", err)
  end)

  it("reuses the threads of tasks that returned, clean, and never the thread of one that raised", function()
    local seen, n = {}, 0
    for i = 1, 5 do
      local _, co, args = task.spawn(function(...) return coroutine.running(), table.pack(...) end, i):wait()
      assert.same({ n = 1, i }, args) -- nothing left on a reused thread's stack
      if not seen[co] then n = n + 1 end
      seen[co] = true
    end
    assert.is_true(n <= 2, n .. " threads for 5 tasks in a row")
    local core = require "ae.core.task"
    local raised
    core.spawn(function()
      raised = coroutine.running()
      error("raised on purpose by task_spec", 0)
    end)
    task.sleep(0.01)
    assert.is_not_nil(raised)
    for _ = 1, 5 do
      local _, co = task.spawn(function() return coroutine.running() end):wait()
      assert.are_not.equal(raised, co)
    end
  end)

  it("lets several waiters join the same task", function()
    local t = task.spawn(function() task.sleep(0.02); return 7 end)
    local a = task.spawn(function() return select(2, t:wait()) end)
    local b = task.spawn(function() return select(2, t:wait()) end)
    assert.same({ true, 7 }, { a:wait() })
    assert.same({ true, 7 }, { b:wait() })
  end)

  it("gathers every result and every error, none lost", function()
    local fns = {}
    for i = 1, 20 do
      fns[i] = function()
        task.sleep(0.001 * (20 - i))
        if i % 5 == 0 then error("failed " .. i, 0) end
        return i * 10
      end
    end
    local results, errors, nerrors = task.gather(fns, { limit = 4 })
    assert.equal(4, nerrors)
    for i = 1, 20 do
      if i % 5 == 0 then
        assert.is_nil(results[i])
        assert.equal("failed " .. i, errors[i])
      else
        assert.equal(i * 10, results[i])
        assert.is_nil(errors[i])
      end
    end
  end)

  it("never runs more than the limit at once", function()
    local running, peak = 0, 0
    local fns = {}
    for i = 1, 30 do
      fns[i] = function()
        running = running + 1
        if running > peak then peak = running end
        task.sleep(0.002)
        running = running - 1
        return true
      end
    end
    task.gather(fns, { limit = 5 })
    assert.equal(5, peak)
  end)

  it("gathers an empty list", function()
    local results, errors, n = task.gather({})
    assert.same({}, results)
    assert.same({}, errors)
    assert.equal(0, n)
  end)

  it("maps a function over a list", function()
    local results = task.map({ "a", "b", "c" }, function(item, i) return item .. i end, { limit = 2 })
    assert.same({ "a1", "b2", "c3" }, results)
  end)

  it("semaphore bounds concurrent holders and serves in order", function()
    local sem = task.semaphore(2)
    local holders, peak, order = 0, 0, {}
    local fns = {}
    for i = 1, 8 do
      fns[i] = function()
        sem:with(function()
          holders = holders + 1
          peak = math.max(peak, holders)
          order[#order + 1] = i
          task.sleep(0.002)
          holders = holders - 1
        end)
      end
    end
    task.gather(fns)
    assert.equal(2, peak)
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8 }, order)
  end)

  it("semaphore keeps every waiter when many groups contend (no lost wake-ups)", function()
    local sem = task.semaphore(20)
    local done = 0
    local groups = {}
    for g = 1, 4 do
      groups[g] = task.spawn(function()
        local items = {}
        for i = 1, 25 do items[i] = i end
        task.map(items, function(i)
          sem:acquire()
          task.sleep(0.001 * (i % 3))
          task.sleep(0.001)
          sem:release()
          done = done + 1
        end, { limit = 20 })
      end)
    end
    for g = 1, 4 do groups[g]:wait() end
    assert.equal(100, done)
    assert.equal(20, sem.free)
    assert.equal(0, sem:waiting())
  end)

  it("semaphore:with releases when the function raises", function()
    local sem = task.semaphore(1)
    assert.has_error(function() sem:with(function() error("inside", 0) end) end, "inside")
    local got = false
    sem:with(function() got = true end)
    assert.is_true(got)
  end)

  it("sleeps on the engine clock (manual clock: no real waiting)", function()
    clock.freeze()
    local woke = false
    task.spawn(function()
      task.sleep(3600)
      woke = true
    end)
    local t0 = clock.monotonic()
    clock.advance(3599)
    assert.is_false(woke)
    clock.advance(1)
    assert.is_true(woke)
    assert.is_true(clock.monotonic() - t0 < 5)
    clock.unfreeze()
  end)

  it("names tasks and lists them", function()
    local t = task.spawn(function() task.sleep(0.05) end)
    task.name(t.handle, "sleeper")
    task.yield() -- let it start and reach its sleep
    local found = false
    for _, info in ipairs(task.list()) do
      if info.name == "sleeper" then
        found = true
        assert.equal("waiting", info.state)
      end
    end
    assert.is_true(found)
    t:wait()
  end)

  it("yield lets other tasks run", function()
    local seen = {}
    local t = task.spawn(function() seen[#seen + 1] = "other" end)
    task.yield()
    seen[#seen + 1] = "me"
    t:wait()
    assert.same({ "other", "me" }, seen)
  end)

  -- a task that yields in a loop must not keep the event loop from polling:
  -- a yielding task waits for the next loop round
  it("a task yielding in a loop lets timers and I/O run in between", function()
    local steps, woke_at = 0, nil
    local sleeper = task.spawn(function()
      task.sleep(0.002)
      woke_at = steps
    end)
    local t0 = os.clock()
    while not woke_at and os.clock() - t0 < 2 do
      steps = steps + 1
      task.yield()
    end
    local woke_while_yielding = woke_at
    assert.is_true(sleeper:wait())
    assert.is_not_nil(woke_while_yielding, "the sleeper's timer never fired while the other task yielded")
  end)

  it("a chain of wakes between tasks runs within one turn of the loop, without a poll per hand-over", function()
    local core = require "ae.core.task"
    local hops, done = 0, false
    local ping
    local pong = task.spawn(function()
      while core.suspend() ~= "stop" do core.wake(ping.handle) end
    end)
    ping = task.spawn(function()
      for _ = 1, 200 do
        core.wake(pong.handle)
        core.suspend()
        hops = hops + 1
      end
      done = true
      core.wake(pong.handle, "stop")
    end)
    local turns = 0
    while not done and turns < 10000 do
      turns = turns + 1
      task.yield() -- one turn of the loop per yield
    end
    assert.is_true(ping:wait())
    assert.is_true(pong:wait())
    assert.equal(200, hops)
    assert.is_true(turns <= 3, "200 hand-overs took " .. turns .. " turns of the loop")
  end)

  it("a chain of hand-overs that never stops still lets timers fire (a turn is bounded)", function()
    local core = require "ae.core.task"
    local woke_at, hops = nil, 0
    local sleeper = task.spawn(function()
      task.sleep(0.005)
      woke_at = hops
    end)
    local ping
    local t0 = os.clock()
    local pong = task.spawn(function()
      while core.suspend() ~= "stop" do core.wake(ping.handle) end
    end)
    ping = task.spawn(function()
      while not woke_at and os.clock() - t0 < 2 do
        core.wake(pong.handle)
        core.suspend()
        hops = hops + 1
      end
      core.wake(pong.handle, "stop")
    end)
    assert.is_true(ping:wait())
    assert.is_true(pong:wait())
    assert.is_true(sleeper:wait())
    assert.is_not_nil(woke_at)
    assert.is_true(os.clock() - t0 < 1, "the sleeper's timer waited for the chain's 2 s guard")
  end)

  it("rejects waiting outside a task", function()
    local co = coroutine.create(function() task.sleep(0) end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.matches("inside a task", err)
  end)
end)
