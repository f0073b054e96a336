--- ae.http: HTTP client (libcurl multi on the engine loop).
--   request{method=, url=, query=, headers=, body= | json= | form=, timeout=, connect_timeout=,
--           verify=, ca=, cert=, key=, auth={user=, password=}, follow=, max_redirects=}
--       -> res | nil, err
--   get/post/put/patch/delete/head(url, opts)
--   client{base_url=, cookies=, headers=, timeout=, max_in_flight=, verify=, ...} -> client
-- res = {status, headers (lower-cased names), body, url, time}; res:json() -> value | nil, err
-- Server-side (ae.httpd) is another module.
local core = require "ae.core.http"

local M = {}

M.curl_version = core.curl_version

local Response = {}
Response.__index = Response
core.response_metatable(Response) -- set by ae.core.http on every response

--- res:json() -> decoded body | nil, err
function Response:json()
  local json = require "ae.json"
  local ok, value, err = pcall(json.decode, self.body)
  if not ok then return nil, "ae.http: response body is not JSON: " .. tostring(value) end
  if value == nil and err then return nil, "ae.http: response body is not JSON: " .. tostring(err) end
  return value
end

--- res:ok() -> true for a 2xx status
function Response:ok()
  return self.status >= 200 and self.status < 300
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" and type(k) ~= "number" then
      error("ae.http: query/form keys must be strings", 4)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local function scalar(v, what)
  local tv = type(v)
  if tv == "string" then return v end
  if tv == "number" then
    if math.type(v) == "float" and v == math.floor(v) and v >= -2 ^ 53 and v <= 2 ^ 53 then
      return string.format("%d", v)
    end
    return tostring(v)
  end
  if tv == "boolean" then return tostring(v) end
  error("ae.http: " .. what .. " values must be strings, numbers or booleans (got " .. tv .. ")", 5)
end

--- encode(t, plus) -> "k=v&k2=v2" (keys sorted; list values repeat the key)
local function encode_pairs(t, plus, what)
  local out = {}
  for _, k in ipairs(sorted_keys(t)) do
    local v = t[k]
    local ek = core.escape(tostring(k), plus)
    if type(v) == "table" then
      for _, item in ipairs(v) do out[#out + 1] = ek .. "=" .. core.escape(scalar(item, what), plus) end
    else
      out[#out + 1] = ek .. "=" .. core.escape(scalar(v, what), plus)
    end
  end
  return table.concat(out, "&")
end

--- http.encode_query(t) -> "a=1&b=x%20y"; http.encode_form(t) -> "a=1&b=x+y"
function M.encode_query(t) return encode_pairs(t, false, "query") end
function M.encode_form(t) return encode_pairs(t, true, "form") end
M.escape = function(s) return core.escape(s, false) end

local function has_header(headers, lname)
  for k in pairs(headers) do
    if string.lower(k) == lname then return true end
  end
  return false
end

local passthrough = {
  "timeout", "connect_timeout", "verify", "ca", "cert", "key", "key_password", "follow", "max_redirects",
}

-- Build the table ae.core.http.request takes from the public options.
local function prepare(opts, defaults)
  if type(opts) ~= "table" then error("ae.http.request: options must be a table", 3) end
  defaults = defaults or {}
  local url = opts.url
  if type(url) ~= "string" or url == "" then error("ae.http.request: url must be a non-empty string", 3) end
  if defaults.base_url and not url:find("^%a[%w+.-]*://") then
    local base = defaults.base_url:gsub("/+$", "")
    url = base .. (url:sub(1, 1) == "/" and url or "/" .. url)
  end
  if opts.query ~= nil then
    if type(opts.query) ~= "table" then error("ae.http.request: query must be a table", 3) end
    local q = M.encode_query(opts.query)
    if q ~= "" then
      local frag = ""
      local hash = url:find("#", 1, true)
      if hash then url, frag = url:sub(1, hash - 1), url:sub(hash) end
      url = url .. (url:find("?", 1, true) and "&" or "?") .. q .. frag
    end
  end
  local method = opts.method or "GET"
  if type(method) ~= "string" then error("ae.http.request: method must be a string", 3) end
  method = string.upper(method)

  local headers = {}
  if defaults.headers then
    for k, v in pairs(defaults.headers) do headers[k] = v end
  end
  if opts.headers ~= nil then
    if type(opts.headers) ~= "table" then error("ae.http.request: headers must be a table", 3) end
    -- a request header replaces a client default of the same name (any case)
    for k in pairs(opts.headers) do
      for dk in pairs(headers) do
        if string.lower(dk) == string.lower(k) then headers[dk] = nil end
      end
    end
    for k, v in pairs(opts.headers) do headers[k] = v end
  end

  local body = opts.body
  local nbodies = (body ~= nil and 1 or 0) + (opts.json ~= nil and 1 or 0) + (opts.form ~= nil and 1 or 0)
  if nbodies > 1 then error("ae.http.request: give only one of body, json, form", 3) end
  if body ~= nil and type(body) ~= "string" then error("ae.http.request: body must be a string", 3) end
  if opts.json ~= nil then
    local json = require "ae.json"
    local encoded, jerr = json.encode(opts.json)
    if not encoded then error("ae.http.request: cannot encode json: " .. tostring(jerr), 3) end
    body = encoded
    if not has_header(headers, "content-type") then headers["Content-Type"] = "application/json" end
  elseif opts.form ~= nil then
    if type(opts.form) ~= "table" then error("ae.http.request: form must be a table", 3) end
    body = M.encode_form(opts.form)
    if not has_header(headers, "content-type") then
      headers["Content-Type"] = "application/x-www-form-urlencoded"
    end
  end
  if method ~= "GET" and method ~= "HEAD" and body == nil and method ~= "DELETE" then body = "" end

  local lines = {}
  for k, v in pairs(headers) do
    if type(k) ~= "string" or k:find("[%c:]") or k == "" then
      error("ae.http.request: bad header name " .. string.format("%q", tostring(k)), 3)
    end
    v = scalar(v, "header")
    if v:find("[\r\n]") then error("ae.http.request: header '" .. k .. "' contains a line break", 3) end
    -- an empty value would make curl drop the header: send it empty on purpose
    lines[#lines + 1] = v == "" and (k .. ";") or (k .. ": " .. v)
  end

  -- a raw body without a Content-Type goes out without one (not curl's form default)
  if body ~= nil and not has_header(headers, "content-type") then lines[#lines + 1] = "Content-Type:" end

  local req = { method = method, url = url, headers = lines, body = body }
  for _, k in ipairs(passthrough) do
    local v = opts[k]
    if v == nil then v = defaults[k] end
    req[k] = v
  end
  local auth = opts.auth
  if auth == nil then auth = defaults.auth end
  if auth ~= nil then
    if type(auth) ~= "table" then error("ae.http.request: auth must be a table {user=, password=}", 3) end
    req.user, req.password = auth.user, auth.password
    if type(req.user) ~= "string" or (req.password ~= nil and type(req.password) ~= "string") then
      error("ae.http.request: auth.user and auth.password must be strings", 3)
    end
    if req.password == nil then req.password = "" end
  end
  if req.timeout ~= nil and (type(req.timeout) ~= "number" or req.timeout <= 0) then
    error("ae.http.request: timeout must be a positive number", 3)
  end
  return req
end

-- The request of a shortcut without options on a client without default headers
-- or auth: no option table to merge, no header lines to build. opts: the
-- client's default options for ae.core.http (nil: none).
local CT_NONE = { "Content-Type:" } -- a body without a Content-Type goes out without one
local function quick(handle, opts, method, url)
  if method == "GET" or method == "HEAD" or method == "DELETE" then
    return handle:request(method, url, nil, nil, opts)
  end
  return handle:request(method, url, CT_NONE, "", opts)
end

local function send(handle, req)
  return handle:request(req.method, req.url, req.headers, req.body, req)
end

local default_client

local function default()
  if not default_client then default_client = core.client { cookies = false, max_in_flight = 256 } end
  return default_client
end

--- request(opts) -> res | nil, err
function M.request(opts)
  return send(default(), prepare(opts))
end

local function shortcut(method)
  return function(url, opts)
    if opts == nil and type(url) == "string" and url ~= "" then return quick(default(), nil, method, url) end
    local o = {}
    if opts ~= nil then
      if type(opts) ~= "table" then error("ae.http." .. string.lower(method) .. ": opts must be a table", 2) end
      for k, v in pairs(opts) do o[k] = v end
    end
    o.url, o.method = url, method
    return M.request(o)
  end
end

M.get = shortcut("GET")
M.post = shortcut("POST")
M.put = shortcut("PUT")
M.patch = shortcut("PATCH")
M.delete = shortcut("DELETE")
M.head = shortcut("HEAD")

--------------------------------------------------------------------- clients

local Client = {}
Client.__index = Client

local client_keys = {
  base_url = "string", cookies = "boolean", headers = "table", timeout = "number", connect_timeout = "number",
  max_in_flight = "number", verify = "boolean", ca = "string", cert = "string", key = "string",
  key_password = "string", auth = "table", follow = "boolean", max_redirects = "number",
}

--- client(opts) -> client with its own cookie jar and in-flight cap
function M.client(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("ae.http.client: options must be a table", 2) end
  local defaults = {}
  for k, v in pairs(opts) do
    local want = client_keys[k]
    if not want then error("ae.http.client: unknown option '" .. tostring(k) .. "'", 2) end
    if type(v) ~= want then error("ae.http.client: " .. k .. " must be a " .. want, 2) end
    defaults[k] = v
  end
  local ok, handle = pcall(core.client, { cookies = opts.cookies, max_in_flight = opts.max_in_flight })
  if not ok then error(handle, 2) end
  -- what the quick path of the shortcuts needs: the options passed to
  -- ae.core.http as they are (nil when none), the base URL without its
  -- trailing slashes; no quick path with default headers or auth (tables
  -- read at each request) or a bad default timeout (an error at each request)
  local core_opts
  for _, k in ipairs(passthrough) do
    if defaults[k] ~= nil then
      core_opts = core_opts or {}
      core_opts[k] = defaults[k]
    end
  end
  local fast = defaults.headers == nil and defaults.auth == nil and (defaults.timeout == nil or defaults.timeout > 0)
  local base = defaults.base_url and (defaults.base_url:gsub("/+$", ""))
  return setmetatable({ handle = handle, defaults = defaults, fast = fast, core_opts = core_opts, base = base }, Client)
end

--- c:request(opts) -> res | nil, err (url may be a path under base_url)
function Client:request(opts)
  return send(self.handle, prepare(opts, self.defaults))
end

local find, byte = string.find, string.byte

local function client_shortcut(method)
  return function(self, path, opts)
    if opts == nil and self.fast and type(path) == "string" and path ~= "" then
      local base = self.base
      if base and not find(path, "^%a[%w+.-]*://") then
        path = base .. (byte(path, 1) == 47 and path or "/" .. path)
      end
      return quick(self.handle, self.core_opts, method, path)
    end
    local o = {}
    if opts ~= nil then
      if type(opts) ~= "table" then error("ae.http client:" .. string.lower(method) .. ": opts must be a table", 2) end
      for k, v in pairs(opts) do o[k] = v end
    end
    o.url, o.method = path, method
    return self:request(o)
  end
end

Client.get = client_shortcut("GET")
Client.post = client_shortcut("POST")
Client.put = client_shortcut("PUT")
Client.patch = client_shortcut("PATCH")
Client.delete = client_shortcut("DELETE")
Client.head = client_shortcut("HEAD")

--- c:cookies() -> list of {name, value, domain, path, secure, http_only, expires}
function Client:cookies() return self.handle:cookies() end

--- c:clear_cookies()
function Client:clear_cookies() self.handle:clear_cookies() end

--- c:stats() -> {in_flight, queued, max_in_flight}
function Client:stats() return self.handle:stats() end

return M
