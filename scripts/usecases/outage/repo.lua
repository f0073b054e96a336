--- usecases.outage.repo: the requests of service-outage-monitor (spec §3)
-- through the scripts/lib clients, with the service's own error Slack
-- texts (spec §2.4). Every function returns the reply {status=, body=}; a
-- transport failure is the 503 substitute. The lib clients are called with
-- notify = false and the Slack text is worded here, byte for byte as the
-- spec lists it.
--
--   local repo = require("usecases.outage.repo").new(cfg)          -- real clients
--   local repo = require("usecases.outage.repo").new(cfg, fakes)   -- specs
local rpc = require "lib.rpc"
local json = require "ae.json"
local log = require "ae.log"
local logic = require "usecases.outage.logic"

local M = {}

local ok = rpc.ok

local function body_text(body)
  return rpc.body_text(body)
end

-- Python rendering of a list of strings: ['New', 'InProgress', 'Draft']
local function pylist(list)
  local parts = {}
  for i, v in ipairs(list or {}) do
    parts[i] = type(v) == "string" and ("'" .. v .. "'") or tostring(v)
  end
  return "[" .. table.concat(parts, ", ") .. "]"
end
M.pylist = pylist

--- default_clients() -> the lib clients this service uses.
function M.default_clients()
  return {
    bruin = require "lib.bruin",
    digi = require "lib.digi",
    notify = require "lib.notify",
    velocloud = require "lib.velocloud",
    customer_cache = require "lib.customer_cache",
  }
end

--- new(cfg [, clients]) -> repo
function M.new(cfg, clients)
  clients = clients or M.default_clients()
  local bruin, velocloud, cache = clients.bruin, clients.velocloud, clients.customer_cache
  local R = { clients = clients }
  local ENV = tostring(cfg.environment):upper()
  local ENVNAME = tostring(cfg.environment_name or "None"):upper()
  local retry = cfg.nats_retry or "default"
  local function opts(extra)
    local o = { notify = false, retry = retry }
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end

  function R.slack(text)
    local okc, err = pcall(clients.notify.slack, text)
    if not okc then log.error("Slack notification failed: %s", tostring(err)) end -- Notes #13
  end

  -- Slack for a failed reply: transport failure (503 substitute) or non-2xx.
  local function fail(reply, error_text, transport_text)
    if ok(reply) then return reply end
    if reply.status == 503 and reply.request_id == nil and reply.error ~= nil then
      if transport_text then R.slack(transport_text(reply.error)) end
    elseif error_text then
      R.slack(error_text(reply.status, body_text(reply.body)))
    end
    return reply
  end

  --- customer_cache(filter, last_contact_filter): lib.customer_cache sends
  -- the spec's Slack texts itself (202: the body; transport failure: "An
  -- error occurred when requesting customer cache -> <error>"; others: none).
  --
  -- The entries are kept slim while the reply is decoded (logic.cache_entry_slimmer:
  -- the fields this service reads), so the ~47,000 entries of a large fleet
  -- take ~20 MB of Lua heap instead of ~50 MB for the whole cycle.
  function R.customer_cache(filter, last_contact_filter)
    local entries, slim
    local function fresh()
      entries, slim = json.array({}), logic.cache_entry_slimmer()
    end
    fresh()
    local reply = cache.get({
      velo_filter = filter, last_contact_filter = last_contact_filter, retry = retry,
      decode = function(text)
        fresh() -- per attempt (stub, offloaded text, retry)
        local v, streamed = json.decode_each(text, "body", function(e) entries[#entries + 1] = slim(e) end)
        -- a streamed list is absent from v (streamed = its length): the slim list goes there
        if type(v) == "table" and math.type(streamed) == "integer" then v.body = entries end
        return v, streamed
      end,
    })
    local list = type(reply) == "table" and reply.body
    if type(list) == "table" and list ~= entries and (#list > 0 or json.is_array(list)) then
      fresh() -- a test double's reply (no decode step): the same slimming
      for i, e in ipairs(list) do entries[i] = slim(e) end
      reply.body = entries
    end
    return reply
  end

  function R.cache_ok(reply)
    return ok(reply) and reply.status ~= 202
  end

  -- get.links.with.edge.info for host, decoded by o.decode; a failure gets the
  -- spec's Slack text (error reply or transport failure)
  local function links_of(host, o)
    return fail(velocloud.links_with_edge_info({ host = host }, o),
      function(status, body)
        return string.format("Error while retrieving links with edge info in %s environment: Error %s - %s",
          ENVNAME, tostring(status), body)
      end,
      function(e) return "An error occurred when requesting edge list from Velocloud -> " .. e end)
  end

  --- links(host [, wanted]) -> reply, grouper: the reply's records go straight
  -- into a logic.link_grouper(wanted) while the reply is decoded (the list of
  -- tens of thousands of records is never built; reply.body is then absent).
  -- A body that is not a list (an error text; a test double's table) stays in
  -- the reply, and the grouper is empty.
  function R.links(host, wanted)
    local grouper = logic.link_grouper(wanted)
    local o = opts({ doing = "retrieving links with edge info" })
    o.decode = function(text)
      grouper = logic.link_grouper(wanted) -- a fresh one per attempt (stub, offloaded text, retry)
      return json.decode_each(text, "body", grouper.add)
    end
    local reply = links_of(host, o)
    if ok(reply) and type(reply.body) == "table" then
      for _, link in ipairs(reply.body) do grouper.add(link) end
    end
    return reply, grouper
  end

  --- link_statuses(host) -> reply, index, edges: the host's links reduced to
  -- what the first pass needs. index[key] is the edge's grouped status when
  -- the edge is in outage, logic.HEALTHY when not; edges = how many edges.
  -- An outage_scanner over the records while the reply is decoded keeps the
  -- statuses of the edges in outage only (a host's statuses as tables were
  -- ~14 MB at 50,000 edges); a second pass over the text only when an edge in
  -- outage had records apart from each other.
  function R.link_statuses(host)
    local index, edges = {}, 0
    -- feed(add) gives add every record (once per call) -> the decode result
    local function reduce(feed)
      local scan = logic.outage_scanner()
      local v, n = feed(scan.add)
      if v == nil then return v, n end -- not JSON
      local grouped, again = scan.statuses, scan.finish()
      if again then -- records of an edge in outage were not contiguous: group those again
        local g = logic.link_grouper(again)
        feed(g.add)
        for key, status in pairs(g.index) do grouped[key] = status end
      end
      index, edges = scan.index, 0
      for key, down in pairs(index) do
        index[key] = down and grouped[key] or logic.HEALTHY
        edges = edges + 1
      end
      return v, n
    end
    local o = opts({ doing = "retrieving links with edge info" })
    o.decode = function(text)
      return reduce(function(add) return json.decode_each(text, "body", add) end)
    end
    local reply = links_of(host, o)
    if ok(reply) and type(reply.body) == "table" then -- a test double's list
      local list = reply.body
      reduce(function(add)
        for _, link in ipairs(list) do add(link) end
        return list
      end)
    end
    return reply, index, edges
  end

  function R.events(edge, start_date, end_date, types)
    local filter = json.array({})
    for i, t in ipairs(types) do filter[i] = t end
    local eid = logic.edge_text(edge)
    return fail(velocloud.edge_events({ host = edge.host, enterprise_id = edge.enterprise_id, edge_id = edge.edge_id,
      start = start_date, ["end"] = end_date, filter = filter }, opts({ doing = "requesting edge events" })),
      function(status, body)
        return string.format("Error while retrieving events of edge %s having any type in %s that took place " ..
          "between %s and %s in %senvironment: Error %s - %s", eid, pylist(types), start_date, end_date, ENV,
          tostring(status), body)
      end,
      function(e)
        return "An error occurred when requesting edge events from Velocloud for edge " .. eid .. " -> " .. e
      end)
  end

  local STATUSES = { "New", "InProgress", "Draft" }
  function R.open_tickets(client_id, serial)
    local args = { client_id = client_id, ticket_statuses = STATUSES, ticket_topic = "VOO", category = "SD-WAN",
      service_number = serial }
    local sn = serial and (", service number " .. tostring(serial)) or ""
    return fail(bruin.open_tickets(args, opts({ doing = "requesting tickets", timeout = 90 })),
      function(status, body)
        return string.format("Error while retrieving tickets with any status of %s, with ticket topic VOO%s and " ..
          "belonging to client %s in %s environment: Error %s - %s", pylist(STATUSES), sn, tostring(client_id), ENV,
          tostring(status), body)
      end,
      function(e)
        return string.format("An error occurred when requesting tickets from Bruin API with any status of %s, " ..
          "with ticket topic VOO and belonging to client %s -> %s", pylist(STATUSES), tostring(client_id), e)
      end)
  end

  function R.details(ticket_id)
    return fail(bruin.ticket_details(ticket_id, opts({ timeout = 15 })),
      function(status, body)
        return string.format("Error while retrieving details of ticket %s in %s environment: Error %s - %s",
          tostring(ticket_id), ENV, tostring(status), body)
      end,
      function(e)
        return string.format("An error occurred when requesting ticket details from Bruin API for ticket %s -> %s",
          tostring(ticket_id), e)
      end)
  end

  function R.append_note(ticket_id, note, service_numbers)
    return fail(bruin.append_note(ticket_id, note, opts({ timeout = 15, service_numbers = service_numbers })),
      function(status, body)
        return string.format("Error while appending note to ticket %s in %s environment. Note was %s. Error: " ..
          "Error %s - %s", tostring(ticket_id), ENV, note, tostring(status), body)
      end,
      function(e)
        return string.format("An error occurred when appending a ticket note to ticket %s. Ticket note: %s. " ..
          "Error: %s", tostring(ticket_id), note, e)
      end)
  end

  function R.resolve(ticket_id, detail_id)
    return fail(bruin.resolve_ticket(ticket_id, detail_id, opts({ timeout = 15 })),
      function(status, body)
        return string.format("Error while resolving ticket %s in %s environment: Error %s - %s", tostring(ticket_id),
          ENV, tostring(status), body)
      end,
      function(e) return string.format("An error occurred when resolving ticket %s -> %s", tostring(ticket_id), e) end)
  end

  function R.open(ticket_id, detail_id)
    return fail(bruin.open_ticket(ticket_id, detail_id, opts({ timeout = 15 })),
      function(status, body)
        return string.format("Error while opening outage ticket %s in %s environment: Error %s - %s",
          tostring(ticket_id), ENV, tostring(status), body)
      end,
      function(e)
        return string.format("An error occurred when opening outage ticket %s -> %s", tostring(ticket_id), e)
      end)
  end

  local CUSTOM = { [409] = true, [471] = true, [472] = true, [473] = true }
  function R.create_outage_ticket(client_id, serial)
    local reply = bruin.create_outage_ticket(client_id, serial, opts({ timeout = 30 }))
    if CUSTOM[reply.status] then return reply end
    return fail(reply,
      function(status, body)
        return string.format("Error while creating outage ticket for device %s that belongs to client %s in %s " ..
          "environment: Error %s - %s", tostring(serial), tostring(client_id), ENV, tostring(status), body)
      end,
      function(e)
        return string.format("An error occurred when creating outage ticket for device %s belong to client%s -> %s",
          tostring(serial), tostring(client_id), e)
      end)
  end

  function R.change_work(serial, ticket_id, detail_id, queue)
    return fail(bruin.change_work({ service_number = serial, ticket_id = ticket_id, detail_id = detail_id,
      queue_name = queue }, opts({ timeout = 90 })),
      function(status, body)
        return string.format("Error while changing task result for ticket %s in %s environment: Error %s - %s",
          tostring(ticket_id), ENV, tostring(status), body)
      end,
      function() return "An error occurred when changing task result for ticket " .. tostring(ticket_id) end)
  end

  function R.digi_reboot(serial, ticket_id, mac)
    return fail(clients.digi.reboot({ velo_serial = serial, ticket = tostring(ticket_id), MAC = mac },
      opts({ timeout = 90 })),
      function(status, body)
        return string.format("Error while attempting a DiGi reboot for ticket %s in %s environment: Error %s - %s",
          tostring(ticket_id), ENV, tostring(status), body)
      end,
      function(e)
        return string.format("An error occurred when attempting a DiGi reboot for ticket %s -> %s",
          tostring(ticket_id), e)
      end)
  end

  return R
end

return M
