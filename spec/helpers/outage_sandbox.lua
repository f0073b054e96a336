--- spec.helpers.outage_sandbox: the shared harness of the end-to-end
-- service-outage-monitor specs on the sandbox (outage and triage processes):
-- the simulators and capability units started by spec.helpers.sandbox on an
-- 80-edge fleet, the customer cache waited for, then the manual clock frozen
-- at 2021-03-15T18:05:12Z (US/Eastern -04:00).
--
--   local outage = require "spec.helpers.outage_sandbox"
--   local box = outage.new("my-unit")   -- the unit under test, stopped after each case
--   describe(..., function()
--     setup(function() env = box.setup() end)
--     teardown(box.teardown)
--     before_each(box.before_each)      -- clears the simulators' records
--     after_each(box.after_each)        -- stops the unit, reconnects downed edges, +4 h
--     it(..., function() local e = box.pick(outage.plain, 1) ... end)
--   end)
--
-- Pure helpers (eastern, edge_text, has, is_digi, plain, triage_note) and the
-- constants (H1, FLEET, T0, SETTLE, APP) are fields of the module; the helpers
-- that need the running sandbox are fields of the object new() returns.
local clock = require "ae.clock"
local task = require "ae.task"
local http = require "ae.http"
local engine = require "ae.engine"
local sandbox = require "spec.helpers.sandbox"
local fleet_lib = require "sandbox.fleet"
local customer_cache = require "lib.customer_cache"

local M = {}

M.H1 = "mettel.velocloud.net"
M.FLEET = { edges = 80, seed = 1, digi_every = 5 }
M.T0 = 1615831512 -- 2021-03-15T18:05:12Z
M.SETTLE = { settle = 1.5 }
M.APP = "https://app.bruin.com/t/"

local H1, SETTLE = M.H1, M.SETTLE
local SIMS = { "bruin", "velocloud", "digi", "slack" }

-- US/Eastern Python text of an engine time in March 2021 (after the DST switch)
function M.eastern(t)
  return os.date("!%Y-%m-%d %H:%M:%S", math.floor(t) - 4 * 3600) .. "-04:00"
end
local eastern = M.eastern

function M.edge_text(e)
  return string.format("host = %s, enterprise_id = %d, edge_id = %d", e.host, e.enterprise_id, e.id)
end

function M.has(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

function M.is_digi(e) return e.links[1].logical_id:find("00:04:2d", 1, true) ~= nil end
function M.plain(e) return not M.is_digi(e) end

-- the initial triage note of an edge whose links are all DISCONNECTED since `at`
function M.triage_note(e, at)
  local base = "https://" .. e.host .. "/#!/operator/customer/" .. e.enterprise_id .. "/monitor"
  local lines = { "#*Automation Engine*#", "Triage (VeloCloud)", "Orchestrator Instance: " .. e.host,
    "Edge Name: " .. e.name,
    string.format("Links: [Edge|%s/edge/%d/] - [QoE|%s/edge/%d/qoe/] - [Transport|%s/edge/%d/links/] - "
      .. "[Events|%s/events/]", base, e.id, base, e.id, base, e.id, base),
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

--- new(unit) -> box. `unit` is the name of the unit under test, stopped after
-- each case. box.env, box.fleet and box.cached (serial -> customer-cache entry)
-- are set by box.setup(); box.downed (edges to reconnect after the case) keeps
-- its identity across cases, so a spec may hold it in a local.
function M.new(unit)
  local box = { downed = {} }

  function box.post(vendor, path, body)
    local res = assert(http.post(box.env.base[vendor] .. path, { json = body }))
    assert(res.status < 300, vendor .. path .. " answered " .. res.status .. ": " .. tostring(res.body))
    return res:json()
  end

  function box.set_edge(e, state)
    box.post("velocloud", "/_edges/" .. e.host .. "/" .. e.id, { state = state })
  end

  -- take an edge OFFLINE until the end of the case
  function box.take_down(e)
    box.set_edge(e, "OFFLINE")
    box.downed[#box.downed + 1] = e
  end

  function box.slack_messages()
    local list = box.env.get("slack", "/_messages")
    local out = {}
    for i, m in ipairs(list) do out[i] = m.text end
    return out
  end

  function box.ticket(id)
    return box.env.get("bruin", "/_tickets/" .. tostring(id))
  end

  function box.notes_of(id)
    local out = {}
    for i, n in ipairs(box.ticket(id).notes) do out[i] = n.noteValue end
    return out
  end

  -- a ticket made in the Bruin simulator -> ticket id, first detail id
  function box.fixture(t)
    local res = box.post("bruin", "/_tickets", t)
    return res.ticketID, res.detailIDs[1]
  end

  -- n cached edges of H1 chosen by predicate, in fleet order, each used by one case only
  local used = {}
  function box.pick(pred, n)
    local out = {}
    for _, e in ipairs(box.fleet.edges) do
      if e.host == H1 and box.cached[e.serial] and not used[e.serial] and pred(e) then
        out[#out + 1] = e
        used[e.serial] = true
      end
      if #out == n then break end
    end
    assert(#out == n, "the fleet has too few edges for this case")
    return table.unpack(out)
  end

  --- setup() -> env: start the sandbox, wait for the customer cache of all
  -- hosts to be built and stable, freeze the clock at T0.
  function box.setup()
    box.fleet = fleet_lib.generate(M.FLEET)
    box.env = sandbox.start { sims = SIMS,
      capabilities = { "bruin_bridge", "velocloud_bridge", "digi_bridge", "notifier", "customer_cache" },
      fleet = M.FLEET,
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
    box.cached = {}
    for _, entry in ipairs(reply.body) do box.cached[entry.serial_number] = entry end
    clock.freeze(M.T0)
    return box.env
  end

  function box.teardown()
    clock.unfreeze()
    sandbox.stop(box.env)
  end

  function box.before_each()
    for _, v in ipairs(SIMS) do box.env.clear(v) end
    assert(http.delete(box.env.base.slack .. "/_messages"))
    for i = #box.downed, 1, -1 do box.downed[i] = nil end
  end

  function box.after_each()
    engine.stop_unit(unit)
    for _, e in ipairs(box.downed) do box.set_edge(e, "CONNECTED") end
    -- let the next case start at a fresh time far from this one's windows
    clock.advance(4 * 3600, SETTLE)
  end

  return box
end

return M
