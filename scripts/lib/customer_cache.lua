--- lib.customer_cache: the caller side of `customer.cache.get` (customer-cache
-- spec §4, platform §2.4-2.5 and §2.8: timeout 60 s, the caller unit's retry
-- policy from lib.rpc).
--
--   local customer_cache = require "lib.customer_cache"
--   local reply = customer_cache.get{velo_filter = {["mettel.velocloud.net"] = {}},
--                                    last_contact_filter = "2021-03-08 14:05:12.345678"}
--   if customer_cache.ready(reply) then for _, e in ipairs(reply.body) do ... end end
--
-- Conventions of the consumers (service-outage-monitor, service-affecting-
-- monitor, tnba-monitor, tnba-feedback):
--   * transport failure -> Slack "An error occurred when requesting customer
--     cache -> <error>" and the substitute {body = null, status = 503};
--   * 202 ("Cache is still being built for host(s): ...") -> Slack the body
--     (unless notify_202 = false); the reply is returned unchanged;
--   * any other status -> returned unchanged, no Slack.
local nats = require "ae.nats"
local json = require "ae.json"
local time = require "ae.time"
local log = require "ae.log"
local rpc = require "lib.rpc"

local M = {}

M.SUBJECT = "customer.cache.get"
M.TIMEOUT = 60

-- {host = {ids}} with JSON marks, so {} and [] survive the wire
local function wire_filter(filter)
  local out = json.object {}
  for host, ids in pairs(filter) do
    if type(host) ~= "string" then error("lib.customer_cache.get: velo_filter keys must be host names", 3) end
    if type(ids) ~= "table" then error("lib.customer_cache.get: velo_filter[" .. host .. "] must be a list", 3) end
    local list = json.array {}
    for i, id in ipairs(ids) do list[i] = id end
    out[host] = list
  end
  return out
end

-- The original's text of a naive datetime: "YYYY-MM-DD HH:MM:SS.ffffff" (UTC)
local function naive_text(t)
  local whole = math.floor(t)
  local micro = math.floor((t - whole) * 1e6 + 0.5)
  if micro >= 1000000 then whole, micro = whole + 1, 0 end
  return time.format(whole, "%Y-%m-%d %H:%M:%S", "UTC") .. string.format(".%06d", micro)
end
M.naive_text = naive_text

--- request_body(opts) -> the `body` of a customer.cache.get request
-- opts.velo_filter (required): {host = {enterprise ids}}; {} = every host.
-- opts.last_contact_filter: a string (sent as is), epoch seconds (sent as the
-- original's naive UTC text), json.null (sent as null); absent = not sent.
function M.request_body(opts)
  if type(opts) ~= "table" or type(opts.velo_filter) ~= "table" then
    error("lib.customer_cache.get: velo_filter (a table host -> enterprise ids) is required", 3)
  end
  local body = { filter = wire_filter(opts.velo_filter) }
  local lc = opts.last_contact_filter
  if type(lc) == "number" then
    body.last_contact_filter = naive_text(lc)
  elseif lc ~= nil then
    if type(lc) ~= "string" and lc ~= json.null then
      error("lib.customer_cache.get: last_contact_filter must be a string, epoch seconds or json.null", 3)
    end
    body.last_contact_filter = lc
  end
  return body
end

--- get(opts) -> reply {request_id?, body, status}; never raises on I/O.
-- opts: velo_filter, last_contact_filter (see request_body), timeout (60),
-- retry (default: the unit's lib.rpc policy), notify_202 (default true),
-- notify (default true: Slack on transport failure), decode (replaces
-- json.decode for the reply, e.g. json.decode_each to stream the entries; see
-- ae.nats request).
function M.get(opts)
  local body = M.request_body(opts)
  local retry = opts.retry
  if retry == nil then retry = rpc.settings().retry end
  local reply, err = nats.request(M.SUBJECT, rpc.envelope(body),
    { timeout = opts.timeout or M.TIMEOUT, retry = retry, decode = opts.decode })
  if not reply then
    log.error("request to %s failed: %s", M.SUBJECT, tostring(err))
    if opts.notify ~= false and rpc.settings().notify_errors then
      rpc.slack("An error occurred when requesting customer cache -> " .. tostring(err))
    end
    return { body = json.null, status = 503 }
  end
  if reply.status == 202 then
    log.warning("customer cache not ready: %s", rpc.body_text(reply.body))
    if opts.notify_202 ~= false and rpc.settings().notify_errors then rpc.slack(rpc.body_text(reply.body)) end
  elseif not rpc.ok(reply) then
    log.warning("customer cache answered %s: %s", tostring(reply.status), rpc.body_text(reply.body))
  end
  return reply
end

--- ready(reply) -> true when the reply carries cache entries (status 200;
-- the consumers treat 202 as a failure although it is 2xx).
function M.ready(reply)
  return type(reply) == "table" and reply.status == 200 and type(reply.body) == "table"
end

return M
