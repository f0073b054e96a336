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
-- Helpers for simulator handlers: sim.json / sim.text responses, sim.basic_auth,
-- sim.form (urlencoded bodies), sim.unb64, and sim:keep_messages() /
-- sim:add_message() for a /_messages list of what the vendor accepted.
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

--- text(status, body [, content_type]) -> a plain-text response (text/plain by default).
function M.text(status, body, content_type)
  return { status = status, headers = { ["Content-Type"] = content_type or "text/plain" }, body = body }
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
M.B64 = B64

--- unb64(s) -> bytes, or nil when s is not well-formed base64 (length, alphabet).
function M.unb64(s)
  if #s % 4 ~= 0 or s:find("[^%w%+/=]") then return nil end
  local out = {}
  for i = 1, #s, 4 do
    local n, pad = 0, 0
    for j = 0, 3 do
      local c = s:sub(i + j, i + j)
      if c == "=" then pad = pad + 1 end
      n = n * 64 + (c == "=" and 0 or (B64:find(c, 1, true) - 1))
    end
    out[#out + 1] = string.char((n >> 16) & 255, (n >> 8) & 255, n & 255):sub(1, 3 - pad)
  end
  return table.concat(out)
end

--- basic_auth(req) -> user, password from an "Authorization: Basic ..." header;
-- nothing when the header is missing or malformed.
function M.basic_auth(req)
  local b64 = (req.headers["authorization"] or ""):match("^[Bb]asic%s+(%S+)$")
  local creds = b64 and M.unb64(b64)
  if creds then return creds:match("^([^:]*):(.*)$") end
end

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- form(body) -> {name = value}: an application/x-www-form-urlencoded body, decoded.
function M.form(body)
  local t = {}
  for pair in (body or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    t[unescape(k)] = unescape(v)
  end
  return t
end

-- Append to a list kept to at most MAX_CALLS items: past that, the oldest
-- quarter goes at once (a shift per append would cost O(MAX_CALLS) each).
local function append_bounded(list, item)
  local n = #list + 1
  list[n] = item
  if n > MAX_CALLS then
    local keep = MAX_CALLS * 3 // 4
    table.move(list, n - keep + 1, n, 1)
    for i = n, keep + 1, -1 do list[i] = nil end
  end
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
  -- two generations of at most MAX_CALLS / 2 calls: O(1) per call, no shifting
  local recent = self.recent
  recent[#recent + 1] = call
  if #recent >= MAX_CALLS // 2 then self.older, self.recent = recent, {} end
  return call
end

-- Every recorded call, oldest first.
local function all_calls(self)
  local out = table.move(self.older, 1, #self.older, 1, {})
  return table.move(self.recent, 1, #self.recent, #out + 1, out)
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
  if not pattern then return all_calls(self) end
  local out = {}
  for _, c in ipairs(all_calls(self)) do
    if c.path:match(pattern) then out[#out + 1] = c end
  end
  return out
end

--- sim:keep_messages(): mounts GET/DELETE /sim/<name>/_messages, the list of
-- what the simulated vendor accepted (oldest first, at most MAX_CALLS), filled
-- with sim:add_message(record) (which numbers the record: record.seq).
function Sim:keep_messages()
  self.messages, self.message_seq = {}, 0
  httpd.route("GET", self.prefix .. "/_messages", function()
    return { json = json.array(self.messages) }
  end)
  httpd.route("DELETE", self.prefix .. "/_messages", function()
    self.messages = {}
    return { json = { ok = true } }
  end)
end

function Sim:add_message(rec)
  self.message_seq = self.message_seq + 1
  rec.seq = self.message_seq
  append_bounded(self.messages, rec)
  return rec
end

local function control_routes(self)
  httpd.route("GET", self.prefix .. "/_calls", function(req)
    local since = tonumber(req.query.since) or 0
    local out = json.array({})
    for _, c in ipairs(all_calls(self)) do
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
    self.older, self.recent = {}, {}
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
  local self = setmetatable({ name = name, prefix = "/sim/" .. name, older = {}, recent = {}, faults = {}, seq = 0 },
    Sim)
  control_routes(self)
  return self
end

--- base_url(name) -> "http://127.0.0.1:PORT/sim/<name>" on this engine's server
function M.base_url(name)
  return "http://" .. httpd.address() .. "/sim/" .. name
end

return M
