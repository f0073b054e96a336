-- service-outage-monitor refuses to start on bad settings (spec §1.1): a bad
-- VELOCLOUD_HOSTS / VELOCLOUD_HOSTS_FILTER pair logs "Error loading velocloud
-- hosts and filters: <error>" and the unit does not start (the process, when
-- it is the only unit, exits with status 1); nothing is requested over NATS.
local engine = require "ae.engine"
local nats = require "ae.nats"
local clock = require "ae.clock"

local SCRIPT = "scripts/usecases/service_outage_monitor.lua"
local H1, H2 = "mettel.velocloud.net", "metvco02.mettel.net"

local function start(config)
  config.lease = 0
  config.environment = config.environment or "dev"
  local ok, msg = engine.start_unit { name = "som-startup", script = SCRIPT, config = config }
  if ok then engine.stop_unit("som-startup") end
  return ok, tostring(msg)
end

describe("service-outage-monitor start-up", function()
  local asked, sub
  before_each(function()
    clock.freeze("2021-03-15T18:05:12Z")
    asked = 0
    sub = assert(nats.serve("customer.cache.get", function()
      asked = asked + 1
      return { status = 404, body = "No edges were found for the specified filters" }
    end))
    nats.flush(2)
  end)
  after_each(function()
    sub:unsubscribe()
    clock.unfreeze()
  end)

  local bad = {
    { "a filter piece that is not JSON", H1 .. ":" .. H2, "[1, 2]:nope", "filter \"nope\" of host " .. H2 },
    { "fewer filters than hosts", H1 .. ":" .. H2, "[]", "no filter for host " .. H2 },
    { "a filter that is a JSON number", H1, "3", "filter \"3\" of host " .. H1 .. " is not a JSON list" },
    { "an empty filter", H1, "", "filter \"\" of host " .. H1 .. " is not a JSON list" },
  }
  for _, case in ipairs(bad) do
    it("refuses " .. case[1], function()
      local ok, msg = start { velocloud_hosts = case[2], velocloud_hosts_filter = case[3] }
      assert.is_nil(ok)
      assert.truthy(msg:find("Error loading velocloud hosts and filters: ", 1, true), msg)
      assert.truthy(msg:find(case[4], 1, true), msg)
      clock.advance(600)
      assert.equal(0, asked)
    end)
  end

  it("refuses ENABLE_TRIAGE_MONITORING other than 0 or 1, and bad numbers", function()
    local ok, msg = start { triage = 2, velocloud_hosts = H1, velocloud_hosts_filter = "[]" }
    assert.is_nil(ok)
    assert.truthy(msg:find("bad triage (ENABLE_TRIAGE_MONITORING): 2, expected 0 or 1", 1, true), msg)
    ok, msg = start { quarantine = "soon", velocloud_hosts = H1, velocloud_hosts_filter = "[]" }
    assert.is_nil(ok)
    assert.truthy(msg:find("bad quarantine (OUTAGE_QUARANTINE_SECONDS)", 1, true), msg)
    ok, msg = start { outage_interval = 0, velocloud_hosts = H1, velocloud_hosts_filter = "[]" }
    assert.is_nil(ok)
    assert.truthy(msg:find("bad outage_interval: must be > 0", 1, true), msg)
    assert.equal(0, asked)
  end)

  it("starts with good settings (spaces removed) and asks the cache with the parsed filter", function()
    local seen
    sub:unsubscribe()
    sub = assert(nats.serve("customer.cache.get", function(req)
      seen = req.body.filter
      return { status = 404, body = "No edges were found for the specified filters" }
    end))
    nats.flush(2)
    assert(engine.start_unit { name = "som-startup", script = SCRIPT, config = { lease = 0, environment = "dev",
      velocloud_hosts = " " .. H1 .. " : " .. H2, velocloud_hosts_filter = "[1, 2, 3] : []" } })
    clock.advance(0)
    engine.stop_unit("som-startup")
    assert.same({ [H1] = { 1, 2, 3 }, [H2] = {} }, seen)
  end)

  it("as the only unit of a process: exit status 1 and the log line", function()
    local exe = os.getenv("AE_TEST_AENGINE") -- set by tests/run_spec.sh
    if not exe or not io.popen then return pending("AE_TEST_AENGINE is not set") end
    local cmd = "VELOCLOUD_HOSTS=" .. H1 .. ":" .. H2 .. " VELOCLOUD_HOSTS_FILTER='[1]' ENABLE_TRIAGE_MONITORING=0 " ..
      "CURRENT_ENVIRONMENT=dev OUTAGE_LEASE=0 NATS_SERVER1=" ..
      (os.getenv("AE_TEST_NATS_URL") or "nats://127.0.0.1:4222") ..
      " " .. exe .. " run " .. SCRIPT .. " 2>&1 </dev/null; echo \"exit=$?\""
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    p:close()
    assert.truthy(out:find("Error loading velocloud hosts and filters: no filter for host " .. H2, 1, true), out)
    assert.truthy(out:find("exit=1", 1, true), out)
  end)
end)
