-- ae.nats connection options and lifecycles against real nats-server
-- processes on free loopback ports (spec/helpers/nats_cluster.lua): user /
-- password, token and TLS authentication, the config-file server list, a
-- list whose first server is down, publishes buffered across an outage and
-- re-subscription, and a unit stopped while its request and subscription are
-- in flight. Child engines (spec/helpers/child.lua) check what reaches the log.
local nats = require "ae.nats"
local task = require "ae.task"
local clock = require "ae.clock"
local engine = require "ae.engine"
local cluster = require "spec.helpers.nats_cluster"
local child = require "spec.helpers.child"
local q = child.quote

local function subject(name) return "connect." .. name .. "." .. nats.new_request_id() end

-- wait (real time) until cond() or the deadline
local function eventually(cond, seconds)
  local t0 = clock.monotonic()
  while clock.monotonic() - t0 < (seconds or 5) do
    if cond() then return true end
    task.sleep(0.02)
  end
  return cond()
end

local write, read, tmpdir = child.write_file, child.read_file, child.tmpdir

-- a subscriber on its own connection that records every message
local function recorder(conn, subj)
  local rec = { msgs = {} }
  rec.sub = assert(conn:subscribe(subj, function(msg) rec.msgs[#rec.msgs + 1] = msg end))
  assert(conn:flush(2))
  return rec
end

-- A child engine runs SCRIPT (`aengine exec`) at DEBUG level; returns its output.
local function run_child(script, env)
  local path = child.write(script)
  env = env or {}
  env.AE_LOG_LEVEL = "DEBUG"
  local out, rc = child.run({ "exec", path }, env)
  os.remove(path)
  return out, rc
end

describe("ae.nats user/password authentication", function()
  local cl
  local USER, PASS = "aeuser", "Pw-" .. nats.new_request_id()
  before_each(function() cl = cluster.start(1, nil, { args = "--user " .. USER .. " --pass " .. PASS }) end)
  after_each(function() cl:stop() end)

  it("connects with user= and password= and carries messages", function()
    local c = nats.connect { servers = { cl.nodes[1].url }, user = USER, password = PASS }
    assert.is_true(c:wait())
    local st = c:status()
    assert.is_true(st.connected)
    assert.equal(cl.nodes[1].url, st.server)
    local subj = subject("auth")
    local rec = recorder(c, subj)
    assert(c:publish(subj, { n = 1 }))
    assert.is_true(eventually(function() return #rec.msgs == 1 end))
    assert.equal(1, rec.msgs[1].n)
    c:close()
  end)

  it("gives up on a wrong password: the connection closes with a clear error", function()
    local c = nats.connect { servers = { cl.nodes[1].url }, user = USER, password = "not-" .. PASS,
      reconnect_wait = 0.05 }
    c:wait() -- the first attempt ends 'not yet connected' or failed, depending on timing
    -- nats.c gives up after the server refused the credentials twice
    assert.is_true(eventually(function() return c:status().state == "closed" end))
    assert.is_false(c:status().connected)
    assert.matches("refused the credentials", c:status().error)
    local ok, err = c:publish(subject("auth"), {})
    assert.is_nil(ok)
    assert.matches("ae.nats: publish to connect.auth.%S+ failed: gave up reconnecting", err)
    local rok, rerr = c:request(subject("auth"), {}, { timeout = 0.2 })
    assert.is_nil(rok)
    assert.matches("refused the credentials", rerr)
    c:close()
  end)

  it("accepts credentials in the URL (nats://user:password@host:port)", function()
    local url = ("nats://%s:%s@127.0.0.1:%d"):format(USER, PASS, cl.nodes[1].port)
    local c = nats.connect { servers = { url } }
    assert.is_true(c:wait())
    assert.is_true(c:status().connected)
    local subj = subject("urlauth")
    local rec = recorder(c, subj)
    assert(c:publish(subj, { ok = true }))
    assert.is_true(eventually(function() return #rec.msgs == 1 end))
    c:close()
  end)

  it("never writes the password to the log, even at DEBUG and on failure", function()
    local pass2 = "Url-" .. nats.new_request_id() -- only ever given inside a URL
    local script = ([[
      local nats = require "ae.nats"
      local url, port, user, pass, pass2 = %q, %d, %q, %q, %q
      local good = nats.connect { servers = { url }, user = user, password = pass, name = "good" }
      assert(good:wait())
      print("good connected", good:status().connected)
      local bad = nats.connect { servers = { url }, user = user, password = pass .. "x", name = "bad",
        reconnect_wait = 0.05 }
      print("bad wait", bad:wait())
      local t0 = require("ae.clock").monotonic()
      while bad:status().state ~= "closed" and require("ae.clock").monotonic() - t0 < 5 do
        require("ae.task").sleep(0.02)
      end
      print("bad status", bad:status().state, bad:status().error)
      local inurl = nats.connect { servers = { ("nats://%%s:%%s@127.0.0.1:%%d"):format(user, pass2, port) },
        name = "inurl", reconnect_wait = 0.05 }
      print("inurl wait", inurl:wait())
      good:close()
      bad:close()
      inurl:close()
    ]]):format(cl.nodes[1].url, cl.nodes[1].port, USER, PASS, pass2)
    local out, rc = run_child(script)
    assert.equal(0, rc, out)
    assert.matches("good connected\ttrue", out, 1, true)
    assert.matches("bad status\tclosed\tgave up reconnecting", out, 1, true)
    assert.matches("ERROR: ae.nats: connection 'bad' closed: gave up", out, 1, true) -- logged...
    assert.is_nil(out:find(PASS, 1, true), out) -- ...without the password
    assert.is_nil(out:find(pass2, 1, true), out) -- nor one that came in a URL
  end)
end)

describe("ae.nats token authentication", function()
  local cl
  local TOKEN = "Tk-" .. nats.new_request_id()
  before_each(function() cl = cluster.start(1, nil, { args = "--auth " .. TOKEN }) end)
  after_each(function() cl:stop() end)

  it("connects with token= and is refused with a wrong one", function()
    local c = nats.connect { servers = { cl.nodes[1].url }, token = TOKEN }
    assert.is_true(c:wait())
    local subj = subject("token")
    local rec = recorder(c, subj)
    assert(c:publish(subj, { t = 1 }))
    assert.is_true(eventually(function() return #rec.msgs == 1 end))
    c:close()

    local bad = nats.connect { servers = { cl.nodes[1].url }, token = "wrong-token", reconnect_wait = 0.05 }
    bad:wait()
    assert.is_true(eventually(function() return bad:status().state == "closed" end))
    assert.is_false(bad:status().connected)
    assert.matches("refused the credentials", bad:status().error)
    bad:close()
  end)
end)

describe("ae.nats over TLS", function()
  local dir, cl
  setup(function()
    dir = tmpdir()
    local cmds = {
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=aengine-spec-ca -keyout ca.key -out ca.pem",
      "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr",
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext.cnf",
      "openssl x509 -req -days 1 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -extfile ext.cnf " ..
        "-out server.pem",
    }
    for _, cmd in ipairs(cmds) do
      assert(os.execute("cd " .. q(dir) .. " && " .. cmd .. " >/dev/null 2>&1"), "openssl failed: " .. cmd)
    end
  end)
  teardown(function() os.execute("rm -rf " .. q(dir)) end)
  before_each(function()
    cl = cluster.start(1, nil, { args = ("--tls --tlscert %s/server.pem --tlskey %s/server.key"):format(dir, dir) })
  end)
  after_each(function() cl:stop() end)

  -- nats.c checks the URL's host as a DNS name: an IP literal is not matched
  -- against the certificate's IP SANs, so connect by the name it carries.
  it("connects with tls = {ca = ...} and carries messages", function()
    local c = nats.connect { servers = { "nats://localhost:" .. cl.nodes[1].port }, tls = { ca = dir .. "/ca.pem" },
      reconnect_wait = 0.05 }
    assert(c:wait(), read(cl.dir .. "/nats-1.log"))
    assert.is_true(eventually(function() return c:status().connected end), read(cl.dir .. "/nats-1.log"))
    local subj = subject("tls")
    local rec = recorder(c, subj)
    local reply_sub = assert(c:serve(subj .. ".req", function(req) return { status = 200, body = req.body } end))
    assert(c:flush(2))
    assert(c:publish(subj, { secure = true }))
    assert.is_true(eventually(function() return #rec.msgs == 1 end))
    local reply = assert(c:request(subj .. ".req", { body = "over tls" }, { timeout = 2 }))
    assert.equal("over tls", reply.body)
    reply_sub:unsubscribe()
    c:close()
  end)

  it("is refused without the CA (the server certificate cannot be verified)", function()
    local c = nats.connect { servers = { "tls://127.0.0.1:" .. cl.nodes[1].port }, reconnect_wait = 0.05 }
    c:wait()
    task.sleep(0.5)
    local st = c:status()
    assert.is_false(st.connected)
    local ok, err = c:request(subject("tls"), {}, { timeout = 0.2 })
    assert.is_nil(ok)
    assert.is_string(err)
    c:close()
    -- a plain connection to a TLS-only server is refused as well
    local plain = nats.connect { servers = { cl.nodes[1].url }, reconnect_wait = 0.05 }
    plain:wait()
    task.sleep(0.3)
    assert.is_false(plain:status().connected)
    plain:close()
  end)

  it("rejects an unreadable CA file at connect time (a misuse: raises)", function()
    assert.has_error(function()
      nats.connect { servers = { cl.nodes[1].url }, tls = { ca = dir .. "/no-such-ca.pem" } }
    end)
  end)
end)

describe("ae.nats default connection from the config file", function()
  it("connects to nats.servers of the config, without NATS_SERVER1", function()
    local cl = cluster.start(1)
    local dir = tmpdir()
    write(dir .. "/engine.lua",
      ("return { nats = { servers = { %q }, name = 'from-config' } }"):format(cl.nodes[1].url))
    local out, rc = run_child([[
      local nats = require "ae.nats"
      assert(nats.wait())
      local st = nats.status()
      print("status", st.connected, st.server, st.name)
    ]], { AE_CONFIG = dir .. "/engine.lua", NATS_SERVER1 = "" })
    cl:stop()
    os.execute("rm -rf " .. q(dir))
    assert.equal(0, rc, out)
    assert.matches("status\ttrue\t" .. cl.nodes[1].url .. "\tfrom-config", out, 1, true)
  end)

  it("takes NATS_SERVER1, NATS_SERVER2 from the environment without a config", function()
    local cl = cluster.start(1)
    local dead = "nats://127.0.0.1:" .. (cl.nodes[1].cluster_port) -- nothing listens there
    local out, rc = run_child([[
      local nats = require "ae.nats"
      assert(nats.wait())
      local t0 = require("ae.clock").monotonic()
      while not nats.status().connected and require("ae.clock").monotonic() - t0 < 10 do
        require("ae.task").sleep(0.05)
      end
      print("status", nats.status().connected, nats.status().server)
    ]], { NATS_SERVER1 = dead, NATS_SERVER2 = cl.nodes[1].url })
    cl:stop()
    assert.equal(0, rc, out)
    assert.matches("status\ttrue\t" .. cl.nodes[1].url, out, 1, true)
  end)
end)

describe("ae.nats server list and outages", function()
  it("uses the second server of the list when the first is down", function()
    local cl = cluster.start(1)
    local dead = "nats://127.0.0.1:" .. cl.nodes[1].cluster_port -- a free port: nothing listens
    local c = nats.connect { servers = { dead, cl.nodes[1].url }, reconnect_wait = 0.05, connect_timeout = 1 }
    assert.is_true(c:wait())
    assert.is_true(eventually(function() return c:status().connected end))
    assert.equal(cl.nodes[1].url, c:status().server)
    local subj = subject("second")
    local rec = recorder(c, subj)
    assert(c:publish(subj, { via = 2 }))
    assert.is_true(eventually(function() return #rec.msgs == 1 end))
    c:close()
    cl:stop()
  end)

  it("buffers publishes while disconnected and re-subscribes after the server comes back", function()
    local cl = cluster.start(1)
    -- one connection publishes and subscribes: on reconnect nats.c sends its
    -- SUBs before the buffered PUBs, so every buffered message comes back.
    -- (Across two connections NATS is at-most-once: a publisher that is back
    -- before the subscriber loses what it buffered.)
    local c = nats.connect { servers = { cl.nodes[1].url }, name = "both", reconnect_wait = 0.05 }
    local other = nats.connect { servers = { cl.nodes[1].url }, name = "other", reconnect_wait = 0.05 }
    assert(c:wait())
    assert(other:wait())
    local subj = subject("outage")
    local rec = recorder(c, subj) -- made before the outage
    local rec2 = recorder(other, subj)
    assert(c:publish(subj, { n = 0 }))
    assert.is_true(eventually(function() return #rec.msgs == 1 and #rec2.msgs == 1 end))

    cl:kill(1)
    assert.is_true(eventually(function() return not c:status().connected and not other:status().connected end))
    for i = 1, 50 do assert(c:publish(subj, { n = i })) end -- buffered by nats.c
    assert.equal(1, #rec.msgs)
    cl:restart(1)
    assert.is_true(eventually(function() return c:status().connected and other:status().connected end, 10))
    assert.is_true(eventually(function() return #rec.msgs == 51 end, 5), #rec.msgs .. " of 51 messages")
    for i = 0, 50 do assert.equal(i, rec.msgs[i + 1].n) end
    assert.is_true(c:status().reconnects >= 1)
    assert.is_true(other:status().disconnects >= 1)
    -- the subscription of the other connection was re-established as well
    assert(c:flush(2))
    assert(other:flush(2))
    assert(c:publish(subj, { n = 51 }))
    assert.is_true(eventually(function() return #rec.msgs == 52 and rec2.msgs[#rec2.msgs].n == 51 end))
    rec.sub:unsubscribe()
    rec2.sub:unsubscribe()
    c:close()
    other:close()
    cl:stop()
  end)

  it("answers a request made during the outage once the server is back", function()
    local cl = cluster.start(1)
    -- one connection serves and requests (see above: its SUBs go out first)
    local a = nats.connect { servers = { cl.nodes[1].url }, name = "a", reconnect_wait = 0.05 }
    local b = a
    assert(a:wait())
    local subj = subject("outage_req")
    local srv = assert(b:serve(subj, function(req) return { status = 200, body = req.body } end))
    assert(b:flush(2))
    cl:kill(1)
    assert.is_true(eventually(function() return not a:status().connected end))
    local t = task.spawn(function() return a:request(subj, { body = "late" }, { timeout = 10 }) end)
    task.sleep(0.2)
    cl:restart(1)
    local ok, reply, err = t:wait()
    assert.is_true(ok)
    assert(reply, err)
    assert.equal("late", reply.body)
    srv:unsubscribe()
    a:close()
    cl:stop()
  end)
end)

describe("ae.nats when a unit stops with work in flight", function()
  local dir
  setup(function() dir = tmpdir() end)
  teardown(function() os.execute("rm -rf " .. q(dir)) end)

  -- the unit: a subscription whose handler records and sleeps, and a task
  -- with a request in flight
  local UNIT = [[
    local nats = require "ae.nats"
    local task = require "ae.task"
    local cfg = ...
    local function note(s)
      local f = io.open(cfg.out, "a")
      f:write(s, "\n")
      f:close()
    end
    assert(nats.subscribe(cfg.sub, function(msg)
      note("msg " .. msg.n)
      task.sleep(cfg.handler_sleep)
    end))
    assert(nats.flush(2))
    task.spawn(function()
      note("request")
      local reply, err = nats.request(cfg.req, { body = "in flight" }, { timeout = cfg.timeout })
      note("reply " .. tostring(reply and reply.body or err))
    end)
  ]]

  it("finishes the in-flight request, drains the subscription and closes; late messages are dropped", function()
    local name = "natsstop_" .. nats.new_request_id():sub(1, 8)
    local script, out = dir .. "/unit.lua", dir .. "/out.txt"
    write(script, UNIT)
    local sub_s, req_s = subject("unit_sub"), subject("unit_req")
    local release = false
    local got_req = 0
    local srv = assert(nats.serve(req_s, function(req)
      got_req = got_req + 1
      while not release do task.sleep(0.01) end
      return { status = 200, body = req.body }
    end))
    assert(nats.flush(2))
    assert(engine.start_unit { name = name, script = script,
      config = { out = out, sub = sub_s, req = req_s, timeout = 10, handler_sleep = 0.2 } })
    assert.is_true(eventually(function() return got_req == 1 end))
    for i = 1, 20 do assert(nats.publish(sub_s, { n = i })) end
    assert(nats.flush(2))
    assert(engine.stop_unit(name))
    -- intake stopped: publishing on goes nowhere (or is dropped with a log line)
    for i = 21, 40 do assert(nats.publish(sub_s, { n = i })) end
    assert(nats.flush(2))
    task.sleep(0.1)
    release = true
    assert.is_true(eventually(function() return read(out):find("reply in flight", 1, true) ~= nil end))
    -- the unit closes once its tasks ended
    assert.is_true(eventually(function()
      for _, u in ipairs(engine.units()) do
        if u.name == name and u.state ~= "stopped" then return false end
      end
      return true
    end, 10))
    local text = read(out)
    for i = 1, 20 do assert.matches("msg " .. i .. "\n", text, 1, true) end -- sent before the stop: handled
    for i = 21, 40 do assert.is_nil(text:find("msg " .. i .. "\n", 1, true)) end
    for i = 41, 60 do assert(nats.publish(sub_s, { n = i })) end -- after the close
    assert(nats.flush(2))
    task.sleep(0.1)
    assert.is_nil(read(out):find("msg 41\n", 1, true))
    srv:unsubscribe()
  end)

  it("cancels the task of an in-flight request when the unit is force-closed at shutdown", function()
    -- a child engine with a short shutdown deadline: SIGTERM drains, the
    -- deadline force-closes the unit, cancelling the request and the slow
    -- handlers; the parent keeps publishing to the closing subscription and
    -- answers the cancelled request late.
    local sub_s, req_s = subject("cancel_sub"), subject("cancel_req")
    local script, out, log = dir .. "/cancel_unit.lua", dir .. "/cancel_out.txt", dir .. "/cancel.log"
    write(script, UNIT)
    os.remove(out)
    write(dir .. "/cancel_engine.lua", ([[
      return { shutdown_deadline = 0.5,
        units = { { name = "canceller", script = %q,
          config = { out = %q, sub = %q, req = %q, timeout = 60, handler_sleep = 60 } } } }
    ]]):format(script, out, sub_s, req_s))
    local held = {}
    local srv = assert(nats.serve(req_s, function(req)
      held[#held + 1] = req
      task.sleep(1.5) -- answers after the child's unit was force-closed
      return { status = 200, body = "too late" }
    end))
    assert(nats.flush(2))
    local pidfile = dir .. "/cancel.pid"
    assert(os.execute(("AE_LOG_LEVEL=DEBUG AE_HTTP_LISTEN=127.0.0.1:0 AE_CONSOLE_SOCKET=%s/c.sock %s run -c %s " ..
      ">%s 2>&1 & echo $! > %s"):format(q(dir), q(child.aengine), q(dir .. "/cancel_engine.lua"), q(log),
      q(pidfile))))
    local pid = tonumber(read(pidfile))
    assert.is_true(eventually(function() return #held == 1 end, 10), read(log))
    for i = 1, 5 do assert(nats.publish(sub_s, { n = i })) end
    assert.is_true(eventually(function() return read(out):find("msg 5\n", 1, true) ~= nil end), read(log))
    os.execute("kill -TERM " .. pid)
    local publisher = task.spawn(function() -- messages keep coming while it drains and closes
      for i = 6, 400 do
        nats.publish(sub_s, { n = i })
        if i % 20 == 0 then task.sleep(0.01) end
      end
    end)
    publisher:wait()
    local exited = eventually(function() return not os.execute("kill -0 " .. pid .. " 2>/dev/null") end, 10)
    if not exited then os.execute("kill -KILL " .. pid) end
    assert.is_true(exited, "the child engine did not exit: " .. read(log))
    local text, logtext = read(out), read(log)
    assert.is_nil(text:find("reply ", 1, true), text) -- the request's task never resumed: cancelled
    assert.matches("request", text, 1, true)
    assert.is_nil(logtext:find("ERROR: AddressSanitizer", 1, true), logtext)
    assert.is_nil(logtext:find("runtime error", 1, true), logtext)
    assert.is_nil(logtext:find("LeakSanitizer", 1, true), logtext)
    srv:unsubscribe()
  end)
end)
