--- ae.metrics: Prometheus counters, gauges and histograms (process-global,
-- shared by every unit, C half ae.core.metrics).
--   counter(name, help [, labels]) -> c     c:inc([n] [, labels])
--   gauge(name, help [, labels])   -> g     g:set(v [, labels]) g:inc([n] [, labels]) g:dec([n] [, labels])
--   histogram(name, help [, {buckets=, labels=}]) -> h   h:observe(v [, labels])
--   m:value([labels]), m:remove(labels), m:clear(); render() -> exposition text
local core = require "ae.core.metrics"

local M = {}

M.content_type = core.content_type

local Metric = {}
Metric.__index = Metric

local function labels_of(opts)
  if opts == nil then return nil end
  if type(opts) ~= "table" then error("ae.metrics: labels must be a list of names", 3) end
  if opts.labels ~= nil then return opts.labels end
  if #opts > 0 then return opts end
  return nil
end

local function new(kind, name, help, opts, buckets)
  if type(name) ~= "string" then error("ae.metrics." .. kind .. ": name must be a string", 3) end
  if help ~= nil and type(help) ~= "string" then error("ae.metrics." .. kind .. ": help must be a string", 3) end
  local labels = labels_of(opts)
  local ok, fam = pcall(core.declare, kind, name, help or "", labels, buckets)
  if not ok then error(fam, 3) end
  local info = core.info(fam)
  return setmetatable({ fam = fam, name = info.name, kind = kind, help = info.help, labels = info.labels }, Metric)
end

--- counter(name, help, labels) -> counter (exposed as name_total)
function M.counter(name, help, labels)
  return new("counter", name, help, labels)
end

--- gauge(name, help, labels) -> gauge
function M.gauge(name, help, labels)
  return new("gauge", name, help, labels)
end

--- histogram(name, help, {buckets = {...}, labels = {...}}) -> histogram
function M.histogram(name, help, opts)
  if opts ~= nil and type(opts) ~= "table" then error("ae.metrics.histogram: opts must be a table", 2) end
  return new("histogram", name, help, opts, opts and opts.buckets)
end

local function call(fn, ...)
  local ok, err = pcall(fn, ...)
  if not ok then error(err, 3) end
end

--- counter/gauge: inc([n = 1] [, labels]); inc(labels) also works
function Metric:inc(n, labels)
  if type(n) == "table" then n, labels = 1, n end
  if self.kind == "histogram" then error("ae.metrics: " .. self.name .. " is a histogram (use observe)", 2) end
  call(core.add, self.fam, n or 1, labels)
end

--- gauge: dec([n = 1] [, labels])
function Metric:dec(n, labels)
  if type(n) == "table" then n, labels = 1, n end
  if self.kind ~= "gauge" then error("ae.metrics: " .. self.name .. " is not a gauge (only gauges go down)", 2) end
  call(core.add, self.fam, -(n or 1), labels)
end

--- gauge: set(v [, labels])
function Metric:set(v, labels)
  if self.kind ~= "gauge" then error("ae.metrics: " .. self.name .. " is not a gauge", 2) end
  call(core.set, self.fam, v, labels)
end

--- histogram: observe(v [, labels])
function Metric:observe(v, labels)
  if self.kind ~= "histogram" then error("ae.metrics: " .. self.name .. " is not a histogram", 2) end
  call(core.observe, self.fam, v, labels)
end

--- value([labels]) -> current value (histogram: count, sum); 0 for a series never set
function Metric:value(labels)
  local ok, a, b = pcall(core.get, self.fam, labels)
  if not ok then error(a, 2) end
  return a, b
end

--- remove(labels) -> true if the series existed
function Metric:remove(labels)
  local ok, r = pcall(core.remove, self.fam, labels)
  if not ok then error(r, 2) end
  return r
end

--- clear(): drop every series (an unlabelled metric goes back to 0)
function Metric:clear()
  core.clear(self.fam)
end

--- time(fn, labels) -> results of fn, observing its duration in seconds (histogram)
function Metric:time(fn, labels)
  local clock = require "ae.core.clock"
  local t0 = clock.monotonic()
  local res = table.pack(pcall(fn))
  self:observe(clock.monotonic() - t0, labels)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

--- get(name) -> the metric object of an existing family, or nil
function M.get(name)
  local fam = core.find(name)
  if not fam then return nil end
  local info = core.info(fam)
  return setmetatable({ fam = fam, name = info.name, kind = info.type, help = info.help, labels = info.labels },
    Metric)
end

--- render() -> the registry in the Prometheus text format 0.0.4
M.render = core.render

--- format_float(v) -> v as Prometheus/Python prints it ("3.0", "1.6139952e+09")
M.format_float = core.format_float

return M
