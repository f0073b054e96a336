--- digi_bridge: the DiGi reboot capability (spec digi-bridge.md). Serves
-- digi.reboot in queue group "digi_bridge": validates the request, then asks
-- the DiGi Device Management API to recover the device, with an OAuth2
-- client-credentials token refreshed every login_ttl minutes.
--
-- Configuration: the unit's config table, else the original's environment
-- variables (docs/capabilities/digi-bridge.md lists every key).
local nats = require "ae.nats"
local http = require "ae.http"
local json = require "ae.json"
local log = require "ae.log"
local timer = require "ae.timer"
local task = require "ae.task"
local metrics = require "ae.metrics"
local unit = require "ae.unit"

local cfg = unit.config or {}
local settings = require("lib.config").new("digi_bridge", cfg)

local config = {
  queue = settings:get("queue", nil, "digi_bridge"),
  base_url = (settings:get("base_url", "DIGI_BASE_URL", "")):gsub("/+$", ""),
  client_id = settings:get("client_id", "DIGI_CLIENT_ID", ""),
  client_secret = settings:get("client_secret", "DIGI_CLIENT_SECRET", ""),
  login_ttl = settings:number("login_ttl", "DIGI_LOGIN_TTL", 60, "positive"), -- minutes
  timeout = settings:number("timeout", "DIGI_TIMEOUT", 60, "positive"), -- seconds per vendor call (callers wait 90)
  verify = settings:flag("verify", "DIGI_VERIFY_TLS", false), -- the original disables verification
  environment = settings:get("environment", "CURRENT_ENVIRONMENT", "dev"),
  refresh_on_401 = settings:flag("refresh_on_401", "DIGI_REFRESH_ON_401", true),
  hosts = cfg.hosts, -- {["name"] = "ip"}; default from DIGI_IP_* / DIGI_RECORD_NAME_*
}
settings:require(config, { "base_url" }, { base_url = "DIGI_BASE_URL" })
if config.client_secret ~= "" then log.secret(config.client_secret) end

-- Static DNS entries (the original appended them to /etc/hosts).
local function static_hosts()
  if config.hosts then return config.hosts end
  local h = {}
  local function add(ip_var, name_var)
    local ip, name = os.getenv(ip_var), os.getenv(name_var)
    if ip and ip ~= "" and name and name ~= "" then h[name] = ip end
  end
  if config.environment == "production" then
    add("DIGI_IP_PRO", "DIGI_RECORD_NAME_PRO")
  else
    add("DIGI_IP_DEV", "DIGI_RECORD_NAME_DEV")
    add("DIGI_IP_TEST", "DIGI_RECORD_NAME_TEST")
  end
  return h
end

-- The base URL to connect to and the Host header to send: a base host that
-- has a static entry is replaced by its IP (the Host header keeps the name).
local base, host_header
do
  local scheme, authority, rest = config.base_url:match("^(https?://)([^/]+)(.*)$")
  if not scheme then error("digi_bridge: DIGI_BASE_URL must be an http(s) URL, got '" .. config.base_url .. "'") end
  local name, port = authority:match("^([^:]+)(:?%d*)$")
  local ip = name and static_hosts()[name]
  if ip then
    base = scheme .. ip .. port .. rest
    host_header = authority
    log.info("digi_bridge: %s resolved statically to %s", name, ip)
  else
    base = config.base_url
  end
end

local calls = metrics.counter("digi_bridge_vendor_calls", "DiGi API calls by endpoint and outcome",
  { "endpoint", "outcome" })

local token = "" -- bearer token; kept when a login fails

local function request(opts)
  opts.timeout = config.timeout
  opts.verify = config.verify
  if host_header then
    opts.headers = opts.headers or {}
    opts.headers.Host = host_header
  end
  return http.request(opts)
end

local function plain_error(err)
  return (tostring(err):gsub("^ae%.http: ", ""))
end

--- login(): POST the client-credentials token request; keep the previous
-- token on any failure (logged).
local function login()
  local res, err = request {
    method = "POST", url = base .. "/Identity/rest/oauth/token",
    auth = { user = config.client_id, password = config.client_secret },
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
    body = "grant_type=client_credentials&scope=write%3Adms",
  }
  if not res then
    log.error("DiGi login failed: %s", plain_error(err))
    calls:inc({ endpoint = "token", outcome = "error" })
    return false
  end
  local body = json.decode(res.body)
  local t = type(body) == "table" and body.access_token
  if type(t) ~= "string" or t == "" then
    log.error("DiGi login failed: HTTP %d without access_token", res.status)
    calls:inc({ endpoint = "token", outcome = "error" })
    return false
  end
  token = t
  log.secret(t)
  calls:inc({ endpoint = "token", outcome = "ok" })
  log.info("DiGi login: new bearer token obtained")
  return true
end

-- snake_case -> PascalCase; all-uppercase names are kept (MAC).
local function header_name(key)
  if not key:find("%l") then return key end
  return (key:gsub("^(%l)", string.upper):gsub("_(%w)", string.upper))
end

local function recover(request_id, body)
  if token == "" then return { body = "Missing BEARER token", status = 500 } end
  if type(request_id) ~= "string" then
    return { body = "request_id must be a string (it is sent as the igzID header)", status = 500 }
  end
  local headers = { authorization = "Bearer " .. token, igzID = request_id }
  local keys = {}
  for k in pairs(body) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = body[k]
    if type(v) ~= "string" then
      return { body = string.format('Header value of "%s" must be a string', k), status = 500 }
    end
    if v:find("[\r\n]") then
      return { body = string.format('Header value of "%s" contains a line break', k), status = 500 }
    end
    headers[header_name(k)] = v
  end
  local res, err = request {
    method = "POST", url = base .. "/DeviceManagement_API/rest/Recovery/RecoverDevice", headers = headers,
  }
  if not res then
    calls:inc({ endpoint = "recover", outcome = "error" })
    log.error("DiGi RecoverDevice failed: %s", plain_error(err))
    return { body = plain_error(err), status = 500 }
  end
  local parsed = json.decode(res.body)
  if parsed == nil then
    calls:inc({ endpoint = "recover", outcome = "error" })
    log.error("DiGi RecoverDevice answered HTTP %d with a non-JSON body", res.status)
    return { body = string.format("Invalid JSON response from DiGi (HTTP %d)", res.status), status = 500 }
  end
  if res.status < 200 or res.status > 299 then
    calls:inc({ endpoint = "recover", outcome = "http_" .. res.status })
    log.error("DiGi RecoverDevice answered HTTP %d: %s", res.status, res.body)
    if res.status == 401 and config.refresh_on_401 then task.spawn(login) end
    return { body = parsed, status = 500 }
  end
  if type(parsed) ~= "table" or (next(parsed) ~= nil and #parsed == 0) then
    return { body = "DiGi answer is not a list of objects", status = 500 }
  end
  for _, item in ipairs(parsed) do
    if type(item) ~= "table" then return { body = "DiGi answer is not a list of objects", status = 500 } end
  end
  calls:inc({ endpoint = "recover", outcome = "ok" })
  for _, item in ipairs(parsed) do
    if item.error ~= nil and item.error ~= json.null then return { body = parsed, status = 400 } end
  end
  for _, item in ipairs(parsed) do
    if type(item.Message) ~= "string" then
      return { body = "DiGi answer element without a Message string", status = 500 }
    end
    if item.Message:find("Aborted", 1, true) then return { body = parsed, status = 400 } end
  end
  return { body = parsed, status = 200 }
end

local MISSING_BODY = 'Must include "body" in request'
local MISSING_FIELDS = 'You must include "velo_serial", "ticket", "MAC" in the "body" field of the response request'

local function handle(req)
  local id = req.request_id
  if id == nil then id = json.null end
  local body = req.body
  if body == nil then return { request_id = id, body = MISSING_BODY, status = 400 } end
  if type(body) ~= "table" or body.velo_serial == nil or body.ticket == nil or body.MAC == nil then
    return { request_id = id, body = MISSING_FIELDS, status = 400 }
  end
  local r = recover(req.request_id, body)
  log.info("digi.reboot %s for serial %s ticket %s -> %d", tostring(req.request_id), tostring(body.velo_serial),
    tostring(body.ticket), r.status)
  return { request_id = id, body = r.body, status = r.status }
end

local sub, err = nats.serve("digi.reboot", handle, { queue = config.queue })
if not sub then error("digi_bridge: cannot serve digi.reboot: " .. tostring(err)) end
timer.every(config.login_ttl * 60, login, { now = true, name = "digi_login" })
log.info("digi_bridge serving digi.reboot in queue group '%s' (DiGi %s, token refresh every %s min)",
  config.queue, config.base_url, config.login_ttl)
