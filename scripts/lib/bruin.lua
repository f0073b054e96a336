--- lib.bruin: the caller side of the bruin-bridge capability (bruin-bridge.md
-- §5, platform.md §2.4-2.5 and §2.8). One function per NATS subject; each
-- builds the standard envelope {request_id, body} and sends it through
-- lib.rpc, so callers get the reply {status=, body=} (or the 503 substitute
-- {status = 503, body = null} after the retry window) and the Slack error
-- messages of the original services.
--
--   local bruin = require "lib.bruin"
--   local r = bruin.get_tickets{client_id = 9994, ticket_topic = "VOO",
--                               ticket_statuses = {"New", "InProgress", "Draft"},
--                               service_number = "VC05400002265"}
--   if rpc.ok(r) then for _, t in ipairs(r.body) do ... end end
--
-- Every function takes a last optional `opts` table {doing=, timeout=,
-- retry=, notify=} passed to rpc.call; `timeout` defaults to the longest
-- caller timeout of platform §2.8 for the subject, `doing` to a text like
-- the original callers' ("getting tickets for client 9994").
local rpc = require "lib.rpc"
local json = require "ae.json"

local M = {}

--- Subjects and their default timeouts (seconds).
M.SUBJECTS = {
  tickets = { "bruin.ticket.request", 90 },
  details = { "bruin.ticket.details.request", 15 },
  overview = { "bruin.ticket.overview.request", 15 },
  note = { "bruin.ticket.note.append.request", 15 },
  notes = { "bruin.ticket.multiple.notes.append.request", 15 },
  create = { "bruin.ticket.creation.request", 90 },
  outage = { "bruin.ticket.creation.outage.request", 30 },
  open = { "bruin.ticket.status.open", 15 },
  resolve = { "bruin.ticket.status.resolve", 15 },
  management = { "bruin.inventory.management.status", 30 },
  client_info = { "bruin.customer.get.info", 30 },
  change_work = { "bruin.ticket.change.work", 90 },
  task_history = { "bruin.ticket.get.task.history", 15 },
  next_results = { "bruin.ticket.detail.get.next.results", 15 },
}

local function send(key, body, opts, doing)
  local s = M.SUBJECTS[key]
  opts = opts or {}
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if o.timeout == nil then o.timeout = s[2] end
  if o.doing == nil then o.doing = doing end
  return rpc.call(s[1], rpc.envelope(body), o)
end

local function need(cond, fn, what)
  if not cond then error(string.format("lib.bruin.%s: %s", fn, what), 3) end
end

local function str(v)
  return tostring(v)
end

-- Copies of list arguments must stay JSON arrays even when empty.
local function list(v)
  if v == nil then return nil end
  if type(v) == "string" then return json.array({ v }) end
  local out = json.array({})
  for i, x in ipairs(v) do out[i] = x end
  return out
end

--- get_tickets{client_id=, ticket_topic=, ticket_statuses= | ticket_status=,
--   category = "SD-WAN", service_number=, ticket_id=, start_date=, end_date=}
-- -> reply; body = list of tickets.
function M.get_tickets(args, opts)
  need(type(args) == "table", "get_tickets", "a table of filters is needed")
  local statuses = args.ticket_statuses or args.ticket_status
  need(statuses ~= nil, "get_tickets", "ticket_statuses is needed")
  local body = {
    client_id = args.client_id, category = args.category or "SD-WAN", ticket_topic = args.ticket_topic,
    ticket_status = list(statuses), service_number = args.service_number, ticket_id = args.ticket_id,
    start_date = args.start_date, end_date = args.end_date,
  }
  return send("tickets", body, opts, string.format("getting tickets for client %s", str(args.client_id)))
end

--- open_tickets{client_id=, ticket_topic = "VOO", service_number=, ...}:
-- get_tickets with statuses New, InProgress and Draft (the open ones).
function M.open_tickets(args, opts)
  need(type(args) == "table", "open_tickets", "a table of filters is needed")
  local a = {}
  for k, v in pairs(args) do a[k] = v end
  a.ticket_statuses = a.ticket_statuses or { "New", "InProgress", "Draft" }
  a.ticket_topic = a.ticket_topic or "VOO"
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.doing = o.doing or string.format("getting open %s tickets for client %s", a.ticket_topic, str(a.client_id))
  return M.get_tickets(a, o)
end

--- resolved_tickets{...}: get_tickets with status Resolved.
function M.resolved_tickets(args, opts)
  local a = {}
  for k, v in pairs(args or {}) do a[k] = v end
  a.ticket_statuses = { "Resolved" }
  a.ticket_topic = a.ticket_topic or "VOO"
  return M.get_tickets(a, opts)
end

--- ticket_details(ticket_id) -> reply; body {ticketDetails = [...], ticketNotes = [...]}
function M.ticket_details(ticket_id, opts)
  need(ticket_id ~= nil, "ticket_details", "ticket_id is needed")
  return send("details", { ticket_id = ticket_id }, opts,
    string.format("getting details of ticket %s", str(ticket_id)))
end

--- ticket_overview(ticket_id) -> reply; body = the ticket's header or []
function M.ticket_overview(ticket_id, opts)
  need(ticket_id ~= nil, "ticket_overview", "ticket_id is needed")
  return send("overview", { ticket_id = str(ticket_id) }, opts,
    string.format("getting overview of ticket %s", str(ticket_id)))
end

--- append_note(ticket_id, note, opts) -> reply. opts.service_numbers = {...}
-- (or opts.service_number = "..."), plus the rpc options.
function M.append_note(ticket_id, note, opts)
  need(ticket_id ~= nil, "append_note", "ticket_id is needed")
  need(type(note) == "string", "append_note", "note must be a string")
  opts = opts or {}
  local sns = opts.service_numbers or (opts.service_number and { opts.service_number })
  local o = {}
  for k, v in pairs(opts) do
    if k ~= "service_numbers" and k ~= "service_number" then o[k] = v end
  end
  local body = { ticket_id = ticket_id, note = note }
  if sns and #sns > 0 then body.service_numbers = list(sns) end
  return send("note", body, o, string.format("appending a note to ticket %s", str(ticket_id)))
end

--- append_multiple_notes(ticket_id, notes) -> reply; notes = {{text=,
-- service_number=, detail_id=, is_private=}, ...}; body = Bruin's notes.
function M.append_multiple_notes(ticket_id, notes, opts)
  need(ticket_id ~= nil, "append_multiple_notes", "ticket_id is needed")
  need(type(notes) == "table", "append_multiple_notes", "notes must be a list")
  return send("notes", { ticket_id = ticket_id, notes = list(notes) }, opts,
    string.format("appending %d notes to ticket %s", #notes, str(ticket_id)))
end

--- create_ticket{clientId=, category=, services=, contacts=, notes=} (Bruin's
-- own payload) -> reply; body {ticketIds = {id}}
function M.create_ticket(payload, opts)
  need(type(payload) == "table", "create_ticket", "a payload table is needed")
  return send("create", payload, opts,
    string.format("creating a %s ticket for client %s", str(payload.category), str(payload.clientId)))
end

--- create_outage_ticket(client_id, service_number) -> reply; body = ticket
-- id; status 200/201 new, 409/471/472/473 existing (bruin-bridge §5.10).
local OUTAGE_TICKET_EXISTS = { [409] = true, [471] = true, [472] = true, [473] = true }

function M.create_outage_ticket(client_id, service_number, opts)
  opts = opts or {}
  if opts.expected == nil then
    local o = { expected = OUTAGE_TICKET_EXISTS }
    for k, v in pairs(opts) do o[k] = v end
    opts = o
  end
  return send("outage", { client_id = client_id, service_number = service_number }, opts,
    string.format("creating outage ticket for device %s", str(service_number)))
end

local function status_change(key, verb, ticket_id, detail_id, opts)
  return send(key, { ticket_id = ticket_id, detail_id = detail_id }, opts,
    string.format("%s detail %s of ticket %s", verb, str(detail_id), str(ticket_id)))
end

--- open_ticket(ticket_id, detail_id) -> reply (PUT status O)
function M.open_ticket(ticket_id, detail_id, opts)
  return status_change("open", "re-opening", ticket_id, detail_id, opts)
end

--- resolve_ticket(ticket_id, detail_id) -> reply (PUT status R)
function M.resolve_ticket(ticket_id, detail_id, opts)
  return status_change("resolve", "resolving", ticket_id, detail_id, opts)
end

--- management_status{client_id=, service_number=, status = "A"} -> reply;
-- body = the "Management Status" attribute value or null.
function M.management_status(args, opts)
  need(type(args) == "table", "management_status", "a table {client_id=, service_number=} is needed")
  return send("management", { client_id = args.client_id, status = args.status or "A",
    service_number = args.service_number }, opts,
    string.format("getting management status for device %s", str(args.service_number)))
end

--- client_info{service_number=} (or a string) -> reply; body {client_id=, client_name=}
function M.client_info(args, opts)
  local sn = type(args) == "table" and args.service_number or args
  need(sn ~= nil, "client_info", "service_number is needed")
  return send("client_info", { service_number = sn }, opts,
    string.format("getting client info for device %s", str(sn)))
end

--- change_work{ticket_id=, detail_id=, service_number=, queue_name=} or
-- change_work(ticket_id, detail_id, service_number, queue_name [, opts]) -> reply
function M.change_work(a, b, c, d, e)
  local args, opts
  if type(a) == "table" then
    args, opts = a, b
  else
    args, opts = { ticket_id = a, detail_id = b, service_number = c, queue_name = d }, e
  end
  return send("change_work", { ticket_id = args.ticket_id, detail_id = args.detail_id,
    service_number = args.service_number, queue_name = args.queue_name }, opts,
    string.format("changing work queue of ticket %s to %s", str(args.ticket_id), str(args.queue_name)))
end

--- task_history(ticket_id) -> reply; body = list of AI ticket data rows
function M.task_history(ticket_id, opts)
  need(ticket_id ~= nil, "task_history", "ticket_id is needed")
  return send("task_history", { ticket_id = ticket_id }, opts,
    string.format("getting task history of ticket %s", str(ticket_id)))
end

--- next_results{ticket_id=, detail_id=, service_number=} or
-- next_results(ticket_id, detail_id, service_number [, opts]) -> reply;
-- body {currentTaskId=, ..., nextResults = [...]}
function M.next_results(a, b, c, d)
  local args, opts
  if type(a) == "table" then
    args, opts = a, b
  else
    args, opts = { ticket_id = a, detail_id = b, service_number = c }, d
  end
  return send("next_results", { ticket_id = args.ticket_id, detail_id = args.detail_id,
    service_number = args.service_number }, opts,
    string.format("getting next results of ticket %s", str(args.ticket_id)))
end

return M
