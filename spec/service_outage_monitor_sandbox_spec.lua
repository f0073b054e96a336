-- luacheck: max line length 140
-- service-outage-monitor, outage process, end to end through the real stack:
-- the real unit, the real capability units (customer-cache, bruin-bridge,
-- velocloud-bridge, digi-bridge, notifier) over NATS, and the sandbox
-- simulators over HTTP. Assertions are on what the simulators recorded: the
-- Bruin repair call and ticket state (notes byte for byte), the Slack
-- messages, the DiGi reboots. The engine runs on the manual clock, frozen at
-- 2021-03-15T18:05:12Z (US/Eastern -04:00) once the customer cache is built.
local clock = require "ae.clock"
local engine = require "ae.engine"
local outage = require "spec.helpers.outage_sandbox"

local H1, SETTLE, APP = outage.H1, outage.SETTLE, outage.APP
local UNIT = "som-sandbox"
local eastern, edge_text, has = outage.eastern, outage.edge_text, outage.has
local is_digi, plain, triage_note = outage.is_digi, outage.plain, outage.triage_note

local box = outage.new(UNIT)
local post, set_edge, take_down, fixture = box.post, box.set_edge, box.take_down, box.fixture
local slack_messages, ticket, notes_of, pick = box.slack_messages, box.ticket, box.notes_of, box.pick
local downed = box.downed
local env

local function start_monitor(environment)
  assert(engine.start_unit { name = UNIT, script = "scripts/usecases/service_outage_monitor.lua",
    config = { environment = environment or "production", environment_name = "sandbox-spec",
      velocloud_hosts = H1, velocloud_hosts_filter = "[]", lease = 0 } })
end

describe("service-outage-monitor on the sandbox (real capabilities, simulators)", function()
  setup(function() env = box.setup() end)
  teardown(box.teardown)
  before_each(box.before_each)
  after_each(box.after_each)

  it("outage -> re-check 180 s later -> ticket created, Slack, initial triage note, DiGi reboots", function()
    local digi = pick(is_digi, 1)
    local plain_edge = pick(plain, 1)
    local at = clock.now()
    take_down(digi)
    take_down(plain_edge)
    start_monitor()
    clock.advance(0, SETTLE)
    -- the first pass only schedules the re-check
    assert.same({}, env.calls("bruin", "^/api/Ticket/repair"))
    clock.advance(179, SETTLE)
    assert.same({}, env.calls("bruin", "^/api/Ticket/repair"))
    clock.advance(1, SETTLE)
    local repairs = env.calls("bruin", "^/api/Ticket/repair")
    assert.equal(2, #repairs)
    local bodies = {}
    for _, c in ipairs(repairs) do bodies[c.json.WTNs[1]] = c.json end
    for _, e in ipairs({ digi, plain_edge }) do
      assert.same({ ClientID = e.client_id, WTNs = { e.serial },
        RequestDescription = "Automation Engine -- Service Outage Trouble" }, bodies[e.serial])
    end
    -- the tickets the simulator created, one per serial, named in the Slack messages
    local slack = slack_messages()
    local created = {}
    for _, e in ipairs({ digi, plain_edge }) do
      local prefix = "Outage ticket created for faulty edge " .. edge_text(e) .. ". Ticket details at " .. APP
      for _, m in ipairs(slack) do
        if m:sub(1, #prefix) == prefix then created[e.serial] = tonumber(m:sub(#prefix + 1):match("^(%d+)%.$")) end
      end
      local T = created[e.serial]
      assert.is_not_nil(T, table.concat(slack, "\n"))
      assert.equal(e.serial, ticket(T).details[1].detailValue)
      local notes = notes_of(T)
      assert.equal("Request Description: Automation Engine -- Service Outage Trouble\n", notes[1])
      assert.equal(triage_note(e, at), notes[2])
    end
    -- DiGi: one reboot per DISCONNECTED DiGi link of the DiGi edge, none for the other edge
    local reboots = env.calls("digi", "RecoverDevice")
    assert.equal(#digi.links, #reboots)
    local T = created[digi.serial]
    for i, l in ipairs(digi.links) do
      local h = reboots[i].headers
      assert.equal(digi.serial, h.VeloSerial or h.veloserial)
      assert.equal(tostring(T), h.Ticket or h.ticket)
      assert.equal(l.logical_id, h.MAC or h.mac)
      assert.is_true(has(notes_of(T), "#*Automation Engine*#\nOffline DiGi interface identified for serial: " ..
        digi.serial .. "\nInterface: " .. l.interface .. "\nAutomatic reboot attempt started.\nTimeStamp: " ..
        eastern(at + 180)))
    end
    assert.is_true(has(slack, string.format("DiGi reboot started for faulty edge %s. Ticket details at %s%d.",
      edge_text(digi), APP, T)))
    assert.equal(1 + 1 + #digi.links, #notes_of(T))
    assert.equal(2, #notes_of(created[plain_edge.serial]))
  end)
  local function auto_note(S, t)
    return "#*Automation Engine*#\nAuto-resolving detail for serial: " .. S .. "\nTimeStamp: " .. eastern(t)
  end

  it("409 with a DiGi reboot note 31 min old -> change work to the Wireless queue, note, Slack", function()
    local e = pick(is_digi, 1)
    local at = clock.now()
    local T = fixture { client_id = e.client_id, service_number = e.serial, status = "In-Progress", created = at - 31 * 60,
      notes = { "#*Automation Engine*#\nOffline DiGi interface identified for serial: " .. e.serial .. "\nInterface: " ..
        e.links[1].interface .. "\nAutomatic reboot attempt started.\nTimeStamp: " .. eastern(at - 31 * 60) } }
    post("velocloud", "/_edges/" .. e.host .. "/" .. e.id, { links = { [e.links[1].interface] = "DISCONNECTED" } })
    downed[#downed + 1] = e
    start_monitor()
    clock.advance(0, SETTLE)
    clock.advance(180, SETTLE)
    assert.equal(1, #env.calls("bruin", "^/api/Ticket/repair"))
    local t = ticket(T)
    assert.equal("Wireless Repair Intervention Needed", t.details[1].currentTaskName)
    assert.equal("#*Automation Engine*#\nDiGi reboot failed\nMoving task to: Wireless Repair Intervention Needed\nTimeStamp: " ..
      eastern(at + 180), t.notes[2].noteValue)
    assert.equal(2, #t.notes)
    local slack = slack_messages()
    assert.is_true(has(slack, "Forwarding ticket " .. T .. " to Wireless team"), table.concat(slack, "\n"))
    assert.same({}, env.calls("digi", "RecoverDevice"))
  end)

  it("471 -> open request, Slack 'reopened' and the Re-opening note; 472 -> the note only", function()
    local a, b = pick(plain, 2)
    local at = clock.now()
    local T1, D1 = fixture { client_id = a.client_id, service_number = a.serial, status = "Resolved", no_unresolve = true,
      created = at - 86400 }
    local T2, D2 = fixture { client_id = b.client_id, service_number = b.serial, status = "Resolved", created = at - 86400 }
    take_down(a)
    take_down(b)
    start_monitor()
    clock.advance(0, SETTLE)
    clock.advance(180, SETTLE)
    local function causes(e)
      local parts = { "Outage causes: Edge was OFFLINE." }
      for _, l in ipairs(e.links) do parts[#parts + 1] = "Link " .. l.interface .. " was DISCONNECTED." end
      return table.concat(parts, " ")
    end
    local function reopen(e) return "#*Automation Engine*#\nRe-opening ticket.\n" .. causes(e) .. "\nTimeStamp: " .. eastern(at + 180) end
    local slack = slack_messages()
    local t1, t2 = ticket(T1), ticket(T2)
    -- 471: the monitor reopened the detail itself
    assert.equal("I", t1.details[1].detailStatus)
    assert.is_true(has(slack, string.format("Detail %d of outage ticket %d reopened: %s%d", D1, T1, APP, T1)), table.concat(slack, "\n"))
    assert.same({ reopen(a) }, (function() local o = {} for i, n in ipairs(t1.notes) do o[i] = n.noteValue end return o end)())
    -- 472: Bruin unresolved it; only the note
    assert.equal("I", t2.details[1].detailStatus)
    assert.is_false(has(slack, string.format("Detail %d of outage ticket %d reopened: %s%d", D2, T2, APP, T2)))
    assert.same({ reopen(b) }, (function() local o = {} for i, n in ipairs(t2.notes) do o[i] = n.noteValue end return o end)())
  end)

  it("autoresolve of healthy edges: resolve + note + Slack; not when too old, not after 3 autoresolves", function()
    local ok_edge, old_edge, max_edge, two_edge = pick(plain, 4)
    local at = clock.now()
    local T1, D1 = fixture { client_id = ok_edge.client_id, service_number = ok_edge.serial, status = "In-Progress",
      created = at - 600 }
    local T2 = fixture { client_id = old_edge.client_id, service_number = old_edge.serial, status = "In-Progress",
      created = at - 3601 }
    local T3 = fixture { client_id = max_edge.client_id, service_number = max_edge.serial, status = "In-Progress",
      created = at - 600, notes = { auto_note(max_edge.serial, at - 900), auto_note(max_edge.serial, at - 800),
        auto_note(max_edge.serial, at - 700) } }
    local T4 = fixture { client_id = two_edge.client_id, service_number = two_edge.serial, status = "In-Progress",
      created = at - 600, notes = { auto_note(two_edge.serial, at - 900), auto_note(two_edge.serial, at - 800) } }
    start_monitor()
    clock.advance(0, SETTLE)
    local slack = slack_messages()
    local t1 = ticket(T1)
    assert.equal("R", t1.details[1].detailStatus)
    assert.equal(auto_note(ok_edge.serial, at), t1.notes[1].noteValue)
    assert.is_true(has(slack, string.format("Outage ticket %d was autoresolved. Details at %s%d", T1, APP, T1)))
    assert.equal(D1, t1.details[1].detailID)
    assert.equal("I", ticket(T2).details[1].detailStatus)
    assert.equal("I", ticket(T3).details[1].detailStatus)
    assert.equal(3, #ticket(T3).notes)
    assert.equal("R", ticket(T4).details[1].detailStatus)
    assert.equal(auto_note(two_edge.serial, at), ticket(T4).notes[3].noteValue)
    assert.is_false(has(slack, string.format("Outage ticket %d was autoresolved. Details at %s%d", T2, APP, T2)))
    assert.is_false(has(slack, string.format("Outage ticket %d was autoresolved. Details at %s%d", T3, APP, T3)))
  end)

  it("an edge that recovers during the quarantine gets no ticket and is autoresolved", function()
    local e = pick(plain, 1)
    local at = clock.now()
    local T = fixture { client_id = e.client_id, service_number = e.serial, status = "In-Progress", created = at - 600 }
    take_down(e)
    start_monitor()
    clock.advance(0, SETTLE)
    set_edge(e, "CONNECTED")
    clock.advance(180, SETTLE)
    assert.same({}, env.calls("bruin", "^/api/Ticket/repair"))
    assert.equal("R", ticket(T).details[1].detailStatus)
    assert.equal(auto_note(e.serial, at + 180), ticket(T).notes[1].noteValue)
  end)

  it("dev: outage edges are re-checked but no ticket is requested and nothing is resolved", function()
    local e, h = pick(plain, 2)
    local T = fixture { client_id = h.client_id, service_number = h.serial, status = "In-Progress", created = clock.now() - 600 }
    take_down(e)
    start_monitor("dev")
    clock.advance(0, SETTLE)
    clock.advance(180, SETTLE)
    assert.equal(2, #env.calls("velocloud", "getEnterpriseEdgeLinkStatus"))
    assert.same({}, env.calls("bruin", "^/api/Ticket/repair"))
    assert.same({}, env.calls("bruin", "status"))
    assert.equal("I", ticket(T).details[1].detailStatus)
    assert.same({}, slack_messages())
  end)
end)
