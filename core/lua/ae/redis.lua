--- ae.redis: Redis client for units (Lua half of ae.core.redis).
--   local r = redis.connect("main")          -- named connection from the config / env
--   r:call("SET", "k", "v", "EX", 300)       --> "OK"
--   r:get("k")                               --> "v"   (any command name is a method)
--   r:pipeline(function(p) p:set("a", 1); p:get("a") end) --> {"OK", "1"}
-- Every command waits in the calling task. Redis error replies, timeouts and
-- connection failures raise "ae.redis: ..."; nil always means Redis nil.
-- See docs/api/redis.md.
local core = require "ae.core.redis"

local M = {}

--- redis.null: the nil elements of array replies and pipeline results.
M.null = core.null

local DEFAULT_TIMEOUT = 10
local DEFAULT_PORT = 6379

-- The original services' environment variables, per connection name.
M.env = {
  main = "REDIS_HOSTNAME",
  customer_cache = "REDIS_CUSTOMER_CACHE_HOSTNAME",
  tnba_feedback = "REDIS_TNBA_FEEDBACK_HOSTNAME",
}

local function url_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_port(s, spec)
  local port = tonumber(s)
  if not port or port ~= math.floor(port) or port < 1 or port > 65535 or not s:match("^%d+$") then
    return nil, "bad port '" .. s .. "' in '" .. spec .. "'"
  end
  return math.tointeger(port)
end

--- parse(spec) -> {host=, port=, db=, password=, user=} | nil, err
-- spec: "host", "host:port", "[ipv6]:port" or
-- "redis://[[user]:password@]host[:port][/db]".
function M.parse(spec)
  if type(spec) ~= "string" then return nil, "address must be a string, not a " .. type(spec) end
  local s = spec:match("^%s*(.-)%s*$")
  if s == "" then return nil, "empty address" end
  local out = { port = DEFAULT_PORT, db = 0 }
  local scheme, rest = s:match("^(%a[%w+.-]*)://(.*)$")
  if scheme then
    if scheme:lower() ~= "redis" then return nil, "unsupported scheme '" .. scheme .. "' in '" .. spec .. "'" end
    s = rest
    local userinfo, hostpart = s:match("^(.*)@([^@]*)$")
    if userinfo then
      s = hostpart
      local user, pass = userinfo:match("^([^:]*):(.*)$")
      if user then
        out.user = user ~= "" and url_decode(user) or nil
        out.password = pass ~= "" and url_decode(pass) or nil
      else
        -- redis://secret@host: a lone userinfo is the password (redis-py does the same)
        out.password = userinfo ~= "" and url_decode(userinfo) or nil
      end
    end
    local hostport, path = s:match("^([^/?]*)(.*)$")
    s = hostport
    path = path:gsub("%?.*$", "")
    if path ~= "" and path ~= "/" then
      local db = path:match("^/(%d+)$")
      if not db then return nil, "bad database '" .. path:sub(2) .. "' in '" .. spec .. "'" end
      out.db = math.tointeger(tonumber(db))
    end
  end
  local host, port
  if s:sub(1, 1) == "[" then
    host, port = s:match("^%[([^%]]+)%]:?(.*)$")
    if not host then return nil, "bad IPv6 address in '" .. spec .. "'" end
  elseif select(2, s:gsub(":", "")) > 1 then
    host, port = s, "" -- bare IPv6 without brackets: no port possible
  else
    host, port = s:match("^([^:]*):?(.*)$")
  end
  if host == "" then return nil, "no host in '" .. spec .. "'" end
  if host:find("[%s/@]") then return nil, "bad host '" .. host .. "' in '" .. spec .. "'" end
  out.host = host
  if port ~= "" then
    local p, err = parse_port(port, spec)
    if not p then return nil, err end
    out.port = p
  end
  return out
end

-- Resolve a connection name to options: engine config redis.<name>, then the
-- original env var of that name.
local function resolve(name)
  local cfg = core.config(name)
  local source = "config redis." .. name
  if cfg == nil then
    local var = M.env[name]
    local v = var and os.getenv(var)
    if not v or v == "" then
      if var then
        error(string.format("ae.redis: %s: not configured (set redis.%s in the engine config or $%s)", name, name,
          var), 3)
      end
      error(string.format("ae.redis: %s: not configured (set redis.%s in the engine config)", name, name), 3)
    end
    cfg, source = v, "$" .. var
  end
  if type(cfg) == "string" then cfg = { url = cfg } end
  return cfg, source
end

local Client = {}

local function build(name, opts, source)
  local spec = opts.url or opts.host
  if spec == nil then error(string.format("ae.redis: %s: no url/host in %s", name, source), 3) end
  local p, err = M.parse(spec)
  if not p then error(string.format("ae.redis: %s: %s (%s)", name, err, source), 3) end
  if opts.port ~= nil then
    local port = math.tointeger(opts.port)
    if not port then error(string.format("ae.redis: %s: port must be an integer (%s)", name, source), 3) end
    p.port = port
  end
  local password = opts.password
  if password == nil then password = p.password end
  if password ~= nil and type(password) ~= "string" then
    error(string.format("ae.redis: %s: password must be a string (%s)", name, source), 3)
  end
  local db = opts.db
  if db == nil then db = p.db end
  db = math.tointeger(tonumber(db))
  if not db or db < 0 then error(string.format("ae.redis: %s: db must be an integer >= 0 (%s)", name, source), 3) end
  local timeout = opts.timeout
  if timeout == nil then timeout = DEFAULT_TIMEOUT end
  if type(timeout) ~= "number" or timeout <= 0 then
    error(string.format("ae.redis: %s: timeout must be a positive number of seconds (%s)", name, source), 3)
  end
  local c = core.client(name, p.host, p.port, db, password, timeout)
  return setmetatable({ _c = c, name = name, host = p.host, port = p.port, db = db, timeout = timeout }, Client)
end

local named = {} -- this unit's clients by name

--- connect(name | opts) -> client
-- name: "main", "customer_cache", "tnba_feedback" or any key of the config's
-- redis table; the same name returns the same client in a unit.
-- opts: {url=, host=, port=, password=, db=, timeout=, name=}; with a name
-- also present in the config, the options override the configured ones.
function M.connect(arg)
  if type(arg) == "string" then
    local c = named[arg]
    if c then return c end
    local cfg, source = resolve(arg)
    if type(cfg) ~= "table" then error("ae.redis: " .. arg .. ": bad configuration in " .. source, 2) end
    c = build(arg, cfg, source)
    named[arg] = c
    return c
  elseif type(arg) == "table" then
    local name = arg.name or "redis"
    if type(name) ~= "string" then error("ae.redis.connect: name must be a string", 2) end
    local opts, source = arg, "connect{}"
    if arg.url == nil and arg.host == nil then
      local cfg = resolve(name)
      opts = {}
      for k, v in pairs(cfg) do opts[k] = v end
      for k, v in pairs(arg) do opts[k] = v end
    end
    return build(name, opts, source)
  end
  error("ae.redis.connect: expects a connection name or an options table, not a " .. type(arg), 2)
end

local ccall, cpipeline = core.call, core.pipeline

--- client:call(cmd, ...) -> reply
function Client:call(...)
  local ok, v = ccall(self._c, ...)
  if not ok then error(v, 2) end
  return v
end

local Pipe = {}
Pipe.__index = function(_, k)
  local own = rawget(Pipe, k)
  if own then return own end
  if type(k) ~= "string" then return nil end
  local cmd = k:upper()
  local f = function(p, ...)
    if getmetatable(p) ~= Pipe then error("ae.redis: use p:" .. k .. "(...), not p." .. k .. "(...)", 2) end
    p.cmds[#p.cmds + 1] = table.pack(cmd, ...)
  end
  return f
end
function Pipe.call(p, ...)
  p.cmds[#p.cmds + 1] = table.pack(...)
end

--- client:pipeline(fn | list) -> results
-- fn(p) queues commands with p:call(...) or p:<command>(...); list is
-- {{cmd, args...}, ...}. Sends everything in one write, waits for all the
-- replies. results[i] is reply i; nil replies are redis.null and error
-- replies are error values ({err = "..."}, see redis.is_error).
function Client:pipeline(arg)
  local cmds
  if type(arg) == "function" then
    local p = setmetatable({ cmds = {} }, Pipe)
    arg(p)
    cmds = p.cmds
    for i, c in ipairs(cmds) do
      -- table.pack keeps holes: a nil argument must raise, not vanish
      for j = 1, c.n do
        if c[j] == nil then
          error(string.format("ae.redis: pipeline command #%d: argument #%d is a nil (strings and numbers only)",
            i, j), 2)
        end
      end
      c.n = nil
    end
  elseif type(arg) == "table" then
    cmds = arg
  else
    error("ae.redis: pipeline expects a function or a list of commands, not a " .. type(arg), 2)
  end
  if #cmds == 0 then return {} end
  local ok, v = cpipeline(self._c, cmds)
  if not ok then error(v, 2) end
  return v
end

--- client:state() -> "disconnected" | "connecting" | "handshake" | "ready"
function Client:state()
  local _, _, state = core.info(self._c)
  return state
end

Client.__index = function(_, k)
  local m = rawget(Client, k)
  if m then return m end
  if type(k) ~= "string" or k:sub(1, 1) == "_" then return nil end
  local cmd = k:upper()
  m = function(c, ...)
    if getmetatable(c) ~= Client then error("ae.redis: use r:" .. k .. "(...), not r." .. k .. "(...)", 2) end
    local ok, v = ccall(c._c, cmd, ...)
    if not ok then error(v, 2) end
    return v
  end
  rawset(Client, k, m)
  return m
end
Client.__name = "ae.redis.client"
Client.__tostring = function(self)
  return string.format("ae.redis.client(%s %s:%d/%d)", self.name, self.host, self.port, self.db)
end

--- is_error(v) -> true when v is an error value of a pipeline / array reply
function M.is_error(v)
  return getmetatable(v) == core.error_mt
end

--- status() -> list of every Redis connection of the engine (all units)
M.status = core.status

return M
