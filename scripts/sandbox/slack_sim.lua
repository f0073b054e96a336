--- slack_sim: a Slack incoming-webhook simulator (sandbox unit), mounted at
-- /sim/slack on the engine's HTTP server.
--
--   POST /sim/slack/services/<T>/<B>/<secret>   body {"text": "..."} (JSON)
--        200 "ok"                 accepted; the message is recorded
--        400 "invalid_payload"    body is not a JSON object
--        400 "no_text"            no "text" string
--        404 "no_service"         webhook path not known (when `webhooks` is configured)
--   GET    /sim/slack/_messages   [{"seq", "at", "webhook", "text"}...] accepted messages, oldest first
--   DELETE /sim/slack/_messages   forget them
-- plus the framework's /_calls and /_faults (sandbox/sim.lua): e.g. a fault
-- {"path": "^/services/", "status": 500, "body": "internal_error"} or
-- {"latency": 9} for a webhook slower than the notifier's budget.
--
-- Config (unit table or env): webhooks = {"/services/T/B/secret", ...}
-- (SLACK_SIM_WEBHOOKS, comma separated); empty = any /services/... path.
local json = require "ae.json"
local clock = require "ae.clock"
local log = require "ae.log"
local unit = require "ae.unit"
local sim_lib = require "sandbox.sim"

local ucfg = unit.config or {}
local webhooks = {}
do
  local list = ucfg.webhooks
  if list == nil and os.getenv("SLACK_SIM_WEBHOOKS") then
    list = {}
    for w in os.getenv("SLACK_SIM_WEBHOOKS"):gmatch("[^,%s]+") do list[#list + 1] = w end
  end
  for _, w in ipairs(list or {}) do webhooks[w] = true end
end

local sim = sim_lib.new("slack")
sim:keep_messages()

local function text(status, body)
  return sim_lib.text(status, body, "text/html")
end

sim:route("POST", "/services/*hook", function(req)
  local hook = "/services/" .. req.params.hook
  if next(webhooks) and not webhooks[hook] then return text(404, "no_service") end
  local payload = json.decode(req.body or "")
  if type(payload) ~= "table" then return text(400, "invalid_payload") end
  if type(payload.text) ~= "string" or payload.text == "" then return text(400, "no_text") end
  sim:add_message { at = clock.now(), webhook = hook, text = payload.text }
  return text(200, "ok")
end)

log.info("slack simulator at %s/services/...", sim_lib.base_url("slack"))
