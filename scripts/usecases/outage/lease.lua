--- usecases.outage.lease: one run per cycle across engines (DESIGN.md §3).
-- Before a cycle, an engine takes a Redis lease `SET key token NX PX ttl`;
-- while the cycle runs, the lease is renewed every ttl/3; when it ends, the
-- lease is kept until 90% of the interval after the cycle started, so the
-- other engines skip this cycle's ticks, then it expires. An engine that
-- dies stops renewing; another takes over at its next tick after the ttl.
--
-- The value is "<token>|<engine-time until>": the holder compares engine
-- times too, so the manual clock of specs (which Redis cannot see) decides
-- like the real one.
--
--   local lease = require("usecases.outage.lease").new{key = "...", ttl = 30}
--   lease:run(interval, function() ... end)  --> true (ran) | false (another engine holds it)
local redis = require "ae.redis"
local task = require "ae.task"
local time = require "ae.time"
local log = require "ae.log"
local metrics = require "ae.metrics"

local M = {}

-- KEYS[1] key; ARGV: token, now, until, px
local ACQUIRE = [[
local v = redis.call('GET', KEYS[1])
if v then
  local u = tonumber(string.match(v, '|([^|]*)$'))
  if u and u > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[3], 'PX', ARGV[4])
return 1
]]

-- KEYS[1] key; ARGV: token, until, px  (only while we hold it)
local EXTEND = [[
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
]]

local errors_metric = metrics.counter("aengine_lease_errors", "Redis lease operations that failed", { "key" })

local Lease = {}
Lease.__index = Lease

--- new{key=, ttl= (s), connection = "main"} -> lease
function M.new(opts)
  local self = setmetatable({ key = assert(opts.key, "lease: key needed"), ttl = opts.ttl or 30,
    connection = opts.connection or "main" }, Lease)
  self.token = string.format("%s-%08x", require("ae.nats").new_request_id(), math.random(0, 0x7fffffff))
  return self
end

function Lease:client()
  if not self.redis then
    local okc, c = pcall(redis.connect, self.connection)
    if not okc then return nil, c end
    self.redis = c
  end
  return self.redis
end

local function px(seconds)
  return math.max(1, math.floor(seconds * 1000))
end

function Lease:eval(script, ...)
  local c, err = self:client()
  if not c then return nil, err end
  local okc, res, e2 = pcall(c.call, c, "EVAL", script, 1, self.key, ...)
  if not okc then return nil, res end
  if res == nil then return nil, e2 end
  return res
end

--- acquire() -> true | false | nil, err
function Lease:acquire()
  local now = time.now()
  local res, err = self:eval(ACQUIRE, self.token, string.format("%.6f", now), string.format("%.6f", now + self.ttl),
    px(self.ttl))
  if res == nil then return nil, err end
  return res == 1
end

--- extend(seconds) -> true | false | nil, err: hold for `seconds` more.
function Lease:extend(seconds)
  local res, err = self:eval(EXTEND, self.token, string.format("%.6f", time.now() + seconds), px(seconds))
  if res == nil then return nil, err end
  return res == 1
end

--- run(interval, fn) -> true when fn ran here, false when another engine
-- holds this cycle. A Redis failure does not stop the cycle (logged,
-- counted in aengine_lease_errors): availability over exactly-once.
function Lease:run(interval, fn)
  local started = time.now()
  local got, err = self:acquire()
  if got == false then
    log.info("lease %s held by another engine: this cycle runs there", self.key)
    return false
  end
  if got == nil then
    errors_metric:inc({ key = self.key })
    log.warning("lease %s: Redis unavailable (%s); running the cycle without a lease", self.key, tostring(err))
  end
  local done = false
  if got then
    task.spawn(function()
      while not done do
        task.sleep(self.ttl / 3)
        if done then break end
        local ok2, e = self:extend(self.ttl)
        if ok2 == nil then errors_metric:inc({ key = self.key }) end
        if ok2 == false then log.warning("lease %s: lost while the cycle runs", self.key) end
        if ok2 == nil then log.warning("lease %s: renewal failed: %s", self.key, tostring(e)) end
      end
    end)
  end
  local res = table.pack(pcall(fn))
  done = true
  if got then
    local hold = started + 0.9 * interval - time.now()
    if hold > 0 then self:extend(hold) else self:extend(0.001) end
  end
  if not res[1] then error(res[2], 0) end
  return true
end

return M
