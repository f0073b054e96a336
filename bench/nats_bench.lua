-- ae.nats benchmark: request/reply round trips per second, Lua requester ->
-- Lua replier (serve) on separate connections, at 1 and 100 requests in
-- flight; memory for 10,000 requests in flight.
-- usage: aengine exec bench/nats_bench.lua [SECONDS]   (NATS_SERVER1 set)
local nats = require "ae.nats"
local task = require "ae.task"
local clock = require "ae.clock"

local seconds = tonumber(arg and arg[1]) or 2
local url = os.getenv("NATS_SERVER1")
local replier = nats.connect { servers = { url }, name = "bench-replier" }
local requester = nats.connect { servers = { url }, name = "bench-requester" }
assert(replier:wait())
assert(requester:wait())
local sub = assert(replier:serve("bench.lua", function(req)
  return { status = 200, body = { ticketID = req.body.ticket_id } }
end, { queue = "q" }))
assert(replier:flush(2))

local msg = { request_id = "Vt3kQ8mZpR2cXb7nHs4eWa", body = { ticket_id = 5126381 } }

local function run(inflight)
  local n, stop = 0, false
  local t0 = clock.monotonic()
  local fns = {}
  for i = 1, inflight do
    fns[i] = function()
      while not stop do
        assert(requester:request("bench.lua", msg, { timeout = 10 }))
        n = n + 1
        if clock.monotonic() - t0 >= seconds then stop = true end
      end
    end
  end
  task.gather(fns)
  local el = clock.monotonic() - t0
  print(string.format("lua inflight=%d rps=%.0f", inflight, n / el))
end

run(1)
run(100)

-- memory: 10,000 requests in flight against a subject nobody answers
collectgarbage("collect")
local before = collectgarbage("count")
local rss = function()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end
local rss0 = rss()
local fns = {}
for i = 1, 10000 do fns[i] = function() return requester:request("bench.nobody", msg, { timeout = 2 }) end end
local gather = task.spawn(task.gather, fns)
task.sleep(0.5)
print(string.format("inflight_10000 pending=%d lua_kb=%.0f rss_kb=%d", requester:status().pending_requests,
  collectgarbage("count") - before, rss() - rss0))
gather:wait()
sub:unsubscribe()
requester:close()
replier:close()
