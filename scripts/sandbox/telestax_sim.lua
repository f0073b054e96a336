--- telestax_sim: a Telestax (Restcomm) SMS API simulator (sandbox unit),
-- mounted at /sim/telestax on the engine's HTTP server.
--
--   POST /sim/telestax/restcomm/2012-04-24/Accounts/<SID>/SMS/Messages.json
--        form From, To, Body; Basic auth <SID>:<token>
--        200 JSON message object {"sid", "status": "queued", ...}  (recorded in /_messages)
--        401 text "Authentication failed"      missing/wrong credentials
--        403 text "Account SID mismatch"        the path's SID is not the authenticated account
--        400 JSON {"code": 21604/21603/21602/21211, "message": ..., "status": 400}   missing/invalid field
--   GET    /sim/telestax/_messages   accepted messages [{"seq", "sid", "from", "to", "body", "at"}]
--   DELETE /sim/telestax/_messages
-- plus the framework's /_calls and /_faults (e.g. {"status": 200, "body": "OK"}
-- for a non-JSON 2xx, or {"latency": 30} for a vendor slower than the notifier).
--
-- Config (unit table or env): account_sid (TELESTAX_SIM_ACCOUNT_SID, default
-- "ACCOUNT_SID"), auth_token (TELESTAX_SIM_AUTH_TOKEN, default "AUTH_TOKEN").
local clock = require "ae.clock"
local log = require "ae.log"
local unit = require "ae.unit"
local sim_lib = require "sandbox.sim"

local ucfg = unit.config or {}
local config = {
  sid = ucfg.account_sid or os.getenv("TELESTAX_SIM_ACCOUNT_SID") or "ACCOUNT_SID",
  token = ucfg.auth_token or os.getenv("TELESTAX_SIM_AUTH_TOKEN") or "AUTH_TOKEN",
}

local sim = sim_lib.new("telestax")
sim:keep_messages()

local function rfc1123(t)
  return os.date("!%a, %d %b %Y %H:%M:%S +0000", math.floor(t))
end

local function hex(n)
  local t = {}
  for i = 1, n do t[i] = string.format("%x", math.random(0, 15)) end
  return table.concat(t)
end

local function invalid(code, message)
  return sim_lib.json(400, { code = code, message = message, more_info = "https://www.twilio.com/docs/errors/" .. code,
    status = 400 })
end

sim:route("POST", "/restcomm/2012-04-24/Accounts/:sid/SMS/Messages.json", function(req)
  local user, pass = sim_lib.basic_auth(req)
  if user ~= config.sid or pass ~= config.token then return sim_lib.text(401, "Authentication failed") end
  if req.params.sid ~= user then return sim_lib.text(403, "Account SID mismatch") end
  local f = sim_lib.form(req.body)
  if not f.To or f.To == "" then return invalid(21604, "A 'To' phone number is required.") end
  if not f.From or f.From == "" then return invalid(21603, "A 'From' phone number is required.") end
  if not f.Body or f.Body == "" then return invalid(21602, "Message body is required.") end
  if not f.To:match("^%+?%d+$") then
    return invalid(21211, "The 'To' number " .. f.To .. " is not a valid phone number.")
  end
  local sid, now = "SM" .. hex(32), clock.now()
  sim:add_message { sid = sid, from = f.From, to = f.To, body = f.Body, at = now }
  return sim_lib.json(200, {
    sid = sid, date_created = rfc1123(now), date_updated = rfc1123(now), account_sid = user,
    from = f.From, to = f.To, body = f.Body, status = "queued", direction = "outbound-api",
    price = "0", price_unit = "USD", api_version = "2012-04-24",
    uri = "/2012-04-24/Accounts/" .. user .. "/SMS/Messages/" .. sid .. ".json",
  })
end)

log.info("telestax simulator at %s/restcomm/2012-04-24/Accounts/%s/SMS/Messages.json",
  sim_lib.base_url("telestax"), config.sid)
