--- capabilities.bruin.client: the Bruin REST API as bruin-bridge uses it
-- (bruin-bridge.md §4): OAuth2 client-credentials login, bearer calls, and
-- the per-endpoint status mapping of §4.4 with the corrections of §9.
--
--   local client = require("capabilities.bruin.client").new(cfg)
--   client:login()
--   local r = client:call("ticket_details", "GET", "/api/Ticket/1/details")
--   -- r = {status = 200, body = <decoded JSON>} or a mapped error result
local http = require "ae.http"
local json = require "ae.json"
local log = require "ae.log"
local task = require "ae.task"
local metrics = require "ae.metrics"

local M = {}

local Client = {}
Client.__index = Client

local CACHE_CONTROL = "no-cache, no-store, no-transform, max-age=0, only-if-cached"

-- Endpoint profiles (§4.4). ok_max: last status counted as success;
-- on403/on404: "json" (relay), "nf" (Resource not found) or nil (unmapped:
-- relayed as is, §9.3); err5xx_max: last status of the 5xx mapping;
-- transport: "generic", "cause" or "plain" (the texts of the last column).
local PROFILES = {
  tickets = { on403 = "json", on404 = "nf", transport = "generic" },
  ticket_details = { on403 = "json", on404 = "nf", transport = "generic" },
  append_note = { on403 = "json", on404 = "nf", transport = "generic" },
  append_notes = { on403 = "json", on404 = "nf", transport = "cause" },
  create_ticket = { on403 = "json", on404 = "nf", transport = "generic" },
  change_status = { on403 = "json", on404 = "nf", transport = "generic" },
  management_status = { on403 = "json", transport = "plain" },
  outage = { on403 = "repair", on404 = "repair", err5xx_max = 513, transport = "cause" },
  inventory = { transport = "plain" },
  next_results = { ok_max = 298, transport = "generic" },
  change_work = { ok_max = 298, transport = "generic" },
  task_history = { transport = "plain" },
}
M.PROFILES = PROFILES

local calls_total, errors_total, logins_total
local function declare_metrics()
  if calls_total then return end
  calls_total = metrics.counter("bruin_bridge_api_calls", "Bruin API calls by endpoint and HTTP status",
    { "endpoint", "status" })
  errors_total = metrics.counter("bruin_bridge_api_errors",
    "Bruin API calls that failed without an HTTP answer (transport error, timeout, missing token, bad body)",
    { "endpoint", "kind" })
  logins_total = metrics.counter("bruin_bridge_logins", "Bruin OAuth token requests by result", { "result" })
end

-- "%XX" for every byte quote_plus escapes, "+" for a space
local ESCAPES = {}
for b = 0, 255 do ESCAPES[string.char(b)] = string.format("%%%02X", b) end
ESCAPES[" "] = "+"

--- urlencode(s): as Python's urlencode (quote_plus): space -> "+".
local UNSAFE = "[^%w%-%._~]"
local function urlencode(s)
  s = tostring(s)
  if not s:find(UNSAFE) then return s end -- most keys and values: nothing to escape, no copy
  return (s:gsub(UNSAFE, ESCAPES))
end
M.urlencode = urlencode

local function render(v)
  if math.type(v) == "float" and v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
    return string.format("%d", v)
  end
  if v == true then return "True" end
  if v == false then return "False" end
  if v == json.null then return "None" end
  return tostring(v)
end

--- query_string({{k, v}, ...}) -> "k=v&..." in the given order
function M.query_string(pairs_list)
  local out = {}
  for _, kv in ipairs(pairs_list) do
    out[#out + 1] = urlencode(kv[1]) .. "=" .. urlencode(render(kv[2]))
  end
  return table.concat(out, "&")
end

--- segment(v): a value inserted in a URL path (digits stay as they are).
function M.segment(v)
  return urlencode(render(v)):gsub("%+", "%%20")
end

--- pascalize("client_id") -> "ClientId"; PascalCase keys unchanged.
function M.pascalize(key)
  local parts = {}
  for part in tostring(key):gmatch("[^_]+") do
    parts[#parts + 1] = part:sub(1, 1):upper() .. part:sub(2)
  end
  return table.concat(parts)
end

--- new(cfg): cfg = {base_url=, login_url=, client_id=, client_secret=,
-- timeout = 60, verify_api = true, verify_login = true}
function M.new(cfg)
  declare_metrics()
  local self = setmetatable({ cfg = cfg, token = "", login_lock = task.semaphore(1), logins = 0 }, Client)
  self.http = http.client { timeout = cfg.timeout or 60, verify = cfg.verify_api ~= false, follow = false }
  return self
end

local function error_text(err)
  err = tostring(err or "unknown error")
  return (err:gsub("^ae%.http: ", ""))
end

--- login(): one token request; keeps the previous token on any failure.
-- Returns true when a token was obtained.
function Client:login()
  local cfg = self.cfg
  self.logins = self.logins + 1
  local url = cfg.login_url .. "/identity/connect/token"
  local res, err = http.request {
    method = "POST", url = url,
    auth = { user = cfg.client_id or "", password = cfg.client_secret or "" },
    form = { grant_type = "client_credentials", scope = "public_api" },
    timeout = cfg.timeout or 60, verify = cfg.verify_login ~= false,
  }
  if not res then
    log.error("Bruin login failed: %s", error_text(err))
    logins_total:inc { result = "error" }
    return false
  end
  local body = json.decode(res.body)
  local token = type(body) == "table" and body.access_token
  if type(token) ~= "string" or token == "" then
    log.error("Bruin login failed: HTTP %d, no access_token in the reply: %s", res.status, res.body:sub(1, 300))
    logins_total:inc { result = "error" }
    return false
  end
  log.secret(token)
  self.token = token
  logins_total:inc { result = "ok" }
  log.info("Logged in to Bruin")
  return true
end

-- Serialised login: concurrent callers share one token request. `seen` is
-- the token the caller had; if it changed meanwhile, another task already
-- logged in.
function Client:relogin(seen)
  self.login_lock:acquire()
  local ok, err = pcall(function()
    if self.token ~= seen and self.token ~= "" then return end
    self:login()
  end)
  self.login_lock:release()
  if not ok then log.error("Bruin login raised: %s", tostring(err)) end
end

--- ensure_token(): §9.5, log in when there is no token yet.
function Client:ensure_token()
  if self.token == "" then self:relogin("") end
  return self.token ~= ""
end

local function transport_result(profile, name, kind, err)
  errors_total:inc { endpoint = name, kind = kind }
  local text = error_text(err)
  if profile.transport == "cause" then
    text = "Connection error in Bruin API. Cause: " .. text
  elseif profile.transport == "plain" then
    text = "Connection error in Bruin API. " .. text
  end
  log.error("Bruin %s call failed: %s", name, text)
  return { status = 500, body = text }
end

local function parse(res, name)
  local v, err = json.decode(res.body)
  if v == nil then
    errors_total:inc { endpoint = name, kind = "bad_body" }
    return nil, string.format("Bruin answered %d with a body that is not JSON: %s", res.status, err)
  end
  return v
end

-- §4.4 mapping of an HTTP answer.
function Client:map(name, profile, res, opts)
  local s = res.status
  calls_total:inc { endpoint = name, status = tostring(s) }
  local ok_max = profile.ok_max or 299
  if s >= 200 and s <= ok_max then
    local v, err = parse(res, name)
    if v == nil then return { status = 500, body = err } end
    return { status = s, body = v, ok = true }
  end
  if s == 401 then
    log.warning("Bruin answered 401 to %s: logging in again", name)
    self:relogin(opts.token)
    return { status = 401, body = "Got 401 from Bruin" }
  end
  if s == 400 or (s == 403 and profile.on403 == "json") then
    local v, err = parse(res, name)
    if v == nil then return { status = 500, body = err } end
    return { status = s, body = v }
  end
  if s == 403 and profile.on403 == "repair" then
    return { status = 403, body = string.format(
      "Permissions to create a new outage ticket with payload %s were not granted", opts.payload_text or "") }
  end
  if s == 404 and profile.on404 == "nf" then return { status = 404, body = "Resource not found" } end
  if s == 404 and profile.on404 == "repair" then
    return { status = 404, body = "Check mistypings in URL: " .. self.cfg.base_url .. "/api/Ticket/repair" }
  end
  if s >= 500 and s <= (profile.err5xx_max or 512) then
    log.error("Bruin answered %d to %s", s, name)
    return { status = 500, body = "Got internal error from Bruin" }
  end
  -- §9.3: unmapped status, relayed with the parsed JSON or the text body.
  log.warning("Bruin answered unexpected status %d to %s", s, name)
  local v = (#res.body > 0) and json.decode(res.body) or nil
  if v == nil then v = res.body end
  return { status = s, body = v }
end

--- call(name, method, path, opts) -> {status=, body=, ok=}
-- opts.query = {{key, value}, ...} (in order), opts.json = payload,
-- opts.payload_text (repair 403 text).
function Client:call(name, method, path, opts)
  opts = opts or {}
  local profile = assert(PROFILES[name], "unknown Bruin endpoint profile " .. tostring(name))
  if not self:ensure_token() then
    errors_total:inc { endpoint = name, kind = "no_token" }
    log.error("Bruin %s call not made: no token (login failed)", name)
    return { status = 500, body = "Missing BEARER token" }
  end
  local token = self.token
  opts.token = token
  local url = self.cfg.base_url .. path
  if opts.query and #opts.query > 0 then url = url .. "?" .. M.query_string(opts.query) end
  local req = {
    method = method, url = url,
    headers = {
      authorization = "Bearer " .. token, ["Content-Type"] = "application/json-patch+json",
      ["Cache-control"] = CACHE_CONTROL,
    },
  }
  if opts.json ~= nil then req.body = json.encode(opts.json, { ascii = true }) end
  local res, err = self.http:request(req)
  if not res then
    local kind = tostring(err):find("timed out", 1, true) and "timeout" or "transport"
    return transport_result(profile, name, kind, err)
  end
  return self:map(name, profile, res, opts)
end

return M
