-- ae.http client against a local test server (spec/helpers/http_test_server.py):
-- plain HTTP, HTTPS with a certificate made by openssl at test time, and
-- HTTPS that requires a client certificate.
local http = require "ae.http"
local task = require "ae.task"
local clock = require "ae.clock"
local json = require "ae.json"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local srv, pipe, base, tls_base, mtls_base

local function start_server()
  local dir = os.tmpname()
  os.remove(dir)
  pipe = assert(io.popen("exec /usr/bin/python3 " .. here .. "helpers/http_test_server.py " .. dir, "r"))
  local line = pipe:read("l")
  assert(line, "the test HTTP server did not start")
  return json.decode(line)
end

local function elapsed(fn)
  local t0 = clock.monotonic()
  local a, b = fn()
  return clock.monotonic() - t0, a, b
end

setup(function()
  srv = start_server()
  base = "http://127.0.0.1:" .. srv.http
  tls_base = "https://127.0.0.1:" .. srv.https
  mtls_base = "https://127.0.0.1:" .. srv.mtls
end)

teardown(function()
  if srv then os.execute("kill " .. srv.pid) end
  if pipe then pipe:close() end
end)

describe("ae.http.request", function()
  it("returns status, lower-cased headers, body, url and time", function()
    local res, err = http.get(base .. "/ok")
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.equal("hello", res.body)
    assert.equal("text/plain", res.headers["content-type"])
    assert.equal("5", res.headers["content-length"])
    assert.equal(base .. "/ok", res.url)
    assert.is_true(res.time >= 0 and res.time < 5)
    assert.is_true(res:ok())
  end)

  it("url-encodes the query and appends it, also after an existing query", function()
    local res = assert(http.get(base .. "/echo?z=0", { query = { a = 1, b = "x y", c = { "p", "q&r" } } }))
    local e = res:json()
    assert.equal("z=0&a=1&b=x%20y&c=p&c=q%26r", e.query)
    assert.same({ "x y" }, e.args.b)
    assert.same({ "p", "q&r" }, e.args.c)
  end)

  it("sends method, headers and raw body (no Content-Type unless given)", function()
    local res = assert(http.request {
      method = "PUT", url = base .. "/echo", headers = { ["X-Token"] = "t1", ["X-Num"] = 5 }, body = "raw\0bytes",
    })
    local e = res:json()
    assert.equal("PUT", e.method)
    assert.equal("t1", e.headers["x-token"])
    assert.equal("5", e.headers["x-num"])
    assert.equal("raw\0bytes", e.body)
    assert.is_nil(e.headers["content-type"])
  end)

  it("json= encodes the body and sets Content-Type; res:json() decodes", function()
    local res = assert(http.post(base .. "/echo", { json = { name = "edge", n = 3 } }))
    local e = assert(res:json())
    assert.equal("POST", e.method)
    assert.equal("application/json", e.headers["content-type"])
    assert.same({ name = "edge", n = 3 }, json.decode(e.body))
  end)

  it("res:json() returns nil, err for a body that is not JSON", function()
    local res = assert(http.get(base .. "/ok"))
    local v, err = res:json()
    assert.is_nil(v)
    assert.matches("^ae.http: response body is not JSON", err)
  end)

  it("form= sends application/x-www-form-urlencoded with + for spaces", function()
    local res = assert(http.post(base .. "/echo", {
      form = { grant_type = "client_credentials", scope = "public api", x = "a&b=c" },
    }))
    local e = res:json()
    assert.equal("application/x-www-form-urlencoded", e.headers["content-type"])
    assert.equal("grant_type=client_credentials&scope=public+api&x=a%26b%3Dc", e.body)
  end)

  it("has get/post/put/patch/delete/head shortcuts", function()
    for _, m in ipairs { "get", "post", "put", "patch", "delete" } do
      local res = assert(http[m](base .. "/echo"))
      assert.equal(m:upper(), res:json().method)
    end
    local res = assert(http.head(base .. "/ok"))
    assert.equal(200, res.status)
    assert.equal("", res.body)
  end)

  it("follows redirects by default and reports the final url", function()
    local res = assert(http.get(base .. "/redirect/3"))
    assert.equal(200, res.status)
    assert.equal("redirected", res.body)
    assert.equal(base .. "/redirect/0", res.url)
  end)

  it("follow = false returns the redirect itself", function()
    local res = assert(http.get(base .. "/redirect/2", { follow = false }))
    assert.equal(302, res.status)
    assert.equal("/redirect/1", res.headers.location)
  end)

  it("fails past max_redirects", function()
    local res, err = http.get(base .. "/redirect/4", { max_redirects = 2 })
    assert.is_nil(res)
    assert.matches("^ae.http: Maximum %(2%) redirects followed", err)
  end)

  it("returns 4xx/5xx as responses with their bodies", function()
    for _, code in ipairs { 400, 404, 422, 500, 503 } do
      local res, err = http.get(base .. "/status/" .. code)
      assert.is_nil(err)
      assert.equal(code, res.status)
      assert.is_false(res:ok())
      assert.same({ error = "status " .. code }, res:json())
    end
  end)

  it("times out a slow endpoint with curl's message and the url", function()
    local dt, res, err = elapsed(function() return http.get(base .. "/slow?delay=3", { timeout = 0.3 }) end)
    assert.is_nil(res)
    assert.matches("^ae.http: Operation timed out after 300 milliseconds with 0 bytes received", err)
    assert.truthy(err:find("(" .. base .. "/slow?delay=3)", 1, true))
    assert.is_true(dt >= 0.25 and dt < 2, "took " .. dt)
  end)

  it("reads a trickling body to the end, or times out in the middle of it", function()
    local res = assert(http.get(base .. "/trickle?n=10&interval=0.03", { timeout = 5 }))
    assert.equal(string.rep("x", 10), res.body)
    local r2, err = http.get(base .. "/trickle?n=50&interval=0.05", { timeout = 0.5 })
    assert.is_nil(r2)
    local got = tonumber(err:match("with (%d+) bytes received"))
    assert.is_true(got > 0 and got < 50, err)
  end)

  it("downloads a 10 MB body intact", function()
    local res = assert(http.get(base .. "/large?size=10485760"))
    assert.equal(10485760, #res.body)
    assert.equal(string.rep("0123456789abcdef", 4), res.body:sub(1, 64))
    assert.equal("0123456789abcdef", res.body:sub(-16))
  end)

  it("uploads a large body", function()
    local big = string.rep("z", 3 * 1024 * 1024)
    local res = assert(http.post(base .. "/echo", { body = big, timeout = 20 }))
    assert.equal(#big, #res:json().body)
  end)

  it("connection refused -> nil, message with the url", function()
    local url = "http://127.0.0.1:" .. srv.closed .. "/x"
    local res, err = http.get(url)
    assert.is_nil(res)
    assert.matches("^ae%.http: .*Couldn't connect to server", err)
    assert.truthy(err:find("(" .. url .. ")", 1, true))
  end)

  it("never puts credentials of the url in errors", function()
    local res, err = http.get("http://bob:hunter2secret@127.0.0.1:" .. srv.closed .. "/x")
    assert.is_nil(res)
    assert.falsy(err:find("hunter2secret", 1, true))
    assert.falsy(err:find("bob", 1, true))
    assert.truthy(err:find("(http://127.0.0.1:" .. srv.closed .. "/x)", 1, true))
  end)

  it("auth = {user, password} sends basic auth", function()
    local res = assert(http.get(base .. "/auth", { auth = { user = "user", password = "p@ss w0rd" } }))
    assert.equal(200, res.status)
    assert.equal("welcome", res.body)
    res = assert(http.get(base .. "/auth", { auth = { user = "user", password = "wrong" } }))
    assert.equal(401, res.status)
  end)

  it("an unparsable url is a soft error", function()
    local res, err = http.get("http://[::1")
    assert.is_nil(res)
    assert.matches("^ae%.http: ", err)
  end)

  it("raises on misuse", function()
    assert.has_error(function() http.request {} end)
    assert.has_error(function() http.request { url = base, body = "a", json = {} } end)
    assert.has_error(function() http.request { url = base, headers = { ["X"] = "a\r\nInjected: 1" } } end)
    assert.has_error(function() http.request { url = base, timeout = -1 } end)
    assert.has_error(function() http.request { url = base, query = { a = function() end } } end)
    assert.has_error(function() http.request { url = base, method = "G T" } end)
  end)

  it("refuses other protocols than http and https", function()
    local res, err = http.get("file:///etc/passwd")
    assert.is_nil(res)
    assert.matches("^ae%.http: Protocol .*not supported", err)
  end)
end)

describe("ae.http TLS", function()
  it("rejects a server whose CA is unknown by default", function()
    local res, err = http.get(tls_base .. "/ok")
    assert.is_nil(res)
    assert.matches("^ae%.http: SSL certificate problem", err)
  end)

  it("accepts it with verify = false", function()
    local res = assert(http.get(tls_base .. "/ok", { verify = false }))
    assert.equal("hello", res.body)
  end)

  it("accepts it when its CA is given", function()
    local res = assert(http.get(tls_base .. "/ok", { ca = srv.ca }))
    assert.equal("hello", res.body)
  end)

  it("checks the host name against the certificate", function()
    -- the certificate names localhost and 127.0.0.1, not 127.0.0.2
    local url = "https://127.0.0.2:" .. srv.https_other .. "/ok"
    local res, err = http.get(url, { ca = srv.ca, connect_timeout = 2 })
    assert.is_nil(res)
    assert.matches("^ae%.http: SSL: .*subject name.* target host name '127%.0%.0%.2'", err)
    assert.equal("hello", assert(http.get(url, { verify = false })).body)
  end)

  it("sends a client certificate", function()
    local res, err = http.get(mtls_base .. "/ok", { ca = srv.ca })
    assert.is_nil(res)
    assert.matches("^ae%.http: ", err)
    res = assert(http.get(mtls_base .. "/ok", { ca = srv.ca, cert = srv.client_cert, key = srv.client_key }))
    assert.equal("hello", res.body)
  end)
end)

describe("ae.http.client", function()
  it("joins base_url and paths and merges default headers", function()
    local c = http.client { base_url = base .. "/", headers = { ["X-A"] = "1", ["X-B"] = "2" } }
    local e = assert(c:get("/echo", { headers = { ["x-b"] = "override" } })):json()
    assert.equal("/echo", e.path)
    assert.equal("1", e.headers["x-a"])
    assert.equal("override", e.headers["x-b"])
    e = assert(c:post("echo", { json = { k = true } })):json()
    assert.equal("POST", e.method)
    assert.equal('{"k":true}', e.body)
  end)

  it("keeps its own cookie jar", function()
    local c = http.client { base_url = base, cookies = true }
    local other = http.client { base_url = base, cookies = true }
    assert(c:get("/cookies/set", { query = { session = "abc123", lang = "en" } }))
    assert.same({ session = "abc123", lang = "en" }, assert(c:get("/cookies")):json())
    assert.same({}, assert(other:get("/cookies")):json())
    assert.same({}, assert(http.get(base .. "/cookies")):json())
    local jar = c:cookies()
    table.sort(jar, function(a, b) return a.name < b.name end)
    assert.equal(2, #jar)
    assert.equal("lang", jar[1].name)
    assert.equal("en", jar[1].value)
    assert.equal("session", jar[2].name)
    assert.equal("abc123", jar[2].value)
    assert.equal("/", jar[2].path)
    assert.equal("127.0.0.1", jar[2].domain)
    c:clear_cookies()
    assert.same({}, c:cookies())
    assert.same({}, assert(c:get("/cookies")):json())
  end)

  it("does not keep cookies unless asked", function()
    local c = http.client { base_url = base }
    assert(c:get("/cookies/set", { query = { a = "1" } }))
    assert.same({}, assert(c:get("/cookies")):json())
    assert.same({}, c:cookies())
  end)

  it("reuses the connection (keep-alive)", function()
    local c = http.client { base_url = base }
    local p1 = assert(c:get("/echo")):json().peer_port
    local p2 = assert(c:get("/echo")):json().peer_port
    assert.equal(p1, p2)
  end)

  it("caps transfers in flight and queues the rest", function()
    local c = http.client { base_url = base, max_in_flight = 2 }
    local fns, seen = {}, 0
    for i = 1, 6 do
      fns[i] = function()
        local res = assert(c:get("/slow", { query = { delay = 0.15, group = "cap" } }))
        return res.status
      end
    end
    fns[7] = function()
      task.sleep(0.05)
      local s = c:stats()
      seen = s.queued
      return s.in_flight
    end
    local results, errors = task.gather(fns)
    assert.same({}, errors)
    for i = 1, 6 do assert.equal(200, results[i]) end
    assert.equal(2, results[7])
    assert.equal(4, seen)
    local stats = assert(http.get(base .. "/stats?group=cap")):json()
    assert.equal(2, stats.max_active)
    assert.same({ in_flight = 0, queued = 0, max_in_flight = 2 }, c:stats())
  end)

  it("runs 200 requests concurrently", function()
    local c = http.client { base_url = base, max_in_flight = 200 }
    local fns = {}
    for i = 1, 200 do
      fns[i] = function()
        local res = assert(c:get("/echo", { query = { i = i } }))
        return res:json().args.i[1]
      end
    end
    local dt, results, errors = elapsed(function() return task.gather(fns) end)
    assert.same({}, errors)
    for i = 1, 200 do assert.equal(tostring(i), results[i]) end
    assert.is_true(dt < 20, "took " .. dt)
  end)

  it("rejects unknown options", function()
    assert.has_error(function() http.client { bse_url = "x" } end)
    assert.has_error(function() http.client { max_in_flight = 0 } end)
  end)
end)

describe("ae.http with the manual clock", function()
  after_each(function() clock.unfreeze() end)

  it("times out on the engine clock", function()
    clock.freeze()
    local t = task.spawn(function() return http.get(base .. "/slow?delay=2", { timeout = 60 }) end)
    task.sleep(0) -- let it start
    clock.advance(61, { settle = 0.05 })
    local ok, res, err = t:wait()
    assert.is_true(ok)
    assert.is_nil(res)
    assert.matches("timed out after 60000 milliseconds", err)
  end)
end)

describe("ae.http when the unit goes away", function()
  it("drops pending transfers cleanly when the engine exits", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
      local http = require "ae.http"
      local task = require "ae.task"
      local engine = require "ae.engine"
      local c = http.client { max_in_flight = 1 }
      for _ = 1, 3 do task.spawn(function() c:get("%s/slow?delay=5") end) end
      task.spawn(function() http.get("%s/slow?delay=5") end)
      task.sleep(0.2)
      engine.exit(7)
    ]]):format(base, base))
    f:close()
    local aengine = os.getenv("AE_TEST_AENGINE") or "aengine"
    local t0 = clock.monotonic()
    local ok, how, code = os.execute(aengine .. " exec " .. script .. " >/dev/null 2>&1")
    os.remove(script)
    assert.is_nil(ok)
    assert.equal("exit", how)
    assert.equal(7, code)
    assert.is_true(clock.monotonic() - t0 < 4)
  end)
end)
