--- customer-cache: builds a cache of the monitorable VeloCloud edges crossed
-- with their Bruin client, per VeloCloud host, in the `customer_cache` Redis,
-- and serves it on `customer.cache.get` (queue group `customer_cache`).
-- Contract: spec/customer-cache.md. Configuration: the unit's config table,
-- else the original's environment variables (docs/capabilities/customer_cache.md).
local nats = require "ae.nats"
local json = require "ae.json"
local log = require "ae.log"
local redis = require "ae.redis"
local task = require "ae.task"
local timer = require "ae.timer"
local time = require "ae.time"
local clock = require "ae.clock"
local metrics = require "ae.metrics"
local unit = require "ae.unit"
local rpc = require "lib.rpc"

-- Large transient values (a host's cache and the reply: tens of MB of tables at
-- 50,000 edges) are garbage moments later: the generational collector frees
-- them at its next minor collection instead of letting the heap double first.
collectgarbage("generational")

local cfg = unit.config or {}

local DEFAULT_HOSTS = { "mettel.velocloud.net", "metvco02.mettel.net", "metvco03.mettel.net", "metvco04.mettel.net" }
local GOLD, PLATINUM = "Active \u{2013} Gold Monitoring", "Active \u{2013} Platinum Monitoring"

-- "a,b, c" or a JSON array -> list; nil when unset/empty
local function env_list(name)
  local v = os.getenv(name)
  if not v or v:match("^%s*$") then return nil end
  if v:match("^%s*%[") then
    local list = json.decode(v)
    if type(list) ~= "table" then error("customer-cache: " .. name .. " is not a JSON list: " .. v, 0) end
    return list
  end
  local out = {}
  for item in v:gmatch("[^,%s]+") do out[#out + 1] = item end
  return out
end

local function env_json(name)
  local v = os.getenv(name)
  if not v or v == "" then return nil end
  local value, err = json.decode(v)
  if value == nil then error("customer-cache: " .. name .. " is not JSON: " .. tostring(err), 0) end
  return value
end

local function pick(key, env, conv, default)
  local v = cfg[key]
  if v == nil and env then
    local raw = os.getenv(env)
    if raw and raw ~= "" then v = conv and conv(raw) or raw end
  end
  if v == nil then return default end
  return v
end

local config = {
  hosts = cfg.hosts or env_list("VELOCLOUD_HOST") or DEFAULT_HOSTS,
  velo_servers = cfg.velo_servers or env_list("VELO_SERVERS") or DEFAULT_HOSTS,
  refresh_map_minutes = pick("refresh_map_minutes", "REFRESH_MAP_MINUTES", tonumber, 240),
  blacklisted_edges = cfg.blacklisted_edges or env_json("BLACKLISTED_EDGES")
    or { { host = "mettel.velocloud.net", enterprise_id = 170, edge_id = 3195 } },
  semaphore = pick("semaphore", "REFRESH_SEMAPHORE", tonumber, 3),
  multiplier = pick("multiplier", nil, nil, 5),
  min = pick("min", nil, nil, 5),
  stop_delay = pick("stop_delay", nil, nil, 300),
  monitorable_management_statuses = cfg.monitorable_management_statuses or { "Pending", GOLD, PLATINUM },
  attempts_threshold = pick("attempts_threshold", "REFRESH_ATTEMPTS_THRESHOLD", tonumber, 10),
  retry_wait_min = pick("retry_wait_min", nil, nil, 120),
  retry_wait_max = pick("retry_wait_max", nil, nil, 300),
  timezone = pick("timezone", "TIMEZONE", nil, "US/Eastern"),
  environment = pick("environment", "ENVIRONMENT_NAME", nil, "production"),
  nats_retry = cfg.nats_retry == nil and { multiplier = 1, min = 1, stop_delay = 600 } or cfg.nats_retry,
  redis = cfg.redis or "customer_cache",
  refresh = cfg.refresh ~= false, -- false: serve only (another replica refreshes)
  links_timeout = pick("links_timeout", nil, nil, 300),
  enterprise_timeout = pick("enterprise_timeout", nil, nil, 90),
  bruin_timeout = pick("bruin_timeout", nil, nil, 30),
}

local function check_config()
  local function positive(k)
    if type(config[k]) ~= "number" or config[k] <= 0 then
      error(string.format("customer-cache: config %s must be a positive number (got %s)", k, tostring(config[k])), 0)
    end
  end
  for _, k in ipairs { "refresh_map_minutes", "semaphore", "multiplier", "min", "stop_delay", "attempts_threshold",
    "retry_wait_min", "retry_wait_max", "links_timeout", "enterprise_timeout", "bruin_timeout" } do
    positive(k)
  end
  if config.retry_wait_max < config.retry_wait_min then
    error("customer-cache: retry_wait_max must be >= retry_wait_min", 0)
  end
  for _, k in ipairs { "hosts", "velo_servers", "blacklisted_edges", "monitorable_management_statuses" } do
    if type(config[k]) ~= "table" then error("customer-cache: config " .. k .. " must be a list", 0) end
  end
  if not time.zone_valid(config.timezone) then error("customer-cache: unknown timezone " .. config.timezone, 0) end
end
check_config()

rpc.configure { environment = config.environment, retry = config.nats_retry }

local m_runs = metrics.counter("customer_cache_refresh_runs", "Refresh attempts by result", { "result" })
local m_cached = metrics.gauge("customer_cache_edges_cached", "Edges written per host by the last refresh", { "host" })
local m_failures = metrics.counter("customer_cache_failures", "Operational failures of customer-cache", { "what" })
local m_gets = metrics.counter("customer_cache_get_requests", "customer.cache.get replies by status", { "status" })

local store = redis.connect(config.redis)
local ENV = tostring(config.environment):upper()

local function slack(text)
  task.spawn(rpc.slack, text) -- reply ignored; never delays the refresh
end

local function falsy(v)
  return v == nil or v == json.null or v == false or v == 0 or v == ""
end

-- request(subject, body, timeout) -> reply | nil, err  (the original's retry policy)
local function request(subject, body, timeout)
  return nats.request(subject, rpc.envelope(body), { timeout = timeout, retry = config.nats_retry })
end

local function body_text(reply)
  return rpc.body_text(reply.body)
end

---------------------------------------------------------------------------
-- Refresh (spec §3)
---------------------------------------------------------------------------

-- §3.2: links of every host, sequentially in config order
local function fetch_links()
  local links = {}
  for _, host in ipairs(config.hosts) do
    local reply, err = request("get.links.with.edge.info", { host = host }, config.links_timeout)
    if not reply then
      m_failures:inc { what = "links" }
      log.error("links of %s: %s", host, err)
      slack(string.format("An error occurred when requesting edge list from %s -> %s", host, err))
    elseif not rpc.ok(reply) then
      m_failures:inc { what = "links" }
      log.error("links of %s: status %s", host, tostring(reply.status))
      slack(string.format("Error while retrieving edges links in %s environment: Error %s - %s", ENV,
        tostring(reply.status), body_text(reply)))
    elseif type(reply.body) ~= "table" then
      m_failures:inc { what = "links" }
      log.error("links of %s: reply body is not a list: %s", host, body_text(reply))
    else
      for _, link in ipairs(reply.body) do links[#links + 1] = link end
    end
  end
  return links
end

local function blacklisted(host, enterprise_id, edge_id)
  for _, b in ipairs(config.blacklisted_edges) do
    if b.host == host and b.enterprise_id == enterprise_id and b.edge_id == edge_id then return true end
  end
  return false
end

local function edge_key(host, enterprise_id, edge_id)
  return tostring(host) .. "\0" .. tostring(enterprise_id) .. "\0" .. tostring(edge_id)
end

-- §3.3.1: distinct edges in order of first appearance
local function distinct_edges(links)
  local seen, edges = {}, {}
  for _, link in ipairs(links) do
    if type(link) == "table" then
      local host, ent, id = link.host, link.enterpriseId, link.edgeId
      if not blacklisted(host, ent, id) and not falsy(id) then
        local k = edge_key(host, ent, id)
        if not seen[k] then
          seen[k] = true
          edges[#edges + 1] = link
        end
      end
    end
  end
  return edges
end

-- §3.3.2: logical ids per edge, from request.enterprises.edges
local function fetch_logical_ids(edges)
  local by_host, hosts = {}, {}
  for _, link in ipairs(edges) do
    local h = link.host
    if not by_host[h] then
      by_host[h] = { seen = {}, ids = {} }
      hosts[#hosts + 1] = h
    end
    local e = by_host[h]
    if not e.seen[link.enterpriseId] then
      e.seen[link.enterpriseId] = true
      e.ids[#e.ids + 1] = link.enterpriseId
    end
  end
  local logical = {}
  for _, host in ipairs(hosts) do
    for _, ent in ipairs(by_host[host].ids) do
      local reply, err = request("request.enterprises.edges", { host = host, enterprise_id = ent },
        config.enterprise_timeout)
      if not reply then
        m_failures:inc { what = "enterprise_edges" }
        log.error("edges of %s enterprise %s: %s", host, tostring(ent), err)
        slack(string.format("An error occurred when requesting edge list from host %s and enterprise ID %s -> %s",
          host, tostring(ent), err))
      elseif not rpc.ok(reply) then
        m_failures:inc { what = "enterprise_edges" }
        log.error("edges of %s enterprise %s: status %s", host, tostring(ent), tostring(reply.status))
        slack(string.format("Error while retrieving edge list in %s environment: Error %s - %s", ENV,
          tostring(reply.status), body_text(reply)))
      elseif type(reply.body) == "table" then
        for _, edge in ipairs(reply.body) do
          if type(edge) == "table" then
            local ids = json.array {}
            for _, l in ipairs(type(edge.links) == "table" and edge.links or {}) do
              ids[#ids + 1] = { interface_name = l.interface, logical_id = l.logicalId }
            end
            logical[edge_key(host, ent, edge.id)] = ids
          end
        end
      end
    end
  end
  return logical
end

-- §3.3.3: candidates {edge, serial_number, last_contact, logical_ids}
local function candidates(edges, logical)
  local out = {}
  for _, link in ipairs(edges) do
    local lc, serial = link.edgeLastContact, link.edgeSerialNumber
    if not (lc == nil or lc == json.null or lc == "0000-00-00 00:00:00") and not falsy(serial) then
      out[#out + 1] = {
        edge = { host = link.host, enterprise_id = link.enterpriseId, edge_id = link.edgeId },
        serial_number = serial,
        last_contact = lc,
        logical_ids = logical[edge_key(link.host, link.enterpriseId, link.edgeId)] or json.array {},
      }
    end
  end
  return out
end

local function monitorable(status)
  for _, s in ipairs(config.monitorable_management_statuses) do
    if status == s then return true end
  end
  return false
end

-- §3.4 steps 1-5 for one edge: the cache entry, or nil (dropped). Raises on
-- unexpected replies (retried by check_edge).
local function check_once(c)
  local serial = c.serial_number
  local reply, err = request("bruin.customer.get.info", { service_number = serial }, config.bruin_timeout)
  if not reply then
    log.error("client info of %s: %s", serial, err)
    slack(string.format("An error occurred when claiming client info for service number %s -> %s", serial, err))
    return nil
  end
  if not rpc.ok(reply) then
    log.warning("client info of %s: status %s", serial, tostring(reply.status))
    slack(string.format("Error while claiming client info for service number %s in %s environment: Error %s - %s",
      serial, ENV, tostring(reply.status), body_text(reply)))
    return nil
  end
  local info = reply.body
  if type(info) ~= "table" or json.is_array(info) then
    error("client info of " .. serial .. " is not an object: " .. body_text(reply), 0)
  end
  local client_id = info.client_id
  if falsy(client_id) then return nil end
  reply, err = request("bruin.inventory.management.status",
    { client_id = client_id, service_number = serial, status = "A" }, config.bruin_timeout)
  if not reply then
    log.error("management status of %s: %s", serial, err)
    slack(string.format("An error occurred when claiming management status for service number %s and client %s -> %s",
      serial, tostring(client_id), err))
    return nil
  end
  if not rpc.ok(reply) then
    log.warning("management status of %s: status %s", serial, tostring(reply.status))
    slack(string.format(
      "Error while claiming management status for service number %s and client %s in %s environment: Error %s - %s",
      serial, tostring(client_id), ENV, tostring(reply.status), body_text(reply)))
    return nil
  end
  if not monitorable(reply.body) then return nil end
  c.bruin_client_info = info
  return c
end

-- per-edge check with the original's backoff on unexpected errors
local function check_edge(c)
  local started = clock.now()
  local attempt = 0
  while true do
    attempt = attempt + 1
    local ok, res = pcall(check_once, c)
    if ok then return res end
    local elapsed = clock.now() - started
    if elapsed >= config.stop_delay then
      m_failures:inc { what = "edge_check" }
      log.error("edge %s dropped after %d attempts in %.0f s: %s", c.serial_number, attempt, elapsed, tostring(res))
      return nil
    end
    local wait = math.max(config.min, config.multiplier * 2 ^ attempt)
    log.warning("edge %s: attempt %d failed (%s), retrying in %s s", c.serial_number, attempt, tostring(res), wait)
    task.sleep(wait)
  end
end

local function store_host(host, entries)
  if #entries == 0 then
    -- spec §7: never replace a host's cache with an empty list
    log.warning("refresh of %s kept no edge: previous cache left in place", host)
    m_failures:inc { what = "empty_host" }
    return
  end
  local ok, err = pcall(store.call, store, "SET", host, json.encode(json.array(entries)))
  if not ok then
    m_failures:inc { what = "redis" }
    log.error("cannot store the cache of %s: %s", host, tostring(err))
    return
  end
  m_cached:set(#entries, { host = host })
  log.info("cache of %s stored: %d edges", host, #entries)
end

-- §3.4: Bruin filtering. Every edge of every host goes through one pool of
-- `semaphore` workers (the original's service-wide semaphore, hosts
-- concurrently); a host is stored as soon as its last edge is decided.
local function filter_and_store(cands)
  local pending = {}
  for _, c in ipairs(cands) do
    local h = c.edge.host
    pending[h] = (pending[h] or 0) + 1
  end
  local results = {}
  local _, errors = task.map(cands, function(c, i)
    local ok, res = pcall(check_edge, c)
    if ok then
      results[i] = res or false
    else
      m_failures:inc { what = "edge_check" }
      log.error("edge %s: %s", tostring(c.serial_number), tostring(res))
      results[i] = false
    end
    local h = c.edge.host
    pending[h] = pending[h] - 1
    if pending[h] == 0 then
      local list = {}
      for j, other in ipairs(cands) do
        if other.edge.host == h and results[j] then list[#list + 1] = results[j] end
      end
      store_host(h, list)
    end
  end, { limit = config.semaphore })
  for _, e in pairs(errors) do log.error("refresh worker: %s", tostring(e)) end
end

-- one attempt: true, or false + reason when there was no candidate edge
local function refresh_once()
  local links = fetch_links()
  local edges = distinct_edges(links)
  local logical = fetch_logical_ids(edges)
  local cands = candidates(edges, logical)
  log.info("refresh: %d links, %d distinct edges, %d candidates", #links, #edges, #cands)
  if #cands == 0 then return false, "no candidate edges" end
  filter_and_store(cands)
  return true
end

-- §3.5: the whole run, retried forever after 120-300 s
local function refresh()
  local failures = 0
  while true do
    local ok, res, why = pcall(refresh_once)
    if ok and res then
      m_runs:inc { result = "ok" }
      return
    end
    failures = failures + 1
    m_runs:inc { result = "failed" }
    log.error("refresh attempt %d failed: %s", failures, ok and why or tostring(res))
    if failures >= config.attempts_threshold then
      slack("[customer-cache] Too many consecutive failures happened while trying to claim the list of edges " ..
        "from Velocloud")
    end
    local wait = config.retry_wait_min + math.random() * (config.retry_wait_max - config.retry_wait_min)
    task.sleep(wait)
  end
end

---------------------------------------------------------------------------
-- Serving (spec §4)
---------------------------------------------------------------------------

local NO_BODY = 'You must specify {.."body":{"filter":[...]}} in the request'
local NO_FILTER = 'You must specify "filter" in the body'

local function is_object(v)
  return type(v) == "table" and not json.is_array(v) and getmetatable(v) ~= getmetatable(json.array {})
end

-- host order: velo_servers order, then the other hosts sorted (JSON objects have no order)
local function ordered_hosts(filter)
  local out, seen = {}, {}
  for _, h in ipairs(config.velo_servers) do
    if filter[h] ~= nil then
      out[#out + 1] = h
      seen[h] = true
    end
  end
  local rest = {}
  for h in pairs(filter) do
    if not seen[h] then rest[#rest + 1] = h end
  end
  table.sort(rest)
  for _, h in ipairs(rest) do out[#out + 1] = h end
  return out
end

local function reply(status, body)
  m_gets:inc { status = tostring(status) }
  return { status = status, body = body }
end

-- The entries of host's cache for which keep(entry) is true, as the text of a
-- JSON array (the stored bytes of those entries, not re-encoded), and their
-- count. No cache: "[]". A stored document that is not a JSON list is logged,
-- counted and treated as empty. keep sees every entry decoded, one at a time:
-- the decoded tables are garbage as soon as keep returns.
local function select_host(host, keep)
  local raw = store:get(host)
  if raw == nil then return "[]", 0 end
  local text, kept = json.select(raw, keep)
  if not text then
    m_failures:inc { what = "bad_cache" }
    log.error("cache of %s is not a JSON list: %s", host, tostring(kept))
    return "[]", 0
  end
  return text, kept
end

local function get(req)
  local body = req.body
  if not is_object(body) then return reply(400, NO_BODY) end
  local filter = body.filter
  if not is_object(filter) then return reply(400, NO_FILTER) end
  local since = body.last_contact_filter
  if since ~= nil and since ~= json.null then
    local t = type(since) == "string" and time.parse(since, "UTC") or nil
    if not t then return reply(400, "Invalid last_contact_filter") end
    since = t
  else
    since = nil
  end
  local hosts
  if next(filter) == nil then
    hosts = config.velo_servers
    filter = {}
    for _, h in ipairs(hosts) do filter[h] = {} end
  else
    hosts = ordered_hosts(filter)
    for _, h in ipairs(hosts) do
      if type(filter[h]) ~= "table" or is_object(filter[h]) and next(filter[h]) ~= nil then
        return reply(400, 'Each host of "filter" must map to a list of enterprise ids')
      end
    end
  end
  -- One pass over each host's text: `matched` counts the entries of the
  -- enterprise filter (202 when none, spec §4.5), the texts keep those that also
  -- pass last_contact_filter (404 when none, §4.6).
  local matched, wanted = 0, nil
  local function keep(entry)
    local edge = type(entry) == "table" and entry.edge
    if type(edge) ~= "table" or wanted and not wanted[edge.enterprise_id] then return false end
    matched = matched + 1
    if not since then return true end
    local t = type(entry.last_contact) == "string" and time.parse(entry.last_contact, "UTC")
    return t and t > since
  end
  local texts = {}
  for _, host in ipairs(hosts) do
    wanted = nil
    if #filter[host] > 0 then
      wanted = {}
      for _, id in ipairs(filter[host]) do wanted[id] = true end
    end
    local text, kept = select_host(host, keep)
    if kept > 0 then texts[#texts + 1] = text end
  end
  if matched == 0 then
    return reply(202, "Cache is still being built for host(s): " .. table.concat(hosts, ", "))
  end
  if #texts == 0 then return reply(404, "No edges were found for the specified filters") end
  -- the reply body is the kept entries' text: ae.nats writes it as is (no re-encoding)
  if #texts == 1 then return reply(200, json.raw(texts[1])) end
  for i, text in ipairs(texts) do texts[i] = text:sub(2, -2) end
  return reply(200, json.raw("[" .. table.concat(texts, ",") .. "]"))
end

local function serve_get(req)
  local ok, res = pcall(get, req)
  if ok then return res end
  m_failures:inc { what = "get" }
  log.error("customer.cache.get failed: %s", tostring(res))
  return reply(500, "Error reading the customer cache: " .. tostring(res))
end

assert(nats.serve("customer.cache.get", serve_get, { queue = "customer_cache" }))

if config.refresh then
  timer.every(config.refresh_map_minutes * 60, refresh,
    { now = true, name = "customer_cache_refresh", replace = false })
end
log.info("customer-cache serving customer.cache.get; refresh every %s min over %s", config.refresh_map_minutes,
  table.concat(config.hosts, ", "))
