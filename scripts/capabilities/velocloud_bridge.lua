--- velocloud-bridge: NATS replier in front of the VeloCloud Orchestrators
-- (velocloud-bridge.md). One operator session per configured VCO host, logged
-- in at start in configuration order, re-logged when a call shows the session
-- expired (Expires: 0 or a tokenError body). Five subjects in queue group
-- velocloud_bridge; see docs/capabilities/velocloud-bridge.md.
local http = require "ae.http"
local json = require "ae.json"
local nats = require "ae.nats"
local log = require "ae.log"
local task = require "ae.task"
local timer = require "ae.timer"
local metrics = require "ae.metrics"

-- Large transient values (the links of a host: tens of MB of tables at
-- 50,000 edges) are garbage moments later: the generational collector frees
-- them at its next minor collection instead of letting the heap double first.
collectgarbage("generational")

local settings = require("lib.config").new("velocloud-bridge")

local config = {
  credentials = settings:get("credentials", "VELOCLOUD_CREDENTIALS"),
  -- aengine: where a host's API lives; {host} is replaced by the host name
  url_template = settings:get("url_template", "VELOCLOUD_URL_TEMPLATE", "https://{host}"),
  verify_ssl = settings:flag("verify_ssl", "VELOCLOUD_VERIFY_SSL", true),
  timeout = settings:number("timeout", "VELOCLOUD_TIMEOUT", 120, "positive"), -- per VCO call, §9 item 7
  login_retry_min = settings:number("login_retry_min", "VELOCLOUD_LOGIN_RETRY_MIN", 30, "non-negative"),
  login_retry_max = settings:number("login_retry_max", "VELOCLOUD_LOGIN_RETRY_MAX", 300, "non-negative"),
  queue = "velocloud_bridge",
}

local TEXT = {
  internal = "Got internal error from Velocloud",
  connect = "Error while connecting to Velocloud API",
}

local vco_errors = metrics.counter("velocloud_bridge_vco_errors", "Failed VeloCloud API calls", { "host", "kind" })
local logins = metrics.counter("velocloud_bridge_logins", "VeloCloud operator logins", { "host", "result" })
local relogins = metrics.counter("velocloud_bridge_relogins", "Re-login jobs scheduled", { "host" })

---------------------------------------------------------------------------
-- Credentials: "host+user+password;host+user+password" or a list of
-- {host =, username =, password =}.

local function parse_credentials(c)
  local out = {}
  if type(c) == "table" then
    for i, e in ipairs(c) do
      if type(e) ~= "table" or type(e.host) ~= "string" or type(e.username) ~= "string"
        or type(e.password) ~= "string" then
        error(string.format("velocloud-bridge: credentials[%d] needs host, username and password strings", i), 0)
      end
      out[#out + 1] = { host = e.host, username = e.username, password = e.password }
    end
    return out
  end
  if type(c) ~= "string" or c == "" then
    error("velocloud-bridge: VELOCLOUD_CREDENTIALS is required (host+user+password;...)", 0)
  end
  for block in (c .. ";"):gmatch("([^;]*);") do
    if block:match("%S") then
      local fields = {}
      for f in (block .. "+"):gmatch("([^+]*)%+") do fields[#fields + 1] = f end
      if #fields < 3 or fields[1] == "" then
        error("velocloud-bridge: a VELOCLOUD_CREDENTIALS block is not host+user+password", 0)
      end
      out[#out + 1] = { host = fields[1]:match("^%s*(.-)%s*$"), username = fields[2], password = fields[3] }
    end
  end
  if #out == 0 then error("velocloud-bridge: VELOCLOUD_CREDENTIALS names no host", 0) end
  return out
end

local accounts = parse_credentials(config.credentials)
for _, a in ipairs(accounts) do log.secret(a.password) end

-- The session table (§4.1): one entry per configured host, in order.
local sessions, order = {}, {}
for _, a in ipairs(accounts) do
  if not sessions[a.host] then
    order[#order + 1] = a.host
    sessions[a.host] = { host = a.host, account = a, headers = {} }
  end
end

local function base_url(host)
  return (config.url_template:gsub("{host}", function() return host end))
end

---------------------------------------------------------------------------
-- Login and re-login

-- The session cookie out of every Set-Cookie header (joined with ", " by
-- ae.http): `velocloud.session=<value>` up to the next `;` (§9 item 5).
local function session_cookie(set_cookie)
  if type(set_cookie) ~= "string" then return nil end
  local value = set_cookie:match("velocloud%.session=([^;,%s]+)")
  return value and ("velocloud.session=" .. value)
end

local function login(entry)
  local host, a = entry.host, entry.account
  local res, err = http.request {
    method = "POST", url = base_url(host) .. "/portal/rest/login/operatorLogin",
    headers = { ["Content-Type"] = "application/json" }, json = { username = a.username, password = a.password },
    follow = false, verify = config.verify_ssl, timeout = config.timeout,
  }
  local cookie
  if not res then
    log.error("Got an error trying to login to %s: %s", host, tostring(err))
  elseif res.status == 302 then
    log.error("Got an error trying to login to %s: 302 (bad credentials)", host)
  elseif res.status < 200 or res.status > 299 then
    log.error("Got an error trying to login to %s: status %d", host, res.status)
  else
    cookie = session_cookie(res.headers["set-cookie"])
    if not cookie then log.error("Got an error trying to login to %s: no velocloud.session cookie", host) end
  end
  if not cookie then
    logins:inc({ host = host, result = "failed" })
    return {}
  end
  log.secret(cookie:sub(#"velocloud.session=" + 1))
  logins:inc({ host = host, result = "ok" })
  log.info("logged in to %s", host)
  return {
    ["Cookie"] = cookie,
    ["Content-Type"] = "application/json-patch+json",
    ["Cache-control"] = "no-cache, no-store, no-transform, max-age=0, only-if-cached",
  }
end

local relogin

-- §9 item 6: a failed login is retried with back-off (30 s -> 5 min).
local function schedule_retry(entry)
  entry.backoff = math.min(config.login_retry_max, entry.backoff and entry.backoff * 2 or config.login_retry_min)
  entry.retry_job = timer.after(entry.backoff, function()
    entry.retry_job = nil
    relogin(entry.host, "retry after failed login")
  end, { name = "_velocloud_login_retry_" .. entry.host })
end

local function login_entry(entry)
  entry.headers = login(entry)
  if next(entry.headers) then
    entry.backoff = nil
    if entry.retry_job then
      entry.retry_job:cancel()
      entry.retry_job = nil
    end
  elseif not entry.retry_job then
    schedule_retry(entry)
  end
end

-- relogin(host, why): the re-login job of §4.2, run at once in its own task;
-- de-duplicated per host while one is pending or running.
relogin = function(host, why)
  local entry = sessions[host]
  if not entry then
    log.warning("re-login requested for %s, which is not configured: nothing to do", host)
    return false
  end
  if entry.relogin_pending then
    log.info("re-login of %s already scheduled (%s)", host, why)
    return false
  end
  entry.relogin_pending = true
  relogins:inc({ host = host })
  log.info("scheduling re-login of %s: %s", host, why)
  task.spawn(function()
    task.name(nil, "_relogin_client" .. host)
    entry.headers = {}
    local ok, err = pcall(login_entry, entry)
    entry.relogin_pending = false
    if not ok then log.error("re-login of %s failed: %s", host, tostring(err)) end
  end)
  return true
end

---------------------------------------------------------------------------
-- VCO calls and the status mapping of §4.3

local function is_internal(status) return status >= 500 and status <= 512 end
local function is_2xx(status) return status >= 200 and status <= 299 end

local function expired(host)
  return { body = "Auth token expired for host " .. host, status = 401 }
end

-- post(host, method, body) -> res | nil, err
local function post(host, method, body)
  local headers = sessions[host].headers
  if next(headers) == nil then headers = { ["Content-Type"] = "application/json" } end -- no session: no cookie
  return http.request {
    method = "POST", url = base_url(host) .. "/portal/rest/" .. method, headers = headers,
    body = json.encode(body), follow = false, verify = config.verify_ssl, timeout = config.timeout,
  }
end

local function decoded(res)
  local v = res:json()
  if v == nil then return nil end
  return v
end

local function failed(host, method, kind, detail)
  vco_errors:inc({ host = host, kind = kind })
  log.error("VeloCloud %s %s: %s", host, method, detail)
end

-- The §4.3 result of a VCO answer once session problems are ruled out: the
-- decoded body (v, nil when not JSON) with its status.
local function result_of(host, method, res, v)
  if v == nil then
    if is_2xx(res.status) then
      failed(host, method, "bad_body", "2xx body is not JSON")
      return { body = "Velocloud answered " .. method .. " with a body that is not JSON", status = 500 }
    end
    failed(host, method, "status", "status " .. res.status)
    return { body = res.body, status = res.status }
  end
  if not is_2xx(res.status) then failed(host, method, "status", "status " .. res.status) end
  return { body = v, status = res.status }
end

-- relay_call: getEnterpriseEdgeLinkStatus / getAggregateEdgeLinkMetrics /
-- getEnterpriseEdges -> {body =, status =}; body decoded on 2xx. fast(res),
-- when given, sees a 2xx answer first (session problems ruled out) and may
-- return the result itself, from the body text; nil: decoded as usual.
local function relay_call(host, method, body, fast)
  if not sessions[host] then
    relogin(host, "request for an unconfigured host")
    return { body = "Cannot find a client to connect to host " .. host, status = 404 }
  end
  local res, err = post(host, method, body)
  if not res then
    failed(host, method, "transport", err)
    return { body = TEXT.connect, status = 500 }
  end
  if is_internal(res.status) then
    failed(host, method, "internal", "status " .. res.status)
    return { body = TEXT.internal, status = 500 }
  end
  if res.headers.expires == "0" then
    relogin(host, method .. " answered Expires: 0")
    return expired(host)
  end
  if fast and is_2xx(res.status) then
    local result = fast(res)
    if result then return result end
  end
  local v = decoded(res)
  return result_of(host, method, res, v)
end

local function token_error(v)
  return type(v) == "table" and type(v.error) == "table" and type(v.error.message) == "string"
    and v.error.message:find("tokenError", 1, true) ~= nil
end

-- rpc_call: getEnterpriseEvents / getAggregates (tokenError in the body).
local function rpc_call(host, method, body)
  local res, err = post(host, method, body)
  if not res then
    failed(host, method, "transport", err)
    return { body = tostring(err), status = 500 }
  end
  if is_internal(res.status) then
    failed(host, method, "internal", "status " .. res.status)
    return { body = TEXT.internal, status = 500 }
  end
  local v = decoded(res)
  if res.headers.expires == "0" or (is_2xx(res.status) and token_error(v)) then
    relogin(host, method .. " answered an expired session")
    return expired(host)
  end
  return result_of(host, method, res, v)
end

---------------------------------------------------------------------------
-- Handlers

local NULL = json.null

local function present(v) return v ~= nil and v ~= NULL end

local function has_body(req) return type(req.body) == "table" end

-- 1. alert.request.event.edge
local EVENTS_FIELDS = 'Must include "edge", "start_date", "end_date" in request'

local function events(req)
  if not has_body(req) then return { status = 400, body = 'Must include "body" in request' } end
  local b = req.body
  local edge = b.edge
  if type(edge) ~= "table" or type(edge.host) ~= "string" or not present(edge.enterprise_id)
    or not present(edge.edge_id) or not present(b.start_date) or not present(b.end_date) then
    return { status = 400, body = EVENTS_FIELDS }
  end
  if b.filter ~= nil and b.filter ~= NULL and type(b.filter) ~= "table" then
    return { status = 400, body = '"filter" must be a list of event names' }
  end
  local host = edge.host
  if not sessions[host] then
    relogin(host, "request for an unconfigured host")
    return { status = 404, body = "Cannot find a client to connect to " .. host }
  end
  local limit = b.limit
  if limit == nil then limit = NULL end
  local result = rpc_call(host, "event/getEnterpriseEvents", {
    enterpriseId = edge.enterprise_id, interval = { start = b.start_date, ["end"] = b.end_date },
    filter = { limit = limit }, edgeId = json.array({ edge.edge_id }),
  })
  if not is_2xx(result.status) then return result end
  local data = type(result.body) == "table" and result.body.data
  if type(data) ~= "table" then
    failed(host, "event/getEnterpriseEvents", "bad_body", "no data list")
    return { status = 500, body = "Velocloud answered getEnterpriseEvents without a data list" }
  end
  if b.filter == nil or b.filter == NULL then return { status = 200, body = json.array(data) } end
  local wanted = {}
  for _, name in ipairs(b.filter) do wanted[name] = true end
  local out = json.array({})
  for _, ev in ipairs(data) do
    if type(ev) == "table" and wanted[ev.event] then out[#out + 1] = ev end
  end
  return { status = 200, body = out }
end

-- 2. get.links.with.edge.info
-- The list (18 MB at 50,000 edges) is not decoded: "host" is spliced into
-- every record of the VCO text and the reply carries it as json.raw. Any
-- other shape (not JSON, not a list of objects, a record that already has
-- "host") takes the decoding path, which gives the documented errors.
local function links(req)
  if not has_body(req) then return { status = 400, body = 'Must include "body" in the request' } end
  local host = req.body.host
  if type(host) ~= "string" then return { status = 400, body = 'Must include "host" in the body of the request' } end
  local spliced = false
  local result = relay_call(host, "monitoring/getEnterpriseEdgeLinkStatus", json.object({}), function(res)
    local text, err = json.with_member(res.body, "host", host)
    if not text then
      log.debug("links of %s not spliced (%s): decoding them", host, err)
      return nil
    end
    spliced = true
    return { status = res.status, body = json.raw(text) }
  end)
  if spliced or not is_2xx(result.status) then return result end
  if type(result.body) ~= "table" then
    return { status = 500, body = "Velocloud answered getEnterpriseEdgeLinkStatus without a list" }
  end
  for _, rec in ipairs(result.body) do
    if type(rec) ~= "table" then
      return { status = 500, body = "Velocloud answered getEnterpriseEdgeLinkStatus with a non-object record" }
    end
    rec.host = host
  end
  return result
end

-- 3. get.links.metric.info
local METRICS_FIELDS = 'Must include "host" and "interval" in the body of the request'

local function metrics_info(req)
  if not has_body(req) then return { status = 400, body = 'Must include "body" in the request' } end
  local host, interval = req.body.host, req.body.interval
  if type(host) ~= "string" or not present(interval) then return { status = 400, body = METRICS_FIELDS } end
  local result = relay_call(host, "monitoring/getAggregateEdgeLinkMetrics", { interval = interval })
  if not is_2xx(result.status) then return result end
  if type(result.body) ~= "table" then
    return { status = 500, body = "Velocloud answered getAggregateEdgeLinkMetrics without a list" }
  end
  for _, rec in ipairs(result.body) do
    if type(rec) ~= "table" or type(rec.link) ~= "table" then
      return { status = 500, body = "Velocloud answered getAggregateEdgeLinkMetrics with a record without link" }
    end
    rec.link.host = host
  end
  return result
end

-- 4. request.enterprises.names
local function names(req)
  if not has_body(req) then return { status = 400, body = 'Must include "body" in request' } end
  local filter = req.body.filter
  if filter == nil or filter == NULL then filter = {} end
  if type(filter) ~= "table" then return { status = 400, body = '"filter" must be a list of enterprise names' } end
  local all, any_failed = {}, false
  for _, host in ipairs(order) do
    local result = rpc_call(host, "monitoring/getAggregates", json.object({}))
    local ents = is_2xx(result.status) and type(result.body) == "table" and result.body.enterprises
    if type(ents) == "table" then
      for _, e in ipairs(ents) do
        if type(e) == "table" and type(e.name) == "string" then all[#all + 1] = e.name end
      end
    else
      any_failed = true
      log.error("getAggregates of %s failed: %s %s", host, tostring(result.status), tostring(result.body))
    end
  end
  if any_failed then
    local out = json.array({})
    for _, name in ipairs(all) do out[#out + 1] = { enterprise_name = name } end
    return { status = 500, body = out }
  end
  if #filter == 0 then return { status = 200, body = json.array(all) } end
  local count = {}
  for _, f in ipairs(filter) do count[f] = (count[f] or 0) + 1 end
  local out = json.array({})
  for _, name in ipairs(all) do
    for _ = 1, count[name] or 0 do out[#out + 1] = name end
  end
  return { status = 200, body = out }
end

-- 5. request.enterprises.edges
local function edges(req)
  if not has_body(req) then return { status = 400, body = 'Must include "body" in request' } end
  local host, id = req.body.host, req.body.enterprise_id
  if type(host) ~= "string" or not present(id) then
    return { status = 400, body = 'Must include "host" and "enterprise_id" in request "body"' }
  end
  return relay_call(host, "enterprise/getEnterpriseEdges", { enterpriseId = id, with = json.array({ "links" }) })
end

---------------------------------------------------------------------------
-- Start: log in to every host in order, then subscribe.

for _, host in ipairs(order) do login_entry(sessions[host]) end

local SUBJECTS = {
  ["alert.request.event.edge"] = events,
  ["get.links.with.edge.info"] = links,
  ["get.links.metric.info"] = metrics_info,
  ["request.enterprises.names"] = names,
  ["request.enterprises.edges"] = edges,
}
for _, subject in ipairs({ "alert.request.event.edge", "get.links.with.edge.info", "get.links.metric.info",
  "request.enterprises.names", "request.enterprises.edges" }) do
  assert(nats.serve(subject, SUBJECTS[subject], { queue = config.queue }))
end
log.info("velocloud-bridge serving 5 subjects for %d host(s): %s", #order, table.concat(order, ", "))
