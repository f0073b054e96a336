-- json_bench.lua - ae.json vs lua-cjson on a ~1 MB VeloCloud edge list.
--   build/aengine exec bench/json_bench.lua [rounds]
-- Generates a realistic document (edges with names, serials, link arrays,
-- nulls, nested objects, integers, floats, non-ASCII text), then times
-- encode and decode with both libraries in the same process, best of N.
-- Prints a markdown table (the one in docs/bench/json.md).
local json = require "ae.json"
local ok_cjson, cjson = pcall(require, "cjson")
if not ok_cjson then
  error("lua-cjson is not installed (Debian package lua-cjson): " .. tostring(cjson))
end
-- lua-cjson prints floats with %.14g (its maximum precision): shorter, lossy
-- text for floats; ae.json writes the shortest text that reads back exactly.

local rounds = tonumber((...)) or 15
local clock = os.clock

math.randomseed(20240601)
local cities = { "Gdańsk", "São Paulo", "Zürich", "München", "Kraków", "Ciudad de México", "Dallas", "Boston" }
local states = { "CONNECTED", "OFFLINE", "NEVER_ACTIVATED", "DEGRADED" }
local link_states = { "STABLE", "UNSTABLE", "DISCONNECTED" }

local function edge(i)
  local links = {}
  for l = 1, math.random(1, 3) do
    links[l] = {
      linkId = i * 10 + l,
      interface = "GE" .. l,
      displayName = math.random() < 0.3 and cjson.null or ("ISP " .. l .. " — " .. cities[math.random(#cities)]),
      state = link_states[math.random(#link_states)],
      ipAddress = ("%d.%d.%d.%d"):format(math.random(1, 223), math.random(0, 255), math.random(0, 255), l),
      bytesTx = math.random(0, 1 << 40),
      bytesRx = math.random(0, 1 << 40),
      -- metrics as the vendor API reports them: a few decimals
      latencyMs = math.random(0, 80000) / 1000,
      jitterMs = math.random(0, 1000) / 100,
      lossPct = math.random() < 0.8 and 0.0 or math.random(1, 500) / 100,
      backupOnly = math.random() < 0.2,
    }
  end
  return {
    host = "mettel.velocloud.net",
    enterpriseName = "Customer " .. (i % 97) .. " " .. cities[i % #cities + 1],
    enterpriseId = 100 + i % 97,
    edgeName = ("%s-EDGE-%05d"):format(cities[i % #cities + 1], i),
    edgeSerialNumber = ("VC%011d"):format(5200000000 + i * 7919),
    edgeHASerialNumber = math.random() < 0.9 and cjson.null or ("VC%011d"):format(5300000000 + i),
    edgeId = i,
    edgeState = states[math.random(#states)],
    edgeLastContact = ("2024-06-%02dT%02d:%02d:%02d.000Z"):format(math.random(1, 30), math.random(0, 23),
      math.random(0, 59), math.random(0, 59)),
    edgeUptime = math.random(0, 3e7),
    links = links,
    location = { lat = math.random(40000000, 50000000) / 1e6, lon = -math.random(74000000, 124000000) / 1e6,
      address = cjson.null },
    bruinClientInfo = { client_id = 9994 + i % 300, client_name = "Cliente Ñandú " .. (i % 300) },
    tags = {},
  }
end

-- the same document for both libraries, each with its own null/empty-array marks
local edges = {}
local n = 0
local size = 0
while size < 1000000 do
  n = n + 1
  edges[n] = edge(n)
  if n % 100 == 0 then
    size = #cjson.encode(edges)
  end
end

local function with_nulls(v, null, empty_array)
  if v == cjson.null then
    return null
  elseif type(v) == "table" then
    local t = {}
    for k, x in pairs(v) do
      t[k] = with_nulls(x, null, empty_array)
    end
    if next(t) == nil then
      return empty_array()
    end
    return t
  end
  return v
end
local doc_ae = with_nulls(edges, json.null, json.array)
local doc_cj = with_nulls(edges, cjson.null, function() return setmetatable({}, cjson.empty_array_mt) end)

local text_ae = json.encode(doc_ae)
local text_cj = cjson.encode(doc_cj)
assert(#text_ae > 1000000, "document too small")
-- both texts describe the same document
local function same(x, y)
  if type(x) == "number" and type(y) == "number" then
    return x == y or math.abs(x - y) <= 1e-12 * math.abs(x) -- cjson's 14 digits
  elseif type(x) ~= "table" or type(y) ~= "table" then
    return x == y
  end
  for k, v in pairs(x) do
    if not same(v, y[k]) then
      return false
    end
  end
  for k in pairs(y) do
    if x[k] == nil then
      return false
    end
  end
  return true
end
assert(same(json.decode(text_ae), json.decode(text_cj)), "ae.json and cjson texts differ")
assert(same(json.decode(text_ae), with_nulls(cjson.decode(text_ae), json.null, json.array)),
  "cjson reads the ae.json text differently")

local function best(fn, arg)
  local t = math.huge
  for _ = 1, rounds do
    collectgarbage()
    local t0 = clock()
    fn(arg)
    local dt = clock() - t0
    if dt < t then
      t = dt
    end
  end
  return t
end

local r = {
  { "encode", best(json.encode, doc_ae), best(cjson.encode, doc_cj) },
  { "decode", best(json.decode, text_ae), best(cjson.decode, text_cj) },
  { "encode ascii=true", best(function(d) return json.encode(d, { ascii = true }) end, doc_ae), nil },
}

print(("document: %d edges, %d bytes (ae.json text), %d bytes (cjson text); best of %d rounds")
  :format(n, #text_ae, #text_cj, rounds))
print("")
print("| operation | ae.json ms | lua-cjson ms | ae.json / cjson | ae.json MB/s |")
print("|---|---:|---:|---:|---:|")
for _, row in ipairs(r) do
  local op, ae, cj = row[1], row[2], row[3]
  print(("| %s | %.2f | %s | %s | %.0f |"):format(op, ae * 1000, cj and ("%.2f"):format(cj * 1000) or "-",
    cj and ("%.2fx"):format(ae / cj) or "-", #text_ae / 1e6 / ae))
end
