--- bench/redis_bench.lua: ae.redis GET/SET throughput from Lua.
-- usage: REDIS_HOSTNAME=redis://127.0.0.1:6379 BENCH_N=50000 BENCH_TASKS=50 aengine run bench/redis_bench.lua
-- Prints one line per case: "<case> <ops> ops in <s> s = <ops/s> ops/s".
-- bench/redis_bench.sh runs it next to redis-benchmark against the same server.
local redis = require "ae.redis"
local task = require "ae.task"
local clock = require "ae.clock"
local engine = require "ae.engine"

local N = math.tointeger(tonumber(os.getenv("BENCH_N") or "50000"))
local TASKS = math.tointeger(tonumber(os.getenv("BENCH_TASKS") or "50"))
local BATCH = math.tointeger(tonumber(os.getenv("BENCH_BATCH") or "100"))
local VALUE = string.rep("x", 3) -- redis-benchmark's default 3-byte payload

local r = redis.connect("main")

local function report(name, ops, secs)
  print(string.format("%-28s %8d ops in %6.3f s = %10.0f ops/s", name, ops, secs, ops / secs))
end

-- N commands split over TASKS tasks, each waiting for its reply before the next
local function tasks_case(name, fn)
  local per = N // TASKS
  local fns = {}
  for t = 1, TASKS do
    fns[t] = function()
      for i = 1, per do fn(t, i) end
    end
  end
  local t0 = clock.monotonic()
  local _, errors, nerr = task.gather(fns)
  local dt = clock.monotonic() - t0
  if nerr > 0 then error(name .. ": " .. tostring(select(2, next(errors)))) end
  report(name, per * TASKS, dt)
end

-- N commands in pipelines of BATCH, one task
local function pipeline_case(name, cmd)
  local t0 = clock.monotonic()
  local done = 0
  while done < N do
    local n = math.min(BATCH, N - done)
    local cmds = {}
    for i = 1, n do cmds[i] = cmd(done + i) end
    r:pipeline(cmds)
    done = done + n
  end
  report(name, N, clock.monotonic() - t0)
end

local ok, err = pcall(function()
  r:ping()
  tasks_case(string.format("SET (%d tasks)", TASKS), function(t, i) r:set("bench:" .. t .. ":" .. i, VALUE) end)
  tasks_case(string.format("GET (%d tasks)", TASKS), function(t, i) r:get("bench:" .. t .. ":" .. i) end)
  pipeline_case(string.format("SET (pipeline %d)", BATCH), function(i) return { "SET", "bench:p:" .. i, VALUE } end)
  pipeline_case(string.format("GET (pipeline %d)", BATCH), function(i) return { "GET", "bench:p:" .. i } end)
end)
if not ok then
  io.stderr:write("redis_bench: ", tostring(err), "\n")
  engine.exit(1)
end
engine.exit(0)
