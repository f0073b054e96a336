-- ae.email against a real SMTP server (scripts/sandbox/smtp_sink.py via spec.helpers.smtp_sink):
-- the captured MIME is parsed back and checked part by part.
local email = require "ae.email"
local json = require "ae.json"
local task = require "ae.task"

local smtp_sink = require "spec.helpers.smtp_sink"
local unb64, parse, decode_body = smtp_sink.unb64, smtp_sink.parse, smtp_sink.decode_body

local sink, url, tls_url

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local seen = 0
-- the next message the sink stores: meta, raw, parsed
local function next_message()
  seen = seen + 1
  local base = sink.dir .. "/" .. seen
  for _ = 1, 100 do
    local meta = read_file(base .. ".json")
    if meta then
      local raw = read_file(base .. ".eml")
      return json.decode(meta), raw, parse(raw)
    end
    task.sleep(0.05)
  end
  error("no message " .. seen .. " in the sink")
end

setup(function()
  sink = smtp_sink.start { "--http-port", "-1" }
  url = "smtp://127.0.0.1:" .. sink.port
  tls_url = "smtp://127.0.0.1:" .. sink.tls_port
end)

teardown(function()
  if sink then sink:stop() end
end)

describe("ae.email.send", function()
  it("sends multipart/mixed with text + html alternatives, attachments and every header", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local blob = table.concat(bytes):rep(40)
    local ok, err, info = email.send {
      url = url, from = "Automation <mettel.automation@example.com>", to = { "noc@example.com", "b@example.org" },
      cc = { "cc@example.net" }, bcc = "hidden@example.net", subject = "Last contact edges (2021-02-01)",
      text = "plain text\n.leading dot line\nend", html = "<p>report</p>",
      attachments = {
        { filename = "last_contact.csv", content = "edge,ent\nE1,Ent\n", content_type = "text/csv" },
        { filename = "blob.bin", content = blob },
      },
    }
    assert.is_nil(err)
    assert.is_true(ok)
    assert.same({}, info.refused)
    assert.equal(4, info.accepted)
    local meta, raw, msg = next_message()
    assert.equal("mettel.automation@example.com", meta.mail_from)
    assert.same({ "noc@example.com", "b@example.org", "cc@example.net", "hidden@example.net" }, meta.rcpt_tos)
    local h = msg.headers
    assert.equal("Automation <mettel.automation@example.com>", h.from)
    assert.equal("noc@example.com, b@example.org", h.to)
    assert.equal("cc@example.net", h.cc)
    assert.is_nil(h.bcc)
    assert.falsy(raw:find("hidden@example.net", 1, true))
    assert.equal("Last contact edges (2021-02-01)", h.subject)
    assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d %+0000$", h.date)
    assert.equal(info.message_id, h["message-id"])
    assert.matches("^<[%w.]+@example%.com>$", h["message-id"])
    assert.equal("1.0", h["mime-version"])
    assert.matches("^multipart/mixed;", h["content-type"])
    assert.equal(3, #msg.parts)
    local alt = msg.parts[1]
    assert.matches("^multipart/alternative;", alt.headers["content-type"])
    assert.equal(2, #alt.parts)
    assert.equal("text/plain; charset=us-ascii", alt.parts[1].headers["content-type"])
    assert.equal("plain text\r\n.leading dot line\r\nend", decode_body(alt.parts[1]))
    assert.equal("text/html; charset=us-ascii", alt.parts[2].headers["content-type"])
    assert.equal("<p>report</p>", decode_body(alt.parts[2]))
    local csv = msg.parts[2]
    assert.equal("text/csv", csv.headers["content-type"])
    assert.equal('attachment; filename="last_contact.csv"', csv.headers["content-disposition"])
    assert.equal("edge,ent\nE1,Ent\n", decode_body(csv))
    local bin = msg.parts[3]
    assert.equal("application/octet-stream", bin.headers["content-type"])
    assert.equal(blob, decode_body(bin))
    for line in raw:gmatch("([^\n]*)\n") do assert.is_true(#line <= 998) end
  end)

  it("encodes non-ASCII subject, names and bodies", function()
    local subject = "Informe señal – ünïcødé " .. string.rep("ñ", 40)
    assert(email.send {
      url = url, from = "José Núñez <jose@example.com>", to = "ana@example.com", subject = subject,
      text = "año", html = "<b>€</b>",
      attachments = { { filename = "résumé.txt", content = "x" } },
    })
    local _, raw, msg = next_message()
    assert.falsy(raw:find("[\128-\255]"))
    local words = {}
    for w in msg.headers.subject:gmatch("=%?UTF%-8%?B%?([^?]+)%?=") do words[#words + 1] = unb64(w) end
    assert.equal(subject, table.concat(words))
    assert.matches("^=%?UTF%-8%?B%?", msg.headers.from)
    assert.matches("<jose@example.com>$", msg.headers.from)
    local alt = msg.parts[1]
    assert.equal("text/plain; charset=utf-8", alt.parts[1].headers["content-type"])
    assert.equal("año", decode_body(alt.parts[1]))
    assert.equal("<b>€</b>", decode_body(alt.parts[2]))
    assert.equal("attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.txt", msg.parts[2].headers["content-disposition"])
  end)

  it("puts inline images in multipart/related with their Content-ID", function()
    local png = "\137PNG\r\n\26\n" .. string.rep("\0", 20)
    assert(email.send {
      url = url, from = "a@example.com", to = "b@example.com", subject = "img", multipart = "related",
      text = "t", html = '<img src="cid:logo">', date = false, message_id = false,
      inline = { { cid = "logo", content = png, content_type = "image/png" } },
      attachments = { { filename = "r.csv", content = "1,2", content_type = 'text/csv; charset="utf-8"' } },
    })
    local _, _, msg = next_message()
    assert.is_nil(msg.headers.date)
    assert.is_nil(msg.headers["message-id"])
    assert.matches("^multipart/related;", msg.headers["content-type"])
    assert.equal(3, #msg.parts)
    assert.matches("^multipart/alternative;", msg.parts[1].headers["content-type"])
    assert.equal("image/png", msg.parts[2].headers["content-type"])
    assert.equal("<logo>", msg.parts[2].headers["content-id"])
    assert.equal(png, decode_body(msg.parts[2]))
    assert.equal('text/csv; charset="utf-8"', msg.parts[3].headers["content-type"])
  end)

  it("nests related inside mixed when inline images come with the default layout", function()
    assert(email.send {
      url = url, from = "a@example.com", to = "b@example.com", html = '<img src="cid:x">',
      inline = { { cid = "x", content = "GIF89a", content_type = "image/gif" } },
    })
    local _, _, msg = next_message()
    assert.matches("^multipart/mixed;", msg.headers["content-type"])
    local rel = msg.parts[1]
    assert.matches("^multipart/related;", rel.headers["content-type"])
    assert.equal("text/html; charset=us-ascii", rel.parts[1].headers["content-type"])
    assert.equal("<x>", rel.parts[2].headers["content-id"])
  end)

  it("delivers to the accepted recipients and reports the refused ones", function()
    local ok, err, info = email.send {
      url = url, from = "a@example.com", to = "refuse-me@example.com, good@example.com", text = "hi",
    }
    assert.is_nil(err)
    assert.is_true(ok)
    assert.same({ "refuse-me@example.com" }, info.refused)
    assert.equal(1, info.accepted)
    local meta, _, msg = next_message()
    assert.same({ "good@example.com" }, meta.rcpt_tos)
    assert.equal("refuse-me@example.com, good@example.com", msg.headers.to)
  end)

  it("fails with the server's text when every recipient is refused", function()
    local ok, err = email.send { url = url, from = "a@example.com", to = { "refuse1@example.com" }, text = "x" }
    assert.is_nil(ok)
    assert.equal("ae.email: 550 5.1.1 <refuse1@example.com>: Recipient address rejected: no such user", err)
  end)

  it("fails with the server's text when DATA is refused", function()
    local ok, err = email.send { url = url, from = "reject@example.com", to = "b@example.com", text = "x" }
    assert.is_nil(ok)
    assert.equal("ae.email: 554 5.7.1 Message rejected: sender is blacklisted", err)
  end)

  it("logs in with username and password", function()
    assert(email.send {
      url = url, username = "user", password = "secret", from = "a@example.com", to = "b@example.com", text = "x",
    })
    local meta = next_message()
    assert.equal("user", meta.auth)
    local ok, err = email.send {
      url = url, username = "user", password = "wrong", from = "a@example.com", to = "b@example.com", text = "x",
    }
    assert.is_nil(ok)
    assert.matches("^ae%.email: 535 ", err)
  end)

  it("uses STARTTLS, verifying the server certificate", function()
    local ok, err = email.send {
      url = tls_url, starttls = true, from = "a@example.com", to = "b@example.com", text = "x",
    }
    assert.is_nil(ok)
    assert.matches("^ae%.email: SSL certificate problem", err)
    assert(email.send {
      url = tls_url, starttls = true, ca = sink.ca, username = "user", password = "secret",
      from = "a@example.com", to = "b@example.com", subject = "over tls", text = "x",
    })
    local meta, _, msg = next_message()
    assert.equal("user", meta.auth)
    assert.equal("over tls", msg.headers.subject)
    assert(email.send {
      url = tls_url, starttls = true, verify = false, from = "a@example.com", to = "b@example.com", text = "x",
    })
    next_message()
  end)

  it("refuses to send in clear text to a server that requires STARTTLS", function()
    local ok, err = email.send { url = tls_url, from = "a@example.com", to = "b@example.com", text = "x" }
    assert.is_nil(ok)
    assert.matches("^ae%.email: 530 ", err)
  end)

  it("connection refused -> nil, message with the url", function()
    local ok, err = email.send { url = "smtp://127.0.0.1:1", from = "a@example.com", to = "b@example.com" }
    assert.is_nil(ok)
    assert.matches("^ae%.email: .*Couldn't connect to server %(smtp://127%.0%.0%.1:1/?%)$", err)
  end)

  it("sends many messages concurrently", function()
    local fns = {}
    for i = 1, 10 do
      fns[i] = function()
        return assert(email.send { url = url, from = "a@example.com", to = "n" .. i .. "@example.com", text = "x" })
      end
    end
    local _, errors = task.gather(fns)
    assert.same({}, errors)
    local got = {}
    for _ = 1, 10 do got[#got + 1] = next_message().rcpt_tos[1] end
    local want = {}
    for i = 1, 10 do want[i] = "n" .. i .. "@example.com" end
    table.sort(got)
    table.sort(want)
    assert.same(want, got)
  end)

  it("returns nil, err for bad addresses and raises on misuse", function()
    local ok, err = email.send { url = url, from = "a@example.com", to = "not-an-address", text = "x" }
    assert.is_nil(ok)
    assert.equal("ae.email: invalid address 'not-an-address'", err)
    ok, err = email.send { url = url, from = "a@example.com", to = {}, text = "x" }
    assert.is_nil(ok)
    assert.matches("no recipients", err)
    assert.has_error(function() email.send { url = "http://x", from = "a@b.c", to = "d@e.f" } end)
    assert.has_error(function() email.send { url = url, from = "a@b.c", to = "d@e.f", subject = "a\r\nBcc: x@y.z" } end)
    assert.has_error(function()
      email.send { url = url, from = "a@b.c", to = "d@e.f", attachments = { { filename = "x" } } }
    end)
  end)
end)
