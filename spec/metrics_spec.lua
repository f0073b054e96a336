-- ae.metrics: the registry and its Prometheus text exposition (0.0.4), checked
-- line by line by a validator, plus /metrics on the engine's HTTP server.
local metrics = require "ae.metrics"
local httpd = require "ae.httpd"
local http = require "ae.http"

local NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*"
local LABEL = "[a-zA-Z_][a-zA-Z0-9_]*"

local function valid_float(s)
  if s == "+Inf" or s == "-Inf" or s == "NaN" then return true end
  return s:match("^%-?%d+%.%d+$") ~= nil or s:match("^%-?%d+%.?%d*e[%+%-]%d+$") ~= nil
end

-- Parse a label set body `a="x",b="y"`; returns a list of {name, value} or nil, err.
local function parse_labels(body)
  local labels, seen, i = {}, {}, 1
  while i <= #body do
    local name, rest = body:match("^(" .. LABEL .. ")=\"()", i)
    if not name then return nil, "bad label name at " .. i end
    if seen[name] then return nil, "duplicate label " .. name end
    seen[name] = true
    local j, value = rest, {}
    while true do
      local c = body:sub(j, j)
      if c == "" then return nil, "unterminated label value" end
      if c == '"' then break end
      if c == "\\" then
        local n = body:sub(j + 1, j + 1)
        if n == "\\" then value[#value + 1] = "\\"
        elseif n == '"' then value[#value + 1] = '"'
        elseif n == "n" then value[#value + 1] = "\n"
        else return nil, "bad escape \\" .. n end
        j = j + 2
      else
        if c == "\n" then return nil, "raw newline in label value" end
        value[#value + 1] = c
        j = j + 1
      end
    end
    labels[#labels + 1] = { name, table.concat(value) }
    i = j + 1
    if body:sub(i, i) == "," then i = i + 1 elseif i <= #body then return nil, "expected ',' at " .. i end
  end
  return labels
end

-- Validate an exposition text; returns a table of series {["name{labels}"] = value} or raises.
local function validate(text)
  assert(text:sub(-1) == "\n", "exposition must end with a newline")
  local types, helps, series = {}, {}, {}
  local lineno = 0
  local function family_of(name)
    if types[name] then return name end
    for _, suffix in ipairs({ "_bucket", "_count", "_sum" }) do
      local base = name:match("^(.*)" .. suffix .. "$")
      if base and types[base] == "histogram" then return base end
    end
    return nil
  end
  for line in text:gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    local where = "line " .. lineno .. ": " .. line
    if line:match("^#") then
      local kind, name, rest = line:match("^# (%u+) (" .. NAME .. ") ?(.*)$")
      assert(kind, "bad comment " .. where)
      if kind == "HELP" then
        assert(not helps[name], "second HELP for " .. where)
        assert(not rest:match("\\[^\\n]"), "bad escape in HELP " .. where)
        helps[name] = rest
      elseif kind == "TYPE" then
        assert(not types[name], "second TYPE for " .. where)
        assert(({ counter = 1, gauge = 1, histogram = 1, summary = 1, untyped = 1 })[rest], "bad type " .. where)
        types[name] = rest
      else
        error("unknown comment " .. where)
      end
    else
      assert(line ~= "", "empty line " .. where)
      local name, labels, value = line:match("^(" .. NAME .. ")(%b{}) (%S+)$")
      if not name then
        name, value = line:match("^(" .. NAME .. ") (%S+)$")
        labels = "{}"
      end
      assert(name, "bad sample " .. where)
      assert(valid_float(value), "bad value '" .. tostring(value) .. "' " .. where)
      local parsed, err = parse_labels(labels:sub(2, -2))
      assert(parsed, tostring(err) .. " " .. where)
      assert(family_of(name), "sample without a TYPE " .. where)
      local key = labels == "{}" and name or name .. labels
      assert(series[key] == nil, "duplicate series " .. where)
      series[key] = value
    end
  end
  return series, types, helps
end

describe("exposition format", function()
  it("counters are X_total with HELP/TYPE and a X_created gauge; values are Python floats", function()
    local c = metrics.counter("spec_tickets_counter", "Tickets created")
    c:inc()
    c:inc(2)
    local text = metrics.render()
    validate(text)
    local block = text:match("# HELP spec_tickets_counter_total.-\n# TYPE spec_tickets_counter_created gauge\n[^\n]*\n")
    assert(block, text)
    local lines = {}
    for l in block:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("# HELP spec_tickets_counter_total Tickets created", lines[1])
    assert.equal("# TYPE spec_tickets_counter_total counter", lines[2])
    assert.equal("spec_tickets_counter_total 3.0", lines[3])
    assert.equal("# TYPE spec_tickets_counter_created gauge", lines[4])
    assert.matches("^spec_tickets_counter_created %d%.%d+e%+09$", lines[5])
    assert.equal(3, c:value())
  end)

  it("gauges with labels, escaped label values, set/inc/dec, remove and clear", function()
    local g = metrics.gauge("spec_edge_state_gauge", "Edge States", { "enterprise_name", "name", "state" })
    local l = { enterprise_name = "Titan America|85940|", name = "TA-Store-0042", state = "CONNECTED" }
    g:inc(l)
    g:inc(l)
    g:dec(l)
    g:set(4.21, { enterprise_name = 'a"b\\c\nd', name = "x", state = "OFFLINE" })
    local series = validate(metrics.render())
    assert.equal("1.0", series['spec_edge_state_gauge{enterprise_name="Titan America|85940|",name="TA-Store-0042",' ..
      'state="CONNECTED"}'])
    assert.equal("4.21", series['spec_edge_state_gauge{enterprise_name="a\\"b\\\\c\\nd",name="x",state="OFFLINE"}'])
    assert.is_true(g:remove(l))
    assert.is_false(g:remove(l))
    g:clear()
    series = validate(metrics.render())
    for k in pairs(series) do assert.is_nil(k:match("^spec_edge_state_gauge")) end
    assert.matches("# TYPE spec_edge_state_gauge gauge", metrics.render(), 1, true)
  end)

  it("histograms: cumulative buckets with le, +Inf, _count, _sum, _created", function()
    local h = metrics.histogram("spec_latency_seconds", "Latency", { buckets = { 0.1, 1, 10 }, labels = { "op" } })
    for _, v in ipairs({ 0.05, 0.1, 0.3, 2, 50 }) do h:observe(v, { op = "get" }) end
    local series, types = validate(metrics.render())
    assert.equal("histogram", types.spec_latency_seconds)
    assert.equal("2.0", series['spec_latency_seconds_bucket{op="get",le="0.1"}'])
    assert.equal("3.0", series['spec_latency_seconds_bucket{op="get",le="1.0"}'])
    assert.equal("4.0", series['spec_latency_seconds_bucket{op="get",le="10.0"}'])
    assert.equal("5.0", series['spec_latency_seconds_bucket{op="get",le="+Inf"}'])
    assert.equal("5.0", series['spec_latency_seconds_count{op="get"}'])
    assert.equal("52.45", series['spec_latency_seconds_sum{op="get"}'])
    assert.matches('\n# TYPE spec_latency_seconds_created gauge\nspec_latency_seconds_created{op="get"} ',
      metrics.render(), 1, true)
    local count, sum = h:value({ op = "get" })
    assert.equal(5, count)
    assert.equal(52.45, sum)
  end)

  it("formats floats as the original (Python repr, Go exponent for large values)", function()
    local f = metrics.format_float
    assert.equal("3.0", f(3))
    assert.equal("0.0", f(0))
    assert.equal("4.21", f(4.21))
    assert.equal("1.6139952e+09", f(1613995200))
    assert.equal("1.234567e+06", f(1234567))
    assert.equal("123456.0", f(123456))
    assert.equal("-1234567.0", f(-1234567))
    assert.equal("1e-05", f(0.00001))
    assert.equal("0.0001", f(0.0001))
    assert.equal("0.1", f(0.1))
    assert.equal("1e+16", f(1e16))
    assert.equal("+Inf", f(math.huge))
    assert.equal("-Inf", f(-math.huge))
    assert.equal("NaN", f(0 / 0))
  end)

  it("the whole registry, including engine metrics, passes the validator", function()
    metrics.counter("spec_other_counter_total", "Given with _total"):inc(1)
    local series, types, helps = validate(metrics.render())
    assert.equal("counter", types.spec_other_counter_total)
    assert.equal("Given with _total", helps.spec_other_counter_total)
    assert.equal("1.0", series.spec_other_counter_total)
    assert.equal("gauge", types.aengine_unit_tasks)
    assert.truthy(series['aengine_unit_tasks{unit="test"}'])
    assert.truthy(series['aengine_unit_memory_bytes{unit="test"}'])
  end)

  it("the validator rejects malformed expositions", function()
    assert.has_error(function() validate("x 1.0\n") end)                       -- no TYPE
    assert.has_error(function() validate("# TYPE x gauge\nx 1\n") end)          -- not a Python float
    assert.has_error(function() validate("# TYPE x gauge\nx{a=\"1} 1.0\n") end) -- unterminated
    assert.has_error(function() validate("# TYPE x gauge\nx 1.0\nx 2.0\n") end) -- duplicate series
    assert.has_error(function() validate("# TYPE x gauge\nx{a=\"\\t\"} 1.0\n") end)
    assert.has_error(function() validate("# TYPE 1x gauge\n") end)
  end)
end)

describe("registry rules", function()
  it("is process-global: declaring the same name again shares the family", function()
    local a = metrics.counter("spec_shared_counter", "Shared")
    local b = metrics.counter("spec_shared_counter", "Shared")
    a:inc()
    b:inc()
    assert.equal(2, a:value())
    assert.equal(2, metrics.get("spec_shared_counter_total"):value())
  end)

  it("refuses type or label conflicts, bad names, missing or unknown labels, negative counts", function()
    metrics.counter("spec_conflict", "x")
    assert.has_error(function() metrics.gauge("spec_conflict_total", "x") end)
    assert.has_error(function() metrics.counter("spec_conflict", "x", { "a" }) end)
    assert.has_error(function() metrics.gauge("1bad", "x") end)
    assert.has_error(function() metrics.gauge("spec_badlabel", "x", { "__reserved" }) end)
    assert.has_error(function() metrics.histogram("spec_le", "x", { labels = { "le" } }) end)
    assert.has_error(function() metrics.histogram("spec_buckets", "x", { buckets = { 1, 1 } }) end)
    local g = metrics.gauge("spec_labelled", "x", { "host" })
    assert.has_error(function() g:set(1) end)
    assert.has_error(function() g:set(1, { host = "a", extra = "b" }) end)
    assert.has_error(function() g:set(1, { other = "a" }) end)
    g:set(2, { host = 7 }) -- numbers are label values too
    assert.equal(2, g:value({ host = "7" }))
    local c = metrics.counter("spec_mono", "x")
    assert.has_error(function() c:inc(-1) end)
    assert.has_error(function() c:dec() end)
    assert.has_error(function() c:set(3) end)
    assert.has_error(function() c:observe(3) end)
  end)
end)

describe("/metrics", function()
  it("serves the registry with the 0.0.4 content type, every line valid", function()
    local addr = assert(httpd.start("127.0.0.1:0"))
    metrics.gauge("cycle_runtime_gauge", "How many minutes last cycle took to run"):set(4.21)
    local res = assert(http.get("http://" .. addr .. "/metrics"))
    assert.equal(200, res.status)
    assert.equal("text/plain; version=0.0.4; charset=utf-8", res.headers["content-type"])
    local series = validate(res.body)
    assert.equal("4.21", series.cycle_runtime_gauge)
    res = assert(http.get("http://" .. addr .. "/metrics"))
    series = validate(res.body)
    assert.truthy(series['aengine_http_server_requests_total{code="200"}'])
  end)
end)
