--- usecases.outage.triage: the triage process of service-outage-monitor
-- (spec §5): keep open VeloCloud outage tickets annotated with recent edge
-- events.
--
--   local proc = require("usecases.outage.triage").new{cfg = cfg, repo = repo,
--                  metrics = m, deliver = outage_proc.deliver_triage_note}
--   proc.run_cycle()
local logic = require "usecases.outage.logic"
local rpc = require "lib.rpc"
local task = require "ae.task"
local time = require "ae.time"
local log = require "ae.log"
local json = require "ae.json"

local M = {}

local ok = rpc.ok

function M.new(ctx)
  local cfg, repo, metrics = ctx.cfg, ctx.repo, ctx.metrics
  local now = ctx.now or time.now
  local sleep = ctx.sleep or task.sleep
  local deliver = ctx.deliver
  local production = cfg.environment == "production"
  local P = {}

  local function inc(name, n)
    if metrics and metrics[name] then metrics[name]:inc(n or 1) end
  end

  -- One client's open outage tickets with their details (§5.2 step 2);
  -- nil when the tickets request keeps failing.
  function P.client_tickets(client_id)
    local first = now()
    local attempt = 0
    local reply
    while true do
      attempt = attempt + 1
      reply = repo.open_tickets(client_id, nil)
      if ok(reply) then break end
      inc("open_ticket_error")
      if now() - first >= cfg.triage_retry_stop_delay then
        log.error("open tickets of client %s: giving up after %d attempts", tostring(client_id), attempt)
        return nil
      end
      sleep(math.max(cfg.triage_retry_min, cfg.triage_retry_multiplier * 2 ^ attempt))
    end
    local out = {}
    for _, ticket in ipairs(type(reply.body) == "table" and reply.body or {}) do
      local T = ticket.ticketID
      local details = repo.details(T)
      local body = ok(details) and type(details.body) == "table" and details.body or nil
      if body and type(body.ticketDetails) == "table" and #body.ticketDetails > 0 then
        out[#out + 1] = { ticket_id = T, ticket_details = body.ticketDetails, ticket_notes = body.ticketNotes or {} }
      end
    end
    return out
  end

  -- Edge statuses of every triage host, by serial (§5.2 step 7).
  function P.edge_statuses(monitored)
    local statuses = {}
    for _, host in ipairs(cfg.triage_velo_hosts) do
      local links, grouped = repo.links(host)
      -- a list body was grouped while decoded (body absent) or by repo.links (body a table)
      if ok(links) and (links.body == nil or type(links.body) == "table") then
        table.move(grouped.list, 1, #grouped.list, #statuses + 1, statuses)
      else
        log.error("links of %s not available: its edges get no initial triage note", host)
      end
    end
    local by_serial = {}
    for _, s in ipairs(statuses) do
      if monitored[s.edgeSerialNumber] then by_serial[s.edgeSerialNumber] = s end
    end
    return by_serial
  end

  local function events_since(edge, from)
    local reply = repo.events(edge, logic.py_time(from, "UTC"), logic.py_time(now(), "UTC"), logic.EVENT_TYPES)
    if not ok(reply) or type(reply.body) ~= "table" or #reply.body == 0 then return nil end
    return logic.sort_events(reply.body)
  end

  --- with_triage(item, edges) (§5.3)
  function P.with_triage(item, edges)
    local T, detail = item.ticket_id, item.ticket_detail
    local D, S = detail.detailID, detail.detailValue
    local newest = logic.newest_note(item.ticket_notes)
    local at = newest and logic.parse_time(newest.createdDate)
    if not at then return "bad_note" end
    if now() - at <= cfg.triage_recent_note then return "recent" end
    local edge = edges[S]
    if not edge then return "no_edge" end
    local events = events_since(edge, at)
    if not events then return "no_events" end
    local appended = 0
    for _, chunk in ipairs(logic.chunks(events, cfg.event_limit)) do
      local note = logic.events_note(chunk)
      if production then
        local reply = repo.append_note(T, note, { S })
        if ok(reply) then
          appended = appended + 1
          inc("triage_note")
          log.info("triage events note appended to ticket %s, detail %s (serial %s): %d events", tostring(T),
            tostring(D), tostring(S), #chunk)
        elseif reply.status == 503 then
          inc("triage_error_note")
        end
      else
        log.info("triage note for detail %s of ticket %s (not appended in %s): %s", tostring(D), tostring(T),
          tostring(cfg.environment), note)
        appended = appended + 1
      end
    end
    inc("tickets_with_triage")
    if appended > 0 then
      repo.slack(string.format("Triage appended to detail %s (serial: %s) of ticket %s. Details at " ..
        "https://app.bruin.com/t/%s", tostring(D), tostring(S), tostring(T), tostring(T)))
      return "appended"
    end
    return "failed"
  end

  --- without_triage(item, edges, statuses) (§5.4)
  function P.without_triage(item, edges, statuses)
    local T, detail = item.ticket_id, item.ticket_detail
    local S = detail.detailValue
    local edge = edges[S]
    if not edge then return "no_edge" end
    local events = events_since(edge, now() - cfg.events_lookback)
    if not events then return "no_events" end
    local status = statuses[S]
    if not status then return "no_status" end
    local note = logic.triage_note(edge, status, events)
    local _, done, failed = deliver(T, detail, note)
    if done then inc("tickets_without_triage") end
    if failed and failed.status == 503 then inc("triage_error_note") end
    return done and "appended" or "not_appended"
  end

  function P.run_cycle()
    local reply = repo.customer_cache(json.object({}), json.null)
    if not repo.cache_ok(reply) or type(reply.body) ~= "table" then
      log.info("customer cache not available (status %s): triage cycle ends", tostring(reply.status))
      return false
    end
    local monitored, edges, clients, seen = {}, {}, {}, {}
    for _, e in ipairs(reply.body) do
      if type(e) == "table" and e.serial_number then
        monitored[e.serial_number] = true
        edges[e.serial_number] = e.edge
        local c = e.bruin_client_info and e.bruin_client_info.client_id
        if c ~= nil and not seen[c] then
          seen[c] = true
          clients[#clients + 1] = c
        end
      end
    end
    local per_client = task.map(clients, function(c) return P.client_tickets(c) end,
      { limit = cfg.triage_semaphore })
    local tickets = {}
    for i = 1, #clients do
      for _, t in ipairs(per_client[i] or {}) do tickets[#tickets + 1] = t end
    end
    tickets = logic.filter_ticket_details(tickets, monitored)
    for _, t in ipairs(tickets) do t.ticket_notes = logic.filter_triage_notes(t.ticket_notes, monitored) end
    local with, without = logic.split_details(tickets)
    local statuses = P.edge_statuses(monitored)
    task.gather({
      function()
        for _, item in ipairs(with) do
          local okc, err = pcall(P.with_triage, item, edges)
          if not okc then log.error("triage of ticket %s failed: %s", tostring(item.ticket_id), tostring(err)) end
        end
      end,
      function()
        for _, item in ipairs(without) do
          local okc, err = pcall(P.without_triage, item, edges, statuses)
          if not okc then log.error("triage of ticket %s failed: %s", tostring(item.ticket_id), tostring(err)) end
        end
      end,
    })
    return true, #with, #without
  end

  return P
end

return M
