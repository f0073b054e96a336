--- Requester of the reload benchmark (run by bench/reload_bench.sh with
-- `aengine exec`): sends requests to SUBJECT at RATE per second (open loop,
-- paced every 10 ms) for SECONDS, each with a 2 s timeout, and prints one
-- line per version first seen ("first <version> <epoch>") and a summary
-- ("sent N ok N lost N dup N").
local nats = require "ae.nats"
local task = require "ae.task"
local clock = require "ae.clock"

local subject, rate, seconds = ...
rate, seconds = tonumber(rate or "3000"), tonumber(seconds or "4")
assert(subject, "usage: reload_bench.lua SUBJECT [RATE] [SECONDS]")
assert(nats.wait())

local sent, ok, lost, dup = 0, 0, 0, 0
local first = {} -- version -> epoch of the first reply from it
local got = {}
local inflight = 0
local errors = {}

local function one(k)
  inflight = inflight + 1
  local rep, err = nats.request(subject, { n = k }, { timeout = 2 })
  inflight = inflight - 1
  if rep and rep.n == k then
    if got[k] then dup = dup + 1 else ok = ok + 1 end
    got[k] = true
    if not first[rep.v] then first[rep.v] = clock.now() end
  else
    lost = lost + 1
    if #errors < 5 then errors[#errors + 1] = tostring(err) end
  end
end

local t0 = clock.monotonic()
local per_tick = rate / 100
local due = 0
while clock.monotonic() - t0 < seconds do
  due = due + per_tick
  while due >= 1 do
    due = due - 1
    sent = sent + 1
    task.spawn(one, sent)
  end
  task.sleep(0.01)
end
local deadline = clock.monotonic() + 5
while inflight > 0 and clock.monotonic() < deadline do task.sleep(0.01) end
local versions = {}
for v in pairs(first) do versions[#versions + 1] = v end
table.sort(versions)
for _, v in ipairs(versions) do print(string.format("first %d %.6f", v, first[v])) end
print(string.format("sent %d ok %d lost %d dup %d rate %.0f", sent, ok, lost, dup, sent / (clock.monotonic() - t0)))
for _, e in ipairs(errors) do print("error " .. e) end
require("ae.engine").exit(0)
