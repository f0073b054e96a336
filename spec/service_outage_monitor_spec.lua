-- luacheck: max line length 135
-- service-outage-monitor, outage process: behaviour cases 1-39 of the spec
-- (§9). The process runs on the manual clock against recorded stand-ins of
-- the lib clients (usecases.outage.fake_bus); case 1 also runs the real unit
-- over NATS.
local clock = require "ae.clock"
local timer = require "ae.timer"
local time = require "ae.time"
local json = require "ae.json"
local nats = require "ae.nats"
local engine = require "ae.engine"
local config = require "usecases.outage.config"
local fake_bus = require "usecases.outage.fake_bus"
local repo_mod = require "usecases.outage.repo"
local outage_mod = require "usecases.outage.outage"

local H1, H2 = "mettel.velocloud.net", "metvco02.mettel.net"
local NOW = "2021-03-15T18:05:12Z"

local function entry(host, ent, id, serial, logical_ids)
  return { edge = { host = host, enterprise_id = ent, edge_id = id }, serial_number = serial,
    last_contact = "2021-03-15T17:59:01.000Z", logical_ids = logical_ids or {},
    bruin_client_info = { client_id = 9994, client_name = "METTEL/NEW YORK" } }
end

-- links rows for one edge: state, {{interface, linkState}, ...}
local function links(host, ent, id, serial, state, ls)
  local rows = {}
  for i, l in ipairs(ls) do
    rows[i] = { host = host, enterpriseId = ent, edgeId = id, edgeName = "Edge " .. id, edgeState = state,
      edgeSerialNumber = serial, interface = l[1], linkState = l[2], displayName = l[3] or ("ISP " .. l[1]) }
  end
  return rows
end

local function concat(...)
  local out = {}
  for _, list in ipairs({ ... }) do
    for _, v in ipairs(list) do out[#out + 1] = v end
  end
  return out
end

local function setup(env)
  local cfg = config.load({ environment = env or "production", velocloud_hosts = H1 .. ":" .. H2,
    velocloud_hosts_filter = "[]:[]", environment_name = "automation-test" }, function() return nil end)
  local bus = fake_bus.new()
  local repo = repo_mod.new(cfg, bus.clients)
  local proc = outage_mod.new({ cfg = cfg, repo = repo, after = timer.after })
  return bus, proc, cfg
end

local function count(list, pred)
  local n = 0
  for _, v in ipairs(list) do
    if pred(v) then n = n + 1 end
  end
  return n
end

local function has_prefix(list, prefix)
  return count(list, function(t) return t:sub(1, #prefix) == prefix end) > 0
end

describe("service-outage-monitor outage process", function()
  before_each(function() clock.freeze(NOW) end)
  after_each(function()
    for _, j in ipairs(timer.jobs()) do timer.get(j.name):cancel() end
    clock.unfreeze()
  end)

  describe("cycle start (cases 2-8)", function()
    it("2: cache 202 -> the body as Slack, no links request", function()
      local bus, proc = setup()
      bus:on("cache", { status = 202, body = "Cache is still being built for host(s): mettel.velocloud.net" })
      assert.is_false(proc.run_cycle())
      assert.same({ "Cache is still being built for host(s): mettel.velocloud.net" }, bus.slack)
      assert.equal(0, #bus:calls("links"))
    end)

    it("the cache request carries the filter and the 7-day last contact filter", function()
      local bus, proc = setup()
      proc.run_cycle()
      local req = bus:calls("cache")[1]
      assert.same({ [H1] = {}, [H2] = {} }, req.velo_filter)
      assert.equal("[]", json.encode(req.velo_filter[H1]))
      assert.equal("2021-03-08 18:05:12", req.last_contact_filter)
    end)

    it("3: cache 404 -> no Slack, no links", function()
      local bus, proc = setup()
      bus:on("cache", { status = 404, body = "No edges were found for the specified filters" })
      proc.run_cycle()
      assert.same({}, bus.slack)
      assert.equal(0, #bus:calls("links"))
    end)

    it("4: cache timeout -> 'An error occurred when requesting customer cache -> ...'", function()
      local bus, proc = setup()
      bus:on("cache", "timeout")
      proc.run_cycle()
      assert.equal(1, #bus.slack)
      assert.is_true(has_prefix(bus.slack, "An error occurred when requesting customer cache -> ae.nats:"))
      assert.equal(0, #bus:calls("links"))
    end)

    it("5: the blacklisted edge is never processed", function()
      local bus, proc = setup()
      bus:on("cache", { status = 200, body = { entry(H1, 170, 3195, "VCBL") } })
      bus:on("links", { status = 200, body = links(H1, 170, 3195, "VCBL", "OFFLINE", { { "GE1", "DISCONNECTED" } }) })
      proc.run_cycle()
      clock.advance(180)
      assert.equal(0, #bus:calls("links"))
      assert.equal(0, #bus:calls("tickets"))
      assert.equal(0, #bus:calls("create"))
    end)

    it("6-8: one links request per host; edges missing from VeloCloud are skipped", function()
      local bus, proc = setup()
      bus:on("cache", { status = 200, body = { entry(H1, 1, 1, "VC1"), entry(H2, 2, 2, "VC2"), entry(H1, 1, 9, "VC9") } })
      bus:on("links", function(a)
        if a.host == H1 then return { status = 200, body = links(H1, 1, 1, "VC1", "CONNECTED", { { "GE1", "STABLE" } }) } end
        return { status = 200, body = links(H2, 2, 2, "VC2", "CONNECTED", { { "GE1", "STABLE" } }) }
      end)
      proc.run_cycle()
      local hosts = {}
      for _, c in ipairs(bus:calls("links")) do hosts[#hosts + 1] = c.host end
      table.sort(hosts)
      assert.same({ H1, H2 }, hosts)
      -- VC1 and VC2 healthy -> autoresolve; VC9 has no status -> nothing
      local serials = {}
      for _, c in ipairs(bus:calls("tickets")) do serials[#serials + 1] = c.service_number end
      table.sort(serials)
      assert.same({ "VC1", "VC2" }, serials)
    end)

    it("7: links 500 -> error Slack with ENVIRONMENT_NAME, no recheck or autoresolve for that host", function()
      local bus, proc = setup()
      bus:on("cache", { status = 200, body = { entry(H1, 1, 1, "VC1") } })
      bus:on("links", { status = 500, body = "Got internal error from Velocloud" })
      proc.run_cycle()
      assert.same({ "Error while retrieving links with edge info in AUTOMATION-TEST environment: Error 500 - " ..
        "Got internal error from Velocloud" }, bus.slack)
      clock.advance(180)
      assert.equal(1, #bus:calls("links"))
      assert.equal(0, #bus:calls("tickets"))
    end)
  end)

  describe("decision and re-check (cases 9-15)", function()
    local function run(bus, proc, first, second)
      bus:on("cache", { status = 200, body = { entry(H1, 1, 1, "VC1") } })
      bus:on("links", { { status = 200, body = first }, second })
      proc.run_cycle()
    end

    it("9/12: CONNECTED+STABLE and DEGRADED+UNSTABLE are healthy -> autoresolve, no recheck", function()
      for _, case in ipairs({ { "CONNECTED", "STABLE" }, { "DEGRADED", "UNSTABLE" } }) do
        local bus, proc = setup()
        run(bus, proc, links(H1, 1, 1, "VC1", case[1], { { "GE1", case[2] } }))
        assert.equal(1, #bus:calls("tickets"))
        clock.advance(180)
        assert.equal(1, #bus:calls("links"))
      end
    end)

    it("10/11: a DISCONNECTED link or an OFFLINE edge is an outage, re-checked 180 s later", function()
      for _, case in ipairs({ { "CONNECTED", "DISCONNECTED" }, { "OFFLINE", "STABLE" } }) do
        local bus, proc = setup()
        local down = links(H1, 1, 1, "VC1", case[1], { { "GE1", case[2] } })
        run(bus, proc, down, { status = 200, body = down })
        assert.equal(0, #bus:calls("tickets"))
        clock.advance(179)
        assert.equal(1, #bus:calls("links"))
        assert.equal(0, #bus:calls("create"))
        clock.advance(1)
        assert.equal(2, #bus:calls("links"))
        assert.same({ client_id = 9994, service_number = "VC1" }, bus:calls("create")[1])
        for _, j in ipairs(timer.jobs()) do timer.get(j.name):cancel() end
      end
    end)

    it("13: re-check links non-2xx -> no ticket, no autoresolve", function()
      local bus, proc = setup()
      run(bus, proc, links(H1, 1, 1, "VC1", "OFFLINE", { { "GE1", "STABLE" } }), { status = 500, body = "x" })
      clock.advance(180)
      assert.equal(0, #bus:calls("create"))
      assert.equal(0, #bus:calls("tickets"))
    end)

    it("14: recovered during quarantine -> no ticket, autoresolve runs", function()
      local bus, proc = setup()
      run(bus, proc, links(H1, 1, 1, "VC1", "OFFLINE", { { "GE1", "STABLE" } }),
        { status = 200, body = links(H1, 1, 1, "VC1", "CONNECTED", { { "GE1", "STABLE" } }) })
      clock.advance(180)
      assert.equal(0, #bus:calls("create"))
      assert.equal(1, #bus:calls("tickets"))
    end)

    it("15: dev -> the creation request is never sent", function()
      local bus, proc = setup("dev")
      local down = links(H1, 1, 1, "VC1", "OFFLINE", { { "GE1", "STABLE" } })
      run(bus, proc, down, { status = 200, body = down })
      clock.advance(180)
      assert.equal(2, #bus:calls("links"))
      assert.equal(0, #bus:calls("create"))
    end)
  end)

  describe("ticket creation (cases 16-31)", function()
    local T = 5262293
    local DIGI = { { interface_name = "GE1", logical_id = "00:04:2d:0b:0c:1a:0000" },
      { interface_name = "GE3", logical_id = "00:27:04:0b:0c:1b:0000" } }
    local function item(state, ls, logical_ids)
      return { cached_info = entry(H1, 1, 1, "VC1", logical_ids or DIGI),
        status = require("usecases.outage.logic").group_links_by_edge(links(H1, 1, 1, "VC1", state, ls))[1] }
    end
    local function details(notes)
      return { status = 200, body = { ticketDetails = { { detailID = 2746937, detailValue = "VC1", detailStatus = "I" } },
        ticketNotes = notes or {} } }
    end
    local events = { status = 200, body = {
      { event = "LINK_DEAD", category = "NETWORK", eventTime = "2021-03-15T17:40:00.000Z", message = "Link GE1 is now DEAD" },
      { event = "EDGE_DOWN", category = "EDGE", eventTime = "2021-03-15T17:41:30.000Z", message = "Edge down" } } }

    it("16: 200 -> Slack, 7-day events, details, triage note for the serial, DiGi reboot", function()
      local bus, proc = setup()
      bus:on("create", { status = 200, body = T })
      bus:on("events", events)
      bus:on("details", details())
      proc.create_ticket(item("OFFLINE", { { "GE1", "DISCONNECTED" }, { "GE3", "STABLE" } }))
      assert.same({ "create", "slack", "events", "details", "note", "reboot", "note", "slack" }, bus:names())
      assert.equal("Outage ticket created for faulty edge host = mettel.velocloud.net, enterprise_id = 1, edge_id = 1. " ..
        "Ticket details at https://app.bruin.com/t/5262293.", bus.slack[1])
      local ev = bus:calls("events")[1]
      assert.same({ H1, 1, 1 }, { ev.host, ev.enterprise_id, ev.edge_id })
      assert.equal("2021-03-08 18:05:12+00:00", ev.start)
      assert.equal("2021-03-15 18:05:12+00:00", ev["end"])
      assert.same({ "EDGE_UP", "EDGE_DOWN", "LINK_ALIVE", "LINK_DEAD" }, ev.filter)
      local note = bus:calls("note")[1]
      assert.same({ "VC1" }, note.service_numbers)
      assert.matches("Last Edge Offline: 2021-03-15 13:41:30-04:00\nLast GE1 Interface Online: None\n" ..
        "Last GE1 Interface Offline: 2021-03-15 13:40:00-04:00\n", note.note, 1, true)
      assert.same({ velo_serial = "VC1", ticket = "5262293", MAC = "00:04:2d:0b:0c:1a:0000" }, bus:calls("reboot")[1])
      assert.equal("#*Automation Engine*#\nOffline DiGi interface identified for serial: VC1\nInterface: GE1\n" ..
        "Automatic reboot attempt started.\nTimeStamp: 2021-03-15 14:05:12-04:00", bus:calls("note")[2].note)
      assert.equal("DiGi reboot started for faulty edge host = mettel.velocloud.net, enterprise_id = 1, edge_id = 1. " ..
        "Ticket details at https://app.bruin.com/t/5262293.", bus.slack[2])
    end)

    it("17: 200 with no events -> no triage note, DiGi reboot still runs", function()
      local bus, proc = setup()
      bus:on("create", { status = 200, body = T })
      proc.create_ticket(item("CONNECTED", { { "GE1", "DISCONNECTED" } }))
      assert.equal(0, #bus:calls("details"))
      assert.equal(1, #bus:calls("reboot"))
    end)

    it("18: a triage note >= 1500 characters goes in pages 'Triage note: i/N'", function()
      local bus, proc = setup()
      bus:on("create", { status = 200, body = T })
      bus:on("events", events)
      bus:on("details", details())
      local ls = {}
      for i = 1, 30 do ls[i] = { "GE" .. i, "STABLE", string.rep("x", 30) } end
      ls[1][2] = "DISCONNECTED"
      proc.create_ticket(item("CONNECTED", ls, {}))
      local notes = bus:calls("note")
      assert.is_true(#notes >= 2)
      for i, n in ipairs(notes) do assert.matches("\nTriage note: " .. i .. "/%d+$", n.note) end
    end)

    it("19/28: 409 with an OFFLINE edge -> nothing else", function()
      local bus, proc = setup()
      bus:on("create", { status = 409, body = T })
      proc.create_ticket(item("OFFLINE", { { "GE1", "DISCONNECTED" } }))
      assert.same({ "create" }, bus:names())
    end)

    it("20: 471 + open 200 -> Slack, reopen note with causes, then DiGi reboot", function()
      local bus, proc = setup()
      bus:on("create", { status = 471, body = T })
      bus:on("details", details())
      proc.create_ticket(item("OFFLINE", { { "GE1", "DISCONNECTED" }, { "GE2", "DISCONNECTED" } }))
      assert.same({ "create", "details", "open", "slack", "note", "reboot", "note", "slack" }, bus:names())
      assert.same({ ticket_id = T, detail_id = 2746937 }, bus:calls("open")[1])
      assert.equal("Detail 2746937 of outage ticket 5262293 reopened: https://app.bruin.com/t/5262293", bus.slack[1])
      assert.equal("#*Automation Engine*#\nRe-opening ticket.\nOutage causes: Edge was OFFLINE. Link GE1 was DISCONNECTED. " ..
        "Link GE2 was DISCONNECTED.\nTimeStamp: 2021-03-15 14:05:12-04:00", bus:calls("note")[1].note)
    end)

    it("21: 471 + open 500 -> no reopen Slack/note, DiGi reboot still runs", function()
      local bus, proc = setup()
      bus:on("create", { status = 471, body = T })
      bus:on("details", details())
      bus:on("open", { status = 500, body = "boom" })
      proc.create_ticket(item("CONNECTED", { { "GE1", "DISCONNECTED" } }))
      assert.same({ "create", "details", "open", "slack", "reboot", "note", "slack" }, bus:names())
      assert.equal("Error while opening outage ticket 5262293 in PRODUCTION environment: Error 500 - boom", bus.slack[1])
    end)

    it("22: 472 -> only the reopen note", function()
      local bus, proc = setup()
      bus:on("create", { status = 472, body = T })
      proc.create_ticket(item("CONNECTED", { { "GE1", "STABLE" } }))
      assert.same({ "create", "note" }, bus:names())
      assert.matches("\nOutage causes: Could not determine causes.\n", bus:calls("note")[1].note, 1, true)
    end)

    it("23: 473 -> initial triage note on the serial's detail, no Slack, no DiGi", function()
      local bus, proc = setup()
      bus:on("create", { status = 473, body = T })
      bus:on("events", events)
      bus:on("details", { status = 200, body = { ticketDetails = { { detailID = 1, detailValue = "OTHER" },
        { detailID = 2, detailValue = "VC1" } }, ticketNotes = {} } })
      proc.create_ticket(item("CONNECTED", { { "GE1", "DISCONNECTED" } }))
      assert.same({ "create", "events", "details", "note" }, bus:names())
      assert.same({ "VC1" }, bus:calls("note")[1].service_numbers)
    end)

    it("24: 400 -> error Slack, next edge processed", function()
      local bus, proc = setup()
      bus:on("cache", { status = 200, body = { entry(H1, 1, 1, "VC1"), entry(H1, 1, 2, "VC2") } })
      local down = concat(links(H1, 1, 1, "VC1", "OFFLINE", { { "GE1", "STABLE" } }),
        links(H1, 1, 2, "VC2", "OFFLINE", { { "GE1", "STABLE" } }))
      bus:on("links", { status = 200, body = down })
      bus:on("create", { { status = 400, body = "bad" }, { status = 409, body = T } })
      proc.run_cycle()
      clock.advance(180)
      assert.equal(2, #bus:calls("create"))
      assert.same({ "Error while creating outage ticket for device VC1 that belongs to client 9994 in PRODUCTION " ..
        "environment: Error 400 - bad" }, bus.slack)
    end)

    it("27: two faulty DiGi links, first reboot 200, second 400", function()
      local bus, proc = setup()
      bus:on("reboot", { { status = 200 }, { status = 400, body = "nope" } })
      local n = proc.digi_reboot(item("CONNECTED", { { "GE1", "DISCONNECTED" }, { "GE3", "DISCONNECTED" } }), T, "VC1")
      assert.equal(1, n)
      assert.equal(1, #bus:calls("note"))
      assert.matches("\nInterface: GE1\n", bus:calls("note")[1].note, 1, true)
      assert.equal(2, #bus.slack)
      assert.is_true(has_prefix(bus.slack, "DiGi reboot started for faulty edge"))
      assert.equal("Error while attempting a DiGi reboot for ticket 5262293 in PRODUCTION environment: Error 400 - nope",
        bus.slack[2])
    end)

    local function digi_note(age, interface)
      return { noteValue = "#*Automation Engine*#\nOffline DiGi interface identified for serial: VC1\nInterface: " ..
        (interface or "GE1") .. "\nAutomatic reboot attempt started.", serviceNumber = { "VC1" },
        createdDate = time.iso(time.now() - age, "US/Eastern", { precision = "ms" }) }
    end

    it("29: 409, GE1 DISCONNECTED, DiGi note 31 min old -> forwarded to the Wireless team", function()
      local bus, proc = setup()
      bus:on("create", { status = 409, body = T })
      bus:on("details", details({ digi_note(31 * 60) }))
      proc.create_ticket(item("CONNECTED", { { "GE1", "DISCONNECTED" } }))
      assert.same({ "create", "details", "change_work", "note", "slack" }, bus:names())
      assert.same({ service_number = "VC1", ticket_id = T, detail_id = 2746937,
        queue_name = "Wireless Repair Intervention Needed" }, bus:calls("change_work")[1])
      assert.is_nil(bus:calls("note")[1].service_numbers)
      assert.equal("#*Automation Engine*#\nDiGi reboot failed\nMoving task to: Wireless Repair Intervention Needed\n" ..
        "TimeStamp: 2021-03-15 14:05:12-04:00", bus:calls("note")[1].note)
      assert.same({ "Forwarding ticket 5262293 to Wireless team" }, bus.slack)
    end)

    it("30: 29 min old, an existing wireless note, or no DiGi note -> nothing", function()
      local wireless = { noteValue = "x Wireless Repair Intervention Needed", serviceNumber = { "VC1" }, createdDate = "z" }
      for _, notes in ipairs({ { digi_note(29 * 60) }, { digi_note(3600), wireless }, {}, { { noteValue = json.null,
        serviceNumber = { "VC1" } } } }) do
        local bus, proc = setup()
        bus:on("create", { status = 409, body = T })
        bus:on("details", details(notes))
        proc.create_ticket(item("CONNECTED", { { "GE1", "DISCONNECTED" } }))
        assert.equal(0, #bus:calls("change_work"))
        assert.same({}, bus.slack)
      end
    end)

    it("31: change-work 500 -> no note, no Slack beyond the error; the next DiGi link is examined", function()
      local bus, proc = setup()
      bus:on("create", { status = 409, body = T })
      bus:on("details", details({ digi_note(3600, "GE1") }))
      bus:on("change_work", { status = 500, body = "err" })
      -- GE3 is faulty too, but the DiGi note names GE1: only GE1 is forwarded (and fails)
      proc.create_ticket(item("CONNECTED", { { "GE1", "DISCONNECTED" }, { "GE3", "DISCONNECTED" } }))
      assert.equal(1, #bus:calls("change_work"))
      assert.equal(0, #bus:calls("note"))
      assert.same({ "Error while changing task result for ticket 5262293 in PRODUCTION environment: Error 500 - err" },
        bus.slack)
    end)
  end)

  describe("autoresolve (cases 32-39)", function()
    local T = 777
    local function item()
      return { cached_info = entry(H1, 1, 1, "VC1"), status = {} }
    end
    local function ticket(by, created)
      return { status = 200, body = { { ticketID = T, createdBy = by or "Intelygenz Ai",
        createDate = created or "3/15/2021 5:31:54 PM" } } }
    end
    local function details(status, notes)
      return { status = 200, body = { ticketDetails = { { detailID = 88, detailValue = "VC1", detailStatus = status or "I" } },
        ticketNotes = notes or {} } }
    end
    local WL = { VC1 = true }

    it("32: serial not whitelisted -> no Bruin request", function()
      local bus, proc = setup()
      assert.equal("not_whitelisted", proc.autoresolve(item(), {}))
      assert.same({}, bus:names())
    end)

    it("33: tickets non-2xx or empty -> stop; not created by the Automation Engine -> no details", function()
      local bus, proc = setup()
      bus:on("tickets", { status = 500, body = "x" })
      assert.equal("tickets_failed", proc.autoresolve(item(), WL))
      assert.equal("Error while retrieving tickets with any status of ['New', 'InProgress', 'Draft'], with ticket topic " ..
        "VOO, service number VC1 and belonging to client 9994 in PRODUCTION environment: Error 500 - x", bus.slack[1])
      bus:on("tickets", { status = 200, body = {} })
      assert.equal("no_ticket", proc.autoresolve(item(), WL))
      bus:on("tickets", ticket("InterMapper Service"))
      assert.equal("not_ours", proc.autoresolve(item(), WL))
      assert.equal(0, #bus:calls("details"))
      assert.same({ client_id = 9994, ticket_statuses = { "New", "InProgress", "Draft" }, ticket_topic = "VOO",
        category = "SD-WAN", service_number = "VC1" }, bus:calls("tickets")[1])
    end)

    it("34: details non-2xx -> stop", function()
      local bus, proc = setup()
      bus:on("tickets", ticket())
      bus:on("details", { status = 500, body = "x" })
      assert.equal("details_failed", proc.autoresolve(item(), WL))
    end)

    local function note(kind, age, serial)
      local text = ({ reopen = "#*Automation Engine*#\nRe-opening ticket.", triage = "#*Automation Engine*#\nTriage (VeloCloud)\n",
        auto = "#*Automation Engine*#\nAuto-resolving detail for serial: VC1" })[kind]
      return { noteValue = text, serviceNumber = { serial or "VC1" },
        createdDate = time.iso(time.now() - age, "US/Eastern", { precision = "ms" }) }
    end

    it("35/36: the last-outage window", function()
      local bus, proc = setup()
      bus:on("tickets", ticket())
      bus:on("details", details("I", { note("reopen", 59 * 60) }))
      assert.equal("resolved", proc.autoresolve(item(), WL))
      bus:on("details", details("I", { note("reopen", 61 * 60), note("triage", 300) }))
      assert.equal("too_old", proc.autoresolve(item(), WL))
      bus:on("details", details("I", { note("triage", 7200), note("triage", 600) }))
      assert.equal("too_old", proc.autoresolve(item(), WL))
    end)

    it("37: three autoresolve notes for the serial stop it; two plus one of another serial do not", function()
      local bus, proc = setup()
      bus:on("tickets", ticket(nil, "3/15/2021 5:31:54 PM"))
      bus:on("details", details("I", { note("auto", 10), note("auto", 20), note("auto", 30) }))
      assert.equal("max_autoresolves", proc.autoresolve(item(), WL))
      bus:on("details", details("I", { note("auto", 10), note("auto", 20), note("auto", 30, "VC2") }))
      assert.equal("resolved", proc.autoresolve(item(), WL))
    end)

    it("38: detail already resolved, or dev -> stop before resolving", function()
      local bus, proc = setup()
      bus:on("tickets", ticket())
      bus:on("details", details("R"))
      assert.equal("already_resolved", proc.autoresolve(item(), WL))
      local bus2, proc2 = setup("dev")
      bus2:on("tickets", ticket())
      bus2:on("details", details("I"))
      assert.equal("not_production", proc2.autoresolve(item(), WL))
      assert.equal(0, #bus2:calls("resolve"))
    end)

    it("39: resolve 500 -> no note, no Slack; 200 -> note and Slack", function()
      local bus, proc = setup()
      bus:on("tickets", ticket())
      bus:on("details", details("I"))
      bus:on("resolve", { status = 500, body = "no" })
      assert.equal("resolve_failed", proc.autoresolve(item(), WL))
      assert.equal(0, #bus:calls("note"))
      assert.same({ "Error while resolving ticket 777 in PRODUCTION environment: Error 500 - no" }, bus.slack)
      bus:on("resolve", { status = 200, body = "ok" })
      assert.equal("resolved", proc.autoresolve(item(), WL))
      assert.same({ ticket_id = T, detail_id = 88 }, bus:calls("resolve")[2])
      assert.equal("#*Automation Engine*#\nAuto-resolving detail for serial: VC1\nTimeStamp: 2021-03-15 14:05:12-04:00",
        bus:calls("note")[1].note)
      assert.equal("Outage ticket 777 was autoresolved. Details at https://app.bruin.com/t/777", bus.slack[2])
    end)
  end)

  describe("the unit over NATS (case 1)", function()
    it("runs a cycle at start and every 600 s; no triage job", function()
      local seen = {}
      local sub = assert(nats.serve("customer.cache.get", function(req)
        seen[#seen + 1] = { at = time.now(), body = req.body }
        return { status = 404, body = "No edges were found for the specified filters" }
      end))
      local tsub = assert(nats.serve("bruin.ticket.request", function()
        seen[#seen + 1] = { triage = true }
        return { status = 200, body = {} }
      end))
      nats.flush(2)
      local t0 = time.now()
      engine.start_unit({ name = "som-spec", script = "scripts/usecases/service_outage_monitor.lua",
        config = { environment = "dev", velocloud_hosts = H1, velocloud_hosts_filter = "[]", lease = 0,
          triage = 0 } })
      clock.advance(0)
      clock.advance(600)
      engine.stop_unit("som-spec")
      sub:unsubscribe()
      tsub:unsubscribe()
      assert.equal(2, #seen)
      assert.equal(t0, seen[1].at)
      assert.equal(t0 + 600, seen[2].at)
      assert.same({ [H1] = {} }, seen[1].body.filter)
    end)

    it("runs the outage path over NATS with the real lib clients", function()
      local seen = {}
      local function serve(s, fn) return assert(nats.serve(s, function(req) seen[#seen + 1] = s; return fn(req) end)) end
      local H = H1
      local subs = {
        serve("customer.cache.get", function() return { status = 200, body = { { edge = { host = H, enterprise_id = 1, edge_id = 1 },
          serial_number = "VC1", logical_ids = { { interface_name = "GE1", logical_id = "00:04:2d:00:0000" } },
          bruin_client_info = { client_id = 9994 } } } } end),
        serve("get.links.with.edge.info", function() return { status = 200, body = { { host = H, enterpriseId = 1, edgeId = 1,
          edgeState = "OFFLINE", edgeSerialNumber = "VC1", edgeName = "E", interface = "GE1", linkState = "DISCONNECTED" } } } end),
        serve("bruin.ticket.creation.outage.request", function() return { status = 200, body = 42 } end),
        serve("alert.request.event.edge", function() return { status = 200, body = { { event = "EDGE_DOWN", category = "EDGE",
          eventTime = "2021-03-15T17:00:00.000Z", message = "x" } } } end),
        serve("bruin.ticket.details.request", function() return { status = 200, body = { ticketDetails = { { detailID = 1,
          detailValue = "VC1" } }, ticketNotes = {} } } end),
        serve("bruin.ticket.note.append.request", function() return { status = 200, body = "ok" } end),
        serve("digi.reboot", function() return { status = 200, body = "ok" } end),
        serve("notification.slack.request", function() return { status = 200 } end),
      }
      nats.flush(2)
      engine.start_unit({ name = "live", script = "scripts/usecases/service_outage_monitor.lua",
        config = { environment = "production", velocloud_hosts = H, velocloud_hosts_filter = "[]", lease = 0 } })
      clock.advance(0)
      clock.advance(180)
      engine.stop_unit("live")
      for _, s in ipairs(subs) do s:unsubscribe() end
      assert.same({ "customer.cache.get", "get.links.with.edge.info", "get.links.with.edge.info",
        "bruin.ticket.creation.outage.request", "notification.slack.request", "alert.request.event.edge",
        "bruin.ticket.details.request", "bruin.ticket.note.append.request", "digi.reboot",
        "bruin.ticket.note.append.request", "notification.slack.request" }, seen)
    end)
  end)
end)
