-- luacheck: max line length 135
-- service-outage-monitor, triage process: behaviour cases 40-55 (§9), on the
-- manual clock against recorded stand-ins of the lib clients; case 40 also
-- runs the real unit over NATS.
local clock = require "ae.clock"
local time = require "ae.time"
local json = require "ae.json"
local nats = require "ae.nats"
local task = require "ae.task"
local engine = require "ae.engine"
local config = require "usecases.outage.config"
local fake_bus = require "usecases.outage.fake_bus"
local repo_mod = require "usecases.outage.repo"
local outage_mod = require "usecases.outage.outage"
local triage_mod = require "usecases.outage.triage"

local H1 = "mettel.velocloud.net"
local NOW = "2021-03-15T18:05:12Z"
local TRIAGE = "#*Automation Engine*#\nTriage (VeloCloud)\nOrchestrator Instance: x"

local function setup(env)
  local cfg = config.load({ environment = env or "production", triage = 1, environment_name = "t",
    triage_velo_hosts = { H1 } }, function() return nil end)
  local bus = fake_bus.new()
  local repo = repo_mod.new(cfg, bus.clients)
  local outage = outage_mod.new({ cfg = cfg, repo = repo, after = function() end })
  local proc = triage_mod.new({ cfg = cfg, repo = repo, deliver = outage.deliver_triage_note })
  return bus, proc
end

local function entry(id, serial, client)
  return { edge = { host = H1, enterprise_id = 1, edge_id = id }, serial_number = serial, logical_ids = {},
    bruin_client_info = { client_id = client or 9994, client_name = "C" } }
end

local function note_at(age, serials)
  return { noteValue = TRIAGE, serviceNumber = serials, createdDate = time.iso(time.now() - age, "US/Eastern", { precision = "ms" }) }
end

local function events(n)
  local list = {}
  for i = 1, n do
    list[i] = { event = "LINK_DEAD", category = "NETWORK", message = "Link GE1 is now DEAD",
      eventTime = time.iso(time.now() - 600 - i * 60, nil, { precision = "ms" }) }
  end
  return { status = 200, body = list }
end

local function details(values, notes)
  local d = {}
  for i, v in ipairs(values) do d[i] = { detailID = 100 + i, detailValue = v, detailStatus = "I" } end
  return { status = 200, body = { ticketDetails = d, ticketNotes = notes or {} } }
end

local LINKS = { status = 200, body = {
  { host = H1, enterpriseId = 1, edgeId = 1, edgeName = "E1", edgeState = "OFFLINE", edgeSerialNumber = "S1",
    interface = "GE1", linkState = "DISCONNECTED", displayName = "ISP" },
  { host = H1, enterpriseId = 1, edgeId = 2, edgeName = "E2", edgeState = "CONNECTED", edgeSerialNumber = "S2",
    interface = "GE1", linkState = "STABLE", displayName = "ISP" } } }

local function single_ticket(bus, values, notes)
  bus:on("cache", { status = 200, body = { entry(1, "S1"), entry(2, "S2") } })
  bus:on("tickets", { status = 200, body = { { ticketID = 55, createdBy = "someone" } } })
  bus:on("details", details(values, notes))
  bus:on("links", LINKS)
end

local function count_client(bus, client)
  local n = 0
  for _, c in ipairs(bus:calls("tickets")) do
    if c.client_id == client then n = n + 1 end
  end
  return n
end

describe("service-outage-monitor triage process", function()
  before_each(function() clock.freeze(NOW) end)
  after_each(function() clock.unfreeze() end)

  it("41: cache 202 ends the cycle", function()
    local bus, proc = setup()
    bus:on("cache", { status = 202, body = "Cache is still being built for host(s): x" })
    assert.is_false(proc.run_cycle())
    assert.equal(0, #bus:calls("tickets"))
    local req = bus:calls("cache")[1]
    assert.equal("{}", json.encode(req.velo_filter))
    assert.equal(json.null, req.last_contact_filter)
  end)

  it("42: one tickets request per client without service_number, never two at once", function()
    local bus, proc = setup()
    bus:on("cache", { status = 200, body = { entry(1, "S1", 1), entry(2, "S2", 2), entry(3, "S3", 1) } })
    local inflight, max = 0, 0
    bus:on("tickets", function()
      inflight = inflight + 1
      max = math.max(max, inflight)
      task.sleep(1)
      inflight = inflight - 1
      return { status = 200, body = {} }
    end)
    local t = task.spawn(proc.run_cycle)
    clock.advance(5)
    assert.is_true(t:wait())
    local calls = bus:calls("tickets")
    assert.equal(2, #calls)
    assert.is_nil(calls[1].service_number)
    assert.equal("VOO", calls[1].ticket_topic)
    assert.equal(1, max)
  end)

  it("43: a failing client is retried with back-off for 300 s, then skipped; others unaffected", function()
    local bus, proc = setup()
    bus:on("cache", { status = 200, body = { entry(1, "S1", 1), entry(2, "S2", 2) } })
    local at = {}
    bus:on("tickets", function(a)
      if a.client_id == 1 then
        at[#at + 1] = time.now() - time.parse(NOW)
        return { status = 500, body = "x" }
      end
      return { status = 200, body = { { ticketID = 9 } } }
    end)
    local t = task.spawn(proc.run_cycle)
    clock.advance(400)
    assert.is_true(t:wait())
    assert.same({ 0, 10, 30, 70, 150, 310 }, at)
    assert.equal(1, count_client(bus, 2))
    assert.equal(1, #bus:calls("details"))
  end)

  it("44/45: details failure or no details skips the ticket; details of unmonitored serials are ignored", function()
    local bus, proc = setup()
    bus:on("cache", { status = 200, body = { entry(1, "S1") } })
    bus:on("tickets", { status = 200, body = { { ticketID = 1 }, { ticketID = 2 }, { ticketID = 3 } } })
    bus:on("details", { { status = 500, body = "x" }, details({}), details({ "OTHER" }) })
    bus:on("links", LINKS)
    local ok, nwith, nwithout = proc.run_cycle()
    assert.is_true(ok)
    assert.equal(0, nwith)
    assert.equal(0, nwithout)
    assert.equal(0, #bus:calls("events"))
  end)

  it("46/47: ignored notes; S1 with triage, S2 without", function()
    local bus, proc = setup()
    single_ticket(bus, { "S1", "S2" }, {
      { noteValue = json.null, serviceNumber = { "S2" } },
      { noteValue = "Triage\nx", serviceNumber = { "S2" } },
      { noteValue = "#*Automation Engine*#\nRe-opening ticket.", serviceNumber = { "S2" } },
      note_at(600, { "S1" }), note_at(600, { "UNMONITORED" }) })
    local _, nwith, nwithout = proc.run_cycle()
    assert.equal(1, nwith)
    assert.equal(1, nwithout)
  end)

  it("48: newest note 20 min or exactly 30 min old -> skipped without an events request", function()
    for _, age in ipairs({ 20 * 60, 30 * 60 }) do
      local bus, proc = setup()
      single_ticket(bus, { "S1" }, { note_at(7200, { "S1" }), note_at(age, { "S1" }) })
      proc.run_cycle()
      assert.equal(0, #bus:calls("events"))
    end
  end)

  it("49: 45 min old and 17 events -> two notes (15 + 2, newest first) and one Slack", function()
    local bus, proc = setup()
    single_ticket(bus, { "S1" }, { note_at(45 * 60, { "S1" }) })
    bus:on("events", events(17))
    proc.run_cycle()
    local ev = bus:calls("events")[1]
    assert.equal("2021-03-15 17:20:12+00:00", ev.start)
    local notes = bus:calls("note")
    assert.equal(2, #notes)
    local _, n1 = notes[1].note:gsub("New event: ", "")
    local _, n2 = notes[2].note:gsub("New event: ", "")
    assert.same({ 15, 2 }, { n1, n2 })
    assert.same({ "S1" }, notes[1].service_numbers)
    local head = "#*Automation Engine*#\nTriage (VeloCloud)\n\nNew event: LINK_DEAD\nDevice: Interface GE1\n" ..
      "Event time: 2021-03-15 13:54:12-04:00\n\n"
    assert.equal(head, notes[1].note:sub(1, #head))
    assert.matches("\nTimestamp: 2021%-03%-15 13:40:12%-04:00$", notes[1].note)
    assert.same({ "Triage appended to detail 101 (serial: S1) of ticket 55. Details at https://app.bruin.com/t/55" },
      bus.slack)
  end)

  it("50: all chunk appends fail -> no Slack; one of two succeeds -> Slack", function()
    local bus, proc = setup()
    single_ticket(bus, { "S1" }, { note_at(45 * 60, { "S1" }) })
    bus:on("events", events(17))
    bus:on("note", { status = 400, body = "no" })
    proc.run_cycle()
    assert.equal(0, #bus.slack - 2) -- only the two error Slacks
    assert.is_nil(bus.slack[3])
    local bus2, proc2 = setup()
    single_ticket(bus2, { "S1" }, { note_at(45 * 60, { "S1" }) })
    bus2:on("events", events(17))
    bus2:on("note", { { status = 400, body = "no" }, { status = 200 } })
    proc2.run_cycle()
    assert.equal("Triage appended to detail 101 (serial: S1) of ticket 55. Details at https://app.bruin.com/t/55",
      bus2.slack[#bus2.slack])
  end)

  it("51: dev with-triage -> no append, Slack anyway", function()
    local bus, proc = setup("dev")
    single_ticket(bus, { "S1" }, { note_at(45 * 60, { "S1" }) })
    bus:on("events", events(3))
    proc.run_cycle()
    assert.equal(0, #bus:calls("note"))
    assert.equal(1, #bus.slack)
  end)

  it("52: without-triage -> initial note (production) or the 'would have been appended' Slack (dev)", function()
    local bus, proc = setup()
    single_ticket(bus, { "S1" })
    bus:on("events", events(2))
    proc.run_cycle()
    local notes = bus:calls("note")
    assert.equal(1, #notes)
    assert.equal(1, notes[1].note:find("#*Automation Engine*#\nTriage (VeloCloud)\nOrchestrator Instance: " .. H1 ..
      "\nEdge Name: E1\n", 1, true))
    assert.equal("2021-03-08 18:05:12+00:00", bus:calls("events")[1].start)
    local bus2, proc2 = setup("dev")
    single_ticket(bus2, { "S1" })
    bus2:on("events", events(2))
    proc2.run_cycle()
    assert.equal(0, #bus2:calls("note"))
    assert.equal(1, bus2.slack[1]:find("Triage note would have been appended to detail 101 of ticket 55(serial: S1). " ..
      "Note: #*Automation Engine*#\nTriage (VeloCloud)\n", 1, true))
    assert.matches(". Details at app.bruin.com/t/55$", bus2.slack[1])
    local bus3, proc3 = setup("staging")
    single_ticket(bus3, { "S1" })
    bus3:on("events", events(2))
    proc3.run_cycle()
    assert.equal(0, #bus3:calls("note"))
    assert.same({}, bus3.slack)
  end)

  it("53/54: no edge status (host failed) or no events -> skipped", function()
    local bus, proc = setup()
    single_ticket(bus, { "S1" })
    bus:on("links", { status = 500, body = "x" })
    bus:on("events", events(2))
    proc.run_cycle()
    assert.equal(0, #bus:calls("note"))
    local bus2, proc2 = setup()
    single_ticket(bus2, { "S1" })
    bus2:on("events", { status = 200, body = {} })
    proc2.run_cycle()
    assert.equal(0, #bus2:calls("note"))
  end)

  it("55: page 1 of 2 answered 400 -> page 2 not sent", function()
    local bus, proc = setup()
    bus:on("cache", { status = 200, body = { entry(1, "S1") } })
    bus:on("tickets", { status = 200, body = { { ticketID = 55 } } })
    bus:on("details", details({ "S1" }))
    local rows = {}
    for i = 1, 40 do
      rows[i] = { host = H1, enterpriseId = 1, edgeId = 1, edgeName = "E1", edgeState = "OFFLINE",
        edgeSerialNumber = "S1", interface = "GE" .. i, linkState = "STABLE", displayName = string.rep("y", 20) }
    end
    bus:on("links", { status = 200, body = rows })
    bus:on("events", events(1))
    bus:on("note", { status = 400, body = "no" })
    proc.run_cycle()
    assert.equal(1, #bus:calls("note"))
    assert.matches("\nTriage note: 1/%d$", bus:calls("note")[1].note)
  end)

  it("40: the unit with ENABLE_TRIAGE_MONITORING=1 runs only triage, at start and every 10 min", function()
    local seen = {}
    local sub = assert(nats.serve("customer.cache.get", function(req)
      seen[#seen + 1] = { at = time.now(), body = req.body }
      return { status = 202, body = "Cache is still being built for host(s): x" }
    end))
    local slack = assert(nats.serve("notification.slack.request", function() return { status = 200 } end))
    nats.flush(2)
    local t0 = time.now()
    engine.start_unit({ name = "som-triage-spec", script = "scripts/usecases/service_outage_monitor.lua",
      config = { environment = "dev", triage = 1, lease = 0 } })
    clock.advance(0)
    clock.advance(600)
    engine.stop_unit("som-triage-spec")
    sub:unsubscribe()
    slack:unsubscribe()
    assert.equal(2, #seen)
    assert.same({ t0, t0 + 600 }, { seen[1].at, seen[2].at })
    assert.equal("{}", json.encode(seen[1].body.filter))
    assert.equal(json.null, seen[1].body.last_contact_filter)
  end)
end)

