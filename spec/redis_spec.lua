-- ae.redis against the real redis-server of tests/servers.sh
-- (AE_TEST_REDIS_URL, REDIS_HOSTNAME) plus extra servers from
-- spec.helpers.redis_server for AUTH and restart cases.
local redis = require "ae.redis"
local task = require "ae.task"
local server = require "spec.helpers.redis_server"
local child = require "spec.helpers.child"

local URL = assert(os.getenv("AE_TEST_REDIS_URL"), "AE_TEST_REDIS_URL is not set (use tests/run_spec.sh)")
local PORT = assert(tonumber(URL:match(":(%d+)$")))

local function key(s)
  return "ae:redis_spec:" .. s
end

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(err)
end

describe("ae.redis", function()
  local r

  before_each(function()
    r = redis.connect { url = URL, name = "spec" }
  end)

  describe("parse", function()
    it("takes a bare host with the original's port 6379 and db 0", function()
      assert.same({ host = "redis", port = 6379, db = 0 }, redis.parse("redis"))
    end)

    it("takes host:port", function()
      assert.same({ host = "10.0.0.5", port = 6390, db = 0 }, redis.parse("10.0.0.5:6390"))
    end)

    it("takes a redis:// URL with password and db", function()
      assert.same({ host = "h", port = 6380, db = 2, password = "p@ss:word" },
        redis.parse("redis://:p%40ss:word@h:6380/2"))
      assert.same({ host = "h", port = 6379, db = 0, password = "pw", user = "bob" },
        redis.parse("redis://bob:pw@h"))
      assert.same({ host = "h", port = 6379, db = 0 }, redis.parse("redis://h/"))
      assert.same({ host = "::1", port = 7000, db = 1 }, redis.parse("redis://[::1]:7000/1"))
    end)

    it("rejects bad addresses with a reason", function()
      assert.same({ nil, "bad port 'x' in 'h:x'" }, { redis.parse("h:x") })
      assert.same({ nil, "bad port '70000' in 'h:70000'" }, { redis.parse("h:70000") })
      assert.same({ nil, "unsupported scheme 'http' in 'http://h'" }, { redis.parse("http://h") })
      assert.same({ nil, "bad database 'x' in 'redis://h/x'" }, { redis.parse("redis://h/x") })
      assert.same({ nil, "empty address" }, { redis.parse("  ") })
      assert.same({ nil, "no host in 'redis://:6379'" }, { redis.parse("redis://:6379") })
      assert.is_nil((redis.parse(42)))
    end)
  end)

  describe("connect", function()
    it("returns the same client for the same name in a unit", function()
      local a = redis.connect("main")
      assert.equal(a, redis.connect("main"))
      assert.equal("main", a.name)
    end)

    it("uses REDIS_HOSTNAME for main (host:port or URL)", function()
      local m = redis.connect("main")
      assert.equal("127.0.0.1", m.host)
      assert.equal(PORT, m.port)
      assert.equal("PONG", m:ping())
    end)

    it("raises for an unknown name", function()
      assert.matches("ae.redis: nope: not configured %(set redis.nope in the engine config%)",
        errmsg(redis.connect, "nope"))
    end)

    it("raises for bad options", function()
      assert.matches("bad port", errmsg(redis.connect, { url = "h:0" }))
      assert.matches("timeout must be a positive number",
        errmsg(redis.connect, { url = URL, timeout = -1 }))
      assert.matches("expects a connection name or an options table",
        errmsg(redis.connect, 42))
    end)
  end)

  describe("replies", function()
    it("maps status, bulk, integer and nil", function()
      assert.equal("OK", r:call("SET", key("a"), "v", "EX", 300))
      assert.equal("v", r:get(key("a")))
      assert.equal(1, r:exists(key("a")))
      assert.is_true(math.type(r:exists(key("a"))) == "integer")
      r:del(key("missing"))
      assert.is_nil(r:get(key("missing")))
      assert.equal("PONG", r:ping())
    end)

    it("maps arrays to lists, keeping nil elements as redis.null", function()
      r:del(key("l"))
      r:rpush(key("l"), "a", "b")
      assert.same({ "a", "b" }, r:call("LRANGE", key("l"), 0, -1))
      r:set(key("m1"), "1")
      r:del(key("m2"))
      local got = r:mget(key("m1"), key("m2"), key("m1"))
      assert.equal(3, #got)
      assert.equal("1", got[1])
      assert.equal(redis.null, got[2])
      assert.equal("1", got[3])
      assert.same({}, r:call("LRANGE", key("nothing"), 0, -1))
    end)

    it("maps nested arrays and error elements", function()
      local got = r:eval("return {1, {'x', {2}}, redis.error_reply('inner'), false}", 0)
      assert.equal(1, got[1])
      assert.same({ "x", { 2 } }, got[2])
      assert.is_true(redis.is_error(got[3]))
      assert.matches("inner$", got[3].err)
      assert.equal(redis.null, got[4])
      assert.equal(4, #got)
    end)

    it("hash commands as methods", function()
      r:del(key("h"))
      assert.equal(2, r:hset(key("h"), "f1", "v1", "f2", 2))
      local flat = r:hgetall(key("h"))
      local h = {}
      for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
      assert.same({ f1 = "v1", f2 = "2" }, h)
      assert.equal(1, r:del(key("h")))
    end)

    it("is binary safe (NUL bytes, every byte value)", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local v = "\0a\0\r\n" .. table.concat(bytes) .. "\0"
      r:set(key("bin\0key"), v)
      assert.equal(v, r:get(key("bin\0key")))
      assert.equal(#v, r:strlen(key("bin\0key")))
    end)

    it("stores and reads 5 MB values", function()
      local v = string.rep("0123456789abcdef", 5 * 1024 * 1024 // 16) .. "end"
      assert.equal("OK", r:set(key("big"), v, "EX", 60))
      local got = r:get(key("big"))
      assert.equal(#v, #got)
      assert.is_true(got == v)
      r:del(key("big"))
    end)
  end)

  describe("arguments", function()
    it("sends integers without a decimal point and floats with %.17g", function()
      r:set(key("n"), 300)
      assert.equal("300", r:get(key("n")))
      r:set(key("n"), 1.5)
      assert.equal("1.5", r:get(key("n")))
      r:set(key("n"), 0.1)
      assert.equal("0.10000000000000001", r:get(key("n")))
      r:set(key("n"), -7)
      assert.equal(-6, r:incr(key("n")))
      r:set(key("n"), math.mininteger)
      assert.equal(tostring(math.mininteger), r:get(key("n")))
    end)

    it("raises on garbage arguments without sending anything", function()
      assert.matches("ae.redis: call: argument #3 is a boolean %(strings and numbers only%)",
        errmsg(r.call, r, "SET", key("g"), true))
      assert.matches("argument #3 is a table", errmsg(r.set, r, key("g"), {}))
      assert.matches("argument #2 is a function", errmsg(r.get, r, print))
      assert.matches("argument #3 is a nil", errmsg(r.call, r, "SET", key("g"), nil))
      assert.matches("argument #3 is NaN", errmsg(r.call, r, "SET", key("g"), 0 / 0))
      assert.matches("the command name must be a non%-empty string", errmsg(r.call, r, ""))
      assert.matches("the command name must be a non%-empty string", errmsg(r.call, r, 12))
      assert.matches("no command name", errmsg(r.call, r))
      assert.matches("use r:get%(...%), not r.get", errmsg(r.get, key("g")))
      assert.is_nil(r:get(key("g")))
    end)

    it("refuses commands that would break the shared connection", function()
      assert.matches("SELECT is not supported", errmsg(r.call, r, "select", 1))
      assert.matches("SUBSCRIBE is not supported", errmsg(r.subscribe, r, "x"))
      assert.matches("AUTH is not supported", errmsg(r.auth, r, "x"))
      assert.matches("MULTI is only allowed inside r:pipeline", errmsg(r.multi, r))
      assert.matches("EXEC is only allowed inside r:pipeline", errmsg(r.exec, r))
    end)
  end)

  describe("errors", function()
    it("raises Redis error replies with Redis's text", function()
      local e = errmsg(r.call, r, "GET")
      assert.matches("ae.redis: ERR wrong number of arguments for 'get' command", e, 1, true)
      r:set(key("s"), "x")
      assert.matches("ae.redis: WRONGTYPE Operation against a key holding the wrong kind of value",
        errmsg(r.lpush, r, key("s"), "y"), 1, true)
      assert.matches("ae.redis: ERR unknown command", errmsg(r.call, r, "NOSUCHCOMMAND", "a"), 1, true)
      -- the connection is fine afterwards
      assert.equal("x", r:get(key("s")))
    end)

    it("points the error at the caller's line", function()
      local e = errmsg(function()
        local v = r:call("GET")
        return v
      end)
      assert.matches("redis_spec.lua:%d+: ae.redis: ERR", e)
    end)

    it("raises after the command timeout and keeps replies in order afterwards", function()
      local slow = redis.connect { url = URL, name = "slow", timeout = 0.2 }
      local t0 = os.time()
      local e = errmsg(slow.call, slow, "BLPOP", key("nothing"), "0.6")
      assert.matches("ae.redis: slow: timeout after 0.2 s waiting for BLPOP (no reply)", e, 1, true)
      assert.is_true(os.time() - t0 <= 2)
      -- the late reply to BLPOP (nil) is dropped, not given to the next
      -- command (which waits behind the BLPOP on the shared connection)
      local fast = redis.connect { url = URL, name = "slow", timeout = 5 }
      assert.equal("OK", fast:set(key("order"), "after"))
      assert.equal("after", fast:get(key("order")))
      assert.equal("PONG", fast:ping())
    end)
  end)

  describe("pipelines", function()
    it("runs a function's commands in one round trip", function()
      local res = r:pipeline(function(p)
        p:set(key("p1"), 1)
        p:get(key("p1"))
        p:call("INCR", key("p1"))
      end)
      assert.same({ "OK", "1", 2 }, res)
    end)

    it("takes a list of commands", function()
      assert.same({ "OK", "1" }, r:pipeline { { "SET", key("p2"), "1" }, { "GET", key("p2") } })
    end)

    it("keeps nil replies as redis.null and error replies as error values", function()
      r:set(key("p3"), "str")
      r:del(key("p4"))
      local res = r:pipeline(function(p)
        p:get(key("p4"))
        p:lpush(key("p3"), "x")
        p:get(key("p3"))
      end)
      assert.equal(3, #res)
      assert.equal(redis.null, res[1])
      assert.is_true(redis.is_error(res[2]))
      assert.matches("^WRONGTYPE", res[2].err)
      assert.matches("^ae.redis: WRONGTYPE", tostring(res[2]))
      assert.equal("str", res[3])
      assert.is_false(redis.is_error(res[3]))
    end)

    it("allows MULTI/EXEC inside a pipeline", function()
      local res = r:pipeline(function(p)
        p:multi()
        p:set(key("tx"), "a")
        p:append(key("tx"), "b")
        p:exec()
      end)
      assert.same({ "OK", "QUEUED", "QUEUED", { "OK", 2 } }, res)
      assert.equal("ab", r:get(key("tx")))
    end)

    it("returns an empty list for no commands", function()
      assert.same({}, r:pipeline(function() end))
    end)

    it("raises on garbage before sending anything", function()
      r:del(key("pg"))
      assert.matches("pipeline command #2: argument #3 is a nil",
        errmsg(r.pipeline, r, function(p)
          p:set(key("pg"), 1)
          p:set(key("pg"), nil)
        end))
      assert.matches("pipeline command #2 is a string, not a list",
        errmsg(r.pipeline, r, { { "GET", "x" }, "GET" }))
      assert.matches("pipeline command #1: argument #2 is a boolean",
        errmsg(r.pipeline, r, { { "GET", false } }))
      assert.matches("pipeline command #1: SELECT is not supported",
        errmsg(r.pipeline, r, { { "SELECT", 1 } }))
      assert.matches("pipeline expects a function or a list", errmsg(r.pipeline, r, 3))
      assert.is_nil(r:get(key("pg")))
    end)

    it("pipelines thousands of commands", function()
      local res = r:pipeline(function(p)
        for i = 1, 5000 do p:set(key("pp" .. i), i) end
        for i = 1, 5000 do p:get(key("pp" .. i)) end
      end)
      assert.equal(10000, #res)
      for i = 1, 5000 do assert.equal(tostring(i), res[5000 + i]) end
    end)
  end)

  describe("databases", function()
    it("SELECTs the db of the URL on connection", function()
      local db2 = redis.connect { url = URL .. "/2", name = "db2" }
      db2:set(key("dbkey"), "in2")
      assert.equal("in2", db2:get(key("dbkey")))
      r:del(key("dbkey"))
      assert.is_nil(r:get(key("dbkey")))
      local db3 = redis.connect { url = URL, db = 3, name = "db3" }
      assert.is_nil(db3:get(key("dbkey")))
      assert.equal("in2", redis.connect({ url = URL .. "/2", name = "db2" }):get(key("dbkey")))
      db2:del(key("dbkey"))
    end)
  end)

  describe("concurrency", function()
    it("serves 1000 tasks issuing commands at once", function()
      local fns = {}
      for i = 1, 1000 do
        fns[i] = function()
          r:set(key("c" .. i), "v" .. i, "EX", 60)
          return r:get(key("c" .. i))
        end
      end
      local results, _, nerrors = task.gather(fns)
      assert.equal(0, nerrors)
      for i = 1, 1000 do assert.equal("v" .. i, results[i]) end
    end)

    it("shares one connection per name and address across clients", function()
      local a = redis.connect { url = URL, name = "shared" }
      local b = redis.connect { url = URL, name = "shared" }
      a:ping()
      b:ping()
      local n = 0
      for _, c in ipairs(redis.status()) do
        if c.name == "shared" and c.port == PORT then
          n = n + 1
          assert.equal("ready", c.state)
        end
      end
      assert.equal(1, n)
      assert.equal("ready", a:state())
    end)
  end)

  describe("metrics", function()
    it("counts commands and errors per connection name", function()
      local metrics = require "ae.metrics"
      local m = redis.connect { url = URL, name = "metered" }
      m:ping()
      local commands = metrics.get("aengine_redis_commands")
      local errors = metrics.get("aengine_redis_errors")
      local c0 = commands:value { name = "metered" }
      local e0 = errors:value { name = "metered" }
      m:set(key("m"), "1")
      pcall(m.call, m, "GET")
      m:pipeline { { "GET", key("m") }, { "INCR", key("m") } }
      assert.equal(c0 + 4, commands:value { name = "metered" })
      assert.equal(e0 + 1, errors:value { name = "metered" })
      assert.equal(1, metrics.get("aengine_redis_connected"):value { name = "metered" })
      assert.matches('aengine_redis_commands_total{name="metered"}', metrics.render(), 1, true)
    end)
  end)

  describe("AUTH", function()
    local s
    setup(function() s = server.start { password = "s3cret-pw" } end)
    teardown(function() s:destroy() end)

    it("authenticates with the URL's password", function()
      local c = redis.connect { url = "redis://:s3cret-pw@127.0.0.1:" .. s.port .. "/1", name = "auth" }
      assert.equal("OK", c:set(key("auth"), "yes"))
      assert.equal("yes", c:get(key("auth")))
      assert.equal("yes", s:cli("-n", "1", "GET", key("auth")))
    end)

    it("authenticates with the password option", function()
      local c = redis.connect { url = s.url, password = "s3cret-pw", name = "auth2" }
      assert.equal("PONG", c:ping())
    end)

    it("raises AUTH failures with Redis's text", function()
      local c = redis.connect { url = s.url, password = "wrong-pw", name = "badauth", timeout = 2 }
      local e = errmsg(c.ping, c)
      assert.matches("ae.redis: badauth: AUTH failed: WRONGPASS", e, 1, true)
      assert.is_nil(e:find("wrong%-pw"))
    end)

    it("raises NOAUTH without a password", function()
      local c = redis.connect { url = s.url, name = "noauth" }
      assert.matches("ae.redis: NOAUTH", errmsg(c.ping, c), 1, true)
    end)
  end)

  describe("server restart", function()
    local s
    setup(function() s = server.start() end)
    teardown(function() s:destroy() end)

    it("reconnects by itself; commands during the outage raise after their timeout", function()
      local c = redis.connect { url = s.url, name = "restart", timeout = 0.5 }
      assert.equal("OK", c:set(key("r"), "1"))
      s:stop()
      task.sleep(0.05)
      local e = errmsg(c.get, c, key("r"))
      assert.matches("ae.redis: restart: timeout after 0.5 s waiting for GET", e, 1, true)
      assert.matches("refused", e)
      s:start()
      local c2 = redis.connect { url = s.url, name = "restart", timeout = 5 }
      assert.is_nil(c2:get(key("r"))) -- the restarted server has no data (no persistence)
      assert.equal("OK", c2:set(key("r"), "2"))
      assert.equal("2", c:get(key("r")))
    end)

    it("fails in-flight commands when the connection drops, then recovers", function()
      local c = redis.connect { url = s.url, name = "drop", timeout = 5 }
      assert.equal("PONG", c:ping())
      local t = task.spawn(function() return c:call("BLPOP", key("never"), 0) end)
      task.sleep(0.1)
      s:stop()
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.matches("ae.redis: drop: connection lost before the reply to BLPOP", tostring(err), 1, true)
      s:start()
      assert.equal("PONG", c:ping())
    end)

    it("times out on the engine clock (manual clock)", function()
      local clock = require "ae.clock"
      local c = redis.connect { url = s.url, name = "clocked", timeout = 30 }
      assert.equal("PONG", c:ping())
      s:stop()
      task.sleep(0.05) -- let the client see the connection close
      finally(function() clock.unfreeze() end)
      clock.freeze()
      local t = task.spawn(function() return c:get(key("x")) end)
      local t0 = clock.monotonic()
      clock.advance(29)
      assert.not_equal("done", t:status())
      clock.advance(2)
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.matches("ae.redis: clocked: timeout after 30 s waiting for GET", tostring(err), 1, true)
      assert.is_true(clock.monotonic() - t0 < 5)
      s:start()
      assert.equal("PONG", c:ping())
    end)

    it("fails SELECT of a database the server does not have", function()
      local c = redis.connect { url = s.url .. "/999", name = "baddb", timeout = 2 }
      assert.matches("ae.redis: baddb: SELECT 999 failed: ERR DB index is out of range", errmsg(c.ping, c), 1, true)
    end)

    it("queues commands issued while down and sends them once reconnected", function()
      local c = redis.connect { url = s.url, name = "queue", timeout = 5 }
      assert.equal("PONG", c:ping())
      s:stop()
      task.sleep(0.05)
      local t = task.spawn(function() return c:incr(key("q")) end)
      task.sleep(0.3)
      s:start()
      local ok, v = t:wait()
      assert.is_true(ok)
      assert.equal(1, v)
    end)
  end)

  describe("engine configuration (child engine)", function()
    it("reads redis.<name> from the config file (string and table forms) and env fallbacks", function()
      local script = child.write([[
        local redis = require "ae.redis"
        local out = {}
        local ok, err = pcall(function()
        local a = redis.connect("cache2")
        a:set("ae:redis_spec:cfg", "x")
        out[#out + 1] = "cache2 db=" .. a.db .. " get=" .. a:get("ae:redis_spec:cfg")
        local b = redis.connect("main")
        out[#out + 1] = "main port=" .. b.port .. " db=" .. b.db .. " get=" .. tostring(b:get("ae:redis_spec:cfg"))
        local cc = redis.connect("customer_cache")
        out[#out + 1] = "customer_cache " .. cc.host .. ":" .. cc.port .. " " .. cc:ping()
        local ok2, err2 = pcall(function() return redis.connect("tnba_feedback") end)
        out[#out + 1] = "tnba " .. tostring(ok2) .. " " .. tostring(err2)
        a:del("ae:redis_spec:cfg")
        end)
        if not ok then out[#out + 1] = "FAILED: " .. tostring(err) end
        print(table.concat(out, "\n"))
        require("ae.engine").exit(0)
      ]])
      local cfg = child.write(string.format([[
        return { redis = {
          cache2 = { url = "redis://127.0.0.1:%d", db = 4, timeout = 3 },
          main = "redis://127.0.0.1:%d/5",
        } }
      ]], PORT, PORT))
      local out, rc = child.run({ "run", "-c", cfg, script }, {
        REDIS_HOSTNAME = "", REDIS_CUSTOMER_CACHE_HOSTNAME = "127.0.0.1:" .. PORT,
        REDIS_TNBA_FEEDBACK_HOSTNAME = "", AE_LOG_LEVEL = "WARNING",
      })
      os.remove(script)
      os.remove(cfg)
      assert.equal(0, rc, out)
      assert.matches("cache2 db=4 get=x", out, 1, true)
      assert.matches("main port=" .. PORT .. " db=5 get=nil", out, 1, true)
      assert.matches("customer_cache 127.0.0.1:" .. PORT .. " PONG", out, 1, true)
      assert.matches("tnba false", out, 1, true)
      assert.matches("not configured (set redis.tnba_feedback in the engine config or $REDIS_TNBA_FEEDBACK_HOSTNAME)",
        out, 1, true)
    end)

    it("never logs the password", function()
      local s = server.start { password = "topsecret-42" }
      local script = child.write([[
        local redis = require "ae.redis"
        local r = redis.connect("main")
        local ok, err = pcall(r.ping, r)
        print("ping", ok, err)
        require("ae.engine").exit(0)
      ]])
      local out, rc = child.run({ "run", script }, {
        REDIS_HOSTNAME = "redis://:bad-topsecret-43@127.0.0.1:" .. s.port, AE_LOG_LEVEL = "DEBUG",
      })
      os.remove(script)
      s:destroy()
      assert.equal(0, rc, out)
      assert.matches("ping\tfalse", out, 1, true)
      assert.matches("AUTH failed", out, 1, true)
      assert.is_nil(out:find("topsecret", 1, true), out)
    end)

    it("drops the reply safely when the unit closes with a command pending", function()
      local script = child.write([[
        local redis = require "ae.redis"
        local task = require "ae.task"
        local r = redis.connect("main")
        for i = 1, 20 do
          task.spawn(function() r:call("BLPOP", "ae:redis_spec:never" .. i, 1) end)
        end
        task.sleep(0.1)
        print("exiting with commands pending")
        require("ae.engine").exit(0)
      ]])
      local out, rc = child.run({ "run", script }, { REDIS_HOSTNAME = URL })
      os.remove(script)
      assert.equal(0, rc, out)
      assert.matches("exiting with commands pending", out, 1, true)
      -- the shared server is still fine
      assert.equal("PONG", r:ping())
    end)
  end)
end)
