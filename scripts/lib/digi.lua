--- lib.digi: client of the digi-bridge capability (digi.reboot), with the
-- caller conventions of platform.md §2.4-2.5 through lib.rpc (timeout 90 s,
-- retry policy, 503 substitute, Slack error texts of service-outage-monitor).
--
--   local digi = require "lib.digi"
--   local reply = digi.reboot{velo_serial = "VC05200046188", ticket = "3574667",
--                             MAC = "00:04:2d:0b:cf:7f:0000"}
--   if rpc.ok(reply) then ... end   -- reply.body: the DiGi answer list
local rpc = require "lib.rpc"

local M = {}

M.SUBJECT = "digi.reboot"
M.TIMEOUT = 90 -- platform.md §2.8 (service-outage-monitor)

--- reboot{velo_serial=, ticket=, MAC= [, interface_name=, ...]} [, opts] -> reply
-- Every key of the table is sent in the request body (the bridge turns each
-- into a DiGi header); values must be strings (a numeric ticket is converted).
-- opts.timeout (default 90), opts.notify = false (no Slack on failure).
-- Failure Slack texts: "Error while attempting a DiGi reboot for ticket <T> in
-- <ENV> environment: Error <status> - <body>" and "An error occurred when
-- attempting a DiGi reboot for ticket <T> -> <error>".
function M.reboot(args, opts)
  if type(args) ~= "table" then error("lib.digi: reboot takes a table {velo_serial=, ticket=, MAC=}", 2) end
  opts = opts or {}
  local body = {}
  for k, v in pairs(args) do
    if type(k) ~= "string" then error("lib.digi: reboot keys must be strings", 2) end
    if math.type(v) == "integer" then v = tostring(v) end
    if type(v) ~= "string" then error("lib.digi: reboot field '" .. k .. "' must be a string", 2) end
    body[k] = v
  end
  for _, k in ipairs({ "velo_serial", "ticket", "MAC" }) do
    if not body[k] then error("lib.digi: reboot needs '" .. k .. "'", 2) end
  end
  return rpc.call(M.SUBJECT, rpc.envelope(body), {
    timeout = opts.timeout or M.TIMEOUT,
    doing = "attempting a DiGi reboot for ticket " .. body.ticket,
    notify = opts.notify,
  })
end

return M
