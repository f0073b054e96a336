--- digi_sim: a DiGi "Device Management" API simulator (sandbox unit), mounted
-- at /sim/digi on the engine's HTTP server; devices come from sandbox.fleet.
--
--   POST /sim/digi/Identity/rest/oauth/token
--        Basic <client_id>:<client_secret>, form grant_type=client_credentials&scope=write:dms
--        200 {"access_token", "token_type": "bearer", "expires_in", "scope": "write:dms"}
--        401 {"error": "invalid_client", ...}       wrong credentials
--        400 {"error": "unsupported_grant_type"|"invalid_scope", ...}
--   POST /sim/digi/DeviceManagement_API/rest/Recovery/RecoverDevice   (no body; headers)
--        authorization: Bearer <token>, igzID, VeloSerial, Ticket, MAC
--        401 {"error": "unauthorized", ...}              no/unknown token
--        401 {"error": "invalid_token", "error_description": "Access token expired"}
--                                                        token past expires_in (or fault kind "expired_token")
--        400 "ERROR"                                     a required header is missing
--        200 [{"Message": "Success"}]                    serial in the fleet and MAC one of its links
--        200 [{"Message": "Failed"}, {"error": "Device <serial> not found"}]    unknown serial
--        200 [{"Message": "Reboot Aborted: interface <MAC> is not on device <serial>"}]
--   POST   /sim/digi/_outcomes  {"<serial>" | "*": <JSON answer list>}   scripted answers (200)
--   DELETE /sim/digi/_outcomes
-- plus the framework's /_calls and /_faults.
--
-- Config (unit table or env): client_id / client_secret (DIGI_SIM_CLIENT_ID /
-- DIGI_SIM_CLIENT_SECRET, default "digi-client" / "digi-secret"), token_ttl
-- seconds (DIGI_SIM_TOKEN_TTL, 3600), fleet = {edges=, seed=} (SIM_FLEET_EDGES,
-- SIM_FLEET_SEED) or fleet_file (SIM_FLEET_FILE).
local json = require "ae.json"
local httpd = require "ae.httpd"
local clock = require "ae.clock"
local log = require "ae.log"
local unit = require "ae.unit"
local sim_lib = require "sandbox.sim"
local fleet_lib = require "sandbox.fleet"

local ucfg = unit.config or {}
local config = {
  client_id = ucfg.client_id or os.getenv("DIGI_SIM_CLIENT_ID") or "digi-client",
  client_secret = ucfg.client_secret or os.getenv("DIGI_SIM_CLIENT_SECRET") or "digi-secret",
  token_ttl = tonumber(ucfg.token_ttl or os.getenv("DIGI_SIM_TOKEN_TTL")) or 3600,
  fleet_file = ucfg.fleet_file or os.getenv("SIM_FLEET_FILE"),
}

local fleet
if config.fleet_file then
  fleet = fleet_lib.load(config.fleet_file)
elseif type(ucfg.fleet) == "table" then
  fleet = fleet_lib.generate(ucfg.fleet)
else
  fleet = fleet_lib.generate {
    edges = tonumber(os.getenv("SIM_FLEET_EDGES")) or 200, seed = tonumber(os.getenv("SIM_FLEET_SEED")) or 1,
  }
end

local sim = sim_lib.new("digi")
local tokens = {} -- token -> expiry (engine clock)
local issued = 0
local outcomes = {} -- serial or "*" -> scripted answer

local B64 = sim_lib.B64

local function b64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
    for j = 1, chars do
      local v = (n >> (18 - 6 * (j - 1))) & 63
      out[#out + 1] = B64:sub(v + 1, v + 1)
    end
  end
  return (table.concat(out):gsub("+", "-"):gsub("/", "_"))
end

sim:route("POST", "/Identity/rest/oauth/token", function(req)
  local user, pass = sim_lib.basic_auth(req)
  if user ~= config.client_id or pass ~= config.client_secret then
    return sim_lib.json(401, { error = "invalid_client", error_description = "Bad client credentials" })
  end
  local f = sim_lib.form(req.body)
  if f.grant_type ~= "client_credentials" then
    return sim_lib.json(400, { error = "unsupported_grant_type", error_description = "Unsupported grant type" })
  end
  if f.scope ~= "write:dms" then
    return sim_lib.json(400, { error = "invalid_scope", error_description = "Invalid scope: " .. tostring(f.scope) })
  end
  issued = issued + 1
  local token = "eyJhbGciOiJSUzI1NiJ9." .. b64url(json.encode({ scope = "write:dms", n = issued, iat = clock.now() }))
    .. ".c2ln" .. issued
  tokens[token] = clock.now() + config.token_ttl
  return sim_lib.json(200, {
    access_token = token, token_type = "bearer", expires_in = config.token_ttl, scope = "write:dms",
  })
end)

local function device_answer(serial, mac)
  local scripted = outcomes[serial] or outcomes["*"]
  if scripted ~= nil then return scripted end
  local edge = fleet.edge_by_serial[serial]
  if not edge then return { { Message = "Failed" }, { error = "Device " .. serial .. " not found" } } end
  for _, link in ipairs(edge.links or {}) do
    if tostring(link.logical_id):lower() == mac:lower() then return { { Message = "Success" } } end
  end
  return { { Message = "Reboot Aborted: interface " .. mac .. " is not on device " .. serial } }
end

sim:route("POST", "/DeviceManagement_API/rest/Recovery/RecoverDevice", function(req)
  local token = (req.headers["authorization"] or ""):match("^Bearer%s+(%S+)$")
  local expiry = token and tokens[token]
  if not expiry then
    return sim_lib.json(401, {
      error = "unauthorized", error_description = "Full authentication is required to access this resource",
    })
  end
  if clock.now() >= expiry or sim:fault("expired_token", req) then
    return sim_lib.json(401, { error = "invalid_token", error_description = "Access token expired" })
  end
  local serial, ticket, mac = req.headers["veloserial"], req.headers["ticket"], req.headers["mac"]
  if not serial or not ticket or not mac or not req.headers["igzid"] then return sim_lib.json(400, "ERROR") end
  return sim_lib.json(200, device_answer(serial, mac))
end)

httpd.route("POST", "/sim/digi/_outcomes", function(req)
  local t, err = req:json()
  if type(t) ~= "table" then
    return { status = 400, json = { error = err or "an object {serial: answer} is needed" } }
  end
  for k, v in pairs(t) do outcomes[k] = v end
  return { status = 201, json = { ok = true } }
end)
httpd.route("DELETE", "/sim/digi/_outcomes", function()
  outcomes = {}
  return { json = { ok = true } }
end)

log.info("digi simulator at %s (%d devices)", sim_lib.base_url("digi"), #fleet.edges)
