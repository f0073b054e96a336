--- bench/outage_seed.lua: set-up unit of the outage benchmark (process A,
-- bench/outage_sims.lua). Writes the customer_cache Redis keys straight from
-- sandbox.fleet in the cache document format of customer-cache.md §2 (what a
-- refresh through the bridges would store for the same fleet: edges whose
-- Bruin inventory status is "A" and whose management status is monitorable,
-- logical ids from the VeloCloud edge links, last contact as the VeloCloud
-- simulator reports it now, client info as bruin-bridge answers it), then
-- takes `down_every`-selected edges OFFLINE through the VeloCloud simulator's
-- control route, and logs `outage bench seed done: ...`.
--
-- Config: fleet (sandbox.fleet options, same as the simulators'), hosts,
-- down (list of residues r: edge i goes down when i % down_mod is in it),
-- down_mod, base (http://host:port of this engine's HTTP server).
local unit = require "ae.unit"
local redis = require "ae.redis"
local http = require "ae.http"
local json = require "ae.json"
local task = require "ae.task"
local time = require "ae.time"
local log = require "ae.log"
local fleet_lib = require "sandbox.fleet"

local cfg = unit.config or {}
local fleet = fleet_lib.generate(cfg.fleet)
local down_mod = cfg.down_mod or 200
local down = {}
for _, r in ipairs(cfg.down or {}) do down[r] = true end

local MONITORABLE = { ["Pending"] = true, ["Active – Gold Monitoring"] = true,
  ["Active – Platinum Monitoring"] = true }

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%S.000Z", math.floor(t))
end

local function entry(edge, now)
  local ids = json.array {}
  for i, l in ipairs(edge.links) do ids[i] = { interface_name = l.interface, logical_id = l.logical_id } end
  return {
    edge = { host = edge.host, enterprise_id = edge.enterprise_id, edge_id = edge.id },
    serial_number = edge.serial,
    -- the VeloCloud simulator's edgeLastContact of a CONNECTED edge
    last_contact = iso(now - (edge.id % 60)),
    logical_ids = ids,
    bruin_client_info = { client_id = edge.client_id, client_name = edge.client_name },
  }
end

task.spawn(function()
  local started = time.now()
  local now = time.now()
  local store = redis.connect("customer_cache")
  local per_host, kept = {}, 0
  for _, h in ipairs(cfg.hosts or fleet.hosts) do per_host[h] = json.array {} end
  for _, edge in ipairs(fleet.edges) do
    local list = per_host[edge.host]
    if list and edge.inventory_status == "A" and MONITORABLE[edge.management_status] then
      list[#list + 1] = entry(edge, now)
      kept = kept + 1
    end
  end
  for h, list in pairs(per_host) do assert(store:call("SET", h, json.encode(list))) end
  local n = 0
  for i, edge in ipairs(fleet.edges) do
    if down[i % down_mod] then
      local url = string.format("%s/sim/velocloud/_edges/%s/%d", cfg.base, edge.host, edge.id)
      local res, err = http.post(url, { json = { state = "OFFLINE" } })
      if not res or res.status ~= 200 then
        error(string.format("outage bench seed: %s -> %s", url, tostring(res and res.status or err)))
      end
      n = n + 1
    end
  end
  log.info("outage bench seed done: %d cache entries of %d edges, %d edges OFFLINE, in %.1f s", kept, #fleet.edges, n,
    time.now() - started)
end)
