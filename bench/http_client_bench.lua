--- ae.http client benchmark: TOTAL GET requests, IN_FLIGHT at a time, from
-- Lua tasks through one ae.http client; prints requests per second.
-- usage: aengine exec bench/http_client_bench.lua URL TOTAL IN_FLIGHT
local http = require "ae.http"
local task = require "ae.task"
local clock = require "ae.clock"

local url, total, conc = ...
total, conc = tonumber(total), tonumber(conc)
assert(url and total and conc, "usage: http_client_bench.lua URL TOTAL IN_FLIGHT")
if conc > total then conc = total end

local c = http.client { max_in_flight = conc }
local issued, failed = 0, 0
local function worker()
  while issued < total do
    issued = issued + 1
    local res = c:get(url)
    if not res or res.status ~= 200 then failed = failed + 1 end
  end
end
assert(c:get(url)) -- warm up: one connection, DNS
local fns = {}
for i = 1, conc do fns[i] = worker end
local t0 = clock.monotonic()
task.gather(fns)
local dt = clock.monotonic() - t0
print(string.format("lua in_flight=%d requests=%d failed=%d seconds=%.3f rps=%.0f", conc, total, failed, dt,
  total / dt))
