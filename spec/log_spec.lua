-- ae.log: the original platform's line layout, JSON lines, levels, secrets.
local child = require "spec.helpers.child"

local function run(script, env)
  local path = child.write(script)
  env = env or {}
  env.AE_LOG_LEVEL = env.AE_LOG_LEVEL or "DEBUG"
  local out, rc = child.run({ "exec", path }, env)
  os.remove(path)
  return out, rc
end

describe("ae.log", function()
  it("writes the platform §8 layout with the unit name and the script line", function()
    local out = run([[
local log = require "ae.log"
log.info("Starting...")
log.warning("%d edges in %s", 3, "outage")
]], { ENVIRONMENT_NAME = "automation-master" })
    local host = io.popen("hostname"):read("l")
    local pattern = "%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d: automation%-master: " .. host:gsub("%p", "%%%0")
      .. ": lua_%w+::2 INFO: Starting%.%.%.\n"
    assert.matches(pattern, out)
    assert.matches(": lua_%w+::3 WARNING: 3 edges in outage\n", out)
  end)

  it("prints None when ENVIRONMENT_NAME is unset, as the original", function()
    local out = run([[require("ae.log").error("boom")]], { ENVIRONMENT_NAME = "" })
    assert.matches("%d: None: .- ERROR: boom", out)
  end)

  it("filters by level and changes the level at run time", function()
    local out = run([[
local log = require "ae.log"
log.debug("hidden debug")
log.info("shown info")
assert(log.level() == "INFO")
log.level("ERROR")
log.warning("hidden warning")
log.error("shown error")
assert(not pcall(log.level, "LOUD"))
]], { AE_LOG_LEVEL = "INFO" })
    assert.not_matches("hidden", out)
    assert.matches("INFO: shown info", out)
    assert.matches("ERROR: shown error", out)
  end)

  it("masks registered secrets in every line", function()
    local out = run([[
local log = require "ae.log"
local secret = log.secret("s3cr3t-token-value")
log.info("calling with token %s and again %s", secret, secret)
log.secret("ab") -- too short to mask: ignored
log.info("ab stays")
]])
    assert.not_matches("s3cr3t", out)
    assert.matches("calling with token %*%*%*%*%*%*%*%* and again %*%*%*%*%*%*%*%*", out)
    assert.matches("ab stays", out)
  end)

  it("writes JSON lines when asked", function()
    local out = run([[
local log = require "ae.log"
log.info("quote \" and newline\n inside")
]], { AE_LOG_FORMAT = "json" })
    local json = require "ae.json"
    local line
    for l in out:gmatch("[^\n]+") do
      if l:find("quote", 1, true) then line = l end
    end
    assert.is_truthy(line)
    local doc = assert(json.decode(line))
    assert.equal("INFO", doc.level)
    assert.equal('quote " and newline\n inside', doc.message)
    assert.equal(2, doc.line)
    assert.is_string(doc.unit)
  end)

  it("never raises on a bad format string", function()
    local out, rc = run([[
local log = require "ae.log"
log.info("%d items", "not a number")
print("after")
]])
    assert.equal(0, rc)
    assert.matches("bad log format", out)
    assert.matches("after", out)
  end)

  it("logs tables and nil through tostring", function()
    local out = run([[require("ae.log").info(nil) require("ae.log").info(42)]])
    assert.matches("INFO: nil\n", out)
    assert.matches("INFO: 42\n", out)
  end)
end)
