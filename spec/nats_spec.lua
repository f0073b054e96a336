-- ae.nats against a real nats-server and redis-server: the wire rules and
-- behaviour cases 1-16 and 23 of spec/platform.md section 12.
local nats = require "ae.nats"
local core = require "ae.core.nats"
local json = require "ae.json"
local task = require "ae.task"
local clock = require "ae.clock"

local seq = 0
local function subject(name)
  seq = seq + 1
  return string.format("spec.%s.%d.%s", name, seq, nats.new_request_id())
end

local function redis() return require("ae.redis").connect("main") end

-- wait (real time) until cond() or the deadline
local function eventually(cond, seconds)
  local t0 = clock.monotonic()
  while clock.monotonic() - t0 < (seconds or 3) do
    if cond() then return true end
    task.sleep(0.01)
  end
  return cond()
end

-- a raw subscriber that records every message
local function recorder(subj)
  local rec = { msgs = {} }
  rec.sub = assert(nats.subscribe(subj, function(msg, m)
    rec.msgs[#rec.msgs + 1] = { msg = msg, m = m, at = clock.now() }
  end))
  assert(nats.flush(2))
  return rec
end

-- records the raw payloads (an offload stub stays a stub: a second
-- subscriber resolving it would consume the stored message, GET then DEL)
local function raw_recorder(subj)
  local rec = { msgs = {} }
  rec.sub = assert(core.subscribe(nats.default()._h, subj, nil, function(s, reply, data)
    rec.msgs[#rec.msgs + 1] = { m = { subject = s, reply = reply, data = data }, at = clock.now() }
  end))
  assert(nats.flush(2))
  return rec
end

local function raw_publish(subj, data, reply)
  return core.publish(nats.default()._h, subj, data, reply)
end

-- a message whose compact JSON is exactly n bytes
local function message_of_size(n)
  local base = #nats.serialize({ request_id = "X", body = "" })
  return { request_id = "X", body = string.rep("a", n - base) }
end

describe("ae.nats", function()
  it("new_request_id gives 22 characters of the shortuuid alphabet, all different", function()
    local seen = {}
    for _ = 1, 200 do
      local id = nats.new_request_id()
      assert.equal(22, #id)
      assert.is_nil(id:find("[^23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz]"))
      assert.is_nil(seen[id])
      seen[id] = true
    end
  end)

  it("connects to the default server and reports its status", function()
    assert(nats.wait())
    local st = nats.status()
    assert.is_true(st.connected)
    assert.equal("ready", st.state)
    assert.truthy(st.server)
    assert.equal(0, st.reconnects)
  end)

  it("round-trips a request through serve with the reply envelope", function()
    local subj = subject("rt")
    local seen
    local sub = assert(nats.serve(subj, function(req)
      seen = req
      return { status = 200, body = { echo = req.body, empty_list = json.array(), empty_obj = json.object() } }
    end, { queue = "rt" }))
    assert(nats.flush(2))
    local reply = assert(nats.request(subj, { request_id = "Vt3kQ8mZpR2cXb7nHs4eWa", body = { n = 1, s = "é" } },
      { timeout = 2 }))
    assert.equal(200, reply.status)
    assert.equal("Vt3kQ8mZpR2cXb7nHs4eWa", reply.request_id)
    assert.same({ n = 1, s = "é" }, { n = reply.body.echo.n, s = reply.body.echo.s })
    assert.is_true(json.is_array(reply.body.empty_list))
    assert.is_false(json.is_array(reply.body.empty_obj))
    assert.matches("^_INBOX%.", seen.response_topic)
    sub:unsubscribe()
  end)

  it("sends compact JSON with non-ASCII escaped, like the original", function()
    local subj = subject("wire")
    local rec = recorder(subj)
    assert(nats.publish(subj, { request_id = "r", body = { a = "é" } }))
    assert.is_true(eventually(function() return #rec.msgs == 1 end))
    local data = rec.msgs[1].m.data
    assert.is_nil(data:find("[ \n]"))
    assert.truthy(data:find('"a":"\\u00e9"', 1, true))
    assert.equal("é", rec.msgs[1].msg.body.a)
    rec.sub:unsubscribe()
  end)

  -- case 1
  it("sends a message of exactly 1,048,576 bytes inline, nothing in Redis", function()
    local subj = subject("inline")
    local rec = recorder(subj)
    local before = redis():call("DBSIZE")
    local msg = message_of_size(1048576)
    assert.equal(1048576, #nats.serialize(msg))
    assert(nats.publish(subj, msg))
    assert.is_true(eventually(function() return #rec.msgs == 1 end))
    assert.equal(1048576, #rec.msgs[1].m.data)
    assert.equal(before, redis():call("DBSIZE"))
    rec.sub:unsubscribe()
  end)

  -- case 2
  it("offloads 1,048,577 bytes to Redis (SET token json EX 300) and sends the token form", function()
    local subj = subject("offload")
    local rec = recorder(subj)
    local msg = message_of_size(1048577)
    local text = nats.serialize(msg)
    assert(nats.publish(subj, msg))
    assert.is_true(eventually(function() return #rec.msgs == 1 end))
    local data = rec.msgs[1].m.data
    local token = data:match('^{"token":"([23456789A-HJ-NP-Za-km-z]+)","is_stored":true}$')
    assert.truthy(token, data)
    assert.equal(22, #token)
    -- the raw subscriber resolved the offload (GET + DEL) before calling us
    assert.equal(#msg.body, #rec.msgs[1].msg.body)
    assert.equal(0, redis():call("EXISTS", token))
    -- store again by hand to check the stored text and the expiry
    local r = redis()
    assert(nats.publish(subj .. ".x", msg)) -- nobody listens: the key stays
    local keys = r:call("KEYS", "*")
    local found
    for _, k in ipairs(keys) do
      -- other specs' keys share this Redis: read strings only
      if r:call("TYPE", k) == "string" and r:call("GET", k) == text then found = k end
    end
    assert.truthy(found)
    local ttl = r:call("TTL", found)
    assert.is_true(ttl > 290 and ttl <= 300)
    r:call("DEL", found)
    rec.sub:unsubscribe()
  end)

  -- case 3
  it("recovers an offloaded request before the handler: GET, DEL, plus response_topic", function()
    local subj = subject("recover")
    local r = redis()
    local token = nats.new_request_id()
    r:call("SET", token, '{"request_id":"R1","body":{"k":"v"}}', "EX", 300)
    local seen
    local sub = assert(nats.serve(subj, function(req)
      seen = req
      return { status = 200, body = "ok" }
    end))
    assert(nats.flush(2))
    local reply = assert(nats.request(subj, { token = token, is_stored = true }, { timeout = 2 }))
    assert.equal(200, reply.status)
    assert.equal("R1", reply.request_id)
    assert.equal("R1", seen.request_id)
    assert.equal("v", seen.body.k)
    assert.matches("^_INBOX%.", seen.response_topic)
    assert.is_nil(seen.token)
    assert.equal(0, r:call("EXISTS", token))
    sub:unsubscribe()
  end)

  -- case 4
  it("opts.decode: an offloaded reply's body list is streamed to json.decode_each's callback", function()
    local subj = subject("bigstream")
    local rows = {}
    for i = 1, 30000 do rows[i] = { id = i, name = "edge-with-a-long-name-" .. i } end -- ~1.3 MB: offloaded
    local sub = assert(nats.serve(subj, function() return { status = 200, body = rows } end))
    assert(nats.flush(2))
    local got, decoded, kinds, kept = 0, 0, {}, nil
    local reply = assert(nats.request(subj, { request_id = "S1", body = {} }, { timeout = 5,
      decode = function(text)
        kept = text
        decoded = decoded + 1
        kinds[decoded] = type(text) == "string" and "string" or tostring(getmetatable(text).__name)
        got = 0 -- a fresh count per decode: the stub, then the recovered text
        return json.decode_each(text, "body", function(row, i)
          assert.equal(i, row.id)
          got = got + 1
        end)
      end }))
    assert.equal(200, reply.status)
    assert.equal("S1", reply.request_id)
    assert.is_nil(reply.body)
    assert.equal(30000, got)
    assert.equal(2, decoded) -- the stub and the offloaded text
    assert.same({ "string", "ae.json.buffer" }, kinds) -- read from Redis a chunk at a time into a json.buffer
    assert.equal(0, #kept) -- freed once decode returned
    assert.has_error(function() json.decode(kept) end, "ae.json.decode: the json.buffer was freed")
    assert.has_error(function() nats.request(subj, {}, { decode = "json" }) end)
    sub:unsubscribe()
  end)

  it("offloads a reply over 1 MB; the requester recovers it and deletes the key", function()
    local subj = subject("bigreply")
    local big = string.rep("z", 1100000)
    local wire = raw_recorder("_INBOX.>")
    local sub = assert(nats.serve(subj, function(req)
      return { status = 200, body = { data = big, id = req.request_id } }
    end))
    assert(nats.flush(2))
    local before = redis():call("DBSIZE")
    local reply = assert(nats.request(subj, { request_id = "B1", body = {} }, { timeout = 3 }))
    assert.equal(200, reply.status)
    assert.equal(#big, #reply.body.data)
    assert.equal("B1", reply.request_id)
    assert.is_true(eventually(function() return #wire.msgs >= 1 end))
    assert.matches('^{"token":"[^"]+","is_stored":true}$', wire.msgs[1].m.data)
    assert.equal(before, redis():call("DBSIZE"))
    wire.sub:unsubscribe()
    sub:unsubscribe()
  end)

  -- cases 5, 6
  it("drops is_stored without token (no reply, keeps serving); string/1 is_stored are not offloads", function()
    local subj = subject("stub")
    local calls = {}
    local sub = assert(nats.serve(subj, function(req)
      calls[#calls + 1] = req
      return { status = 200, body = req.is_stored }
    end))
    assert(nats.flush(2))
    local reply, err = nats.request(subj, { is_stored = true }, { timeout = 0.3 })
    assert.is_nil(reply)
    assert.matches("timeout", err)
    assert.equal(0, #calls)
    local r1 = assert(nats.request(subj, { is_stored = "true", token = "T" }, { timeout = 2 }))
    assert.equal("true", r1.body)
    local r2 = assert(nats.request(subj, { is_stored = 1, token = "T" }, { timeout = 2 }))
    assert.equal(1, r2.body)
    assert.equal(2, #calls)
    assert.equal("T", calls[1].token)
    sub:unsubscribe()
  end)

  -- case 7
  it("wraps non-object messages as {\"message\": v}", function()
    local subj = subject("wrap")
    local rec = recorder(subj)
    assert(nats.publish(subj, "hi"))
    assert(nats.publish(subj, 9999))
    assert(nats.publish(subj, json.array({ 1, 2 })))
    assert(nats.publish(subj, "some_str_message"))
    assert.is_true(eventually(function() return #rec.msgs == 4 end))
    assert.equal('{"message":"hi"}', rec.msgs[1].m.data)
    assert.equal('{"message":9999}', rec.msgs[2].m.data)
    assert.equal('{"message":[1,2]}', rec.msgs[3].m.data)
    assert.equal('{"message":"some_str_message"}', rec.msgs[4].m.data)
    -- a request too
    local sub = assert(nats.serve(subj .. ".req", function(req) return { status = 200, body = req.message } end))
    assert(nats.flush(2))
    assert.equal("hi", assert(nats.request(subj .. ".req", "hi", { timeout = 2 })).body)
    sub:unsubscribe()
    rec.sub:unsubscribe()
  end)

  -- case 8
  it("overwrites a response_topic sent by the requester", function()
    local subj = subject("rtopic")
    local seen
    local sub = assert(nats.serve(subj, function(req)
      seen = req.response_topic
      return { status = 200 }
    end))
    assert(nats.flush(2))
    assert(nats.request(subj, { request_id = "1", response_topic = "x" }, { timeout = 2 }))
    assert.are_not.equal("x", seen)
    assert.matches("^_INBOX%.", seen)
    sub:unsubscribe()
  end)

  -- case 9
  it("replies {request_id, body = error text, status = 500} when the handler raises", function()
    local subj = subject("boom")
    local sub = assert(nats.serve(subj, function() error("vendor exploded", 0) end))
    assert(nats.flush(2))
    local reply = assert(nats.request(subj, { request_id = "E1", body = {} }, { timeout = 2 }))
    assert.same({ request_id = "E1", body = "vendor exploded", status = 500 }, {
      request_id = reply.request_id, body = reply.body, status = reply.status })
    -- without a request_id the reply carries null
    local reply2 = assert(nats.request(subj, { body = {} }, { timeout = 2 }))
    assert.equal(json.null, reply2.request_id)
    assert.equal(500, reply2.status)
    sub:unsubscribe()
  end)

  -- case 10 + garbage, truncated, non-object, bad offload payloads
  it("logs and drops undecodable input without a reply and keeps serving", function()
    local subj = subject("garbage")
    local calls = 0
    local sub = assert(nats.serve(subj, function()
      calls = calls + 1
      return { status = 200 }
    end))
    local inbox = subject("inbox")
    local replies = recorder(inbox)
    local bad_token = nats.new_request_id()
    redis():call("SET", bad_token, "{not json", "EX", 300)
    local payloads = { "{bad", '{"request_id":"x","body":{"a":', "", "\255\254", "[1,2,3]", '"str"', "null",
      string.rep("[", 5000), '{"token":"' .. bad_token .. '","is_stored":true}' }
    for _, p in ipairs(payloads) do assert(raw_publish(subj, p, inbox)) end
    assert(nats.flush(2))
    task.sleep(0.2)
    assert.equal(0, calls)
    assert.equal(0, #replies.msgs)
    assert.equal(0, redis():call("EXISTS", bad_token)) -- consumed even though it was bad
    assert.equal(200, assert(nats.request(subj, { request_id = "ok" }, { timeout = 2 })).status)
    assert.equal(1, calls)
    sub:unsubscribe()
    replies.sub:unsubscribe()
  end)

  it("refuses a raw payload over the server's max_payload with an error, not a crash", function()
    local ok, err = raw_publish(subject("huge"), string.rep("x", 2 * 1048576))
    if ok then assert(nats.flush(2)) end -- nats.c may only notice on the server's -ERR
    assert.is_true(ok == true or type(err) == "string")
    assert.is_true(nats.status().connected or eventually(function() return nats.status().connected end, 5))
  end)

  -- case 11
  it("retries 5/5/300 with timeout 30: attempts at 0, 40, 90, 160, 270, error at 300 (manual clock)", function()
    local subj = subject("never")
    local rec = recorder(subj)
    clock.freeze()
    local t0 = clock.now()
    local result
    task.spawn(function()
      local r, err = nats.request(subj, { request_id = "N1", body = {} }, { timeout = 30, retry = "default" })
      result = { r = r, err = err, at = clock.now() - t0 }
    end)
    clock.advance(400)
    clock.unfreeze()
    local at = {}
    for i, m in ipairs(rec.msgs) do
      at[i] = m.at - t0
      assert.equal(rec.msgs[1].m.data, m.m.data) -- the same serialized payload
    end
    assert.same({ 0, 40, 90, 160, 270 }, at)
    assert.truthy(result)
    assert.is_nil(result.r)
    assert.equal(300, result.at)
    assert.matches("^ae%.nats: .*5 attempt", result.err)
    rec.sub:unsubscribe()
  end)

  it("retries 1/1/600 with timeout 60: attempts at 0, 62, 126, 194, 270, 362, 486, 674, error at 734", function()
    local subj = subject("never2")
    local rec = recorder(subj)
    clock.freeze()
    local t0 = clock.now()
    local done_at
    task.spawn(function()
      nats.request(subj, { request_id = "N2" }, { timeout = 60, retry = "cache" })
      done_at = clock.now() - t0
    end)
    clock.advance(800)
    clock.unfreeze()
    local at = {}
    for i, m in ipairs(rec.msgs) do at[i] = m.at - t0 end
    assert.same({ 0, 62, 126, 194, 270, 362, 486, 674 }, at)
    assert.equal(734, done_at)
    rec.sub:unsubscribe()
  end)

  -- case 12
  it("re-sends after a timeout; the late reply to the first attempt is ignored", function()
    local subj = subject("late")
    local calls = 0
    local sub = assert(nats.serve(subj, function()
      calls = calls + 1
      local n = calls
      if n == 1 then task.sleep(15) end
      return { status = 200, body = n }
    end))
    assert(nats.flush(2))
    local late_before = nats.status().late_replies
    clock.freeze()
    local result
    task.spawn(function()
      result = { nats.request(subj, { request_id = "L1" }, { timeout = 10, retry = "default" }) }
    end)
    clock.advance(60)
    clock.unfreeze()
    assert.equal(2, calls)
    assert.truthy(result and result[1])
    assert.equal(2, result[1].body)
    assert.is_true(eventually(function() return nats.status().late_replies == late_before + 1 end))
    sub:unsubscribe()
  end)

  -- case 13
  it("counts an invalid JSON reply as a failed attempt and re-sends", function()
    local subj = subject("badreply")
    local n = 0
    local sub = assert(nats.subscribe(subj, function(_, m)
      n = n + 1
      raw_publish(m.reply, n == 1 and "{this is not json" or '{"status":200,"body":"second"}')
    end))
    assert(nats.flush(2))
    local reply = assert(nats.request(subj, { request_id = "J" },
      { timeout = 2, retry = { multiplier = 0.05, min = 0.05, stop_delay = 10 } }))
    assert.equal("second", reply.body)
    assert.equal(2, n)
    -- without retry the parse error is the call's error
    n = 0
    local r, err = nats.request(subj, { request_id = "J2" }, { timeout = 2 })
    assert.is_nil(r)
    assert.matches("not valid JSON", err)
    sub:unsubscribe()
  end)

  it("send_asap = false: nats.c's flusher thread writes through the engine loop's write event", function()
    local subj = subject("batched")
    local c = nats.connect { servers = { os.getenv("NATS_SERVER1") }, name = "batched", send_asap = false }
    assert(c:wait())
    local sub = assert(c:serve(subj, function(req) return { status = 200, body = req.body * 2 } end))
    assert(c:flush(2))
    local fns = {}
    for i = 1, 50 do
      fns[i] = function() return assert(c:request(subj, { body = i }, { timeout = 2 })).body end
    end
    local results, _, nerr = task.gather(fns, { limit = 10 })
    assert.equal(0, nerr)
    for i = 1, 50 do assert.equal(2 * i, results[i]) end
    sub:unsubscribe()
    c:close()
  end)

  -- case 14
  it("splits a queue group: each of 10 requests is handled by exactly one instance", function()
    local subj = subject("queue")
    local other = nats.connect { servers = { os.getenv("NATS_SERVER1") }, name = "second-instance" }
    assert(other:wait())
    local handled = { a = {}, b = {} }
    local function server(name)
      return function(req)
        handled[name][#handled[name] + 1] = req.request_id
        return { status = 200, body = name }
      end
    end
    local s1 = assert(nats.serve(subj, server("a"), { queue = "bruin_bridge" }))
    local s2 = assert(other:serve(subj, server("b"), { queue = "bruin_bridge" }))
    assert(nats.flush(2))
    assert(other:flush(2))
    local fns = {}
    for i = 1, 10 do
      fns[i] = function() return assert(nats.request(subj, { request_id = "Q" .. i }, { timeout = 3 })).body end
    end
    local results, errors, nerr = task.gather(fns)
    assert.equal(0, nerr, tostring(errors[1]))
    assert.equal(10, #results)
    local seen = {}
    for _, list in pairs(handled) do
      for _, id in ipairs(list) do
        assert.is_nil(seen[id])
        seen[id] = true
      end
    end
    assert.equal(10, #handled.a + #handled.b)
    s1:unsubscribe()
    s2:unsubscribe()
    other:close()
  end)

  -- case 15
  it("handles 3 slow requests concurrently", function()
    local subj = subject("slow")
    local running, max_running = 0, 0
    local sub = assert(nats.serve(subj, function()
      running = running + 1
      if running > max_running then max_running = running end
      task.sleep(0.3)
      running = running - 1
      return { status = 200 }
    end))
    assert(nats.flush(2))
    local t0 = clock.monotonic()
    local fns = {}
    for i = 1, 3 do fns[i] = function() return nats.request(subj, { request_id = "S" .. i }, { timeout = 3 }) end end
    local _, _, nerr = task.gather(fns)
    assert.equal(0, nerr)
    assert.equal(3, max_running)
    assert.is_true(clock.monotonic() - t0 < 0.85)
    sub:unsubscribe()
  end)

  -- case 16
  it("runs the handler of a message without reply subject and sends no reply", function()
    local subj = subject("noreply")
    local everything = recorder(">")
    local ran
    local sub = assert(nats.serve(subj, function(req)
      ran = req
      return { status = 200 }
    end))
    assert(nats.flush(2))
    -- other specs share the server: look only for messages carrying our id
    local id = nats.new_request_id()
    assert(nats.publish(subj, { request_id = id }))
    assert.is_true(eventually(function() return ran ~= nil end))
    task.sleep(0.2)
    assert.equal("", ran.response_topic)
    local others = 0
    for _, m in ipairs(everything.msgs) do
      if m.m.subject ~= subj and m.m.data:find(id, 1, true) then others = others + 1 end
    end
    assert.equal(0, others)
    sub:unsubscribe()
    everything.sub:unsubscribe()
  end)

  -- case 23 + §13: fresh token per attempt
  it("expired offload key: replier logs and drops; requester retries the same token, then fails", function()
    local subj = subject("expired")
    local calls = 0
    local rec = { msgs = {} } -- raw: must not consume the token itself
    rec.sub = assert(core.subscribe(nats.default()._h, subj, nil, function(_, _, data)
      rec.msgs[#rec.msgs + 1] = { m = { data = data } }
    end))
    local sub = assert(nats.serve(subj, function()
      calls = calls + 1
      return { status = 200 }
    end))
    assert(nats.flush(2))
    local stub = { token = nats.new_request_id(), is_stored = true }
    local r, err = nats.request(subj, stub,
      { timeout = 0.2, retry = { multiplier = 0.05, min = 0.05, stop_delay = 0.5 } })
    assert.is_nil(r)
    assert.matches("timeout", err)
    assert.equal(0, calls)
    assert.is_true(#rec.msgs >= 2)
    for _, m in ipairs(rec.msgs) do assert.equal(rec.msgs[1].m.data, m.m.data) end
    sub:unsubscribe()
    rec.sub:unsubscribe()
  end)

  it("stores a big request under a fresh token for every attempt", function()
    local subj = subject("bigretry")
    local tokens = {}
    local sub = assert(core.subscribe(nats.default()._h, subj, nil, function(_, _, data)
      tokens[#tokens + 1] = data:match('"token":"([^"]+)"')
    end))
    assert(nats.flush(2))
    local r = nats.request(subj, message_of_size(1048600),
      { timeout = 0.2, retry = { multiplier = 0.05, min = 0.05, stop_delay = 0.3 } })
    assert.is_nil(r)
    assert.is_true(#tokens >= 2)
    assert.are_not.equal(tokens[1], tokens[2])
    for _, t in ipairs(tokens) do redis():call("DEL", t) end
    sub:unsubscribe()
  end)

  it("raises on misuse and returns nil, err on failures", function()
    assert.has_error(function() nats.request("", {}) end)
    assert.has_error(function() nats.request("a.b", {}, { retry = "nope" }) end)
    assert.has_error(function() nats.publish("a.b", { f = function() end }) end)
    assert.has_error(function() nats.subscribe("a.b", "not a function") end)
    local c = nats.connect { servers = { "nats://127.0.0.1:1" }, reconnect_wait = 0.05 }
    assert.is_true(c:wait()) -- retry on failed connect: usable while it keeps trying
    assert.is_false(c:status().connected)
    local r, err = c:request("x.y", {}, { timeout = 0.2 })
    assert.is_nil(r)
    assert.matches("^ae%.nats: .*timeout", err)
    c:close()
    local r2, err2 = c:request("x.y", {}, { timeout = 0.2 })
    assert.is_nil(r2)
    assert.matches("[Cc]losed", err2)
  end)
end)
