-- luacheck: max line length 140
-- service-outage-monitor, outage process, end to end through the real stack:
-- the real unit, the real capability units (customer-cache, bruin-bridge,
-- velocloud-bridge, digi-bridge, notifier) over NATS, and the sandbox
-- simulators over HTTP. Assertions are on what the simulators recorded: the
-- Bruin repair call and ticket state (notes byte for byte), the Slack
-- messages, the DiGi reboots. The engine runs on the manual clock, frozen at
-- 2021-03-15T18:05:12Z (US/Eastern -04:00) once the customer cache is built.
local clock = require "ae.clock"
local task = require "ae.task"
local http = require "ae.http"
local engine = require "ae.engine"
local sandbox = require "spec.helpers.sandbox"
local fleet_lib = require "sandbox.fleet"
local customer_cache = require "lib.customer_cache"

local H1 = "mettel.velocloud.net"
local FLEET = { edges = 80, seed = 1, digi_every = 5 }
local T0 = 1615831512 -- 2021-03-15T18:05:12Z
local SETTLE = { settle = 1.5 }
local UNIT = "som-sandbox"
local APP = "https://app.bruin.com/t/"

local env, fleet, cached

-- US/Eastern Python text of an engine time in March 2021 (after the DST switch)
local function eastern(t)
  return os.date("!%Y-%m-%d %H:%M:%S", math.floor(t) - 4 * 3600) .. "-04:00"
end

local function edge_text(e)
  return string.format("host = %s, enterprise_id = %d, edge_id = %d", e.host, e.enterprise_id, e.id)
end

local function post(vendor, path, body)
  local res = assert(http.post(env.base[vendor] .. path, { json = body }))
  assert(res.status < 300, vendor .. path .. " answered " .. res.status .. ": " .. tostring(res.body))
  return res:json()
end

local function set_edge(e, state)
  post("velocloud", "/_edges/" .. e.host .. "/" .. e.id, { state = state })
end

local function slack_messages()
  local list = env.get("slack", "/_messages")
  local out = {}
  for i, m in ipairs(list) do out[i] = m.text end
  return out
end

local function ticket(id)
  return env.get("bruin", "/_tickets/" .. tostring(id))
end

local function notes_of(id)
  local out = {}
  for i, n in ipairs(ticket(id).notes) do out[i] = n.noteValue end
  return out
end

local function has(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

-- n cached edges of H1 chosen by predicate, in fleet order, each used by one case only
local used = {}
local function pick(pred, n)
  local out = {}
  for _, e in ipairs(fleet.edges) do
    if e.host == H1 and cached[e.serial] and not used[e.serial] and pred(e) then
      out[#out + 1] = e
      used[e.serial] = true
    end
    if #out == n then break end
  end
  assert(#out == n, "the fleet has too few edges for this case")
  return table.unpack(out)
end

local function is_digi(e) return e.links[1].logical_id:find("00:04:2d", 1, true) ~= nil end
local function plain(e) return not is_digi(e) end

local function start_monitor(environment)
  assert(engine.start_unit { name = UNIT, script = "scripts/usecases/service_outage_monitor.lua",
    config = { environment = environment or "production", environment_name = "sandbox-spec",
      velocloud_hosts = H1, velocloud_hosts_filter = "[]", lease = 0 } })
end

-- the initial triage note of an edge whose links are all DISCONNECTED since `at`
local function triage_note(e, at)
  local base = "https://" .. e.host .. "/#!/operator/customer/" .. e.enterprise_id .. "/monitor"
  local lines = { "#*Automation Engine*#", "Triage (VeloCloud)", "Orchestrator Instance: " .. e.host,
    "Edge Name: " .. e.name,
    string.format("Links: [Edge|%s/edge/%d/] - [QoE|%s/edge/%d/qoe/] - [Transport|%s/edge/%d/links/] - [Events|%s/events/]",
      base, e.id, base, e.id, base, e.id, base),
    "Edge Status: OFFLINE", "Serial: " .. e.serial }
  for _, l in ipairs(e.links) do
    lines[#lines + 1] = "Interface " .. l.interface
    lines[#lines + 1] = "Interface " .. l.interface .. " Label: " .. l.display_name
    lines[#lines + 1] = "Interface " .. l.interface .. " Status: DISCONNECTED"
  end
  lines[#lines + 1] = "Last Edge Online: None"
  lines[#lines + 1] = "Last Edge Offline: " .. eastern(at)
  for _, l in ipairs(e.links) do
    lines[#lines + 1] = "Last " .. l.interface .. " Interface Online: None"
    lines[#lines + 1] = "Last " .. l.interface .. " Interface Offline: " .. eastern(at)
  end
  return table.concat(lines, "\n")
end

describe("service-outage-monitor on the sandbox (real capabilities, simulators)", function()
  setup(function()
    fleet = fleet_lib.generate(FLEET)
    env = sandbox.start { sims = { "bruin", "velocloud", "digi", "slack" },
      capabilities = { "bruin_bridge", "velocloud_bridge", "digi_bridge", "notifier", "customer_cache" },
      fleet = FLEET,
      config = { customer_cache = { links_timeout = 10, enterprise_timeout = 10 } } }
    local reply, last
    for _ = 1, 300 do
      reply = customer_cache.get { velo_filter = {}, notify = false, notify_202 = false, retry = false, timeout = 5 }
      if customer_cache.ready(reply) and #reply.body > 0 then
        local hosts = {}
        for _, entry in ipairs(reply.body) do hosts[entry.edge.host] = true end
        if hosts[H1] and hosts["metvco02.mettel.net"] and hosts["metvco03.mettel.net"] and hosts["metvco04.mettel.net"]
          and reply.status == 200 and #reply.body == last then break end
        last = #reply.body
      end
      task.sleep(0.2)
    end
    assert(customer_cache.ready(reply), "the customer cache was not built")
    cached = {}
    for _, entry in ipairs(reply.body) do cached[entry.serial_number] = entry end
    clock.freeze(T0)
  end)

  teardown(function()
    clock.unfreeze()
    sandbox.stop(env)
  end)

  local downed = {}
  before_each(function()
    for _, v in ipairs({ "bruin", "velocloud", "digi", "slack" }) do env.clear(v) end
    assert(http.delete(env.base.slack .. "/_messages"))
    downed = {}
  end)

  after_each(function()
    engine.stop_unit(UNIT)
    for _, e in ipairs(downed) do set_edge(e, "CONNECTED") end
    -- let the next case start at a fresh time far from this one's windows
    clock.advance(4 * 3600, SETTLE)
  end)

  local function take_down(e)
    set_edge(e, "OFFLINE")
    downed[#downed + 1] = e
  end

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
  local function fixture(t)
    local res = post("bruin", "/_tickets", t)
    return res.ticketID, res.detailIDs[1]
  end

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
