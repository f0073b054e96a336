-- luacheck: max line length 140
-- service-outage-monitor, triage process, end to end through the real stack:
-- the real unit, the real capability units (customer-cache, bruin-bridge,
-- velocloud-bridge, digi-bridge, notifier) over NATS, and the sandbox
-- simulators over HTTP. Assertions are on what the simulators recorded: the
-- Bruin repair call and ticket state (notes byte for byte), the Slack
-- messages, the DiGi reboots. The engine runs on the manual clock, frozen at
-- 2021-03-15T18:05:12Z (US/Eastern -04:00) once the customer cache is built.
local clock = require "ae.clock"
local engine = require "ae.engine"
local outage = require "spec.helpers.outage_sandbox"

local SETTLE, APP = outage.SETTLE, outage.APP
local UNIT = "triage-sandbox"
local eastern, has, plain, triage_note = outage.eastern, outage.has, outage.plain, outage.triage_note

local box = outage.new(UNIT)
local post, take_down, fixture = box.post, box.take_down, box.fixture
local slack_messages, notes_of, pick = box.slack_messages, box.notes_of, box.pick
local downed = box.downed

local function start_triage(environment)
  assert(engine.start_unit { name = UNIT, script = "scripts/usecases/service_outage_monitor.lua",
    config = { environment = environment or "production", environment_name = "sandbox-spec", triage = 1,
      lease = 0 } })
end

describe("service-outage-monitor on the sandbox triage (real capabilities, simulators)", function()
  setup(box.setup)
  teardown(box.teardown)
  before_each(box.before_each)
  after_each(box.after_each)

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
