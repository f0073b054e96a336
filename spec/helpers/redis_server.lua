--- spec.helpers.redis_server: start/stop an extra redis-server for a spec
-- (password tests, restart tests), on a free loopback port.
--
--   local server = require "spec.helpers.redis_server"
--   local s = server.start{ password = "s3cret" }   -- any redis-server options
--   s.port, s.url, s:url_with_db(2)
--   s:stop()      -- kill it (SIGKILL: an abrupt outage); the port is kept
--   s:start()     -- start it again on the same port (restart tests)
--   s:cli("SET", "k", "v")  -- redis-cli against it (blocking; for set-up only)
--   s:destroy()   -- stop and remove its directory (call in finally/teardown)
--
-- Start/stop block the engine loop for at most a few tenths of a second while
-- waiting for the port; fine for specs, not for units.
local M = {}

local Server = {}
Server.__index = Server

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function capture(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- free_port() -> a TCP port nobody listens on right now
function M.free_port()
  local out = capture([[python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); ]]
    .. [[print(s.getsockname()[1]); s.close()']])
  local port = tonumber(out:match("%d+"))
  assert(port, "redis_server: cannot find a free port")
  return math.tointeger(port)
end

--- start(opts) -> server. opts.password: --requirepass; opts.port; opts.args:
-- extra redis-server arguments (list of strings).
function M.start(opts)
  opts = opts or {}
  local dir = capture("mktemp -d /tmp/ae-redis-spec.XXXXXX"):gsub("%s+$", "")
  assert(dir ~= "", "redis_server: mktemp failed")
  local self = setmetatable({
    dir = dir, port = opts.port or M.free_port(), password = opts.password, args = opts.args or {},
  }, Server)
  self.url = "redis://127.0.0.1:" .. self.port
  self:start()
  return self
end

function Server:url_with_db(db)
  return self.url .. "/" .. tostring(db)
end

function Server:cli(...)
  local parts = { "redis-cli", "-h 127.0.0.1", "-p", tostring(self.port) }
  if self.password then parts[#parts + 1] = "--no-auth-warning -a " .. quote(self.password) end
  for _, a in ipairs({ ... }) do parts[#parts + 1] = quote(a) end
  return (capture(table.concat(parts, " ") .. " 2>&1"):gsub("%s+$", ""))
end

local function wait_port(port, up)
  -- bash's /dev/tcp: poll up to 5 s for the port to (stop) answer(ing)
  local test = string.format("(exec 3<>/dev/tcp/127.0.0.1/%d) 2>/dev/null", port)
  local cond = up and test or ("! " .. test)
  return sh(string.format("bash -c 'for i in $(seq 1 100); do if %s; then exit 0; fi; sleep 0.05; done; exit 1'",
    cond:gsub("'", "'\\''")))
end

function Server:start()
  if self.running then return self end
  local args = {
    "redis-server", "--bind 127.0.0.1", "--port", tostring(self.port), "--save ''", "--appendonly no",
    "--daemonize yes", "--pidfile", quote(self.dir .. "/redis.pid"), "--logfile", quote(self.dir .. "/redis.log"),
    "--dir", quote(self.dir),
  }
  if self.password then args[#args + 1] = "--requirepass " .. quote(self.password) end
  for _, a in ipairs(self.args) do args[#args + 1] = a end
  assert(sh(table.concat(args, " ")), "redis_server: redis-server did not start")
  assert(wait_port(self.port, true), "redis_server: redis-server does not listen on " .. self.port)
  -- the pid file appears right after the port opens
  for _ = 1, 100 do
    local f = io.open(self.dir .. "/redis.pid")
    if f then
      self.pid = tonumber(f:read("a"):match("%d+"))
      f:close()
      if self.pid then break end
    end
    sh("sleep 0.01")
  end
  assert(self.pid, "redis_server: no pid file")
  self.running = true
  return self
end

--- stop(): SIGKILL the server (clients see the connection drop) and wait
-- until the port is closed.
function Server:stop()
  if not self.running then return self end
  sh("kill -9 " .. self.pid .. " 2>/dev/null")
  os.remove(self.dir .. "/redis.pid")
  assert(wait_port(self.port, false), "redis_server: port " .. self.port .. " still open after kill")
  self.running, self.pid = false, nil
  return self
end

function Server:destroy()
  self:stop()
  sh("rm -rf " .. quote(self.dir))
end

return M
