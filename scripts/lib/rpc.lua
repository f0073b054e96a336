--- lib.rpc: the caller conventions of the original use-case services
-- (platform.md §2.4-2.5) around ae.nats requests, so that the vendor clients
-- of scripts/lib/ (bruin, velocloud, notify, digi, customer_cache) never
-- build envelopes or error texts by hand.
--
--   local rpc = require "lib.rpc"
--   rpc.configure{environment = "dev", retry = "default", slack_prefix = ""}
--   local reply = rpc.call("bruin.ticket.request", rpc.envelope({client_id = 9994}),
--                          {timeout = 90, doing = "getting open tickets"})
--   if rpc.ok(reply) then ... end
--
-- call() never raises: a failed request (retry window exhausted, bad reply)
-- becomes the substitute {body = null, status = 503} after a log line and the
-- Slack message "An error occurred when <doing> -> <error>"; a reply with a
-- status outside 200-299 is returned unchanged after the Slack message
-- "Error while <doing> in <ENV> environment: Error <status> - <body>".
local nats = require "ae.nats"
local json = require "ae.json"
local log = require "ae.log"

local M = {}

local settings = {
  environment = os.getenv("CURRENT_ENVIRONMENT") or "dev", -- upper-cased in Slack texts
  retry = "default", -- ae.nats retry policy: "default" (5/5/300), "cache" (1/1/600), false
  slack_prefix = "", -- e.g. "[sites-monitor]: " (platform §2.5)
  slack_timeout = 10,
  notify_errors = true, -- post the Slack error messages
}

--- configure(opts): per unit; keys as in `settings` above.
function M.configure(opts)
  for k, v in pairs(opts or {}) do settings[k] = v end
  return settings
end

function M.settings()
  return settings
end

--- ok(reply) -> true when 200 <= status <= 299 (any other value, nil or a
-- string included, is a failure, as in the original).
function M.ok(reply)
  local status = type(reply) == "table" and reply.status
  return math.type(status) ~= nil and status >= 200 and status <= 299
end

--- envelope(body) -> {request_id = <fresh id>, body = body}
function M.envelope(body)
  return { request_id = nats.new_request_id(), body = body }
end

-- The body as the original's f-string printed it: strings as they are,
-- anything else as JSON.
local function body_text(body)
  if body == nil or body == json.null then return "None" end
  if type(body) == "string" then return body end
  local ok, text = pcall(json.encode, body)
  return ok and text or tostring(body)
end
M.body_text = body_text

--- slack(text): post a Slack notification through the notifier; the reply
-- is ignored. Never raises.
function M.slack(text)
  local msg = { request_id = nats.new_request_id(), message = settings.slack_prefix .. text }
  local reply, err = nats.request("notification.slack.request", msg,
    { timeout = settings.slack_timeout, retry = settings.retry })
  if not reply then log.error("Slack notification could not be sent: %s", tostring(err)) end
  return reply ~= nil
end

--- call(subject, message, opts) -> reply
-- opts.timeout (s, default 10), opts.retry (default: the unit's policy),
-- opts.doing (what the request does, for error texts), opts.notify = false
-- to skip the Slack error message, opts.expected = {[409] = true, ...}:
-- statuses that are normal answers of the protocol (logged at INFO, no Slack),
-- opts.decode = a reply decoder for ae.nats (e.g. json.decode_each to stream
-- a long body list: the reply then has no `body`, see docs/api/json.md).
function M.call(subject, message, opts)
  opts = opts or {}
  local retry = opts.retry
  if retry == nil then retry = settings.retry end
  local reply, err = nats.request(subject, message, { timeout = opts.timeout or 10, retry = retry,
    decode = opts.decode })
  local notify = settings.notify_errors and opts.notify ~= false and opts.doing
  if not reply then
    log.error("request to %s failed: %s", subject, tostring(err))
    if notify then M.slack(string.format("An error occurred when %s -> %s", opts.doing, tostring(err))) end
    -- `error` is local to the caller (never on the wire): the failure text, for
    -- callers that word their own Slack message (opts.notify = false).
    return { body = json.null, status = 503, error = tostring(err) }
  end
  if not M.ok(reply) and opts.expected and opts.expected[reply.status] then
    -- a non-2xx status the protocol defines as a normal answer (e.g. 409 "ticket exists")
    log.info("request to %s answered %s", subject, tostring(reply.status))
  elseif not M.ok(reply) then
    log.error("request to %s answered %s: %s", subject, tostring(reply.status), body_text(reply.body))
    if notify then
      M.slack(string.format("Error while %s in %s environment: Error %s - %s", opts.doing,
        tostring(settings.environment):upper(), tostring(reply.status), body_text(reply.body)))
    end
  end
  return reply
end

return M
