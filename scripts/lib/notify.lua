--- lib.notify: client of the notifier capability (notification.slack.request,
-- notification.email.request, notification.sms.request), with the caller
-- conventions of platform.md §2.4-2.5 (through lib.rpc): envelopes, timeouts
-- of the subject registry (§2.8), retry policy, the 503 substitute and the
-- Slack error message.
--
--   local notify = require "lib.notify"
--   notify.slack("Outage ticket created for faulty edge ...")
--   local reply = notify.email{subject = "...", recipient = "a@x.com, b@y.com",
--                              text = "...", html = "...", images = {}, attachments = {}}
--   local reply = notify.sms{to = "15551234567", text = "Your dispatch is confirmed"}
--   if notify.sms_sent(reply) then ... end
local json = require "ae.json"
local nats = require "ae.nats"
local log = require "ae.log"
local rpc = require "lib.rpc"

local M = {}

M.SLACK_SUBJECT = "notification.slack.request"
M.EMAIL_SUBJECT = "notification.email.request"
M.SMS_SUBJECT = "notification.sms.request"

-- Caller timeouts of platform.md §2.8 (seconds).
M.EMAIL_TIMEOUT = 60
M.SMS_TIMEOUT = 60

local function check_string(v, what, level)
  if type(v) ~= "string" then error("lib.notify: " .. what .. " must be a string", level + 1) end
  return v
end

--- slack(text) -> true | false: post `text` (with the unit's rpc slack
-- prefix) through the notifier; the reply is ignored (timeout: lib.rpc's
-- slack_timeout, 10 s, or 60 s for service-dispatch-monitor). Never raises
-- on delivery failures (logged).
function M.slack(text)
  check_string(text, "slack text", 2)
  return rpc.slack(text)
end

-- A list of {name=, data=} entries (images / attachments), or [] when none.
local function parts(list, what)
  if list == nil then return json.array({}) end
  if type(list) ~= "table" then error("lib.notify: email " .. what .. " must be a list", 3) end
  local out = json.array({})
  for i, p in ipairs(list) do
    if type(p) ~= "table" or type(p.name) ~= "string" or type(p.data) ~= "string" then
      error(string.format("lib.notify: email %s[%d] must be {name = <string>, data = <base64 string>}", what, i), 3)
    end
    out[i] = { name = p.name, data = p.data }
  end
  return out
end

--- email_data(t) -> the original's email_data object (images/attachments
-- default to []). Raises on a malformed table.
function M.email_data(t)
  if type(t) ~= "table" then error("lib.notify: email data must be a table", 2) end
  for _, k in ipairs({ "subject", "recipient", "text", "html" }) do
    check_string(t[k], "email " .. k, 3)
  end
  return {
    subject = t.subject, recipient = t.recipient, text = t.text, html = t.html,
    images = parts(t.images, "images"), attachments = parts(t.attachments, "attachments"),
  }
end

--- email(email_data [, opts]) -> reply
-- email_data: {subject=, recipient= ("a@x.com, b@y.com"), text=, html=,
-- images = {{name=, data= base64}...}, attachments = {{name=, data= base64}...}}.
-- opts.timeout (default 60), opts.doing (text of the error Slack messages,
-- default "sending an email"), opts.notify = false (no Slack on failure),
-- opts.publish = true: fire and forget (last-contact-report), returns
-- true | nil, err. Reply {"request_id", "status": 200 | 500}; 503 substitute
-- when no reply came.
function M.email(data, opts)
  opts = opts or {}
  local msg = { request_id = nats.new_request_id(), email_data = M.email_data(data) }
  if opts.publish then
    local ok, err = nats.publish(M.EMAIL_SUBJECT, msg, { retry = rpc.settings().retry })
    if not ok then log.error("email could not be published: %s", tostring(err)) end
    return ok, err
  end
  return rpc.call(M.EMAIL_SUBJECT, msg, {
    timeout = opts.timeout or M.EMAIL_TIMEOUT, doing = opts.doing or "sending an email", notify = opts.notify,
  })
end

--- sms{to=, text= [, timeout=, doing=, notify=, raise=]} -> reply
-- Reply {"request_id", "status": 200, "body": {"status": <vendor>, "body": ...}}
-- or 400 for an invalid request; 503 substitute when no reply came, unless
-- raise = true (service-dispatch-monitor lets that failure abort the
-- dispatch): then it raises "lib.notify: SMS request failed: <err>".
function M.sms(t)
  if type(t) ~= "table" then error("lib.notify: sms takes a table {to=, text=}", 2) end
  check_string(t.to, "sms to", 2)
  check_string(t.text, "sms text", 2)
  local msg = rpc.envelope({ sms_to = t.to, sms_data = t.text })
  local timeout = t.timeout or M.SMS_TIMEOUT
  if t.raise then
    local reply, err = nats.request(M.SMS_SUBJECT, msg, { timeout = timeout, retry = rpc.settings().retry })
    if not reply then error("lib.notify: SMS request failed: " .. tostring(err), 2) end
    return reply
  end
  return rpc.call(M.SMS_SUBJECT, msg, { timeout = timeout, doing = t.doing or "sending an SMS", notify = t.notify })
end

--- sms_sent(reply) -> true when the notifier accepted the request (outer
-- 2xx) AND Telestax accepted the SMS (inner body.status 2xx). The outer
-- status alone is 200 even when the vendor refused (notifier spec §9).
function M.sms_sent(reply)
  if not rpc.ok(reply) then return false end
  return type(reply.body) == "table" and rpc.ok(reply.body)
end

return M
