-- digi-bridge (spec digi-bridge.md §5): the real unit over real NATS and
-- HTTP against the DiGi simulator (scripts/sandbox/digi_sim.lua). Assertions
-- on the replies and on what the simulator recorded.
local nats = require "ae.nats"
local json = require "ae.json"
local http = require "ae.http"
local httpd = require "ae.httpd"
local clock = require "ae.clock"
local task = require "ae.task"
local engine = require "ae.engine"
local fleet = require("sandbox.fleet").generate { edges = 20, seed = 7 }

local SCRIPT = "scripts/capabilities/digi_bridge.lua"
local UNIT = "digi_bridge_spec"
local RECOVER = "/DeviceManagement_API/rest/Recovery/RecoverDevice"
local TOKEN = "/Identity/rest/oauth/token"
local base, digi_url
local started = false

local edge = fleet.edges[1]
local GOOD = { velo_serial = edge.serial, ticket = "3574667", MAC = edge.links[1].logical_id }

local function get_json(url)
  local res = assert(http.get(url, { timeout = 5 }))
  assert.equal(200, res.status)
  return assert(res:json())
end

local function calls(path)
  local url = base .. "/sim/digi/_calls"
  if path then url = url .. "?path=" .. http.escape(path) end
  return get_json(url)
end

local function post(path, body, expect)
  local res = assert(http.post(base .. "/sim/digi/" .. path, { json = body, timeout = 5 }))
  assert.equal(expect or 201, res.status)
end

local function wait_for_token_calls(n)
  for _ = 1, 100 do
    if #calls(TOKEN) >= n then return end
    task.sleep(0.02)
  end
  error("no login call " .. n)
end

local function start_bridge(over, wait_login)
  local c = { base_url = digi_url, client_id = "digi-client", client_secret = "digi-secret" }
  for k, v in pairs(over or {}) do c[k] = v end
  assert(engine.start_unit { name = UNIT, script = SCRIPT, config = c })
  started = true
  assert(nats.flush(2))
  if wait_login ~= false then wait_for_token_calls(1) end
end

local function reboot(body, id)
  local msg = { request_id = id or nats.new_request_id(), body = body }
  return assert(nats.request("digi.reboot", msg, { timeout = 10 })), msg.request_id
end

setup(function()
  httpd.start("127.0.0.1:0")
  base = "http://" .. httpd.address()
  digi_url = base .. "/sim/digi"
  assert(engine.start_unit { name = "digi_spec_sim", script = "scripts/sandbox/digi_sim.lua",
    config = { fleet = { edges = 20, seed = 7 } } })
end)

teardown(function()
  engine.stop_unit("digi_spec_sim")
end)

before_each(function()
  assert(http.delete(base .. "/sim/digi/_calls", { timeout = 5 }))
  assert(http.delete(base .. "/sim/digi/_faults", { timeout = 5 }))
  assert(http.delete(base .. "/sim/digi/_outcomes", { timeout = 5 }))
end)

after_each(function()
  if started then engine.stop_unit(UNIT) end
  started = false
  if clock.is_manual() then clock.unfreeze() end
end)

describe("digi.reboot", function()
  it("case 1 and 12: login with Basic auth and form; one RecoverDevice POST with the headers; 200 Success", function()
    start_bridge()
    local login = calls(TOKEN)[1]
    assert.equal("POST", login.method)
    assert.equal("Basic ZGlnaS1jbGllbnQ6ZGlnaS1zZWNyZXQ=", login.headers.authorization)
    assert.equal("application/x-www-form-urlencoded", login.headers["content-type"])
    assert.equal("grant_type=client_credentials&scope=write%3Adms", login.body)
    local reply, id = reboot(GOOD)
    assert.same({ request_id = id, body = { { Message = "Success" } }, status = 200 }, reply)
    local rc = calls(RECOVER)
    assert.equal(1, #rc)
    local h = rc[1].headers
    assert.matches("^Bearer eyJ", h.authorization)
    assert.equal(id, h.igzid)
    assert.equal(GOOD.velo_serial, h.veloserial)
    assert.equal("3574667", h.ticket)
    assert.equal(GOOD.MAC, h.mac)
    assert.equal("", rc[1].body)
  end)

  it("sends extra body keys as PascalCase headers", function()
    start_bridge()
    local body = { velo_serial = GOOD.velo_serial, ticket = "1", MAC = GOOD.MAC, interface_name = "GE1" }
    assert.equal(200, reboot(body).status)
    assert.equal("GE1", calls(RECOVER)[1].headers.interfacename)
  end)

  it("case 2: no body: 400 Must include \"body\" in request, no vendor call", function()
    start_bridge()
    local msg = { request_id = "R1" }
    local reply = assert(nats.request("digi.reboot", msg, { timeout = 10 }))
    assert.same({ request_id = "R1", body = 'Must include "body" in request', status = 400 }, reply)
    assert.equal(0, #calls(RECOVER))
  end)

  it("cases 3 and 4 (and body null): the missing-fields 400", function()
    start_bridge()
    local text = 'You must include "velo_serial", "ticket", "MAC" in the "body" field of the response request'
    for _, body in ipairs({ {}, { velo_serial = "VC1", ticket = "1" }, json.null }) do
      local reply = reboot(body)
      assert.equal(400, reply.status)
      assert.equal(text, reply.body)
    end
    assert.equal(0, #calls(RECOVER))
  end)

  it("case 5: vendor HTTP 400 with JSON \"ERROR\": reply 500 with \"ERROR\"", function()
    start_bridge()
    post("_faults", { path = "RecoverDevice", status = 400, body = '"ERROR"' })
    local reply = reboot(GOOD)
    assert.equal(500, reply.status)
    assert.equal("ERROR", reply.body)
  end)

  it("case 6: [{Message: Failed}, {error: Failed}]: 400 with that list", function()
    start_bridge()
    local answer = { { Message = "Failed" }, { error = "Failed" } }
    post("_outcomes", { [GOOD.velo_serial] = answer })
    local reply = reboot(GOOD)
    assert.same({ status = 400, body = answer }, { status = reply.status, body = reply.body })
  end)

  it("case 7: a Message containing Aborted: 400", function()
    start_bridge()
    post("_outcomes", { [GOOD.velo_serial] = { { Message = "Failed" }, { Message = "Aborted" } } })
    assert.equal(400, reboot(GOOD).status)
    -- the simulator's own abort for a MAC that is not on the device
    post("_outcomes", { [GOOD.velo_serial] = json.null })
    assert(http.delete(base .. "/sim/digi/_outcomes", { timeout = 5 }))
    local reply = reboot({ velo_serial = GOOD.velo_serial, ticket = "1", MAC = "00:00:00:00:00:00:0000" })
    assert.equal(400, reply.status)
    assert.matches("^Reboot Aborted", reply.body[1].Message)
  end)

  it("case 8: [{Message: Failed}] without error or Aborted: 200", function()
    start_bridge()
    post("_outcomes", { [GOOD.velo_serial] = { { Message = "Failed" } } })
    local reply = reboot(GOOD)
    assert.equal(200, reply.status)
    assert.same({ { Message = "Failed" } }, reply.body)
  end)

  it("case 9: error null is not an error: 200", function()
    start_bridge()
    post("_outcomes", { [GOOD.velo_serial] = { { Message = "ok", error = json.null } } })
    assert.equal(200, reboot(GOOD).status)
  end)

  it("an unknown serial: the simulator's not-found answer is a 400", function()
    start_bridge()
    local reply = reboot({ velo_serial = "VC00000000000", ticket = "1", MAC = GOOD.MAC })
    assert.equal(400, reply.status)
    assert.equal("Device VC00000000000 not found", reply.body[2].error)
  end)

  it("shape errors and non-JSON answers: 500 with a plain description", function()
    start_bridge()
    post("_outcomes", { [GOOD.velo_serial] = { { Status = "weird" } } })
    local reply = reboot(GOOD)
    assert.equal(500, reply.status)
    assert.is_string(reply.body)
    post("_faults", { path = "RecoverDevice", status = 502, body = "<html>Bad gateway</html>" })
    reply = reboot(GOOD)
    assert.same({ status = 500, body = "Invalid JSON response from DiGi (HTTP 502)" },
      { status = reply.status, body = reply.body })
    local r2 = reboot({ velo_serial = GOOD.velo_serial, ticket = 3574667, MAC = GOOD.MAC })
    assert.equal(500, r2.status)
  end)

  it("case 10: a transport error: 500 with the error text, no retry", function()
    start_bridge({ timeout = 1 })
    post("_faults", { path = "RecoverDevice", latency = 2 })
    local reply = reboot(GOOD)
    assert.equal(500, reply.status)
    assert.matches("^Operation timed out", reply.body)
    assert.equal(1, #calls(RECOVER))
  end)

  it("DiGi unreachable at start: no token, Missing BEARER token", function()
    start_bridge({ base_url = "http://127.0.0.1:1" }, false)
    local reply = reboot(GOOD)
    assert.equal(500, reply.status)
    assert.equal("Missing BEARER token", reply.body)
  end)

  it("case 11: no token ever obtained: Missing BEARER token, no vendor call", function()
    start_bridge({ client_secret = "wrong" })
    local reply = reboot(GOOD)
    assert.same({ body = "Missing BEARER token", status = 500 }, { body = reply.body, status = reply.status })
    assert.equal(0, #calls(RECOVER))
  end)

  it("case 13: a failed login keeps the previous token", function()
    start_bridge({ login_ttl = 30 }) -- refresh before the simulator's 3600 s token expires
    clock.freeze() -- the refresh timer was anchored a few ms ago
    assert.equal(200, reboot(GOOD).status)
    local first = calls(RECOVER)[1].headers.authorization
    post("_faults", { path = "/oauth/token", status = 500, body = '{"error":"server_error"}' })
    clock.advance(1800, { settle = 0.2 })
    assert.equal(2, #calls(TOKEN))
    assert.equal(200, reboot(GOOD).status)
    assert.equal(first, calls(RECOVER)[2].headers.authorization)
  end)

  it("case 14: the token is refreshed every 60 minutes and the newest one is used", function()
    start_bridge()
    clock.freeze() -- the refresh timer was anchored a few ms ago
    assert.equal(200, reboot(GOOD).status)
    clock.advance(3599, { settle = 0.2 })
    assert.equal(1, #calls(TOKEN))
    clock.advance(1, { settle = 0.2 })
    assert.equal(2, #calls(TOKEN))
    assert.equal(200, reboot(GOOD).status)
    local rc = calls(RECOVER)
    assert.are_not.equal(rc[1].headers.authorization, rc[2].headers.authorization)
  end)

  it("an expired token: 500 with the vendor's object; a refresh follows (optional correction)", function()
    start_bridge()
    post("_faults", { kind = "expired_token", times = 1 })
    local reply = reboot(GOOD)
    assert.equal(500, reply.status)
    assert.same({ error = "invalid_token", error_description = "Access token expired" }, reply.body)
    wait_for_token_calls(2)
    assert.equal(200, reboot(GOOD).status)
  end)

  it("lib.digi.reboot sends the envelope and returns the reply", function()
    start_bridge()
    local digi = require "lib.digi"
    local reply = digi.reboot({ velo_serial = GOOD.velo_serial, ticket = 3574667, MAC = GOOD.MAC }, { notify = false })
    assert.equal(200, reply.status)
    assert.equal("3574667", calls(RECOVER)[1].headers.ticket)
    assert.has_error(function() digi.reboot { velo_serial = "x", ticket = "1" } end)
  end)
end)
