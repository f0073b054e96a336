-- luacheck: max line length 135
-- Pure parts of service-outage-monitor: config, outage decision, notes
-- (byte for byte), splitting, windows, DiGi links, triage detail split.
local logic = require "usecases.outage.logic"
local config = require "usecases.outage.config"
local time = require "ae.time"
local json = require "ae.json"

local function env(t)
  return function(k) return t[k] end
end

local function status(state, links)
  local s = { host = "mettel.velocloud.net", enterpriseId = 1, edgeId = 1, edgeName = "Big Boss", edgeState = state,
    edgeSerialNumber = "VC1234567", links = {} }
  for i, l in ipairs(links or {}) do
    s.links[i] = { interface = l[1], linkState = l[2], displayName = l[3] }
  end
  return s
end

describe("outage config (§1)", function()
  it("pairs hosts with JSON filters, spaces removed", function()
    local cfg = config.load({}, env({ VELOCLOUD_HOSTS = "mettel.velocloud.net: metvco02.mettel.net",
      VELOCLOUD_HOSTS_FILTER = "[1, 2, 3]:[]" }))
    assert.same({ 1, 2, 3 }, cfg.filter["mettel.velocloud.net"])
    assert.same({}, cfg.filter["metvco02.mettel.net"])
    assert.same({ "mettel.velocloud.net", "metvco02.mettel.net" }, cfg.hosts)
    assert.equal('{"metvco02.mettel.net":[]}', json.encode({ ["metvco02.mettel.net"] = cfg.filter["metvco02.mettel.net"] }))
  end)

  it("fails with the original's message on a bad filter or fewer filters than hosts", function()
    local ok, err = pcall(config.load, {}, env({ VELOCLOUD_HOSTS = "a:b", VELOCLOUD_HOSTS_FILTER = "[1]" }))
    assert.is_false(ok)
    assert.matches("^Error loading velocloud hosts and filters: ", err)
    ok, err = pcall(config.load, {}, env({ VELOCLOUD_HOSTS = "a", VELOCLOUD_HOSTS_FILTER = "nope" }))
    assert.is_false(ok)
    assert.matches("^Error loading velocloud hosts and filters: ", err)
  end)

  it("has the original's defaults and takes overrides from the unit config, then the environment", function()
    local cfg = config.load({}, env({}))
    assert.equal(600, cfg.outage_interval)
    assert.equal(180, cfg.quarantine)
    assert.equal(600, cfg.triage_interval)
    assert.equal(3600, cfg.autoresolve_window)
    assert.equal(1800, cfg.digi_reboot_window)
    assert.equal(5, cfg.autoresolve_semaphore)
    assert.equal(3, cfg.max_autoresolves)
    assert.equal(15, cfg.event_limit)
    assert.equal(1, cfg.triage_semaphore)
    assert.equal("outage", cfg.mode)
    assert.equal("dev", cfg.environment)
    assert.same({ { host = "mettel.velocloud.net", enterprise_id = 170, edge_id = 3195 } }, cfg.blacklisted_edges)
    cfg = config.load({ quarantine = 5 }, env({ OUTAGE_QUARANTINE_SECONDS = "7", OUTAGE_MONITOR_INTERVAL_SECONDS = "30",
      ENABLE_TRIAGE_MONITORING = "1" }))
    assert.equal(5, cfg.quarantine)
    assert.equal(30, cfg.outage_interval)
    assert.equal("triage", cfg.mode)
  end)

  it("refuses bad numbers with a clear message", function()
    local ok, err = pcall(config.load, {}, env({ OUTAGE_QUARANTINE_SECONDS = "soon" }))
    assert.is_false(ok)
    assert.matches("quarantine %(OUTAGE_QUARANTINE_SECONDS%)", err)
    ok, err = pcall(config.load, {}, env({ ENABLE_TRIAGE_MONITORING = "2" }))
    assert.is_false(ok)
    assert.matches("ENABLE_TRIAGE_MONITORING", err)
  end)
end)

describe("outage decision (§4.3, cases 9-12)", function()
  it("CONNECTED with STABLE links is healthy", function()
    assert.is_false(logic.is_outage(status("CONNECTED", { { "GE1", "STABLE" } })))
  end)
  it("CONNECTED with one DISCONNECTED link is an outage", function()
    assert.is_true(logic.is_outage(status("CONNECTED", { { "GE1", "STABLE" }, { "GE2", "DISCONNECTED" } })))
  end)
  it("OFFLINE with STABLE links is an outage", function()
    assert.is_true(logic.is_outage(status("OFFLINE", { { "GE1", "STABLE" } })))
  end)
  it("DEGRADED with UNSTABLE links is healthy (exact strings)", function()
    assert.is_false(logic.is_outage(status("DEGRADED", { { "GE1", "UNSTABLE" } })))
    assert.is_false(logic.is_outage(status("offline", { { "GE1", "disconnected" } })))
  end)

  it("groups links by edge, skipping null/0 edge ids, first link gives the edge fields", function()
    local list, index = logic.group_links_by_edge({
      { host = "h", enterpriseId = 1, edgeId = 7, edgeName = "A", edgeState = "OFFLINE", interface = "GE1",
        linkState = "STABLE" },
      { host = "h", enterpriseId = 1, edgeId = 0, interface = "GE9" },
      { host = "h", enterpriseId = 1, edgeId = json.null, interface = "GE9" },
      { host = "h", enterpriseId = 1, edgeId = 8, edgeName = "B", interface = "GE1" },
      { host = "h", enterpriseId = 1, edgeId = 7, edgeName = "ignored", interface = "GE2", linkState = "DISCONNECTED" },
    })
    assert.equal(2, #list)
    assert.equal("A", list[1].edgeName)
    assert.same({ "GE1", "GE2" }, { list[1].links[1].interface, list[1].links[2].interface })
    assert.equal(list[2], index[logic.edge_key("h", 1, 8)])
  end)
end)

describe("notes (§4.5.2, §4.7, §4.8, §6)", function()
  local now = time.parse("2021-03-15T18:05:12.345678Z")

  it("Python time texts in US/Eastern, fraction only when not zero", function()
    assert.equal("2021-03-15 14:05:12.345678-04:00", logic.py_time(now))
    assert.equal("2021-03-15 13:41:30-04:00", logic.eastern("2021-03-15T17:41:30.000Z"))
    assert.equal("2021-01-15 12:41:30-05:00", logic.eastern("2021-01-15T17:41:30.000Z"))
    assert.equal("2021-03-08 18:05:12.345678", logic.py_naive(now - 7 * 86400))
    assert.equal("2021-03-15 18:05:12.345678+00:00", logic.py_time(now, "UTC"))
  end)

  it("outage causes (case 25)", function()
    assert.equal("Outage causes: Edge was OFFLINE.", logic.outage_causes(status("OFFLINE", { { "GE1", "STABLE" } })))
    assert.equal("Outage causes: Could not determine causes.", logic.outage_causes(status("CONNECTED", {})))
    assert.equal("Outage causes: Edge was OFFLINE. Link GE1 was DISCONNECTED. Link GE2 was DISCONNECTED.",
      logic.outage_causes(status("OFFLINE", { { "GE1", "DISCONNECTED" }, { "GE2", "DISCONNECTED" },
        { "GE1", "DISCONNECTED" } })))
  end)

  it("reopen, autoresolve, DiGi notes byte for byte", function()
    assert.equal("#*Automation Engine*#\nRe-opening ticket.\nOutage causes: Edge was OFFLINE.\n" ..
      "TimeStamp: 2021-03-15 14:05:12.345678-04:00", logic.reopen_note(status("OFFLINE"), now))
    assert.equal("#*Automation Engine*#\nAuto-resolving detail for serial: VC1\nTimeStamp: 2021-03-15 14:05:12.345678-04:00",
      logic.autoresolve_note("VC1", now))
    assert.equal("#*Automation Engine*#\nOffline DiGi interface identified for serial: VC1\nInterface: GE1\n" ..
      "Automatic reboot attempt started.\nTimeStamp: 2021-03-15 14:05:12.345678-04:00",
      logic.digi_reboot_note("VC1", "GE1", now))
    assert.equal("#*Automation Engine*#\nDiGi reboot failed\nMoving task to: Wireless Repair Intervention Needed\n" ..
      "TimeStamp: 2021-03-15 14:05:12.345678-04:00", logic.digi_failed_note(now))
  end)

  it("the initial triage note matches the spec's example", function()
    local s = status("OFFLINE", { { "GE1", "DISCONNECTED", "Comcast 1" }, { "GE2", "STABLE", "" } })
    local events = logic.sort_events({
      { event = "LINK_DEAD", category = "NETWORK", eventTime = "2021-03-15T17:40:00.000Z", message = "Link GE1 is now DEAD" },
      { event = "EDGE_DOWN", category = "EDGE", eventTime = "2021-03-15T17:41:30.000Z", message = "Edge is down" },
    })
    local base = "https://mettel.velocloud.net/#!/operator/customer/1/monitor"
    local expected = table.concat({
      "#*Automation Engine*#", "Triage (VeloCloud)", "Orchestrator Instance: mettel.velocloud.net",
      "Edge Name: Big Boss",
      "Links: [Edge|" .. base .. "/edge/1/] - [QoE|" .. base .. "/edge/1/qoe/] - [Transport|" .. base ..
        "/edge/1/links/] - [Events|" .. base .. "/events/]",
      "Edge Status: OFFLINE", "Serial: VC1234567", "Interface GE1", "Interface GE1 Label: Comcast 1",
      "Interface GE1 Status: DISCONNECTED", "Interface GE2", "Interface GE2 Label", "Interface GE2 Status: STABLE",
      "Last Edge Online: None", "Last Edge Offline: 2021-03-15 13:41:30-04:00", "Last GE1 Interface Online: None",
      "Last GE1 Interface Offline: 2021-03-15 13:40:00-04:00", "Last GE2 Interface Online: None",
      "Last GE2 Interface Offline: None",
    }, "\n")
    assert.equal(expected, logic.triage_note({ host = "mettel.velocloud.net", enterprise_id = 1, edge_id = 1 }, s, events))
  end)

  it("duplicate interfaces: one block at the first position with the later values; null renders None", function()
    local s = status("CONNECTED", { { "GE1", "STABLE", "a" }, { "GE2", "STABLE", "b" }, { "GE1", "DISCONNECTED", "c" } })
    s.edgeName = json.null
    local note = logic.triage_note({ host = "h", enterprise_id = 1, edge_id = 2 }, s, {})
    assert.matches("Edge Name: None\n", note, 1, true)
    assert.matches("Interface GE1\nInterface GE1 Label: c\nInterface GE1 Status: DISCONNECTED\nInterface GE2\n", note,
      1, true)
    local _, n = note:gsub("Last GE1 Interface Online", "")
    assert.equal(1, n)
  end)

  it("events note layout (§6.2) with Device lines and the oldest Timestamp", function()
    local note = logic.events_note({
      { event = "EDGE_UP", category = "EDGE", eventTime = "2021-03-15T17:45:00.000Z", message = "x" },
      { event = "LINK_ALIVE", category = "NETWORK", eventTime = "2021-03-15T17:44:00.000Z",
        message = "Interface GE2 is up" },
      { event = "LINK_DEAD", category = "NETWORK", eventTime = "2021-03-15T17:43:00.000Z", message = "odd text" },
    })
    assert.equal(table.concat({ "#*Automation Engine*#", "Triage (VeloCloud)", "",
      "New event: EDGE_UP", "Device: Edge", "Event time: 2021-03-15 13:45:00-04:00", "",
      "New event: LINK_ALIVE", "Device: Interface GE2", "Event time: 2021-03-15 13:44:00-04:00", "",
      "New event: LINK_DEAD", "Device: Interface None", "Event time: 2021-03-15 13:43:00-04:00", "",
      "Timestamp: 2021-03-15 13:43:00-04:00" }, "\n"), note)
  end)

  it("splits a note of >= 1500 characters into pages (§6.3, case 18), positional last line", function()
    assert.same({ "short" }, logic.split_note("short"))
    local lines = { "#*Automation Engine*#", "Triage (VeloCloud)" }
    for i = 1, 40 do lines[#lines + 1] = string.format("Line %02d ", i) .. string.rep("é", 40) end
    lines[#lines + 1] = lines[3] -- last line repeats an earlier text (Notes #9)
    local note = table.concat(lines, "\n")
    local n = utf8.len(note)
    assert.is_true(n >= 1500)
    local pages = logic.split_note(note)
    local total = math.ceil(n / 1000)
    assert.equal(total, #pages)
    for i, p in ipairs(pages) do
      assert.equal("Triage note: " .. i .. "/" .. total, p:match("([^\n]*)$"))
    end
    assert.equal(1, pages[2]:find("#*Automation Engine*#\nTriage (VeloCloud)\n", 1, true))
    -- every line is delivered once
    local all = {}
    for _, p in ipairs(pages) do
      for line in (p .. "\n"):gmatch("([^\n]*)\n") do all[#all + 1] = line end
    end
    local body = table.concat(all, "\n")
    for i = 3, #lines do assert.is_truthy(body:find(lines[i], 1, true)) end
    assert.is_truthy(pages[#pages]:find(lines[#lines] .. "\nTriage note: ", 1, true))
  end)

  it("recognises notes; null noteValue never matches (Notes #6)", function()
    assert.is_true(logic.is_triage_note({ noteValue = "#*Automation Engine*#\nTriage (VeloCloud)\nx" }))
    assert.is_false(logic.is_triage_note({ noteValue = "#*Automation Engine*#\nTriage\nx" }))
    assert.is_false(logic.is_triage_note({ noteValue = json.null }))
    assert.is_true(logic.is_reopen_note({ noteValue = "#*Automation Engine*#\nRe-opening ticket." }))
    assert.is_false(logic.note_contains({ noteValue = json.null }, "DiGi"))
    assert.equal("GE1", logic.digi_note_interface({ noteValue = "#*Automation Engine*#\nOffline DiGi\n  Interface: GE1 \n" }))
    assert.equal("", logic.digi_note_interface({ noteValue = json.null }))
  end)
end)

describe("DiGi links (§4.7, case 26)", function()
  it("00:04:2d entries first, then 00:27:04", function()
    local links = logic.digi_links({ { interface_name = "test", logical_id = "123" },
      { interface_name = "GE1", logical_id = "00:27:04:123" }, { interface_name = "GE3", logical_id = "00:27:04:122" },
      { interface_name = "GE2", logical_id = "00:04:2d:123" } })
    local names = {}
    for i, l in ipairs(links) do names[i] = l.interface_name end
    assert.same({ "GE2", "GE1", "GE3" }, names)
  end)
  it("a DiGi link is faulty when its first link is DISCONNECTED", function()
    local s = status("CONNECTED", { { "GE1", "DISCONNECTED" }, { "GE1", "STABLE" }, { "GE2", "STABLE" } })
    assert.is_true(logic.is_digi_link_faulty(s, "GE1"))
    assert.is_false(logic.is_digi_link_faulty(s, "GE2"))
    assert.is_false(logic.is_digi_link_faulty(s, "GE3"))
  end)
end)

describe("autoresolve window (§4.8, cases 35-37)", function()
  local now = time.parse("2021-03-15T18:00:00Z")
  local function note(kind, age, serial)
    local text = ({ reopen = "#*Automation Engine*#\nRe-opening ticket.", triage = "#*Automation Engine*#\nTriage (VeloCloud)\n",
      auto = "#*Automation Engine*#\nAuto-resolving detail for serial: S" })[kind]
    return { noteValue = text, serviceNumber = { serial or "S" }, createdDate = time.iso(now - age, "US/Eastern") }
  end
  it("latest reopen note 59 min old proceeds; 61 min stops even with a recent triage note", function()
    assert.is_true(logic.was_last_outage_recent({ note("reopen", 7200), note("reopen", 59 * 60) }, "S", nil, now, 3600))
    assert.is_false(logic.was_last_outage_recent({ note("reopen", 61 * 60), note("triage", 300) }, "S", nil, now, 3600))
  end)
  it("no reopen note: the earliest triage note counts", function()
    assert.is_false(logic.was_last_outage_recent({ note("triage", 600), note("triage", 7200) }, "S", nil, now, 3600))
    assert.is_true(logic.was_last_outage_recent({ note("triage", 600) }, "S", nil, now, 3600))
  end)
  it("no note: the ticket createDate as UTC; exactly 3600 s is still resolvable", function()
    assert.is_true(logic.was_last_outage_recent({}, "S", "3/15/2021 5:00:00 PM", now, 3600))
    assert.is_false(logic.was_last_outage_recent({}, "S", "3/15/2021 4:59:59 PM", now, 3600))
    assert.is_false(logic.was_last_outage_recent({ note("reopen", 10, "OTHER") }, "S", "3/15/2021 4:59:59 PM", now, 3600))
  end)
  it("counts autoresolve notes of the serial only", function()
    assert.equal(3, logic.autoresolve_count({ note("auto", 1), note("auto", 2), note("auto", 3) }, "S"))
    assert.equal(2, logic.autoresolve_count({ note("auto", 1), note("auto", 2), note("auto", 3, "T") }, "S"))
  end)
end)

describe("triage details split (§5.2, cases 45-47)", function()
  local triage = "#*Automation Engine*#\nTriage (VeloCloud)\n"
  it("keeps monitored details, filters notes plainly, splits with/without triage", function()
    local monitored = { S1 = true, S2 = true }
    local tickets = logic.filter_ticket_details({
      { ticket_id = 1, ticket_details = { { detailID = 11, detailValue = "S1" }, { detailID = 12, detailValue = "S2" },
        { detailID = 13, detailValue = "X" } }, ticket_notes = {
        { noteValue = json.null, serviceNumber = { "S1" } },
        { noteValue = "Triage\nx", serviceNumber = { "S2" } },
        { noteValue = triage, serviceNumber = { "S1", "X" }, createdDate = "a" },
        { noteValue = triage, serviceNumber = { "X" } },
        { noteValue = triage, serviceNumber = { "S2", "S3" } }, -- S2 monitored
      } },
      { ticket_id = 2, ticket_details = { { detailID = 21, detailValue = "X" } }, ticket_notes = {} },
    }, monitored)
    assert.equal(1, #tickets)
    assert.equal(2, #tickets[1].ticket_details)
    local notes = logic.filter_triage_notes(tickets[1].ticket_notes, monitored)
    assert.equal(2, #notes)
    assert.same({ "S1" }, notes[1].serviceNumber)
    tickets[1].ticket_notes = { notes[1] }
    local with, without = logic.split_details(tickets)
    assert.equal(1, #with)
    assert.equal("S1", with[1].ticket_detail.detailValue)
    assert.equal(1, #without)
    assert.equal("S2", without[1].ticket_detail.detailValue)
  end)
end)

describe("slim customer-cache entries (memory, repo.customer_cache)", function()
  local function entry(id, client, ids)
    return { edge = { host = "h", enterprise_id = 1, edge_id = id }, serial_number = "VC" .. id,
      last_contact = "2026-01-01T00:00:00.000Z", bruin_client_info = { client_id = client, client_name = "C" .. client },
      logical_ids = ids }
  end
  it("keeps what the service reads, shares client info, keeps only DiGi links", function()
    local slim = logic.cache_entry_slimmer()
    local digi = { interface_name = "GE2", logical_id = "00:04:2d:01:02:03:0000" }
    local a = slim(entry(1, 7, { { interface_name = "GE1", logical_id = "aa:bb" }, digi }))
    local b = slim(entry(2, 7, { { interface_name = "GE1", logical_id = "cc:dd" } }))
    local c = slim(entry(3, 8, json.null))
    assert.same({ host = "h", enterprise_id = 1, edge_id = 1 }, a.edge)
    assert.equal("VC1", a.serial_number)
    assert.is_nil(a.last_contact)
    assert.same({ client_id = 7, client_name = "C7" }, a.bruin_client_info)
    assert.equal(a.bruin_client_info, b.bruin_client_info) -- one table per client
    assert.are_not.equal(a.bruin_client_info, c.bruin_client_info)
    assert.same({ digi }, a.logical_ids)
    assert.same(logic.digi_links(a.logical_ids), a.logical_ids) -- digi_links of the slim list: the same
    assert.same({}, b.logical_ids)
    assert.equal(b.logical_ids, c.logical_ids) -- the shared empty list
  end)
  it("passes anything that is not an entry through unchanged", function()
    local slim = logic.cache_entry_slimmer()
    assert.equal("x", slim("x"))
    local odd = { serial_number = "VC9" }
    assert.equal(odd, slim(odd))
  end)
end)

describe("outage_scanner (repo.link_statuses' first pass)", function()
  -- random links records of a few edges, in random order, with the shapes the grouper skips
  local function records(seed)
    math.randomseed(seed)
    local out = {}
    for _ = 1, math.random(0, 40) do
      local kind = math.random(1, 20)
      if kind == 1 then
        out[#out + 1] = "not a record"
      elseif kind == 2 then
        out[#out + 1] = { host = "h", enterpriseId = 1, edgeId = json.null, linkState = "DISCONNECTED" }
      else
        out[#out + 1] = { host = "h", enterpriseId = math.random(1, 2), edgeId = math.random(1, 6),
          edgeState = ({ "CONNECTED", "OFFLINE", "NEVER_ACTIVATED" })[math.random(1, 3)],
          linkState = ({ "STABLE", "DISCONNECTED", "UNSTABLE" })[math.random(1, 3)] }
      end
    end
    return out
  end
  -- the records of each edge one after the other (as VeloCloud lists them), or in any order
  local function contiguous(list)
    local order, by = {}, {}
    for _, r in ipairs(list) do
      local k = type(r) == "table" and tostring(r.enterpriseId) .. "/" .. tostring(r.edgeId) or r
      if not by[k] then
        by[k] = {}
        order[#order + 1] = k
      end
      table.insert(by[k], r)
    end
    local out = {}
    for _, k in ipairs(order) do
      for _, r in ipairs(by[k]) do out[#out + 1] = r end
    end
    return out
  end

  it("agrees with is_outage and with link_grouper's statuses (2 x 500 random replies)", function()
    local second_passes = 0
    for seed = 1, 1000 do
      local list = records(seed)
      if seed % 2 == 0 then list = contiguous(list) end
      local g, s = logic.link_grouper(), logic.outage_scanner()
      for _, r in ipairs(list) do
        g.add(r)
        s.add(r)
      end
      local again = s.finish()
      if again then -- what repo.link_statuses does: those edges grouped from the records again
        second_passes = second_passes + 1
        local g2 = logic.link_grouper(again)
        for _, r in ipairs(list) do g2.add(r) end
        for key, st in pairs(g2.index) do s.statuses[key] = st end
      end
      for key, st in pairs(g.index) do
        local down = logic.is_outage(st)
        assert.equal(down, s.index[key], "seed " .. seed)
        assert.equal(down or nil, s.outage[key], "seed " .. seed)
        if down then
          assert.same(st, s.statuses[key], "seed " .. seed)
        else
          assert.is_nil(s.statuses[key], "seed " .. seed)
        end
      end
      for key in pairs(s.index) do assert.is_not_nil(g.index[key], "seed " .. seed) end
      if seed % 2 == 0 then assert.is_nil(again, "contiguous records need no second pass, seed " .. seed) end
    end
    assert.is_true(second_passes > 0) -- the shuffled replies did exercise the second pass
  end)
  it("HEALTHY is a status that is not in outage and cannot be changed", function()
    assert.is_false(logic.is_outage(logic.HEALTHY))
    assert.has_error(function() logic.HEALTHY.edgeState = "OFFLINE" end)
    assert.has_error(function() logic.HEALTHY.links[1] = { linkState = "DISCONNECTED" } end)
    assert.is_false(logic.is_outage(logic.HEALTHY))
  end)
end)
