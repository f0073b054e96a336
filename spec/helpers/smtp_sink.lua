--- spec.helpers.smtp_sink: the sandbox's SMTP sink (scripts/sandbox/smtp_sink.py,
-- aiosmtpd) for specs, and a small MIME reader for what it caught.
--
--   local smtp_sink = require "spec.helpers.smtp_sink"
--   local sink = smtp_sink.start()         -- plain, STARTTLS and HTTP ports, all free ones
--   ... sink.port, sink.tls_port, sink.ca, sink.dir, sink.http ("http://127.0.0.1:<http_port>")
--   sink:messages()                         -- the .json records, oldest first (over HTTP)
--   smtp_sink.parse(sink:message(n))        -- one caught message, parsed
--   sink:clear()                            -- forget every message
--   sink:stop()
--
-- The sink's accounts: user "user", password "secret". Recipients whose local
-- part starts with "refuse" get 550, senders starting with "reject" get 554.
local http = require "ae.http"
local json = require "ae.json"
local sim = require "sandbox.sim"

local M = {}

local SCRIPT = "scripts/sandbox/smtp_sink.py"

local Sink = {}
Sink.__index = Sink

--- start([args]) -> sink: runs the sink (its messages in a new temp dir, its
-- stderr in <dir>.log) with extra command-line arguments `args` (a list), and
-- waits for its ready line. The sink exits with the engine running the spec.
function M.start(args)
  local dir = os.tmpname()
  os.remove(dir)
  local cmd = { "exec /usr/bin/python3", SCRIPT, "--watch-parent", "--dir", dir }
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = a end
  cmd[#cmd + 1] = "2>" .. dir .. ".log"
  local pipe = assert(io.popen(table.concat(cmd, " "), "r"))
  local sink = json.decode(assert(pipe:read("l"), "the SMTP sink did not start"))
  sink.pipe = pipe
  if math.type(sink.http_port) == "integer" then sink.http = "http://127.0.0.1:" .. sink.http_port end
  return setmetatable(sink, Sink)
end

function Sink:stop()
  os.execute("kill " .. self.pid)
  self.pipe:close()
end

local function get(url)
  local res = assert(http.get(url, { timeout = 5 }))
  assert(res.status == 200, "smtp sink: GET " .. url .. " answered " .. res.status)
  return res
end

--- sink:messages() -> list of {n, mail_from, rcpt_tos, refused, auth, tls, size, subject, at}
function Sink:messages()
  return assert(get(self.http .. "/messages"):json())
end

--- sink:message(n) -> the raw message n (the DATA bytes)
function Sink:message(n)
  return get(self.http .. "/messages/" .. n).body
end

function Sink:clear()
  assert(http.delete(self.http .. "/messages", { timeout = 5 }))
end

--- unb64(s) -> bytes: base64 decode (sandbox.sim's decoder); white space
-- (MIME line breaks) is skipped, anything else not base64 is an error.
function M.unb64(s)
  return (assert(sim.unb64((s:gsub("%s", ""))), "smtp sink: not base64"))
end

--- parse(msg) -> {headers = {lower name = unfolded value}, body, parts}: a
-- minimal MIME parser; `parts` only for multipart bodies.
function M.parse(msg)
  local head, body = msg:match("^(.-)\r\n\r\n(.*)$")
  head = head:gsub("\r\n[ \t]+", " ")
  local headers = {}
  for line in (head .. "\r\n"):gmatch("(.-)\r\n") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  local node = { headers = headers, body = body }
  local boundary = (headers["content-type"] or ""):match('boundary="([^"]+)"')
  if boundary then
    node.parts = {}
    local esc = boundary:gsub("%p", "%%%0")
    local pos = body:find("%-%-" .. esc .. "\r\n", 1) -- first delimiter
    while pos do
      local start = pos + #boundary + 4
      local nxt = assert(body:find("\r\n%-%-" .. esc, start), "unterminated part")
      node.parts[#node.parts + 1] = M.parse(body:sub(start, nxt - 1))
      if body:sub(nxt + #boundary + 4, nxt + #boundary + 5) == "--" then break end
      pos = nxt + 2
    end
  end
  return node
end

--- decode_body(part) -> the part's body, base64 decoded where its
-- Content-Transfer-Encoding says so.
function M.decode_body(part)
  if (part.headers["content-transfer-encoding"] or ""):lower() == "base64" then return M.unb64(part.body) end
  return part.body
end

return M
