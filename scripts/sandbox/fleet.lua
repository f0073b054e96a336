--- sandbox.fleet: a deterministic simulated fleet, shared by the simulators
-- so that VeloCloud edges, Bruin clients and Bruin inventory agree with each
-- other. The same (seed, size) always gives the same fleet.
--
--   local fleet = require("sandbox.fleet").generate{edges = 200, seed = 1}
--   fleet.hosts                 -> {"mettel.velocloud.net", "metvco02.mettel.net", ...}
--   fleet.enterprises[i]        -> {id, name = "<Customer>|<client id>|", host, client_id, client_name}
--   fleet.edges[i]              -> {host, enterprise_id, enterprise_name, id, name, serial, model, state,
--                                   activation_state, last_contact, system_up_since, site_id, logical_id,
--                                   client_id, client_name, management_status, inventory_status,
--                                   links = {{id, interface, display_name, ip, state, logical_id,
--                                             internal_id, isp, last_active}}}
--   fleet.clients[client_id]    -> {client_id, client_name}
--   fleet.edge_by_serial[serial], fleet.edge_by_id[host .. "/" .. edge_id]
--
-- About 90% of edges are monitored ("Active – Platinum Monitoring", status
-- "A"); the rest have other management or inventory statuses, so filters
-- have something to filter.
local M = {}

M.HOSTS = { "mettel.velocloud.net", "metvco02.mettel.net", "metvco03.mettel.net", "metvco04.mettel.net" }

local CUSTOMERS = {
  "Titan America", "Militaires Sans Frontières", "Sunrise Foods", "Northwind Traders", "Blue Harbor Bank",
  "Acme Logistics", "Green Valley Schools", "Riverside Clinics", "Summit Hotels", "Cedar Retail",
  "Orion Energy", "Harbor Freight Lines", "Pinnacle Insurance", "Lakeside Dental", "Metro Parking",
  "Atlas Storage", "Beacon Pharmacies", "Coastal Credit Union", "Evergreen Homes", "Granite Labs",
}

local MODELS = { "edge510", "edge520", "edge540", "edge610", "edge840" }
local INTERFACES = { "GE1", "GE2", "GE3", "GE4", "GE5", "REX" }
local ISPS = { "Comcast", "Verizon", "AT&T", "Spectrum" }

-- A small deterministic PRNG (xorshift32) so fleets do not depend on
-- math.random's state or implementation.
local function rng(seed)
  local x = (seed or 1) & 0xffffffff
  if x == 0 then x = 0x9e3779b9 end
  return function(n)
    x = x ~ ((x << 13) & 0xffffffff)
    x = x ~ (x >> 17)
    x = x ~ ((x << 5) & 0xffffffff)
    if n then return (x % n) + 1 end
    return x / 0x100000000
  end
end

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%S.000Z", math.floor(t))
end
M.iso = iso

local function mac(r)
  local parts = {}
  for i = 1, 6 do parts[i] = string.format("%02x", r(256) - 1) end
  return table.concat(parts, ":")
end

--- generate{edges = N, seed = S, hosts = {...}, now = epoch, enterprises_per_host = n, digi_every = N} -> fleet
function M.generate(opts)
  opts = opts or {}
  local total = opts.edges or 200
  local r = rng(opts.seed or 1)
  local hosts = opts.hosts or M.HOSTS
  local now = opts.now or 1600000000
  local per_host = opts.enterprises_per_host or math.max(1, math.min(#CUSTOMERS, math.ceil(total / 40)))
  local fleet = {
    hosts = hosts, enterprises = {}, edges = {}, clients = {}, edge_by_serial = {}, edge_by_id = {},
    enterprises_by_host = {}, edges_by_host = {},
  }
  local next_client, next_edge_id, next_link_id, next_site = 9994, 1000, 5000, 16000
  for h, host in ipairs(hosts) do
    fleet.enterprises_by_host[host] = {}
    fleet.edges_by_host[host] = {}
    for e = 1, per_host do
      local customer = CUSTOMERS[((h - 1) * per_host + e - 1) % #CUSTOMERS + 1]
      local client_id = next_client
      next_client = next_client + 7
      local client_name = customer:upper()
      local ent = {
        id = e, host = host, client_id = client_id, client_name = client_name,
        name = string.format("%s|%d|", customer, client_id),
      }
      fleet.enterprises[#fleet.enterprises + 1] = ent
      fleet.enterprises_by_host[host][#fleet.enterprises_by_host[host] + 1] = ent
      fleet.clients[client_id] = { client_id = client_id, client_name = client_name }
    end
  end
  for i = 1, total do
    local host = hosts[(i - 1) % #hosts + 1]
    local ents = fleet.enterprises_by_host[host]
    local ent = ents[r(#ents)]
    next_edge_id = next_edge_id + 1
    local edge_id = next_edge_id
    local serial = string.format("VC%011d", 5200000000 + i * 37)
    local nlinks = r(3) -- 1..3 links
    local links = {}
    local base_mac = mac(r)
    -- digi_every = N: every Nth edge's links are DiGi LTE links (MAC prefix 00:04:2d)
    if opts.digi_every and i % opts.digi_every == 0 then base_mac = "00:04:2d" .. base_mac:sub(9) end
    for l = 1, nlinks do
      next_link_id = next_link_id + 1
      local ip = string.format("%d.%d.%d.%d", 20 + r(200), r(254), r(254), r(254))
      links[l] = {
        id = next_link_id, interface = INTERFACES[l], display_name = ip, ip = ip, state = "STABLE",
        logical_id = string.format("%s:%04d", base_mac, l - 1),
        internal_id = string.format("%08x-%04x-47a0-81a7-80c8c320f486", next_link_id, edge_id % 65536),
        isp = ISPS[r(#ISPS)], last_active = iso(now - r(300)),
      }
    end
    local monitored = r() < 0.9
    next_site = next_site + 1
    local edge = {
      host = host, enterprise_id = ent.id, enterprise_name = ent.name, id = edge_id,
      name = string.format("%s-%04d", ent.name:match("^[^|]+"):gsub("%W", ""):sub(1, 10), i),
      serial = serial, model = MODELS[r(#MODELS)], state = "CONNECTED", activation_state = "ACTIVATED",
      last_contact = iso(now - r(120)), system_up_since = iso(now - 86400 * r(60)),
      service_up_since = iso(now - 86400 * r(30)), site_id = next_site,
      logical_id = string.format("%08x-f8ff-4881-b74e-0208028d76f5", edge_id),
      client_id = ent.client_id, client_name = ent.client_name,
      management_status = monitored and "Active – Platinum Monitoring" or
        ({ "Pending", "Cancelled", "Active – Gold Monitoring" })[r(3)],
      inventory_status = (r() < 0.97) and "A" or "D",
      links = links,
    }
    fleet.edges[#fleet.edges + 1] = edge
    fleet.edge_by_serial[serial] = edge
    fleet.edge_by_id[host .. "/" .. edge_id] = edge
    local list = fleet.edges_by_host[host]
    list[#list + 1] = edge
  end
  return fleet
end

--- load(path) -> fleet from a Lua file returning generate()'s options, or
-- generate{} defaults when path is nil.
function M.load(path)
  if not path then return M.generate() end
  local chunk = assert(loadfile(path))
  return M.generate(chunk())
end

return M
