-- Hot reload: units created from temp scripts and reloaded through ae.engine,
-- timers on the manual clock, memory of old versions, requests over a real
-- nats-server during 20 reloads, and a black-box SIGHUP of a child engine.
local engine = require "ae.engine"
local clock = require "ae.clock"
local task = require "ae.task"
local child = require "spec.helpers.child"

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function read_lines(path)
  local lines = {}
  local f = io.open(path, "r")
  if not f then return lines end
  for line in f:lines() do lines[#lines + 1] = line end
  f:close()
  return lines
end

-- every entry of engine.units() with this name (old versions included)
local function entries(name)
  local list = {}
  for _, u in ipairs(engine.units()) do
    if u.name == name then list[#list + 1] = u end
  end
  return list
end

local function live(name)
  for _, u in ipairs(entries(name)) do
    if u.state == "running" then return u end
  end
end

-- wait (real time) until at most `count` versions of the unit are left
local function wait_count(name, count, seconds)
  local deadline = clock.monotonic() + (seconds or 5)
  while #entries(name) > count and clock.monotonic() < deadline do
    if clock.is_manual() then task.yield() else task.sleep(0.01) end -- the manual clock does not move
  end
  return #entries(name)
end
local function wait_single(name) return wait_count(name, 1) end

local function sanitized()
  local f = io.open("/proc/self/maps")
  if not f then return false end
  local maps = f:read("a")
  f:close()
  return maps:find("asan", 1, true) ~= nil
end

-- resident memory of the process (nil where unknown, or under ASan, which
-- keeps freed memory in quarantine)
local function rss_kb()
  if sanitized() then return nil end
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return tonumber(text:match("VmRSS:%s*(%d+)"))
end

local TIMER_SCRIPT = [[
local timer = require "ae.timer"
local clock = require "ae.clock"
local unit = require "ae.unit"
local cfg = ...
timer.every(10, function()
  local f = assert(io.open(cfg.out, "a"))
  f:write(string.format("%d %.3f\n", unit.version, clock.now()))
  f:close()
end, { name = "tick" })
-- edit EDIT
]]
local function timer_script(i)
  return (TIMER_SCRIPT:gsub("EDIT", tostring(i)))
end

describe("hot reload", function()
  local tmp, n = os.tmpname(), 0
  local function unit_name()
    n = n + 1
    return "rl" .. n .. "_" .. tostring(tmp):gsub("%W", "")
  end

  after_each(function()
    clock.unfreeze()
  end)

  it("keeps an every() job on its grid across 20 reloads: no tick twice, none skipped", function()
    clock.freeze(1700000000)
    local t0 = clock.now()
    local script, out = tmp .. "_timer.lua", tmp .. "_ticks.txt"
    os.remove(out)
    write(script, timer_script(0))
    local name = unit_name()
    assert(engine.start_unit { name = name, script = script, config = { out = out } })
    -- reload at varied points of the 10 s interval, sometimes exactly on a tick
    local steps = { 3, 7, 10, 4, 6, 10, 10, 1, 9, 5, 5, 2, 8, 10, 3, 3, 4, 7, 6, 10 }
    for i, step in ipairs(steps) do
      clock.advance(step)
      write(script, timer_script(i))
      local ok, msg = engine.reload(name)
      assert.is_true(ok, msg)
      assert.matches("version " .. i .. " %-> " .. (i + 1), msg)
    end
    clock.advance(25)
    local total = clock.now() - t0
    assert.equals(21, live(name).version)
    local times, versions = {}, {}
    for _, line in ipairs(read_lines(out)) do
      local v, t = line:match("^(%d+) ([%d.]+)$")
      versions[#versions + 1] = tonumber(v)
      times[#times + 1] = tonumber(t) - t0
    end
    assert.equals(math.floor(total / 10), #times)
    for i, t in ipairs(times) do
      assert.near(i * 10, t, 1e-6) -- the grid of the first version, every tick once
      if i > 1 then assert.is_true(versions[i] >= versions[i - 1]) end
    end
    assert.equals(21, versions[#versions])
    assert(engine.stop_unit(name))
    assert.equals(0, wait_count(name, 0))
    os.remove(script)
    os.remove(out)
  end)

  it("reports an unchanged script and reloads it anyway with force", function()
    local script = tmp .. "_same.lua"
    write(script, "local x = 1\nreturn x\n")
    local name = unit_name()
    assert(engine.start_unit { name = name, script = script })
    local ok, msg = engine.reload(name)
    assert.is_true(ok)
    assert.matches("unchanged", msg)
    assert.equals(1, live(name).version)
    ok, msg = engine.reload(name, { force = true })
    assert.is_true(ok, msg)
    assert.equals(2, live(name).version)
    assert(engine.stop_unit(name))
    os.remove(script)
  end)

  it("leaves the old version running when the new one does not compile", function()
    clock.freeze(1700000000)
    local script, out = tmp .. "_bad.lua", tmp .. "_bad.txt"
    os.remove(out)
    write(script, timer_script(0))
    local name = unit_name()
    assert(engine.start_unit { name = name, script = script, config = { out = out } })
    write(script, "local x = = 1\n")
    local ok, msg = engine.reload(name)
    assert.is_nil(ok)
    assert.matches("version 1 keeps running", msg)
    assert.matches("unexpected symbol", msg)
    local u = live(name)
    assert.equals(1, u.version)
    assert.matches("unexpected symbol", u.last_error)
    assert.equals(1, #entries(name))
    clock.advance(20)
    assert.equals(2, #read_lines(out)) -- the old version's timer still ticks
    assert(engine.stop_unit(name))
    os.remove(script)
    os.remove(out)
  end)

  it("leaves the old version running when the new one's start raises, and drops the new one", function()
    clock.freeze(1700000000)
    local script, out = tmp .. "_raise.lua", tmp .. "_raise.txt"
    os.remove(out)
    write(script, timer_script(0))
    local name = unit_name()
    assert(engine.start_unit { name = name, script = script, config = { out = out } })
    -- registers a timer, then fails: the half-started version must go away
    write(script, timer_script(1) .. "\nerror('config is missing the vendor URL')\n")
    local ok, msg = engine.reload(name)
    assert.is_nil(ok)
    assert.matches("start failed: .*config is missing the vendor URL", msg)
    assert.equals(1, wait_single(name))
    local u = live(name)
    assert.equals(1, u.version)
    assert.matches("vendor URL", u.last_error)
    clock.advance(30)
    local lines = read_lines(out)
    assert.equals(3, #lines)
    for _, line in ipairs(lines) do assert.matches("^1 ", line) end
    -- fixed: the next reload works and clears nothing of the old grid
    write(script, timer_script(2))
    assert(engine.reload(name))
    assert.equals(2, live(name).version)
    assert(engine.stop_unit(name))
    os.remove(script)
    os.remove(out)
  end)

  it("closes the old states: memory returns to its baseline after 20 reloads", function()
    local script = tmp .. "_mem.lua"
    write(script, [[
local big = {}
for i = 1, 20000 do big[i] = string.rep("x", 64) .. i end
KEEP = big
]])
    local name = unit_name()
    assert(engine.start_unit { name = name, script = script })
    collectgarbage()
    local base = live(name).memory
    local rss0 = rss_kb()
    assert.is_true(base > 1000000, "the unit should hold about 2 MB, has " .. base)
    for _ = 1, 20 do
      local ok, msg = engine.reload(name, { force = true })
      assert.is_true(ok, msg)
    end
    assert.equals(1, wait_single(name))
    local u = live(name)
    assert.equals(21, u.version)
    assert.is_true(u.memory < base * 1.2, ("memory %d vs baseline %d"):format(u.memory, base))
    if rss0 then
      -- 20 leaked states would be 40+ MB
      assert.is_true(rss_kb() - rss0 < 20000, ("RSS grew by %d KB"):format(rss_kb() - rss0))
    end
    assert(engine.stop_unit(name))
    os.remove(script)
  end)

  it("starts and stops units from Lua, and refuses duplicates and unknown names", function()
    local script = tmp .. "_ss.lua"
    write(script, "return true\n")
    local name = unit_name()
    assert(engine.start_unit { name = name, script = script })
    local ok, msg = engine.start_unit { name = name, script = script }
    assert.is_nil(ok)
    assert.matches("already running", msg)
    ok, msg = engine.reload("no-such-unit-" .. name)
    assert.is_nil(ok)
    assert.matches("no such unit", msg)
    assert(engine.stop_unit(name))
    assert.equals(0, wait_count(name, 0))
    ok = engine.stop_unit(name)
    assert.is_nil(ok)
    ok, msg = engine.start_unit { name = name, script = tmp .. "_missing.lua" }
    assert.is_nil(ok)
    assert.matches("cannot load", msg)
    assert.has_error(function() engine.start_unit { name = name } end)
    os.remove(script)
  end)
end)

describe("hot reload under NATS traffic", function()
  local nats_url = os.getenv("NATS_SERVER1")
  local nats = nats_url and nats_url ~= "" and require "ae.nats"

  local SERVE_SCRIPT = [[
local nats = require "ae.nats"
local unit = require "ae.unit"
local cfg = ...
assert(nats.serve(cfg.subject, function(req)
  nats.publish(cfg.subject .. ".seen", { n = req.n, v = unit.version })
  return { n = req.n, v = unit.version }
end, { queue = "reload-spec" }))
assert(nats.flush(5))
-- edit %d
]]

  it("answers every request exactly once while the unit is reloaded 20 times", function()
    if not nats then
      pending("no NATS server (NATS_SERVER1)")
      return
    end
    local script = os.tmpname() .. "_serve.lua"
    local subject = "reload.spec." .. nats.new_request_id()
    write(script, SERVE_SCRIPT:format(0))
    local name = "rl_serve_" .. subject:gsub("%W", "")
    assert(engine.start_unit { name = name, script = script, config = { subject = subject } })
    local seen = {}
    local seen_sub = assert(nats.subscribe(subject .. ".seen", function(msg)
      seen[msg.n] = (seen[msg.n] or 0) + 1
    end))
    assert(nats.flush(5))

    local sent, replies, failures, versions = 0, {}, {}, {}
    local running = true
    local function requester()
      while running do
        sent = sent + 1
        local k = sent
        local rep, err = nats.request(subject, { n = k }, { timeout = 5 })
        if rep and rep.n == k then
          replies[k] = (replies[k] or 0) + 1
          versions[rep.v] = true
        else
          failures[#failures + 1] = tostring(k) .. ": " .. tostring(err or "wrong reply")
        end
      end
    end
    local workers = {}
    for i = 1, 8 do workers[i] = task.spawn(requester) end
    for i = 1, 20 do
      task.sleep(0.05)
      write(script, SERVE_SCRIPT:format(i))
      local ok, msg = engine.reload(name)
      assert.is_true(ok, msg)
    end
    task.sleep(0.1)
    running = false
    for _, w in ipairs(workers) do w:wait() end
    assert(nats.flush(5))
    task.sleep(0.2) -- the last .seen messages
    seen_sub:unsubscribe()

    assert.same({}, failures)
    assert.is_true(sent > 100, "only " .. sent .. " requests were sent")
    for k = 1, sent do
      assert.equals(1, replies[k], "request " .. k .. " replies")
      assert.equals(1, seen[k], "request " .. k .. " handled")
    end
    assert.is_true(versions[1] and versions[21], "replies came from the first and the last version")
    assert.equals(1, wait_single(name))
    assert(engine.stop_unit(name))
    os.remove(script)
  end)
end)

describe("reload of a running engine (black box)", function()
  it("reloads a changed script on SIGHUP and the console shows version 2", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. child.quote(dir)))
    local script, sock, log = dir .. "/echo.lua", dir .. "/console.sock", dir .. "/engine.log"
    write(script, "local timer = require 'ae.timer'\ntimer.every(60, function() end, {name = 'beat'})\n")
    write(dir .. "/engine.lua", ([[return {
  console = { socket = %q },
  units = { { name = "echo", script = %q } },
}]]):format(sock, script))
    local p = assert(io.popen(("AE_LOG_LEVEL=INFO %s run -c %s > %s 2>&1 & echo $!"):format(
      child.quote(child.aengine), child.quote(dir .. "/engine.lua"), child.quote(log))))
    local pid = tonumber(p:read("l"))
    p:close()
    assert.is_number(pid)
    local function console(cmd)
      return child.run({ "console", "--socket", sock, "-e", cmd })
    end
    local ok, err = pcall(function()
      local deadline = clock.monotonic() + 5
      local out, rc
      repeat
        task.sleep(0.05)
        out, rc = console("units")
      until rc == 0 or clock.monotonic() > deadline
      assert.equals(0, rc, out)
      assert.matches("echo%s+running%s+1 ", out)
      write(script, "local timer = require 'ae.timer'\ntimer.every(60, function() end, {name = 'beat'})\n-- v2\n")
      assert(os.execute("kill -HUP " .. pid))
      deadline = clock.monotonic() + 5
      repeat
        task.sleep(0.05)
        out = console("units")
      until out:match("echo%s+running%s+2 ") or clock.monotonic() > deadline
      assert.matches("echo%s+running%s+2 ", out)
      local f = assert(io.open(log))
      local text = f:read("a")
      f:close()
      assert.matches("reload: version 2 started", text)
      -- `aengine reload` through the socket: nothing changed now
      local rout, rrc = child.run({ "reload", "--socket", sock })
      assert.equals(0, rrc, rout)
      assert.matches("echo: unchanged %(version 2%)", rout)
      -- the config file changes: a unit added, one removed
      write(dir .. "/second.lua", "local cfg = ...\nGREETING = cfg.greeting\n")
      write(dir .. "/engine.lua", ([[return {
  console = { socket = %q },
  units = { { name = "second", script = %q, config = { greeting = "hi" } } },
}]]):format(sock, dir .. "/second.lua"))
      rout, rrc = child.run({ "reload", "--socket", sock })
      assert.equals(0, rrc, rout)
      assert.matches("echo: stopped %(no longer in the config%)", rout)
      assert.matches("second: started, version 1", rout)
      out = console("eval second GREETING")
      assert.matches('"hi"', out)
      -- its config entry changes: reloaded although the script did not
      write(dir .. "/engine.lua", ([[return {
  console = { socket = %q },
  units = { { name = "second", script = %q, config = { greeting = "hello" } } },
}]]):format(sock, dir .. "/second.lua"))
      rout, rrc = child.run({ "reload", "--socket", sock })
      assert.equals(0, rrc, rout)
      assert.matches("second: reloaded, version 1 %-> 2", rout)
      assert.matches('"hello"', console("eval second GREETING"))
      -- a broken config changes nothing
      write(dir .. "/engine.lua", "return {")
      rout, rrc = child.run({ "reload", "--socket", sock })
      assert.equals(1, rrc, rout)
      assert.matches("nothing reloaded", rout)
      assert.matches("second%s+running%s+2 ", console("units"))
    end)
    os.execute("kill " .. pid .. " 2>/dev/null")
    local deadline = clock.monotonic() + 5
    while os.execute("kill -0 " .. pid .. " 2>/dev/null") and clock.monotonic() < deadline do task.sleep(0.05) end
    os.execute("rm -rf " .. child.quote(dir))
    assert(ok, err)
  end)
end)
