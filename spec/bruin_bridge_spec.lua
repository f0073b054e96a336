-- bruin-bridge (spec bruin-bridge.md §8): the real capability unit against
-- the Bruin simulator unit, over real HTTP and NATS.
local engine = require "ae.engine"
local httpd = require "ae.httpd"
local http = require "ae.http"
local nats = require "ae.nats"
local json = require "ae.json"
local clock = require "ae.clock"
local fleet_mod = require "sandbox.fleet"

local FLEET = { edges = 40, seed = 7 }
local fleet = fleet_mod.generate(FLEET)
local base
local edge = fleet.edges[1]
local SN = edge.serial
local CID = edge.client_id

local function bridge_config(over)
  local c = { base_url = base, login_url = base, client_id = "sim-client", client_secret = "sim-secret",
    timeout = 5 }
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

local started = false
local function start()
  if started then return end
  httpd.start("127.0.0.1:0")
  base = "http://" .. httpd.address() .. "/sim/bruin"
  assert(engine.start_unit { name = "bruin_sim", script = "scripts/sandbox/bruin_sim.lua", config = {
    fleet = FLEET,
    tickets = {
      { ticketID = 123, client_id = CID, topic = "VOO", status = "New", service_number = SN },
      { ticketID = 321, client_id = CID, topic = "VOO", status = "In-Progress", service_number = SN },
    },
  } })
  assert(engine.start_unit { name = "bruin_bridge", script = "scripts/capabilities/bruin_bridge.lua",
    config = bridge_config() })
  started = true
end

local function stop()
  engine.stop_unit("bruin_bridge")
  engine.stop_unit("bruin_sim")
  started = false
end

local function get(path)
  local res = assert(http.get(base .. path))
  return assert(res:json())
end

local function post(path, value)
  local res = assert(http.post(base .. path, { json = value }))
  assert(res.status < 300, res.body)
  return res:json()
end

local function reset()
  assert(http.delete(base .. "/_calls"))
  assert(http.delete(base .. "/_faults"))
  assert(http.delete(base .. "/_replies"))
end

local function calls(pattern)
  local list = get("/_calls")
  local out = {}
  for _, c in ipairs(list) do
    if not pattern or c.path:match(pattern) then out[#out + 1] = c end
  end
  return out
end

local function api_calls()
  local out = {}
  for _, c in ipairs(calls("^/api/")) do out[#out + 1] = c end
  return out
end

local function script(method, path, status, body, query)
  post("/_replies", { method = method, path = path, status = status, body = body, query = query, times = 1 })
end

local function fault(method, path, status, body)
  post("/_faults", { method = method, path = path, status = status, body = body, times = 1 })
end

local function request(subject, body, id)
  local msg = { request_id = id or "abc" }
  if body ~= nil then msg.body = body end
  local r, err = nats.request(subject, msg, { timeout = 10 })
  assert(r, err)
  return r
end

local function ticket(id, extra)
  local t = { ticketID = id }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

describe("bruin-bridge", function()
  before_each(function()
    start()
    reset()
  end)

  teardown(stop)

  it("case 1: several statuses, merged and de-duplicated", function()
    script("GET", "^/api/Ticket$", 200, { responses = { ticket(123), ticket(123, { x = 2 }) } },
      { TicketStatus = "New" })
    script("GET", "^/api/Ticket$", 200, { responses = { ticket(321) } }, { TicketStatus = "In-Progress" })
    local r = request("bruin.ticket.request", { client_id = 9994, category = "SD-WAN", ticket_topic = "VOO",
      ticket_status = { "New", "In-Progress" } })
    assert.are.equal("abc", r.request_id)
    assert.are.equal(200, r.status)
    assert.are.equal(2, #r.body)
    assert.are.equal(123, r.body[1].ticketID)
    assert.are.equal(2, r.body[1].x) -- last occurrence kept, first position
    assert.are.equal(321, r.body[2].ticketID)
    local c = api_calls()
    assert.are.equal(2, #c)
    local seen = {}
    for _, call in ipairs(c) do
      assert.are.equal("SD-WAN", call.query.ProductCategory)
      assert.are.equal("9994", call.query.ClientId)
      assert.are.equal("VOO", call.query.TicketTopic)
      assert.matches("^Bearer sim%-token", call.headers.authorization)
      assert.are.equal("application/json-patch+json", call.headers["content-type"])
      seen[call.query.TicketStatus] = true
    end
    assert.is_true(seen.New and seen["In-Progress"])
  end)

  it("case 1 on simulator state: InProgress/In-Progress aliases de-duplicate", function()
    local r = request("bruin.ticket.request", { client_id = CID, category = "SD-WAN", ticket_topic = "VOO",
      ticket_status = { "New", "InProgress", "In-Progress" }, service_number = SN })
    assert.are.equal(200, r.status)
    assert.are.equal(2, #r.body)
    assert.are.equal(123, r.body[1].ticketID)
    assert.are.equal(321, r.body[2].ticketID)
    assert.are.equal("In-Progress", r.body[2].ticketStatus)
    assert.are.equal("Service Outage Trouble", r.body[2].topic)
  end)

  it("case 2: optional filters", function()
    request("bruin.ticket.request", { client_id = 9994, category = "SD-WAN", ticket_topic = "VOO",
      ticket_status = { "New" }, ticket_id = 321, service_number = "VC1234567" })
    local c = api_calls()
    assert.are.equal("321", c[1].query.TicketId)
    assert.are.equal("VC1234567", c[1].query.ServiceNumber)
    reset()
    request("bruin.ticket.request", { client_id = 9994, category = "SD-WAN", ticket_topic = "VOO",
      ticket_status = { "New" }, ticket_id = 0, service_number = "", start_date = "2020-08-19T20:12:00Z" })
    c = api_calls()
    assert.is_nil(c[1].query.TicketId)
    assert.is_nil(c[1].query.ServiceNumber)
    assert.is_nil(c[1].query.StartDate)
    assert.is_nil(c[1].query.EndDate)
    reset()
    request("bruin.ticket.request", { client_id = 9994, category = "SD-WAN", ticket_topic = "VOO",
      ticket_status = "New", start_date = "2020-08-19T20:12:00Z", end_date = "2020-08-20T20:12:00Z" })
    c = api_calls()
    assert.are.equal(1, #c) -- a string status is one status (§9.6)
    assert.are.equal("2020-08-19T20:12:00Z", c[1].query.StartDate)
    assert.are.equal("2020-08-20T20:12:00Z", c[1].query.EndDate)
    reset()
    request("bruin.ticket.request", { client_id = 9994, category = "", ticket_topic = "VOO",
      ticket_status = { "New" } })
    c = api_calls()
    assert.are.equal("", c[1].query.Category)
    assert.is_nil(c[1].query.ProductCategory)
  end)

  it("case 3: empty results", function()
    local r = request("bruin.ticket.request", { client_id = 1, category = "SD-WAN", ticket_topic = "VOO",
      ticket_status = { "New", "Draft" } })
    assert.are.equal(200, r.status)
    assert.are.equal("[]", json.encode(r.body))
    r = request("bruin.ticket.request", { client_id = 1, category = "SD-WAN", ticket_topic = "VOO",
      ticket_status = {} })
    assert.are.equal(200, r.status)
    assert.are.equal("[]", json.encode(r.body))
  end)

  it("case 4 + §9.1: one status fails, the status of the first failure is reported", function()
    script("GET", "^/api/Ticket$", 200, { responses = { ticket(1) } }, { TicketStatus = "New" })
    script("GET", "^/api/Ticket$", 404, "", { TicketStatus = "In-Progress" })
    script("GET", "^/api/Ticket$", 200, { responses = { ticket(3) } }, { TicketStatus = "Other" })
    local r = request("bruin.ticket.request", { client_id = 9994, category = "SD-WAN", ticket_topic = "VOO",
      ticket_status = { "New", "In-Progress", "Other" } })
    assert.are.equal(404, r.status)
    assert.are.equal(2, #r.body)
    assert.are.equal(1, r.body[1].ticketID)
    assert.are.equal(3, r.body[2].ticketID)
  end)

  it("case 5: validation, no HTTP call", function()
    local r = request("bruin.ticket.request", nil)
    assert.are.same({ 400, 'Must include "body" in request' }, { r.status, r.body })
    r = request("bruin.ticket.request", json.null)
    assert.are.equal(400, r.status)
    r = request("bruin.ticket.request", { category = "SD-WAN", ticket_topic = "VOO", ticket_status = { "New" } })
    assert.are.equal(400, r.status)
    assert.are.equal('You must specify {..."body:{"client_id", "category", "ticket_topic", ' ..
      '"ticket_status":[list of statuses]}...} in the request', r.body)
    assert.are.equal(0, #api_calls())
  end)

  it("case 6: details OK and errors", function()
    local r = request("bruin.ticket.details.request", { ticket_id = 321 })
    assert.are.equal(200, r.status)
    assert.are.equal(SN, r.body.ticketDetails[1].detailValue)
    assert.are.equal("[]", json.encode(r.body.ticketNotes))
    assert.are.equal("/api/Ticket/321/details", api_calls()[1].path)
    r = request("bruin.ticket.details.request", { ticket_id = 999 })
    assert.are.same({ 404, "Resource not found" }, { r.status, r.body })
    fault("GET", "/details$", 400, { error = "400 error" })
    r = request("bruin.ticket.details.request", { ticket_id = 321 })
    assert.are.equal(400, r.status)
    assert.are.equal("400 error", r.body.error)
    fault("GET", "/details$", 403, { error = "forbidden" })
    r = request("bruin.ticket.details.request", { ticket_id = 321 })
    assert.are.same({ 403, "forbidden" }, { r.status, r.body.error })
    fault("GET", "/details$", 500, "boom")
    r = request("bruin.ticket.details.request", { ticket_id = 321 })
    assert.are.same({ 500, "Got internal error from Bruin" }, { r.status, r.body })
    r = request("bruin.ticket.details.request", { ticket_id = json.null })
    assert.are.same({ 400, "You must include ticket_id in the request" }, { r.status, r.body })
  end)

  it("case 7: overview", function()
    script("GET", "^/api/Ticket$", 200, { responses = { ticket(4503440), ticket(2) } })
    local r = request("bruin.ticket.overview.request", { ticket_id = "4503440" })
    assert.are.same({ 200, 4503440 }, { r.status, r.body.ticketID })
    assert.are.equal("abc", r.request_id) -- §9.2: request_id included
    local c = api_calls()
    assert.are.same({ TicketId = "4503440" }, c[1].query)
    r = request("bruin.ticket.overview.request", { ticket_id = 999999 }) -- integer accepted (§9.2)
    assert.are.equal(200, r.status)
    assert.are.equal("[]", json.encode(r.body))
    fault("GET", "^/api/Ticket$", 400, { message = "bad" })
    r = request("bruin.ticket.overview.request", { ticket_id = "1" })
    assert.are.same({ 400, "bad" }, { r.status, r.body.message })
    reset()
    for _, id in ipairs { json.null, "abc", "", "12a" } do
      r = request("bruin.ticket.overview.request", { ticket_id = id })
      assert.are.same({ 404, "not ticket id found" }, { r.status, r.body })
    end
    assert.are.equal(0, #api_calls())
    r = request("bruin.ticket.overview.request", {})
    assert.are.same({ 400, 'Must include "ticket_id" in body' }, { r.status, r.body })
  end)

  it("cases 8-9: single note", function()
    local note = string.rep("é", 1500)
    local r = request("bruin.ticket.note.append.request", { ticket_id = 321, note = note,
      service_numbers = { SN } })
    assert.are.equal(200, r.status)
    assert.are.equal(note, r.body.ticketNotes[1].noteValue)
    local c = api_calls()
    assert.are.equal("POST", c[1].method)
    assert.are.equal("/api/Ticket/321/notes", c[1].path)
    assert.are.same({ note = note, serviceNumbers = { SN } }, c[1].json)
    reset()
    request("bruin.ticket.note.append.request", { ticket_id = 321, note = "x", service_numbers = {} })
    assert.are.same({ note = "x" }, api_calls()[1].json)
    reset()
    r = request("bruin.ticket.note.append.request", { ticket_id = 321, note = string.rep("a", 1501) })
    assert.are.same({ 400, "Note exceeds 1500 character limit" }, { r.status, r.body })
    r = request("bruin.ticket.note.append.request", {})
    assert.are.same({ 400, 'You must include "ticket_id" and "note" in the "body" field of the response request' },
      { r.status, r.body })
    assert.are.equal(0, #api_calls())
  end)

  it("case 10: multiple notes mapping", function()
    local detail = request("bruin.ticket.details.request", { ticket_id = 321 }).body.ticketDetails[1].detailID
    reset()
    local r = request("bruin.ticket.multiple.notes.append.request", { ticket_id = 321, notes = {
      { text = "n1", service_number = SN }, { text = "n2", detail_id = detail },
      { text = "n3", service_number = SN, detail_id = detail },
      { text = "n4", service_number = SN, detail_id = detail, is_private = true } } })
    assert.are.equal(200, r.status)
    assert.are.equal(4, #r.body)
    assert.are.equal("n4", r.body[4].noteValue)
    local sent = api_calls()[1].json.notes
    assert.are.same({ noteValue = "n1", serviceNumber = SN, noteType = "ADN" }, sent[1])
    assert.are.same({ noteValue = "n2", detailId = detail, noteType = "ADN" }, sent[2])
    assert.are.same({ noteValue = "n3", serviceNumber = SN, detailId = detail, noteType = "ADN" }, sent[3])
    assert.are.equal("CON", sent[4].noteType)
  end)

  it("case 11: multiple notes validation", function()
    local r = request("bruin.ticket.multiple.notes.append.request", { ticket_id = 12345,
      notes = { { service_number = "VC1" } } })
    assert.are.equal(400, r.status)
    assert.are.equal('You must include "text" and any of "service_number" and "detail_id" for every note ' ..
      'in the "notes" field', r.body)
    r = request("bruin.ticket.multiple.notes.append.request", { ticket_id = 12345, notes = { { text = "a" } } })
    assert.are.equal(400, r.status)
    r = request("bruin.ticket.multiple.notes.append.request", { ticket_id = 12345,
      notes = { { text = "ok", detail_id = 1 }, { text = string.rep("b", 1501), detail_id = 2 } } })
    assert.are.same({ 400, "One of the notes for ticket 12345 exceeds 1500 character limit" }, { r.status, r.body })
    r = request("bruin.ticket.multiple.notes.append.request", { ticket_id = 12345 })
    assert.are.same({ 400, 'You must include "ticket_id" and "notes" in the body of the request' },
      { r.status, r.body })
    assert.are.equal(0, #api_calls())
  end)

  it("case 12: multiple notes, Bruin errors", function()
    fault("POST", "/notes/advanced$", 500, "")
    local r = request("bruin.ticket.multiple.notes.append.request", { ticket_id = 321,
      notes = { { text = "a", service_number = SN } } })
    assert.are.same({ 500, "Got internal error from Bruin" }, { r.status, r.body })
    engine.stop_unit("bruin_bridge")
    assert(engine.start_unit { name = "bruin_bridge2", script = "scripts/capabilities/bruin_bridge.lua",
      config = bridge_config { base_url = "http://127.0.0.1:1" } })
    r = request("bruin.ticket.multiple.notes.append.request", { ticket_id = 321,
      notes = { { text = "a", service_number = SN } } })
    assert.are.equal(500, r.status)
    assert.matches("^Connection error in Bruin API%. Cause: .*127%.0%.0%.1", r.body)
    r = request("bruin.ticket.get.task.history", { ticket_id = 321 })
    assert.are.equal(500, r.status)
    assert.matches("^Connection error in Bruin API%. [^C]", r.body) -- case 25, connection error
    r = request("bruin.ticket.creation.outage.request", { client_id = CID, service_number = SN })
    assert.matches("^Connection error in Bruin API%. Cause: ", r.body) -- case 20, connection error
    engine.stop_unit("bruin_bridge2")
    assert(engine.start_unit { name = "bruin_bridge", script = "scripts/capabilities/bruin_bridge.lua",
      config = bridge_config() })
  end)

  it("case 13: generic ticket creation", function()
    local body = { clientId = CID, category = "VAS", services = { { serviceNumber = SN } },
      contacts = { { email = "j@example.com", phone = "5108324567", name = "Jane Doe", type = "site" } } }
    local r = request("bruin.ticket.creation.request", body)
    assert.are.equal(200, r.status)
    local id = r.body.ticketIds[1]
    assert.is_number(id)
    local sent = api_calls()[1]
    assert.are.equal("/api/Ticket/", sent.path)
    assert.are.equal("[]", json.encode(sent.json.notes))
    assert.are.equal("Jane Doe", sent.json.contacts[1].name)
    assert.are.equal("Service Affecting Trouble", get("/_tickets/" .. id).topic)
    fault("POST", "^/api/Ticket/$", 400, { message = "invalid" })
    r = request("bruin.ticket.creation.request", body)
    assert.are.same({ 400, "invalid" }, { r.status, r.body.message })
    body.contacts = nil
    r = request("bruin.ticket.creation.request", body)
    assert.are.same({ 400, 'You must specify "clientId", "category", "services", "contacts" in the body' },
      { r.status, r.body })
    script("POST", "^/api/Ticket/$", 200, { whatever = 1 })
    body.contacts = {}
    r = request("bruin.ticket.creation.request", body) -- §9.4: a 2xx without ticketIds gets a 500 reply
    assert.are.equal(500, r.status)
  end)

  it("case 14: open and resolve", function()
    local detail = request("bruin.ticket.details.request", { ticket_id = 123 }).body.ticketDetails[1].detailID
    reset()
    local r = request("bruin.ticket.status.resolve", { ticket_id = 123, detail_id = detail })
    assert.are.same({ 200, "Success" }, { r.status, r.body })
    assert.are.same({ Status = "R" }, api_calls()[1].json)
    assert.are.equal("/api/Ticket/123/details/" .. detail .. "/status", api_calls()[1].path)
    assert.are.equal("Resolved", get("/_tickets/123").ticketStatus)
    r = request("bruin.ticket.status.open", { ticket_id = 123, detail_id = detail })
    assert.are.equal(200, r.status)
    assert.are.same({ Status = "O" }, api_calls()[2].json)
    assert.are.equal("In-Progress", get("/_tickets/123").ticketStatus)
    r = request("bruin.ticket.status.open", { ticket_id = 123, detail_id = 1 })
    assert.are.same({ 404, "Resource not found" }, { r.status, r.body })
    r = request("bruin.ticket.status.open", { ticket_id = 123 })
    assert.are.same({ 400, "You must include ticket_id and detail_id in the request" }, { r.status, r.body })
    r = request("bruin.ticket.status.resolve", { ticket_id = 123, detail_id = 0 })
    assert.are.equal(400, r.status)
  end)

  it("cases 15-17: management status", function()
    local r = request("bruin.inventory.management.status", { client_id = CID, status = "A", service_number = SN })
    assert.are.same({ 200, edge.management_status }, { r.status, r.body })
    local q = api_calls()[1].query
    assert.are.same({ ClientId = tostring(CID), Status = "A", ServiceNumber = SN }, q)
    script("GET", "^/api/Inventory/Attribute$", 200, { attributes = {
      { key = "Management Status", value = "Active – Platinum Monitoring" } } })
    r = request("bruin.inventory.management.status", { client_id = 9994, status = "A", service_number = "X" })
    assert.are.equal("Active – Platinum Monitoring", r.body)
    script("GET", "^/api/Inventory/Attribute$", 200, { attributes = { { key = "RD1.K3", value = "RD" } } })
    r = request("bruin.inventory.management.status", { client_id = 9994, status = "A", service_number = "X" })
    assert.are.same({ 200, json.null }, { r.status, r.body })
    script("GET", "^/api/Inventory/Attribute$", 200, { other = 1 })
    r = request("bruin.inventory.management.status", { client_id = 9994, status = "A", service_number = "X" })
    assert.are.same({ 200, 1 }, { r.status, r.body.other })
    fault("GET", "^/api/Inventory/Attribute$", 500, "")
    r = request("bruin.inventory.management.status", { client_id = 9994, status = "A", service_number = "X" })
    assert.are.same({ 500, "Got internal error from Bruin" }, { r.status, r.body })
    r = request("bruin.inventory.management.status", { client_id = "x1", status = "A", service_number = "X" })
    assert.are.equal(400, r.status)
    assert.are.equal("Invalid arguments to the API", r.body.title)
    r = request("bruin.inventory.management.status", nil)
    assert.are.same({ 400, 'You must specify {.."body":{"client_id", "status", "service_number"}...} in the request' },
      { r.status, r.body })
    r = request("bruin.inventory.management.status", json.null) -- §9.4
    assert.are.equal(400, r.status)
    r = request("bruin.inventory.management.status", { client_id = 1, service_number = "X" })
    assert.are.same({ 400, 'You must specify "client_id", "status", "service_number" in the filter' },
      { r.status, r.body })
  end)

  it("cases 18-19: outage ticket created, then found (409), resolved variants (472/473/471)", function()
    local e2
    for _, e in ipairs(fleet.edges) do
      if e.client_id == CID and e.serial ~= SN and e.inventory_status == "A" then e2 = e break end
    end
    local r = request("bruin.ticket.creation.outage.request", { client_id = CID, service_number = e2.serial })
    assert.are.equal(200, r.status)
    local id = r.body
    assert.is_number(id)
    assert.are.same({ ClientID = CID, WTNs = { e2.serial },
      RequestDescription = "Automation Engine -- Service Outage Trouble" }, api_calls()[1].json)
    r = request("bruin.ticket.creation.outage.request", { client_id = CID, service_number = e2.serial })
    assert.are.same({ 409, id }, { r.status, r.body })
    local detail = request("bruin.ticket.details.request", { ticket_id = id }).body.ticketDetails[1].detailID
    request("bruin.ticket.status.resolve", { ticket_id = id, detail_id = detail })
    r = request("bruin.ticket.creation.outage.request", { client_id = CID, service_number = e2.serial })
    assert.are.same({ 472, id }, { r.status, r.body })
    assert.are.equal("In-Progress", get("/_tickets/" .. id).ticketStatus)
    for _, code in ipairs { 409, 471, 472, 473 } do
      script("POST", "^/api/Ticket/repair$", 200, { items = { { ticketId = 4503440, errorCode = code } } })
      r = request("bruin.ticket.creation.outage.request", { client_id = 9994, service_number = "VC05400002265" })
      assert.are.same({ code, 4503440 }, { r.status, r.body })
    end
    script("POST", "^/api/Ticket/repair$", 201, { assets = { { ticketId = 7, errorCode = 0 } } })
    r = request("bruin.ticket.creation.outage.request", { client_id = 9994, service_number = "VC05400002265" })
    assert.are.same({ 201, 7 }, { r.status, r.body })
    script("POST", "^/api/Ticket/repair$", 200, { assets = {} })
    r = request("bruin.ticket.creation.outage.request", { client_id = 9994, service_number = "VC05400002265" })
    assert.are.equal(500, r.status)
    -- 473: a resolved ticket at the same site gets a new detail; 471: one Bruin will not touch
    local e3, e4
    for _, e in ipairs(fleet.edges) do
      if e.client_id == CID and e ~= edge and e ~= e2 and e.inventory_status == "A" then
        if not e3 then e3 = e elseif not e4 then e4 = e end
      end
    end
    post("/_tickets", { ticketID = 88, client_id = CID, topic = "VOO", status = "Resolved",
      service_number = "VCSAMESITE", site_id = e3.site_id })
    r = request("bruin.ticket.creation.outage.request", { client_id = CID, service_number = e3.serial })
    assert.are.same({ 473, 88 }, { r.status, r.body })
    local t = get("/_tickets/88")
    assert.are.equal("In-Progress", t.ticketStatus)
    assert.are.equal(e3.serial, t.details[2].detailValue)
    post("/_tickets", { ticketID = 89, client_id = CID, topic = "VOO", status = "Resolved",
      service_number = e4.serial, no_unresolve = true })
    r = request("bruin.ticket.creation.outage.request", { client_id = CID, service_number = e4.serial })
    assert.are.same({ 471, 89 }, { r.status, r.body })
    assert.are.equal("Resolved", get("/_tickets/89").ticketStatus)
  end)

  it("case 20: outage ticket errors", function()
    fault("POST", "/repair$", 400, { errors = { clientId = { "The value is not valid." } } })
    local r = request("bruin.ticket.creation.outage.request", { client_id = 9994, service_number = "VC05400002265" })
    assert.are.equal(400, r.status)
    fault("POST", "/repair$", 403, "")
    r = request("bruin.ticket.creation.outage.request", { client_id = 9994, service_number = "VC05400002265" })
    assert.are.same({ 403, 'Permissions to create a new outage ticket with payload {"ClientID": 9994, "WTNs": ' ..
      '["VC05400002265"], "RequestDescription": "Automation Engine -- Service Outage Trouble"} were not granted' },
      { r.status, r.body })
    fault("POST", "/repair$", 404, "")
    r = request("bruin.ticket.creation.outage.request", { client_id = 9994, service_number = "VC05400002265" })
    assert.are.same({ 404, "Check mistypings in URL: " .. base .. "/api/Ticket/repair" }, { r.status, r.body })
    for _, s in ipairs { 500, 513 } do
      fault("POST", "/repair$", s, "")
      r = request("bruin.ticket.creation.outage.request", { client_id = 9994, service_number = "VC05400002265" })
      assert.are.same({ 500, "Got internal error from Bruin" }, { r.status, r.body })
    end
    local before = #calls("^/identity/")
    fault("POST", "/repair$", 401, "")
    r = request("bruin.ticket.creation.outage.request", { client_id = 9994, service_number = "VC05400002265" })
    assert.are.same({ 401, "Got 401 from Bruin" }, { r.status, r.body })
    assert.are.equal(before + 1, #calls("^/identity/"))
  end)

  it("case 21: outage ticket validation", function()
    local r = request("bruin.ticket.creation.outage.request", { client_id = json.null, service_number = "VC1" })
    assert.are.same({ 400, '"client_id" and "service_number" must have non-null values' }, { r.status, r.body })
    r = request("bruin.ticket.creation.outage.request", { client_id = 1 })
    assert.are.same({ 400, 'Must specify "client_id" and "service_number" to post an outage ticket' },
      { r.status, r.body })
    assert.are.equal(0, #api_calls())
  end)

  it("case 22: client info", function()
    local r = request("bruin.customer.get.info", { service_number = SN })
    assert.are.same({ 200, CID, edge.client_name }, { r.status, r.body.client_id, r.body.client_name })
    assert.are.same({ ServiceNumber = SN }, api_calls()[1].query)
    local function docs(list)
      script("GET", "^/api/Inventory$", 200, { documents = list })
      return request("bruin.customer.get.info", { service_number = "VC01919" })
    end
    r = docs { { status = "A", serviceNumber = "VC01919", clientID = 9919, clientName = "Tet Corp" } }
    assert.are.same({ client_id = 9919, client_name = "Tet Corp" }, r.body)
    for _, list in ipairs { { { status = "D", serviceNumber = "VC01919", clientID = 1, clientName = "x" } }, {},
      { { status = "A", serviceNumber = "VC01919-RET", clientID = 1, clientName = "x" } } } do
      r = docs(list)
      assert.are.same({ 200, json.null, json.null }, { r.status, r.body.client_id, r.body.client_name })
    end
    fault("GET", "^/api/Inventory$", 400, { message = "bad" })
    r = request("bruin.customer.get.info", { service_number = "VC1" })
    assert.are.same({ 400, "bad" }, { r.status, r.body.message })
    fault("GET", "^/api/Inventory$", 500, "")
    r = request("bruin.customer.get.info", { service_number = "VC1" })
    assert.are.same({ 500, "Got internal error from Bruin" }, { r.status, r.body })
    r = request("bruin.customer.get.info", {})
    assert.are.same({ 400, 'You must specify "service_number" in the body' }, { r.status, r.body })
  end)

  it("case 23: change work queue OK", function()
    local detail = request("bruin.ticket.details.request", { ticket_id = 321 }).body.ticketDetails[1].detailID
    reset()
    local r = request("bruin.ticket.change.work", { service_number = SN, ticket_id = 321, detail_id = detail,
      queue_name = "Repair Completed" })
    assert.are.same({ 200, "success" }, { r.status, r.body.message })
    local c = api_calls()
    assert.are.same({ ServiceNumber = SN, DetailId = tostring(detail) }, c[1].query)
    assert.are.equal("/api/Ticket/321/details/work", c[2].path)
    assert.are.same({ details = { { detailId = detail, serviceNumber = SN } }, notes = {}, resultTypeId = 139 },
      c[2].json)
    assert.are.equal("Repair Completed", get("/_tickets/321").details[1].currentTaskName)
  end)

  it("case 24: change work queue failures", function()
    local body = { service_number = "VC05400002265", ticket_id = 4503440, detail_id = 4806634,
      queue_name = "Repair Completed" }
    local F = "{'ServiceNumber': 'VC05400002265', 'DetailId': 4806634}"
    fault("GET", "/nextresult$", 500, "")
    local r = request("bruin.ticket.change.work", body)
    assert.are.same({ 500, "Error while claiming possible work queues for ticket 4503440 and filters " .. F ..
      ": Got internal error from Bruin" }, { r.status, r.body })
    script("GET", "/nextresult$", 200, { nextResults = {} })
    r = request("bruin.ticket.change.work", body)
    assert.are.same({ 404, "No work queues were found for ticket 4503440 and filters " .. F }, { r.status, r.body })
    script("GET", "/nextresult$", 200, { nextResults = { { resultTypeId = 1, resultName = "Another Queue" } } })
    r = request("bruin.ticket.change.work", body)
    assert.are.same({ 404, "No work queue with name Repair Completed was found using ticket ID 4503440 and " ..
      "filters " .. F }, { r.status, r.body })
    r = request("bruin.ticket.change.work", body) -- simulator state: unknown detail -> 400 relayed in the text
    assert.are.equal(400, r.status)
    assert.matches("'message': 'Ticket Detail not found'", r.body, 1, true)
    assert.are.equal(0, #calls("/details/work$"))
    r = request("bruin.ticket.change.work", {})
    assert.are.equal(400, r.status)
  end)

  it("case 25: task history", function()
    request("bruin.ticket.note.append.request", { ticket_id = 321, note = "hello" })
    local r = request("bruin.ticket.get.task.history", { ticket_id = 321 })
    assert.are.equal(200, r.status)
    assert.are.equal("hello", r.body[#r.body].Notes)
    assert.are.equal("321", calls("AITicketData")[1].query.ticketId)
    r = request("bruin.ticket.get.task.history", { ticket_id = 42 })
    assert.are.same({ 400, "Failure" }, { r.status, r.body.result })
    r = request("bruin.ticket.get.task.history", {})
    assert.are.same({ 400, 'You must specify "ticket_id" in the body' }, { r.status, r.body })
    r = request("bruin.ticket.get.task.history", nil)
    assert.are.same({ 400, 'You must specify {.."body":{"ticket_id"}...} in the request' }, { r.status, r.body })
  end)

  it("case 26: next results", function()
    local detail = request("bruin.ticket.details.request", { ticket_id = 321 }).body.ticketDetails[1].detailID
    reset()
    local r = request("bruin.ticket.detail.get.next.results", { detail_id = detail, service_number = SN,
      ticket_id = 321 }) -- any key order (§9.7)
    assert.are.equal(200, r.status)
    assert.are.equal("Repair Completed", r.body.nextResults[1].resultName)
    assert.are.same({ ServiceNumber = SN, DetailId = tostring(detail) }, api_calls()[1].query)
    reset()
    local text = 'You must specify {.."body": {"ticket_id", "detail_id", "service_number"}...} in the request'
    r = request("bruin.ticket.detail.get.next.results", { ticket_id = 321, service_number = SN })
    assert.are.same({ 400, text }, { r.status, r.body })
    r = request("bruin.ticket.detail.get.next.results", { ticket_id = 321, service_number = SN, detail_id = 1, x = 1 })
    assert.are.equal(400, r.status)
    assert.are.equal(0, #api_calls())
  end)

  it("case 27: expired token -> one re-login, 401 reply, the next request uses the new token", function()
    request("bruin.ticket.details.request", { ticket_id = 321 })
    local old = api_calls()[1].headers.authorization
    post("/_faults", { kind = "expired_token", times = 1 })
    local r = request("bruin.ticket.details.request", { ticket_id = 321 })
    assert.are.same({ 401, "Got 401 from Bruin" }, { r.status, r.body })
    assert.are.equal(1, #calls("^/identity/connect/token$"))
    assert.are.equal(2, #calls("/details$")) -- not retried
    r = request("bruin.ticket.details.request", { ticket_id = 321 })
    assert.are.equal(200, r.status)
    local c = calls("/details$")
    assert.are_not.equal(old, c[3].headers.authorization)
  end)

  it("case 27 with the manual clock: the token expires after its ttl", function()
    clock.freeze()
    local ok, err = pcall(function()
      assert.are.equal(200, request("bruin.ticket.details.request", { ticket_id = 321 }).status)
      clock.advance(3601)
      local r = request("bruin.ticket.details.request", { ticket_id = 321 })
      assert.are.equal(401, r.status)
      assert.are.equal(200, request("bruin.ticket.details.request", { ticket_id = 321 }).status)
    end)
    clock.unfreeze()
    assert(ok, err)
  end)

  it("case 28 + §9.5: login failure -> Missing BEARER token without API calls; retried per request", function()
    engine.stop_unit("bruin_bridge")
    assert(engine.start_unit { name = "bruin_bridge3", script = "scripts/capabilities/bruin_bridge.lua",
      config = bridge_config { client_secret = "wrong" } })
    reset()
    local r = request("bruin.ticket.details.request", { ticket_id = 321 })
    assert.are.same({ 500, "Missing BEARER token" }, { r.status, r.body })
    r = request("bruin.customer.get.info", { service_number = SN })
    assert.are.same({ 500, "Missing BEARER token" }, { r.status, r.body })
    assert.are.equal(0, #api_calls())
    assert.are.equal(2, #calls("^/identity/connect/token$")) -- one login attempt per request
    local first = calls("^/identity/connect/token$")[1]
    assert.matches("^Basic ", first.headers.authorization)
    assert.are.equal("grant_type=client_credentials&scope=public_api", first.body)
    engine.stop_unit("bruin_bridge3")
    assert(engine.start_unit { name = "bruin_bridge", script = "scripts/capabilities/bruin_bridge.lua",
      config = bridge_config() })
  end)

  it("case 29 + §9.3: unmapped statuses relay the real status and body", function()
    fault("GET", "/details$", 409, { message = "conflict" })
    local r = request("bruin.ticket.details.request", { ticket_id = 321 })
    assert.are.same({ 409, "conflict" }, { r.status, r.body.message })
    fault("GET", "^/api/Inventory$", 404, "nope")
    r = request("bruin.customer.get.info", { service_number = "VC1" })
    assert.are.same({ 404, "nope" }, { r.status, r.body })
    script("GET", "/nextresult$", 299, { nextResults = {} })
    r = request("bruin.ticket.detail.get.next.results", { ticket_id = 1, detail_id = 2, service_number = "VC1" })
    assert.are.equal(299, r.status)
  end)

  it("a handler error (wrong field type) is answered 500 with a text", function()
    local r = request("bruin.ticket.note.append.request", { ticket_id = 1, note = 5 })
    assert.are.equal(500, r.status)
    assert.matches("note must be a string", r.body)
  end)
end)

describe("lib.bruin against the bridge", function()
  local bruin = require "lib.bruin"
  local rpc = require "lib.rpc"

  before_each(function()
    start()
    reset()
    rpc.configure { notify_errors = false, retry = false }
  end)

  teardown(stop)

  it("open_tickets asks for New, InProgress and Draft outage tickets", function()
    local r = bruin.open_tickets { client_id = CID, service_number = SN }
    assert.is_true(rpc.ok(r))
    assert.are.equal(2, #r.body)
    local seen = {}
    for _, c in ipairs(api_calls()) do
      seen[#seen + 1] = c.query.TicketStatus
      assert.are.equal("VOO", c.query.TicketTopic)
      assert.are.equal(SN, c.query.ServiceNumber)
    end
    table.sort(seen)
    assert.are.same({ "Draft", "InProgress", "New" }, seen)
  end)

  it("details, notes, status changes, next results and change work", function()
    local d = bruin.ticket_details(321)
    assert.are.equal(200, d.status)
    local detail = d.body.ticketDetails[1].detailID
    assert.are.equal(200, bruin.append_note(321, "note", { service_numbers = { SN } }).status)
    assert.are.same({ note = "note", serviceNumbers = { SN } }, calls("/notes$")[1].json)
    local m = bruin.append_multiple_notes(321, { { text = "a", detail_id = detail } })
    assert.are.equal("a", m.body[1].noteValue)
    assert.are.equal(200, bruin.resolve_ticket(321, detail).status)
    assert.are.equal(200, bruin.open_ticket(321, detail).status)
    local n = bruin.next_results(321, detail, SN)
    assert.are.equal(139, n.body.nextResults[1].resultTypeId)
    local w = bruin.change_work { ticket_id = 321, detail_id = detail, service_number = SN,
      queue_name = "Wireless Repair Intervention Needed" }
    assert.are.equal(200, w.status)
    assert.are.equal(200, bruin.task_history(321).status)
    assert.are.equal(321, bruin.ticket_overview(321).body.ticketID)
  end)

  it("inventory, outage ticket and generic creation", function()
    assert.are.equal(edge.management_status, bruin.management_status { client_id = CID, service_number = SN }.body)
    assert.are.equal(CID, bruin.client_info { service_number = SN }.body.client_id)
    local o = bruin.create_outage_ticket(CID, SN)
    assert.are.same({ 409, 123 }, { o.status, o.body })
    local c = bruin.create_ticket { clientId = CID, category = "VAS", services = { { serviceNumber = SN } },
      contacts = {} }
    assert.are.equal(200, c.status)
    assert.is_number(c.body.ticketIds[1])
  end)

  it("an unanswered request becomes the 503 substitute", function()
    engine.stop_unit("bruin_bridge")
    local r = bruin.ticket_details(321, { timeout = 0.3 })
    assert.are.same({ 503, json.null }, { r.status, r.body })
    assert(engine.start_unit { name = "bruin_bridge", script = "scripts/capabilities/bruin_bridge.lua",
      config = bridge_config() })
  end)

  it("bad arguments raise", function()
    assert.has_error(function() bruin.get_tickets { client_id = 1 } end)
    assert.has_error(function() bruin.append_note(1, nil) end)
  end)
end)
