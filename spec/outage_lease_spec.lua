-- The Redis cycle lease of service-outage-monitor: with several engines
-- running the same unit, one cycle runs once (DESIGN.md §3).
local clock = require "ae.clock"
local task = require "ae.task"
local lease_mod = require "usecases.outage.lease"

describe("outage cycle lease", function()
  local key
  before_each(function()
    clock.freeze(1600000000)
    key = "spec:outage-lease:" .. require("ae.nats").new_request_id()
  end)
  after_each(function() clock.unfreeze() end)

  it("one holder per cycle; the other engine skips, then takes the next cycle", function()
    local a = lease_mod.new({ key = key, ttl = 30 })
    local b = lease_mod.new({ key = key, ttl = 30 })
    local runs = {}
    assert.is_true(a:run(600, function() runs[#runs + 1] = "a" end))
    assert.is_false(b:run(600, function() runs[#runs + 1] = "b" end))
    clock.advance(539)
    assert.is_false(b:run(600, function() runs[#runs + 1] = "b" end))
    clock.advance(2)
    assert.is_true(b:run(600, function() runs[#runs + 1] = "b" end))
    assert.same({ "a", "b" }, runs)
  end)

  it("is renewed while a long cycle runs and taken over when the holder stops renewing", function()
    local a = lease_mod.new({ key = key, ttl = 30 })
    local b = lease_mod.new({ key = key, ttl = 30 })
    local t = task.spawn(function() return a:run(600, function() task.sleep(100) end) end)
    clock.advance(90)
    assert.is_false(b:acquire())
    clock.advance(20)
    assert.is_true(t:wait())
    -- a dead holder: acquired but never renewed
    local c = lease_mod.new({ key = key .. ":dead", ttl = 30 })
    local d = lease_mod.new({ key = key .. ":dead", ttl = 30 })
    assert.is_true(c:acquire())
    assert.is_false(d:acquire())
    clock.advance(31)
    assert.is_true(d:acquire())
  end)
end)
