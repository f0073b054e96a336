-- ae.json: encode/decode, json.null, empty containers, exact integers, floats,
-- escapes, surrogate pairs, errors with positions, depth limit, ascii option.
local json = require "ae.json"

local function err_of(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return e
end

-- Random JSON texts with random whitespace, for the round-trip properties.
-- Strings are made of `chars`. With `host`, an object key is "host" one
-- time in five, except at the top of a record (text_of(d, true)), where it
-- becomes "hostname". Returns sp() (random whitespace) and text_of(depth, top).
local function json_generator(chars, host)
  local ws = { "", "", "", " ", "\n", "\t ", "\r\n  " }
  local function sp() return ws[math.random(#ws)] end
  local function str()
    local t = {}
    for i = 1, math.random(0, 6) do t[i] = chars[math.random(#chars)] end
    return json.encode(table.concat(t))
  end
  local function text_of(d, top_of_record)
    local r = math.random(d > 3 and 4 or 6)
    if r == 1 then return ({ "null", "true", "false" })[math.random(3)] end
    if r == 2 then return tostring(math.random(-1000000, 1000000)) .. (math.random() < 0.3 and ".25e1" or "") end
    if r == 3 then return str() end
    local parts = {}
    if r == 4 then
      for i = 1, math.random(0, 3) do parts[i] = sp() .. text_of(d + 1) .. sp() end
      return "[" .. sp() .. table.concat(parts, ",") .. "]"
    end
    for i = 1, math.random(0, 4) do
      local key = host and math.random() < 0.2 and '"host"' or str()
      if top_of_record and key == '"host"' then key = '"hostname"' end
      parts[i] = sp() .. key .. sp() .. ":" .. sp() .. text_of(d + 1) .. sp()
    end
    return "{" .. sp() .. table.concat(parts, ",") .. "}"
  end
  return sp, text_of
end

describe("ae.json", function()
  describe("encode", function()
    it("is compact: ',' and ':' with no spaces", function()
      assert.equal('[1,2,{"a":[true,false,null]}]', json.encode({ 1, 2, { a = { true, false, json.null } } }))
    end)

    it("encodes scalars at top level", function()
      assert.equal("null", json.encode(json.null))
      assert.equal("null", json.encode(nil))
      assert.equal("true", json.encode(true))
      assert.equal('"x"', json.encode("x"))
      assert.equal("42", json.encode(42))
    end)

    it("encodes Lua integers without a decimal point, floats in shortest round-trip form", function()
      assert.equal("9223372036854775807", json.encode(math.maxinteger))
      assert.equal("-9223372036854775808", json.encode(math.mininteger))
      assert.equal("3.0", json.encode(3.0))
      assert.equal("-0.0", json.encode(-0.0))
      assert.equal("0.1", json.encode(0.1))
      assert.equal("0.30000000000000004", json.encode(0.1 + 0.2))
      assert.equal("1e+300", json.encode(1e300))
      assert.equal("1.5e-07", json.encode(1.5e-7))
      assert.equal("9007199254740992.0", json.encode(2.0 ^ 53))
    end)

    it("uses the shortest form that reads back as the same float", function()
      math.randomseed(7)
      for _ = 1, 2000 do
        local x = (math.random() - 0.5) * 10 ^ math.random(-20, 20)
        local text = json.encode(x)
        assert.equal(x, json.decode(text))
        assert.equal(x, tonumber(text))
      end
    end)

    it("encodes a table with keys 1..n as an array, otherwise as an object", function()
      assert.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
      assert.equal('{"a":1}', json.encode({ a = 1 }))
      assert.equal('{"2":"b"}', json.encode({ [2] = "b" })) -- hole at 1: Python-like string keys
      local t = json.decode(json.encode({ [1] = "a", [3] = "c" }))
      assert.same({ ["1"] = "a", ["3"] = "c" }, t)
    end)

    it("encodes a plain empty table as {}", function()
      assert.equal("{}", json.encode({}))
      assert.equal('{"a":{}}', json.encode({ a = {} }))
    end)

    it("honours json.array and json.object marks", function()
      assert.equal("[]", json.encode(json.array()))
      assert.equal("[]", json.encode(json.array({})))
      assert.equal("{}", json.encode(json.object()))
      assert.equal('{"1":"x","2":"y"}', json.encode(json.object({ "x", "y" })))
      assert.equal("[1,null,3]", json.encode(json.array({ 1, nil, 3 })))
    end)

    it("escapes quotes, backslashes and control characters; leaves '/' and UTF-8 alone", function()
      assert.equal([["a\"b\\c/d"]], json.encode('a"b\\c/d'))
      assert.equal([["\b\f\n\r\t\u0000\u001f"]], json.encode("\b\f\n\r\t\0\31"))
      assert.equal('"café €😀"', json.encode("café €😀"))
    end)

    it("with ascii = true escapes non-ASCII like Python's ensure_ascii, with surrogate pairs", function()
      assert.equal([["caf\u00e9 \u20ac \ud83d\ude00"]], json.encode("café € 😀", { ascii = true }))
      assert.equal([["\u007f"]], json.encode("\127", { ascii = true }))
      assert.equal([[{"k\u00e9":["\udbff\udfff"]}]], json.encode({ ["ké"] = { "\u{10FFFF}" } }, { ascii = true }))
    end)

    it("rejects invalid UTF-8, or replaces it with U+FFFD on request", function()
      assert.equal(
        'ae.json: invalid UTF-8 in string (byte 2 of 3); use invalid_utf8 = "replace" to substitute U+FFFD at name',
        err_of(json.encode, { name = "a\255b" })
      )
      assert.equal('"a\u{FFFD}b"', json.encode("a\255b", { invalid_utf8 = "replace" }))
      assert.equal([["a\ufffdb"]], json.encode("a\255b", { invalid_utf8 = "replace", ascii = true }))
      assert.has_error(function() json.encode("\xed\xa0\x80") end) -- a surrogate written in UTF-8
    end)

    it("raises on values JSON cannot hold, naming where they are", function()
      assert.equal("ae.json: cannot encode a function", err_of(json.encode, print))
      assert.equal("ae.json: cannot encode a function at edges[2].links[1].cb",
        err_of(json.encode, { edges = { {}, { links = { { cb = print } } } } }))
      assert.equal("ae.json: cannot encode a userdata at f", err_of(json.encode, { f = io.stdout }))
      assert.equal("ae.json: cannot encode a thread", err_of(json.encode, coroutine.create(print)))
      assert.equal("ae.json: cannot encode NaN (not valid JSON) at [1]", err_of(json.encode, { 0 / 0 }))
      assert.equal("ae.json: cannot encode an infinite number (not valid JSON)", err_of(json.encode, math.huge))
      assert.equal("ae.json: cannot encode an infinite number (not valid JSON)", err_of(json.encode, -math.huge))
    end)

    it("raises on cycles", function()
      local t = { a = {} }
      t.a.back = t
      assert.equal("ae.json: cannot encode a table that contains itself (cycle) at a.back", err_of(json.encode, t))
    end)

    it("raises on mixed tables and on keys that are not strings or integers", function()
      local mixed = "ae.json: cannot encode a table with both integer and string keys "
        .. "(mark it with json.object to encode the integer keys as strings)"
      assert.equal(mixed, err_of(json.encode, { 1, 2, x = 3 }))
      assert.equal(mixed, err_of(json.encode, { x = 3, [7] = 1 }))
      assert.same({ ["1"] = 1, x = 3 }, json.decode(json.encode(json.object({ 1, x = 3 }))))
      assert.equal("ae.json: cannot encode a table key of type boolean (JSON object keys are strings)",
        err_of(json.encode, { [true] = 1 }))
      assert.equal("ae.json: cannot encode table key 1.5 (a float; JSON object keys are strings)",
        err_of(json.encode, { [1.5] = 1 }))
      assert.equal("ae.json: table marked as a JSON array has a key that is not a positive integer",
        err_of(json.encode, json.array({ 1, x = 2 })))
    end)

    it("validates options", function()
      assert.equal("ae.json.encode: unknown option 'asci'", err_of(json.encode, {}, { asci = true }))
      assert.equal("ae.json.encode: option 'ascii' must be a boolean", err_of(json.encode, {}, { ascii = 1 }))
      assert.has_error(function() json.encode({}, { invalid_utf8 = "drop" }) end)
      assert.has_error(function() json.encode({}, "ascii") end)
    end)

    it("ignores metatables of script objects (raw content only, no __index / __pairs)", function()
      local obj = setmetatable({ x = 1 }, { __index = { y = 2 }, __pairs = function() error("not called") end })
      assert.equal('{"x":1}', json.encode(obj))
    end)
  end)

  describe("decode", function()
    it("decodes every JSON type", function()
      local v = json.decode('{"s":"x","n":1,"f":1.5,"t":true,"F":false,"z":null,"a":[1,"2"],"o":{"k":{}}}')
      assert.equal("x", v.s)
      assert.equal(1, v.n)
      assert.equal(1.5, v.f)
      assert.is_true(v.t)
      assert.is_false(v.F)
      assert.equal(json.null, v.z)
      assert.same({ 1, "2" }, v.a)
      assert.same({ k = {} }, v.o)
    end)

    it("accepts whitespace and a UTF-8 BOM", function()
      assert.same({ 1, 2 }, json.decode(" \t\r\n[ 1 ,\n 2 ] \n"))
      assert.same({ 1 }, json.decode("\xEF\xBB\xBF[1]"))
    end)

    it("decodes null as json.null everywhere, so arrays keep their length", function()
      assert.equal(json.null, json.decode("null"))
      local a = json.decode("[null,1,null]")
      assert.equal(3, #a)
      assert.equal(json.null, a[1])
      assert.equal(json.null, a[3])
      local o = json.decode('{"a":null}')
      assert.equal(json.null, o.a)
      assert.equal("[null,1,null]", json.encode(a))
      assert.equal("userdata", type(json.null))
    end)

    it("keeps [] and {} apart through a round trip", function()
      assert.equal("[]", json.encode(json.decode("[]")))
      assert.equal("{}", json.encode(json.decode("{}")))
      local doc = '{"images":[],"filters":{"mettel.velocloud.net":[]},"meta":{}}'
      local v = json.decode(doc)
      local back = json.decode(json.encode(v))
      assert.is_true(json.is_array(back.images))
      assert.is_false(json.is_array(back.meta))
      assert.is_true(json.is_array(back.filters["mettel.velocloud.net"]))
      assert.equal('{"mettel.velocloud.net":[]}', json.encode(v.filters))
      assert.equal("{}", json.encode(v.meta))
      assert.equal("[]", json.encode(v.images))
    end)

    it("decodes integer literals that fit int64 exactly, bigger ones as floats", function()
      assert.equal(9007199254740993, json.decode("9007199254740993"))
      assert.equal("integer", math.type(json.decode("9007199254740993")))
      assert.equal(math.mininteger, json.decode("-9223372036854775808"))
      assert.equal(math.maxinteger, json.decode("9223372036854775807"))
      assert.equal("9007199254740993", json.encode(json.decode("9007199254740993")))
      assert.equal("float", math.type(json.decode("9223372036854775808")))
      assert.equal(2.0 ^ 63, json.decode("9223372036854775808"))
      assert.equal("float", math.type(json.decode("-9223372036854775809")))
      assert.equal(0, json.decode("-0"))
      assert.equal("integer", math.type(json.decode("-0")))
    end)

    it("decodes numbers with '.' or an exponent as floats", function()
      assert.equal("float", math.type(json.decode("1.0")))
      assert.equal("float", math.type(json.decode("1e2")))
      assert.equal(100.0, json.decode("1E+2"))
      assert.equal(0.001, json.decode("1e-3"))
      assert.equal(-0.5, json.decode("-0.5"))
      assert.equal(123.456, json.decode("123.456"))
      assert.equal(1.7976931348623157e308, json.decode("1.7976931348623157e308"))
      assert.equal(5e-324, json.decode("5e-324"))
      assert.equal(0.1, json.decode("0.1000000000000000055511151231257827021181583404541015625"))
      assert.equal("3.0", json.encode(json.decode("3.0")))
    end)

    it("decodes escapes and surrogate pairs to UTF-8", function()
      assert.equal('"\\/\b\f\n\r\t', json.decode([["\"\\\/\b\f\n\r\t"]]))
      assert.equal("é€", json.decode([["\u00e9\u20AC"]]))
      assert.equal("😀", json.decode([["\ud83d\ude00"]]))
      assert.equal("a\0b", json.decode([["a\u0000b"]]))
      assert.equal("café", json.decode('"café"'))
    end)

    it("decodes lone surrogates to U+FFFD", function()
      assert.equal("a\u{FFFD}b", json.decode([["a\ud800b"]]))
      assert.equal("a\u{FFFD}b", json.decode([["a\udc00b"]]))
      assert.equal("\u{FFFD}A", json.decode([["\ud83d\u0041"]]))
      assert.equal("\u{FFFD}", json.decode([["\ud83d"]]))
    end)

    it("keeps the last value of a duplicated key", function()
      assert.equal(2, json.decode('{"a":1,"a":2}').a)
    end)

    local invalid = {
      { "", "expected a value, got end of input at line 1 column 1 (byte 1)" },
      { "[1,2", "expected ',' or ']', got end of input at line 1 column 5 (byte 5)" },
      { "[1,]", "expected a value, got ']' at line 1 column 4 (byte 4)" },
      { '{"a":1,}', "expected a string key, got '}' at line 1 column 8 (byte 8)" },
      { "{'a':1}", "expected a string key, got ''' at line 1 column 2 (byte 2)" },
      { '{"a" 1}', "expected ':', got '1' at line 1 column 6 (byte 6)" },
      { '{"a":1 "b":2}', "expected ',' or '}', got '\"' at line 1 column 8 (byte 8)" },
      { "[1] [2]", "expected end of input after the value, got '[' at line 1 column 5 (byte 5)" },
      { '{\n  "a": tru\n}', "invalid literal (true?) at line 2 column 8 (byte 10)" },
      { '{\n  "é": x}', "expected a value, got 'x' at line 2 column 8 (byte 11)" },
      { "01", "invalid number (leading zero) at line 1 column 1 (byte 1)" },
      { "1.", "invalid number (digit expected after '.') at line 1 column 3 (byte 3)" },
      { ".5", "expected a value, got '.' at line 1 column 1 (byte 1)" },
      { "-", "invalid number (digit expected) at line 1 column 2 (byte 2)" },
      { "1e", "invalid number (digit expected in exponent) at line 1 column 3 (byte 3)" },
      { "NaN", "expected a value, got 'N' at line 1 column 1 (byte 1)" },
      { "Infinity", "expected a value, got 'I' at line 1 column 1 (byte 1)" },
      { "1e999", "number out of range at line 1 column 1 (byte 1)" },
      { '"abc', "unterminated string at line 1 column 1 (byte 1)" },
      { '"a\tb"', "control character U+0009 in string (must be escaped) at line 1 column 3 (byte 3)" },
      { [["\q"]], "invalid escape 'q' in string at line 1 column 2 (byte 2)" },
      { [["\u12x4"]], "invalid \\u escape (4 hex digits expected) at line 1 column 2 (byte 2)" },
      { '"\xff"', "invalid UTF-8 in string at line 1 column 2 (byte 2)" },
      { '"\xc3"', "invalid UTF-8 in string at line 1 column 2 (byte 2)" },
      { "\0", "expected a value, got byte 0x00 at line 1 column 1 (byte 1)" },
    }
    for _, case in ipairs(invalid) do
      it(("returns nil and a positioned message for %q"):format(case[1]), function()
        local v, err = json.decode(case[1])
        assert.is_nil(v)
        assert.equal("ae.json: " .. case[2], err)
      end)
    end

    it("raises when the argument is not a string or a json.buffer (misuse)", function()
      assert.equal("ae.json.decode: text must be a string or a json.buffer, got nil", err_of(json.decode, nil))
      assert.equal("ae.json.decode: text must be a string or a json.buffer, got table", err_of(json.decode, {}))
    end)

    it("accepts 1000 levels of nesting and refuses more, without overflowing", function()
      assert.equal(1000, json.max_depth)
      local ok_doc = ("["):rep(1000) .. ("]"):rep(1000)
      assert.equal(ok_doc, json.encode(json.decode(ok_doc)))
      local v, err = json.decode(("["):rep(1001) .. ("]"):rep(1001))
      assert.is_nil(v)
      assert.equal("ae.json: nesting deeper than 1000 levels at line 1 column 1001 (byte 1001)", err)
      v, err = json.decode(('{"a":'):rep(200000))
      assert.is_nil(v)
      assert.matches("nesting deeper than 1000 levels", err)
      local deep = {}
      local t = deep
      for _ = 1, 1000 do
        t[1] = {}
        t = t[1]
      end
      assert.matches("^ae.json: nesting deeper than 1000 levels at %[1%]%[1%]", err_of(json.encode, deep))
    end)
  end)

  describe("buffer", function()
    it("is filled by appends and read in place by decode and decode_each", function()
      local text = [[{"status":200,"body":[{"a":1},{"a":"\u00e9"}]}]]
      local buf = json.buffer(#text)
      assert.equal(0, #buf)
      for i = 1, #text, 7 do buf:append(text:sub(i, i + 6)) end
      assert.equal(#text, #buf)
      assert.equal(text, tostring(buf))
      assert.same(json.decode(text), json.decode(buf))
      local got = {}
      local v, n = json.decode_each(buf, "body", function(e) got[#got + 1] = e.a end)
      assert.equal(200, v.status)
      assert.equal(2, n)
      assert.same({ 1, "é" }, got)
    end)
    it("refuses more than its capacity, a bad capacity, and decodes only what was appended", function()
      local buf = json.buffer(4)
      buf:append("[1,")
      assert.has_error(function() buf:append("2]") end, "ae.json.buffer: 2 more bytes do not fit (3 of 4 used)")
      assert.equal(3, #buf)
      local v, err = json.decode(buf)
      assert.is_nil(v)
      assert.matches("end of input", err)
      buf:append("]")
      assert.is_nil(json.decode(buf)) -- "[1,]" is not JSON
      assert.has_error(function() json.buffer(-1) end)
      assert.has_error(function() json.buffer("x") end)
      assert.has_error(function() json.decode({}) end,
        "ae.json.decode: text must be a string or a json.buffer, got table")
      local empty = json.buffer(0)
      assert.equal(0, #empty)
      assert.is_nil(json.decode(empty))
    end)
    it("is freed by free(): counted in the unit's memory until then, not in Lua's heap; unusable after", function()
      local unit_mem = function() return require("ae.unit").memory end
      collectgarbage()
      local lua_before, unit_before = collectgarbage("count"), unit_mem()
      local buf = json.buffer(8 * 1024 * 1024)
      assert.is_true(collectgarbage("count") - lua_before < 64, "the bytes are not Lua heap")
      assert.is_true(unit_mem() - unit_before >= 8 * 1024 * 1024, "the bytes count towards the unit's cap")
      buf:append("[1]")
      buf:free()
      buf:free() -- idempotent
      assert.is_true(unit_mem() - unit_before < 64 * 1024)
      assert.equal(0, #buf)
      assert.has_error(function() buf:append("x") end, "ae.json.buffer: used after free()")
      assert.has_error(function() tostring(buf) end, "ae.json.buffer: used after free()")
      assert.has_error(function() json.decode(buf) end, "ae.json.decode: the json.buffer was freed")
      assert.has_error(function() json.decode_each(buf, "body", print) end,
        "ae.json.decode_each: the json.buffer was freed")
    end)
  end)

  describe("decode_each", function()
    it("hands the top-level member's array to the callback, element by element, and leaves it out", function()
      local got = {}
      local v = assert(json.decode_each('{"request_id":"x","status":200,"body":[{"a":1},{"a":2},[3],"s",null]}',
        "body", function(e, i) got[#got + 1] = { e, i } end))
      assert.same({ "x", 200 }, { v.request_id, v.status })
      assert.is_nil(v.body)
      assert.equal(5, #got)
      assert.same({ 1, 2, 3, 4, 5 }, { got[1][2], got[2][2], got[3][2], got[4][2], got[5][2] })
      assert.equal(1, got[1][1].a)
      assert.is_false(json.is_array(got[1][1]))
      assert.is_true(json.is_array(got[3][1]))
      assert.equal("s", got[4][1])
      assert.equal(json.null, got[5][1])
      assert.is_false(json.is_array(v)) -- the rest is still a marked object
    end)

    it("returns how many elements it streamed: nil when the member was not a list", function()
      local function count(text)
        return select(2, json.decode_each(text, "body", function() end))
      end
      assert.equal(3, count('{"body":[1,2,3]}'))
      assert.equal(0, count('{"body":[]}'))
      assert.is_nil(count('{"status":200}'))
      assert.is_nil(count('{"body":"text"}'))
      assert.is_nil(count('[1]'))
    end)

    it("keeps a member that is not an array, and ignores nested members of that name", function()
      local called = 0
      local v = assert(json.decode_each('{"status":500,"body":"boom","x":{"body":[1]}}', "body",
        function() called = called + 1 end))
      assert.equal("boom", v.body)
      assert.same({ 1 }, v.x.body)
      assert.equal(0, called)
      assert.same({ 1, 2 }, json.decode_each("[1,2]", "body", function() called = called + 1 end))
      assert.equal(0, called)
    end)

    it("propagates the callback's error, and reports bad JSON as decode does", function()
      local seen = {}
      local ok, err = pcall(json.decode_each, '{"body":[1,2,3]}', "body", function(e)
        seen[#seen + 1] = e
        if e == 2 then error("bad two", 0) end
      end)
      assert.is_false(ok)
      assert.equal("bad two", err)
      assert.same({ 1, 2 }, seen)
      local v, msg = json.decode_each('{"body":[1,2,', "body", function() end)
      assert.is_nil(v)
      assert.matches("^ae.json: expected a value, got end of input at line 1 column 14", msg)
      assert.has_error(function() json.decode_each('{}', "body", "not a function") end)
    end)

    it("lets the callback decode and encode (no shared state while it runs)", function()
      local inner = {}
      json.decode_each([[{"body":[{"x":"{\"y\":[1,\"\\u00e9\"]}"},{"x":"[]"}]}]], "body", function(e)
        inner[#inner + 1] = json.encode(json.decode(e.x), { ascii = true })
      end)
      assert.same({ '{"y":[1,"\\u00e9"]}', "[]" }, inner)
    end)
  end)

  describe("marks", function()
    it("json.array / json.object return the table they mark", function()
      local t = {}
      assert.equal(t, json.array(t))
      assert.equal(t, json.object(t))
      assert.equal("{}", json.encode(t))
    end)

    it("refuse a table with a foreign metatable and non-tables", function()
      assert.equal("ae.json.array: the table already has a metatable that is not an ae.json mark",
        err_of(json.array, setmetatable({}, {})))
      assert.equal("ae.json.object: expected a table, got number", err_of(json.object, 1))
    end)

    it("json.is_array tells whether encode would give a JSON array", function()
      assert.is_true(json.is_array({ 1, 2 }))
      assert.is_true(json.is_array(json.array()))
      assert.is_true(json.is_array(json.decode("[]")))
      assert.is_true(json.is_array(json.decode("[1]")))
      assert.is_false(json.is_array({}))
      assert.is_false(json.is_array(json.decode("{}")))
      assert.is_false(json.is_array({ [2] = 1 }))
      assert.is_false(json.is_array({ 1, x = 1 }))
      assert.is_false(json.is_array("[]"))
      assert.is_false(json.is_array(nil))
    end)

    it("decoded tables stay arrays/objects when scripts modify them", function()
      local v = json.decode('{"list":[1],"map":{"a":1}}')
      v.list[1] = nil
      v.map.a = nil
      assert.equal("[]", json.encode(v.list))
      assert.equal("{}", json.encode(v.map))
      v.map[5] = "five"
      assert.equal('{"5":"five"}', json.encode(v.map))
    end)
  end)

  describe("raw", function()
    it("is written verbatim where it appears: top level, in objects, in arrays", function()
      assert.equal(' "x" ', json.encode(json.raw(' "x" ')))
      assert.equal('[1,[1, 2],{"k":{"a" : null}}]',
        json.encode(json.array({ 1, json.raw("[1, 2]"), { k = json.raw('{"a" : null}') } })))
      local text = json.encode({ a = json.raw("true"), b = json.object({ c = json.raw("[]") }) })
      assert.same({ a = true, b = { c = {} } }, json.decode(text))
      assert.truthy(text:find('"c":[]', 1, true))
    end)

    it("is a marked table holding the text; json.is_array looks at its first character", function()
      local r = json.raw("[1]")
      assert.equal("table", type(r))
      assert.equal("[1]", r.text)
      assert.equal("ae.json.raw", getmetatable(r).__name)
      assert.is_true(json.is_array(r))
      assert.is_true(json.is_array(json.raw(" \n\t[]")))
      assert.is_false(json.is_array(json.raw("{}")))
      assert.is_false(json.is_array(json.raw('"[1]"')))
      assert.is_false(json.is_array(json.raw("null")))
    end)

    it("goes through an ae.nats envelope, \\u-escaped like the rest of the message", function()
      local nats = require "ae.nats"
      local raw = json.raw('[{"city":"Gdańsk \u{1F600}","del":"\127","n":1.50}]')
      local text = nats.serialize({ request_id = "r1", status = 200, body = raw })
      assert.truthy(text:find('[{"city":"Gda\\u0144sk \\ud83d\\ude00","del":"\\u007f","n":1.50}]', 1, true))
      assert.same({ request_id = "r1", status = 200, body = { { city = "Gdańsk \u{1F600}", del = "\127", n = 1.5 } } },
        json.decode(text))
      -- a raw message that is not an object is wrapped like any other value
      assert.same({ message = { 1, 2 } }, json.decode(nats.serialize(json.raw("[1,2]"))))
      -- without ascii the text is copied as is
      assert.equal('{"b":["é"]}', json.encode({ b = json.raw('["é"]') }))
    end)

    it("raises for invalid UTF-8 with ascii = true, or replaces it on request", function()
      assert.matches("invalid UTF%-8 in a json.raw text %(byte 3 of 4%) at b",
        err_of(json.encode, { b = json.raw('"a\255"') }, { ascii = true }))
      assert.equal('"a\\ufffd"', json.encode(json.raw('"a\255"'), { ascii = true, invalid_utf8 = "replace" }))
      assert.equal('"a\255"', json.encode(json.raw('"a\255"'))) -- not validated without ascii
    end)

    it("errors: a text that is not a string", function()
      assert.equal("ae.json.raw: text must be a string, got number", err_of(json.raw, 5))
      assert.equal("ae.json.raw: text must be a string, got nil", err_of(json.raw, nil))
      assert.equal("ae.json.raw: text is empty (one JSON value is needed)", err_of(json.raw, " \n"))
      local r = json.raw("1")
      r.text = 5
      assert.equal("ae.json: cannot encode a json.raw value whose text is a number (must be a string) at a[2]",
        err_of(json.encode, { a = { 1, r } }))
      r.text = nil
      assert.equal("ae.json: cannot encode a json.raw value whose text is a nil (must be a string)",
        err_of(json.encode, r))
      assert.matches("not an ae.json mark", err_of(json.array, json.raw("[]")))
    end)
  end)

  describe("with_member", function()
    it("inserts the member first in every object of the array", function()
      assert.equal('[{"host":"h1","a":1},{"host":"h1","b":{"c":[1,{"d":2}]}}]',
        json.with_member('[{"a":1},{"b":{"c":[1,{"d":2}]}}]', "host", "h1"))
      assert.equal('[{"n":null,"a":1}]', json.with_member('[{"a":1}]', "n", json.null))
      assert.equal('[{"v":[1,2],"a":1}]', json.with_member('[{"a":1}]', "v", { 1, 2 }))
      assert.equal('[{"v":{"x":[]},"a":1}]', json.with_member('[{"a":1}]', "v", { x = json.array() }))
      assert.equal('[{"v":1.5,"a":1}]', json.with_member('[{"a":1}]', "v", 1.5))
      assert.equal('[{"v":[ 9 ],"a":1}]', json.with_member('[{"a":1}]', "v", json.raw("[ 9 ]")))
      assert.equal('[{"a\\"b\\n":"é","a":1}]', json.with_member('[{"a":1}]', 'a"b\n', "é"))
    end)

    it("empty array, empty objects (no comma), whitespace kept inside, BOM and outer whitespace dropped", function()
      assert.equal("[]", json.with_member("[]", "host", "h"))
      assert.equal("[ \n ]", json.with_member("\239\187\191 \n[ \n ]\t\r\n", "host", "h"))
      assert.equal('[{"host":"h"},{"host":"h" },{"host":"h"\n}]', json.with_member("[{},{ },{\n}]", "host", "h"))
      assert.equal('[ {"host":"h", "a" : 1 } ,\n{"host":"h","b":2}]',
        json.with_member(' [ { "a" : 1 } ,\n{"b":2}] ', "host", "h"))
    end)

    it("leaves strings alone: braces, brackets, escaped quotes and backslashes in them", function()
      local text = '[{"s":"{\\"}[","t":"\\\\"},{"u":"}{\\\\\\"{"}]'
      local out = json.with_member(text, "k", 0)
      assert.equal('[{"k":0,"s":"{\\"}[","t":"\\\\"},{"k":0,"u":"}{\\\\\\"{"}]', out)
      assert.same({ { k = 0, s = '{"}[', t = "\\" }, { k = 0, u = '}{\\"{' } }, json.decode(out))
    end)

    it("allows the key deeper in a record, refuses an element that already has it", function()
      assert.equal('[{"host":"h","a":{"host":1},"b":[{"host":2}]}]',
        json.with_member('[{"a":{"host":1},"b":[{"host":2}]}]', "host", "h"))
      local v, err = json.with_member('[{"a":1},{"a":2, "host":"x"}]', "host", "h")
      assert.is_nil(v)
      assert.equal('ae.json: element 2 already has a member "host" at line 1 column 18 (byte 18)', err)
      -- the key as decoded, escapes included
      assert.equal('ae.json: element 1 already has a member "host" at line 1 column 3 (byte 3)',
        select(2, json.with_member('[{"h\\u006fst":1}]', "host", "h")))
    end)

    it("errors: not an array, an element that is not an object", function()
      local function err(text) return select(2, json.with_member(text, "host", "h")) end
      assert.equal("ae.json: expected an array of objects, got an object at line 1 column 1 (byte 1)", err('{"a":1}'))
      assert.equal("ae.json: expected an array of objects, got null at line 2 column 1 (byte 2)", err("\nnull"))
      assert.equal("ae.json: expected an array of objects, got a string at line 1 column 1 (byte 1)", err('"[]"'))
      assert.equal("ae.json: expected an array of objects, got a number at line 1 column 1 (byte 1)", err("-5"))
      assert.equal("ae.json: element 2 of the array is a number, not an object at line 1 column 5 (byte 5)",
        err("[{},1]"))
      assert.equal("ae.json: element 1 of the array is an array, not an object at line 1 column 2 (byte 2)",
        err("[[{}]]"))
      assert.equal("ae.json: element 3 of the array is null, not an object at line 1 column 10 (byte 10)",
        err("[{}, {}, null]"))
      assert.equal("ae.json: element 1 of the array is a boolean, not an object at line 1 column 2 (byte 2)",
        err("[true]"))
      assert.equal("ae.json: element 1 of the array is a string, not an object at line 1 column 2 (byte 2)",
        err('["{}"]'))
    end)

    it("rejects exactly what json.decode rejects, with the same message", function()
      for _, text in ipairs({ "", " ", "[", "[{}", "[{},]", '[{"a":1,}]', '[{"a" 1}]', '[{"a":01}]', "[{}] [",
        '[{"a":"\1"}]', '[{"a":"\\x"}]', '[{"a":"\\u12"}]', '[{"a":"\255"}]', '[{"a":1e999}]', '[{"a":tru}]',
        '[{"a":[1,]}]', '[{"a":{"b":}}]', '[{a:1}]', "[{}]]", '{"a":}', "nul", "[{}]\0", '[{"a":"x}]',
        '[{"a":-}]', '[{"a":1.}]', '[{"a":1e}]', '[{"a":NaN}]', "[{" .. ('"x":['):rep(1000) .. "]" }) do
        local v, err = json.with_member(text, "host", "h")
        local d, derr = json.decode(text)
        assert.is_nil(v, text)
        assert.is_nil(d, text)
        assert.equal(derr, err, text)
      end
      -- nesting: the same limit as decode (the array is level 1, records level 2)
      local deep = '[{"x":' .. ("["):rep(998) .. ("]"):rep(998) .. "}]"
      assert.truthy(json.decode(deep))
      assert.truthy(json.with_member(deep, "host", "h"))
      local deeper = '[{"x":' .. ("["):rep(999) .. ("]"):rep(999) .. "}]"
      assert.is_nil(json.decode(deeper))
      assert.matches("nesting deeper than 1000 levels", select(2, json.with_member(deeper, "host", "h")))
      assert.equal(select(2, json.decode(deeper)), select(2, json.with_member(deeper, "host", "h")))
      -- valid numbers and escapes of every kind are accepted
      local valid = '[{"a":[0,-0,1.5e-300,1E+2,-9223372036854775808,18446744073709551616,1' .. ('0'):rep(300)
        .. '],"c":1' .. ('0'):rep(400) .. '.5e-400,"b":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\udc00"}]'
      local want = json.decode(valid)
      want[1].x = json.object()
      assert.same(want, json.decode(json.with_member(valid, "x", json.object())))
    end)

    it("raises for misuse: text or key not a string, a value that cannot be encoded", function()
      assert.equal("ae.json.with_member: text must be a string, got table",
        err_of(json.with_member, {}, "host", "h"))
      assert.equal("ae.json.with_member: key must be a string, got number", err_of(json.with_member, "[]", 1, "h"))
      assert.matches("bad argument #3", err_of(json.with_member, "[]", "host"))
      assert.equal("ae.json: cannot encode a function", err_of(json.with_member, "[]", "host", print))
      assert.matches("^ae.json: invalid UTF%-8 in string", err_of(json.with_member, "[]", "ho\255st", 1))
    end)

    it("round trip: decode(with_member(text)) is decode(text) plus the member, for generated documents", function()
      math.randomseed(7)
      -- keys may repeat inside a record, never "host" at its top level
      local sp, text_of = json_generator({ "a", "{", "}", "[", "]", '"', "\\", ",", ":", "é", "😀", "h" }, true)
      for _ = 1, 300 do
        local recs = {}
        for i = 1, math.random(0, 6) do
          recs[i] = sp() .. (function()
            local t = text_of(3, true)
            while t:sub(1, 1) ~= "{" do t = text_of(3, true) end
            return t
          end)() .. sp()
        end
        local text = sp() .. "[" .. sp() .. table.concat(recs, ",") .. "]" .. sp()
        local expected = assert(json.decode(text))
        local commas = 0
        for _, rec in ipairs(expected) do
          if next(rec) ~= nil then commas = commas + 1 end
          rec.host = "mettel.velocloud.net"
        end
        local out = assert(json.with_member(text, "host", "mettel.velocloud.net"))
        assert.same(expected, json.decode(out))
        -- one copy of the text (outer whitespace dropped) plus the members: nothing else changed
        assert.equal(#text:match("^%s*(.-)%s*$") + #expected * #'"host":"mettel.velocloud.net"' + commas, #out)
      end
    end)
  end)

  describe("select", function()
    local function all() return true end

    it("keeps the elements fn accepts, in order, copying their original text", function()
      local seen = {}
      local out, kept = json.select('[1,"two",{"n":3},[4],5.0,null,true]', function(_, i)
        seen[#seen + 1] = i
        return i % 2 == 1
      end)
      assert.equal('[1,{"n":3},5.0,true]', out)
      assert.equal(4, kept)
      assert.same({ 1, 2, 3, 4, 5, 6, 7 }, seen)
      -- the bytes as they are: no re-encoding of numbers, escapes or key order
      local text = '[{"z":1,"a":1E2,"s":"\\u00e9\\/x"},{"b":-0.0}]'
      assert.equal(text, (json.select(text, all)))
      assert.equal('[{"b":-0.0}]', (json.select(text, function(_, i) return i == 2 end)))
    end)

    it("hands fn each element decoded, as json.decode would, and its 1-based index", function()
      local got = {}
      json.select('[{"a":[1,{}],"b":null},[],"x",9007199254740993]', function(v, i)
        got[i] = v
        return false
      end)
      assert.same(json.decode('[{"a":[1,{}],"b":null},[],"x",9007199254740993]'), got)
      assert.is_true(json.is_array(got[2]))
      assert.is_true(json.is_array(got[1].a) and not json.is_array(got[1].a[2]))
      assert.equal(json.null, got[1].b)
      assert.equal(9007199254740993, got[4])
    end)

    it("uses Lua truthiness: only false and nil drop an element", function()
      local answers = { false, nil, 0, "", json.null, {} }
      local out, kept = json.select("[1,2,3,4,5,6]", function(_, i) return answers[i] end)
      assert.same({ "[3,4,5,6]", 4 }, { out, kept })
    end)

    it("empty array, nothing kept, whitespace and a BOM", function()
      local calls = 0
      assert.same({ "[]", 0 }, { json.select("[]", function() calls = calls + 1 end) })
      assert.same({ "[]", 0 }, { json.select(" \n[ \t]\r\n", function() calls = calls + 1 end) })
      assert.equal(0, calls)
      assert.same({ "[]", 0 }, { json.select("[1,2]", function() return false end) })
      -- whitespace around and between elements is dropped, inside an element it is kept
      assert.same({ '[{ "a" : [ 1 , 2 ] },3]', 2 },
        { json.select('\239\187\191 [\n  { "a" : [ 1 , 2 ] } ,\n\t7 , 3 \n] \n', function(v) return v ~= 7 end) })
    end)

    it("leaves strings alone: brackets, braces, commas, escaped quotes and backslashes in them", function()
      local text = '["]", "[", "\\"]", "\\\\", "a,b", "{\\"x\\":1}", "é😀", {"k]":"[v,"}]'
      local out, kept = json.select(text, function(v) return v ~= "a,b" end)
      assert.equal(7, kept)
      assert.equal('["]","[","\\"]","\\\\","{\\"x\\":1}","é😀",{"k]":"[v,"}]', out)
      local d = json.decode(out)
      assert.same({ "]", "[", '"]', "\\", '{"x":1}', "é😀" }, { table.unpack(d, 1, 6) })
      assert.equal("[v,", d[7]["k]"])
    end)

    it("keeps nested arrays and objects whole", function()
      local text = '[[1,[2,[3]]],{"a":{"b":[{"c":[]}]}},[[]],{}]'
      assert.equal(text, (json.select(text, all)))
      assert.equal('[[[]],{}]', (json.select(text, function(_, i) return i > 2 end)))
    end)

    it("reads a json.buffer in place", function()
      local buf = json.buffer(64):append('[{"id":1},'):append('{"id":2},{"id":3}]')
      assert.same({ '[{"id":1},{"id":3}]', 2 }, { json.select(buf, function(v) return v.id ~= 2 end) })
    end)

    it("errors: not JSON, or JSON that is not an array, return nil and a decode-style message", function()
      local cases = {
        { "{}", "ae.json: expected an array, got an object at line 1 column 1 (byte 1)" },
        { ' "x"', "ae.json: expected an array, got a string at line 1 column 2 (byte 2)" },
        { "12", "ae.json: expected an array, got a number at line 1 column 1 (byte 1)" },
        { "null", "ae.json: expected an array, got null at line 1 column 1 (byte 1)" },
        { "true", "ae.json: expected an array, got a boolean at line 1 column 1 (byte 1)" },
        { "{} x", "ae.json: expected end of input after the value, got 'x' at line 1 column 4 (byte 4)" },
        { "", "ae.json: expected a value, got end of input at line 1 column 1 (byte 1)" },
        { "[1,", "ae.json: expected a value, got end of input at line 1 column 4 (byte 4)" },
        { "[1] [", "ae.json: expected end of input after the value, got '[' at line 1 column 5 (byte 5)" },
      }
      for _, c in ipairs(cases) do
        assert.same({ nil, c[2] }, { json.select(c[1], all) }, c[1])
      end
    end)

    it("rejects exactly what json.decode rejects, with the same message", function()
      for _, text in ipairs({ "", " ", "[", "[1", "[1,]", '[{"a":1,}]', '[{"a" 1}]', "[01]", "[1] [",
        '["\1"]', '["\\x"]', '["\\u12"]', '["\255"]', "[1e999]", "[tru]", "[[1,]]", '[{"b":}]', "[{a:1}]",
        "[1]]", "[1]\0", '["x]', "[-]", "[1.]", "[1e]", "[NaN]", "[" .. ("["):rep(1000) .. ("]"):rep(1000) .. "]" }) do
        local v, err = json.select(text, all)
        local d, derr = json.decode(text)
        assert.is_nil(v, text)
        assert.is_nil(d, text)
        assert.equal(derr, err, text)
      end
      -- the same depth limit as decode: the array is level 1
      local deep = "[" .. ("["):rep(999) .. ("]"):rep(999) .. "]"
      assert.truthy(json.decode(deep))
      assert.equal(deep, (json.select(deep, all)))
    end)

    it("hands over the elements before an invalid one, as decode_each does", function()
      local seen = {}
      local out, err = json.select("[1,2,x]", function(v) seen[#seen + 1] = v return true end)
      assert.is_nil(out)
      assert.equal("ae.json: expected a value, got 'x' at line 1 column 6 (byte 6)", err)
      assert.same({ 1, 2 }, seen)
    end)

    it("propagates an error raised by fn, with the elements before it handed over", function()
      local seen = {}
      local ok, err = pcall(json.select, "[1,2,3]", function(v)
        if v == 2 then error({ code = 42 }) end
        seen[#seen + 1] = v
        return true
      end)
      assert.is_false(ok)
      assert.same({ code = 42 }, err)
      assert.same({ 1 }, seen)
      assert.matches("boom$", err_of(json.select, "[1]", function() error("boom") end))
      -- nothing is left behind: the next call works
      assert.same({ "[1]", 1 }, { json.select("[1]", all) })
    end)

    it("lets fn decode, encode and select itself (no shared state while it runs)", function()
      local out, kept = json.select('[[1,2,3],[4],[5,6]]', function(v)
        local inner = assert(json.select(json.encode(v), function(x) return x % 2 == 1 end))
        return #json.decode(inner) > 0 and json.with_member('[{}]', "k", inner) ~= nil
      end)
      assert.same({ "[[1,2,3],[5,6]]", 2 }, { out, kept })
    end)

    it("raises for misuse: text not a string or json.buffer, fn not a function", function()
      assert.equal("ae.json.select: text must be a string or a json.buffer, got table", err_of(json.select, {}, all))
      assert.equal("ae.json.select: fn must be a function, got no value", err_of(json.select, "[]"))
      assert.equal("ae.json.select: fn must be a function, got table", err_of(json.select, "[]", {}))
    end)

    it("round trip: decode(select(text, f)) is the filtered decode(text), for generated arrays", function()
      math.randomseed(11)
      local sp, text_of = json_generator({ "a", "{", "}", "[", "]", '"', "\\", ",", ":", "é", "😀", "\n" })
      local kinds = { "number", "string", "table", "boolean", "userdata" }
      for round = 1, 300 do
        local elems, texts = {}, {}
        for i = 1, math.random(0, 8) do
          texts[i] = text_of(1)
          elems[i] = sp() .. texts[i] .. sp()
        end
        local text = sp() .. "[" .. sp() .. table.concat(elems, ",") .. "]" .. sp()
        local drop = kinds[round % #kinds + 1] -- a predicate that depends on the decoded value
        local function f(v, i) return type(v) ~= drop and i % 3 ~= 0 end
        local all_of = assert(json.decode(text))
        local expected, want_text = json.array(), {}
        for i, v in ipairs(all_of) do
          if f(v, i) then
            expected[#expected + 1] = v
            want_text[#want_text + 1] = texts[i]
          end
        end
        local out, kept = json.select(text, f)
        assert.same(expected, json.decode(out), text)
        assert.equal(#expected, kept)
        -- exactly the original texts of the kept elements, joined with ","
        assert.equal("[" .. table.concat(want_text, ",") .. "]", out)
      end
    end)
  end)

  describe("round trips", function()
    it("keeps a realistic VeloCloud document unchanged", function()
      local doc = '[{"edgeName":"Edge Gdańsk 01","serialNumber":"VC05200028729",'
        .. '"edgeId":{"host":"mettel.velocloud.net",'
        .. '"enterprise_id":137,"edge_id":2591},"links":[{"linkId":1,"interface":"GE1","state":"STABLE",'
        .. '"bytesRx":9007199254740993,"latency":12.5,"displayName":null}],"lastContact":null,"tags":[],"custom":{}}]'
      local v = json.decode(doc)
      assert.equal(9007199254740993, v[1].links[1].bytesRx)
      local again = json.decode(json.encode(v))
      assert.same(v, again)
      assert.equal("[]", json.encode(again[1].tags))
      assert.equal("{}", json.encode(again[1].custom))
      local ascii = json.encode(v, { ascii = true })
      assert.matches("Gda\\u0144sk", ascii, 1, true)
      assert.same(v, json.decode(ascii))
    end)

    it("round-trips random documents", function()
      math.randomseed(42)
      local chars = { "a", "Z", " ", '"', "\\", "/", "\n", "\1", "é", "€", "😀", "\u{10FFFF}" }
      local function str()
        local t = {}
        for i = 1, math.random(0, 8) do
          t[i] = chars[math.random(#chars)]
        end
        return table.concat(t)
      end
      local function val(d)
        local r = math.random(d > 3 and 5 or 7)
        if r == 1 then
          return json.null
        elseif r == 2 then
          return math.random(math.mininteger, math.maxinteger)
        elseif r == 3 then
          return (math.random() - 0.5) * 10 ^ math.random(-12, 12)
        elseif r == 4 then
          return math.random() < 0.5
        elseif r == 5 then
          return str()
        elseif r == 6 then
          local t = json.array()
          for i = 1, math.random(0, 4) do
            t[i] = val(d + 1)
          end
          return t
        end
        local t = json.object()
        for _ = 1, math.random(0, 4) do
          t[str() .. "k"] = val(d + 1)
        end
        return t
      end
      for _ = 1, 500 do
        local v = val(0)
        local text = json.encode(v)
        assert.same(v, json.decode(text))
        assert.same(v, json.decode(json.encode(v, { ascii = true })))
        assert.equal(#text, #json.encode(json.decode(text))) -- same members, maybe another key order
      end
    end)

    it("decodes a 1 MB document quickly", function()
      local parts = {}
      for i = 1, 20000 do
        parts[i] = ('{"id":%d,"name":"edge-%d","up":true,"v":%d.25,"n":null}'):format(i, i, i)
      end
      local text = "[" .. table.concat(parts, ",") .. "]"
      assert.is_true(#text > 1000000)
      local t0 = os.clock()
      local v = json.decode(text)
      local again = json.encode(v)
      assert.equal(20000, #v)
      assert.equal(#text, #again)
      assert.is_true(os.clock() - t0 < 2, "1 MB-class round trip took too long")
    end)
  end)
end)
