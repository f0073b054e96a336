-- The operator console, black box: a child engine (`aengine run -c`) with a
-- unit, driven with `aengine console -e` over its Unix socket. (A blocking
-- io.popen here only blocks this spec's engine, not the child under test.)
local clock = require "ae.clock"
local task = require "ae.task"
local child = require "spec.helpers.child"

local q = child.quote

local write, read = child.write_file, child.read_file

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"__rc=$?\""))
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return out:gsub("__rc=%d+%s*$", ""), rc
end

local UNIT = [[
local timer = require "ae.timer"
local cfg = ...
VERSION_MARK = "EDIT"
timer.every(3600, function()
  local f = assert(io.open(cfg.out, "a"))
  f:write("beat\n")
  f:close()
end, { name = "beat" })
]]

describe("aengine console", function()
  local dir, sock, log, script, out, pid

  local function console(cmd)
    return child.run({ "console", "--socket", sock, "-e", cmd })
  end

  setup(function()
    dir = child.tmpdir()
    sock, log, script, out = dir .. "/c.sock", dir .. "/engine.log", dir .. "/pulse.lua", dir .. "/beats.txt"
    write(script, (UNIT:gsub("EDIT", "1")))
    write(dir .. "/engine.lua", ([[return {
  console = { socket = %q, write_timeout = 1 },
  units = { { name = "pulse", script = %q, config = { out = %q } } },
}]]):format(sock, script, out))
    local p = assert(io.popen(("AE_LOG_LEVEL=INFO %s run -c %s > %s 2>&1 & echo $!"):format(
      q(child.aengine), q(dir .. "/engine.lua"), q(log))))
    pid = tonumber(p:read("l"))
    p:close()
    local deadline = clock.monotonic() + 5
    repeat
      task.sleep(0.05)
      local _, rc = console("help")
      if rc == 0 then return end
    until clock.monotonic() > deadline
    error("the child engine did not open its console: " .. read(log))
  end)

  teardown(function()
    if pid then
      os.execute("kill " .. pid .. " 2>/dev/null")
      local deadline = clock.monotonic() + 5
      while os.execute("kill -0 " .. pid .. " 2>/dev/null") and clock.monotonic() < deadline do task.sleep(0.05) end
    end
    os.execute("rm -rf " .. q(dir))
  end)

  it("creates the socket with mode 0600", function()
    local mode = sh("stat -c %a " .. q(sock))
    assert.equals("600", mode:match("%d+"))
  end)

  it("lists units with state, version and hash", function()
    local text, rc = console("units")
    assert.equals(0, rc, text)
    assert.matches("UNIT%s+STATE%s+VER%s+HASH", text)
    assert.matches("pulse%s+running%s+%d+%s+%x+", text)
  end)

  it("fails with a non-zero exit code on an unknown command or a missing engine", function()
    local text, rc = console("frobnicate")
    assert.equals(1, rc)
    assert.matches("unknown command 'frobnicate'", text)
    text, rc = child.run({ "console", "--socket", dir .. "/nobody-here.sock", "-e", "units" })
    assert.equals(2, rc)
    assert.matches("cannot connect", text)
  end)

  it("evaluates Lua inside a unit and pretty-prints the results", function()
    local text, rc = console("eval pulse VERSION_MARK, {1, 2, k = {x = true}}")
    assert.equals(0, rc, text)
    assert.matches('"%d+"', text)
    assert.matches("k = {", text, 1, true)
    assert.matches("x = true", text, 1, true)
    -- statements, and code that waits: eval runs as a task of the unit
    text, rc = console("eval pulse require('ae.task').sleep(0.01) return require('ae.unit').name")
    assert.equals(0, rc, text)
    assert.matches('"pulse"', text)
  end)

  it("reports an eval error without hurting the unit", function()
    local text, rc = console("eval pulse error('kaboom')")
    assert.equals(1, rc)
    assert.matches("kaboom", text)
    text, rc = console("eval pulse (")
    assert.equals(1, rc)
    assert.matches("console:1:", text)
    text, rc = console("eval nosuchunit 1")
    assert.equals(1, rc)
    assert.matches("no unit 'nosuchunit'", text)
    text, rc = console("eval pulse 40 + 2")
    assert.equals(0, rc, text)
    assert.matches("42", text)
  end)

  it("truncates a huge result at 64 KB with a note", function()
    local text, rc = console("eval pulse string.rep('x', 1000000)")
    assert.equals(0, rc)
    assert.matches("output truncated at 64 KB", text)
    assert.is_true(#text < 70000, "got " .. #text .. " bytes")
    local deep, drc = console("eval pulse (function() local t = {} for i = 1, 100000 do t[i] = {i} end return t end)()")
    assert.equals(0, drc)
    assert.matches("output truncated", deep)
    local _, urc = console("units")
    assert.equals(0, urc)
  end)

  it("lists timers and runs a job now", function()
    local text, rc = console("timers")
    assert.equals(0, rc, text)
    assert.matches("pulse%s+beat%s+every%s+3600s", text)
    os.remove(out)
    text, rc = console("run pulse beat")
    assert.equals(0, rc, text)
    local deadline = clock.monotonic() + 2
    while read(out) == "" and clock.monotonic() < deadline do task.sleep(0.02) end
    assert.equals("beat\n", read(out))
    text, rc = console("run pulse nojob")
    assert.equals(1, rc)
    assert.matches("no job named 'nojob'", text)
    text, rc = console("run pulse")
    assert.equals(1, rc)
    assert.matches("usage: run UNIT JOB", text)
  end)

  it("lists what brings work in (subs) and the tasks", function()
    local text, rc = console("subs")
    assert.equals(0, rc, text)
    assert.matches("pulse%s+%d+%s+timer", text)
    text, rc = console("tasks")
    assert.equals(0, rc, text)
    assert.matches("UNIT%s+ID%s+TASK", text)
  end)

  it("reloads a unit: unchanged, changed, forced, and a broken script", function()
    local text, rc = console("reload pulse")
    assert.equals(0, rc, text)
    assert.matches("unchanged", text)
    local v0 = tonumber(console("units"):match("pulse%s+running%s+(%d+)"))
    write(script, (UNIT:gsub("EDIT", "2")))
    text, rc = console("reload pulse")
    assert.equals(0, rc, text)
    assert.matches("version " .. v0 .. " %-> " .. (v0 + 1), text)
    text = console("eval pulse VERSION_MARK")
    assert.matches('"2"', text)
    text, rc = console("reload -f pulse")
    assert.equals(0, rc, text)
    write(script, "this is not Lua\n")
    text, rc = console("reload")
    assert.equals(1, rc)
    assert.matches("keeps running", text)
    text = console("units")
    assert.matches("pulse%s+running%s+" .. (v0 + 2), text)
    assert.matches("last error: .*syntax error", text)
    write(script, (UNIT:gsub("EDIT", "3")))
    text, rc = console("reload")
    assert.equals(0, rc, text)
  end)

  it("shows and sets the log level, and renders metrics", function()
    local text, rc = console("log level")
    assert.equals(0, rc)
    assert.matches("log level: INFO", text)
    text, rc = console("log level warning")
    assert.equals(0, rc, text)
    assert.matches("WARNING", text)
    text, rc = console("log level LOUD")
    assert.equals(1, rc)
    assert.matches("unknown log level", text)
    console("log level INFO")
    text, rc = console("metrics")
    assert.equals(0, rc)
    assert.matches("aengine_reloads_total{unit=\"pulse\"}", text, 1, true)
  end)

  it("refuses another user (SO_PEERCRED), even if the socket mode lets it connect", function()
    local id = sh("id -u")
    if tonumber(id) ~= 0 then
      pending("needs root to act as another user")
      return
    end
    -- the file mode stops other users first
    local text, rc = sh(("setpriv --reuid=65534 --regid=65534 --clear-groups %s console --socket %s -e units")
      :format(q(child.aengine), q(sock)))
    assert.are_not.equal(0, rc)
    assert.matches("cannot connect", text)
    -- with the mode opened up, the peer check still refuses
    os.execute("chmod 0666 " .. q(sock) .. " && chmod o+x " .. q(dir))
    text, rc = sh(("setpriv --reuid=65534 --regid=65534 --clear-groups %s console --socket %s -e units")
      :format(q(child.aengine), q(sock)))
    os.execute("chmod 0600 " .. q(sock))
    assert.equals(1, rc, text)
    assert.matches("permission denied", text)
    assert.matches("refused pid %d+ of uid 65534", read(log))
  end)

  it("drops a client that does not read, and keeps serving the others", function()
    -- a raw client pipelines big answers and never reads them
    local py = ([[
import socket, time
s = socket.socket(socket.AF_UNIX)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(%q)
for i in range(40):
    s.send(b"eval pulse string.rep('y', 60000)\n")
time.sleep(4)
]]):format(sock)
    write(dir .. "/slow.py", py)
    sh("python3 " .. q(dir .. "/slow.py") .. " >/dev/null 2>&1 &")
    task.sleep(0.3)
    local t0 = clock.monotonic()
    local text, rc = console("units")
    assert.equals(0, rc, text)
    assert.is_true(clock.monotonic() - t0 < 1, "the console answered late")
    local deadline = clock.monotonic() + 5
    while not read(log):match("did not read its output") and clock.monotonic() < deadline do task.sleep(0.1) end
    assert.matches("did not read its output for 1 s; dropped", read(log))
    text, rc = console("units")
    assert.equals(0, rc, text)
  end)

  it("reads commands from stdin when not on a terminal", function()
    local text, rc = sh(("printf 'units\\nlog level\\n' | %s console --socket %s"):format(q(child.aengine), q(sock)))
    assert.equals(0, rc, text)
    assert.matches("pulse", text)
    assert.matches("log level:", text)
  end)
end)
