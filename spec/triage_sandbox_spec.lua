-- luacheck: max line length 140
-- service-outage-monitor, triage process, end to end through the real stack:
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
local UNIT = "triage-sandbox"
local APP = "https://app.bruin.com/t/"

local env, fleet, cached

-- US/Eastern Python text of an engine time in March 2021 (after the DST switch)
local function eastern(t)
  return os.date("!%Y-%m-%d %H:%M:%S", math.floor(t) - 4 * 3600) .. "-04:00"
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

local function start_triage(environment)
  assert(engine.start_unit { name = UNIT, script = "scripts/usecases/service_outage_monitor.lua",
    config = { environment = environment or "production", environment_name = "sandbox-spec", triage = 1,
      lease = 0 } })
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

describe("service-outage-monitor on the sandbox triage (real capabilities, simulators)", function()
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

  local function fixture(t)
    local res = post("bruin", "/_tickets", t)
    return res.ticketID, res.detailIDs[1]
  end


  local TRIAGE_HEAD = "#*Automation Engine*#\nTriage (VeloCloud)\n"

  it("a detail without triage note gets the initial triage note (production)", function()
    local e = pick(plain, 1)
    local at = clock.now()
    take_down(e)
    local T = fixture { client_id = e.client_id, service_number = e.serial, status = "In-Progress", created = at - 60 }
    start_triage()
    clock.advance(0, SETTLE)
    local notes = notes_of(T)
    assert.same({ triage_note(e, at) }, notes)
  end)

  it("a detail whose triage note is 45 min old gets the new events in notes of 15, newest first, and one Slack", function()
    local e = pick(plain, 1)
    local at = clock.now()
    local T, D = fixture { client_id = e.client_id, service_number = e.serial, status = "In-Progress", created = at - 2700,
      notes = { TRIAGE_HEAD .. "Orchestrator Instance: " .. e.host } }
    downed[#downed + 1] = e
    local GE = e.links[1].interface
    local events = {}
    for i = 1, 17 do
      local dead = i % 2 == 1
      post("velocloud", "/_edges/" .. e.host .. "/" .. e.id, { links = { [GE] = dead and "DISCONNECTED" or "STABLE" } })
      table.insert(events, 1, { event = dead and "LINK_DEAD" or "LINK_ALIVE", at = clock.now() })
      clock.advance(1, SETTLE)
    end
    local function note(from, to)
      local lines = { "#*Automation Engine*#", "Triage (VeloCloud)", "" }
      for i = from, to do
        lines[#lines + 1] = "New event: " .. events[i].event
        -- spec §6.2: the name captured by the event-interface pattern ("Link GE1 is now DEAD",
        -- "Link GE1 is no longer DEAD")
        lines[#lines + 1] = "Device: Interface " .. GE
        lines[#lines + 1] = "Event time: " .. eastern(events[i].at)
        lines[#lines + 1] = ""
      end
      lines[#lines + 1] = "Timestamp: " .. eastern(events[to].at)
      return table.concat(lines, "\n")
    end
    start_triage()
    clock.advance(0, SETTLE)
    local notes = notes_of(T)
    assert.equal(3, #notes)
    assert.equal(note(1, 15), notes[2])
    assert.equal(note(16, 17), notes[3])
    local slack = slack_messages()
    assert.is_true(has(slack, string.format("Triage appended to detail %d (serial: %s) of ticket %d. Details at %s%d",
      D, e.serial, T, APP, T)), table.concat(slack, "\n"))
  end)

  it("dev: no append; Slack 'Triage note would have been appended ...' with the whole note", function()
    local e = pick(plain, 1)
    local at = clock.now()
    take_down(e)
    local T, D = fixture { client_id = e.client_id, service_number = e.serial, status = "In-Progress", created = at - 60 }
    start_triage("dev")
    clock.advance(0, SETTLE)
    assert.same({}, notes_of(T))
    local slack = slack_messages()
    assert.is_true(has(slack, string.format("Triage note would have been appended to detail %d of ticket %d(serial: %s). " ..
      "Note: %s. Details at app.bruin.com/t/%d", D, T, e.serial, triage_note(e, at), T)), table.concat(slack, "\n"))
  end)
end)
