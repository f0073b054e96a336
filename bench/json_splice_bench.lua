-- json_splice_bench.lua - get.links.with.edge.info's work on an 18 MB links list:
-- json.with_member + json.raw (the splice) against decode + rec.host + encode.
--   build/aengine exec bench/json_splice_bench.lua [records] [rounds]
-- Generates a getEnterpriseEdgeLinkStatus-like array (the simulator's record
-- shape: ~25 members, nulls, ISO timestamps, some non-ASCII names), checks
-- that both ways give the same JSON value, then times each (CPU, os.clock,
-- best of `rounds`, freeing the garbage included), including the envelope
-- encode with ascii = true that ae.nats does for the reply.
local json = require "ae.json"

local nrec = tonumber((...)) or 25000
local rounds = tonumber(select(2, ...)) or 3
local clock = os.clock
local host = "mettel.velocloud.net"

math.randomseed(20261128)
local names = { "Gdańsk", "São Paulo", "Zürich", "Dallas", "Boston", "Kraków" }
local null = json.null
local function record(i)
  local up = math.random() < 0.9
  return {
    enterpriseName = ("Customer %d|%d|"):format(i % 500, 9000 + i % 500), enterpriseId = i % 500 + 1,
    enterpriseProxyId = null, enterpriseProxyName = null, edgeName = ("Edge %s %05d"):format(names[i % 6 + 1], i),
    edgeState = up and "CONNECTED" or "OFFLINE", edgeSystemUpSince = "2020-07-30T12:26:40.000Z",
    edgeServiceUpSince = "2020-08-17T12:26:40.000Z", edgeLastContact = "2026-11-28T00:44:00.475Z",
    edgeId = 1000 + i, edgeSerialNumber = ("VC0520%07d"):format(i), edgeHASerialNumber = null,
    edgeModelNumber = "edge510", edgeLatitude = math.random() < 0.5 and null or math.random(-90000, 90000) / 1000,
    edgeLongitude = null, displayName = ("%d.%d.%d.%d"):format(i % 223 + 1, i % 255, i % 7, i % 250),
    isp = ({ "Comcast", "Spectrum", "AT&T", "Verizon" })[i % 4 + 1], interface = "GE" .. (i % 4 + 1),
    internalId = ("%08x-03e9-47a0-81a7-80c8c320f486"):format(i), linkState = up and "STABLE" or "DISCONNECTED",
    linkLastActive = "2026-11-28T00:44:20.475Z", linkVpnState = up and "STABLE" or "DEAD", linkId = 5000 + i,
    linkIpAddress = ("%d.%d.%d.%d"):format(i % 200 + 10, i % 250, i % 13, i % 251),
  }
end
local recs = json.array()
for i = 1, nrec do recs[i] = record(i) end
local text = json.encode(recs)
recs = nil -- luacheck: ignore 311
collectgarbage("collect")

local function old_way()
  local v = assert(json.decode(text))
  for _, rec in ipairs(v) do rec.host = host end
  return json.encode({ request_id = "r1", status = 200, body = v }, { ascii = true })
end

local function new_way()
  local spliced = assert(json.with_member(text, "host", host))
  return json.encode({ request_id = "r1", status = 200, body = json.raw(spliced) }, { ascii = true })
end

-- same value both ways (records compared as decoded tables)
local a, b = json.decode(old_way()), json.decode(new_way())
assert(#a.body == nrec and #b.body == nrec and a.status == b.status)
for i = 1, nrec do
  local x, y = a.body[i], b.body[i]
  for k, v in pairs(x) do assert(y[k] == v, k) end
  for k in pairs(y) do assert(x[k] ~= nil, k) end
end
a, b = nil, nil -- luacheck: ignore 311

-- CPU time with the collector running as usual, including the full
-- collection that frees what the call left behind (the decoded tables are
-- garbage once the reply is sent); the Lua heap allocated during the call
-- is measured in a separate run with the collector stopped.
local function best(fn)
  local t = math.huge
  for _ = 1, rounds do
    collectgarbage("collect")
    local t0 = clock()
    local out = fn()
    assert(#out > #text)
    out = nil -- luacheck: ignore 311
    collectgarbage("collect")
    t = math.min(t, clock() - t0)
  end
  collectgarbage("collect")
  local before = collectgarbage("count")
  collectgarbage("stop")
  local out = fn()
  local kb = collectgarbage("count") - before
  assert(#out > #text)
  out = nil -- luacheck: ignore 311
  collectgarbage("restart")
  collectgarbage("collect")
  return t, kb
end

-- the parts alone
local function decode_set()
  local v = json.decode(text)
  for _, r in ipairs(v) do r.host = host end
  return v
end
local t_dec, kb_dec = best(function() return json.encode(decode_set()) end)
local t_wm, kb_wm = best(function() return json.with_member(text, "host", host) end)
local t_old, kb_old = best(old_way)
local t_new, kb_new = best(new_way)

print(("document: %d records, %d bytes; best of %d rounds (CPU s incl. freeing the garbage; Lua heap allocated)")
  :format(nrec, #text, rounds))
print("")
print("| work | decode + host + encode | with_member (+ raw) | ratio |")
print("|---|---:|---:|---:|")
print(("| the list alone | %.3f s, %.0f MB | %.3f s, %.0f MB | %.1fx |")
  :format(t_dec, kb_dec / 1024, t_wm, kb_wm / 1024, t_dec / t_wm))
print(("| reply envelope, ascii = true (what ae.nats sends) | %.3f s, %.0f MB | %.3f s, %.0f MB | %.1fx |")
  :format(t_old, kb_old / 1024, t_new, kb_new / 1024, t_old / t_new))
