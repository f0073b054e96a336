--- usecases.outage.outage: the outage monitoring process of
-- service-outage-monitor (spec §4): cycle, per-host first pass, re-check,
-- ticket creation and its status branches, reopen, DiGi reboot and the
-- wireless forward, autoresolve.
--
--   local proc = require("usecases.outage.outage").new{cfg = cfg, repo = repo,
--                  metrics = m, after = timer.after}
--   proc.run_cycle()
local logic = require "usecases.outage.logic"
local rpc = require "lib.rpc"
local task = require "ae.task"
local time = require "ae.time"
local log = require "ae.log"

local M = {}

local ok = rpc.ok
local APP = "https://app.bruin.com/t/"

--- collector([major [, pause]]): the garbage collector of a unit running this
-- process. Generational: the large replies of a cycle are garbage moments
-- after they are decoded. A major collection comes when the heap grew by
-- `major` % since the last one; after a "bad" major (one that freed less than
-- half the growth, as while a host's statuses are being built) Lua waits
-- until the heap grew by `pause` - 100 %. With Lua's defaults (100, 200) the
-- per-request garbage of a 50,000-edge cycle piled up from ~40 to ~140 MB
-- before it was collected: the unit's peak RSS. Each major marks the whole
-- ~40 MB of cache entries (~0.1 s at 50,000 edges): 50 % made 6 of them in a
-- cycle where 25 % made 12 (peak RSS 94 against 92 MB; 100 %: 3, 96 MB).
M.GC_MAJOR, M.GC_PAUSE = 50, 130
function M.collector(major, pause)
  collectgarbage("incremental", pause or M.GC_PAUSE, 100) -- sets the pause used by the generational mode too
  collectgarbage("generational", 20, major or M.GC_MAJOR)
end

function M.new(ctx)
  local cfg, repo, metrics = ctx.cfg, ctx.repo, ctx.metrics
  local after = ctx.after
  local now = ctx.now or time.now
  local P = { rechecks = 0 }
  local autoresolve_sem = task.semaphore(cfg.autoresolve_semaphore)
  local production = cfg.environment == "production"

  local function inc(name, n)
    if metrics and metrics[name] then metrics[name]:inc(n or 1) end
  end

  ----------------------------------------------------------------------------
  -- Autoresolve (§4.8)
  function P.autoresolve(item, whitelist)
    local cached = item.cached_info
    local S = cached.serial_number
    local C = cached.bruin_client_info and cached.bruin_client_info.client_id
    if not whitelist[S] then
      log.info("autoresolve %s: serial not whitelisted", tostring(S))
      return "not_whitelisted"
    end
    local tickets = repo.open_tickets(C, S)
    if not ok(tickets) then return "tickets_failed" end
    if type(tickets.body) ~= "table" or #tickets.body == 0 then return "no_ticket" end
    local ticket = tickets.body[1]
    local T = ticket.ticketID
    if ticket.createdBy ~= "Intelygenz Ai" then
      log.info("autoresolve %s: ticket %s not created by the Automation Engine", S, tostring(T))
      return "not_ours"
    end
    local details = repo.details(T)
    if not ok(details) then return "details_failed" end
    local body = details.body or {}
    local detail = logic.detail_of(body.ticketDetails, S)
    if not detail then
      log.error("autoresolve %s: ticket %s has no detail for the serial", S, tostring(T)) -- Notes #5
      return "no_detail"
    end
    local notes = body.ticketNotes or {}
    local recent, which = logic.was_last_outage_recent(notes, S, ticket.createDate, now(), cfg.autoresolve_window)
    if not recent then
      log.info("autoresolve %s: ticket %s has been in outage state for a long time (%s)", S, tostring(T), which)
      return "too_old"
    end
    if logic.autoresolve_count(notes, S) >= cfg.max_autoresolves then
      log.info("autoresolve %s: ticket %s reached the maximum of autoresolves", S, tostring(T))
      return "max_autoresolves"
    end
    if detail.detailStatus == "R" then return "already_resolved" end
    if not production then
      log.info("autoresolve %s: ticket %s would be resolved, but the environment is %s", S, tostring(T),
        tostring(cfg.environment))
      return "not_production"
    end
    local resolved = repo.resolve(T, detail.detailID)
    if not ok(resolved) then return "resolve_failed" end
    inc("autoresolve")
    log.info("ticket %s autoresolved: detail %s, serial %s", tostring(T), tostring(detail.detailID), S)
    repo.append_note(T, logic.autoresolve_note(S, now()), { S })
    repo.slack(string.format("Outage ticket %s was autoresolved. Details at %s%s", tostring(T), APP, tostring(T)))
    return "resolved"
  end

  -- At most autoresolve_semaphore autoresolves in flight in the whole process
  -- (the semaphore); the per-call limit only keeps the number of tasks at that
  -- bound instead of one waiting task per healthy edge (50,000 at scale).
  local function autoresolve_all(items, whitelist)
    if #items == 0 then return end
    task.map(items, function(item)
      return autoresolve_sem:with(P.autoresolve, item, whitelist)
    end, { limit = cfg.autoresolve_semaphore })
  end

  -- Autoresolve reads only cached_info: healthy items drop their status so the
  -- VeloCloud data of thousands of healthy edges is not kept alive while their
  -- autoresolves run.
  local function light(items)
    for i, item in ipairs(items) do items[i] = { cached_info = item.cached_info } end
    return items
  end

  ----------------------------------------------------------------------------
  -- Notes (§4.5.2, §4.6, §6.3)

  --- deliver_triage_note(T, detail, note) -> pages appended (§6.3)
  function P.deliver_triage_note(T, detail, note)
    local S = detail.detailValue
    if cfg.environment == "dev" then
      repo.slack(string.format("Triage note would have been appended to detail %s of ticket %s(serial: %s). " ..
        "Note: %s. Details at app.bruin.com/t/%s", tostring(detail.detailID), tostring(T), tostring(S), note,
        tostring(T)))
      return 0, false
    end
    if not production then return 0, false end
    local pages = logic.split_note(note, cfg.note_split_threshold, cfg.note_page_size)
    local sent = 0
    for _, page in ipairs(pages) do
      local reply = repo.append_note(T, page, { S })
      if not ok(reply) then return sent, false, reply end
      sent = sent + 1
    end
    log.info("triage note appended to ticket %s, detail %s (serial %s): %d page(s), %d characters", tostring(T),
      tostring(detail.detailID), tostring(S), sent, utf8.len(note) or #note)
    return sent, true
  end

  --- initial_triage(item, T, S) (§4.6)
  function P.initial_triage(item, T, S)
    local cached, status = item.cached_info, item.status
    local t = now()
    local events = repo.events(cached.edge, logic.py_time(t - cfg.events_lookback, "UTC"), logic.py_time(t, "UTC"),
      logic.EVENT_TYPES)
    if not ok(events) or type(events.body) ~= "table" or #events.body == 0 then return false end
    local sorted = logic.sort_events(events.body)
    local details = repo.details(T)
    if not ok(details) then return false end
    local list = (details.body or {}).ticketDetails or {}
    local detail = logic.detail_of(list, S) or list[1] -- Notes #4
    if not detail then
      log.error("ticket %s has no details: no triage note", tostring(T))
      return false
    end
    local note = logic.triage_note(cached.edge, status, sorted)
    local _, done, failed = P.deliver_triage_note(T, detail, note)
    if failed and failed.status == 503 then inc("first_triage_error") end
    return done
  end

  local function reopen_note(T, status)
    return repo.append_note(T, logic.reopen_note(status, now()), { status.edgeSerialNumber })
  end

  --- reopen(item, T) (§4.5.1)
  function P.reopen(item, T)
    local status = item.status
    local details = repo.details(T)
    if not ok(details) then return false end
    local detail = logic.detail_of((details.body or {}).ticketDetails, status.edgeSerialNumber)
    if not detail then
      log.error("reopen: ticket %s has no detail for serial %s", tostring(T), tostring(status.edgeSerialNumber))
      return false
    end
    local opened = repo.open(T, detail.detailID)
    if opened.status ~= 200 then
      log.error("reopen: detail %s of ticket %s could not be reopened (status %s)", tostring(detail.detailID),
        tostring(T), tostring(opened.status))
      return false
    end
    inc("reopened")
    log.info("detail %s of outage ticket %s reopened (serial %s)", tostring(detail.detailID), tostring(T),
      tostring(status.edgeSerialNumber))
    repo.slack(string.format("Detail %s of outage ticket %s reopened: %s%s", tostring(detail.detailID), tostring(T),
      APP, tostring(T)))
    reopen_note(T, status)
    return true
  end

  ----------------------------------------------------------------------------
  -- DiGi (§4.7)
  function P.digi_reboot(item, T, S)
    local cached, status = item.cached_info, item.status
    local n = 0
    for _, link in ipairs(logic.digi_links(cached.logical_ids)) do
      if logic.is_digi_link_faulty(status, link.interface_name) then
        local reply = repo.digi_reboot(S, T, link.logical_id)
        if ok(reply) then
          n = n + 1
          log.info("DiGi reboot started for serial %s, interface %s (ticket %s)", tostring(S),
            tostring(link.interface_name), tostring(T))
          repo.append_note(T, logic.digi_reboot_note(S, link.interface_name, now()), { S })
          repo.slack(string.format("DiGi reboot started for faulty edge %s. Ticket details at %s%s.",
            logic.edge_text(cached.edge), APP, tostring(T)))
        end
      end
    end
    return n
  end

  function P.failed_digi_reboot(item, T, S)
    local cached, status = item.cached_info, item.status
    if status.edgeState == "OFFLINE" then return "offline" end
    local details
    for _, link in ipairs(logic.digi_links(cached.logical_ids)) do
      if logic.is_digi_link_faulty(status, link.interface_name) then
        if not details then
          details = repo.details(T)
          if not ok(details) then return "details_failed" end
        end
        local body = details.body or {}
        local detail = logic.detail_of(body.ticketDetails, S)
        if not detail then
          log.error("DiGi check: ticket %s has no detail for serial %s", tostring(T), tostring(S))
          return "no_detail"
        end
        local notes = logic.notes_of_serial(body.ticketNotes, S)
        local digi_note
        for _, note in ipairs(notes) do
          if logic.note_contains(note, "DiGi") then
            digi_note = note
            break
          end
        end
        if not digi_note then return "no_digi_note" end
        local at = logic.parse_time(digi_note.createdDate)
        if not at or now() - at < cfg.digi_reboot_window then return "recent" end
        for _, note in ipairs(notes) do
          if logic.note_contains(note, logic.WIRELESS_QUEUE) then return "already_forwarded" end
        end
        if logic.digi_note_interface(digi_note) == link.interface_name then
          local reply = repo.change_work(S, T, detail.detailID, logic.WIRELESS_QUEUE)
          if ok(reply) then
            log.info("ticket %s forwarded to the Wireless team (serial %s, interface %s)", tostring(T), tostring(S),
              tostring(link.interface_name))
            repo.append_note(T, logic.digi_failed_note(now()), nil)
            repo.slack(string.format("Forwarding ticket %s to Wireless team", tostring(T)))
            return "forwarded"
          end
        end
      end
    end
    return "nothing"
  end

  ----------------------------------------------------------------------------
  -- Ticket creation (§4.5)
  local CODES = { [409] = "in-progress ticket exists", [471] = "resolved ticket exists, to be reopened",
    [472] = "resolved ticket reopened by Bruin", [473] = "resolved ticket at the same site reopened, detail added" }

  function P.create_ticket(item)
    local cached, status = item.cached_info, item.status
    local S = cached.serial_number
    local C = cached.bruin_client_info and cached.bruin_client_info.client_id
    local reply = repo.create_outage_ticket(C, S)
    local T = reply.body
    local code = reply.status
    if ok(reply) then
      inc("outage_ticket")
      log.info("outage ticket %s created for edge %s (serial %s, client %s)", tostring(T),
        logic.edge_text(cached.edge), tostring(S), tostring(C))
    elseif CODES[code] then
      log.info("outage ticket for serial %s: Bruin answered %d (%s), ticket %s", tostring(S), code, CODES[code],
        tostring(T))
    end
    if ok(reply) then
      repo.slack(string.format("Outage ticket created for faulty edge %s. Ticket details at %s%s.",
        logic.edge_text(cached.edge), APP, tostring(T)))
      P.initial_triage(item, T, S)
      P.digi_reboot(item, T, S)
    elseif code == 409 then
      P.failed_digi_reboot(item, T, S)
    elseif code == 471 then
      P.reopen(item, T)
      P.digi_reboot(item, T, S)
    elseif code == 472 then
      reopen_note(T, status)
    elseif code == 473 then
      P.initial_triage(item, T, S)
    else
      log.error("outage ticket for %s could not be created: status %s", tostring(S), tostring(code))
    end
    return code
  end

  ----------------------------------------------------------------------------
  -- Re-check (§4.4)
  function P.recheck(items, whitelist)
    if #items == 0 then return end
    local host = items[1].cached_info.edge.host
    local cached, wanted = {}, {}
    for i, it in ipairs(items) do
      cached[i] = it.cached_info
      wanted[logic.cache_key(it.cached_info)] = true
    end
    -- only the statuses of these edges are kept while the reply is decoded
    local links, grouped = repo.links(host, wanted)
    if not ok(links) then return end
    local index = grouped.index
    links, grouped = nil, nil -- luacheck: ignore 311
    local fresh = logic.map_cache_to_status(cached, index)
    index = nil -- luacheck: ignore 311
    local outage, healthy = logic.split_outage(fresh)
    fresh = nil -- luacheck: ignore 311
    light(healthy)
    if #outage > 0 then
      if not production then
        log.info("%d edges of %s still in outage, no ticket because the current working environment is %s",
          #outage, host, tostring(cfg.environment):upper())
      else
        for _, item in ipairs(outage) do
          local okc, err = pcall(P.create_ticket, item)
          if not okc then
            log.error("ticket creation for %s failed: %s", logic.edge_text(item.cached_info.edge), tostring(err))
          end
        end
      end
    end
    autoresolve_all(healthy, whitelist)
  end

  ----------------------------------------------------------------------------
  -- Cycle (§4.2, §4.3)
  function P.process_host(host, entries, whitelist)
    local asked = now()
    -- reduced while the reply is decoded: full statuses only for the edges in outage
    local links, index, edges = repo.link_statuses(host)
    if not ok(links) then return end
    log.info("links of %s: %d edges in %.2f s", host, edges, now() - asked)
    links = nil -- luacheck: ignore 311
    local items, skipped = logic.map_cache_to_status(entries, index)
    index = nil -- luacheck: ignore 311
    for _, e in ipairs(skipped) do log.info("no status for edge %s: skipped", logic.edge_text(e.edge)) end
    skipped = nil -- luacheck: ignore 311
    inc("outage_monitoring_edge", #items)
    local outage, healthy = logic.split_outage(items)
    items = nil -- luacheck: ignore 311
    light(healthy)
    if #outage > 0 then
      P.rechecks = P.rechecks + 1
      local name = string.format("_ticket_creation_recheck:%s:%d", host, P.rechecks)
      log.info("%d edges of %s in outage: re-check in %s s", #outage, host, tostring(cfg.quarantine))
      after(cfg.quarantine, function() P.recheck(outage, whitelist) end, { name = name })
    end
    autoresolve_all(healthy, whitelist)
  end

  function P.run_cycle()
    local started = now()
    local reply = repo.customer_cache(cfg.filter, logic.py_naive(started - cfg.last_contact_window))
    if not repo.cache_ok(reply) or type(reply.body) ~= "table" then
      log.info("customer cache not available (status %s): cycle ends", tostring(reply.status))
      return false
    end
    log.info("customer cache: %d entries in %.2f s", #reply.body, now() - started)
    local entries, whitelist, hosts, by_host = {}, {}, {}, {}
    for _, e in ipairs(reply.body) do
      if type(e) == "table" and type(e.edge) == "table" and not logic.is_blacklisted(e.edge, cfg.blacklisted_edges) then
        entries[#entries + 1] = e
      end
    end
    local filtered = next(cfg.filter) ~= nil
    for _, e in ipairs(entries) do
      local host = e.edge.host
      if not filtered or cfg.filter[host] then whitelist[e.serial_number] = true end
      if not by_host[host] then
        by_host[host] = {}
        hosts[#hosts + 1] = host
      end
      local list = by_host[host]
      list[#list + 1] = e
    end
    local _, errors = task.map(hosts, function(host) return P.process_host(host, by_host[host], whitelist) end)
    for i, host in ipairs(hosts) do
      if errors[i] then log.error("processing of host %s failed: %s", host, tostring(errors[i])) end
    end
    local minutes = (now() - started) / 60
    log.info("outage cycle done: %d edges on %d host(s) in %.1f s", #entries, #hosts, now() - started)
    if metrics and metrics.cycle_runtime then metrics.cycle_runtime:set(math.floor(minutes * 100 + 0.5) / 100) end
    return true
  end

  return P
end

return M
