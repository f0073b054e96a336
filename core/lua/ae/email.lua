--- ae.email: send email over SMTP (libcurl, on the engine loop).
--   send{url=, starttls=, username=, password=, from=, to=, cc=, bcc=, reply_to=, subject=, text=, html=,
--        inline=, attachments=, headers=, multipart=, date=, message_id=, timeout=, verify=, ca=}
--       -> true, nil, info | nil, err
--   build{...} -> message, envelope  (the MIME text that send would transmit)
local core = require "ae.core.email"
local clock = require "ae.core.clock"

local M = {}

local function is_ascii(s)
  return not s:find("[\128-\255]")
end

local function no_newline(s, what)
  if type(s) ~= "string" then error("ae.email: " .. what .. " must be a string", 4) end
  if s:find("[\r\n]") then error("ae.email: " .. what .. " must not contain line breaks", 4) end
  return s
end

-- RFC 2047 "B" encoded words, split on UTF-8 character boundaries so each
-- word stays under 75 characters.
local function encode_words(s)
  local words, chunk = {}, ""
  for ch in s:gmatch("[%z\1-\127\194-\244][\128-\191]*") do
    if #chunk + #ch > 45 then
      words[#words + 1] = "=?UTF-8?B?" .. core.b64(chunk) .. "?="
      chunk = ""
    end
    chunk = chunk .. ch
  end
  if chunk ~= "" then words[#words + 1] = "=?UTF-8?B?" .. core.b64(chunk) .. "?=" end
  return table.concat(words, "\r\n ")
end

local function header_text(s)
  if is_ascii(s) then return s end
  return encode_words(s)
end

-- "Name <a@x>" | "a@x" -> header form, envelope address (or nil, err)
local function parse_address(s)
  s = no_newline(s, "address"):match("^%s*(.-)%s*$")
  local name, addr = s:match("^(.-)%s*<([^<>]+)>$")
  if not addr then name, addr = "", s end
  if not addr:match("^[^%s@<>,;\"]+@[^%s@<>,;\"]+$") then
    return nil, "ae.email: invalid address '" .. s .. "'"
  end
  name = name:match('^"(.*)"$') or name
  if name == "" then return addr, addr end
  if is_ascii(name) then
    if name:find('[()<>%[%]:;@\\,."]') then name = '"' .. name:gsub('(["\\])', "\\%1") .. '"' end
    return name .. " <" .. addr .. ">", addr
  end
  return encode_words(name) .. " <" .. addr .. ">", addr
end

-- to/cc/bcc: a list, or one string of comma-separated addresses
local function address_list(v, what)
  if v == nil then return {} end
  local items = {}
  if type(v) == "string" then
    for part in v:gmatch("[^,]+") do
      part = part:match("^%s*(.-)%s*$")
      if part ~= "" then items[#items + 1] = part end
    end
  elseif type(v) == "table" then
    for i, a in ipairs(v) do
      if type(a) ~= "string" then error("ae.email: " .. what .. "[" .. i .. "] must be a string", 4) end
      items[#items + 1] = a
    end
  else
    error("ae.email: " .. what .. " must be a string or a list of strings", 4)
  end
  return items
end

local function random_hex(n)
  local t = {}
  for i = 1, n do t[i] = string.format("%02x", math.random(0, 255)) end
  return table.concat(t)
end

local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }

--- RFC 5322 date of epoch seconds (UTC).
local function rfc5322_date(t)
  local d = os.date("!*t", math.floor(t))
  return string.format("%s, %02d %s %04d %02d:%02d:%02d +0000", DAYS[d.wday], d.day, MONTHS[d.month], d.year,
    d.hour, d.min, d.sec)
end

local function render(part)
  return table.concat(part.headers, "\r\n") .. "\r\n\r\n" .. part.body
end

local function multipart(subtype, parts)
  local boundary = "=_ae_" .. random_hex(12)
  local out = {}
  for _, p in ipairs(parts) do
    out[#out + 1] = "--" .. boundary .. "\r\n" .. render(p) .. "\r\n"
  end
  out[#out + 1] = "--" .. boundary .. "--\r\n"
  return {
    headers = { 'Content-Type: multipart/' .. subtype .. '; boundary="' .. boundary .. '"' },
    body = table.concat(out),
  }
end

local function text_part(subtype, s)
  local long_line = false
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do
    if #line > 900 then long_line = true break end
  end
  if is_ascii(s) and not long_line and not s:find("%z") then
    local body = s:gsub("\r?\n", "\r\n")
    return {
      headers = { "Content-Type: text/" .. subtype .. "; charset=us-ascii", "Content-Transfer-Encoding: 7bit" },
      body = body,
    }
  end
  return {
    headers = { "Content-Type: text/" .. subtype .. "; charset=utf-8", "Content-Transfer-Encoding: base64" },
    body = core.b64(s, true),
  }
end

local TYPES = {
  csv = "text/csv", txt = "text/plain", html = "text/html", htm = "text/html", json = "application/json",
  pdf = "application/pdf", png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  xml = "application/xml", zip = "application/zip",
  xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

local function filename_param(name)
  if is_ascii(name) then return 'filename="' .. name:gsub('(["\\])', "\\%1") .. '"' end
  local pct = name:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)
  return "filename*=UTF-8''" .. pct
end

local function file_part(f, i, kind)
  if type(f) ~= "table" then error("ae.email: " .. kind .. "[" .. i .. "] must be a table", 4) end
  local content = f.content
  if type(content) ~= "string" then error("ae.email: " .. kind .. "[" .. i .. "].content must be a string", 4) end
  local filename = f.filename
  if filename ~= nil then no_newline(filename, kind .. "[" .. i .. "].filename") end
  local ctype = f.content_type
  if ctype == nil then
    local ext = filename and filename:match("%.([%w]+)$")
    ctype = ext and TYPES[ext:lower()] or "application/octet-stream"
  end
  no_newline(ctype, kind .. "[" .. i .. "].content_type")
  local headers = { "Content-Type: " .. ctype, "Content-Transfer-Encoding: base64" }
  if kind == "inline" then
    local cid = f.cid
    if type(cid) ~= "string" or cid == "" then error("ae.email: inline[" .. i .. "].cid must be a string", 4) end
    no_newline(cid, "inline[" .. i .. "].cid")
    headers[#headers + 1] = "Content-ID: <" .. cid .. ">"
    headers[#headers + 1] = "Content-Disposition: inline" .. (filename and ("; " .. filename_param(filename)) or "")
  else
    headers[#headers + 1] = "Content-Disposition: attachment; " .. filename_param(filename or ("attachment" .. i))
  end
  return { headers = headers, body = core.b64(content, true) }
end

--- build(opts) -> message, envelope | nil, err
-- envelope = {from = addr, rcpt = {addr...}, message_id = "<...>"}
function M.build(opts)
  if type(opts) ~= "table" then error("ae.email: options must be a table", 3) end
  local from_h, from_addr = parse_address(opts.from or error("ae.email: from is required", 3))
  if not from_h then return nil, from_addr end
  local rcpt, header_lists = {}, {}
  for _, k in ipairs { "to", "cc", "bcc" } do
    local shown = {}
    for _, a in ipairs(address_list(opts[k], k)) do
      local h, addr = parse_address(a)
      if not h then return nil, addr end
      shown[#shown + 1] = h
      rcpt[#rcpt + 1] = addr
    end
    header_lists[k] = shown
  end
  if #rcpt == 0 then return nil, "ae.email: no recipients (to, cc, bcc are empty)" end
  local subject = opts.subject or ""
  no_newline(subject, "subject")
  if opts.text ~= nil and type(opts.text) ~= "string" then error("ae.email: text must be a string", 3) end
  if opts.html ~= nil and type(opts.html) ~= "string" then error("ae.email: html must be a string", 3) end
  local top = opts.multipart or "mixed"
  if top ~= "mixed" and top ~= "related" then error("ae.email: multipart must be 'mixed' or 'related'", 3) end

  local alts = {}
  if opts.text ~= nil or opts.html == nil then alts[#alts + 1] = text_part("plain", opts.text or "") end
  if opts.html ~= nil then alts[#alts + 1] = text_part("html", opts.html) end
  local body = #alts == 1 and alts[1] or multipart("alternative", alts)

  local inline, attachments = {}, {}
  for i, f in ipairs(opts.inline or {}) do inline[i] = file_part(f, i, "inline") end
  for i, f in ipairs(opts.attachments or {}) do attachments[i] = file_part(f, i, "attachments") end

  local parts
  if top == "related" then
    parts = { body }
    for _, p in ipairs(inline) do parts[#parts + 1] = p end
  else
    if #inline > 0 then
      local rel = { body }
      for _, p in ipairs(inline) do rel[#rel + 1] = p end
      body = multipart("related", rel)
    end
    parts = { body }
  end
  for _, p in ipairs(attachments) do parts[#parts + 1] = p end
  local root = multipart(top, parts)

  local domain = from_addr:match("@(.+)$")
  local message_id = opts.message_id
  if message_id == nil then
    message_id = "<" .. random_hex(12) .. "." .. string.format("%d", math.floor(clock.now())) .. "@" .. domain .. ">"
  end
  local h = { "From: " .. from_h }
  if #header_lists.to > 0 then h[#h + 1] = "To: " .. table.concat(header_lists.to, ",\r\n ") end
  if #header_lists.cc > 0 then h[#h + 1] = "Cc: " .. table.concat(header_lists.cc, ",\r\n ") end
  if opts.reply_to ~= nil then
    local rh, rerr = parse_address(opts.reply_to)
    if not rh then return nil, rerr end
    h[#h + 1] = "Reply-To: " .. rh
  end
  h[#h + 1] = "Subject: " .. header_text(subject)
  if opts.date ~= false then h[#h + 1] = "Date: " .. rfc5322_date(clock.now()) end
  if message_id then h[#h + 1] = "Message-ID: " .. no_newline(message_id, "message_id") end
  h[#h + 1] = "MIME-Version: 1.0"
  if opts.headers ~= nil then
    if type(opts.headers) ~= "table" then error("ae.email: headers must be a table", 3) end
    local names = {}
    for k in pairs(opts.headers) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do
      no_newline(k, "header name")
      if k:find("[%s:]") then error("ae.email: bad header name '" .. k .. "'", 3) end
      h[#h + 1] = k .. ": " .. header_text(no_newline(tostring(opts.headers[k]), "header " .. k))
    end
  end
  for _, line in ipairs(root.headers) do h[#h + 1] = line end
  local message = table.concat(h, "\r\n") .. "\r\n\r\n" .. root.body
  return message, { from = from_addr, rcpt = rcpt, message_id = message_id or nil }
end

--- send(opts) -> true, nil, info | nil, err
-- info = {message_id, accepted = n, refused = {addr...}}
function M.send(opts)
  if type(opts) ~= "table" then error("ae.email.send: options must be a table", 2) end
  if type(opts.url) ~= "string" or not (opts.url:find("^smtps?://")) then
    error("ae.email.send: url must be smtp://host:port or smtps://host:port", 2)
  end
  local message, env = M.build(opts)
  if not message then return nil, env end
  local ok, err, info = core.send {
    url = opts.url, from = "<" .. env.from .. ">", rcpt = (function()
      local l = {}
      for i, a in ipairs(env.rcpt) do l[i] = "<" .. a .. ">" end
      return l
    end)(),
    message = message, username = opts.username, password = opts.password, starttls = opts.starttls,
    verify = opts.verify, ca = opts.ca, timeout = opts.timeout or 30, connect_timeout = opts.connect_timeout,
  }
  if not ok then return nil, err end
  info.message_id = env.message_id
  return true, nil, info
end

return M
