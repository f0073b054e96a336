--- usecases.outage.logic: the pure parts of service-outage-monitor
-- (spec service-outage-monitor.md): grouping links by edge, the outage
-- decision, note texts (byte-exact), note recognition, the autoresolve
-- window, DiGi links, the triage note split and the triage detail split.
-- No I/O here: every function takes its inputs (and `now`, epoch seconds)
-- as arguments, so the unit specs can test it directly.
local time = require "ae.time"
local json = require "ae.json"

local M = {}

M.HEADER = "#*Automation Engine*#"
M.TZ = "US/Eastern"
M.WIRELESS_QUEUE = "Wireless Repair Intervention Needed"
M.EVENT_TYPES = { "EDGE_UP", "EDGE_DOWN", "LINK_ALIVE", "LINK_DEAD" }

local null = json.null

local function is_null(v)
  return v == nil or v == null
end
M.is_null = is_null

--- ulen(s): length in Unicode characters (spec §2.6); bytes if not UTF-8.
local function ulen(s)
  return utf8.len(s) or #s
end
M.ulen = ulen

------------------------------------------------------------------------------
-- Time texts (§2.5)

--- py_time(t, tz): Python str() of an aware datetime in tz:
-- "YYYY-MM-DD HH:MM:SS[.ffffff]+HH:MM" (fraction only when not zero).
function M.py_time(t, tz)
  return (time.iso(t, tz or M.TZ, { sep = " ", z = false }))
end

--- py_naive(t): Python str() of a naive UTC datetime (no offset).
function M.py_naive(t)
  return (time.iso(t, "UTC", { sep = " ", z = false }):gsub("[+-]%d%d:%d%d$", ""))
end

--- eastern(text): an ISO time text (VeloCloud eventTime) as Python text in
-- US/Eastern; the input itself when it does not parse.
function M.eastern(text)
  if type(text) ~= "string" then return "None" end
  local t = time.parse(text)
  if not t then return text end
  return M.py_time(t, M.TZ)
end

--- parse_time(text) -> epoch | nil: a Bruin createdDate / createDate
-- (US M/D/YYYY h:mm:ss AM|PM texts without offset are UTC, Notes #3).
function M.parse_time(text)
  if type(text) ~= "string" then return nil end
  return (time.parse(text, "UTC"))
end

------------------------------------------------------------------------------
-- Edges, links, outage decision (§3.2, §4.3)

local EDGE_FIELDS = {
  "host", "enterpriseName", "enterpriseId", "enterpriseProxyId", "enterpriseProxyName", "edgeName", "edgeState",
  "edgeSystemUpSince", "edgeServiceUpSince", "edgeLastContact", "edgeId", "edgeSerialNumber",
  "edgeHASerialNumber", "edgeModelNumber", "edgeLatitude", "edgeLongitude",
}
local LINK_FIELDS = {
  "displayName", "isp", "interface", "internalId", "linkState", "linkLastActive", "linkVpnState", "linkId",
  "linkIpAddress",
}

function M.edge_key(host, enterprise_id, edge_id)
  return tostring(host) .. "\0" .. tostring(enterprise_id) .. "\0" .. tostring(edge_id)
end

-- the edge key of a links record; nil for a record that is skipped
local function record_key(link)
  if type(link) ~= "table" then return nil end
  local edge_id = link.edgeId
  if is_null(edge_id) or edge_id == 0 then return nil end
  return M.edge_key(link.host, link.enterpriseId, edge_id)
end

-- an edge status from its first record, and one link added to it
local function new_status(link)
  local status = { links = {} }
  for _, f in ipairs(EDGE_FIELDS) do status[f] = link[f] end
  return status
end

local function add_link(status, link)
  local l = {}
  for _, f in ipairs(LINK_FIELDS) do l[f] = link[f] end
  status.links[#status.links + 1] = l
end

--- link_grouper([wanted]) -> g: g.add(link) groups one links record by edge
-- into g.list (edge statuses, first-appearance order) and g.index (key ->
-- status); with `wanted` (a set of edge keys) the other edges are skipped.
-- Records can be fed one by one while a reply is decoded (json.decode_each).
function M.link_grouper(wanted)
  local g = { list = {}, index = {} }
  local list, index = g.list, g.index
  function g.add(link)
    local key = record_key(link)
    if not key or (wanted and not wanted[key]) then return end
    local status = index[key]
    if not status then
      status = new_status(link)
      index[key] = status
      list[#list + 1] = status
    end
    add_link(status, link)
  end
  return g
end

--- outage_scanner() -> s: s.add(link) takes links records like a
-- link_grouper's add but keeps, per edge key, only whether the edge is in
-- outage by is_outage's rule over the status link_grouper would build (the
-- edgeState of the edge's first record, the linkState of every record):
-- s.index[key] = true | false, s.outage = the set of keys in outage. It also
-- builds the statuses of the edges in outage, in s.statuses, as link_grouper
-- would: it keeps the status of the edge being read (records of one edge come
-- one after the other) and drops it when the next edge starts, unless the
-- edge is in outage. s.finish() -> the set of edges in outage whose status is
-- incomplete (their records were not contiguous), nil when none: group those
-- in a second pass. For a whole host's links: ~1 KB per edge as statuses, a
-- few bytes here.
function M.outage_scanner()
  local s = { index = {}, outage = {}, statuses = {} }
  local index, outage, statuses = s.index, s.outage, s.statuses
  local current, partial
  local function leave(key) -- the edge being read is done (or interrupted)
    if key and not outage[key] then statuses[key] = nil end
  end
  function s.add(link)
    local key = record_key(link)
    if not key then return end
    local down = index[key]
    local seen = down ~= nil
    if not seen then down = link.edgeState == "OFFLINE" end
    if not down and link.linkState == "DISCONNECTED" then down = true end
    index[key] = down
    if down then outage[key] = true end
    if key ~= current then
      leave(current)
      current = key
      if seen and not statuses[key] then -- earlier records of this edge were dropped
        partial = partial or {}
        partial[key] = true
      end
    end
    if partial and partial[key] then return end
    local status = statuses[key]
    if not status then
      status = new_status(link)
      statuses[key] = status
    end
    add_link(status, link)
  end
  function s.finish()
    leave(current)
    current = nil
    local again
    for key in pairs(partial or {}) do
      if outage[key] then
        again = again or {}
        again[key] = true
      end
      statuses[key] = nil
    end
    return again
  end
  return s
end

--- HEALTHY: the status that stands for an edge seen healthy by an
-- outage_scanner (no state, no links: is_outage is false). Read-only.
M.HEALTHY = setmetatable({}, {
  __index = { links = setmetatable({}, { __newindex = function() error("logic.HEALTHY is read-only", 2) end }) },
  __newindex = function() error("logic.HEALTHY is read-only", 2) end,
})

--- group_links_by_edge(links) -> list of edge statuses (first-appearance
-- order) and an index key -> status.
function M.group_links_by_edge(links)
  local g = M.link_grouper()
  for _, link in ipairs(links or {}) do g.add(link) end
  return g.list, g.index
end

function M.cache_key(entry)
  local e = entry.edge or {}
  return M.edge_key(e.host, e.enterprise_id, e.edge_id)
end

--- map_cache_to_status(entries, index) -> items {cached_info=, status=},
-- skipped: duplicates keep the first position and the last entry; entries
-- without a status are left out (and counted in `skipped`).
function M.map_cache_to_status(entries, index)
  local order, by_key = {}, {}
  for _, entry in ipairs(entries) do
    local key = M.cache_key(entry)
    if not by_key[key] then order[#order + 1] = key end
    by_key[key] = entry
  end
  local items, skipped = {}, {}
  for _, key in ipairs(order) do
    local status = index[key]
    if status then
      items[#items + 1] = { cached_info = by_key[key], status = status }
    else
      skipped[#skipped + 1] = by_key[key]
    end
  end
  return items, skipped
end

--- is_outage(status): OFFLINE edge or any DISCONNECTED link (exact strings).
function M.is_outage(status)
  if status.edgeState == "OFFLINE" then return true end
  for _, link in ipairs(status.links or {}) do
    if type(link) == "table" and link.linkState == "DISCONNECTED" then return true end
  end
  return false
end

--- split_outage(items) -> outage items, healthy items
function M.split_outage(items)
  local outage, healthy = {}, {}
  for _, item in ipairs(items) do
    if M.is_outage(item.status) then outage[#outage + 1] = item else healthy[#healthy + 1] = item end
  end
  return outage, healthy
end

--- is_blacklisted(edge, blacklist)
function M.is_blacklisted(edge, blacklist)
  if type(edge) ~= "table" then return false end
  for _, b in ipairs(blacklist or {}) do
    if edge.host == b.host and edge.enterprise_id == b.enterprise_id and edge.edge_id == b.edge_id then
      return true
    end
  end
  return false
end

--- edge_text(edge): the EdgeIdentifier text (§2.2).
function M.edge_text(edge)
  edge = edge or {}
  return string.format("host = %s, enterprise_id = %s, edge_id = %s", tostring(edge.host),
    tostring(edge.enterprise_id), tostring(edge.edge_id))
end

------------------------------------------------------------------------------
-- Note recognition (§2.7)

local function note_value(note)
  local v = type(note) == "table" and note.noteValue
  if type(v) ~= "string" then return nil end
  return v
end

local function starts(v, prefix)
  return v ~= nil and v:sub(1, #prefix) == prefix
end

function M.is_triage_note(note)
  return starts(note_value(note), M.HEADER .. "\nTriage (VeloCloud)")
end

function M.is_reopen_note(note)
  return starts(note_value(note), M.HEADER .. "\nRe-opening")
end

function M.is_autoresolve_note(note)
  return starts(note_value(note), M.HEADER .. "\nAuto-resolving detail for serial")
end

function M.note_contains(note, text)
  local v = note_value(note)
  return v ~= nil and v:find(text, 1, true) ~= nil
end

--- note_has_serial(note, serial): serviceNumber (a list) contains serial.
function M.note_has_serial(note, serial)
  local sns = type(note) == "table" and note.serviceNumber
  if type(sns) ~= "table" then return false end
  for _, s in ipairs(sns) do
    if s == serial then return true end
  end
  return false
end

--- notes_of_serial(notes, serial) -> the notes naming serial, Bruin order.
function M.notes_of_serial(notes, serial)
  local out = {}
  for _, n in ipairs(notes or {}) do
    if M.note_has_serial(n, serial) then out[#out + 1] = n end
  end
  return out
end

--- detail_of(details, serial) -> first ticket detail of serial or nil
function M.detail_of(details, serial)
  for _, d in ipairs(details or {}) do
    if type(d) == "table" and d.detailValue == serial then return d end
  end
  return nil
end

------------------------------------------------------------------------------
-- Autoresolve (§4.8 steps 7-8)

local function stable_sort(list, less)
  local idx = {}
  for i, v in ipairs(list) do idx[i] = { v = v, i = i } end
  table.sort(idx, function(a, b)
    if less(a.v, b.v) then return true end
    if less(b.v, a.v) then return false end
    return a.i < b.i
  end)
  local out = {}
  for i, x in ipairs(idx) do out[i] = x.v end
  return out
end
M.stable_sort = stable_sort

local function created(note)
  local c = note.createdDate
  return type(c) == "string" and c or ""
end

--- last_outage_time(notes, serial, ticket_create_date) -> epoch | nil, which
-- ("reopen" | "triage" | "ticket"): the moment the autoresolve window counts
-- from.
function M.last_outage_time(notes, serial, create_date)
  local mine = stable_sort(M.notes_of_serial(notes, serial), function(a, b) return created(a) < created(b) end)
  local last_reopen, first_triage
  for _, n in ipairs(mine) do
    if M.is_reopen_note(n) then last_reopen = n end
    if not first_triage and M.is_triage_note(n) then first_triage = n end
  end
  if last_reopen then return M.parse_time(last_reopen.createdDate), "reopen" end
  if first_triage then return M.parse_time(first_triage.createdDate), "triage" end
  return M.parse_time(create_date), "ticket"
end

--- was_last_outage_recent(notes, serial, create_date, now, window) -> bool, which
function M.was_last_outage_recent(notes, serial, create_date, now, window)
  local t, which = M.last_outage_time(notes, serial, create_date)
  if not t then return false, which end
  return now - t <= window, which
end

--- autoresolve_count(notes, serial): autoresolve notes naming serial.
function M.autoresolve_count(notes, serial)
  local n = 0
  for _, note in ipairs(notes or {}) do
    if M.is_autoresolve_note(note) and M.note_has_serial(note, serial) then n = n + 1 end
  end
  return n
end

------------------------------------------------------------------------------
-- Outage causes and notes (§4.5.2, §4.7, §4.8)

function M.outage_causes(status)
  local parts = {}
  if status.edgeState == "OFFLINE" then parts[#parts + 1] = " Edge was OFFLINE." end
  local seen = {}
  for _, link in ipairs(status.links or {}) do
    if type(link) == "table" and link.linkState == "DISCONNECTED" then
      local name = tostring(is_null(link.interface) and "None" or link.interface)
      if not seen[name] then
        seen[name] = true
        parts[#parts + 1] = " Link " .. name .. " was DISCONNECTED."
      end
    end
  end
  if #parts == 0 then return "Outage causes: Could not determine causes." end
  return "Outage causes:" .. table.concat(parts)
end

function M.reopen_note(status, now)
  return table.concat({ M.HEADER, "Re-opening ticket.", M.outage_causes(status),
    "TimeStamp: " .. M.py_time(now) }, "\n")
end

function M.autoresolve_note(serial, now)
  return table.concat({ M.HEADER, "Auto-resolving detail for serial: " .. tostring(serial),
    "TimeStamp: " .. M.py_time(now) }, "\n")
end

function M.digi_reboot_note(serial, interface, now)
  return table.concat({ M.HEADER, "Offline DiGi interface identified for serial: " .. tostring(serial),
    "Interface: " .. tostring(interface), "Automatic reboot attempt started.", "TimeStamp: " .. M.py_time(now) },
    "\n")
end

function M.digi_failed_note(now)
  return table.concat({ M.HEADER, "DiGi reboot failed", "Moving task to: " .. M.WIRELESS_QUEUE,
    "TimeStamp: " .. M.py_time(now) }, "\n")
end

--- cache_entry_slimmer() -> slim(entry): a customer-cache entry with only
-- what this service reads (edge, serial_number, bruin_client_info.client_id
-- and client_name, the DiGi links of logical_ids; not last_contact). Entries of
-- one client share one bruin_client_info table, and entries without a DiGi
-- link share one empty logical_ids list. Anything that is not an entry-shaped
-- table is returned as it is (the cycle skips it).
function M.cache_entry_slimmer()
  local clients, none = {}, {}
  return function(e)
    if type(e) ~= "table" or type(e.edge) ~= "table" then return e end
    local info = e.bruin_client_info
    if type(info) == "table" then
      local key = tostring(info.client_id) .. "\0" .. tostring(info.client_name)
      local shared = clients[key]
      if not shared then
        shared = { client_id = info.client_id, client_name = info.client_name }
        clients[key] = shared
      end
      info = shared
    end
    local digi = M.digi_links(e.logical_ids)
    return { edge = e.edge, serial_number = e.serial_number, bruin_client_info = info,
      logical_ids = #digi > 0 and digi or none }
  end
end

--- digi_links(logical_ids): entries whose logical_id contains 00:04:2d,
-- then those containing 00:27:04 (an entry matching both appears twice).
function M.digi_links(logical_ids)
  local out = {}
  for _, prefix in ipairs({ "00:04:2d", "00:27:04" }) do
    for _, l in ipairs(type(logical_ids) == "table" and logical_ids or {}) do
      if type(l) == "table" and type(l.logical_id) == "string" and l.logical_id:find(prefix, 1, true) then
        out[#out + 1] = l
      end
    end
  end
  return out
end

--- is_digi_link_faulty(status, interface_name)
function M.is_digi_link_faulty(status, interface_name)
  for _, link in ipairs(status.links or {}) do
    if type(link) == "table" and link.interface == interface_name then
      return link.linkState == "DISCONNECTED"
    end
  end
  return false
end

--- digi_note_interface(note): the interface named by a DiGi reboot note.
function M.digi_note_interface(note)
  local v = note_value(note)
  if not v then return "" end
  for line in (v .. "\n"):gmatch("([^\n]*)\n") do
    if line:find("Interface: ", 1, true) then
      local trimmed = line:match("^%s*(.-)%s*$")
      return (trimmed:gsub("Interface: ", ""))
    end
  end
  return ""
end

------------------------------------------------------------------------------
-- Triage notes (§6)

--- event_interface(message) -> interface name or nil (§2.7 event pattern)
function M.event_interface(message)
  if type(message) ~= "string" then return nil end
  local name = message:match("^Interface (%w+) is up$") or message:match("^Interface (%w+) is down$")
    or message:match("^Link (%w+) is no longer DEAD$") or message:match("^Link (%w+) is now DEAD$")
  return name
end

--- sort_events(events): by eventTime descending, stable.
function M.sort_events(events)
  return stable_sort(events or {}, function(a, b)
    local ta = type(a.eventTime) == "string" and a.eventTime or ""
    local tb = type(b.eventTime) == "string" and b.eventTime or ""
    return ta > tb
  end)
end

-- "key: value", "key" for an empty string, "key: None" for null.
local function kv(key, value)
  if is_null(value) then return key .. ": None" end
  local s = tostring(value)
  if s == "" then return key end
  return key .. ": " .. s
end

local function first_event(events, kind, interface)
  for _, e in ipairs(events) do
    if e.event == kind and (interface == nil or M.event_interface(e.message) == interface) then
      return M.eastern(e.eventTime)
    end
  end
  return "None"
end

--- triage_note(edge, status, events): the initial VeloCloud triage note
-- (§6.1); events sorted newest first.
function M.triage_note(edge, status, events)
  local host, ent = tostring(edge.host), tostring(edge.enterprise_id)
  local base = "https://" .. host .. "/#!/operator/customer/" .. ent .. "/monitor"
  local e = base .. "/edge/" .. tostring(edge.edge_id)
  local lines = {
    M.HEADER, "Triage (VeloCloud)", kv("Orchestrator Instance", edge.host), kv("Edge Name", status.edgeName),
    string.format("Links: [Edge|%s/] - [QoE|%s/qoe/] - [Transport|%s/links/] - [Events|%s/events/]", e, e, e, base),
    kv("Edge Status", status.edgeState), kv("Serial", status.edgeSerialNumber),
  }
  -- unique interface keys, first position, later link's values
  local order, last = {}, {}
  for _, link in ipairs(status.links or {}) do
    if type(link) == "table" and next(link) ~= nil then
      local name = is_null(link.interface) and "None" or tostring(link.interface)
      if not last[name] then order[#order + 1] = name end
      last[name] = link
    end
  end
  for _, name in ipairs(order) do
    local link = last[name]
    lines[#lines + 1] = "Interface " .. name
    lines[#lines + 1] = kv("Interface " .. name .. " Label", link.displayName)
    lines[#lines + 1] = kv("Interface " .. name .. " Status", link.linkState)
  end
  lines[#lines + 1] = "Last Edge Online: " .. first_event(events, "EDGE_UP")
  lines[#lines + 1] = "Last Edge Offline: " .. first_event(events, "EDGE_DOWN")
  for _, name in ipairs(order) do
    lines[#lines + 1] = "Last " .. name .. " Interface Online: " .. first_event(events, "LINK_ALIVE", name)
    lines[#lines + 1] = "Last " .. name .. " Interface Offline: " .. first_event(events, "LINK_DEAD", name)
  end
  return table.concat(lines, "\n")
end

--- events_note(chunk): a follow-up triage note (§6.2); chunk newest first.
function M.events_note(chunk)
  local lines = { M.HEADER, "Triage (VeloCloud)", "" }
  for _, e in ipairs(chunk) do
    lines[#lines + 1] = "New event: " .. tostring(is_null(e.event) and "None" or e.event)
    if e.category == "EDGE" then
      lines[#lines + 1] = "Device: Edge"
    else
      lines[#lines + 1] = "Device: Interface " .. (M.event_interface(e.message) or "None")
    end
    lines[#lines + 1] = "Event time: " .. M.eastern(e.eventTime)
    lines[#lines + 1] = ""
  end
  lines[#lines + 1] = "Timestamp: " .. M.eastern(chunk[#chunk] and chunk[#chunk].eventTime)
  return table.concat(lines, "\n")
end

--- chunks(list, n) -> list of lists of at most n
function M.chunks(list, n)
  local out = {}
  for i = 1, #list, n do
    out[#out + 1] = table.move(list, i, math.min(i + n - 1, #list), 1, {})
  end
  return out
end

--- split_note(note, threshold, page_size) -> list of pages (§6.3). A note
-- shorter than threshold is one page, unchanged.
function M.split_note(note, threshold, page_size)
  threshold, page_size = threshold or 1500, page_size or 1000
  local n = ulen(note)
  if n < threshold then return { note } end
  local lines = {}
  for line in (note .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  local total = math.ceil(n / page_size)
  local pages, acc, page = {}, "", 1
  for i, line in ipairs(lines) do
    acc = acc .. line .. "\n"
    if ulen(acc) > page_size or i == #lines then
      pages[#pages + 1] = acc .. "Triage note: " .. page .. "/" .. total
      page = page + 1
      acc = M.HEADER .. "\nTriage (VeloCloud)\n"
    end
  end
  return pages
end

------------------------------------------------------------------------------
-- Triage data (§5.2 steps 3-5)

--- filter_ticket_details(tickets, monitored) -> tickets keeping only
-- details of monitored serials; tickets left without detail are dropped.
function M.filter_ticket_details(tickets, monitored)
  local out = {}
  for _, t in ipairs(tickets) do
    local kept = {}
    for _, d in ipairs(t.ticket_details or {}) do
      if type(d) == "table" and monitored[d.detailValue] then kept[#kept + 1] = d end
    end
    if #kept > 0 then
      out[#out + 1] = { ticket_id = t.ticket_id, ticket_details = kept, ticket_notes = t.ticket_notes }
    end
  end
  return out
end

--- filter_triage_notes(notes, monitored) -> triage notes naming monitored
-- serials, serviceNumber replaced by that intersection (Notes #7: a plain filter).
function M.filter_triage_notes(notes, monitored)
  local out = {}
  for _, n in ipairs(notes or {}) do
    if M.is_triage_note(n) and type(n.serviceNumber) == "table" then
      local sns = {}
      for _, s in ipairs(n.serviceNumber) do
        if monitored[s] then sns[#sns + 1] = s end
      end
      if #sns > 0 then
        local copy = {}
        for k, v in pairs(n) do copy[k] = v end
        copy.serviceNumber = sns
        out[#out + 1] = copy
      end
    end
  end
  return out
end

--- split_details(tickets) -> with_triage, without_triage (§5.2 step 5);
-- tickets already filtered (details and notes).
function M.split_details(tickets)
  local with, without = {}, {}
  for _, t in ipairs(tickets) do
    local notes = t.ticket_notes or {}
    local by_serial, order = {}, {}
    for _, n in ipairs(notes) do
      for _, s in ipairs(n.serviceNumber) do
        if M.detail_of(t.ticket_details, s) then -- Notes #8: other serials are ignored
          if not by_serial[s] then
            by_serial[s] = {}
            order[#order + 1] = s
          end
          local list = by_serial[s]
          list[#list + 1] = n
        end
      end
    end
    for _, s in ipairs(order) do
      with[#with + 1] = { ticket_id = t.ticket_id, ticket_detail = M.detail_of(t.ticket_details, s),
        ticket_notes = by_serial[s] }
    end
    for _, d in ipairs(t.ticket_details) do
      if not by_serial[d.detailValue] then
        without[#without + 1] = { ticket_id = t.ticket_id, ticket_detail = d }
      end
    end
  end
  return with, without
end

--- newest_note(notes): greatest createdDate string (ties: the later one).
function M.newest_note(notes)
  local best
  for _, n in ipairs(notes) do
    if not best or created(n) >= created(best) then best = n end
  end
  return best
end

return M
