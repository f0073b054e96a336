--- notifier: the email / Slack / SMS delivery capability (spec notifier.md).
-- Serves notification.email.request, notification.slack.request and
-- notification.sms.request in queue group "notifier"; delivers through SMTP
-- (ae.email, one session per email), one Slack incoming webhook and the
-- Telestax SMS REST API. No state besides the optional de-duplication of
-- requester retries in the main Redis (notifier:done:<request_id>).
--
-- Configuration: the unit's config table, else the original's environment
-- variables (docs/capabilities/notifier.md lists every key).
local nats = require "ae.nats"
local http = require "ae.http"
local email = require "ae.email"
local json = require "ae.json"
local log = require "ae.log"
local task = require "ae.task"
local clock = require "ae.clock"
local metrics = require "ae.metrics"
local unit = require "ae.unit"

local cfg = unit.config or {}
local settings = require("lib.config").new("notifier", cfg)

local config = {
  queue = settings:get("queue", nil, "notifier"),
  slack_url = settings:get("slack_url", "SLACK_URL", ""),
  slack_allow_http = settings:flag("slack_allow_http", "SLACK_ALLOW_HTTP", false),
  slack_budget = settings:number("slack_budget", "SLACK_TIMEOUT", 8, "non-negative"), -- seconds, all tries together
  slack_retry_waits = cfg.slack_retry_waits or { 1, 2 }, -- pauses between the 3 tries
  sender = settings:get("sender_email", "EMAIL_SENDER", "mettel.automation@intelygenz.com"),
  smtp_password = settings:get("smtp_password", "EMAIL_ACC_PWD", nil),
  smtp_username = settings:get("smtp_username", "SMTP_USERNAME", nil), -- default: the sender
  smtp_host = settings:get("smtp_host", "SMTP_HOST", "smtp.gmail.com"),
  smtp_port = settings:number("smtp_port", "SMTP_PORT", 587, "non-negative"),
  smtp_starttls = settings:flag("smtp_starttls", "SMTP_STARTTLS", true),
  smtp_verify = settings:flag("smtp_verify", "SMTP_VERIFY", true),
  smtp_ca = settings:get("smtp_ca", "SMTP_CA", nil),
  smtp_timeout = settings:number("smtp_timeout", "SMTP_TIMEOUT", 45, "non-negative"),
  telestax_url = settings:get("telestax_url", "TELESTAX_URL", ""),
  telestax_sid = settings:get("telestax_account_sid", "TELESTAX_ACCOUNT_SID", ""),
  telestax_token = settings:get("telestax_auth_token", "TELESTAX_AUTH_TOKEN", ""),
  telestax_from = settings:get("telestax_from_phone_number", "TELESTAX_FROM_PHONE_NUMBER", ""),
  telestax_wait = settings:number("telestax_wait_fixed", "TELESTAX_WAIT_FIXED", 15, "non-negative"),
  telestax_attempts = settings:number("telestax_attempts", "TELESTAX_STOP_AFTER_ATTEMPT", 2, "non-negative"),
  telestax_timeout = settings:number("telestax_timeout", "TELESTAX_TIMEOUT", 20, "non-negative"),
  telestax_verify = settings:flag("telestax_verify", "TELESTAX_VERIFY", true),
  dedup = settings:flag("dedup", "NOTIFIER_DEDUP", true),
  dedup_ttl = settings:number("dedup_ttl", "NOTIFIER_DEDUP_TTL", 600, "non-negative"),
}
config.smtp_username = config.smtp_username or config.sender
if config.smtp_password then log.secret(config.smtp_password) end
if config.telestax_token ~= "" then log.secret(config.telestax_token) end
-- the webhook URL's path is the secret of an incoming webhook
if config.slack_url:find("/services/") then log.secret(config.slack_url) end

local deliveries = metrics.counter("notifier_deliveries", "Deliveries by channel and outcome", { "channel", "outcome" })
local duplicates = metrics.counter("notifier_duplicates", "Requester retries answered from the de-duplication store")

-- ---------------------------------------------------------------------------
-- De-duplication of requester retries (notifier spec §9): a request_id
-- delivered in the last dedup_ttl seconds is answered with the stored reply.

local redis_client
local function store()
  if not config.dedup then return nil end
  if redis_client == nil then
    local ok, r = pcall(function() return require("ae.redis").connect("main") end)
    redis_client = ok and r or false
    if not ok then log.warning("notifier: de-duplication off, no main Redis: %s", tostring(r)) end
  end
  return redis_client or nil
end

local function dedup_key(channel, req)
  if type(req.request_id) ~= "string" or req.request_id == "" then return nil end
  return "notifier:done:" .. channel .. ":" .. req.request_id
end

local function previous_reply(key)
  local r = key and store()
  if not r then return nil end
  local ok, v = pcall(r.get, r, key)
  if not ok then
    log.warning("notifier: de-duplication lookup failed: %s", tostring(v))
    return nil
  end
  if type(v) ~= "string" then return nil end
  local reply = json.decode(v)
  if type(reply) == "table" then
    duplicates:inc()
    log.info("notifier: %s already handled, answering the stored reply", key)
    return reply
  end
end

local function remember(key, reply)
  local r = key and store()
  if not r then return end
  local ok, err = pcall(r.set, r, key, json.encode(reply), "NX", "EX", math.floor(config.dedup_ttl))
  if not ok then log.warning("notifier: de-duplication store failed: %s", tostring(err)) end
end

-- Wraps a handler: the request_id is echoed (json.null when absent) and a
-- repeated request_id gets the stored reply without a second delivery.
local function serve(subject, channel, handler)
  local sub, err = nats.serve(subject, function(req)
    local key = dedup_key(channel, req)
    local reply = previous_reply(key)
    if reply then return reply end
    reply = handler(req)
    if reply.request_id == nil then reply.request_id = req.request_id or json.null end
    remember(key, reply)
    return reply
  end, { queue = config.queue })
  if not sub then error("notifier: cannot serve " .. subject .. ": " .. tostring(err)) end
  return sub
end

-- ---------------------------------------------------------------------------
-- Email (spec §3)

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64V = {}
for i = 1, 64 do B64V[B64:byte(i)] = i - 1 end

--- base64 decode; line breaks and spaces are ignored, anything else that is
-- not in the alphabet, or a wrong length / padding, is an error.
local function unbase64(s)
  s = s:gsub("[ \t\r\n]", "")
  if #s % 4 ~= 0 then return nil, "invalid base64: incorrect padding" end
  local out = {}
  for i = 1, #s, 4 do
    local a, b, c, d = s:byte(i, i + 3)
    local va, vb, vc, vd = B64V[a], B64V[b], B64V[c], B64V[d]
    local last = i + 3 == #s
    if not va or not vb then return nil, "invalid base64 character near position " .. i end
    if c == 61 and d == 61 and last then
      out[#out + 1] = string.char(((va << 2) | (vb >> 4)) & 255)
    elseif d == 61 and last and vc then
      out[#out + 1] = string.char(((va << 2) | (vb >> 4)) & 255, ((vb << 4) | (vc >> 2)) & 255)
    elseif vc and vd then
      local n = (va << 18) | (vb << 12) | (vc << 6) | vd
      out[#out + 1] = string.char((n >> 16) & 255, (n >> 8) & 255, n & 255)
    else
      return nil, "invalid base64 character near position " .. i
    end
  end
  return table.concat(out)
end

--- image subtype from the leading bytes (the set Python's imghdr knew).
local function image_type(b)
  if b:sub(1, 8) == "\137PNG\r\n\26\n" then return "png" end
  if b:sub(1, 3) == "\255\216\255" or b:sub(7, 10) == "JFIF" or b:sub(7, 10) == "Exif" then return "jpeg" end
  if b:sub(1, 6) == "GIF87a" or b:sub(1, 6) == "GIF89a" then return "gif" end
  if b:sub(1, 2) == "MM" or b:sub(1, 2) == "II" then return "tiff" end
  if b:sub(1, 2) == "BM" then return "bmp" end
  if b:sub(1, 4) == "RIFF" and b:sub(9, 12) == "WEBP" then return "webp" end
  if b:sub(1, 4) == "\118\47\49\1" then return "exr" end
  if b:sub(1, 4) == "\89\166\106\149" then return "rast" end
  if b:sub(1, 2) == "\1\218" then return "rgb" end
  if b:sub(1, 8) == "#define " then return "xbm" end
  local p = b:match("^P([1-6])[ \t\n\r]")
  if p then return ({ "pbm", "pgm", "ppm", "pbm", "pgm", "ppm" })[tonumber(p)] end
  return nil
end

-- images / attachments: a list of {name = string, data = base64 string}
local function decode_parts(list, what)
  if type(list) ~= "table" or (next(list) ~= nil and #list == 0) then
    return nil, "email_data." .. what .. " must be a list"
  end
  local out = {}
  for i, p in ipairs(list) do
    if type(p) ~= "table" or type(p.name) ~= "string" or type(p.data) ~= "string" then
      return nil, string.format("email_data.%s[%d] must be {name: string, data: string}", what, i)
    end
    local bytes, err = unbase64(p.data)
    if not bytes then return nil, string.format("email_data.%s[%d] (%s): %s", what, i, p.name, err) end
    out[i] = { name = p.name, bytes = bytes }
  end
  return out
end

-- email_data -> ae.email.send options | nil, error text
local function email_options(d)
  for _, k in ipairs({ "subject", "recipient", "text", "html" }) do
    if type(d[k]) ~= "string" then return nil, "email_data." .. k .. " must be a string" end
  end
  local images, err = decode_parts(d.images, "images")
  if not images then return nil, err end
  local files
  files, err = decode_parts(d.attachments, "attachments")
  if not files then return nil, err end
  local inline = {}
  for i, img in ipairs(images) do
    local sub = image_type(img.bytes)
    if not sub then return nil, "email_data.images[" .. i .. "] (" .. img.name .. ") is not a recognisable image" end
    inline[i] = { cid = img.name, content = img.bytes, content_type = "image/" .. sub }
  end
  local attachments = {}
  for i, f in ipairs(files) do
    attachments[i] = { filename = f.name, content = f.bytes, content_type = 'text/csv; charset="utf-8"' }
  end
  return {
    url = string.format("smtp://%s:%d", config.smtp_host, math.floor(config.smtp_port)),
    starttls = config.smtp_starttls, verify = config.smtp_verify, ca = config.smtp_ca,
    username = config.smtp_password and config.smtp_username or nil, password = config.smtp_password,
    from = config.sender, to = d.recipient, subject = d.subject, text = d.text, html = d.html,
    inline = inline, attachments = attachments, multipart = "related", date = false, message_id = false,
    timeout = config.smtp_timeout,
  }
end

local function send_email(d)
  local opts, err = email_options(d)
  local ok, info
  if opts then
    local pok, a, b, c = pcall(email.send, opts)
    if not pok then
      err = tostring(a)
    else
      ok, err, info = a, b, c
    end
  end
  if not ok then
    log.error("Error: Email not sent: %s", tostring(err))
    deliveries:inc({ channel = "email", outcome = "error" })
    return 500
  end
  if info and info.refused and #info.refused > 0 then
    log.warning("email '%s': recipients refused: %s", d.subject, table.concat(info.refused, ", "))
  end
  log.info("Success: Email sent!")
  deliveries:inc({ channel = "email", outcome = "sent" })
  return 200
end

local function handle_email(req)
  local d = req.email_data
  if d == nil then error("email_data is missing from the request", 0) end -- generic 500 reply (platform 2.7)
  if d == json.null or d == "" then
    log.error("Error: Email not sent: email_data is empty")
    deliveries:inc({ channel = "email", outcome = "error" })
    return { request_id = req.request_id or json.null, status = 500 }
  end
  if type(d) ~= "table" then
    log.error("Error: Email not sent: email_data must be an object")
    deliveries:inc({ channel = "email", outcome = "error" })
    return { request_id = req.request_id or json.null, status = 500 }
  end
  return { request_id = req.request_id or json.null, status = send_email(d) }
end

-- ---------------------------------------------------------------------------
-- Slack (spec §4)

-- Python's repr() of a str, for the success text {'text': '...'}
local function py_repr(s)
  local q = "'"
  if s:find("'", 1, true) and not s:find('"', 1, true) then q = '"' end
  local out = s:gsub("[\\\n\r\t]", { ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" })
  if q == "'" then out = out:gsub("'", "\\'") end
  return q .. out .. q
end

local function message_text(m)
  if type(m) == "string" then return m end
  if m == json.null then return "None" end
  if type(m) == "boolean" then return m and "True" or "False" end
  if type(m) == "table" then return json.encode(m) end
  return tostring(m)
end

local function post_slack(text)
  local deadline = clock.now() + config.slack_budget
  local waits = config.slack_retry_waits
  local attempt = 0
  while true do
    attempt = attempt + 1
    local left = deadline - clock.now()
    local res, err = http.request {
      method = "POST", url = config.slack_url, json = { text = text }, timeout = math.max(0.5, math.min(left, 5)),
    }
    if res then return res end
    local wait = waits[attempt]
    if not wait or clock.now() + wait >= deadline then return nil, err, attempt end
    log.warning("Slack webhook attempt %d failed (%s), retrying in %s s", attempt, err, wait)
    task.sleep(wait)
  end
end

local function handle_slack(req)
  if req.message == nil then error("message is missing from the request", 0) end
  local text = message_text(req.message)
  local id = req.request_id or json.null
  local url = config.slack_url
  if not url:find("https://", 1, true) and not (config.slack_allow_http and url:find("^http://")) then
    log.error("Invalid URL")
    deliveries:inc({ channel = "slack", outcome = "invalid_url" })
    return { request_id = id, status = json.null }
  end
  local res, err, attempts = post_slack(text)
  if not res then
    local reason = tostring(err):gsub("^ae%.http: ", "")
    log.error("Slack webhook failed after %d attempts: %s", attempts, reason)
    deliveries:inc({ channel = "slack", outcome = "error" })
    return { request_id = id, status = "ERROR - " .. reason }
  end
  if res.status ~= 200 then
    log.error("Slack webhook returned HTTP %d: %s", res.status, res.body)
    deliveries:inc({ channel = "slack", outcome = "error" })
    return { request_id = id, status = "ERROR - Request returned HTTP " .. res.status }
  end
  deliveries:inc({ channel = "slack", outcome = "sent" })
  return {
    request_id = id,
    status = "Request with message {'text': " .. py_repr(text) .. "} returned a response with status code 200",
  }
end

-- ---------------------------------------------------------------------------
-- SMS (spec §5)

local function sms_invalid(v)
  return v == nil or v == json.null or v == "" or (type(v) == "table" and next(v) == nil)
end

-- One Telestax call -> result value R (spec §5.2) | nil, transport error
local function telestax_call(to, text)
  local res, err = http.request {
    method = "POST", url = config.telestax_url, timeout = config.telestax_timeout, verify = config.telestax_verify,
    headers = { Accept = "text/plain", ["Content-Type"] = "application/x-www-form-urlencoded" },
    auth = { user = config.telestax_sid, password = config.telestax_token },
    -- ae.http sorts form keys; the vendor order From, To, Body is built by hand
    body = table.concat({
      http.encode_form({ From = config.telestax_from }), http.encode_form({ To = to }),
      http.encode_form({ Body = text }),
    }, "&"),
  }
  if not res then return nil, err end
  if res.status >= 200 and res.status < 300 then
    local body = json.decode(res.body)
    if body == nil then body = res.body end
    return { status = res.status, body = body }
  end
  log.error("Error: SMS to %s not sent: %s", to, res.body)
  return { status = res.status, body = res.body }
end

local function handle_sms(req)
  local id = req.request_id or json.null
  local body = req.body
  if type(body) ~= "table" or sms_invalid(body.sms_data) or sms_invalid(body.sms_to)
      or type(body.sms_data) ~= "string" or type(body.sms_to) ~= "string" then
    deliveries:inc({ channel = "sms", outcome = "invalid" })
    return { request_id = id, status = 400, body = json.null }
  end
  local attempts = math.max(1, math.floor(config.telestax_attempts))
  local err
  for attempt = 1, attempts do
    local r
    r, err = telestax_call(body.sms_to, body.sms_data)
    if r then
      local ok = r.status >= 200 and r.status < 300
      deliveries:inc({ channel = "sms", outcome = ok and "sent" or "refused" })
      return { request_id = id, status = 200, body = r }
    end
    log.warning("SMS to %s: attempt %d of %d failed: %s", body.sms_to, attempt, attempts, tostring(err))
    if attempt < attempts then task.sleep(config.telestax_wait) end
  end
  deliveries:inc({ channel = "sms", outcome = "error" })
  local reason = tostring(err):gsub("^ae%.http: ", "")
  return { request_id = id, status = 200, body = "Error: SMS not sent, exception: " .. reason }
end

-- ---------------------------------------------------------------------------

serve("notification.email.request", "email", handle_email)
serve("notification.slack.request", "slack", handle_slack)
serve("notification.sms.request", "sms", handle_sms)
log.info("notifier serving notification.{email,slack,sms}.request in queue group '%s' (SMTP %s:%d, dedup %s)",
  config.queue, config.smtp_host, math.floor(config.smtp_port), config.dedup and "on" or "off")
