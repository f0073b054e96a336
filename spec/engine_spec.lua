-- Black-box tests of the aengine executable: CLI, units, isolation, signals,
-- the process clock. Each test runs a child engine.
local child = require "spec.helpers.child"

describe("aengine CLI", function()
  it("prints its version and help", function()
    local out, rc = child.run({ "--version" })
    assert.equal(0, rc)
    assert.matches("^aengine %d+%.%d+%.%d+", out)
    out, rc = child.run({ "--help" })
    assert.equal(0, rc)
    assert.matches("aengine run", out)
    out, rc = child.run({ "bogus" })
    assert.equal(2, rc)
    assert.matches("unknown command", out)
  end)

  it("check compiles scripts and reports file:line: message", function()
    local good = child.write("local x = 1\nreturn x\n")
    local bad = child.write("local x = = 1\n")
    local out, rc = child.run({ "check", good })
    assert.equal(0, rc)
    assert.matches("ok", out)
    out, rc = child.run({ "check", good, bad })
    assert.equal(1, rc)
    assert.matches(bad:gsub("%p", "%%%0") .. ":1: unexpected symbol", out)
    os.remove(good)
    os.remove(bad)
  end)

  it("run needs a config or a script", function()
    local out, rc = child.run({ "run" })
    assert.equal(2, rc)
    assert.matches("give %-c CONFIG", out)
  end)

  it("a unit that fails to load stops start-up with a clear error", function()
    local bad = child.write("this is not lua\n")
    local out, rc = child.run({ "run", bad })
    assert.equal(1, rc)
    assert.matches("cannot load", out)
    os.remove(bad)
  end)
end)

describe("units and tasks", function()
  it("a task error is logged with traceback, unit and task name; the unit goes on", function()
    local out, rc = child.exec([[
      local task = require "ae.task"
      local t = task.spawn(function() local x = nil; return x.field end)
      task.name(t.handle, "doomed")
      t:wait()
      print("still alive")
    ]])
    assert.equal(0, rc)
    assert.matches("ERROR: task 'doomed' failed: .*attempt to index a nil value", out)
    assert.matches("stack traceback", out)
    assert.matches("still alive", out)
  end)

  it("the memory cap stops only the task that exceeds it", function()
    local out, rc = child.exec([[
      local task = require "ae.task"
      local hog = task.spawn(function()
        local t = {}
        for i = 1, 1e8 do t[i] = ("x"):rep(100) .. i end
      end)
      local ok, err = hog:wait()
      print("hog:", ok, err)
      collectgarbage()
      local fine = task.spawn(function() return #(("y"):rep(1000)) end)
      print("fine:", fine:wait())
    ]], { AE_MEMORY_LIMIT_MB = "40" })
    assert.equal(0, rc)
    assert.matches("hog:%s+false%s+not enough memory", out)
    assert.matches("fine:%s+true%s+1000", out)
  end)

  it("the instruction budget stops a runaway task with a clear error", function()
    local out, rc = child.exec([[
      local task = require "ae.task"
      local spin = task.spawn(function() while true do end end)
      local ok, err = spin:wait()
      print("spin:", ok, err)
      local polite = task.spawn(function()
        local n = 0
        for _ = 1, 20 do
          for _ = 1, 10000 do n = n + 1 end
          task.yield() -- each resume stays under the budget
        end
        return n
      end)
      print("polite:", polite:wait())
    ]], { AE_INSTRUCTION_BUDGET = "1000000" })
    assert.equal(0, rc)
    assert.matches("spin:%s+false%s+.*instruction budget exceeded", out)
    assert.matches("polite:%s+true%s+200000", out)
  end)

  it("tasks run without a hook until the watchdog arms the budget; nested coroutines are hooked from birth", function()
    local out, rc = child.exec([[
      local task = require "ae.task"
      print("fast:", task.spawn(function() return debug.gethook() == nil end):wait())
      local co = coroutine.create(function() return select(3, debug.gethook()) end)
      print("nested count:", coroutine.resume(co))
      local gen = task.spawn(function()
        local spin = coroutine.wrap(function() while true do end end)
        spin()
      end)
      print("wrap:", gen:wait())
      local made = task.spawn(function()
        local c = coroutine.create(function() local n = 0; while true do n = n + 1 end end)
        return coroutine.resume(c)
      end)
      print("create:", made:wait())
      print("after:", task.spawn(function() return debug.gethook() == nil end):wait())
    ]], { AE_INSTRUCTION_BUDGET = "1000000" })
    assert.equal(0, rc, out)
    assert.matches("fast:%s+true%s+true", out)
    assert.matches("nested count:%s+true%s+1000000", out)
    assert.matches("wrap:%s+false%s+.*instruction budget exceeded", out)
    assert.matches("create:%s+true%s+false%s+.*instruction budget exceeded", out)
    assert.matches("after:%s+true%s+true", out)
  end)

  it("a long resume gets the budget's hook, and its next resume starts without it", function()
    local out, rc = child.exec([[
      local task = require "ae.task"
      local t = task.spawn(function()
        local t0 = os.clock()
        while os.clock() - t0 < 0.35 do end -- three watchdog ticks of CPU
        local armed = debug.gethook() ~= nil
        task.yield()
        return armed, debug.gethook() == nil
      end)
      print("long:", t:wait())
    ]], { AE_INSTRUCTION_BUDGET = "1000000000" })
    assert.equal(0, rc, out)
    assert.matches("long:%s+true%s+true%s+true", out)
  end)

  it("runs the units of a config file, each with its own config table and state", function()
    local a = child.write([[
      local unit = require "ae.unit"
      shared = unit.config.tag -- a global: must not leak into the other unit
      print(unit.name .. " tag=" .. unit.config.tag)
      require("ae.task").sleep(0.05)
      print(unit.name .. " sees " .. tostring(shared))
    ]])
    local cfg = child.write(string.format([[
      return { units = {
        { name = "one", script = %q, config = { tag = "A" } },
        { name = "two", script = %q, config = { tag = "B" } },
      } }
    ]], a, a))
    local script = child.write(string.format([[
      -- stop the engine shortly after start
      require("ae.timer").after(0.3, function() require("ae.engine").stop(0) end)
    ]]))
    local out = child.run({ "run", "-c", cfg, script }, { AE_LOG_LEVEL = "INFO" })
    assert.matches("one tag=A", out)
    assert.matches("two tag=B", out)
    assert.matches("one sees A", out)
    assert.matches("two sees B", out)
    os.remove(a)
    os.remove(cfg)
    os.remove(script)
  end)
end)

describe("signals", function()
  it("SIGTERM stops timers and intake, lets running tasks finish, exits 0", function()
    local script = child.write([[
      local timer = require "ae.timer"
      local task = require "ae.task"
      timer.every(0.05, function() print("tick") end, { name = "ticker" })
      task.spawn(function()
        task.sleep(0.3)
        print("slow task finished")
      end)
      print("ready")
    ]])
    local cmd = string.format(
      "(AE_LOG_LEVEL=INFO %s run %s & pid=$!; sleep 0.2; kill -TERM $pid; wait $pid; echo \"__rc=$?\") 2>&1",
      child.quote(child.aengine), child.quote(script))
    local p = io.popen(cmd)
    local out = p:read("a")
    p:close()
    assert.matches("ready", out)
    assert.matches("SIGTERM", out)
    assert.matches("slow task finished", out)
    assert.matches("__rc=0", out)
    -- no tick after the stop was logged
    local after = out:match("SIGTERM(.*)$")
    assert.is_nil(after:match("\ntick"))
    os.remove(script)
  end)

  it("a task running past the shutdown deadline does not hold the exit", function()
    local script = child.write([[
      require("ae.task").spawn(function() require("ae.task").sleep(60) end)
    ]])
    local cmd = string.format(
      "(AE_SHUTDOWN_DEADLINE=0.3 %s run %s & pid=$!; sleep 0.2; kill -TERM $pid; wait $pid; echo \"__rc=$?\") 2>&1",
      child.quote(child.aengine), child.quote(script))
    local p = io.popen(cmd)
    local out = p:read("a")
    p:close()
    assert.matches("shutdown deadline reached with 1 task", out)
    assert.matches("__rc=0", out)
    os.remove(script)
  end)
end)

describe("the process clock", function()
  it("AE_CLOCK_START sets the engine's time", function()
    local script = child.write([[print(string.format("now=%.0f", require("ae.clock").now()))]])
    local out = child.run({ "exec", script }, { AE_CLOCK_START = "1600000000" })
    local now = tonumber(out:match("now=(%d+)"))
    assert.is_true(now >= 1600000000 and now < 1600000005)
    os.remove(script)
  end)

  it("AE_CLOCK_OFFSET shifts it and AE_CLOCK_MANUAL freezes it", function()
    local script = child.write([[
      local clock = require "ae.clock"
      local a = clock.now()
      require("ae.task").sleep(0) -- a zero sleep fires even on a frozen clock
      print(string.format("now=%.0f manual=%s same=%s", a, tostring(clock.is_manual()), tostring(clock.now() == a)))
    ]])
    local out = child.run({ "exec", script }, { AE_CLOCK_OFFSET = "-86400", AE_CLOCK_MANUAL = "1" })
    local now = tonumber(out:match("now=(%d+)"))
    assert.is_true(math.abs(now - (os.time() - 86400)) < 5)
    assert.matches("manual=true same=true", out)
    os.remove(script)
  end)
end)
