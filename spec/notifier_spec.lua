-- notifier (spec notifier.md §8): the real unit over real NATS, SMTP and HTTP,
-- against the sandbox's SMTP sink (scripts/sandbox/smtp_sink.py), Slack
-- webhook simulator and Telestax simulator. Assertions are on the replies and
-- on what the sink / simulators recorded.
local nats = require "ae.nats"
local json = require "ae.json"
local http = require "ae.http"
local httpd = require "ae.httpd"
local redis = require "ae.redis"
local clock = require "ae.clock"
local task = require "ae.task"
local engine = require "ae.engine"

local SCRIPT = "scripts/capabilities/notifier.lua"
local PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
local JPEG = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAEBAQ=="
local CSV = "ZWRnZV9uYW1lLGVudGVycHJpc2UKRTEsRW50Cg=="
local TEXT = "this is the accessible text for the email"

local smtp_sink = require "spec.helpers.smtp_sink"
local unb64, parse = smtp_sink.unb64, smtp_sink.parse

local sink, base, slack_url, telestax_url
local running = {}

-- ---------------------------------------------------------------- helpers

local function get_json(url)
  local res = assert(http.get(url, { timeout = 5 }))
  assert.equal(200, res.status)
  return assert(res:json())
end

local function sink_message(n)
  return parse(sink:message(n))
end

local function sim_calls(name, path)
  local url = base .. "/sim/" .. name .. "/_calls"
  if path then url = url .. "?path=" .. http.escape(path) end
  return get_json(url)
end

local function fault(name, f)
  local res = assert(http.post(base .. "/sim/" .. name .. "/_faults", { json = f, timeout = 5 }))
  assert.equal(201, res.status)
end

local function reset_sims()
  for _, name in ipairs({ "slack", "telestax" }) do
    assert(http.delete(base .. "/sim/" .. name .. "/_faults", { timeout = 5 }))
    assert(http.delete(base .. "/sim/" .. name .. "/_calls", { timeout = 5 }))
  end
  sink:clear()
end

local function notifier_config(over)
  local c = {
    slack_url = slack_url, slack_allow_http = true,
    smtp_host = "127.0.0.1", smtp_port = sink.port, smtp_starttls = false,
    smtp_username = "user", smtp_password = "secret", sender_email = "mettel.automation@intelygenz.com",
    telestax_url = telestax_url, telestax_account_sid = "ACCOUNT_SID", telestax_auth_token = "AUTH_TOKEN",
    telestax_from_phone_number = "16666666666", dedup = false,
  }
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

local function start_notifier(over, name)
  name = name or ("notifier_spec_" .. (#running + 1))
  assert(engine.start_unit { name = name, script = SCRIPT, config = notifier_config(over) })
  running[#running + 1] = name
  assert(nats.flush(2))
  return name
end

local function stop_all()
  for _, name in ipairs(running) do engine.stop_unit(name) end
  running = {}
end

local function request(subject, msg, timeout)
  return assert(nats.request(subject, msg, { timeout = timeout or 10 }))
end

local function email_request(over, id)
  local d = {
    subject = "Last contact edges (2021-02-01)", recipient = "noc-team@mettel.net", text = TEXT,
    html = "<html><body><table><tr><td>E1</td></tr></table></body></html>",
    images = json.array({}), attachments = json.array({}),
  }
  for k, v in pairs(over or {}) do d[k] = v end
  return { request_id = id or nats.new_request_id(), email_data = d }
end

-- ---------------------------------------------------------------- setup

setup(function()
  httpd.start("127.0.0.1:0")
  base = "http://" .. httpd.address()
  sink = smtp_sink.start()
  assert(engine.start_unit { name = "notifier_spec_slack_sim", script = "scripts/sandbox/slack_sim.lua" })
  assert(engine.start_unit { name = "notifier_spec_telestax_sim", script = "scripts/sandbox/telestax_sim.lua" })
  slack_url = base .. "/sim/slack/services/T000/B000/XXXXXXXX"
  telestax_url = base .. "/sim/telestax/restcomm/2012-04-24/Accounts/ACCOUNT_SID/SMS/Messages.json"
end)

teardown(function()
  stop_all()
  engine.stop_unit("notifier_spec_slack_sim")
  engine.stop_unit("notifier_spec_telestax_sim")
  if sink then sink:stop() end
end)

before_each(reset_sims)
after_each(function()
  stop_all()
  if clock.is_manual() then clock.unfreeze() end
end)

-- ---------------------------------------------------------------- email

describe("notification.email.request", function()
  it("case 1: one recipient, no images/attachments: multipart/related holding only the alternative", function()
    start_notifier()
    local msg = email_request()
    local reply = request("notification.email.request", msg, 20)
    assert.same({ request_id = msg.request_id, status = 200 }, reply)
    local list = sink:messages()
    assert.equal(1, #list)
    assert.equal("mettel.automation@intelygenz.com", list[1].mail_from)
    assert.same({ "noc-team@mettel.net" }, list[1].rcpt_tos)
    assert.equal("user", list[1].auth)
    local m = sink_message(list[1].n)
    assert.equal("mettel.automation@intelygenz.com", m.headers.from)
    assert.equal("noc-team@mettel.net", m.headers.to)
    assert.equal("Last contact edges (2021-02-01)", m.headers.subject)
    assert.equal("1.0", m.headers["mime-version"])
    assert.is_nil(m.headers.date)
    assert.is_nil(m.headers["message-id"])
    assert.is_nil(m.headers["reply-to"])
    assert.matches("^multipart/related", m.headers["content-type"])
    assert.equal(1, #m.parts)
    local alt = m.parts[1]
    assert.matches("^multipart/alternative", alt.headers["content-type"])
    assert.equal(2, #alt.parts)
    assert.matches("^text/plain", alt.parts[1].headers["content-type"])
    assert.equal(TEXT, alt.parts[1].body)
    assert.matches("^text/html", alt.parts[2].headers["content-type"])
    assert.equal(msg.email_data.html, alt.parts[2].body)
  end)

  it("case 2: two recipients: one RCPT TO each, To header as given", function()
    start_notifier()
    local reply = request("notification.email.request", email_request({ recipient = "a@x.com, b@y.com" }), 20)
    assert.equal(200, reply.status)
    local list = sink:messages()
    assert.same({ "a@x.com", "b@y.com" }, list[1].rcpt_tos)
    assert.equal("a@x.com, b@y.com", sink_message(list[1].n).headers.to)
  end)

  it("splits on commas without spaces and drops the empty entry of a trailing separator", function()
    start_notifier()
    local reply = request("notification.email.request", email_request({ recipient = "a@x.com,b@y.com, " }), 20)
    assert.equal(200, reply.status)
    assert.same({ "a@x.com", "b@y.com" }, sink:messages()[1].rcpt_tos)
  end)

  it("case 3: PNG and JPEG images become image/png and image/jpeg parts with Content-IDs, in order", function()
    start_notifier()
    local reply = request("notification.email.request", email_request({
      html = '<img src="cid:logo"><img src="cid:header">',
      images = { { name = "logo", data = PNG }, { name = "header", data = JPEG } },
    }), 20)
    assert.equal(200, reply.status)
    local m = sink_message(sink:messages()[1].n)
    assert.equal(3, #m.parts)
    assert.matches("^multipart/alternative", m.parts[1].headers["content-type"])
    assert.equal("image/png", m.parts[2].headers["content-type"])
    assert.equal("<logo>", m.parts[2].headers["content-id"])
    assert.equal("base64", m.parts[2].headers["content-transfer-encoding"])
    assert.equal(unb64(PNG), unb64(m.parts[2].body))
    assert.equal("image/jpeg", m.parts[3].headers["content-type"])
    assert.equal("<header>", m.parts[3].headers["content-id"])
  end)

  it("case 4: any attachment is text/csv; charset=utf-8 with its file name", function()
    start_notifier()
    local reply = request("notification.email.request", email_request({
      attachments = { { name = "last_contact.csv", data = CSV }, { name = "report.xlsx", data = CSV } },
    }), 20)
    assert.equal(200, reply.status)
    local m = sink_message(sink:messages()[1].n)
    assert.equal(3, #m.parts)
    for i, name in ipairs({ "last_contact.csv", "report.xlsx" }) do
      local p = m.parts[i + 1]
      assert.equal('text/csv; charset="utf-8"', p.headers["content-type"])
      assert.equal("base64", p.headers["content-transfer-encoding"])
      assert.equal('attachment; filename="' .. name .. '"', p.headers["content-disposition"])
      assert.equal("edge_name,enterprise\nE1,Ent\n", unb64(p.body))
    end
  end)

  it("encodes a non-ASCII subject (RFC 2047) and non-ASCII bodies as utf-8 base64", function()
    start_notifier()
    local msg = email_request({ subject = "Señal caída", text = "añadido" })
    local reply = request("notification.email.request", msg, 20)
    assert.equal(200, reply.status)
    local m = sink_message(sink:messages()[1].n)
    assert.matches("^=%?UTF%-8%?B%?", m.headers.subject)
    local plain = m.parts[1].parts[1]
    assert.matches("charset=utf%-8", plain.headers["content-type"])
    assert.equal("añadido", unb64(plain.body))
  end)

  it("cases 5 and 6: email_data \"\" or null: status 500 and nothing delivered", function()
    start_notifier()
    for _, v in ipairs({ "", json.null }) do
      local id = nats.new_request_id()
      local reply = request("notification.email.request", { request_id = id, email_data = v })
      assert.same({ request_id = id, status = 500 }, reply)
    end
    assert.equal(0, #sink:messages())
  end)

  it("email_data absent: the generic handler-failure reply (status 500), nothing delivered", function()
    start_notifier()
    local reply = request("notification.email.request", { request_id = "R1", message = "x" })
    assert.equal("R1", reply.request_id)
    assert.equal(500, reply.status)
    assert.equal(0, #sink:messages())
  end)

  it("case 7: email_data without attachments: 500, nothing delivered", function()
    start_notifier()
    local msg = email_request()
    msg.email_data.attachments = nil
    assert.equal(500, request("notification.email.request", msg).status)
    local msg2 = email_request({ subject = 42 })
    assert.equal(500, request("notification.email.request", msg2).status)
    assert.equal(0, #sink:messages())
  end)

  it("case 8: an image that is not a recognisable image, or invalid base64: 500, nothing delivered", function()
    start_notifier()
    local r1 = request("notification.email.request",
      email_request({ images = { { name = "logo", data = CSV } } }))
    assert.equal(500, r1.status)
    local r2 = request("notification.email.request",
      email_request({ attachments = { { name = "a.csv", data = "not base64!" } } }))
    assert.equal(500, r2.status)
    assert.equal(0, #sink:messages())
  end)

  it("case 9: the SMTP server rejects the login: 500", function()
    start_notifier({ smtp_password = "wrong-password" })
    assert.equal(500, request("notification.email.request", email_request(), 20).status)
    assert.equal(0, #sink:messages())
  end)

  it("an unreachable SMTP server: 500", function()
    start_notifier({ smtp_port = 1 })
    assert.equal(500, request("notification.email.request", email_request(), 20).status)
  end)

  it("sends over STARTTLS with the sink's certificate", function()
    start_notifier({ smtp_port = sink.tls_port, smtp_starttls = true, smtp_ca = sink.ca })
    assert.equal(200, request("notification.email.request", email_request(), 20).status)
    assert.is_true(sink:messages()[1].tls)
  end)

  it("case 10: one of two recipients refused: delivered to the other, 200", function()
    start_notifier()
    local msg = email_request({ recipient = "refuse1@x.com, ok@y.com" })
    local reply = request("notification.email.request", msg, 20)
    assert.equal(200, reply.status)
    local list = sink:messages()
    assert.same({ "ok@y.com" }, list[1].rcpt_tos)
    assert.same({ "refuse1@x.com" }, list[1].refused)
  end)

  it("case 11: all recipients refused: 500", function()
    start_notifier()
    local msg = email_request({ recipient = "refuse1@x.com, refuse2@y.com" })
    local reply = request("notification.email.request", msg, 20)
    assert.equal(500, reply.status)
    assert.equal(0, #sink:messages())
  end)

  it("case 12: an offloaded request is read from Redis, its key deleted, the email sent and replied", function()
    start_notifier()
    local r = redis.connect("main")
    local token = nats.new_request_id()
    local msg = email_request()
    assert(r:set(token, json.encode(msg), "EX", 300))
    local reply = request("notification.email.request", { token = token, is_stored = true }, 20)
    assert.same({ request_id = msg.request_id, status = 200 }, reply)
    assert.is_nil(r:get(token))
    assert.equal(1, #sink:messages())
  end)

  it("a request over 1 MB (big CSV) goes through the Redis offload end to end", function()
    start_notifier()
    local big = string.rep("QUJD", 300000) -- 1.2 MB of base64
    local msg = email_request({ attachments = { { name = "big.csv", data = big } } })
    local reply = request("notification.email.request", msg, 30)
    assert.equal(200, reply.status)
    assert.is_true(sink:messages()[1].size > 900000)
  end)

  it("case 13: a published email (no reply subject) is sent and nothing is replied", function()
    start_notifier()
    local replies = 0
    local sub = assert(nats.subscribe("_INBOX.>", function() replies = replies + 1 end))
    assert(nats.publish("notification.email.request", email_request()))
    local list
    for _ = 1, 100 do
      list = sink:messages()
      if #list > 0 then break end
      task.sleep(0.05)
    end
    assert.equal(1, #list)
    task.sleep(0.2)
    sub:unsubscribe()
    assert.equal(0, replies)
  end)
end)

-- ---------------------------------------------------------------- slack

describe("notification.slack.request", function()
  local MSG = "Detail 4806634 of outage ticket 5126381 reopened: https://app.bruin.com/t/5126381"

  it("case 14: webhook 200: one POST of {\"text\": message}; the reply describes it", function()
    start_notifier()
    local id = nats.new_request_id()
    local reply = request("notification.slack.request", { request_id = id, message = MSG })
    assert.same({
      request_id = id,
      status = "Request with message {'text': '" .. MSG .. "'} returned a response with status code 200",
    }, reply)
    local calls = sim_calls("slack")
    assert.equal(1, #calls)
    assert.equal("POST", calls[1].method)
    assert.equal("/services/T000/B000/XXXXXXXX", calls[1].path)
    assert.matches("^application/json", calls[1].headers["content-type"])
    assert.same({ text = MSG }, calls[1].json)
    local msgs = get_json(base .. "/sim/slack/_messages")
    assert.equal(MSG, msgs[1].text)
  end)

  it("renders the message as Python did: double quotes when it holds a single quote, \\n for newlines", function()
    start_notifier()
    local reply = request("notification.slack.request", { request_id = "R", message = "it's\ndown" })
    assert.equal([[Request with message {'text': "it's\ndown"} returned a response with status code 200]],
      reply.status)
    assert.equal("it's\ndown", sim_calls("slack")[1].json.text)
  end)

  it("non-string messages are posted as text", function()
    start_notifier()
    request("notification.slack.request", { request_id = "R", message = 9999 })
    assert.equal("9999", sim_calls("slack")[1].json.text)
  end)

  it("cases 15 and 16: webhook 500 / 201: ERROR - Request returned HTTP <code>, not retried", function()
    start_notifier()
    for _, code in ipairs({ 500, 201 }) do
      fault("slack", { path = "^/services/", status = code, body = "x", times = 1 })
      local reply = request("notification.slack.request", { request_id = "R", message = MSG })
      assert.equal("ERROR - Request returned HTTP " .. code, reply.status)
    end
    assert.equal(2, #sim_calls("slack"))
  end)

  it("case 17: SLACK_URL without https:// (and no sandbox switch): no call, status null", function()
    start_notifier({ slack_allow_http = false })
    local reply = request("notification.slack.request", { request_id = "R", message = MSG })
    assert.equal("R", reply.request_id)
    assert.equal(json.null, reply.status)
    assert.equal(0, #sim_calls("slack"))
  end)

  it("network error: retried inside the budget (3 tries, 1 s and 2 s apart), then ERROR - <reason>", function()
    start_notifier({ slack_url = "http://127.0.0.1:1/services/T/B/X" })
    local t0 = clock.monotonic()
    local reply = request("notification.slack.request", { request_id = "R", message = MSG })
    local took = clock.monotonic() - t0
    assert.matches("^ERROR %- ", reply.status)
    assert.matches("127%.0%.0%.1", reply.status)
    assert.is_true(took >= 2.9 and took < 8, "took " .. took)
  end)

  it("a webhook slower than the budget: at most 8 s, then ERROR - <timeout>", function()
    start_notifier()
    fault("slack", { path = "^/services/", latency = 30 })
    clock.freeze()
    local reply
    task.spawn(function() reply = nats.request("notification.slack.request", { request_id = "R", message = MSG },
      { timeout = 10 }) end)
    clock.advance(9, { settle = 0.2 })
    assert.is_table(reply)
    assert.matches("^ERROR %- .*[Tt]imed out", reply.status)
  end)

  it("missing message: generic handler-failure reply, nothing posted", function()
    start_notifier()
    local reply = request("notification.slack.request", { request_id = "R" })
    assert.equal(500, reply.status)
    assert.equal(0, #sim_calls("slack"))
  end)

  it("case 23: no request_id: the webhook is still called once and the reply has request_id null", function()
    start_notifier()
    local reply = request("notification.slack.request", { message = MSG })
    assert.equal(json.null, reply.request_id)
    assert.matches("status code 200$", reply.status)
    assert.equal(1, #sim_calls("slack"))
  end)

  it("case 24: three instances in queue group notifier: one request, exactly one webhook POST", function()
    start_notifier(nil, "notifier_spec_a")
    start_notifier(nil, "notifier_spec_b")
    start_notifier(nil, "notifier_spec_c")
    local reply = request("notification.slack.request", { request_id = "R", message = MSG })
    assert.matches("status code 200$", reply.status)
    task.sleep(0.3)
    assert.equal(1, #sim_calls("slack"))
  end)

  it("de-duplication: a requester retry with the same request_id is answered without a second POST", function()
    start_notifier({ dedup = true })
    local id = nats.new_request_id()
    local r1 = request("notification.slack.request", { request_id = id, message = MSG })
    local r2 = request("notification.slack.request", { request_id = id, message = MSG })
    assert.same(r1, r2)
    assert.equal(1, #sim_calls("slack"))
  end)
end)

-- ---------------------------------------------------------------- sms

describe("notification.sms.request", function()
  local function sms(to, text, id)
    return { request_id = id or nats.new_request_id(), body = { sms_to = to, sms_data = text } }
  end

  it("case 18: Telestax 200 JSON: one form POST with Basic auth; reply 200 with the vendor JSON", function()
    start_notifier()
    local msg = sms("17777777777", "This is a dummy SMS")
    local reply = request("notification.sms.request", msg, 30)
    assert.equal(msg.request_id, reply.request_id)
    assert.equal(200, reply.status)
    assert.equal(200, reply.body.status)
    assert.equal("queued", reply.body.body.status)
    assert.equal("17777777777", reply.body.body.to)
    local calls = sim_calls("telestax")
    assert.equal(1, #calls)
    assert.equal("/restcomm/2012-04-24/Accounts/ACCOUNT_SID/SMS/Messages.json", calls[1].path)
    assert.equal("From=16666666666&To=17777777777&Body=This+is+a+dummy+SMS", calls[1].body)
    assert.equal("Basic QUNDT1VOVF9TSUQ6QVVUSF9UT0tFTg==", calls[1].headers.authorization)
    assert.equal("application/x-www-form-urlencoded", calls[1].headers["content-type"])
    assert.equal("text/plain", calls[1].headers.accept)
    local sent = get_json(base .. "/sim/telestax/_messages")
    assert.equal("This is a dummy SMS", sent[1].body)
  end)

  it("case 19: Telestax 401 Authentication failed: one POST; reply 200 with {status 401, body text}", function()
    start_notifier({ telestax_auth_token = "WRONG" })
    local reply = request("notification.sms.request", sms("17777777777", "hello"), 30)
    assert.equal(200, reply.status)
    assert.same({ status = 401, body = "Authentication failed" }, reply.body)
    assert.equal(1, #sim_calls("telestax"))
  end)

  it("case 20: Telestax unreachable: two attempts 15 s apart, then the error string", function()
    start_notifier({ telestax_url = "http://127.0.0.1:1/restcomm/2012-04-24/Accounts/ACCOUNT_SID/SMS/Messages.json" })
    clock.freeze()
    local reply
    task.spawn(function()
      reply = nats.request("notification.sms.request", sms("17777777777", "hello"), { timeout = 60 })
    end)
    clock.advance(14, { settle = 0.3 })
    assert.is_nil(reply)
    clock.advance(2, { settle = 0.3 })
    assert.is_table(reply)
    assert.equal(200, reply.status)
    assert.matches("^Error: SMS not sent, exception: ", reply.body)
  end)

  it("case 20 (timeouts): each attempt reaches Telestax; the second starts 15 s after the first failed", function()
    start_notifier({ telestax_timeout = 2 })
    fault("telestax", { path = "/SMS/", latency = 5 })
    clock.freeze()
    local reply
    task.spawn(function()
      reply = nats.request("notification.sms.request", sms("17777777777", "hello"), { timeout = 60 })
    end)
    clock.advance(30, { settle = 0.3 })
    assert.is_table(reply)
    assert.matches("^Error: SMS not sent, exception: .*[Tt]imed out", reply.body)
    local calls = sim_calls("telestax")
    assert.equal(2, #calls)
    assert.near(17, calls[2].at - calls[1].at, 0.5)
  end)

  it("case 21: Telestax 200 with non-JSON body OK: one POST, reply body {status 200, body \"OK\"}", function()
    start_notifier()
    fault("telestax", { path = "/SMS/", status = 200, body = "OK" })
    local reply = request("notification.sms.request", sms("17777777777", "hello"), 30)
    assert.equal(200, reply.status)
    assert.same({ status = 200, body = "OK" }, reply.body)
    assert.equal(1, #sim_calls("telestax"))
  end)

  it("case 22: missing/empty sms_to, empty sms_data, absent body: 400 with body null, no call", function()
    start_notifier()
    local bad = {
      { request_id = "R1", body = { sms_data = "x" } },
      { request_id = "R2", body = { sms_to = json.array({}), sms_data = "x" } },
      { request_id = "R3", body = { sms_to = "15551234567", sms_data = "" } },
      { request_id = "R4" },
      { request_id = "R5", body = json.null },
      { request_id = "R6", body = { sms_to = "", sms_data = "x" } },
    }
    for _, msg in ipairs(bad) do
      local reply = request("notification.sms.request", msg)
      assert.same({ request_id = msg.request_id, status = 400, body = json.null }, reply)
    end
    assert.equal(0, #sim_calls("telestax"))
  end)
end)

-- ---------------------------------------------------------------- lib.notify

describe("lib.notify", function()
  local notify = require "lib.notify"

  it("slack, email and sms build the original envelopes and return the replies", function()
    start_notifier()
    assert.is_true(notify.slack("from lib.notify"))
    assert.equal("from lib.notify", sim_calls("slack")[1].json.text)
    local reply = notify.email { subject = "s", recipient = "a@x.com", text = TEXT, html = "<div>x</div>" }
    assert.equal(200, reply.status)
    assert.equal(1, #sink:messages())
    local s = notify.sms { to = "15551234567", text = "hi" }
    assert.is_true(notify.sms_sent(s))
    assert.is_false(notify.sms_sent({ status = 200, body = { status = 401, body = "Authentication failed" } }))
    assert.is_false(notify.sms_sent({ status = 200, body = "Error: SMS not sent, exception: x" }))
    assert.has_error(function() notify.sms { to = 15551234567, text = "hi" } end)
  end)
end)
