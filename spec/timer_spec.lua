local timer = require "ae.timer"
local task = require "ae.task"
local clock = require "ae.clock"

describe("ae.timer", function()
  local t0
  before_each(function()
    clock.freeze(1600000000)
    t0 = clock.now()
  end)
  after_each(function()
    clock.unfreeze()
  end)

  it("every() fires on a fixed grid anchored when added", function()
    local at = {}
    local job = timer.every(600, function() at[#at + 1] = clock.now() - t0 end)
    clock.advance(1800)
    job:cancel()
    assert.same({ 600, 1200, 1800 }, at)
  end)

  it("every() with now = true runs at once, then on the grid (platform §12 case 20)", function()
    local at = {}
    local job = timer.every(600, function() at[#at + 1] = clock.now() - t0 end, { now = true })
    clock.advance(1200)
    job:cancel()
    assert.same({ 0, 600, 1200 }, at)
  end)

  it("skips a tick while the previous run is still going (platform §12 case 19)", function()
    local starts = {}
    local job = timer.every(600, function()
      starts[#starts + 1] = clock.now() - t0
      task.sleep(700)
    end, { now = true, name = "slow" })
    clock.advance(2500)
    job:cancel()
    -- 0 runs until 700: the 600 tick is skipped; 1200 runs until 1900: 1800 skipped; 2400 runs
    assert.same({ 0, 1200, 2400 }, starts)
    assert.equal(2, job:info().skipped)
  end)

  it("a long run does not shift the grid", function()
    local starts = {}
    local job = timer.every(10, function()
      starts[#starts + 1] = clock.now() - t0
      task.sleep(7)
    end)
    clock.advance(40)
    job:cancel()
    assert.same({ 10, 20, 30, 40 }, starts)
  end)

  it("after() fires once", function()
    local n = 0
    timer.after(180, function() n = n + 1 end, { name = "_ticket_creation_recheck" })
    clock.advance(179)
    assert.equal(0, n)
    clock.advance(1000)
    assert.equal(1, n)
    assert.is_nil(timer.get("_ticket_creation_recheck"))
  end)

  it("cancel() stops a job", function()
    local n = 0
    local job = timer.every(1, function() n = n + 1 end)
    clock.advance(3)
    job:cancel()
    clock.advance(10)
    assert.equal(3, n)
  end)

  it("a failing run is logged and counted, and the job keeps its schedule", function()
    local n = 0
    local job = timer.every(5, function()
      n = n + 1
      error("cycle failed")
    end)
    clock.advance(15)
    job:cancel()
    assert.equal(3, n)
    assert.equal(3, job:info().errors)
  end)

  it("run_now() and run(name) trigger a job outside its schedule", function()
    local n = 0
    local job = timer.every(600, function() n = n + 1 end, { name = "job1" })
    job:run_now()
    clock.advance(0)
    assert.equal(1, n)
    assert.is_true(timer.run("job1"))
    clock.advance(0)
    assert.equal(2, n)
    local ok, err = timer.run("nope")
    assert.is_nil(ok)
    assert.matches("no job named", err)
    job:cancel()
  end)

  it("a named job replaces an existing one unless replace = false", function()
    local a, b = 0, 0
    timer.every(1, function() a = a + 1 end, { name = "dup" })
    local jb = timer.every(1, function() b = b + 1 end, { name = "dup" })
    clock.advance(2)
    assert.equal(0, a)
    assert.equal(2, b)
    assert.has_error(function() timer.every(1, function() end, { name = "dup", replace = false }) end)
    jb:cancel()
  end)

  it("coalesces missed ticks into one run when the loop was late", function()
    local n = 0
    local job = timer.every(1, function() n = n + 1 end)
    -- jump the clock without letting timers fire in between
    require("ae.core.clock").set(clock.now() + 10)
    clock.advance(0)
    assert.equal(1, n)
    assert.equal(t0 + 11, job:next_run())
    job:cancel()
  end)

  it("grace drops a run that starts too late", function()
    local n = 0
    local job = timer.every(10, function() n = n + 1 end, { grace = 1 })
    require("ae.core.clock").set(clock.now() + 15)
    clock.advance(0)
    assert.equal(0, n)
    assert.equal(1, job:info().misfired)
    clock.advance(5)
    assert.equal(1, n)
    job:cancel()
  end)

  it("lists jobs with their next run", function()
    local job = timer.every(60, function() end, { name = "listed" })
    local found
    for _, info in ipairs(timer.jobs()) do
      if info.name == "listed" then found = info end
    end
    assert.equal(t0 + 60, found.next_run)
    assert.equal("every", found.kind)
    job:cancel()
  end)

  it("rejects bad arguments", function()
    assert.has_error(function() timer.every(0, function() end) end)
    assert.has_error(function() timer.every(5, "x") end)
    assert.has_error(function() timer.after(-1, function() end) end)
  end)

  it("runs in real time too", function()
    clock.unfreeze()
    local n = 0
    local job = timer.every(0.02, function() n = n + 1 end, { now = true })
    task.sleep(0.09)
    job:cancel()
    assert.is_true(n >= 3 and n <= 6, "ran " .. n .. " times")
    clock.freeze()
  end)
end)

describe("ae.timer.cron", function()
  after_each(function()
    require("ae.clock").unfreeze()
  end)

  it("fires on cron matches in a named zone, across a DST change", function()
    -- 2021-03-13 12:00 EST; US/Eastern springs forward on 2021-03-14 at 02:00
    clock.freeze("2021-03-13T17:00:00Z")
    local at = {}
    local job = timer.cron("0 8 * * *", function() at[#at + 1] = require("ae.time").iso(clock.now()) end,
      { tz = "US/Eastern", name = "_daily" })
    clock.advance(3 * 86400)
    job:cancel()
    -- 08:00 EST = 13:00Z before the change, 08:00 EDT = 12:00Z after
    assert.same({ "2021-03-14T12:00:00Z", "2021-03-15T12:00:00Z", "2021-03-16T12:00:00Z" }, at)
  end)

  it("monthly job on day 1 at 00:00 US/Eastern (last-contact-report)", function()
    clock.freeze("2021-01-15T00:00:00Z")
    local n = 0
    local job = timer.cron("0 0 1 * *", function() n = n + 1 end, { tz = "US/Eastern" })
    assert.equal(require("ae.time").parse("2021-02-01T05:00:00Z"), job:next_run())
    clock.advance(60 * 86400)
    assert.equal(2, n)
    job:cancel()
  end)

  it("rejects a bad expression or zone", function()
    assert.has_error(function() timer.cron("61 * * * *", function() end) end)
    assert.has_error(function() timer.cron("* * * *", function() end) end)
    assert.has_error(function() timer.cron("* * * * *", function() end, { tz = "Mars/Olympus" }) end)
  end)
end)
