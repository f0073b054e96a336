-- lib.config: unit settings from the config table, then the environment, then a default.
local config = require "lib.config"

describe("lib.config", function()
  it("takes the config table first, then the variable, then the default", function()
    local s = config.new("u", { a = "from-table", n = 0 })
    assert.equal("from-table", s:get("a", "HOME", "d"))
    assert.equal(os.getenv("HOME"), s:get("b", "HOME", "d"))
    assert.equal("d", s:get("b", "AE_NO_SUCH_VARIABLE_FOR_SPEC", "d"))
    assert.equal("d", s:get("b", nil, "d"))
    assert.is_nil(s:get("b", "AE_NO_SUCH_VARIABLE_FOR_SPEC"))
    assert.equal(0, s:get("n", "HOME", 5)) -- a false-ish value of the table is kept
  end)

  it("converts numbers, with range checks and errors naming unit, key and variable", function()
    local s = config.new("unit_x", { t = "2.5", z = 0, bad = "soon" })
    assert.equal(2.5, s:number("t", nil, 1))
    assert.equal(0, s:number("z", nil, 1, "non-negative"))
    assert.equal(7, s:number("missing", nil, 7, "positive"))
    assert.equal(tonumber(os.getenv("AE_TEST_NATS_PORT")), s:number("p", "AE_TEST_NATS_PORT", 1, "positive"))
    assert.has_error(function() s:number("z", nil, 1, "positive") end, "unit_x: z must be a positive number, got '0'")
    assert.has_error(function() s:number("bad", nil, 1) end, "unit_x: bad must be a number, got 'soon'")
    assert.has_error(function() s:number("h", "HOME", 1) end,
      "unit_x: h (HOME) must be a number, got '" .. os.getenv("HOME") .. "'")
    assert.has_error(function() config.new("u", { v = -1 }):number("v", nil, 1, "non-negative") end,
      "u: v must be a non-negative number, got '-1'")
  end)

  it("reads flags: booleans, 1/true/yes/on and 0/false/no/off in any case; anything else is an error", function()
    local s = config.new("u", { a = true, b = false, c = "TRUE", d = "1", e = "yes", f = "Off", g = "0", h = "no",
      bad = "maybe" })
    for _, k in ipairs { "a", "c", "d", "e" } do assert.is_true(s:flag(k, nil, false), k) end
    for _, k in ipairs { "b", "f", "g", "h" } do assert.is_false(s:flag(k, nil, true), k) end
    assert.is_true(s:flag("missing", nil, true))
    assert.is_false(s:flag("missing", nil, false))
    assert.has_error(function() s:flag("bad", nil, true) end, "u: bad must be true or false, got 'maybe'")
  end)

  it("require names the first missing key and its variable", function()
    local s = config.new("bridge", {})
    s:require({ a = "x", b = 0 }, { "a", "b" })
    assert.has_error(function() s:require({ a = "x", b = "" }, { "a", "b" }, { b = "B_VAR" }) end,
      "bridge: b is not configured (config key b or variable B_VAR)")
    assert.has_error(function() s:require({}, { "a" }) end, "bridge: a is not configured (config key a)")
  end)
end)
