--- ae.nats: NATS messaging with the original platform's wire rules
-- (spec/platform.md sections 2 and 3): compact JSON objects, non-objects
-- wrapped as {"message": v}, the request/reply envelope with response_topic,
-- the Redis offload of payloads over 1,048,576 bytes, and the tenacity-style
-- retry policy on the engine clock. The connection, subscriptions and the
-- multiplexed request inbox are in C (ae.core.nats).
local core = require "ae.core.nats"
local json = require "ae.json"
local task = require "ae.task"
local clock = require "ae.clock"
local log = require "ae.log"

local M = {}

M.MAX_INLINE = core.MAX_INLINE -- 1,048,576 bytes: more is offloaded to Redis
M.OFFLOAD_TTL = 300 -- seconds a stored payload lives in Redis
M.DEFAULT_TIMEOUT = 10
M.policies = {
  default = { multiplier = 5, min = 5, stop_delay = 300 },
  cache = { multiplier = 1, min = 1, stop_delay = 600 },
}

local ENCODE_OPTS = { ascii = true } -- like the original: non-ASCII as \uXXXX
local null = json.null
local encode, decode, is_array = json.encode, json.decode, json.is_array
local count = core.count

--- new_request_id() -> 22 characters of the shortuuid alphabet
M.new_request_id = core.random_id

-- the marks json.decode puts on its tables: a decoded value is classified by
-- its metatable without a call into C (a hot path: several per message)
local OBJECT_MT, ARRAY_MT = getmetatable(json.object()), getmetatable(json.array())

local function is_object(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  if mt == OBJECT_MT then return true end
  if mt == ARRAY_MT then return false end
  return not is_array(v)
end
M.is_object = is_object

-- the compact JSON text of a message, wrapped when it is not an object
local function serialize(msg, level)
  if not is_object(msg) then msg = { message = msg } end
  local ok, text = pcall(encode, msg, ENCODE_OPTS)
  if not ok then error("ae.nats: message cannot be encoded as JSON: " .. tostring(text), level + 1) end
  return text
end
M.serialize = function(msg) return serialize(msg, 2) end

local function redis()
  return require("ae.redis").connect("main")
end

-- Store text under a fresh token; returns the wire payload or nil, err.
-- Written M.WRITE_CHUNK bytes at a time (the stub goes out after the last
-- one): one SET of 18 MB had hiredis copy the whole text twice into fresh
-- memory (its command and its output buffer), page faults and all. The first
-- SET gives the key its TTL and writes the last byte, so Redis sizes the value
-- once (APPENDs would make it grow, and copy, 1 MB at a time); SETRANGEs keep
-- the TTL.
M.WRITE_CHUNK = 524288
local function offload_one(text)
  local token = core.random_id()
  local r
  local ok, err = pcall(function()
    r = redis()
    local step, n = M.WRITE_CHUNK, #text
    if n <= step then
      r:call("SET", token, text, "EX", M.OFFLOAD_TTL)
      return
    end
    r:call("SET", token, text:sub(1, step), "EX", M.OFFLOAD_TTL)
    r:call("SETRANGE", token, n - 1, text:sub(n, n))
    for from = step + 1, n, step do
      r:call("SETRANGE", token, from - 1, text:sub(from, from + step - 1))
    end
  end)
  if not ok and r then pcall(r.call, r, "DEL", token) end -- no half-written message left behind
  if not ok then
    count("aengine_nats_offload_errors", "Large-message offloads to Redis that failed", "op", "store")
    return nil, "offload to Redis failed: " .. tostring(err)
  end
  count("aengine_nats_offloads", "Messages over 1 MB offloaded to Redis", "direction", "out")
  return '{"token":"' .. token .. '","is_stored":true}'
end

-- fn, made to run one call at a time in this unit, first come first served
-- (the semaphore is made at the first call, inside a task)
local function one_at_a_time(fn)
  local lock
  return function(...)
    lock = lock or task.semaphore(1)
    return lock:with(fn, ...)
  end
end

-- One offload written at a time per unit: the four hosts' links replies
-- (18 MB each) written interleaved all finished together, ~0.7 s after the
-- first alone would have, and its reader waited for all four.
local offload = one_at_a_time(offload_one)

-- Read an offloaded message into a json.buffer, M.READ_CHUNK bytes per
-- GETRANGE: a single GET of 18 MB held hiredis's read buffer, its reply and the
-- Lua string at once (~3x the message); this holds the buffer and one chunk.
-- nil when the key is gone (STRLEN of a missing key is 0). 512 KB: the
-- chunk, hiredis's reader buffer and reply stay under a 1 MB mmap threshold
-- (malloc.mmap_threshold_mb, docs/engine.md), so they reuse heap memory.
M.READ_CHUNK = 524288
local function read_offloaded(r, token)
  local size = r:call("STRLEN", token)
  if type(size) ~= "number" or size <= 0 then return nil end
  local buf = json.buffer(size)
  for from = 0, size - 1, M.READ_CHUNK do
    local to = math.min(from + M.READ_CHUNK, size) - 1
    local part = r:call("GETRANGE", token, from, to)
    if type(part) ~= "string" or #part ~= to - from + 1 then
      error("offloaded message " .. token .. " changed while it was read", 0)
    end
    buf:append(part)
  end
  return buf
end

-- Recover an offloaded message ({"token":..., "is_stored": true}); the text
-- given to dec (json.decode, or a request's decode option) is a json.buffer,
-- freed as soon as dec returns (it is outside Lua's accounting, see
-- json.buffer): dec must not keep it.
local function recover_one(stub, dec)
  local token = stub.token
  if type(token) ~= "string" or token == "" then
    count("aengine_nats_offload_errors", "Large-message offloads to Redis that failed", "op", "recover")
    return nil, "offloaded message (is_stored) without a token"
  end
  local r
  local ok, text = pcall(function()
    r = redis()
    return read_offloaded(r, token)
  end)
  if r then pcall(r.call, r, "DEL", token) end -- always, right after the read
  if not ok then
    count("aengine_nats_offload_errors", "Large-message offloads to Redis that failed", "op", "recover")
    return nil, "cannot read offloaded message " .. token .. " from Redis: " .. tostring(text)
  end
  if text == nil then
    count("aengine_nats_offload_errors", "Large-message offloads to Redis that failed", "op", "recover")
    return nil, "offloaded message " .. token .. " is not in Redis (expired or already read)"
  end
  local dok, v, derr = pcall(dec or decode, text)
  text:free()
  if not dok then error(v, 0) end
  if v == nil then
    count("aengine_nats_offload_errors", "Large-message offloads to Redis that failed", "op", "recover")
    return nil, "offloaded message " .. token .. " is not valid JSON: " .. tostring(derr)
  end
  count("aengine_nats_offloads", "Messages over 1 MB offloaded to Redis", "direction", "in")
  return v
end

-- One offloaded message fetched and decoded at a time per unit: the replies
-- of concurrent requests (the links of four hosts, each tens of MB once
-- decoded) would otherwise all be in memory together. The requests still go
-- out concurrently; a task decodes its message and goes on without yielding,
-- so by the time the next one fetches, the caller may have dropped the last.
local recover = one_at_a_time(recover_one)

local function resolve_policy(retry)
  if retry == nil or retry == false then return nil end
  if retry == true then return M.policies.default end
  if type(retry) == "string" then
    local p = M.policies[retry]
    if not p then error("ae.nats: unknown retry policy '" .. retry .. "' (default, cache or a table)", 3) end
    return p
  end
  if type(retry) == "table" then
    local p = { multiplier = retry.multiplier or 5, min = retry.min or 5, stop_delay = retry.stop_delay or 300 }
    for k, v in pairs(p) do
      if type(v) ~= "number" or v < 0 then error("ae.nats: retry." .. k .. " must be a number >= 0", 3) end
    end
    return p
  end
  error("ae.nats: retry must be false, \"default\", \"cache\" or {multiplier=, min=, stop_delay=}", 3)
end
M.resolve_policy = resolve_policy

local function handler_name(fn)
  local info = debug.getinfo(fn, "S")
  return info and (info.short_src .. ":" .. tostring(info.linedefined)) or "?"
end

------------------------------------------------------------------ connections

local Conn = {}
Conn.__index = Conn
Conn.__name = "ae.nats.connection"

-- the handle, once its first connect attempt ended; nil, err when unusable
function Conn:_handle()
  local h = self._h
  if self._default and core.status(h).state == "failed" then
    h = core.default() -- a failed default connection is retried
    self._h = h
  end
  if not core.ready(h) then
    local ok, err = core.wait(h)
    if not ok then return nil, err end
  end
  return h
end

local function check_subject(subject, fn)
  if type(subject) ~= "string" or subject == "" then
    error("ae.nats." .. fn .. ": subject must be a non-empty string", 3)
  end
end

--- c:request(subject, msg, {timeout = 10, retry = false|"default"|"cache"|{...}, decode = fn})
-- -> reply | nil, "ae.nats: <reason>"
-- decode(text) -> value | nil, err replaces json.decode for the reply (and
-- for an offloaded reply's text, which is a json.buffer valid only during the
-- call: json.decode and json.decode_each read both), e.g. json.decode_each to
-- stream its body.
function Conn:request(subject, msg, opts)
  check_subject(subject, "request")
  opts = opts or {}
  local timeout = opts.timeout or M.DEFAULT_TIMEOUT
  local dec = opts.decode or decode
  if type(dec) ~= "function" then error("ae.nats.request: decode must be a function", 2) end
  if type(timeout) ~= "number" or timeout <= 0 then error("ae.nats.request: timeout must be a number > 0", 2) end
  local policy = resolve_policy(opts.retry)
  local text = serialize(msg, 2)
  local big = #text > M.MAX_INLINE
  local start = clock.now()
  local attempt, reply, err = 0, nil, nil
  while true do
    attempt = attempt + 1
    local h, e = self:_handle()
    if h then
      local payload = text
      if big then
        payload, e = offload(text) -- a fresh token per attempt (platform §13)
        if not payload then return nil, "ae.nats: request to " .. subject .. ": " .. e end
      end
      local data
      data, e = core.request(h, subject, payload, timeout)
      if data then
        local v, derr = dec(data)
        if v ~= nil then
          reply = v
          break
        end
        count("aengine_nats_decode_errors", "NATS messages that are not valid JSON", "subject", subject)
        e = "reply is not valid JSON: " .. tostring(derr)
      end
    end
    err = e
    if not policy or clock.now() - start >= policy.stop_delay then break end
    local wait = math.max(policy.min, policy.multiplier * 2 ^ attempt)
    log.debug("ae.nats: request to %s, attempt %d failed (%s); retrying in %g s", subject, attempt, tostring(e), wait)
    task.sleep(wait)
  end
  if reply == nil then
    count("aengine_nats_request_failures", "NATS requests that failed after every attempt", "subject", subject)
    log.warning("ae.nats: request to %s failed after %d attempt(s) in %g s: %s", subject, attempt,
      clock.now() - start, tostring(err))
    return nil, string.format("ae.nats: request to %s failed after %d attempt(s): %s", subject, attempt, tostring(err))
  end
  if is_object(reply) and reply.is_stored == true then
    local full, rerr = recover(reply, dec)
    if full == nil then
      log.error("ae.nats: reply from %s: %s", subject, rerr)
      return nil, "ae.nats: reply from " .. subject .. ": " .. rerr
    end
    reply = full
  end
  return reply
end

-- publish serialized text (offloaded when big), with an optional policy
local function publish_text(self, subject, text, policy)
  local big = #text > M.MAX_INLINE
  local start = clock.now()
  local attempt = 0
  local err
  while true do
    attempt = attempt + 1
    local h, e = self:_handle()
    if h then
      local payload = text
      if big then
        payload, e = offload(text)
        if not payload then return nil, "ae.nats: publish to " .. subject .. ": " .. e end
      end
      local ok
      ok, e = core.publish(h, subject, payload)
      if ok then return true end
    end
    err = e
    if not policy or clock.now() - start >= policy.stop_delay then break end
    task.sleep(math.max(policy.min, policy.multiplier * 2 ^ attempt))
  end
  return nil, "ae.nats: publish to " .. subject .. " failed: " .. tostring(err)
end

--- c:publish(subject, msg, {retry = ...}) -> true | nil, err
function Conn:publish(subject, msg, opts)
  check_subject(subject, "publish")
  local policy = resolve_policy(opts and opts.retry)
  return publish_text(self, subject, serialize(msg, 2), policy)
end

local Sub = {}
Sub.__index = Sub
Sub.__name = "ae.nats.subscription"
function Sub:unsubscribe() return self._s:unsubscribe() end
function Sub:drain() return self._s:drain() end
function Sub:info() return self._s:info() end

local function subscribe_raw(self, subject, queue, fn)
  local h, err = self:_handle()
  if not h then return nil, "ae.nats: subscribe to " .. subject .. ": " .. tostring(err) end
  local s, serr = core.subscribe(h, subject, queue, fn)
  if not s then return nil, "ae.nats: subscribe to " .. subject .. ": " .. tostring(serr) end
  return setmetatable({ _s = s, subject = subject, queue = queue }, Sub)
end

-- decode an incoming payload and resolve its offload; nil, err when unusable
local function decode_incoming(subject, data)
  local msg, err = decode(data)
  if msg == nil then
    count("aengine_nats_decode_errors", "NATS messages that are not valid JSON", "subject", subject)
    return nil, "not valid JSON (" .. tostring(err) .. ")"
  end
  if is_object(msg) and msg.is_stored == true then
    local full, rerr = recover(msg)
    if full == nil then return nil, rerr end
    msg = full
  end
  return msg
end

--- c:subscribe(subject, fn(msg, m), {queue = q}) -> subscription | nil, err
-- msg: the decoded JSON (offload resolved); m = {subject=, reply=, data=}.
function Conn:subscribe(subject, fn, opts)
  check_subject(subject, "subscribe")
  if type(fn) ~= "function" then error("ae.nats.subscribe: handler must be a function", 2) end
  local queue = opts and opts.queue
  return subscribe_raw(self, subject, queue, function(subj, reply, data)
    local msg, err = decode_incoming(subject, data)
    if msg == nil then
      log.error("ae.nats: message on %s dropped: %s", subj, err)
      return
    end
    return fn(msg, { subject = subj, reply = reply ~= "" and reply or nil, data = data })
  end)
end

local function err_text(e)
  if type(e) == "table" and e.err ~= nil then e = e.err end
  return tostring(e)
end

--- c:serve(subject, handler(req) -> reply | nil, {queue = q}) -> subscription | nil, err
-- The original replier: req = decoded request + response_topic; the reply
-- gets request_id and goes to response_topic; an error -> status 500.
function Conn:serve(subject, handler, opts)
  check_subject(subject, "serve")
  if type(handler) ~= "function" then error("ae.nats.serve: handler must be a function", 2) end
  local queue = opts and opts.queue
  local hname = handler_name(handler)
  return subscribe_raw(self, subject, queue, function(subj, reply, data)
    local req, err = decode_incoming(subject, data)
    if req ~= nil and not is_object(req) then err, req = "payload is not a JSON object", nil end
    if req == nil then
      count("aengine_nats_dropped_requests", "Requests dropped before the handler (bad payload)", "subject", subject)
      log.error("ae.nats: request on %s dropped, no reply: %s", subj, err)
      return
    end
    req.response_topic = reply -- overwrites any sender value; "" without reply subject
    local ok, res = xpcall(handler, function(e)
      log.error("ae.nats: NATS Client Exception in client happened. Error executing action %s on %s: %s",
        hname, subj, debug.traceback(err_text(e), 2))
      return e
    end, req)
    local out
    if not ok then
      count("aengine_nats_handler_errors", "Errors raised by NATS handlers", "subject", subject)
      out = { request_id = req.request_id == nil and null or req.request_id, body = err_text(res), status = 500 }
    else
      if res == nil then return end
      out = res
      if is_object(out) and out.request_id == nil and req.request_id ~= nil then out.request_id = req.request_id end
    end
    if reply == "" then
      log.info("ae.nats: message on %s had no reply subject; reply skipped", subj)
      return
    end
    local eok, text = pcall(serialize, out, 1)
    if not eok then
      count("aengine_nats_handler_errors", "Errors raised by NATS handlers", "subject", subject)
      log.error("ae.nats: reply of %s on %s cannot be encoded: %s", hname, subj, tostring(text))
      text = serialize({ request_id = req.request_id == nil and null or req.request_id,
        body = "reply cannot be encoded as JSON: " .. tostring(text), status = 500 }, 1)
    end
    local pok, perr = publish_text(self, reply, text, nil)
    if not pok then log.error("ae.nats: reply to %s for %s failed: %s", reply, subj, perr) end
  end)
end

--- c:status() -> {connected=, server=, reconnects=, state=, ...}
function Conn:status()
  return core.status(self._h)
end

--- c:wait() -> true | nil, err: wait until the first connect attempt ended
function Conn:wait()
  local h, err = self:_handle()
  if not h then return nil, "ae.nats: " .. tostring(err) end
  return true
end

--- c:flush(timeout) -> true | nil, err (PING/PONG with the server)
function Conn:flush(timeout)
  local h, err = self:_handle()
  if not h then return nil, "ae.nats: " .. tostring(err) end
  local ok, ferr = core.flush(h, timeout)
  if not ok then return nil, "ae.nats: " .. tostring(ferr) end
  return true
end

function Conn:close()
  if self._default then error("ae.nats: the default connection is shared by every unit; it cannot be closed", 2) end
  return core.close(self._h)
end

--- connect{servers=, user=, password=, token=, tls={ca=,cert=,key=}, name=, ...} -> connection
function M.connect(opts)
  if type(opts) ~= "table" then error("ae.nats.connect: expects an options table", 2) end
  return setmetatable({ _h = core.connect(opts) }, Conn)
end

local default_conn -- this unit's handle on the engine's shared connection
local function default()
  if not default_conn then
    local h, err = core.default()
    if not h then error(err, 3) end
    default_conn = setmetatable({ _h = h, _default = true }, Conn)
  end
  return default_conn
end
M.default = function() return default() end

function M.request(subject, msg, opts) return default():request(subject, msg, opts) end
function M.publish(subject, msg, opts) return default():publish(subject, msg, opts) end
function M.subscribe(subject, fn, opts) return default():subscribe(subject, fn, opts) end
function M.serve(subject, handler, opts) return default():serve(subject, handler, opts) end
function M.status() return default():status() end
function M.wait() return default():wait() end
function M.flush(timeout) return default():flush(timeout) end

return M
