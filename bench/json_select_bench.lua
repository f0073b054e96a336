-- json_select_bench.lua - customer.cache.get's work on one host's cache:
-- json.select + json.raw (filter on the text) against decode + filter + encode.
--   build/aengine exec bench/json_select_bench.lua [entries] [rounds]
-- Generates a cache document of the spec's entry shape (spec/customer-cache.md
-- §2; some non-ASCII client names), filters it on 6 of 12 enterprise ids and a
-- last_contact_filter (as customer_cache.lua does), checks that both ways give
-- the same JSON value, then times each (CPU, os.clock, best of `rounds`, a full
-- collection at the end of each call counted), the reply envelope encoded with
-- ascii = true as ae.nats does.
local json = require "ae.json"
local time = require "ae.time"

local nent = tonumber((...)) or 12000
local rounds = tonumber(select(2, ...)) or 3
local clock = os.clock
local host = "mettel.velocloud.net"
local T0 = 1700000000

math.randomseed(20261128)
local names = { "Gdańsk", "São Paulo", "Zürich", "Dallas", "Boston", "Kraków" }
local function entry(i)
  local links = json.array()
  for k = 1, i % 3 + 1 do
    links[k] = { interface_name = "GE" .. k, logical_id = ("82:b2:34:%02x:%02x:b6:%04d"):format(i % 256, k, k) }
  end
  return {
    edge = { host = host, enterprise_id = i % 12 + 1, edge_id = 1000 + i },
    last_contact = os.date("!%Y-%m-%dT%H:%M:%S.000Z", T0 - math.random(0, 14 * 86400)),
    logical_ids = links,
    serial_number = ("VC0520%07d"):format(i),
    bruin_client_info = { client_id = 9000 + i % 700, client_name = ("%s/%s CUSTOMER %d"):format(
      names[i % 6 + 1]:upper(), ({ "NEW YORK", "DALLAS", "CHICAGO" })[i % 3 + 1], i % 700) },
  }
end
local entries = json.array()
for i = 1, nent do entries[i] = entry(i) end
local text = json.encode(entries)
entries = nil -- luacheck: ignore 311
collectgarbage("collect")

-- the predicate of customer_cache.lua's get: enterprise ids, then last_contact
local wanted, since
local function keep(e)
  local edge = type(e) == "table" and e.edge
  if type(edge) ~= "table" or wanted and not wanted[edge.enterprise_id] then return false end
  if not since then return true end
  local t = type(e.last_contact) == "string" and time.parse(e.last_contact, "UTC")
  return t and t > since
end

local function old_way()
  local out = json.array()
  for _, e in ipairs(assert(json.decode(text))) do
    if keep(e) then out[#out + 1] = e end
  end
  return json.encode({ request_id = "r1", status = 200, body = out }, { ascii = true }), #out
end

local function new_way()
  local selected, kept = assert(json.select(text, keep))
  return json.encode({ request_id = "r1", status = 200, body = json.raw(selected) }, { ascii = true }), kept
end

local function same(x, y)
  if type(x) ~= "table" or type(y) ~= "table" then return x == y end
  for k, v in pairs(x) do
    if not same(v, y[k]) then return false end
  end
  for k in pairs(y) do
    if x[k] == nil then return false end
  end
  return getmetatable(x) == getmetatable(y)
end

-- CPU time: best of `rounds`, a full collection at the end counted. Peak: the
-- Lua heap above the starting point, sampled every 1000 VM instructions and at
-- the end of one call, with the generational collector running (as in the unit).
local function measure(fn)
  local best = math.huge
  for _ = 1, rounds do
    collectgarbage("collect")
    local t = clock()
    fn()
    collectgarbage("collect")
    best = math.min(best, clock() - t)
  end
  collectgarbage("generational")
  collectgarbage("collect")
  local k0, peak = collectgarbage("count"), 0
  local function sample() peak = math.max(peak, collectgarbage("count") - k0) end
  debug.sethook(sample, "", 1000)
  local keep_alive = fn() -- the reply text stays in use until the sample below
  debug.sethook()
  sample()
  assert(#keep_alive > 0)
  collectgarbage("incremental")
  collectgarbage("collect")
  return best, peak / 1024
end

print(("document: %d entries, %d bytes; best of %d; peak = Lua heap in use at the peak of one call")
  :format(nent, #text, rounds))
print("| filter | kept | decode + filter + encode | select (+ raw) | ratio |")
print("|---|---:|---:|---:|---:|")
local scenarios = {
  { "none (outage cycle: `filter: {}`)", nil, nil },
  { "last_contact within 13 days", nil, T0 - 13 * 86400 },
  { "6 of 12 enterprises, last 7 days", { [1] = true, [3] = true, [5] = true, [7] = true, [9] = true, [11] = true },
    T0 - 7 * 86400 },
}
for _, sc in ipairs(scenarios) do
  wanted, since = sc[2], sc[3]
  -- same value both ways
  local a, na = old_way()
  local b, nb = new_way()
  assert(na == nb and na > 0, "different counts")
  assert(same(json.decode(a), json.decode(b)), "different replies")
  a, b = nil, nil -- luacheck: ignore 311
  local t_old, h_old = measure(old_way)
  local t_new, h_new = measure(new_way)
  print(("| %s | %d | %.3f s, %.0f MB | %.3f s, %.0f MB | %.1fx |"):format(sc[1], na, t_old, h_old, t_new, h_new,
    t_old / t_new))
end
