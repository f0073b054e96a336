--- sandbox.sim: what every vendor simulator shares. A simulator mounts its
-- vendor API on the engine's HTTP server under /sim/<name>/...; every call is
-- recorded, faults can be injected per endpoint, and both are driven over
-- HTTP by tests and operators:
--
--   GET    /sim/<name>/_calls[?since=SEQ&path=LUA_PATTERN]  recorded calls, oldest first
--   DELETE /sim/<name>/_calls                              forget them
--   POST   /sim/<name>/_faults  {path=, method=, status=, body=, headers=, latency=, rate=, times=, kind=}
--   DELETE /sim/<name>/_faults                             clear every fault
--   GET    /sim/<name>/_faults
--
-- A fault matches when `path` (a Lua pattern over the path after the
-- /sim/<name> prefix) and `method` (optional) match; it applies with
-- probability `rate` (default 1), at most `times` times (default forever):
-- waits `latency` seconds, then answers `status` with `body` (a string, or a
-- table sent as JSON). `kind` names a simulator-specific fault instead (e.g.
-- "expired_token"), which the simulator's handler checks with sim:fault(kind, req).
--
--   local sim = require("sandbox.sim").new("bruin")
--   sim:route("GET", "/api/Ticket", function(req) return sim.json(200, {responses = {}}) end)
local httpd = require "ae.httpd"
local json = require "ae.json"
local task = require "ae.task"
local clock = require "ae.clock"

local M = {}

local Sim = {}
Sim.__index = Sim

local MAX_CALLS = 20000

--- json(status, value [, headers]) -> response table with the vendor's JSON
-- content type (overridable per simulator with sim.content_type).
function M.json(status, value, headers)
  local h = { ["Content-Type"] = "application/json" }
  for k, v in pairs(headers or {}) do h[k] = v end
  return { status = status, headers = h, body = json.encode(value) }
end

local function record(self, req, params)
  self.seq = self.seq + 1
  local body = req.body
  local decoded = nil
  if body and #body > 0 then
    local v = json.decode(body)
    if v ~= nil then decoded = v end
  end
  local call = {
    seq = self.seq, at = clock.now(), method = req.method, path = req.path:sub(#self.prefix + 1),
    query = req.query, headers = req.headers, body = body, json = decoded, params = params,
  }
  self.calls[#self.calls + 1] = call
  if #self.calls > MAX_CALLS then table.remove(self.calls, 1) end
  return call
end

-- The first fault matching this call (and consuming one of its `times`).
local function match_fault(self, call, kind)
  for i, f in ipairs(self.faults) do
    local applies = (f.kind == kind)
      and (not f.method or f.method == call.method)
      and (not f.path or call.path:match(f.path))
    if applies and (not f.rate or math.random() < f.rate) then
      if f.times then
        f.times = f.times - 1
        if f.times <= 0 then table.remove(self.faults, i) end
      end
      return f
    end
  end
end

--- sim:fault(kind, req) -> fault or nil: is a named fault active for this call?
function Sim:fault(kind, req)
  local call = req and req._call or { method = "", path = "" }
  return match_fault(self, call, kind)
end

--- sim:route(method, pattern, handler): pattern is relative to /sim/<name>.
function Sim:route(method, pattern, handler)
  httpd.route(method, self.prefix .. pattern, function(req)
    local call = record(self, req, req.params)
    req._call = call
    local f = match_fault(self, call, nil)
    if f then
      if f.latency and f.latency > 0 then task.sleep(f.latency) end
      if f.status then
        local body = f.body
        if type(body) == "table" then return M.json(f.status, body, f.headers) end
        return { status = f.status, headers = f.headers or {}, body = body or "" }
      end
    end
    local res = handler(req, call)
    call.status = type(res) == "table" and res.status or 200
    return res
  end)
end

--- sim:calls([path_pattern]) -> recorded calls (in this simulator's unit)
function Sim:calls(pattern)
  if not pattern then return self.calls end
  local out = {}
  for _, c in ipairs(self.calls) do
    if c.path:match(pattern) then out[#out + 1] = c end
  end
  return out
end

local function control_routes(self)
  httpd.route("GET", self.prefix .. "/_calls", function(req)
    local since = tonumber(req.query.since) or 0
    local out = json.array({})
    for _, c in ipairs(self.calls) do
      if c.seq > since and (not req.query.path or c.path:match(req.query.path)) then
        out[#out + 1] = {
          seq = c.seq, at = c.at, method = c.method, path = c.path, query = json.object(c.query or {}),
          body = c.body, json = c.json, status = c.status, headers = json.object(c.headers or {}),
        }
      end
    end
    return { json = out }
  end)
  httpd.route("DELETE", self.prefix .. "/_calls", function()
    self.calls = {}
    return { json = { ok = true } }
  end)
  httpd.route("GET", self.prefix .. "/_faults", function()
    return { json = json.array(self.faults) }
  end)
  httpd.route("POST", self.prefix .. "/_faults", function(req)
    local f, err = req:json()
    if type(f) ~= "table" then return { status = 400, json = { error = err or "a fault object is needed" } } end
    self.faults[#self.faults + 1] = f
    return { status = 201, json = { ok = true, faults = #self.faults } }
  end)
  httpd.route("DELETE", self.prefix .. "/_faults", function()
    self.faults = {}
    return { json = { ok = true } }
  end)
end

--- new(name) -> simulator mounted at /sim/<name>
function M.new(name)
  local self = setmetatable({ name = name, prefix = "/sim/" .. name, calls = {}, faults = {}, seq = 0 }, Sim)
  control_routes(self)
  return self
end

--- base_url(name) -> "http://127.0.0.1:PORT/sim/<name>" on this engine's server
function M.base_url(name)
  return "http://" .. httpd.address() .. "/sim/" .. name
end

return M
