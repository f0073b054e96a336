-- The AE_PROFILE sampling profiler (core/profile.c), black-box: a child
-- `aengine exec` burns CPU in Lua and the report must name the hot lines.
local child = require "spec.helpers.child"

-- the number of the first line of text containing marker
local function line_of(text, marker)
  local n = 0
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if l:find(marker, 1, true) then return n end
  end
  error("no line with " .. marker)
end

local function esc(s) return (s:gsub("%p", "%%%0")) end

-- one profiled run shared by the report tests (keeps the spec fast)
local HOT = [[
local function inner(t)
  for i = 1, 300 do t[#t + 1] = ("x"):rep(i % 7) .. i end -- HOT
  if #t > 20000 then return {} end
  return t
end
local function outer()
  local t, t0 = {}, os.clock()
  while os.clock() - t0 < 0.4 do
    t = inner(t) -- CALLER
  end
end
outer()
print("burnt")
]]
local run
local function profiled_run()
  if run then return run end
  local script = child.write(HOT)
  local prof = os.tmpname()
  os.remove(prof)
  local out, rc = child.run({ "exec", script }, { AE_PROFILE = prof, AE_LOG_LEVEL = "INFO" })
  run = { script = script, out = out, rc = rc, report = child.read_file(prof) }
  os.remove(script)
  os.remove(prof)
  return run
end

describe("AE_PROFILE", function()
  it("writes a report whose top line is the hot loop of the script", function()
    local r = profiled_run()
    assert.equal(0, r.rc, r.out)
    assert.matches("burnt", r.out)
    assert.matches("profile: sampling the loop thread at 1000 Hz", r.out)
    assert.matches("profile: %d+ samples written to", r.out)
    local samples, in_lua = r.report:match("^# aengine Lua profile: (%d+) samples.-in Lua: (%d+)")
    assert.truthy(samples, r.report)
    assert.is_true(tonumber(samples) > 0)
    assert.is_true(tonumber(in_lua) > 0)
    local by_line = r.report:match("## by line %(innermost frame%)\n[^\n]*\n(.-)\n\n")
    assert.truthy(by_line, r.report)
    local count, pct, unit, frame = by_line:match("^%s*(%d+)%s+([%d.]+)%s+(%S+)%s+(%S+)")
    assert.truthy(count, by_line)
    assert.truthy(tonumber(pct), pct)
    assert.is_true(tonumber(pct) > 0 and tonumber(pct) <= 100)
    assert.equal(r.script:match("([^/]+)%.lua$"), unit)
    assert.equal(r.script .. ":" .. line_of(HOT, "-- HOT"), frame)
  end)

  it("the by-stack table names the caller of the hot function", function()
    local r = profiled_run()
    local by_stack = r.report:match("## by stack %(innermost first%)\n(.*)$")
    assert.truthy(by_stack, r.report)
    local want = esc(r.script .. ":" .. line_of(HOT, "-- HOT") .. " < " .. r.script .. ":" .. line_of(HOT, "-- CALLER"))
    assert.matches("\n%s*%d+%s+[%d.]+%s+%S+%s+" .. want, by_stack)
  end)

  it("is off without AE_PROFILE: no file, no profile log line", function()
    local script = child.write("local n = 0\nfor i = 1, 1e5 do n = n + i end\nprint('sum', n)\n")
    local prof = os.tmpname()
    os.remove(prof)
    -- AE_PROFILE_HZ alone does not turn it on; AE_PROFILE="" overrides an inherited one
    local out, rc = child.run({ "exec", script }, { AE_PROFILE = "", AE_PROFILE_HZ = "500", AE_LOG_LEVEL = "INFO" })
    assert.equal(0, rc, out)
    assert.matches("sum%s+5000050000", out)
    assert.is_nil(out:find("profile:", 1, true), out)
    assert.is_nil(io.open(prof))
    os.remove(script)
  end)

  it("an unwritable AE_PROFILE path is logged; the script still runs", function()
    local script = child.write("print('ran')\n")
    local dir = os.tmpname()
    os.remove(dir) -- a directory that does not exist
    local prof = dir .. "/p.txt"
    local out, rc = child.run({ "exec", script }, { AE_PROFILE = prof })
    assert.equal(0, rc, out)
    assert.matches("ran", out)
    assert.matches("profile: cannot write " .. esc(prof), out)
    os.remove(script)
  end)

  it("the instruction budget still stops a runaway task while profiling", function()
    -- 5e7 instructions is ~0.2 s of Lua: dozens of samples, each of which
    -- used to restart the budget's count from zero
    local script = child.write([[
      local task = require "ae.task"
      local spin = task.spawn(function() local n = 0; while true do n = n + 1 end end)
      print("spin:", spin:wait())
    ]])
    local prof = os.tmpname()
    local aengine = child.aengine
    child.aengine = "timeout" -- a regression would spin forever
    local ok, out, rc = pcall(child.run, { "-s", "KILL", "20", aengine, "exec", script },
      { AE_PROFILE = prof, AE_INSTRUCTION_BUDGET = "50000000" })
    child.aengine = aengine
    assert(ok, out)
    assert.equal(0, rc, out)
    assert.matches("spin:%s+false%s+.*instruction budget exceeded", out)
    assert.matches("samples", child.read_file(prof))
    os.remove(script)
    os.remove(prof)
  end)
end)
