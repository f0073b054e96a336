-- ae.time: parse/format round trips, IANA zones across DST, cron next over
-- DST, errors, and the engine clock (manual clock of specs).
local time = require "ae.time"
local clock = require "ae.clock"
local timer = require "ae.timer"

local function utc(s)
  local t = assert(time.parse(s))
  return t
end

describe("ae.time", function()
  describe("now()", function()
    after_each(function() clock.unfreeze() end)

    it("follows the manual clock", function()
      clock.freeze("2021-02-22T15:04:05Z")
      assert.equal(1614006245, time.now())
      clock.advance(90)
      assert.equal(1614006335, time.now())
      assert.equal("2021-02-22T15:05:35Z", time.iso(time.now()))
    end)

    it("is the engine clock in float seconds when not frozen", function()
      local a = time.now()
      assert.equal("float", math.type(a))
      assert.near(clock.now(), a, 1)
    end)
  end)

  describe("parse()", function()
    it("reads the ISO-8601 forms the services exchange", function()
      assert.equal(1614006245, time.parse("2021-02-22T15:04:05Z"))
      assert.near(1614006245.123456, time.parse("2021-02-22T15:04:05.123456Z"), 1e-6)
      assert.equal(1614006245, time.parse("2021-02-22T16:04:05+01:00"))
      assert.equal(1614006245, time.parse("2021-02-22T10:04:05-0500"))
      assert.equal(1614006245, time.parse("2021-02-22 15:04:05"))
      assert.equal(1613952000, time.parse("2021-02-22"))
      assert.near(1611068383.663, time.parse("2021-01-19T09:59:43.663-05:00"), 1e-6)  -- Bruin
      assert.equal(1601904120, time.parse("2020-10-05T13:22:00.000Z"))                  -- VeloCloud
      assert.near(1614006245.123456, time.parse("2021-02-22 15:04:05.123456+00:00"), 1e-6) -- Python str()
      assert.equal(1592917200, time.parse("2020-06-23T13:00:00.000+0000"))              -- Salesforce
      assert.equal(1615829514, time.parse("3/15/2021 5:31:54 PM"))                      -- Bruin createDate
    end)

    it("interprets naive times in the given zone", function()
      assert.equal(utc("2021-03-15T17:41:30Z"), time.parse("2021-03-15 13:41:30", "US/Eastern"))
      assert.equal(utc("2021-01-15T18:41:30Z"), time.parse("2021-01-15 13:41:30", "US/Eastern"))
      assert.equal(utc("2021-03-15T13:41:30Z"), time.parse("2021-03-15T13:41:30Z", "US/Eastern"))
    end)

    it("accepts an explicit strptime-like format", function()
      -- service-dispatch-monitor: CTS "Onsite Time Needed" in US/Pacific
      local t = time.parse("2020-06-23 03.00PM", "US/Pacific", "%Y-%m-%d %I.%M%p")
      assert.equal("Jun 23, 2020 @ 10:00 PM UTC", time.format(t, "%b %d, %Y @ %I:%M %p UTC"))
      assert.equal(utc("2020-06-21T23:00:00Z"), time.parse("2020-06-21 4.00PM", "US/Pacific", "%Y-%m-%d %I.%M%p"))
    end)

    it("returns nil and a message on bad text", function()
      for _, s in ipairs { "0000-00-00 00:00:00", "2021-02-30", "yesterday", "", "2021-02-22T15:04:05Zjunk" } do
        local t, err = time.parse(s)
        assert.is_nil(t)
        assert.matches("^ae.time.parse: cannot parse", err)
      end
      local t, err = time.parse("2020-06-23 03.00", nil, "%Y-%m-%d %I.%M%p")
      assert.is_nil(t)
      assert.matches("AM or PM", err)
    end)

    it("returns nil and a message for an unknown zone", function()
      local t, err = time.parse("2021-02-22 10:00", "US/Nowhere")
      assert.is_nil(t)
      assert.equal("ae.time.parse: unknown time zone 'US/Nowhere'", err)
    end)

    it("raises on a non-string argument", function()
      assert.has_error(function() time.parse({}) end)
    end)
  end)

  describe("format() and iso()", function()
    local t = 1614006245.123456 -- 2021-02-22T15:04:05.123456Z

    it("formats with strftime directives in a zone", function()
      assert.equal("2021-02-22 15:04:05", time.format(t))
      assert.equal("2021-02-22T10:04:05.123456-0500 EST", time.format(t, "%Y-%m-%dT%H:%M:%S.%f%z %Z", "US/Eastern"))
      assert.equal("Mon Feb 22 2021 03:04 PM 053", time.format(t, "%a %b %d %Y %I:%M %p %j"))
      assert.equal("2/22/2021 3:04:05 PM", time.format(t, "%-m/%-d/%Y %-I:%M:%S %p"))
      assert.equal("2021-02-22 20:34:05 IST +05:30", time.format(t, "%F %T %Z %:z", "Asia/Kolkata"))
    end)

    it("raises on an unknown directive", function()
      assert.has_error(function() time.format(t, "%Q") end, "ae.time.format: unknown format directive '%Q'")
    end)

    it("writes ISO-8601 with the zone offset", function()
      assert.equal("2021-02-22T15:04:05.123456Z", time.iso(t))
      assert.equal("2021-02-22T15:04:05Z", time.iso(1614006245))
      assert.equal("2021-02-22T10:04:05.123456-05:00", time.iso(t, "US/Eastern"))
      assert.equal("2021-02-22T15:04:05.123Z", time.iso(t, nil, { precision = "ms" }))
      assert.equal("2021-02-22T15:04:05Z", time.iso(t, "UTC", { precision = "s" }))
      assert.equal("2021-02-22 15:04:05.123456+00:00", time.iso(t, "UTC", { sep = " ", z = false }))
    end)

    it("round-trips parse(iso(t)) across zones and DST", function()
      for _, tz in ipairs { "UTC", "US/Eastern", "Europe/Madrid", "Australia/Lord_Howe", "Etc/GMT+5" } do
        local x = utc("2021-01-01T00:00:00Z") + 0.5
        while x < utc("2023-01-01T00:00:00Z") do
          local s = time.iso(x, tz)
          assert.near(x, time.parse(s), 1e-6, s)
          assert.equal(s, time.iso(time.parse(time.format(x, "%Y-%m-%d %H:%M:%S.%f", tz), tz), tz))
          x = x + 86400 * 7 + 3599.5
        end
      end
    end)

    it("returns nil and a message for an unknown zone", function()
      local s, err = time.format(t, nil, "Mars/Olympus")
      assert.is_nil(s)
      assert.equal("ae.time.format: unknown time zone 'Mars/Olympus'", err)
      s, err = time.iso(t, "Nope")
      assert.is_nil(s)
      assert.matches("unknown time zone 'Nope'", err)
    end)

    it("raises on a time out of range", function()
      assert.has_error(function() time.iso(1e300) end)
      assert.has_error(function() time.format(0 / 0) end)
    end)
  end)

  describe("to_zone() and from_zone()", function()
    it("breaks a time down in a zone", function()
      local f = time.to_zone(1614006245.25, "US/Eastern")
      assert.same({
        year = 2021, month = 2, day = 22, hour = 10, min = 4, sec = 5, usec = 250000, wday = 2, yday = 53,
        isdst = false, offset = -18000, zone = "EST",
      }, f)
      assert.equal(1614006245.25, time.from_zone(f, "US/Eastern"))
    end)

    it("follows the US/Eastern spring-forward of 2021-03-14", function()
      local before = time.to_zone(utc("2021-03-14T06:59:59Z"), "US/Eastern")
      local after = time.to_zone(utc("2021-03-14T07:00:00Z"), "US/Eastern")
      assert.same({ 1, 59, 59, "EST", -18000, false },
        { before.hour, before.min, before.sec, before.zone, before.offset, before.isdst })
      assert.same({ 3, 0, 0, "EDT", -14400, true },
        { after.hour, after.min, after.sec, after.zone, after.offset, after.isdst })
      -- 02:30 does not exist: moved forward by the gap (03:30 EDT), or with fold = 1 back (01:30 EST)
      local f = { year = 2021, month = 3, day = 14, hour = 2, min = 30 }
      assert.equal(utc("2021-03-14T07:30:00Z"), time.from_zone(f, "US/Eastern"))
      f.fold = 1
      assert.equal(utc("2021-03-14T06:30:00Z"), time.from_zone(f, "US/Eastern"))
    end)

    it("follows the US/Eastern fall-back of 2021-11-07", function()
      local first = time.to_zone(utc("2021-11-07T05:30:00Z"), "US/Eastern")
      local second = time.to_zone(utc("2021-11-07T06:30:00Z"), "US/Eastern")
      assert.same({ 1, 30, "EDT" }, { first.hour, first.min, first.zone })
      assert.same({ 1, 30, "EST" }, { second.hour, second.min, second.zone })
      -- ambiguous 01:30: first occurrence unless fold = 1 or the offset says otherwise
      local f = { year = 2021, month = 11, day = 7, hour = 1, min = 30 }
      assert.equal(utc("2021-11-07T05:30:00Z"), time.from_zone(f, "US/Eastern"))
      f.fold = 1
      assert.equal(utc("2021-11-07T06:30:00Z"), time.from_zone(f, "US/Eastern"))
      assert.equal(utc("2021-11-07T06:30:00Z"), time.from_zone(second, "US/Eastern"))
      assert.equal(utc("2021-11-07T05:30:00Z"), time.from_zone(first, "US/Eastern"))
    end)

    it("handles other zones and far-future dates", function()
      assert.equal(19800, time.to_zone(0, "Asia/Kolkata").offset)
      assert.equal(-18000, time.to_zone(utc("2021-07-01T00:00:00Z"), "Etc/GMT+5").offset)
      assert.equal(7200, time.to_zone(utc("2021-07-01T00:00:00Z"), "Europe/Madrid").offset)
      assert.equal(3600, time.to_zone(utc("2021-01-01T00:00:00Z"), "Europe/Madrid").offset)
      assert.equal(39600, time.to_zone(utc("2041-01-15T00:00:00Z"), "Australia/Lord_Howe").offset)
      assert.equal(37800, time.to_zone(utc("2041-07-15T00:00:00Z"), "Australia/Lord_Howe").offset)
      local f = time.to_zone(utc("2045-07-04T16:00:00Z"), "America/New_York")
      assert.same({ 12, "EDT" }, { f.hour, f.zone })
    end)

    it("normalises out-of-range fields", function()
      assert.equal(utc("2022-01-01T00:00:00Z"), time.from_zone({ year = 2021, month = 13, day = 1 }))
      assert.equal(utc("2021-02-28T00:00:00Z"), time.from_zone({ year = 2021, month = 3, day = 0 }))
      assert.equal(utc("2021-03-01T01:00:00Z"), time.from_zone({ year = 2021, month = 2, day = 28, hour = 25 }))
    end)

    it("reports errors", function()
      local t, err = time.to_zone(0, "Bad/Zone")
      assert.is_nil(t)
      assert.equal("ae.time.to_zone: unknown time zone 'Bad/Zone'", err)
      t, err = time.from_zone({ year = 2021, month = 1, day = 1 }, "../../etc/passwd")
      assert.is_nil(t)
      assert.matches("invalid time zone name", err)
      assert.has_error(function() time.from_zone({ year = 2021, month = 1 }) end)
      assert.has_error(function() time.from_zone({ year = 2021, month = 1, day = "x" }) end)
    end)
  end)

  describe("zone_valid()", function()
    it("knows the zones the services use", function()
      for _, tz in ipairs { "US/Eastern", "US/Pacific", "America/New_York", "Europe/Madrid", "UTC", "Etc/GMT+5",
        "Asia/Kolkata", "Australia/Lord_Howe" } do
        assert.is_true(time.zone_valid(tz), tz)
      end
      for _, tz in ipairs { "US/BAD", "Eastern", "", "/etc/passwd", "America", "zone.tab", "../UTC" } do
        assert.is_false(time.zone_valid(tz), tz)
      end
    end)
  end)

  describe("cron_next()", function()
    it("finds the next match strictly after a time", function()
      assert.equal(utc("2021-02-22T15:15:00Z"), time.cron_next("*/15 * * * *", utc("2021-02-22T15:04:05Z"), "UTC"))
      assert.equal(utc("2021-02-22T15:30:00Z"), time.cron_next("*/15 * * * *", utc("2021-02-22T15:15:00Z"), "UTC"))
      assert.equal(utc("2021-03-01T05:00:00Z"), time.cron_next("0 0 1 * *", utc("2021-02-22T00:00:00Z"), "US/Eastern"))
      assert.equal(utc("2021-02-22T14:30:00Z"),
        time.cron_next("30 9 * * MON-FRI", utc("2021-02-19T15:00:00Z"), "US/Eastern"))
      assert.equal(utc("2021-02-23T08:00:00Z"), time.cron_next("0 8 * * *", utc("2021-02-22T08:00:00Z")))
    end)

    it("treats 0 and 7 as Sunday and ORs restricted day fields", function()
      local after = utc("2021-02-22T00:00:00Z")
      assert.equal(utc("2021-02-28T12:00:00Z"), time.cron_next("0 12 * * 0", after))
      assert.equal(utc("2021-02-28T12:00:00Z"), time.cron_next("0 12 * * 7", after))
      assert.equal(utc("2021-02-26T00:00:00Z"), time.cron_next("0 0 13 * fri", after))
      assert.equal(utc("2021-03-13T00:00:00Z"), time.cron_next("0 0 13 * fri", utc("2021-03-12T00:00:00Z")))
    end)

    it("runs a job skipped by spring-forward at the first valid instant after", function()
      local t = time.cron_next("30 2 * * *", utc("2021-03-13T08:00:00Z"), "US/Eastern")
      assert.equal(utc("2021-03-14T07:00:00Z"), t) -- 03:00 EDT
      assert.equal(utc("2021-03-15T06:30:00Z"), time.cron_next("30 2 * * *", t, "US/Eastern"))
      assert.equal(utc("2021-03-14T07:00:00Z"),
        time.cron_next("*/15 * * * *", utc("2021-03-14T06:45:00Z"), "US/Eastern"))
    end)

    it("runs once in the hour repeated by fall-back", function()
      local runs, t = {}, utc("2021-11-07T04:00:00Z")
      while true do
        t = time.cron_next("0,30 1 * * *", t, "US/Eastern")
        if t > utc("2021-11-07T12:00:00Z") then break end
        runs[#runs + 1] = time.iso(t, "US/Eastern")
      end
      assert.same({ "2021-11-07T01:00:00-04:00", "2021-11-07T01:30:00-04:00" }, runs)
    end)

    it("returns nil and a message on a bad expression or zone", function()
      local cases = {
        ["60 * * * *"] = "minute: value 60 out of range 0%-59",
        ["* * * *"] = "has 4 fields",
        ["* * * * * *"] = "more than 5 fields",
        ["*/0 * * * *"] = "step 0",
        ["5-1 * * * *"] = "goes backwards",
        ["* * * foo *"] = "unknown name 'foo'",
        ["0 0 30 2 *"] = "never matches",
      }
      for expr, msg in pairs(cases) do
        local t, err = time.cron_next(expr, 0, "UTC")
        assert.is_nil(t, expr)
        assert.matches(msg, err, 1, false, expr)
      end
      local t, err = time.cron_next("* * * * *", 0, "US/Nowhere")
      assert.is_nil(t)
      assert.equal("ae.time.cron_next: unknown time zone 'US/Nowhere'", err)
      assert.same({ false, "ae.time.cron_valid: hour: value 24 out of range 0-23" }, { time.cron_valid("0 24 * * *") })
      assert.is_true(time.cron_valid("@daily"))
    end)
  end)

  describe("with ae.timer.cron and the manual clock", function()
    after_each(function() clock.unfreeze() end)

    it("fires a US/Eastern cron job across the spring-forward night", function()
      clock.freeze("2021-03-13T12:00:00Z")
      local at = {}
      local job = timer.cron("30 2 * * *", function() at[#at + 1] = time.iso(time.now(), "US/Eastern") end,
        { tz = "US/Eastern" })
      clock.advance(3 * 86400)
      job:cancel()
      assert.same({ "2021-03-14T03:00:00-04:00", "2021-03-15T02:30:00-04:00", "2021-03-16T02:30:00-04:00" }, at)
    end)
  end)
end)
