--- spec helper: extra nats-server processes on free loopback ports, alone or
-- as a cluster (-cluster / -routes). Every process is started in the
-- background and stopped by stop(); nothing is left running.
--   local cluster = require "spec.helpers.nats_cluster"
--   local cl = cluster.start(3)      -- cl.nodes[i] = {port=, cluster_port=, url=, pid=}
--   cl:kill(1)                       -- SIGKILL one node
--   cl:restart(1)                    -- start it again on the same port
--   cl:stop()
--   cluster.start(1, nil, {args = "--user u --pass p"})   -- extra server arguments
local task = require "ae.task"

local M = {}

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

local function free_ports(n)
  local out = sh("python3 -c 'import socket\nss=[socket.socket() for _ in range(" .. n .. ")]\n" ..
    "[s.bind((\"127.0.0.1\",0)) for s in ss]\nprint(\" \".join(str(s.getsockname()[1]) for s in ss))'")
  local ports = {}
  for p in out:gmatch("%d+") do ports[#ports + 1] = tonumber(p) end
  assert(#ports == n, "nats_cluster: no free ports")
  return ports
end

local function listening(port)
  return os.execute("bash -c 'exec 3<>/dev/tcp/127.0.0.1/" .. port .. "' 2>/dev/null") == true
end

local Cluster = {}
Cluster.__index = Cluster

local function wait_listening(node)
  for _ = 1, 200 do
    if listening(node.port) then
      local f = io.open(node.pidfile)
      node.pid = f and tonumber(f:read("a"))
      if f then f:close() end
      return true
    end
    task.sleep(0.02)
  end
  return false
end

--- start(n, dir, opts) -> cluster of n nodes (n = 1: a lone server)
-- opts.args: extra nats-server arguments for every node (auth, TLS...)
function M.start(n, dir, opts)
  if not dir then
    dir = os.tmpname()
    os.remove(dir)
  end
  os.execute("mkdir -p " .. dir)
  local ports = free_ports(2 * n)
  local self = setmetatable({ nodes = {}, dir = dir }, Cluster)
  for i = 1, n do
    local node = { port = ports[2 * i - 1], cluster_port = ports[2 * i] }
    node.url = "nats://127.0.0.1:" .. node.port
    node.pidfile = string.format("%s/nats-%d.pid", dir, i)
    local args = string.format("-a 127.0.0.1 -p %d -P %s -l %s/nats-%d.log", node.port, node.pidfile, dir, i)
    if opts and opts.args then args = args .. " " .. opts.args end
    if n > 1 then
      args = args .. string.format(" --cluster_name aengine_spec -cluster nats://127.0.0.1:%d", node.cluster_port)
      if i > 1 then args = args .. string.format(" -routes nats://127.0.0.1:%d", self.nodes[1].cluster_port) end
    end
    node.cmd = "nats-server " .. args .. " >/dev/null 2>&1 &"
    os.execute(node.cmd)
    self.nodes[i] = node
  end
  for _, node in ipairs(self.nodes) do
    if not wait_listening(node) then
      self:stop()
      error("nats_cluster: nats-server on port " .. node.port .. " did not start")
    end
  end
  if n > 1 then task.sleep(0.5) end -- routes connect
  return self
end

function Cluster:kill(i, signal)
  local node = self.nodes[i]
  if node.pid then os.execute(string.format("kill -%s %d 2>/dev/null", signal or "KILL", node.pid)) end
  node.pid = nil
end

--- restart(i): start a killed node again, same port and arguments
function Cluster:restart(i)
  local node = self.nodes[i]
  assert(not node.pid, "nats_cluster: node " .. i .. " is still running")
  for _ = 1, 200 do -- the old process lets go of the port
    if not listening(node.port) then break end
    task.sleep(0.02)
  end
  os.remove(node.pidfile)
  os.execute(node.cmd)
  if not wait_listening(node) then error("nats_cluster: nats-server on port " .. node.port .. " did not restart") end
end

function Cluster:stop()
  for i = 1, #self.nodes do self:kill(i, "TERM") end
  os.execute("rm -rf " .. self.dir)
end

return M
