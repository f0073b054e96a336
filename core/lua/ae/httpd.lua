--- ae.httpd: the engine's HTTP server (libevent evhttp, C half ae.core.httpd).
--   route(method, pattern, fn)          on the engine's main server (started on first use)
--   listen(addr) -> server              an extra listener: server:route(...), server.port, server:close()
--   address() -> "host:port"            of the main server
--   start([addr]) -> address            start the main server now (e.g. "127.0.0.1:0" in specs)
--   cors{origins=, methods=, headers=, max_age=, credentials=}
--   unroute(method, pattern), routes()
-- A handler gets req = {method, path, uri, params, query, headers, body, remote} (req:json())
-- and returns a string (200 text/plain), nil (204) or {status=, headers=, body= | json=}.
-- Each request runs in a new task of the unit that added the route.
local core = require "ae.core.httpd"
local ctask = require "ae.core.task"

local M = {}

local json_mod
local function json()
  json_mod = json_mod or require "ae.json"
  return json_mod
end

local Request = {}
Request.__index = Request

--- req:json() -> decoded body | nil, err
function Request:json()
  if self.body == nil or self.body == "" then return nil, "ae.httpd: request has no body" end
  local ok, value, err = pcall(json().decode, self.body)
  if not ok then return nil, "ae.httpd: request body is not JSON: " .. tostring(value) end
  if value == nil and err then return nil, "ae.httpd: request body is not JSON: " .. tostring(err) end
  return value
end

local function has_content_type(headers)
  for k in pairs(headers) do
    if type(k) == "string" and k:lower() == "content-type" then return true end
  end
  return false
end

-- Turn what a handler returned into status, headers, body; raises on a
-- malformed response (answered 500 by the dispatcher).
local function normalize(res)
  local t = type(res)
  if res == nil then return 204, {}, "" end
  if t == "string" then return 200, { ["Content-Type"] = "text/plain; charset=utf-8" }, res end
  if t ~= "table" then error("handler returned a " .. t .. " (want a string, nil or a response table)", 0) end
  local status = res.status or 200
  if math.type(status) ~= "integer" or status < 100 or status > 999 then
    error("response status must be an integer 100..999, got " .. tostring(res.status), 0)
  end
  local headers = {}
  if res.headers ~= nil then
    if type(res.headers) ~= "table" then error("response headers must be a table", 0) end
    for k, v in pairs(res.headers) do headers[k] = v end
  end
  local body = res.body
  if res.json ~= nil then
    if body ~= nil then error("response has both body and json", 0) end
    body = json().encode(res.json)
    if not has_content_type(headers) then headers["Content-Type"] = "application/json" end
  elseif body == nil then
    body = ""
  elseif type(body) ~= "string" then
    error("response body must be a string (use json = ... for tables)", 0)
  elseif not has_content_type(headers) then
    headers["Content-Type"] = "text/plain; charset=utf-8"
  end
  return status, headers, body
end

local function json_error(msg)
  -- built by hand: an error response must not depend on the JSON encoder
  local s = tostring(msg):gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" elseif c == "\n" then return "\\n" end
    return string.format("\\u%04x", c:byte())
  end)
  return '{"error":"' .. s .. '"}'
end

local function fail(handle, req, where, err)
  local msg = tostring(err)
  ctask.report_error(string.format("http %s %s: %s", req.method, req.path, debug.traceback(msg, where)))
  core.respond(handle, 500, { ["Content-Type"] = "application/json" }, json_error((msg:gsub("^.-:%d+: ", ""))))
end

-- Runs in the request's task (spawned from C).
local function dispatch(handler, req, handle)
  setmetatable(req, Request)
  local tb
  local ok, res = xpcall(handler, function(e)
    tb = debug.traceback(tostring(e), 2)
    return e
  end, req)
  if not ok then
    ctask.report_error(string.format("http %s %s: %s", req.method, req.path, tb))
    local msg = type(res) == "string" and res:gsub("^.-:%d+: ", "") or tostring(res)
    core.respond(handle, 500, { ["Content-Type"] = "application/json" }, json_error(msg))
    return
  end
  local nok, status, headers, body = pcall(normalize, res)
  if not nok then return fail(handle, req, 1, "invalid response: " .. tostring(status)) end
  local sok, err = pcall(core.respond, handle, status, headers, body)
  if not sok then fail(handle, req, 1, err) end
end

core.set_dispatcher(dispatch)

local function check_args(method, pattern, fn)
  if type(method) ~= "string" then error("ae.httpd.route: method must be a string", 3) end
  if type(pattern) ~= "string" then error("ae.httpd.route: pattern must be a string", 3) end
  if type(fn) ~= "function" then error("ae.httpd.route: handler must be a function", 3) end
end

--- route(method, pattern, fn): method "GET", "POST", ... or "*"; pattern with
-- ":name" segments and a final "*name" catch-all.
function M.route(method, pattern, fn)
  check_args(method, pattern, fn)
  core.route(nil, method, pattern, fn)
end

--- unroute(method, pattern) -> true if this unit's route was removed
function M.unroute(method, pattern)
  return core.unroute(nil, method, pattern)
end

--- address() -> "host:port" of the main server (0.0.0.0 shown as 127.0.0.1)
function M.address()
  return (core.address())
end

--- port() -> port of the main server
function M.port()
  local _, port = core.address()
  return port
end

--- start([addr]) -> address | nil, err. Starts the main server on addr (default
-- AE_HTTP_LISTEN, config http.listen, else 0.0.0.0:5000); a no-op when running.
function M.start(addr)
  local a, err = core.start(addr)
  return a, err
end

--- cors(opts | false) on the main server.
function M.cors(opts)
  if opts ~= false and type(opts) ~= "table" then error("ae.httpd.cors: give a table or false", 2) end
  core.cors(nil, opts)
end

--- routes() -> list of {method, pattern, unit} of the main server
function M.routes()
  return core.routes(nil)
end

local Server = {}
Server.__index = Server

function Server:route(method, pattern, fn)
  check_args(method, pattern, fn)
  core.route(self.handle, method, pattern, fn)
end

function Server:unroute(method, pattern)
  return core.unroute(self.handle, method, pattern)
end

function Server:cors(opts)
  if opts ~= false and type(opts) ~= "table" then error("ae.httpd.cors: give a table or false", 2) end
  core.cors(self.handle, opts)
end

function Server:routes()
  return core.routes(self.handle)
end

function Server:close()
  self.handle:close()
  self.closed = true
end

--- listen(addr) -> server | nil, err.  addr "host:port" (port 0: a free port).
function M.listen(addr)
  if type(addr) ~= "string" then error("ae.httpd.listen: address must be a string like '127.0.0.1:0'", 2) end
  local handle, port, address = core.listen(addr)
  if not handle then return nil, port end
  return setmetatable({ handle = handle, port = port, address = address, closed = false }, Server)
end

return M
