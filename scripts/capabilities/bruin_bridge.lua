--- bruin-bridge: NATS replier in front of the Bruin REST API
-- (spec bruin-bridge.md). Serves the 14 bruin.* subjects in queue group
-- "bruin_bridge"; each request makes its Bruin call(s) and gets one reply.
-- Configuration: the unit's config table, else the original's environment
-- variables (docs/capabilities/bruin-bridge.md).
local nats = require "ae.nats"
local json = require "ae.json"
local log = require "ae.log"
local task = require "ae.task"
local bclient = require "capabilities.bruin.client"

local settings = require("lib.config").new("bruin-bridge")

local config = {
  base_url = settings:get("base_url", "BRUIN_BASE_URL"),
  login_url = settings:get("login_url", "BRUIN_LOGIN_URL"),
  client_id = settings:get("client_id", "BRUIN_CLIENT_ID"),
  client_secret = settings:get("client_secret", "BRUIN_CLIENT_SECRET"),
  environment = settings:get("environment", "ENVIRONMENT_NAME", "dev"),
  timeout = settings:number("timeout", "BRUIN_HTTP_TIMEOUT", 60),
  verify_api = settings:flag("verify_api", "BRUIN_VERIFY_TLS", true),
  verify_login = settings:flag("verify_login", "BRUIN_LOGIN_VERIFY_TLS", true),
  queue = "bruin_bridge",
  note_limit = 1500,
  outage_description = "Automation Engine -- Service Outage Trouble",
}

settings:require(config, { "base_url", "login_url", "client_id", "client_secret" }, {
  base_url = "BRUIN_BASE_URL", login_url = "BRUIN_LOGIN_URL", client_id = "BRUIN_CLIENT_ID",
  client_secret = "BRUIN_CLIENT_SECRET",
})
if not config.timeout or config.timeout <= 0 or config.timeout > 60 then
  error("bruin-bridge: timeout must be a number of seconds in (0, 60]", 0)
end
config.base_url = config.base_url:gsub("/+$", "")
config.login_url = config.login_url:gsub("/+$", "")
log.secret(config.client_secret)

local client = bclient.new(config)
local seg = bclient.segment
local pascal = bclient.pascalize

local function reply(status, body)
  if body == nil then body = json.null end
  return { status = status, body = body }
end

local function bad(text) return reply(400, text) end

-- A wrong type in a request is answered 500 with a text (spec §9.4).
local function wrong_type(text) error("bruin-bridge: " .. text, 0) end

local function truthy(v)
  return v ~= nil and v ~= json.null and v ~= false and v ~= 0 and v ~= ""
end

local function present(t, k) return t[k] ~= nil end

local function is_null(v) return v == nil or v == json.null end

local function chars(s)
  if type(s) ~= "string" then wrong_type("a note must be a string") end
  return utf8.len(s) or #s
end

local function result(r) return reply(r.status, r.body) end

-- Python repr / str of JSON values, for the change-work texts (§5.12).
local function pyrepr(v)
  if v == nil or v == json.null then return "None" end
  if v == true then return "True" end
  if v == false then return "False" end
  if type(v) == "string" then return "'" .. v:gsub("\\", "\\\\"):gsub("'", "\\'") .. "'" end
  if math.type(v) == "float" then
    if v == math.floor(v) then return string.format("%.1f", v) end
    return string.format("%.17g", v)
  end
  if type(v) ~= "table" then return tostring(v) end
  if json.is_array(v) then
    local out = {}
    for i, x in ipairs(v) do out[i] = pyrepr(x) end
    return "[" .. table.concat(out, ", ") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for i, k in ipairs(keys) do out[i] = pyrepr(tostring(k)) .. ": " .. pyrepr(v[k]) end
  return "{" .. table.concat(out, ", ") .. "}"
end

local function pystr(v)
  if type(v) == "string" then return v end
  return pyrepr(v)
end

local function body_of(req)
  local b = req.body
  if b == json.null then return nil end
  return b
end

local function need_table(b)
  if type(b) ~= "table" then wrong_type("the request body must be a JSON object") end
  return b
end

local function list_of(v, what)
  if type(v) == "string" then return { v } end
  if type(v) ~= "table" then wrong_type(what .. " must be a list") end
  return v
end

------------------------------------------------------------------ 1 tickets
local TICKETS_FIELDS =
  'You must specify {..."body:{"client_id", "category", "ticket_topic", "ticket_status":[list of statuses]}...} ' ..
  "in the request"

local function get_tickets(req)
  local b = body_of(req)
  if not b then return bad('Must include "body" in request') end
  need_table(b)
  for _, k in ipairs { "client_id", "category", "ticket_topic", "ticket_status" } do
    if not present(b, k) then return bad(TICKETS_FIELDS) end
  end
  local statuses = list_of(b.ticket_status, "ticket_status")
  local base = { { "ClientId", b.client_id }, { "TicketTopic", b.ticket_topic } }
  if truthy(b.ticket_id) then base[#base + 1] = { "TicketId", b.ticket_id } end
  if truthy(b.service_number) then base[#base + 1] = { "ServiceNumber", b.service_number } end
  if truthy(b.start_date) and truthy(b.end_date) then
    base[#base + 1] = { "StartDate", b.start_date }
    base[#base + 1] = { "EndDate", b.end_date }
  end
  local fns = {}
  for i, st in ipairs(statuses) do
    fns[i] = function()
      local q = {}
      for j, kv in ipairs(base) do q[j] = kv end
      q[#q + 1] = { "TicketStatus", st }
      if b.category == "" then
        q[#q + 1] = { "Category", "" }
      else
        q[#q + 1] = { "ProductCategory", b.category }
      end
      local r = client:call("tickets", "GET", "/api/Ticket", { query = q })
      if r.ok then
        if type(r.body) ~= "table" or type(r.body.responses) ~= "table" then
          return { status = 500, body = "responses" }
        end
        r.list = r.body.responses
      end
      return r
    end
  end
  if #fns == 0 then return reply(200, json.array {}) end
  local results, errors, nerr = task.gather(fns)
  if nerr > 0 then
    for i = 1, #fns do
      if errors[i] then log.error("bruin.ticket.request: status call %d failed: %s", i, tostring(errors[i])) end
    end
    return reply(500, "Error while getting tickets from Bruin: " .. tostring(errors[next(errors)]))
  end
  local merged, pos = json.array {}, {}
  local status, failed = results[1].status, nil
  for _, r in ipairs(results) do
    if r.list then
      for _, t in ipairs(r.list) do
        local id = type(t) == "table" and t.ticketID
        if id ~= nil and pos[id] then
          merged[pos[id]] = t
        else
          merged[#merged + 1] = t
          if id ~= nil then pos[id] = #merged end
        end
      end
    elseif not failed then
      failed = r.status
    end
  end
  return reply(failed or status, merged)
end

------------------------------------------------------------------ 2 details
local function ticket_details(req)
  local b = body_of(req)
  if not b then return bad('Must include "body" in request') end
  need_table(b)
  if is_null(b.ticket_id) then return bad("You must include ticket_id in the request") end
  return result(client:call("ticket_details", "GET", "/api/Ticket/" .. seg(b.ticket_id) .. "/details"))
end

----------------------------------------------------------------- 3 overview
local function ticket_overview(req)
  local b = body_of(req)
  if not b then return bad('Must include "body" in request') end
  need_table(b)
  if not present(b, "ticket_id") then return bad('Must include "ticket_id" in body') end
  local id = b.ticket_id
  local n
  if math.type(id) == "integer" and id >= 0 then
    n = id
  elseif type(id) == "string" and id:match("^%d+$") then
    n = math.tointeger(tonumber(id))
  end
  if not n then return reply(404, "not ticket id found") end
  local r = client:call("tickets", "GET", "/api/Ticket", { query = { { "TicketId", n } } })
  if not r.ok then return result(r) end
  if type(r.body) ~= "table" or type(r.body.responses) ~= "table" then return reply(500, "responses") end
  local first = r.body.responses[1]
  if first == nil then return reply(r.status, json.array {}) end
  return reply(r.status, first)
end

---------------------------------------------------------------- 4 one note
local function append_note(req)
  local b = body_of(req)
  if not b then return bad('Must include "body" in request') end
  need_table(b)
  if not present(b, "ticket_id") or not present(b, "note") then
    return bad('You must include "ticket_id" and "note" in the "body" field of the response request')
  end
  if chars(b.note) > config.note_limit then return bad("Note exceeds 1500 character limit") end
  local payload = { note = b.note }
  local sns = b.service_numbers
  if type(sns) == "table" and #sns > 0 then
    payload.serviceNumbers = sns
  elseif sns ~= nil and sns ~= json.null and type(sns) ~= "table" then
    wrong_type("service_numbers must be a list")
  end
  return result(client:call("append_note", "POST", "/api/Ticket/" .. seg(b.ticket_id) .. "/notes",
    { json = payload }))
end

--------------------------------------------------------- 5 multiple notes
local NOTES_FIELDS =
  'You must include "text" and any of "service_number" and "detail_id" for every note in the "notes" field'

local function append_notes(req)
  local b = body_of(req)
  if not b then return bad('Must include "body" in request') end
  need_table(b)
  if not present(b, "ticket_id") or not present(b, "notes") then
    return bad('You must include "ticket_id" and "notes" in the body of the request')
  end
  if type(b.notes) ~= "table" then wrong_type("notes must be a list") end
  local notes = json.array {}
  for i, n in ipairs(b.notes) do
    if type(n) ~= "table" then wrong_type("every note must be an object") end
    if not present(n, "text") or not (present(n, "service_number") or present(n, "detail_id")) then
      return bad(NOTES_FIELDS)
    end
    if chars(n.text) > config.note_limit then
      return bad(string.format("One of the notes for ticket %s exceeds 1500 character limit", pystr(b.ticket_id)))
    end
    local out = { noteValue = n.text, noteType = truthy(n.is_private) and "CON" or "ADN" }
    if present(n, "service_number") then out.serviceNumber = n.service_number end
    if present(n, "detail_id") then out.detailId = n.detail_id end
    notes[i] = out
  end
  local r = client:call("append_notes", "POST", "/api/Ticket/" .. seg(b.ticket_id) .. "/notes/advanced",
    { json = { notes = notes } })
  if not r.ok then return result(r) end
  if type(r.body) ~= "table" or r.body.ticketNotes == nil then return reply(500, "ticketNotes") end
  return reply(r.status, r.body.ticketNotes)
end

--------------------------------------------------------- 6 ticket creation
local function create_ticket(req)
  local b = body_of(req)
  if not b then
    return bad('You must specify {.."body":{"clientId", "category", "services", "contacts"}, in the request')
  end
  need_table(b)
  for _, k in ipairs { "clientId", "category", "services", "contacts" } do
    if not present(b, k) then
      return bad('You must specify "clientId", "category", "services", "contacts" in the body')
    end
  end
  local payload = {}
  for k, v in pairs(b) do payload[k] = v end
  if payload.notes == nil then payload.notes = json.array {} end
  local r = client:call("create_ticket", "POST", "/api/Ticket/", { json = payload })
  if r.ok then
    local ids = type(r.body) == "table" and r.body.ticketIds
    if type(ids) ~= "table" or ids[1] == nil then
      return reply(500, "Bruin's answer to the ticket creation has no ticketIds")
    end
    log.info("Bruin created ticket %s for client %s", pystr(ids[1]), pystr(b.clientId))
  end
  return result(r)
end

------------------------------------------------------- 7/8 open / resolve
local function change_status(code)
  return function(req)
    local b = body_of(req)
    if not b then return bad('Must include "body" in request') end
    need_table(b)
    if not truthy(b.ticket_id) or not truthy(b.detail_id) then
      return bad("You must include ticket_id and detail_id in the request")
    end
    return result(client:call("change_status", "PUT",
      "/api/Ticket/" .. seg(b.ticket_id) .. "/details/" .. seg(b.detail_id) .. "/status",
      { json = { Status = code } }))
  end
end

-- Every key of a filter body, pascalized: the known keys first in the
-- original's order, then any others sorted.
local function filter_query(b, order)
  local q, seen = {}, {}
  for _, k in ipairs(order) do
    if b[k] ~= nil then
      q[#q + 1] = { pascal(k), b[k] }
      seen[k] = true
    end
  end
  local rest = {}
  for k in pairs(b) do
    if not seen[k] then rest[#rest + 1] = k end
  end
  table.sort(rest)
  for _, k in ipairs(rest) do q[#q + 1] = { pascal(k), b[k] } end
  return q
end

-------------------------------------------------------- 9 management status
local function management_status(req)
  local b = body_of(req)
  if not b then
    return bad('You must specify {.."body":{"client_id", "status", "service_number"}...} in the request')
  end
  need_table(b)
  for _, k in ipairs { "client_id", "status", "service_number" } do
    if not present(b, k) then
      return bad('You must specify "client_id", "status", "service_number" in the filter')
    end
  end
  local r = client:call("management_status", "GET", "/api/Inventory/Attribute",
    { query = filter_query(b, { "client_id", "status", "service_number" }) })
  if not r.ok then return result(r) end
  if type(r.body) ~= "table" or r.body.attributes == nil then return result(r) end
  if type(r.body.attributes) ~= "table" then return reply(500, "attributes") end
  for _, a in ipairs(r.body.attributes) do
    if type(a) == "table" and a.key == "Management Status" then return reply(r.status, a.value) end
  end
  return reply(r.status, json.null)
end

---------------------------------------------------------- 10 outage ticket
local function outage_ticket(req)
  local b = body_of(req)
  if not b then return bad('Must include "body" in request') end
  need_table(b)
  if not present(b, "client_id") or not present(b, "service_number") then
    return bad('Must specify "client_id" and "service_number" to post an outage ticket')
  end
  if is_null(b.client_id) or is_null(b.service_number) then
    return bad('"client_id" and "service_number" must have non-null values')
  end
  local payload = { ClientID = b.client_id, WTNs = json.array { b.service_number },
    RequestDescription = config.outage_description }
  local text = string.format('{"ClientID": %s, "WTNs": [%s], "RequestDescription": %s}',
    json.encode(b.client_id, { ascii = true }), json.encode(b.service_number, { ascii = true }),
    json.encode(config.outage_description))
  local r = client:call("outage", "POST", "/api/Ticket/repair", { json = payload, payload_text = text })
  if not r.ok then return result(r) end
  local body = r.body
  local list = type(body) == "table" and (body.assets ~= nil and body.assets or body.items)
  local first = type(list) == "table" and list[1]
  if type(first) ~= "table" or first.errorCode == nil then
    log.error("Bruin outage ticket answer without assets/items errorCode: %s", json.encode(body))
    return reply(500, "Bruin's answer to the outage ticket creation has no assets/items with an errorCode")
  end
  local code = first.errorCode
  if code == 409 or code == 471 or code == 472 or code == 473 then return reply(code, first.ticketId) end
  return reply(r.status, first.ticketId)
end

------------------------------------------------------------- 11 client info
local function client_info(req)
  local b = body_of(req)
  if not b then return bad('You must specify {.."body":{"service_number":...}} in the request') end
  need_table(b)
  if not present(b, "service_number") then return bad('You must specify "service_number" in the body') end
  local r = client:call("inventory", "GET", "/api/Inventory",
    { query = filter_query(b, { "service_number" }) })
  if not r.ok then return result(r) end
  local docs = type(r.body) == "table" and r.body.documents
  local sn = tostring(b.service_number)
  if type(docs) == "table" then
    for _, d in ipairs(docs) do
      if type(d) == "table" and d.status == "A" and type(d.serviceNumber) == "string"
        and sn:find(d.serviceNumber, 1, true) then
        return reply(r.status, { client_id = d.clientID == nil and json.null or d.clientID,
          client_name = d.clientName == nil and json.null or d.clientName })
      end
    end
  end
  return reply(r.status, { client_id = json.null, client_name = json.null })
end

------------------------------------------------------------- 12 change work
local function change_work(req)
  local b = body_of(req)
  local fields = 'You must specify {.."body": {"service_number", "ticket_id", "detail_id", "queue_name"}..} ' ..
    "in the request"
  if not b or type(b) ~= "table" or next(b) == nil then return bad(fields) end
  for _, k in ipairs { "service_number", "ticket_id", "detail_id", "queue_name" } do
    if not present(b, k) then return bad(fields) end
  end
  local t = pystr(b.ticket_id)
  local filters = string.format("{'ServiceNumber': %s, 'DetailId': %s}", pyrepr(b.service_number),
    pyrepr(b.detail_id))
  local r = client:call("next_results", "GET", "/api/Ticket/" .. seg(b.ticket_id) .. "/nextresult",
    { query = { { "ServiceNumber", b.service_number }, { "DetailId", b.detail_id } } })
  if not r.ok then
    return reply(r.status, string.format("Error while claiming possible work queues for ticket %s and filters %s: %s",
      t, filters, pystr(r.body)))
  end
  local nexts = type(r.body) == "table" and r.body.nextResults
  if type(nexts) ~= "table" or #nexts == 0 then
    return reply(404, string.format("No work queues were found for ticket %s and filters %s", t, filters))
  end
  local id
  for _, n in ipairs(nexts) do
    if type(n) == "table" and n.resultName == b.queue_name then
      id = n.resultTypeId
      break
    end
  end
  if not truthy(id) then
    return reply(404, string.format("No work queue with name %s was found using ticket ID %s and filters %s",
      pystr(b.queue_name), t, filters))
  end
  local payload = {
    details = json.array { { detailId = b.detail_id, serviceNumber = b.service_number } },
    notes = json.array {}, resultTypeId = id,
  }
  return result(client:call("change_work", "PUT", "/api/Ticket/" .. seg(b.ticket_id) .. "/details/work",
    { json = payload }))
end

------------------------------------------------------------ 13 task history
local function task_history(req)
  local b = body_of(req)
  if not b then return bad('You must specify {.."body":{"ticket_id"}...} in the request') end
  need_table(b)
  if not present(b, "ticket_id") then return bad('You must specify "ticket_id" in the body') end
  local r = client:call("task_history", "GET", "/api/Ticket/AITicketData",
    { query = { { "ticketId", b.ticket_id } } })
  if not r.ok then return result(r) end
  if type(r.body) ~= "table" or r.body.result == nil then return reply(500, "result") end
  return reply(r.status, r.body.result)
end

------------------------------------------------------------ 14 next results
local function next_results(req)
  local b = body_of(req)
  local fields = 'You must specify {.."body": {"ticket_id", "detail_id", "service_number"}...} in the request'
  if type(b) ~= "table" then return bad(fields) end
  local n = 0
  for _ in pairs(b) do n = n + 1 end
  if n ~= 3 or b.ticket_id == nil or b.detail_id == nil or b.service_number == nil then return bad(fields) end
  return result(client:call("next_results", "GET", "/api/Ticket/" .. seg(b.ticket_id) .. "/nextresult",
    { query = { { "ServiceNumber", b.service_number }, { "DetailId", b.detail_id } } }))
end

local SUBJECTS = {
  { "bruin.ticket.request", get_tickets },
  { "bruin.ticket.details.request", ticket_details },
  { "bruin.ticket.overview.request", ticket_overview },
  { "bruin.ticket.note.append.request", append_note },
  { "bruin.ticket.multiple.notes.append.request", append_notes },
  { "bruin.ticket.creation.request", create_ticket },
  { "bruin.ticket.status.open", change_status("O") },
  { "bruin.ticket.status.resolve", change_status("R") },
  { "bruin.inventory.management.status", management_status },
  { "bruin.ticket.creation.outage.request", outage_ticket },
  { "bruin.customer.get.info", client_info },
  { "bruin.ticket.change.work", change_work },
  { "bruin.ticket.get.task.history", task_history },
  { "bruin.ticket.detail.get.next.results", next_results },
}

-- Startup (spec §1): log in once (a failure is only logged; §9.5 retries it
-- on the next request), then serve.
if not client:login() then log.warning("Bruin login at startup failed; will retry on the next request") end
for _, s in ipairs(SUBJECTS) do
  assert(nats.serve(s[1], s[2], { queue = config.queue }))
end
log.info("bruin-bridge serving %d subjects for %s (%s)", #SUBJECTS, config.base_url, config.environment)

return { client = client, config = config }
