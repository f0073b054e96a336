-- customer-cache (spec/customer-cache.md §6): the real unit over real NATS and
-- Redis. The VeloCloud and Bruin bridges are NATS stand-ins served by this
-- spec (scripted per case), so every behaviour case can be provoked exactly;
-- the end-to-end section at the bottom runs the real bridge units and their
-- simulators through spec.helpers.sandbox when they are present.
local nats = require "ae.nats"
local json = require "ae.json"
local redis = require "ae.redis"
local clock = require "ae.clock"
local engine = require "ae.engine"
local task = require "ae.task"
local customer_cache = require "lib.customer_cache"

local REDIS_URL = assert(os.getenv("AE_TEST_REDIS_URL"), "AE_TEST_REDIS_URL is not set (use tests/run_spec.sh)")
local CACHE_DB = 5 -- the `customer_cache` connection of the unit: its own db of the test redis
local SCRIPT = "scripts/capabilities/customer_cache.lua"
local UNIT = "customer_cache_spec"
local H1, H2, H3, H4 = "mettel.velocloud.net", "metvco02.mettel.net", "metvco03.mettel.net", "metvco04.mettel.net"
local GOLD, PLATINUM = "Active \u{2013} Gold Monitoring", "Active \u{2013} Platinum Monitoring"
local T0 = 1700000000

local cache = redis.connect { url = REDIS_URL .. "/" .. CACHE_DB, name = "customer_cache_spec" }

-- what the stand-ins answer and what they saw
local script, seen, slacks, subs

local function reset()
  script = { links = {}, enterprises = {}, info = {}, status = {} }
  seen = { links = {}, enterprises = {}, info = {}, status = {} }
  slacks = {}
end

local function ok(body) return { status = 200, body = body } end

local function link(host, ent, edge, serial, extra)
  local l = {
    host = host, enterpriseName = "Customer|9994|", enterpriseId = ent, enterpriseProxyId = json.null,
    enterpriseProxyName = json.null, edgeName = "edge" .. tostring(edge), edgeState = "CONNECTED",
    edgeSystemUpSince = "2020-09-14T05:07:40.000Z", edgeServiceUpSince = "2020-09-14T05:08:22.000Z",
    edgeLastContact = "2020-09-29T04:48:55.000Z", edgeId = edge, edgeSerialNumber = serial,
    edgeHASerialNumber = json.null, edgeModelNumber = "edge520", edgeLatitude = json.null,
    edgeLongitude = json.null, interface = "GE1", linkId = 5293,
  }
  for k, v in pairs(extra or {}) do l[k] = v end
  return l
end

-- a scripted answer: a table (the reply), a function(body) -> reply, or nil (no reply)
local function answer(entry, body)
  if type(entry) == "function" then return entry(body) end
  return entry
end

local function start_standins()
  subs = {
    assert(nats.serve("get.links.with.edge.info", function(req)
      seen.links[#seen.links + 1] = { host = req.body.host, at = clock.now() }
      local a = script.links[req.body.host]
      if a == nil then return ok(json.array {}) end
      return answer(a, req.body)
    end, { queue = "velocloud_bridge" })),
    assert(nats.serve("request.enterprises.edges", function(req)
      local b = req.body
      seen.enterprises[#seen.enterprises + 1] = b.host .. "/" .. tostring(b.enterprise_id)
      local a = script.enterprises[b.host .. "/" .. tostring(b.enterprise_id)]
      if a == nil then return ok(json.array {}) end
      return answer(a, b)
    end, { queue = "velocloud_bridge" })),
    assert(nats.serve("bruin.customer.get.info", function(req)
      local s = req.body.service_number
      seen.info[#seen.info + 1] = { serial = s, at = clock.now() }
      local a = script.info[s]
      if a == nil then return ok({ client_id = 9994, client_name = "METTEL/NEW YORK" }) end
      return answer(a, req.body)
    end, { queue = "bruin_bridge" })),
    assert(nats.serve("bruin.inventory.management.status", function(req)
      local b = req.body
      seen.status[#seen.status + 1] = b
      local a = script.status[b.service_number]
      if a == nil then return ok(PLATINUM) end
      return answer(a, b)
    end, { queue = "bruin_bridge" })),
    assert(nats.serve("notification.slack.request", function(req)
      slacks[#slacks + 1] = req.message
      return { status = 200 }
    end, { queue = "notifier" })),
  }
  assert(nats.flush(2))
end

local function stop_standins()
  for _, s in ipairs(subs or {}) do s:unsubscribe() end
  subs = nil
end

local function clear_cache()
  local keys = cache:keys("*")
  if #keys > 0 then cache:del(table.unpack(keys)) end
end

local function start_unit(config)
  local c = { redis = { url = REDIS_URL .. "/" .. CACHE_DB, name = "customer_cache" } }
  for k, v in pairs(config or {}) do c[k] = v end
  assert(engine.start_unit { name = UNIT, script = SCRIPT, config = c })
end

local function stop_unit()
  engine.stop_unit(UNIT)
  clock.advance(0.1)
end

-- let a refresh run to its end on the manual clock
local function settle(seconds)
  clock.advance(seconds or 5)
end

local function stored(host)
  local raw = cache:get(host)
  return raw and json.decode(raw) or nil
end

local function count(list, pred)
  local n = 0
  for _, v in ipairs(list) do
    if pred(v) then n = n + 1 end
  end
  return n
end

local function has(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

local function get(body)
  local msg = { request_id = "x1", body = body }
  if body == "absent" then msg.body = nil end
  return assert(nats.request("customer.cache.get", msg, { timeout = 5 }))
end

describe("customer-cache", function()
  before_each(function()
    reset()
    clear_cache()
    clock.freeze(T0)
    start_standins()
  end)

  after_each(function()
    stop_unit()
    stop_standins()
    clock.unfreeze()
  end)

  describe("refresh", function()
    it("runs at startup, then every 240 minutes, with a single job (case 1)", function()
      script.links[H1] = ok { link(H1, 1, 1, "VC1") }
      start_unit()
      settle()
      assert.equals(4, #seen.links)
      assert.same({ H1, H2, H3, H4 },
        { seen.links[1].host, seen.links[2].host, seen.links[3].host, seen.links[4].host })
      clock.advance(240 * 60 - 10)
      assert.equals(4, #seen.links)
      clock.advance(15)
      assert.equals(8, #seen.links) -- one job: exactly one more round
      assert.equals(T0 + 240 * 60, seen.links[5].at)
      clock.advance(240 * 60)
      assert.equals(12, #seen.links)
    end)

    it("sends the links requests in config order with timeout 300; non-2xx hosts are Slacked and skipped (case 2)",
      function()
        script.links[H1] = ok { link(H1, 1, 1, "VC1") }
        local first = true
        script.links[H2] = function()
          if first then
            first = false
            return nil -- no reply: the request is re-sent after its 300 s timeout
          end
          return { status = 400, body = "bad host" }
        end
        script.links[H3] = { status = 400, body = "bad host" }
        script.links[H4] = { status = 400, body = { error = "x" } }
        start_unit()
        settle(299)
        assert.equals(2, #seen.links)
        settle(4) -- 300 s timeout + 2 s backoff (policy 1/1/600)
        assert.equals(5, #seen.links)
        assert.equals(T0 + 302, seen.links[3].at)
        assert.same({ H1, H2, H2, H3, H4 }, { seen.links[1].host, seen.links[2].host, seen.links[3].host,
          seen.links[4].host, seen.links[5].host })
        local prefix = "Error while retrieving edges links in PRODUCTION environment: Error 400 - "
        assert.equals(3, count(slacks, function(m) return m:sub(1, #prefix) == prefix end))
        assert.truthy(has(slacks, prefix .. '{"error":"x"}'))
        assert.equals(1, #stored(H1))
        assert.is_nil(stored(H2))
        assert.is_nil(stored(H3))
      end)

    it("Slacks a host whose links request fails and still processes the others (case 3)", function()
      script.links[H1] = function() return nil end
      script.links[H2] = ok { link(H2, 5, 7, "VC7") }
      start_unit()
      settle(2000) -- attempts at 0 and 302; at 602 s (>= 600) the request fails
      assert.equals(2, count(seen.links, function(l) return l.host == H1 end))
      local msg = slacks[1]
      assert.matches("^An error occurred when requesting edge list from mettel%.velocloud%.net %-> ae%.nats: ", msg)
      assert.equals(1, #stored(H2))
      assert.is_nil(stored(H1))
    end)

    it("drops bad links: no last contact, no serial, no edge id, blacklisted; one candidate per edge (cases 4-8)",
      function()
        script.links[H1] = ok {
          link(H1, 1, 1, "VC1", { interface = "GE5" }),
          link(H1, 1, 2, "VC2", { edgeLastContact = "0000-00-00 00:00:00" }),
          link(H1, 1, 3, json.null),
          link(H1, 77, json.null, "VC4"),
          link(H1, 170, 3195, "VC5"),
          link(H1, 1, 1, "VC-OTHER", { edgeLastContact = "2021-01-01T00:00:00.000Z", interface = "GE6" }),
          link(H1, 1, 6, "VC6", { edgeLastContact = json.null }),
          link(H1, 2, 7, "VC7"),
        }
        script.enterprises[H1 .. "/1"] = ok {
          { id = 1, enterpriseId = 1, serialNumber = "VC1",
            links = { { id = 3216, edgeId = 1, logicalId = "82:b2:34:26:c6:b6:0000", interface = "GE5" },
              { id = 3217, edgeId = 1, logicalId = "82:b2:34:26:c6:b6:0001", interface = "GE6" } } },
        }
        start_unit()
        settle()
        table.sort(seen.enterprises)
        assert.same({ H1 .. "/1", H1 .. "/2" }, seen.enterprises) -- not 77 (no edge id), not 170 (blacklist)
        local entries = stored(H1)
        assert.equals(2, #entries)
        assert.same({ host = H1, enterprise_id = 1, edge_id = 1 }, entries[1].edge)
        assert.equals("VC1", entries[1].serial_number) -- the first link's data
        assert.equals("2020-09-29T04:48:55.000Z", entries[1].last_contact)
        assert.same({ { interface_name = "GE5", logical_id = "82:b2:34:26:c6:b6:0000" },
          { interface_name = "GE6", logical_id = "82:b2:34:26:c6:b6:0001" } }, entries[1].logical_ids)
        assert.same({ client_id = 9994, client_name = "METTEL/NEW YORK" }, entries[1].bruin_client_info)
        assert.same({ host = H1, enterprise_id = 2, edge_id = 7 }, entries[2].edge)
        assert.equals(0, #entries[2].logical_ids)
        assert.equals("[]", json.encode(entries[2].logical_ids))
        local serials = {}
        for _, s in ipairs(seen.info) do serials[#serials + 1] = s.serial end
        table.sort(serials)
        assert.same({ "VC1", "VC7" }, serials)
      end)

    it("keeps edges with logical_ids [] when request.enterprises.edges fails (case 9)", function()
      script.links[H1] = ok { link(H1, 1, 1, "VC1"), link(H1, 2, 2, "VC2") }
      script.enterprises[H1 .. "/1"] = { status = 500, body = "boom" }
      script.enterprises[H1 .. "/2"] = ok { { id = 2, links = { { interface = "GE1", logicalId = "aa:0000" } } } }
      start_unit()
      settle()
      assert.truthy(has(slacks, "Error while retrieving edge list in PRODUCTION environment: Error 500 - boom"))
      local entries = stored(H1)
      assert.equals(2, #entries)
      assert.equals("[]", json.encode(entries[1].logical_ids))
      assert.same({ { interface_name = "GE1", logical_id = "aa:0000" } }, entries[2].logical_ids)
    end)

    it("retries a run without candidates after 120-300 s, forever; Slacks from attempt 10 on (case 10)", function()
      script.links[H1] = ok { link(H1, 1, 1, json.null) }
      start_unit()
      settle(1)
      local starts = { seen.links[1].at }
      while #starts < 12 do
        local before = #seen.links
        clock.advance(5)
        if #seen.links > before then starts[#starts + 1] = seen.links[before + 1].at end
        assert.is_true(clock.now() - T0 < 12 * 305, "run not retried in time")
      end
      for i = 2, #starts do
        local gap = starts[i] - starts[i - 1]
        assert.is_true(gap >= 120 and gap <= 305, "gap " .. gap)
      end
      local text = "[customer-cache] Too many consecutive failures happened while trying to claim the list of " ..
        "edges from Velocloud"
      -- attempts 1..12 have failed by now (each fails at once): Slacks for attempts 10, 11 and 12
      assert.equals(3, count(slacks, function(m) return m == text end))
      assert.equals(0, #seen.info)
    end)

    it("filters edges on Bruin client info and management status (cases 11-15)", function()
      local serials = { "S11", "S12a", "S12b", "S13", "S14a", "S14b", "S15a", "S15b", "S15c" }
      local links = {}
      for i, s in ipairs(serials) do links[i] = link(H1, 1, i, s) end
      script.links[H1] = ok(links)
      script.info.S11 = { status = 500, body = "bruin down" }
      script.info.S12a = ok(json.object {})
      script.info.S12b = ok { client_id = json.null, client_name = json.null }
      script.status.S13 = { status = 400, body = "no such client" }
      script.status.S14a = ok "Fake status"
      script.status.S14b = ok "Active - Gold Monitoring"
      script.status.S15a = ok "Pending"
      script.status.S15b = ok(GOLD)
      script.status.S15c = ok(PLATINUM)
      script.info.S15c = ok { client_id = 42, client_name = "ACME", extra = { site = 1 } }
      start_unit()
      settle()
      assert.truthy(has(slacks, "Error while claiming client info for service number S11 in PRODUCTION environment: " ..
        "Error 500 - bruin down"))
      assert.truthy(has(slacks, "Error while claiming management status for service number S13 and client 9994 in " ..
        "PRODUCTION environment: Error 400 - no such client"))
      assert.equals(2, #slacks)
      local asked = {}
      for _, b in ipairs(seen.status) do
        asked[b.service_number] = true
        assert.equals("A", b.status)
      end
      assert.is_nil(asked.S11)
      assert.is_nil(asked.S12a)
      assert.is_nil(asked.S12b)
      local kept = {}
      for _, e in ipairs(stored(H1)) do kept[#kept + 1] = e.serial_number end
      assert.same({ "S15a", "S15b", "S15c" }, kept)
      assert.same({ client_id = 42, client_name = "ACME", extra = { site = 1 } }, stored(H1)[3].bruin_client_info)
    end)

    it("retries the check of an edge whose client info is not an object, then drops it (case 16)", function()
      script.links[H1] = ok { link(H1, 1, 1, "VC1"), link(H1, 1, 2, "VC2") }
      script.info.VC1 = ok(json.null)
      start_unit()
      settle(400)
      local times = {}
      for _, c in ipairs(seen.info) do
        if c.serial == "VC1" then times[#times + 1] = c.at - T0 end
      end
      assert.same({ 0, 10, 30, 70, 150, 310 }, times)
      local entries = stored(H1)
      assert.equals(1, #entries)
      assert.equals("VC2", entries[1].serial_number)
    end)

    it("stores each finished host without TTL and never replaces a cache by an empty list (case 17, 7)", function()
      cache:set(H2, json.encode { { edge = { host = H2, enterprise_id = 1, edge_id = 9 } } })
      script.links[H1] = ok { link(H1, 1, 1, "VC1") }
      script.links[H2] = ok { link(H2, 1, 2, "VC2") }
      script.status.VC2 = ok "Cancelled"
      start_unit()
      settle()
      assert.equals(1, #stored(H1))
      assert.equals(-1, cache:ttl(H1))
      assert.equals(9, stored(H2)[1].edge.edge_id) -- all of H2 dropped: previous value kept
      assert.is_nil(stored(H3))
    end)

    it("caches a big generated fleet and serves it through the Redis offload", function()
      local fleet = require("sandbox.fleet").generate { edges = tonumber(os.getenv("CC_EDGES")) or 4000, seed = 7 }
      local by_host = {}
      for _, e in ipairs(fleet.edges) do
        by_host[e.host] = by_host[e.host] or {}
        for _, l in ipairs(e.links) do
          local list = by_host[e.host]
          list[#list + 1] = link(e.host, e.enterprise_id, e.id, e.serial, { interface = l.interface })
        end
      end
      for h, list in pairs(by_host) do script.links[h] = ok(list) end
      script.enterprises = setmetatable({}, { __index = function(_, key)
        local host, ent = key:match("^(.*)/(%d+)$")
        local out = json.array {}
        for _, e in ipairs(fleet.edges_by_host[host] or {}) do
          if e.enterprise_id == tonumber(ent) then
            local ls = {}
            for i, l in ipairs(e.links) do ls[i] = { interface = l.interface, logicalId = l.logical_id } end
            out[#out + 1] = { id = e.id, links = ls }
          end
        end
        return ok(out)
      end })
      script.info = setmetatable({}, { __index = function(_, serial)
        local e = fleet.edge_by_serial[serial]
        return ok { client_id = e.client_id, client_name = e.client_name }
      end })
      script.status = setmetatable({}, { __index = function(_, serial)
        return ok(fleet.edge_by_serial[serial].management_status)
      end })
      clock.unfreeze() -- thousands of real round trips: real time
      start_unit { semaphore = 20 }
      for _ = 1, 600 do
        task.sleep(0.1)
        if cache:exists(H1, H2, H3, H4) == 4 then break end
      end
      assert.equals(4, cache:exists(H1, H2, H3, H4))
      clock.freeze(T0)
      local expected = 0
      for _, e in ipairs(fleet.edges) do
        if e.management_status ~= "Cancelled" then expected = expected + 1 end
      end
      local reply = customer_cache.get { velo_filter = {} }
      assert.equals(200, reply.status)
      assert.equals(expected, #reply.body)
      assert.is_true(#json.encode(reply.body) > 1048576)
      local first = reply.body[1]
      local e = fleet.edge_by_serial[first.serial_number]
      assert.same({ host = e.host, enterprise_id = e.enterprise_id, edge_id = e.id }, first.edge)
      assert.equals(#e.links, #first.logical_ids)
    end)
  end)

  describe("customer.cache.get", function()
    local function entry(host, ent, id, contact)
      return { edge = { host = host, enterprise_id = ent, edge_id = id }, serial_number = "VC" .. id,
        last_contact = contact or "2020-09-29T04:48:55.000Z", logical_ids = json.array {},
        bruin_client_info = { client_id = 9994, client_name = "METTEL/NEW YORK" } }
    end

    before_each(function()
      start_unit { refresh = false }
    end)

    it("answers 400 without body, with body null or not an object (case 18)", function()
      local text = 'You must specify {.."body":{"filter":[...]}} in the request'
      assert.same({ request_id = "x1", status = 400, body = text }, get("absent"))
      assert.equals(text, get(json.null).body)
      assert.equals(text, get("x").body)
    end)

    it("answers 400 without filter or with a filter that is not an object (case 19)", function()
      local text = 'You must specify "filter" in the body'
      assert.same({ request_id = "x1", status = 400, body = text }, get(json.object {}))
      assert.equals(text, get({ filter = json.array {} }).body)
      assert.equals(text, get({ filter = "all" }).body)
      assert.equals(400, get({ filter = { [H1] = "x" } }).status)
    end)

    it("answers 400 Invalid last_contact_filter for a bad timestamp", function()
      cache:set(H1, json.encode { entry(H1, 1, 1) })
      local r = get { filter = { [H1] = json.array {} }, last_contact_filter = "yesterday" }
      assert.same({ 400, "Invalid last_contact_filter" }, { r.status, r.body })
    end)

    it("answers 202 for a host without cache (case 20)", function()
      local r = get { filter = { ["mettel.velocloud.com"] = json.array {} } }
      assert.same({ 202, "Cache is still being built for host(s): mettel.velocloud.com" }, { r.status, r.body })
    end)

    it("expands filter {} to every velo server, in order (case 21)", function()
      local r = get { filter = json.object {} }
      assert.same({ 202, "Cache is still being built for host(s): mettel.velocloud.net, metvco02.mettel.net, " ..
        "metvco03.mettel.net, metvco04.mettel.net" }, { r.status, r.body })
      cache:set(H3, json.encode { entry(H3, 1, 3) })
      cache:set(H1, json.encode { entry(H1, 1, 1) })
      r = get { filter = json.object {} }
      assert.equals(200, r.status)
      assert.same({ 1, 3 }, { r.body[1].edge.edge_id, r.body[2].edge.edge_id })
    end)

    it("keeps only the listed enterprises (case 22), 202 when none match", function()
      cache:set(H1, json.encode { entry(H1, 123, 1), entry(H1, 1, 2) })
      local r = get { filter = { [H1] = { 1 } } }
      assert.equals(200, r.status)
      assert.same({ entry(H1, 1, 2) }, r.body)
      r = get { filter = { [H1] = { 5 } } }
      assert.same({ 202, "Cache is still being built for host(s): " .. H1 }, { r.status, r.body })
    end)

    it("keeps entries contacted strictly after last_contact_filter (cases 23-25)", function()
      local now = os.time()
      local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%S.000Z", t) end
      cache:set(H1, json.encode { entry(H1, 1, 6, iso(now - 6 * 86400)), entry(H1, 1, 8, iso(now - 8 * 86400)) })
      local week_ago = customer_cache.naive_text(now - 7 * 86400)
      local r = get { filter = { [H1] = json.array {} }, last_contact_filter = week_ago }
      assert.equals(200, r.status)
      assert.equals(1, #r.body)
      assert.equals(6, r.body[1].edge.edge_id)
      r = get { filter = { [H1] = json.array {} }, last_contact_filter = "2999-01-01T00:00:00Z" }
      assert.same({ 404, "No edges were found for the specified filters" }, { r.status, r.body })
      r = get { filter = { [H1] = json.array {} }, last_contact_filter = json.null }
      assert.equals(2, #r.body)
      -- an offset is honoured: 6 days ago at +05:00 is still before the 6-day entry
      r = get { filter = { [H1] = json.array {} },
        last_contact_filter = os.date("!%Y-%m-%dT%H:%M:%S+05:00", now - 6 * 86400 - 60 + 5 * 3600) }
      assert.equals(1, #r.body)
    end)

    it("replies with exactly the entries the filters keep, from several hosts, through the offload", function()
      -- stored by different writers: compact, spaced, non-ASCII, odd entries; H3 is not a list, H4 has no key
      local function contact(i) return os.date("!%Y-%m-%dT%H:%M:%S.000Z", T0 - (i % 10) * 86400) end
      local pad = ("Gdańsk — Zürich "):rep(12)
      local docs, want = { [H1] = {}, [H2] = {} }, json.array {}
      local since = T0 - 5 * 86400 - 60 -- keeps the entries contacted 0-5 days before T0
      local filter = { [H1] = { 1, 3 }, [H2] = json.array {}, [H3] = json.array {}, [H4] = { 2 } }
      for _, h in ipairs { H1, H2 } do
        for i = 1, 3000 do
          local e = entry(h, i % 4, i, contact(i))
          e.bruin_client_info.client_name = pad .. i
          docs[h][i] = e
          local ent_ok = h == H2 or e.edge.enterprise_id == 1 or e.edge.enterprise_id == 3
          if ent_ok and (i % 10) <= 5 then want[#want + 1] = e end
        end
      end
      local texts = {}
      for i, e in ipairs(docs[H1]) do texts[i] = json.encode(e) end
      texts[#texts + 1] = '7' -- not an entry: skipped
      texts[#texts + 1] = '{"edge":null,"last_contact":"2999-01-01T00:00:00Z"}'
      cache:set(H1, "[" .. table.concat(texts, ",") .. "]")
      local spaced = {}
      for i, e in ipairs(docs[H2]) do spaced[i] = json.encode(e, { ascii = true }):gsub('":', '" : ') end
      cache:set(H2, "\n[ " .. table.concat(spaced, " ,\n ") .. " ]\n")
      cache:set(H3, '{"not":"a list"}')
      local r = get { filter = filter, last_contact_filter = customer_cache.naive_text(since) }
      assert.equals(200, r.status)
      assert.is_true(#json.encode(want) > 1048576) -- the reply went through the Redis offload
      assert.equals(#want, #r.body)
      assert.same(want, r.body)
      -- without last_contact_filter: every entry of the enterprise filter, hosts in velo_servers order
      filter[H1] = json.array {}
      r = get { filter = filter }
      assert.equals(200, r.status)
      assert.equals(6000, #r.body)
      assert.same(docs[H1][1], r.body[1])
      assert.same(docs[H2][3000], r.body[6000])
      -- the last_contact filter removing everything is a 404, the enterprise filter matching nothing a 202
      r = get { filter = filter, last_contact_filter = "2999-01-01T00:00:00Z" }
      assert.same({ 404, "No edges were found for the specified filters" }, { r.status, r.body })
      r = get { filter = { [H1] = { 99 }, [H3] = json.array {} } }
      assert.same({ 202, "Cache is still being built for host(s): " .. H1 .. ", " .. H3 }, { r.status, r.body })
    end)
  end)

  describe("lib.customer_cache", function()
    it("sends the request shape of the consumers and Slacks a 202 body", function()
      start_unit { refresh = false }
      local r = customer_cache.get { velo_filter = { [H2] = {} }, last_contact_filter = T0 + 0.5 }
      assert.same({ 202, "Cache is still being built for host(s): " .. H2 }, { r.status, r.body })
      assert.same({ "Cache is still being built for host(s): " .. H2 }, slacks)
      local body = customer_cache.request_body { velo_filter = {}, last_contact_filter = T0 + 0.5 }
      assert.equals("{}", json.encode(body.filter))
      assert.equals("2023-11-14 22:13:20.500000", body.last_contact_filter)
      assert.equals('{"h":[]}', json.encode(customer_cache.request_body({ velo_filter = { h = {} } }).filter))
      assert.is_nil(customer_cache.request_body({ velo_filter = {} }).last_contact_filter)
    end)

    it("returns the 503 substitute and Slacks the error when nobody answers", function()
      local r
      local t = task.spawn(function() r = customer_cache.get { velo_filter = {}, retry = false, timeout = 2 } end)
      clock.advance(3) -- the clock is frozen: let the 2 s timeout pass
      assert.is_true(t:wait())
      assert.same({ 503, json.null }, { r.status, r.body })
      assert.matches("^An error occurred when requesting customer cache %-> ae%.nats: ", slacks[1])
    end)
  end)
end)

-- End to end: the real velocloud-bridge and bruin-bridge units against their
-- simulators (spec.helpers.sandbox), the cache built from the shared fleet.
describe("customer-cache with the real bridges and simulators", function()
  local sandbox = require "spec.helpers.sandbox"
  local fleet_lib = require "sandbox.fleet"
  local env, slack_sub
  local FLEET = { edges = 60, seed = 3 }

  before_each(function()
    slacks = {}
    clear_cache()
    slack_sub = assert(nats.serve("notification.slack.request", function(req)
      slacks[#slacks + 1] = req.message
      return { status = 200 }
    end, { queue = "notifier" }))
    env = sandbox.start { sims = { "bruin", "velocloud" }, capabilities = { "bruin_bridge", "velocloud_bridge" },
      fleet = FLEET }
  end)

  after_each(function()
    engine.stop_unit(UNIT)
    sandbox.stop(env)
    slack_sub:unsubscribe()
  end)

  local function wait_for_hosts(n)
    for _ = 1, 300 do
      if cache:exists(H1, H2, H3, H4) >= n then return true end
      task.sleep(0.1)
    end
    return false
  end

  it("builds the cache of every host from the simulated fleet", function()
    start_unit { links_timeout = 10, enterprise_timeout = 10 }
    assert.is_true(wait_for_hosts(4), "cache not built: " .. table.concat(slacks, " | "))
    local fleet = fleet_lib.generate(FLEET)
    local reply = customer_cache.get { velo_filter = {} }
    assert.equals(200, reply.status)
    assert.is_true(#reply.body > 0)
    local monitorable = { Pending = true, [GOLD] = true, [PLATINUM] = true }
    local seen_hosts = {}
    for _, entry in ipairs(reply.body) do
      local e = fleet.edge_by_serial[entry.serial_number]
      assert.is_not_nil(e, entry.serial_number)
      assert.same({ host = e.host, enterprise_id = e.enterprise_id, edge_id = e.id }, entry.edge)
      assert.is_true(monitorable[e.management_status], e.management_status)
      assert.equals(e.client_id, entry.bruin_client_info.client_id)
      assert.equals(#e.links, #entry.logical_ids)
      seen_hosts[e.host] = true
    end
    assert.same({ [H1] = true, [H2] = true, [H3] = true, [H4] = true }, seen_hosts)
    -- the simulators saw the traffic: one edges call per enterprise, Bruin calls per edge
    assert.is_true(#env.calls("velocloud") > 0)
    assert.is_true(#env.calls("bruin") >= #reply.body)
  end)

  it("Slacks a host whose orchestrator fails and caches the others", function()
    env.fault("velocloud", { path = "^/metvco02%.mettel%.net/portal/rest/monitoring/", status = 500,
      body = "internal error" })
    start_unit { links_timeout = 10, enterprise_timeout = 10 }
    assert.is_true(wait_for_hosts(3))
    task.sleep(0.5)
    assert.is_nil(stored(H2))
    local found = false
    for _, m in ipairs(slacks) do
      if m:find("Error while retrieving edges links in PRODUCTION environment: Error", 1, true) then found = true end
    end
    assert.is_true(found, table.concat(slacks, " | "))
  end)
end)
