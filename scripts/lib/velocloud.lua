--- lib.velocloud: the callers' client of velocloud-bridge (velocloud-bridge.md
-- §3, platform.md §2.4-2.5). Every function builds the standard envelope,
-- sends it through lib.rpc with the subject's timeout of platform.md §2.8 and
-- returns the reply {request_id, status, body} (the 503 substitute when the
-- request failed). It never raises for bus or vendor failures; bad arguments
-- (a missing host...) raise, as they are the caller's bug.
--
--   local velocloud = require "lib.velocloud"
--   local reply = velocloud.links_with_edge_info({host = "mettel.velocloud.net"}, {timeout = 300})
--   if rpc.ok(reply) then for _, link in ipairs(reply.body) do ... end end
--
-- The last argument of each function, `opts`, is optional:
--   doing   = text for the Slack error messages ("getting links with edge info from <host>" by default)
--   timeout = seconds per attempt (default: the subject's timeout below)
--   retry   = ae.nats retry policy (default: lib.rpc's), notify = false to skip Slack messages
local rpc = require "lib.rpc"
local json = require "ae.json"
local time = require "ae.time"

local M = {}

--- Subjects and default timeouts (seconds), platform.md §2.8.
M.SUBJECTS = {
  events = "alert.request.event.edge",
  links = "get.links.with.edge.info",
  metrics = "get.links.metric.info",
  names = "request.enterprises.names",
  edges = "request.enterprises.edges",
}
M.TIMEOUTS = { events = 180, links = 30, metrics = 30, names = 20, edges = 90 }

local function check(cond, fn, what)
  if not cond then error("lib.velocloud." .. fn .. ": " .. what, 3) end
end

local function call(kind, body, opts, doing)
  opts = opts or {}
  check(type(opts) == "table", "call", "opts must be a table")
  return rpc.call(M.SUBJECTS[kind], rpc.envelope(body), {
    timeout = opts.timeout or M.TIMEOUTS[kind], doing = opts.doing or doing, retry = opts.retry,
    notify = opts.notify, decode = opts.decode,
  })
end

-- A date for the bridge: strings pass through; numbers (epoch seconds) become
-- `fmt` text in UTC.
local function date_text(v, fn, name, python)
  if type(v) == "string" then return v end
  check(type(v) == "number", fn, name .. " must be a date string or epoch seconds")
  if python then return time.iso(v, nil, { sep = " ", z = false, precision = "us" }) end
  return time.iso(v, nil, { precision = "ms" })
end

--- edge_events{host=, enterprise_id=, edge_id=, start=, ["end"]=, filter=, limit=} [, opts]
-- alert.request.event.edge (timeout 180 s). `start`/`end`: strings sent
-- verbatim, or epoch seconds (sent as Python str(datetime) in UTC, as the
-- original callers do). `filter`: list of event names (nil = every event).
function M.edge_events(args, opts)
  check(type(args) == "table", "edge_events", "expects a table of arguments")
  check(type(args.host) == "string", "edge_events", "host is required")
  check(args.enterprise_id ~= nil and args.edge_id ~= nil, "edge_events", "enterprise_id and edge_id are required")
  check(args.start ~= nil and args["end"] ~= nil, "edge_events", "start and end are required")
  check(args.filter == nil or type(args.filter) == "table", "edge_events", "filter must be a list")
  local body = {
    edge = { host = args.host, enterprise_id = args.enterprise_id, edge_id = args.edge_id },
    start_date = date_text(args.start, "edge_events", "start", true),
    end_date = date_text(args["end"], "edge_events", "end", true),
    limit = args.limit,
  }
  if args.filter then body.filter = json.array(args.filter) end
  return call("events", body, opts,
    string.format("getting events of edge %s/%s/%s", args.host, tostring(args.enterprise_id), tostring(args.edge_id)))
end

--- links_with_edge_info{host=} [, opts]: get.links.with.edge.info (timeout 30 s;
-- customer-cache and the reports use 300).
function M.links_with_edge_info(args, opts)
  if type(args) == "string" then args = { host = args } end
  check(type(args) == "table" and type(args.host) == "string", "links_with_edge_info", "host is required")
  return call("links", { host = args.host }, opts, "getting links with edge info from " .. args.host)
end

--- links_metric_info{host=, interval = {start=, ["end"]=}} [, opts]:
-- get.links.metric.info (timeout 30 s). Interval bounds: strings verbatim or
-- epoch seconds (sent as ISO-8601 with milliseconds, UTC).
function M.links_metric_info(args, opts)
  check(type(args) == "table" and type(args.host) == "string", "links_metric_info", "host is required")
  local iv = args.interval
  check(type(iv) == "table" and iv.start ~= nil and iv["end"] ~= nil, "links_metric_info",
    "interval = {start =, end =} is required")
  local interval = {
    start = date_text(iv.start, "links_metric_info", "interval.start"),
    ["end"] = date_text(iv["end"], "links_metric_info", "interval.end"),
  }
  return call("metrics", { host = args.host, interval = interval }, opts,
    "getting links metric info from " .. args.host)
end

--- enterprise_names{filter = {...}} [, opts]: request.enterprises.names
-- (timeout 20 s); `filter` = list of exact names, empty or nil = all.
function M.enterprise_names(args, opts)
  args = args or {}
  check(type(args) == "table", "enterprise_names", "expects a table of arguments")
  local filter = args.filter or {}
  check(type(filter) == "table", "enterprise_names", "filter must be a list")
  return call("names", { filter = json.array(filter) }, opts, "getting enterprise names")
end

--- enterprise_edges{host=, enterprise_id=} [, opts]: request.enterprises.edges
-- (timeout 90 s).
function M.enterprise_edges(args, opts)
  check(type(args) == "table" and type(args.host) == "string", "enterprise_edges", "host is required")
  check(args.enterprise_id ~= nil, "enterprise_edges", "enterprise_id is required")
  return call("edges", { host = args.host, enterprise_id = args.enterprise_id }, opts,
    string.format("getting edges of enterprise %s from %s", tostring(args.enterprise_id), args.host))
end

return M
