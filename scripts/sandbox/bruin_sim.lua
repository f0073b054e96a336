--- sandbox.bruin_sim: the Bruin API (bruin-bridge.md §6) as an engine unit
-- on the main HTTP server, under /sim/bruin. Both the identity server and
-- the API live there: point BRUIN_LOGIN_URL and BRUIN_BASE_URL at
-- http://127.0.0.1:PORT/sim/bruin.
--
-- Config (unit table): client_id / client_secret (accepted credentials,
-- default "sim-client" / "sim-secret"), token_ttl (s, 3600), fleet (options
-- of sandbox.fleet.generate), tickets (fixture tickets, see
-- docs/capabilities/bruin-bridge.md), repair_root ("assets" or "items").
--
-- Besides the sim.lua control routes (_calls, _faults with kind
-- "expired_token"), it offers:
--   POST   /sim/bruin/_replies   {method=, path= (Lua pattern), query = {K = V}, status=, body=, times=}
--                                 a scripted answer for calls whose query has those values
--   DELETE /sim/bruin/_replies
--   POST   /sim/bruin/_tickets   a fixture ticket (same shape as config.tickets[i]) -> {ticketID=}
--   GET    /sim/bruin/_tickets/:id   the ticket's state
--   POST   /sim/bruin/_expire_tokens   every issued token expires now
local sim = require "sandbox.sim"
local fleet_mod = require "sandbox.fleet"
local json = require "ae.json"
local clock = require "ae.clock"
local log = require "ae.log"
local unit = require "ae.unit"

local cfg = unit.config or {}
local S = sim.new("bruin")
local CT = "application/json; charset=utf-8"

local state = {
  client_id = cfg.client_id or "sim-client",
  client_secret = cfg.client_secret or "sim-secret",
  token_ttl = cfg.token_ttl or 3600,
  repair_root = cfg.repair_root or "assets",
  tokens = {}, token_seq = 0,
  tickets = {}, order = {}, position = {}, by_serial = {},
  next_ticket = 5000000, next_detail = 7000000, next_note = 70000000,
  replies = {},
}
local fleet = fleet_mod.generate(cfg.fleet or { edges = 40, seed = 1 })

local function jreply(status, value, headers)
  local h = { ["Content-Type"] = CT }
  for k, v in pairs(headers or {}) do h[k] = v end
  return { status = status, headers = h, body = json.encode(value) }
end

local function model_error(instance, errors)
  return jreply(400, { errors = json.object(errors), type = json.null, title = "Invalid arguments to the API",
    status = 400, detail = "The inputs supplied to the API are invalid", instance = instance,
    extensions = json.object {} })
end

local function business_error(message)
  return jreply(400, { message = message, messageDetail = json.null, data = json.null,
    type = "ValidationException", code = 400 })
end

local function bruin_date(t)
  local h = tonumber(os.date("!%H", t))
  local ampm = h >= 12 and "PM" or "AM"
  h = h % 12
  if h == 0 then h = 12 end
  return string.format("%d/%d/%s %d:%s %s", tonumber(os.date("!%m", t)), tonumber(os.date("!%d", t)),
    os.date("!%Y", t), h, os.date("!%M:%S", t), ampm)
end

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%S.000-00:00", math.floor(t))
end

local function parse_iso(s)
  local y, mo, d, h, mi, se = tostring(s):match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
  if not y then return nil end
  -- days from civil (UTC)
  y, mo = tonumber(y), tonumber(mo)
  if mo <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local mp = (mo + 9) % 12
  local doy = (153 * mp + 2) // 5 + tonumber(d) - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(se)
end

--------------------------------------------------------------- ticket state
local STATUS_ALIASES = { InProgress = "In-Progress", ["In-Progress"] = "In-Progress" }

local function address_of(edge)
  return { address = string.format("%d Water St", 10 + (edge and edge.site_id or 0) % 90), city = "New York",
    state = "NY", zip = "10041-3299", country = "USA" }
end

-- Ticket ids by the service number of their details, so that
-- GET /api/Ticket?ServiceNumber= (three per autoresolve of every healthy edge)
-- looks at that serial's tickets only, not at every ticket.
local function index_serial(ticket_id, sn)
  local ids = state.by_serial[sn]
  if not ids then
    ids = {}
    state.by_serial[sn] = ids
  end
  for _, id in ipairs(ids) do
    if id == ticket_id then return end
  end
  ids[#ids + 1] = ticket_id
end

-- Ids of the tickets that may have a detail for sn, in ticket order.
local function tickets_of_serial(sn)
  local known = state.by_serial[sn] or {}
  local ids = table.move(known, 1, #known, 1, {})
  table.sort(ids, function(a, b) return state.position[a] < state.position[b] end)
  return ids
end

local function add_ticket(t)
  state.next_ticket = state.next_ticket + 1
  local id = t.ticketID or t.ticket_id or state.next_ticket
  local sns = t.service_numbers or { t.service_number }
  local first = fleet.edge_by_serial[sns[1] or ""]
  local created = math.floor(t.created or clock.now())
  local ticket = {
    ticketID = id, clientID = t.clientID or t.client_id or (first and first.client_id) or 9994,
    clientName = t.clientName or t.client_name or (first and first.client_name) or "METTEL/NEW YORK",
    category = t.category or "SD-WAN", topic_code = t.topic or "VOO",
    ticketStatus = STATUS_ALIASES[t.status or "New"] or t.status or "New",
    address = t.address or address_of(first), created = created, site_id = t.site_id or (first and first.site_id),
    createdBy = t.createdBy or "Intelygenz Ai", severity = t.severity or "2",
    details = {}, notes = {}, next_results = t.next_results, no_unresolve = t.no_unresolve,
  }
  for _, sn in ipairs(sns) do
    state.next_detail = state.next_detail + 1
    index_serial(id, sn)
    ticket.details[#ticket.details + 1] = { detailID = state.next_detail, detailValue = sn,
      detailStatus = (ticket.ticketStatus == "Resolved" or ticket.ticketStatus == "Closed") and "R" or "I",
      currentTaskName = json.null }
  end
  for _, n in ipairs(t.notes or {}) do
    state.next_note = state.next_note + 1
    ticket.notes[#ticket.notes + 1] = { noteId = state.next_note, noteValue = n, serviceNumber = sns,
      createdDate = iso(created), noteType = "ADN" }
  end
  if not state.tickets[id] then
    state.order[#state.order + 1] = id
    state.position[id] = #state.order
  end
  state.tickets[id] = ticket
  if type(id) == "number" and id > state.next_ticket then state.next_ticket = id end
  return ticket
end

local function topic_name(code)
  if code == "VOO" then return "Service Outage Trouble" end
  if code == "VAS" then return "Service Affecting Trouble" end
  return code
end

local function ticket_json(t)
  local nl = t.notes[#t.notes]
  return { clientID = t.clientID, clientName = t.clientName, ticketID = t.ticketID, category = t.category,
    topic = topic_name(t.topic_code), referenceTicketNumber = 0, ticketStatus = t.ticketStatus,
    address = t.address, createDate = bruin_date(t.created), createdBy = t.createdBy, creationNote = json.null,
    resolveDate = "", resolvedby = json.null, closeDate = json.null, closedBy = json.null, lastUpdate = json.null,
    updatedBy = json.null, mostRecentNote = nl and (bruin_date(t.created) .. " Intelygenz Ai") or "",
    nextScheduledDate = bruin_date(t.created + 6 * 86400), flags = "", severity = t.severity }
end

local function find_ticket(id)
  return state.tickets[math.tointeger(tonumber(id)) or id]
end

local function detail_by_id(t, id)
  id = math.tointeger(tonumber(id))
  for _, d in ipairs(t.details) do
    if d.detailID == id then return d end
  end
end

local function detail_by_sn(t, sn)
  for _, d in ipairs(t.details) do
    if d.detailValue == sn then return d end
  end
end

local function refresh_status(t)
  local all = true
  for _, d in ipairs(t.details) do
    if d.detailStatus ~= "R" then all = false end
  end
  if all and #t.details > 0 then t.ticketStatus = "Resolved" else t.ticketStatus = "In-Progress" end
end

---------------------------------------------------------------------- auth
local function issue_token()
  state.token_seq = state.token_seq + 1
  local tok = string.format("sim-token-%d-%08x", state.token_seq, math.random(0, 0x7fffffff))
  state.tokens[tok] = clock.now() + state.token_ttl
  return tok
end

S:route("POST", "/identity/connect/token", function(req)
  local id, secret = sim.basic_auth(req)
  if id ~= state.client_id or secret ~= state.client_secret then
    return jreply(400, { error = "invalid_client" })
  end
  local form = sim.form(req.body)
  if form.grant_type ~= "client_credentials" then return jreply(400, { error = "unsupported_grant_type" }) end
  if form.scope ~= "public_api" then return jreply(400, { error = "invalid_scope" }) end
  return jreply(200, { access_token = issue_token(), expires_in = state.token_ttl, token_type = "Bearer",
    scope = "public_api" })
end)

local function authorised(req)
  local tok = (req.headers.authorization or ""):match("^Bearer%s+(.+)$")
  local exp = tok and state.tokens[tok]
  if not exp or clock.now() >= exp then return false end
  if S:fault("expired_token", req) then
    state.tokens[tok] = nil
    return false
  end
  return true
end

local function unauthorised()
  return { status = 401, headers = { ["WWW-Authenticate"] = 'Bearer error="invalid_token"' }, body = "" }
end

local function scripted(req)
  for i, r in ipairs(state.replies) do
    local match = (not r.method or r.method == req.method) and (not r.path or req._call.path:match(r.path))
    if match and type(r.query) == "table" then
      for k, v in pairs(r.query) do
        if req.query[k] ~= tostring(v) then match = false end
      end
    end
    if match then
      if r.times then
        r.times = r.times - 1
        if r.times <= 0 then table.remove(state.replies, i) end
      end
      if type(r.body) == "string" and not r.json then
        return { status = r.status or 200, headers = { ["Content-Type"] = "text/plain" }, body = r.body }
      end
      return jreply(r.status or 200, r.body == nil and json.null or r.body)
    end
  end
end

-- An API route: bearer check, scripted replies, then the handler.
local function api(method, pattern, handler)
  S:route(method, pattern, function(req, call)
    if not authorised(req) then return unauthorised() end
    local s = scripted(req)
    if s then return s end
    local ctype = req.headers["content-type"] or ""
    if #req.body > 0 and not (ctype:find("application/json", 1, true)
        or ctype:find("application/json-patch+json", 1, true)) then
      return jreply(415, { title = "Unsupported Media Type", status = 415 })
    end
    return handler(req, call)
  end)
end

---------------------------------------------------------------- endpoints
api("GET", "/api/Ticket", function(req)
  local q = req.query
  local want_status = q.TicketStatus and (STATUS_ALIASES[q.TicketStatus] or q.TicketStatus)
  local from, to = parse_iso(q.StartDate), parse_iso(q.EndDate)
  local out = json.array {}
  for _, id in ipairs(q.ServiceNumber and tickets_of_serial(q.ServiceNumber) or state.order) do
    local t = state.tickets[id]
    local ok = (not q.ClientId or tostring(t.clientID) == q.ClientId)
      and (not q.TicketTopic or t.topic_code == q.TicketTopic)
      and (not want_status or t.ticketStatus == want_status)
      and (not q.ProductCategory or t.category == q.ProductCategory)
      and (not q.TicketId or tostring(t.ticketID) == q.TicketId)
      and (not q.ServiceNumber or detail_by_sn(t, q.ServiceNumber) ~= nil)
      and (not from or t.created >= from) and (not to or t.created <= to)
    if ok then out[#out + 1] = ticket_json(t) end
  end
  return jreply(200, { responses = out })
end)

api("GET", "/api/Ticket/AITicketData", function(req)
  local t = find_ticket(req.query.ticketId)
  if not t then return jreply(400, { result = "Failure" }) end
  local rows = json.array {}
  for _, n in ipairs(t.notes) do
    rows[#rows + 1] = { ClientName = t.clientName, ["Ticket Entered Date"] = os.date("!%Y%m%d%H%M", t.created),
      EnteredDate = iso(t.created), CallTicketID = t.ticketID,
      ["Initial Note @ Ticket Creation"] = "Automation Engine -- Service Outage Trouble", DetailID = json.null,
      Product = json.null, Asset = json.null, Address1 = t.address.address, Address2 = json.null,
      City = t.address.city, State = t.address.state, Zip = t.address.zip, ["Site Name"] = "Site",
      NoteType = n.noteType or "ADN", Notes = n.noteValue, ["Note Entered Date"] = os.date("!%Y%m%d%H%M", t.created),
      EnteredDate_N = n.createdDate, ["Note Entered By"] = "Intelygenz Ai", ["Task Assigned To"] = json.null,
      Task = json.null, ["Task Result"] = json.null, SLA = json.null, ["Ticket Status"] = t.ticketStatus }
  end
  return jreply(200, { result = rows })
end)

api("GET", "/api/Ticket/:id/details", function(req)
  local t = find_ticket(req.params.id)
  if not t then return { status = 404, headers = {}, body = "" } end
  local details, notes = json.array {}, json.array {}
  for i, d in ipairs(t.details) do
    details[i] = { detailID = d.detailID, detailType = "Repair_WTN", detailStatus = d.detailStatus,
      detailValue = d.detailValue, assignedToName = "0", currentTaskID = json.null,
      currentTaskName = d.currentTaskName, lastUpdatedBy = 442301, lastUpdatedAt = iso(t.created) }
  end
  for i, n in ipairs(t.notes) do
    notes[i] = { noteId = n.noteId, noteValue = n.noteValue, serviceNumber = json.array(n.serviceNumber or {}),
      createdDate = n.createdDate, creator = json.null }
  end
  return jreply(200, { ticketDetails = details, ticketNotes = notes })
end)

local function new_note(t, value, sns, detail, ntype)
  state.next_note = state.next_note + 1
  local n = { noteId = state.next_note, noteValue = value, serviceNumber = sns, createdDate = iso(clock.now()),
    noteType = ntype or "ADN", detailID = detail }
  t.notes[#t.notes + 1] = n
  return { noteID = n.noteId, noteType = n.noteType, noteValue = value, actionID = json.null,
    detailID = detail or json.null, enteredBy = 442301, enteredDate = n.createdDate, lastViewedBy = json.null,
    lastViewedDate = json.null, refNoteID = json.null, noteStatus = json.null, noteText = json.null,
    childNotes = json.null, documents = json.null, alerts = json.null, taggedUserDirIDs = json.null }
end

api("POST", "/api/Ticket/:id/notes", function(req)
  local t = find_ticket(req.params.id)
  if not t then return { status = 404, headers = {}, body = "" } end
  local b = req:json()
  if type(b) ~= "table" or type(b.note) ~= "string" then
    return model_error(req._call.path, { note = { "The note field is required." } })
  end
  local sns = type(b.serviceNumbers) == "table" and b.serviceNumbers or nil
  return jreply(200, { ticketNotes = json.array { new_note(t, b.note, sns) } })
end)

api("POST", "/api/Ticket/:id/notes/advanced", function(req)
  local t = find_ticket(req.params.id)
  if not t then return { status = 404, headers = {}, body = "" } end
  local b = req:json()
  if type(b) ~= "table" or type(b.notes) ~= "table" then
    return model_error(req._call.path, { notes = { "The notes field is required." } })
  end
  local out = json.array {}
  for i, n in ipairs(b.notes) do
    local d = n.detailId and detail_by_id(t, n.detailId) or (n.serviceNumber and detail_by_sn(t, n.serviceNumber))
    if not d then return business_error("Ticket Detail not found") end
    out[i] = new_note(t, n.noteValue, n.serviceNumber and { n.serviceNumber } or nil, d.detailID, n.noteType)
  end
  return jreply(200, { ticketNotes = out })
end)

api("POST", "/api/Ticket", function(req)
  local b = req:json()
  if type(b) ~= "table" or math.type(b.clientId) ~= "integer" then
    return model_error("/api/Ticket/", { clientId = { "The value is not valid." } })
  end
  if type(b.services) ~= "table" or #b.services == 0 then
    return model_error("/api/Ticket/", { services = { "The services field is required." } })
  end
  local sns = {}
  for i, s in ipairs(b.services) do sns[i] = s.serviceNumber end
  local t = add_ticket { client_id = b.clientId, service_numbers = sns, topic = b.category, status = "New",
    category = "SD-WAN" }
  for _, n in ipairs(b.notes or {}) do
    if type(n) == "table" and n.text then new_note(t, n.text, sns) end
  end
  return jreply(200, { ticketIds = json.array { t.ticketID } })
end)

api("PUT", "/api/Ticket/:t/details/:d/status", function(req)
  local t = find_ticket(req.params.t)
  local d = t and detail_by_id(t, req.params.d)
  if not d then return { status = 404, headers = {}, body = "" } end
  local b = req:json()
  local code = type(b) == "table" and b.Status
  if code ~= "O" and code ~= "R" then return model_error(req._call.path, { Status = { "The value is not valid." } }) end
  d.detailStatus = code == "O" and "I" or "R"
  refresh_status(t)
  return jreply(200, "Success")
end)

local function edge_for(sn, client_id)
  local e = fleet.edge_by_serial[sn or ""]
  if e and client_id and tostring(e.client_id) ~= tostring(client_id) then return nil end
  return e
end

api("GET", "/api/Inventory/Attribute", function(req)
  local q = req.query
  if not q.ClientId or not q.Status or not q.ServiceNumber then
    return business_error("Please provide valid ClientId, Status and ServiceNumber.")
  end
  if not q.ClientId:match("^%d+$") then return model_error("/api/Inventory/Attribute", { ClientId = {
    "The value '" .. q.ClientId .. "' is not valid." } }) end
  local e = edge_for(q.ServiceNumber, q.ClientId)
  if not e or e.inventory_status ~= q.Status then
    return jreply(200, { inventoryId = json.null, serviceNumber = q.ServiceNumber, attributes = json.array {} })
  end
  return jreply(200, { inventoryId = tostring(12000000 + e.id), serviceNumber = e.serial, attributes = json.array {
    { key = "Management Status", value = e.management_status },
    { key = "RD1.K3", value = "RD Circuit information" } } })
end)

api("GET", "/api/Inventory", function(req)
  local q = req.query
  if q.ClientId and not q.ClientId:match("^%d+$") then
    return model_error("/api/Inventory", { ClientId = { "The value '" .. q.ClientId .. "' is not valid." } })
  end
  local docs = json.array {}
  local e = edge_for(q.ServiceNumber, q.ClientId)
  if e and (not q.Status or q.Status == e.inventory_status) then
    docs[1] = { clientID = e.client_id, clientName = e.client_name, vendor = "VeloCloud",
      accountNumber = tostring(50000 + e.client_id), subAccountNumber = "4554", inventoryID = tostring(12000000 + e.id),
      serviceNumber = e.serial, siteId = e.site_id, siteLabel = e.name, address = address_of(e),
      hierarchy = "|" .. e.client_name .. "|", costCenter = "15830", assignee = json.null, description = "",
      installDate = e.system_up_since, disconnectDate = json.null, status = e.inventory_status, verified = "Y",
      productCategory = "SD-WAN", productType = "SD-WAN",
      items = json.array { { itemName = "Licensed Software - SD-WAN 30M", primaryIndicator = "SD-WAN" } },
      contractIdentifier = json.null, rateCardIdentifier = json.null, lastInvoiceUsageDate = e.system_up_since,
      lastUsageDate = json.null, longitude = -76.265384, latitude = 36.843456 }
  end
  return jreply(200, { documents = docs })
end)

api("POST", "/api/Ticket/repair", function(req)
  local b = req:json()
  if type(b) ~= "table" or math.type(b.ClientID) ~= "integer" then
    return model_error("/api/Ticket/repair", { clientId = { "The value is not valid." } })
  end
  if type(b.WTNs) ~= "table" or type(b.WTNs[1]) ~= "string" then
    return model_error("/api/Ticket/repair", { WTNs = { "The WTNs field is required." } })
  end
  local sn = b.WTNs[1]
  local e = edge_for(sn, b.ClientID)
  if not e then return business_error("Invalid WTN " .. sn .. " for client " .. b.ClientID) end
  local function asset(t, code, msg)
    local d = detail_by_sn(t, sn)
    return jreply(200, { [state.repair_root] = json.array { { ticketId = t.ticketID,
      inventoryId = 12000000 + e.id, wtn = sn, errorMessage = msg or json.null, errorCode = code,
      detailId = d and d.detailID or json.null } } })
  end
  local resolved_same, resolved_site
  for _, id in ipairs(state.order) do
    local t = state.tickets[id]
    if t.topic_code == "VOO" and t.clientID == b.ClientID then
      local d = detail_by_sn(t, sn)
      if d and (t.ticketStatus == "New" or t.ticketStatus == "In-Progress") then
        return asset(t, 409, "Warning: Ticket already exists. We'll add an additional line.\n Failed to add " ..
          "additional line: The item already exists in " .. t.ticketID .. ", could not add another dulplicate one")
      end
      if t.ticketStatus == "Resolved" then
        if d then resolved_same = resolved_same or t
        elseif t.site_id and t.site_id == e.site_id then resolved_site = resolved_site or t end
      end
    end
  end
  local t = resolved_same or resolved_site
  if t and t.no_unresolve then return asset(t, 471, "Ticket is resolved. Please unresolve it first.") end
  if t then
    local d = detail_by_sn(t, sn)
    local code = 472
    if not d then
      state.next_detail = state.next_detail + 1
      d = { detailID = state.next_detail, detailValue = sn, detailStatus = "I", currentTaskName = json.null }
      t.details[#t.details + 1] = d
      index_serial(t.ticketID, sn)
      code = 473
    end
    d.detailStatus = "I"
    t.ticketStatus = "In-Progress"
    return asset(t, code, string.format("Warning: We unresolved this line (detailId[%d]) as well as its ticket[%s].\n",
      d.detailID, tostring(t.ticketID)))
  end
  local nt = add_ticket { client_id = b.ClientID, service_number = sn, topic = "VOO", status = "In-Progress",
    notes = { "Request Description: " .. tostring(b.RequestDescription) .. "\n" } }
  return asset(nt, 0)
end)

local DEFAULT_NEXT = {
  { resultTypeId = 139, resultName = "Repair Completed" },
  { resultTypeId = 143, resultName = "Wireless Repair Intervention Needed" },
  { resultTypeId = 145, resultName = "No Trouble Found - Carrier Issue" },
}

api("GET", "/api/Ticket/:t/nextresult", function(req)
  local t = find_ticket(req.params.t)
  local d = t and detail_by_id(t, req.query.DetailId)
  if not d or (req.query.ServiceNumber and d.detailValue ~= req.query.ServiceNumber) then
    return business_error("Ticket Detail not found")
  end
  local nexts = json.array {}
  for i, n in ipairs(t.next_results or DEFAULT_NEXT) do
    nexts[i] = { resultTypeId = n.resultTypeId, resultName = n.resultName, notes = json.array {
      { noteType = "RFO", noteDescription = "Reason for Outage", availableValueOptions = json.array {
        { text = "Area Wide Outage", value = "Area Wide Outage" } }, defaultValue = json.null, required = false } } }
  end
  return jreply(200, { currentTaskId = 10398903, currentTaskKey = "344",
    currentTaskName = d.currentTaskName ~= json.null and d.currentTaskName or "Holmdel NOC Investigate ",
    nextResults = nexts })
end)

api("PUT", "/api/Ticket/:t/details/work", function(req)
  local t = find_ticket(req.params.t)
  local b = req:json()
  local inst = req._call.path
  local det = type(b) == "table" and type(b.details) == "table" and b.details[1]
  local d = t and type(det) == "table" and detail_by_id(t, det.detailId)
  if not d then return model_error(inst, { ["details[0].detailId"] = { "The value is not valid." } }) end
  local name
  for _, n in ipairs(t.next_results or DEFAULT_NEXT) do
    if n.resultTypeId == b.resultTypeId then name = n.resultName end
  end
  if not name then return model_error(inst, { resultTypeId = { "The value is not valid." } }) end
  d.currentTaskName = name
  return jreply(200, { message = "success" })
end)

----------------------------------------------------------- control routes
local httpd = require "ae.httpd"
httpd.route("POST", "/sim/bruin/_replies", function(req)
  local r = req:json()
  if type(r) ~= "table" then return { status = 400, json = { error = "a reply object is needed" } } end
  state.replies[#state.replies + 1] = r
  return { status = 201, json = { ok = true, replies = #state.replies } }
end)
httpd.route("DELETE", "/sim/bruin/_replies", function()
  state.replies = {}
  return { json = { ok = true } }
end)
httpd.route("POST", "/sim/bruin/_tickets", function(req)
  local t = req:json()
  if type(t) ~= "table" then return { status = 400, json = { error = "a ticket object is needed" } } end
  local ok, ticket = pcall(add_ticket, t)
  if not ok then return { status = 400, json = { error = tostring(ticket) } } end
  return { status = 201, json = { ticketID = ticket.ticketID, detailIDs = (function()
    local ids = json.array {}
    for i, d in ipairs(ticket.details) do ids[i] = d.detailID end
    return ids
  end)() } }
end)
httpd.route("GET", "/sim/bruin/_tickets/:id", function(req)
  local t = find_ticket(req.params.id)
  if not t then return { status = 404, json = { error = "no such ticket" } } end
  local out = ticket_json(t)
  out.details = json.array(t.details)
  out.notes = json.array(t.notes)
  return { json = out }
end)
httpd.route("POST", "/sim/bruin/_expire_tokens", function()
  for k in pairs(state.tokens) do state.tokens[k] = 0 end
  return { json = { ok = true } }
end)

for _, t in ipairs(cfg.tickets or {}) do add_ticket(t) end
log.info("bruin simulator on %s (%d edges, %d tickets)", sim.base_url("bruin"), #fleet.edges, #state.order)

return { sim = S, state = state, fleet = fleet }
