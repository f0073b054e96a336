--- sandbox.velocloud_sim: four VMware VeloCloud Orchestrators (VCO) on the
-- engine's HTTP server, modelled on velocloud-bridge.md §6, fed by
-- sandbox.fleet. Every VCO host is mounted under
--
--   POST /sim/velocloud/<host>/portal/rest/<method>
--
-- with <host> one of the fleet's hosts (mettel.velocloud.net,
-- metvco02/03/04.mettel.net by default), so a bridge keeps the real host names
-- with VELOCLOUD_URL_TEMPLATE=http://127.0.0.1:PORT/sim/velocloud/{host}.
--
-- Methods: login/operatorLogin (Set-Cookie velocloud.session, 302 on bad
-- credentials), event/getEnterpriseEvents, monitoring/getEnterpriseEdgeLinkStatus,
-- monitoring/getAggregateEdgeLinkMetrics, monitoring/getAggregates,
-- enterprise/getEnterpriseEdges. A call without a valid session cookie (none,
-- unknown, expired after `session_ttl`, or the "expired_token" fault) gets
-- `Expires: 0` and the tokenError body; Expires: 0 is never sent otherwise.
--
-- Control routes (besides sandbox.sim's /_calls and /_faults):
--   GET  /sim/velocloud/_edges[?host=H]              edge states
--   GET  /sim/velocloud/_edges/<host>                edge states of one host
--   POST /sim/velocloud/_edges/<host>/<edge_id>      {state = "OFFLINE"|"CONNECTED",
--        links = {[<interface or link id>] = "DISCONNECTED"|"STABLE"}}: set states, emit events
--   GET  /sim/velocloud/_events/<host>               every event of a host, newest first
--   POST /sim/velocloud/_sessions/<host>/expire      expire every session of a host
--   GET  /sim/velocloud/_sessions                    live sessions per host
--
-- Fleet dynamics (off unless flap_interval > 0): every flap_interval seconds
-- a flap_fraction of the CONNECTED edges goes OFFLINE (links DISCONNECTED,
-- EDGE_DOWN + LINK_DEAD events) and comes back after down_for seconds
-- (EDGE_UP + LINK_ALIVE).
--
-- Config (unit table, else env):
--   fleet = {edges =, seed =, ...} (SIM_FLEET_EDGES, SIM_FLEET_SEED) or fleet_file (SIM_FLEET_FILE)
--   username / password: accepted credentials on every host (VELOCLOUD_SIM_USERNAME / _PASSWORD),
--     or users = {[host] = {username =, password =}}; default: any non-empty username and password
--   session_ttl (VELOCLOUD_SIM_SESSION_TTL, default 86400 s)
--   flap_interval (VELOCLOUD_SIM_FLAP_INTERVAL, 0 = off), flap_fraction (VELOCLOUD_SIM_FLAP_FRACTION, 0.05),
--   down_for (VELOCLOUD_SIM_DOWN_FOR, 300 s)
local sim_lib = require "sandbox.sim"
local fleet_lib = require "sandbox.fleet"
local httpd = require "ae.httpd"
local json = require "ae.json"
local clock = require "ae.clock"
local timer = require "ae.timer"
local time = require "ae.time"
local log = require "ae.log"
local unit = require "ae.unit"
local task = require "ae.task"

local ucfg = unit.config or {}

local function env_num(name)
  return tonumber(os.getenv(name))
end

local function fleet_options()
  if type(ucfg.fleet) == "table" then return ucfg.fleet end
  return { edges = env_num("SIM_FLEET_EDGES") or 200, seed = env_num("SIM_FLEET_SEED") or 1 }
end

local config = {
  username = ucfg.username or os.getenv("VELOCLOUD_SIM_USERNAME"),
  password = ucfg.password or os.getenv("VELOCLOUD_SIM_PASSWORD"),
  users = ucfg.users or {},
  session_ttl = ucfg.session_ttl or env_num("VELOCLOUD_SIM_SESSION_TTL") or 86400,
  flap_interval = ucfg.flap_interval or env_num("VELOCLOUD_SIM_FLAP_INTERVAL") or 0,
  flap_fraction = ucfg.flap_fraction or env_num("VELOCLOUD_SIM_FLAP_FRACTION") or 0.05,
  down_for = ucfg.down_for or env_num("VELOCLOUD_SIM_DOWN_FOR") or 300,
  fleet_file = ucfg.fleet_file or os.getenv("SIM_FLEET_FILE"),
}

local fleet
if config.fleet_file then
  fleet = fleet_lib.load(config.fleet_file)
else
  fleet = fleet_lib.generate(fleet_options())
end

local sim = sim_lib.new("velocloud")
local NULL = json.null

local TOKEN_ERROR = { error = { code = -32000, message = "tokenError [expired session cookie]" } }
local BAD_REQUEST = { error = { code = -32600, message = "An error occurred while processing your request" } }

-- per host: sessions[token] = expiry (engine clock); events (oldest first)
local hosts = {}
for _, h in ipairs(fleet.hosts) do hosts[h] = { sessions = {}, events = {}, next_event = 1 } end
local next_event_id = 8675000

-- ISO texts of recent instants, memoised: a host's link statuses format two
-- per record (25,000 records at 50,000 edges) from ~90 distinct instants
local ISO_OPTS = { precision = "ms" }
local iso_memo, iso_memo_n = {}, 0
local function iso(t)
  local s = iso_memo[t]
  if not s then
    if iso_memo_n >= 4096 then iso_memo, iso_memo_n = {}, 0 end
    s = time.iso(t, nil, ISO_OPTS)
    iso_memo[t], iso_memo_n = s, iso_memo_n + 1
  end
  return s
end

local function opt(v)
  if v == nil then return NULL end
  return v
end

---------------------------------------------------------------------------
-- Events

local EVENT_INFO = {
  EDGE_DOWN = { category = "EDGE", severity = "ERROR", text = "Edge %s is down" },
  EDGE_UP = { category = "EDGE", severity = "NOTICE", text = "Edge %s is up" },
  LINK_DEAD = { category = "NETWORK", severity = "ERROR", text = "Link %s is now DEAD" },
  LINK_ALIVE = { category = "NETWORK", severity = "NOTICE", text = "Link %s is no longer DEAD" }, -- VCO's wording
}

local function emit(edge, kind, subject, at)
  local info = EVENT_INFO[kind]
  next_event_id = next_event_id + 1
  local list = hosts[edge.host].events
  list[#list + 1] = {
    id = next_event_id, eventTime = iso(at), event = kind, category = info.category, severity = info.severity,
    message = string.format(info.text, subject), detail = NULL, enterpriseUsername = NULL, edgeName = edge.name,
    _t = at, _edge = edge.id, _enterprise = edge.enterprise_id,
  }
end

local function find_link(edge, key)
  for _, l in ipairs(edge.links) do
    if l.interface == key or tostring(l.id) == tostring(key) then return l end
  end
end

-- set_link(edge, link, state): record the change and its event
local function set_link(edge, link, state, now)
  if link.state == state then return end
  link.state = state
  if state == "STABLE" then
    link.last_active = iso(now)
    emit(edge, "LINK_ALIVE", link.interface, now)
  else
    emit(edge, "LINK_DEAD", link.interface, now)
  end
end

local function set_edge(edge, state, now)
  if edge.state == state then return end
  edge.state = state
  if state == "CONNECTED" then
    edge.down_since = nil
    emit(edge, "EDGE_UP", edge.name, now)
  else
    edge.down_since = edge.down_since or now
    edge.last_contact = iso(now)
    emit(edge, "EDGE_DOWN", edge.name, now)
  end
end

-- take_down / bring_up: a whole edge with all its links
local function take_down(edge, now)
  set_edge(edge, "OFFLINE", now)
  for _, l in ipairs(edge.links) do set_link(edge, l, "DISCONNECTED", now) end
end

local function bring_up(edge, now)
  set_edge(edge, "CONNECTED", now)
  for _, l in ipairs(edge.links) do set_link(edge, l, "STABLE", now) end
end

---------------------------------------------------------------------------
-- VCO records

local function last_contact(edge, now)
  if edge.state == "CONNECTED" then return iso(now - (edge.id % 60)) end
  return edge.last_contact
end

local function link_status_record(edge, link, ent_name, now)
  local rec = {
    enterpriseName = ent_name, enterpriseId = edge.enterprise_id, enterpriseProxyId = NULL,
    enterpriseProxyName = NULL, edgeName = edge.name, edgeState = edge.state,
    edgeSystemUpSince = edge.system_up_since, edgeServiceUpSince = edge.service_up_since,
    edgeLastContact = last_contact(edge, now), edgeId = edge.id, edgeSerialNumber = edge.serial,
    edgeHASerialNumber = NULL, edgeModelNumber = edge.model, edgeLatitude = NULL, edgeLongitude = NULL,
    displayName = NULL, isp = NULL, interface = NULL, internalId = NULL, linkState = NULL,
    linkLastActive = NULL, linkVpnState = NULL, linkId = NULL, linkIpAddress = NULL,
  }
  if link then
    rec.displayName, rec.isp, rec.interface = link.display_name, opt(link.isp), link.interface
    rec.internalId, rec.linkState, rec.linkId, rec.linkIpAddress = link.internal_id, link.state, link.id, link.ip
    rec.linkLastActive = link.state == "STABLE" and iso(now - (link.id % 30)) or link.last_active
    rec.linkVpnState = link.state
  end
  return rec
end

-- A list reply of a whole host (25,000 records, 18 MB at 50,000 edges) is
-- built and encoded LIST_SLICE edges at a time, with a yield in between:
-- built in one go it held the simulator's loop for ~0.35 s, and every other
-- call, and the write of the reply before it, waited behind it. A real VCO
-- serves its hosts and callers in parallel. One list is built at a time,
-- first come first served, so the first caller gets its reply first (built
-- interleaved, all four would be ready together, at the end).
local LIST_SLICE = 500
local list_lock = task.semaphore(1)

local function build_list(host, add_records)
  local parts, slice = {}, json.array({})
  local function flush()
    if #slice > 0 then parts[#parts + 1] = json.encode(slice):sub(2, -2) end
    slice = json.array({})
  end
  for i, edge in ipairs(fleet.edges_by_host[host]) do
    add_records(slice, edge)
    if i % LIST_SLICE == 0 then
      flush()
      task.yield()
    end
  end
  flush()
  return json.raw("[" .. table.concat(parts, ",") .. "]")
end

local function list_reply(host, add_records)
  return list_lock:with(build_list, host, add_records)
end

local function link_status_records(host, now)
  return list_reply(host, function(out, edge)
    if #edge.links == 0 then
      out[#out + 1] = link_status_record(edge, nil, edge.enterprise_name, now)
    else
      for _, l in ipairs(edge.links) do out[#out + 1] = link_status_record(edge, l, edge.enterprise_name, now) end
    end
  end)
end

-- Deterministic metrics of one link over `seconds`: a quiet link when it is
-- STABLE, total loss when not.
local function metric_record(edge, link, seconds, now)
  local k = link.id
  local up = link.state == "STABLE"
  local rate = up and (20000 + (k * 7919) % 80000) or 0 -- bytes/s
  local tx, rx = math.floor(rate * seconds), math.floor(rate * seconds * 0.6)
  local ptx, prx = tx // 900, rx // 900
  local rec = {
    linkId = k, bytesTx = tx, bytesRx = rx, packetsTx = ptx, packetsRx = prx, totalBytes = tx + rx,
    totalPackets = ptx + prx, p1BytesRx = rx // 8, p1BytesTx = tx // 8, p1PacketsRx = prx // 8, p1PacketsTx = ptx // 8,
    p2BytesRx = rx // 4, p2BytesTx = tx // 4, p2PacketsRx = prx // 4, p2PacketsTx = ptx // 4,
    p3BytesRx = rx // 16, p3BytesTx = tx // 16, p3PacketsRx = prx // 16, p3PacketsTx = ptx // 16,
    controlBytesRx = rx // 5, controlBytesTx = tx // 5, controlPacketsRx = prx // 5, controlPacketsTx = ptx // 5,
    bpsOfBestPathRx = up and 100000000 + (k % 7) * 50000000 or 0,
    bpsOfBestPathTx = up and 20000000 + (k % 5) * 10000000 or 0,
    bestJitterMsRx = up and k % 4 or 0, bestJitterMsTx = up and k % 3 or 0,
    bestLatencyMsRx = up and 10 + k % 40 or 0, bestLatencyMsTx = up and 12 + k % 35 or 0,
    bestLossPctRx = up and 0 or 100, bestLossPctTx = up and 0 or 100,
    scoreTx = up and 4.400000095367432 or 1.0, scoreRx = up and 4.400000095367432 or 1.0,
    signalStrength = 0, state = 0, name = link.interface,
    link = link_status_record(edge, link, edge.enterprise_name, now),
  }
  return rec
end

local function edge_record(edge, now)
  local links = json.array({})
  for _, l in ipairs(edge.links) do
    links[#links + 1] = {
      id = l.id, created = edge.system_up_since, edgeId = edge.id, logicalId = l.logical_id, internalId = l.internal_id,
      interface = l.interface, macAddress = NULL, ipAddress = l.ip, netmask = NULL, networkSide = "WAN",
      networkType = "ETHERNET", displayName = l.display_name, isp = opt(l.isp), org = NULL, lat = NULL, lon = NULL,
      lastActive = l.state == "STABLE" and iso(now) or l.last_active, state = l.state, backupState = "UNCONFIGURED",
      vpnState = l.state, lastEvent = l.last_active, lastEventState = l.state, alertsEnabled = 1,
      operatorAlertsEnabled = 1, serviceState = "IN_SERVICE", modified = iso(now), effectiveState = l.state,
    }
  end
  return {
    id = edge.id, created = edge.system_up_since, enterpriseId = edge.enterprise_id, siteId = edge.site_id,
    activationKey = NULL, activationKeyExpires = NULL, activationState = edge.activation_state,
    activationTime = edge.system_up_since, softwareVersion = "3.3.2", buildNumber = "R332-20191219-P1-GA",
    factorySoftwareVersion = "3.3.0", factoryBuildNumber = "R330-MTHD-20190328-GA",
    softwareUpdated = edge.system_up_since, selfMacAddress = NULL, deviceId = NULL, logicalId = edge.logical_id,
    serialNumber = edge.serial, modelNumber = edge.model, deviceFamily = "EDGE" .. edge.model:sub(5, 5) .. "X0",
    name = edge.name, dnsName = NULL, description = NULL, alertsEnabled = 1, operatorAlertsEnabled = 1,
    edgeState = edge.state, edgeStateTime = edge.down_since and iso(edge.down_since) or edge.system_up_since,
    isLive = 0, systemUpSince = edge.system_up_since, serviceUpSince = edge.service_up_since,
    lastContact = last_contact(edge, now), serviceState = "IN_SERVICE", endpointPkiMode = "CERTIFICATE_DISABLED",
    haState = "UNCONFIGURED", haPreviousState = "UNCONFIGURED", haLastContact = "0000-00-00 00:00:00",
    haSerialNumber = NULL, modified = iso(now), isHub = false, links = links,
  }
end

---------------------------------------------------------------------------
-- Sessions

local function random_token()
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
  local out = {}
  for i = 1, 32 do
    local k = math.random(#chars)
    out[i] = chars:sub(k, k)
  end
  return "s%3A" .. table.concat(out, "", 1, 24) .. "." .. table.concat(out, "", 25, 32)
end

local function credentials_ok(host, body)
  if type(body) ~= "table" or type(body.username) ~= "string" or type(body.password) ~= "string" then
    return false
  end
  local want = config.users[host]
  local user = want and want.username or config.username
  local pass = want and want.password or config.password
  if user == nil and pass == nil then return body.username ~= "" and body.password ~= "" end
  return body.username == user and body.password == pass
end

local function session_of(req)
  local cookie = req.headers.cookie
  return cookie and cookie:match("velocloud%.session=([^;%s]+)")
end

local function session_valid(state, req)
  local token = session_of(req)
  local expiry = token and state.sessions[token]
  if not expiry then return false end
  if clock.now() >= expiry then
    state.sessions[token] = nil
    return false
  end
  return not sim:fault("expired_token", req)
end

local function login(host, state, req)
  local body = req:json()
  if not credentials_ok(host, body) then
    log.info("velocloud sim %s: bad credentials", host)
    return { status = 302, headers = { Location = "/login/operatorLogin.html?errorMsg=invalid" }, body = "" }
  end
  local token = random_token()
  state.sessions[token] = clock.now() + config.session_ttl
  return {
    status = 200,
    headers = {
      ["Content-Type"] = "application/json",
      ["Set-Cookie"] = { "velocloud.session=" .. token .. "; Path=/; Secure; HttpOnly",
        "velocloud.message=; Path=/" },
    },
    body = "{}",
  }
end

---------------------------------------------------------------------------
-- API methods: fn(host, body, now) -> status, value

local function bad_request()
  return 400, BAD_REQUEST
end

local function interval_of(body)
  local iv = type(body) == "table" and body.interval
  if type(iv) ~= "table" then return nil end
  local function parse(v)
    if math.type(v) then return v > 1e11 and v / 1000 or v end -- VCO also takes epoch milliseconds
    if type(v) == "string" then return time.parse(v) end
  end
  local s, e = parse(iv.start), parse(iv["end"])
  if not s then return nil end
  return s, e
end

local methods = {}

methods["event/getEnterpriseEvents"] = function(host, body, now)
  local s, e = interval_of(body)
  if not s or math.type(body.enterpriseId) == nil then return bad_request() end
  e = e or now
  local want = {}
  if type(body.edgeId) == "table" then
    for _, id in ipairs(body.edgeId) do want[id] = true end
  end
  local limit = type(body.filter) == "table" and math.type(body.filter.limit) and body.filter.limit or nil
  local data, more = json.array({}), false
  local list = hosts[host].events
  for i = #list, 1, -1 do -- newest first
    local ev = list[i]
    if ev._enterprise == body.enterpriseId and (next(want) == nil or want[ev._edge]) and ev._t >= s and ev._t <= e then
      if limit and #data >= limit then
        more = true
        break
      end
      local out = {}
      for k, v in pairs(ev) do
        if k:sub(1, 1) ~= "_" then out[k] = v end
      end
      data[#data + 1] = out
    end
  end
  return 200, { metaData = { limit = opt(limit), more = more }, data = data }
end

methods["monitoring/getEnterpriseEdgeLinkStatus"] = function(host, _, now)
  return 200, link_status_records(host, now)
end

methods["monitoring/getAggregateEdgeLinkMetrics"] = function(host, body, now)
  local s, e = interval_of(body)
  if not s then return bad_request() end
  local seconds = math.max(0, (e or now) - s)
  return 200, list_reply(host, function(out, edge)
    for _, l in ipairs(edge.links) do out[#out + 1] = metric_record(edge, l, seconds, now) end
  end)
end

methods["monitoring/getAggregates"] = function(host)
  local ents, total = json.array({}), 0
  for _, ent in ipairs(fleet.enterprises_by_host[host]) do
    local count = 0
    for _, edge in ipairs(fleet.edges_by_host[host]) do
      if edge.enterprise_id == ent.id then count = count + 1 end
    end
    total = total + count
    ents[#ents + 1] = {
      id = ent.id, name = ent.name, logicalId = string.format("%08x-0000-4000-8000-%012d", ent.id, ent.client_id),
      edgeCount = count,
    }
  end
  return 200, { edgeCount = total, enterprises = ents }
end

methods["enterprise/getEnterpriseEdges"] = function(host, body, now)
  if type(body) ~= "table" or math.type(body.enterpriseId) == nil then return bad_request() end
  local out = json.array({})
  for _, edge in ipairs(fleet.edges_by_host[host]) do
    if edge.enterprise_id == body.enterpriseId then out[#out + 1] = edge_record(edge, now) end
  end
  return 200, out
end

sim:route("POST", "/:host/portal/rest/*method", function(req)
  local host, method = req.params.host, req.params.method
  local state = hosts[host]
  if not state then
    return { status = 404, headers = { ["Content-Type"] = "text/html" }, body = "<h1>Not Found</h1>" }
  end
  if method == "login/operatorLogin" then return login(host, state, req) end
  local fn = methods[method]
  if not fn then return sim_lib.json(404, { error = { code = -32601, message = "Method not found: " .. method } }) end
  if not session_valid(state, req) then
    return sim_lib.json(200, TOKEN_ERROR, { Expires = "0" })
  end
  local body = req:json()
  if req.body ~= "" and body == nil then return sim_lib.json(bad_request()) end
  local status, value = fn(host, body or {}, clock.now())
  return sim_lib.json(status, value)
end)

---------------------------------------------------------------------------
-- Control routes

local function edge_state(edge)
  local links = json.array({})
  for _, l in ipairs(edge.links) do
    links[#links + 1] = { id = l.id, interface = l.interface, state = l.state }
  end
  return {
    host = edge.host, enterprise_id = edge.enterprise_id, enterprise_name = edge.enterprise_name, id = edge.id,
    name = edge.name, serial = edge.serial, state = edge.state, links = links,
    down_since = edge.down_since and iso(edge.down_since) or NULL,
  }
end

local function edge_states(host)
  local out = json.array({})
  for _, edge in ipairs(fleet.edges) do
    if not host or edge.host == host then out[#out + 1] = edge_state(edge) end
  end
  return out
end

httpd.route("GET", "/sim/velocloud/_edges", function(req)
  return { json = edge_states(req.query.host) }
end)

httpd.route("GET", "/sim/velocloud/_edges/:host", function(req)
  if not hosts[req.params.host] then return { status = 404, json = { error = "unknown host " .. req.params.host } } end
  return { json = edge_states(req.params.host) }
end)

local STATES = { CONNECTED = true, OFFLINE = true, NEVER_ACTIVATED = true, DEGRADED = true }

httpd.route("POST", "/sim/velocloud/_edges/:host/:edge_id", function(req)
  local edge = fleet.edge_by_id[req.params.host .. "/" .. req.params.edge_id]
  if not edge then
    return { status = 404, json = { error = "no edge " .. req.params.edge_id .. " on " .. req.params.host } }
  end
  local body, err = req:json()
  if type(body) ~= "table" then return { status = 400, json = { error = err or "a JSON object is needed" } } end
  if body.state ~= nil and not STATES[body.state] then
    return { status = 400, json = { error = "state must be CONNECTED, OFFLINE, NEVER_ACTIVATED or DEGRADED" } }
  end
  local links = type(body.links) == "table" and body.links or {}
  for key, st in pairs(links) do
    if not find_link(edge, key) then
      return { status = 400, json = { error = "edge has no link " .. tostring(key) } }
    end
    if type(st) ~= "string" then return { status = 400, json = { error = "a link state must be a string" } } end
  end
  local now = clock.now()
  if body.state == "OFFLINE" and next(links) == nil then
    take_down(edge, now)
  elseif body.state == "CONNECTED" and next(links) == nil then
    bring_up(edge, now)
  elseif body.state then
    set_edge(edge, body.state, now)
  end
  for key, st in pairs(links) do set_link(edge, find_link(edge, key), st, now) end
  log.info("velocloud sim: edge %s/%d is %s", edge.host, edge.id, edge.state)
  return { json = edge_state(edge) }
end)

httpd.route("GET", "/sim/velocloud/_events/:host", function(req)
  local state = hosts[req.params.host]
  if not state then return { status = 404, json = { error = "unknown host " .. req.params.host } } end
  local out = json.array({})
  for i = #state.events, 1, -1 do
    local ev = state.events[i]
    local copy = {}
    for k, v in pairs(ev) do
      if k:sub(1, 1) ~= "_" then copy[k] = v end
    end
    copy.edgeId, copy.enterpriseId = ev._edge, ev._enterprise
    out[#out + 1] = copy
  end
  return { json = out }
end)

httpd.route("POST", "/sim/velocloud/_sessions/:host/expire", function(req)
  local state = hosts[req.params.host]
  if not state then return { status = 404, json = { error = "unknown host " .. req.params.host } } end
  local n = 0
  for token in pairs(state.sessions) do
    state.sessions[token] = nil
    n = n + 1
  end
  return { json = { expired = n } }
end)

httpd.route("GET", "/sim/velocloud/_sessions", function()
  local out, now = {}, clock.now()
  for h, state in pairs(hosts) do
    local n = 0
    for _, expiry in pairs(state.sessions) do
      if expiry > now then n = n + 1 end
    end
    out[h] = n
  end
  return { json = out }
end)

---------------------------------------------------------------------------
-- Fleet dynamics

local function flap()
  local now = clock.now()
  local candidates = {}
  for _, edge in ipairs(fleet.edges) do
    if edge.state == "CONNECTED" then candidates[#candidates + 1] = edge end
  end
  local n = math.min(#candidates, math.max(1, math.floor(#fleet.edges * config.flap_fraction + 0.5)))
  for _ = 1, n do
    local i = math.random(#candidates)
    local edge = table.remove(candidates, i)
    take_down(edge, now)
    timer.after(config.down_for, function()
      if edge.state == "OFFLINE" then bring_up(edge, clock.now()) end
    end, { name = string.format("_velocloud_sim_up_%s_%d", edge.host, edge.id) })
  end
  log.info("velocloud sim: %d edge(s) went OFFLINE for %s s", n, config.down_for)
end

if config.flap_interval > 0 and config.flap_fraction > 0 then
  timer.every(config.flap_interval, flap, { name = "_velocloud_sim_flap" })
end

log.info("velocloud simulator: %d hosts, %d edges, flapping %s", #fleet.hosts, #fleet.edges,
  config.flap_interval > 0 and ("every " .. config.flap_interval .. " s") or "off")
