-- velocloud-bridge: every behaviour case of velocloud-bridge.md §8, the real
-- unit against the VeloCloud simulator over real HTTP and NATS; lib.velocloud
-- against the bridge; the simulator's fleet dynamics on the manual clock.
local engine = require "ae.engine"
local httpd = require "ae.httpd"
local http = require "ae.http"
local json = require "ae.json"
local nats = require "ae.nats"
local task = require "ae.task"
local clock = require "ae.clock"

local H1, H2 = "mettel.velocloud.net", "metvco02.mettel.net"
local USER, PASS = "api_user@example.com", "s3cret-pass"
local SIM = "spec_velocloud_sim"
local BRIDGE = "spec_velocloud_bridge"

local base -- http://127.0.0.1:PORT/sim/velocloud

local function sim_get(path)
  local res = assert(http.get(base .. path))
  return assert(res:json())
end

local function sim_post(path, body)
  local res = assert(http.post(base .. path, { json = body }))
  assert(res.status < 300, res.body)
  return res:json()
end

local function reset_sim()
  assert(http.delete(base .. "/_calls"))
  assert(http.delete(base .. "/_faults"))
end

local function fault(f) sim_post("/_faults", f) end

-- recorded calls whose path matches the Lua pattern
local function calls(pattern)
  local out = {}
  for _, c in ipairs(sim_get("/_calls")) do
    if c.path:match(pattern) then out[#out + 1] = c end
  end
  return out
end

local function creds(hosts)
  local blocks = {}
  for i, h in ipairs(hosts) do blocks[i] = h .. "+" .. USER .. "+" .. PASS end
  return table.concat(blocks, ";")
end

local bridge_running = false
local function start_bridge(cfg)
  cfg = cfg or {}
  local config = {
    credentials = cfg.credentials or creds(cfg.hosts or { H1, H2 }),
    url_template = cfg.url_template or (base .. "/{host}"), timeout = cfg.timeout or 5,
  }
  assert(engine.start_unit { name = BRIDGE, script = "scripts/capabilities/velocloud_bridge.lua", config = config })
  bridge_running = true
end

local function stop_bridge()
  if bridge_running then
    engine.stop_unit(BRIDGE)
    bridge_running = false
    task.sleep(0.05) -- let the drained subscriptions go
  end
end

local function request(subject, body, raw)
  local msg = raw or { request_id = "spec-1", body = body }
  local reply, err = nats.request(subject, msg, { timeout = 5 })
  assert(reply, err)
  return reply
end

-- wait (real time) until `n` calls match the pattern
local function wait_calls(pattern, n)
  local deadline = clock.monotonic() + 5
  while #calls(pattern) < n and clock.monotonic() < deadline do task.sleep(0.02) end
  return calls(pattern)
end

local function first_edge(host)
  return sim_get("/_edges/" .. host)[1]
end

describe("velocloud-bridge against the simulator", function()
  setup(function()
    httpd.start("127.0.0.1:0")
    assert(engine.start_unit {
      name = SIM, script = "scripts/sandbox/velocloud_sim.lua",
      config = { fleet = { edges = 24, seed = 7 }, username = USER, password = PASS },
    })
    base = "http://" .. httpd.address() .. "/sim/velocloud"
  end)

  teardown(function()
    engine.stop_unit(SIM)
  end)

  before_each(function()
    reset_sim()
  end)

  after_each(function()
    stop_bridge()
  end)

  describe("login", function()
    it("case 1: logs in to every host in configuration order before subscribing", function()
      start_bridge { credentials = "a.example+u1+p1;b.example+u2+p2" }
      local logins = calls("/login/operatorLogin$")
      assert.equals(2, #logins)
      assert.equals("/a.example/portal/rest/login/operatorLogin", logins[1].path)
      assert.equals("/b.example/portal/rest/login/operatorLogin", logins[2].path)
      assert.same({ username = "u1", password = "p1" }, logins[1].json)
      assert.same({ username = "u2", password = "p2" }, logins[2].json)
      assert.equals("POST", logins[1].method)
      assert.matches("application/json", logins[1].headers["content-type"])
      -- subscribed after the logins: a request is answered
      local reply = request("get.links.with.edge.info", { host = "c.example" })
      assert.equals(404, reply.status)
    end)

    it("case 2: extracts velocloud.session from Set-Cookie and sends the session headers", function()
      fault { path = "operatorLogin", status = 200, body = "{}", times = 1,
        headers = { ["Set-Cookie"] = "Somestring with velocloud.session=secret; Path=/" } }
      start_bridge { hosts = { H1 } }
      request("get.links.with.edge.info", { host = H1 })
      local c = calls("getEnterpriseEdgeLinkStatus$")[1]
      assert.equals("velocloud.session=secret", c.headers.cookie)
      assert.equals("application/json-patch+json", c.headers["content-type"])
      assert.equals("no-cache, no-store, no-transform, max-age=0, only-if-cached", c.headers["cache-control"])
    end)

    it("case 2: a real login's cookie is accepted by the VCO", function()
      start_bridge { hosts = { H1 } }
      local reply = request("get.links.with.edge.info", { host = H1 })
      assert.equals(200, reply.status)
      assert.matches("^velocloud%.session=s%%3A", calls("getEnterpriseEdgeLinkStatus$")[1].headers.cookie)
    end)

    it("case 3: a 302 login (bad credentials) leaves the host without headers; requests still go out", function()
      start_bridge { credentials = H1 .. "+" .. USER .. "+wrong" }
      local login = calls("operatorLogin$")[1]
      assert.equals(302, login.status)
      local reply = request("request.enterprises.edges", { host = H1, enterprise_id = 1 })
      local c = calls("getEnterpriseEdges$")[1]
      assert.is_not_nil(c)
      assert.is_nil(c.headers.cookie)
      -- the VCO answers Expires: 0 -> 401 and a re-login is tried
      assert.equals(401, reply.status)
      assert.equals(2, #wait_calls("operatorLogin$", 2))
    end)

    it("case 3: a 500 login or an unreachable VCO leaves the host without headers", function()
      fault { path = "operatorLogin", status = 500, body = "boom", times = 1 }
      start_bridge { hosts = { H1 } }
      request("get.links.with.edge.info", { host = H1 })
      assert.is_nil(calls("getEnterpriseEdgeLinkStatus$")[1].headers.cookie)
      stop_bridge()
      -- unreachable: the bridge still starts and answers
      start_bridge { hosts = { H1 }, url_template = "http://127.0.0.1:1/{host}" }
      local reply = request("get.links.with.edge.info", { host = H1 })
      assert.same({ status = 500, body = "Error while connecting to Velocloud API", request_id = "spec-1" }, reply)
    end)
  end)

  describe("alert.request.event.edge", function()
    local function ev_body(extra)
      local b = {
        edge = { host = H1, enterprise_id = 170, edge_id = 3195 },
        start_date = "2021-01-05 10:00:00.123456+00:00", end_date = "2021-01-05 11:00:00.654321+00:00",
      }
      for k, v in pairs(extra or {}) do b[k] = v end
      return b
    end

    it("case 4: filters the VCO events and sends the documented POST body", function()
      start_bridge()
      fault { path = "getEnterpriseEvents", status = 200,
        body = { data = { { event = "EDGE_UP" }, { event = "EDGE_GONE" } } } }
      local reply = request("alert.request.event.edge",
        ev_body { filter = { "EDGE_UP", "EDGE_DOWN", "LINK_ALIVE", "LINK_DEAD" }, limit = 200 })
      assert.equals(200, reply.status)
      assert.same({ { event = "EDGE_UP" } }, reply.body)
      local c = calls("event/getEnterpriseEvents$")[1]
      assert.equals("/" .. H1 .. "/portal/rest/event/getEnterpriseEvents", c.path)
      assert.same({
        enterpriseId = 170, edgeId = { 3195 }, filter = { limit = 200 },
        interval = { start = "2021-01-05 10:00:00.123456+00:00", ["end"] = "2021-01-05 11:00:00.654321+00:00" },
      }, c.json)
    end)

    it("case 5: without filter and limit sends limit null and returns every event in VCO order", function()
      start_bridge()
      local edge = first_edge(H1)
      sim_post("/_edges/" .. H1 .. "/" .. edge.id, { state = "OFFLINE" })
      local reply = request("alert.request.event.edge", {
        edge = { host = H1, enterprise_id = edge.enterprise_id, edge_id = edge.id },
        start_date = "2000-01-01 00:00:00+00:00", end_date = "2100-01-01T00:00:00Z",
      })
      assert.equals(200, reply.status)
      local vco = sim_get("/_events/" .. H1)
      local expected = {}
      for _, ev in ipairs(vco) do
        if ev.edgeId == edge.id then expected[#expected + 1] = ev.id end
      end
      assert.equals(1 + #edge.links, #expected)
      local got = {}
      for i, ev in ipairs(reply.body) do got[i] = ev.id end
      assert.same(expected, got)
      assert.equals("LINK_DEAD", reply.body[1].event)
      assert.equals("EDGE_DOWN", reply.body[#reply.body].event)
      assert.matches('"filter":{"limit":null}', calls("getEnterpriseEvents$")[1].body, 1, true)
      sim_post("/_edges/" .. H1 .. "/" .. edge.id, { state = "CONNECTED" })
    end)

    it("case 6: an empty filter list gives []", function()
      start_bridge()
      fault { path = "getEnterpriseEvents", status = 200, body = { data = { { event = "EDGE_UP" } } } }
      local reply = request("alert.request.event.edge", ev_body { filter = json.array({}) })
      assert.equals(200, reply.status)
      assert.same({}, reply.body)
      assert.is_true(json.is_array(reply.body))
    end)

    it("case 7: an unknown host gives 404 without an HTTP call", function()
      start_bridge()
      local b = ev_body()
      b.edge.host = "nowhere.example"
      local reply = request("alert.request.event.edge", b)
      assert.equals(404, reply.status)
      assert.equals("Cannot find a client to connect to nowhere.example", reply.body)
      assert.equals(0, #calls("nowhere"))
    end)

    it("case 8: VCO errors: 400 relayed, 5xx internal error, other statuses relayed (§9 item 3)", function()
      start_bridge()
      local err = { error = { code = -32600, message = "An error occurred while processing your request" } }
      fault { path = "getEnterpriseEvents", status = 400, body = err, times = 1 }
      local reply = request("alert.request.event.edge", ev_body())
      assert.same({ status = 400, body = err, request_id = "spec-1" }, reply)
      for _, st in ipairs({ 500, 502 }) do
        fault { path = "getEnterpriseEvents", status = st, body = "oops", times = 1 }
        reply = request("alert.request.event.edge", ev_body())
        assert.equals(500, reply.status)
        assert.equals("Got internal error from Velocloud", reply.body)
      end
      for _, st in ipairs({ 401, 403, 404 }) do
        fault { path = "getEnterpriseEvents", status = st, body = { error = { code = st, message = "no" } }, times = 1 }
        reply = request("alert.request.event.edge", ev_body())
        assert.equals(st, reply.status)
        assert.same({ error = { code = st, message = "no" } }, reply.body)
      end
    end)

    it("case 9: validation", function()
      start_bridge()
      local reply = request("alert.request.event.edge", nil, { request_id = "spec-1" })
      assert.same({ status = 400, body = 'Must include "body" in request', request_id = "spec-1" }, reply)
      local b = ev_body()
      b.start_date = nil
      reply = request("alert.request.event.edge", b)
      assert.same({ status = 400, body = 'Must include "edge", "start_date", "end_date" in request',
        request_id = "spec-1" }, reply)
      b = ev_body()
      b.edge.edge_id = nil -- crashed the original (§9 item 4)
      reply = request("alert.request.event.edge", b)
      assert.equals(400, reply.status)
      assert.equals(0, #calls("getEnterpriseEvents"))
    end)

    it("case 10: a tokenError body schedules a re-login and answers 401 (§9 item 2)", function()
      start_bridge()
      sim_post("/_sessions/" .. H1 .. "/expire", {})
      local reply = request("alert.request.event.edge", ev_body())
      assert.same({ status = 401, body = "Auth token expired for host " .. H1, request_id = "spec-1" }, reply)
      local logins = wait_calls("/" .. H1 .. "/.*operatorLogin$", 2)
      assert.equals(2, #logins)
      -- the new session works
      local edge = first_edge(H1)
      reply = request("alert.request.event.edge", {
        edge = { host = H1, enterprise_id = edge.enterprise_id, edge_id = edge.id },
        start_date = "2000-01-01 00:00:00+00:00", end_date = "2100-01-01 00:00:00+00:00",
      })
      assert.equals(200, reply.status)
    end)
  end)

  describe("get.links.with.edge.info", function()
    it("case 11: every link of the host, each with host added", function()
      start_bridge()
      local reply = request("get.links.with.edge.info", { host = H1 })
      assert.equals(200, reply.status)
      local nlinks = 0
      for _, e in ipairs(sim_get("/_edges/" .. H1)) do nlinks = nlinks + #e.links end
      assert.equals(nlinks, #reply.body)
      for _, rec in ipairs(reply.body) do
        assert.equals(H1, rec.host)
        assert.is_number(rec.edgeId)
        assert.equals("CONNECTED", rec.edgeState)
        assert.equals("STABLE", rec.linkState)
      end
      assert.same({}, calls("getEnterpriseEdgeLinkStatus$")[1].json)
      assert.equals("{}", calls("getEnterpriseEdgeLinkStatus$")[1].body)
    end)

    -- the VCO's own answer to getEnterpriseEdgeLinkStatus (decoded, and its text), with a session of our own
    local function vco_links(host)
      local login = assert(http.post(base .. "/" .. host .. "/portal/rest/login/operatorLogin",
        { json = { username = USER, password = PASS }, follow = false }))
      local cookie = assert(tostring(login.headers["set-cookie"]):match("velocloud%.session=[^;,%s]+"))
      local res = assert(http.post(base .. "/" .. host .. "/portal/rest/monitoring/getEnterpriseEdgeLinkStatus",
        { headers = { Cookie = cookie, ["Content-Type"] = "application/json" }, body = "{}" }))
      assert.equals(200, res.status)
      return assert(res:json()), res.body
    end

    -- request that also returns the reply's wire text
    local function request_text(subject, body)
      local text
      local reply = assert(nats.request(subject, { request_id = "spec-1", body = body }, {
        timeout = 5, decode = function(t) text = t; return json.decode(t) end }))
      return reply, text
    end

    it("case 11: the records are the VCO's, each with host spliced in first (not re-encoded)", function()
      start_bridge()
      -- the simulator's answer has live timestamps: the bridge gets this very text again
      local expected, vco = vco_links(H1)
      assert.is_true(#expected > 0)
      for _, rec in ipairs(expected) do rec.host = H1 end
      fault { path = "getEnterpriseEdgeLinkStatus", status = 200, body = vco, times = 1 }
      local reply, text = request_text("get.links.with.edge.info", { host = H1 })
      assert.equals(200, reply.status)
      assert.same(expected, reply.body)
      -- every record starts with "host": the splice, not a decode and re-encode
      local records, first = 0, 0
      for _ in text:gmatch('[%[,]{"host":"' .. H1:gsub("%.", "%%.") .. '"') do first = first + 1 end
      for _ in text:gmatch('"host":') do records = records + 1 end
      assert.equals(#expected, first)
      assert.equals(#expected, records)
    end)

    it("case 11: any VCO list text keeps its value: braces and quotes in strings, nesting, non-ASCII", function()
      start_bridge { hosts = { H1 } }
      local vco = '\239\187\191 [ {"name":"a {b} [c] \\"d\\" }","tags":[{"k":{}}],"n":null,"x":-1.5e3} ,\n'
        .. ' { } , {"city":"Gda\197\132sk \240\159\152\128","esc":"\\u00e9\\/"} ] '
      fault { path = "getEnterpriseEdgeLinkStatus", status = 200, body = vco, times = 1 }
      local reply, text = request_text("get.links.with.edge.info", { host = H1 })
      assert.equals(200, reply.status)
      local expected = json.decode(vco)
      for _, rec in ipairs(expected) do rec.host = H1 end
      assert.same(expected, reply.body)
      assert.equals(-1500.0, reply.body[1].x)
      assert.is_nil(text:find("[\128-\255]")) -- the reply stays ASCII (\u escapes), as NATS messages are sent
      assert.truthy(text:find('{"host":"' .. H1 .. '" }', 1, true)) -- the empty record: no comma
    end)

    it("case 11: a record that already has host, or a list too big for NATS, gives the same records", function()
      start_bridge { hosts = { H1 } }
      fault { path = "getEnterpriseEdgeLinkStatus", status = 200, body = '[{"a":1,"host":"old"},{"a":2}]', times = 1 }
      assert.same({ { a = 1, host = H1 }, { a = 2, host = H1 } },
        request("get.links.with.edge.info", { host = H1 }).body)
      -- ~1.3 MB: the reply is offloaded to Redis by ae.nats, raw text included
      local recs = {}
      for i = 1, 15000 do
        recs[i] = string.format('{"edgeId":%d,"edgeName":"edge-%d with a long name","linkState":"STABLE"}', i, i)
      end
      local big = "[" .. table.concat(recs, ",") .. "]"
      assert.is_true(#big > 1048576)
      fault { path = "getEnterpriseEdgeLinkStatus", status = 200, body = big, times = 1 }
      local reply = request("get.links.with.edge.info", { host = H1 })
      assert.equals(200, reply.status)
      assert.equals(15000, #reply.body)
      assert.same({ edgeId = 15000, edgeName = "edge-15000 with a long name", linkState = "STABLE", host = H1 },
        reply.body[15000])
    end)

    it("case 12: 2xx bodies that are not a list of objects keep their errors", function()
      start_bridge { hosts = { H1 } }
      local function answer(body)
        fault { path = "getEnterpriseEdgeLinkStatus", status = 200, body = body, times = 1 }
        local reply = request("get.links.with.edge.info", { host = H1 })
        reply.request_id = nil
        return reply
      end
      assert.same({ status = 500, body = "Velocloud answered getEnterpriseEdgeLinkStatus with a non-object record" },
        answer('[{"a":1},2]'))
      assert.same({ status = 500, body = "Velocloud answered getEnterpriseEdgeLinkStatus without a list" },
        answer('"text"'))
      assert.same({ status = 500, body = "Velocloud answered monitoring/getEnterpriseEdgeLinkStatus with a body that "
        .. "is not JSON" }, answer('[{"a":1},'))
      assert.same({ status = 200, body = json.array() }, answer(" [ ] "))
      assert.same({ status = 200, body = { error = "x" } }, answer('{"error":"x"}')) -- relayed as before
    end)

    it("case 11: an OFFLINE edge shows DISCONNECTED links", function()
      start_bridge()
      local edge = first_edge(H2)
      sim_post("/_edges/" .. H2 .. "/" .. edge.id, { state = "OFFLINE" })
      local reply = request("get.links.with.edge.info", { host = H2 })
      local seen = 0
      for _, rec in ipairs(reply.body) do
        if rec.edgeId == edge.id then
          seen = seen + 1
          assert.equals("OFFLINE", rec.edgeState)
          assert.equals("DISCONNECTED", rec.linkState)
        end
      end
      assert.equals(#edge.links, seen)
      sim_post("/_edges/" .. H2 .. "/" .. edge.id, { state = "CONNECTED" })
    end)

    it("case 12: errors", function()
      start_bridge()
      local err = { error = { code = -32600, message = "bad" } }
      fault { path = "getEnterpriseEdgeLinkStatus", status = 400, body = err, times = 1 }
      assert.same({ status = 400, body = err, request_id = "spec-1" },
        request("get.links.with.edge.info", { host = H1 }))
      fault { path = "getEnterpriseEdgeLinkStatus", status = 500, body = "x", times = 1 }
      assert.same({ status = 500, body = "Got internal error from Velocloud", request_id = "spec-1" },
        request("get.links.with.edge.info", { host = H1 }))
      local before = #calls("")
      assert.same({ status = 404, body = "Cannot find a client to connect to host other.example",
        request_id = "spec-1" }, request("get.links.with.edge.info", { host = "other.example" }))
      assert.equals(before, #calls(""))
      -- a VCO slower than the bridge's timeout: 500, not silence (§9 item 7)
      fault { path = "getEnterpriseEdgeLinkStatus", latency = 1.5, times = 1 }
      stop_bridge()
      start_bridge { timeout = 0.5 }
      local reply = request("get.links.with.edge.info", { host = H1 })
      assert.same({ status = 500, body = "Error while connecting to Velocloud API", request_id = "spec-1" }, reply)
    end)

    it("case 13: Expires: 0 gives 401, one re-login, then the new cookie", function()
      start_bridge()
      local old = calls("/" .. H1 .. "/.*operatorLogin$")
      assert.equals(1, #old)
      sim_post("/_sessions/" .. H1 .. "/expire", {})
      local reply = request("get.links.with.edge.info", { host = H1 })
      assert.same({ status = 401, body = "Auth token expired for host " .. H1, request_id = "spec-1" }, reply)
      local first_cookie = calls("getEnterpriseEdgeLinkStatus$")[1].headers.cookie
      assert.equals(2, #wait_calls("/" .. H1 .. "/.*operatorLogin$", 2))
      task.sleep(0.05)
      reply = request("get.links.with.edge.info", { host = H1 })
      assert.equals(200, reply.status)
      local list = calls("getEnterpriseEdgeLinkStatus$")
      assert.is_not.equal(first_cookie, list[#list].headers.cookie)
      assert.equals(2, #calls("/" .. H1 .. "/.*operatorLogin$"))
    end)

    it("case 14: validation", function()
      start_bridge()
      assert.same({ status = 400, body = 'Must include "body" in the request', request_id = "spec-1" },
        request("get.links.with.edge.info", nil, { request_id = "spec-1" }))
      assert.same({ status = 400, body = 'Must include "host" in the body of the request', request_id = "spec-1" },
        request("get.links.with.edge.info", json.object({})))
      -- body null crashed the original (§9 item 4)
      assert.equals(400, request("get.links.with.edge.info", nil, { request_id = "spec-1", body = json.null }).status)
    end)
  end)

  describe("get.links.metric.info", function()
    it("case 15: posts the interval, sets link.host; Expires: 0 -> 401; validation", function()
      start_bridge()
      local interval = { start = "2020-10-19T15:22:03.345Z", ["end"] = "2020-10-19T16:22:03.345Z" }
      local reply = request("get.links.metric.info", { host = H2, interval = interval })
      assert.equals(200, reply.status)
      assert.is_true(#reply.body > 0)
      for _, rec in ipairs(reply.body) do
        assert.equals(H2, rec.link.host)
        assert.is_nil(rec.host)
        assert.is_number(rec.bestLatencyMsRx)
      end
      assert.same({ interval = interval }, calls("getAggregateEdgeLinkMetrics$")[1].json)
      sim_post("/_sessions/" .. H2 .. "/expire", {})
      reply = request("get.links.metric.info", { host = H2, interval = interval })
      assert.same({ status = 401, body = "Auth token expired for host " .. H2, request_id = "spec-1" }, reply)
      reply = request("get.links.metric.info", { host = H2 })
      assert.same({ status = 400, body = 'Must include "host" and "interval" in the body of the request',
        request_id = "spec-1" }, reply)
      assert.same({ status = 400, body = 'Must include "body" in the request', request_id = "spec-1" },
        request("get.links.metric.info", nil, { request_id = "spec-1" }))
      -- a record without `link` crashed the original (§9 item 4)
      fault { path = "getAggregateEdgeLinkMetrics", status = 200, body = { { linkId = 1 } }, times = 1 }
      assert.equals(500, request("get.links.metric.info", { host = H2, interval = interval }).status)
    end)
  end)

  describe("request.enterprises.names", function()
    local aggregates = { edgeCount = 2, enterprises = { { id = 1, name = "A Name" }, { id = 2, name = "Another" } } }

    it("case 16: names of every host, filtered exactly", function()
      start_bridge { hosts = { H1 } }
      fault { path = "getAggregates", status = 200, body = aggregates }
      assert.same({ status = 200, body = { "A Name", "Another" }, request_id = "spec-1" },
        request("request.enterprises.names", { filter = json.array({}) }))
      assert.same({ status = 200, body = { "Another" }, request_id = "spec-1" },
        request("request.enterprises.names", { filter = { "Another" } }))
      assert.same({ status = 200, body = {}, request_id = "spec-1" },
        request("request.enterprises.names", { filter = { "another" } }))
      -- no filter: all (crashed the original)
      assert.equals(2, #request("request.enterprises.names", json.object({})).body)
      assert.same({ status = 400, body = 'Must include "body" in request', request_id = "spec-1" },
        request("request.enterprises.names", nil, { request_id = "spec-1" }))
    end)

    it("case 16: real simulator names from two hosts, in host order", function()
      start_bridge()
      local reply = request("request.enterprises.names", { filter = json.array({}) })
      assert.equals(200, reply.status)
      assert.is_true(#reply.body >= 2)
      assert.matches("|%d+|$", reply.body[1])
      local gets = calls("getAggregates$")
      assert.equals(2, #gets)
      assert.matches(H1, gets[1].path, 1, true)
      assert.matches(H2, gets[2].path, 1, true)
    end)

    it("case 17: a failing host gives 500 and the unfiltered names of the others", function()
      start_bridge()
      fault { path = "^/" .. H1:gsub("%.", "%%.") .. "/.*getAggregates", status = 200, body = aggregates }
      fault { path = "^/" .. H2:gsub("%.", "%%.") .. "/.*getAggregates", status = 500, body = "down" }
      assert.same({ status = 500, body = { { enterprise_name = "A Name" }, { enterprise_name = "Another" } },
        request_id = "spec-1" }, request("request.enterprises.names", { filter = { "Another" } }))
    end)
  end)

  describe("request.enterprises.edges", function()
    it("case 18: posts enterpriseId and with links, relays the VCO answer", function()
      start_bridge()
      local edge = first_edge(H1)
      local reply = request("request.enterprises.edges", { host = H1, enterprise_id = edge.enterprise_id })
      assert.equals(200, reply.status)
      assert.same({ enterpriseId = edge.enterprise_id, with = { "links" } }, calls("getEnterpriseEdges$")[1].json)
      local found
      for _, e in ipairs(reply.body) do
        assert.equals(edge.enterprise_id, e.enterpriseId)
        if e.id == edge.id then found = e end
      end
      assert.is_not_nil(found)
      assert.equals(#edge.links, #found.links)
      assert.is_string(found.links[1].logicalId)
      assert.is_string(found.links[1].interface)
      local err = { error = { code = -32600, message = "bad" } }
      fault { path = "getEnterpriseEdges", status = 400, body = err, times = 1 }
      assert.same({ status = 400, body = err, request_id = "spec-1" },
        request("request.enterprises.edges", { host = H1, enterprise_id = 1 }))
      fault { path = "getEnterpriseEdges", status = 503, body = "x", times = 1 }
      assert.same({ status = 500, body = "Got internal error from Velocloud", request_id = "spec-1" },
        request("request.enterprises.edges", { host = H1, enterprise_id = 1 }))
      assert.same({ status = 400, body = 'Must include "host" and "enterprise_id" in request "body"',
        request_id = "spec-1" }, request("request.enterprises.edges", json.object({})))
      assert.same({ status = 400, body = 'Must include "body" in request', request_id = "spec-1" },
        request("request.enterprises.edges", nil, { request_id = "spec-1" }))
    end)
  end)

  describe("re-login", function()
    it("case 19: a second trigger while a re-login is pending adds no job", function()
      start_bridge()
      sim_post("/_sessions/" .. H1 .. "/expire", {})
      fault { path = "operatorLogin", latency = 0.5, times = 1 } -- keep the re-login in flight
      local t1 = task.spawn(request, "get.links.with.edge.info", { host = H1 })
      local t2 = task.spawn(request, "request.enterprises.edges", { host = H1, enterprise_id = 1 })
      local _, r1 = t1:wait()
      local _, r2 = t2:wait()
      assert.equals(401, r1.status)
      assert.equals(401, r2.status)
      local r3 = request("get.links.metric.info", { host = H1, interval = { start = "2020-10-19T15:22:03Z" } })
      assert.equals(401, r3.status)
      task.sleep(0.8)
      assert.equals(2, #calls("/" .. H1 .. "/.*operatorLogin$"))
      assert.equals(200, request("get.links.with.edge.info", { host = H1 }).status)
    end)

    it("case 20: re-login of H2 replaces H2's headers only", function()
      start_bridge()
      request("get.links.with.edge.info", { host = H1 })
      request("get.links.with.edge.info", { host = H2 })
      local h1_cookie = calls("/" .. H1 .. "/.*getEnterpriseEdgeLinkStatus$")[1].headers.cookie
      local h2_cookie = calls("/" .. H2 .. "/.*getEnterpriseEdgeLinkStatus$")[1].headers.cookie
      sim_post("/_sessions/" .. H2 .. "/expire", {})
      assert.equals(401, request("get.links.with.edge.info", { host = H2 }).status)
      wait_calls("/" .. H2 .. "/.*operatorLogin$", 2)
      task.sleep(0.05)
      assert.equals(200, request("get.links.with.edge.info", { host = H2 }).status)
      assert.equals(200, request("get.links.with.edge.info", { host = H1 }).status)
      local l1 = calls("/" .. H1 .. "/.*getEnterpriseEdgeLinkStatus$")
      local l2 = calls("/" .. H2 .. "/.*getEnterpriseEdgeLinkStatus$")
      assert.equals(h1_cookie, l1[#l1].headers.cookie)
      assert.is_not.equal(h2_cookie, l2[#l2].headers.cookie)
      assert.equals(1, #calls("/" .. H1 .. "/.*operatorLogin$"))
    end)
  end)

  describe("lib.velocloud", function()
    local velocloud = require "lib.velocloud"
    local rpc = require "lib.rpc"

    it("wraps every subject with its envelope and returns the reply", function()
      rpc.configure { notify_errors = false, retry = false }
      start_bridge()
      local edge = first_edge(H1)
      local links = velocloud.links_with_edge_info { host = H1 }
      assert.equals(200, links.status)
      assert.equals(H1, links.body[1].host)
      local m = velocloud.links_metric_info { host = H1, interval = { start = 1603120923, ["end"] = 1603124523 } }
      assert.equals(200, m.status)
      assert.same({ start = "2020-10-19T15:22:03.000Z", ["end"] = "2020-10-19T16:22:03.000Z" },
        calls("getAggregateEdgeLinkMetrics$")[1].json.interval)
      local ev = velocloud.edge_events {
        host = H1, enterprise_id = edge.enterprise_id, edge_id = edge.id, start = 946684800, ["end"] = 4102444800,
        filter = { "EDGE_DOWN" }, limit = 10,
      }
      assert.equals(200, ev.status)
      assert.equals("2000-01-01 00:00:00.000000+00:00", calls("getEnterpriseEvents$")[1].json.interval.start)
      local names = velocloud.enterprise_names {}
      assert.equals(200, names.status)
      local edges = velocloud.enterprise_edges { host = H1, enterprise_id = edge.enterprise_id }
      assert.equals(200, edges.status)
      local missing = velocloud.enterprise_edges({ host = "x.example", enterprise_id = 1 }, { doing = "testing" })
      assert.equals(404, missing.status)
      assert.has_error(function() velocloud.links_with_edge_info {} end)
      assert.has_error(function() velocloud.edge_events { host = H1 } end)
    end)

    it("gives the 503 substitute when nobody answers", function()
      rpc.configure { notify_errors = false, retry = false }
      local reply = velocloud.links_with_edge_info({ host = H1 }, { timeout = 0.2 })
      assert.equals(503, reply.status)
      assert.equals(json.null, reply.body)
    end)
  end)
end)

describe("velocloud simulator fleet dynamics", function()
  after_each(function()
    engine.stop_unit(SIM .. "_flap")
    clock.unfreeze()
  end)

  it("takes edges OFFLINE every flap_interval and brings them back after down_for, with events", function()
    httpd.start("127.0.0.1:0")
    base = "http://" .. httpd.address() .. "/sim/velocloud"
    clock.freeze(1700000000)
    assert(engine.start_unit {
      name = SIM .. "_flap", script = "scripts/sandbox/velocloud_sim.lua",
      config = { fleet = { edges = 40, seed = 3 }, flap_interval = 60, flap_fraction = 0.1, down_for = 90 },
    })
    local function offline()
      local n = {}
      for _, e in ipairs(sim_get("/_edges")) do
        if e.state == "OFFLINE" then n[#n + 1] = e end
      end
      return n
    end
    assert.equals(0, #offline())
    clock.advance(60)
    local down = offline()
    assert.equals(4, #down)
    for _, l in ipairs(down[1].links) do assert.equals("DISCONNECTED", l.state) end
    local evs = sim_get("/_events/" .. down[1].host)
    local kinds = {}
    for _, e in ipairs(evs) do
      if e.edgeId == down[1].id then kinds[e.event] = (kinds[e.event] or 0) + 1 end
    end
    assert.equals(1, kinds.EDGE_DOWN)
    assert.equals(#down[1].links, kinds.LINK_DEAD)
    clock.advance(60) -- second flap at 120 s
    assert.equals(8, #offline())
    clock.advance(31) -- the first batch is back at 150 s
    assert.equals(4, #offline())
    evs = sim_get("/_events/" .. down[1].host)
    kinds = {}
    for _, e in ipairs(evs) do
      if e.edgeId == down[1].id then kinds[e.event] = (kinds[e.event] or 0) + 1 end
    end
    assert.equals(1, kinds.EDGE_UP)
    assert.equals(#down[1].links, kinds.LINK_ALIVE)
  end)

  it("is off by default and validates the control route", function()
    httpd.start("127.0.0.1:0")
    clock.freeze(1700000000)
    assert(engine.start_unit {
      name = SIM .. "_flap", script = "scripts/sandbox/velocloud_sim.lua", config = { fleet = { edges = 8 } },
    })
    clock.advance(3600)
    for _, e in ipairs(sim_get("/_edges")) do assert.equals("CONNECTED", e.state) end
    local res = assert(http.post(base .. "/_edges/" .. H1 .. "/1", { json = { state = "OFFLINE" } }))
    assert.equals(404, res.status)
    local edge = sim_get("/_edges/" .. H1)[1]
    res = assert(http.post(base .. "/_edges/" .. H1 .. "/" .. edge.id, { json = { state = "GONE" } }))
    assert.equals(400, res.status)
    res = assert(http.post(base .. "/_edges/" .. H1 .. "/" .. edge.id,
      { json = { links = { [edge.links[1].interface] = "DISCONNECTED" } } }))
    assert.equals(200, res.status)
    assert.equals("DISCONNECTED", res:json().links[1].state)
    assert.equals("CONNECTED", res:json().state)
  end)
end)
