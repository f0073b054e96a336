/* test_json.c - C tests of the JSON codec (core/json.c, API in core/json.h).
 *
 * cJSON (a project dependency) is the independent oracle: what ae.json
 * encodes must parse with cJSON to the same value, and what cJSON prints
 * must decode with ae.json to the same value. Plus exact integers, float
 * round trips on random bit patterns, error messages with positions, depth
 * limits, out-of-memory handling, stack balance of the C API, and the
 * text splices (json.with_member, json.select) against cJSON.
 * Exits non-zero on any failure; prints "N passed, M failed".
 */
#include "json.h"
#include "log.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int luaopen_ae_json(lua_State *L);

/* ------------------------------------------------------------ helpers */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Compare a Lua value (at idx) with a cJSON item. Returns 1 when equal. */
static int same_as_cjson(lua_State *L, int idx, const cJSON *j, char *why, size_t whylen) {
    idx = lua_absindex(L, idx);
    int t = lua_type(L, idx);
    if (cJSON_IsNull(j)) {
        if (ae_json_is_null(L, idx) || t == LUA_TNIL) return 1;
        snprintf(why, whylen, "expected null, got %s", luaL_typename(L, idx));
        return 0;
    }
    if (cJSON_IsBool(j)) {
        if (t == LUA_TBOOLEAN && lua_toboolean(L, idx) == cJSON_IsTrue(j)) return 1;
        snprintf(why, whylen, "boolean mismatch");
        return 0;
    }
    if (cJSON_IsNumber(j)) {
        if (t == LUA_TNUMBER && (double)lua_tonumber(L, idx) == j->valuedouble) return 1;
        snprintf(why, whylen, "number mismatch: lua %.17g, cjson %.17g", lua_tonumber(L, idx), j->valuedouble);
        return 0;
    }
    if (cJSON_IsString(j)) {
        size_t n;
        const char *s = t == LUA_TSTRING ? lua_tolstring(L, idx, &n) : NULL;
        if (s && n == strlen(j->valuestring) && memcmp(s, j->valuestring, n) == 0) return 1;
        snprintf(why, whylen, "string mismatch: lua '%s', cjson '%s'", s ? s : "(not a string)", j->valuestring);
        return 0;
    }
    if (t != LUA_TTABLE) {
        snprintf(why, whylen, "expected a table, got %s", luaL_typename(L, idx));
        return 0;
    }
    if (cJSON_IsArray(j)) {
        int n = cJSON_GetArraySize(j), i = 1;
        if ((int)luaL_len(L, idx) != n) {
            snprintf(why, whylen, "array length %d vs %lld", n, (long long)luaL_len(L, idx));
            return 0;
        }
        for (const cJSON *c = j->child; c; c = c->next, i++) {
            lua_rawgeti(L, idx, i);
            int ok = same_as_cjson(L, -1, c, why, whylen);
            lua_pop(L, 1);
            if (!ok) return 0;
        }
        return 1;
    }
    /* object: same key count, each key equal */
    int nkeys = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        nkeys++;
        lua_pop(L, 1);
    }
    if (nkeys != cJSON_GetArraySize(j)) {
        snprintf(why, whylen, "object has %d keys, cjson %d", nkeys, cJSON_GetArraySize(j));
        return 0;
    }
    for (const cJSON *c = j->child; c; c = c->next) {
        lua_getfield(L, idx, c->string);
        if (lua_isnil(L, -1)) {
            /* integer keys of the Lua side were written as strings */
            lua_pop(L, 1);
            char *end;
            long long k = strtoll(c->string, &end, 10);
            lua_rawgeti(L, idx, k);
            if (*end || lua_isnil(L, -1)) {
                lua_pop(L, 1);
                snprintf(why, whylen, "missing key '%s'", c->string);
                return 0;
            }
        }
        int ok = same_as_cjson(L, -1, c, why, whylen);
        lua_pop(L, 1);
        if (!ok) return 0;
    }
    return 1;
}

/* encode the value of a Lua expression, return malloc'd text (or NULL + err) */
static char *encode_expr(lua_State *L, const char *expr, unsigned flags, char *err) {
    char code[4096];
    snprintf(code, sizeof code, "local json = require 'ae.json'; return %s", expr);
    if (luaL_dostring(L, code)) {
        fprintf(stderr, "lua error in test: %s\n", lua_tostring(L, -1));
        exit(2);
    }
    size_t len;
    char *s = ae_json_encode(L, -1, flags, &len, err, AE_JSON_ERRLEN);
    lua_pop(L, 1);
    if (s && strlen(s) != len) {
        free(s);
        strcpy(err, "length mismatch");
        return NULL;
    }
    return s;
}

static void expect_encode(lua_State *L, const char *expr, unsigned flags, const char *want) {
    char err[AE_JSON_ERRLEN] = "";
    int top = lua_gettop(L);
    char *s = encode_expr(L, expr, flags, err);
    CHECK(s && strcmp(s, want) == 0, "encode(%s) = %s (%s), want %s", expr, s ? s : "NULL", err, want);
    CHECK(lua_gettop(L) == top, "stack not balanced after encode(%s)", expr);
    free(s);
}

static void expect_encode_error(lua_State *L, const char *expr, const char *want) {
    char err[AE_JSON_ERRLEN] = "";
    int top = lua_gettop(L);
    char *s = encode_expr(L, expr, 0, err);
    CHECK(!s && strcmp(err, want) == 0, "encode(%s) error: got '%s' (%s), want '%s'", expr, err, s ? s : "NULL", want);
    CHECK(lua_gettop(L) == top, "stack not balanced after failed encode(%s)", expr);
    free(s);
}

static void expect_decode_error(lua_State *L, const char *text, size_t len, const char *want) {
    char err[AE_JSON_ERRLEN] = "";
    int top = lua_gettop(L);
    int rc = ae_json_decode(L, text, len, err, sizeof err);
    CHECK(rc == -1 && strcmp(err, want) == 0, "decode(%s): got rc=%d '%s', want '%s'", text, rc, err, want);
    CHECK(lua_gettop(L) == top, "stack changed after failed decode(%s)", text);
}

/* encode a Lua expression, parse with cJSON, compare with the Lua value */
static void oracle_expr(lua_State *L, const char *expr, unsigned flags) {
    char code[4096], err[AE_JSON_ERRLEN] = "", why[256] = "";
    snprintf(code, sizeof code, "local json = require 'ae.json'; return %s", expr);
    if (luaL_dostring(L, code)) {
        fprintf(stderr, "lua error in test: %s\n", lua_tostring(L, -1));
        exit(2);
    }
    size_t len;
    char *s = ae_json_encode(L, -1, flags, &len, err, sizeof err);
    cJSON *j = s ? cJSON_ParseWithLength(s, len) : NULL;
    CHECK(j && same_as_cjson(L, -1, j, why, sizeof why), "oracle %s: text %s err %s why %s", expr, s ? s : "NULL", err,
          why);
    cJSON_Delete(j);
    free(s);
    lua_pop(L, 1);
}

/* ---------------------------------------------------------------- tests */

static void test_encode_basics(lua_State *L) {
    expect_encode(L, "nil", 0, "null");
    expect_encode(L, "json.null", 0, "null");
    expect_encode(L, "true", 0, "true");
    expect_encode(L, "false", 0, "false");
    expect_encode(L, "0", 0, "0");
    expect_encode(L, "-42", 0, "-42");
    expect_encode(L, "math.maxinteger", 0, "9223372036854775807");
    expect_encode(L, "math.mininteger", 0, "-9223372036854775808");
    expect_encode(L, "3.0", 0, "3.0");
    expect_encode(L, "-0.0", 0, "-0.0");
    expect_encode(L, "0.1", 0, "0.1");
    expect_encode(L, "1/3", 0, "0.3333333333333333");
    expect_encode(L, "1e300", 0, "1e+300");
    expect_encode(L, "2^53", 0, "9007199254740992.0");
    expect_encode(L, "5e-324", 0, "4.94065645841247e-324");
    expect_encode(L, "''", 0, "\"\"");
    expect_encode(L, "'a\"b\\\\c/d'", 0, "\"a\\\"b\\\\c/d\"");
    expect_encode(L, "'\\b\\f\\n\\r\\t\\0\\1\\31\\127'", 0, "\"\\b\\f\\n\\r\\t\\u0000\\u0001\\u001f\x7f\"");
    expect_encode(L, "'\\127'", AE_JSON_ASCII, "\"\\u007f\"");
    expect_encode(L, "'caf\\u{e9} \\u{20ac} \\u{1F600}'", 0, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    expect_encode(L, "'caf\\u{e9} \\u{20ac} \\u{1F600}'", AE_JSON_ASCII, "\"caf\\u00e9 \\u20ac \\ud83d\\ude00\"");
    expect_encode(L, "'\\u{10FFFF}'", AE_JSON_ASCII, "\"\\udbff\\udfff\"");
    expect_encode(L, "'a\\xffb'", AE_JSON_REPLACE_INVALID_UTF8,
                  "\"a\xef\xbf\xbd"
                  "b\"");
    expect_encode(L, "'a\\xffb'", AE_JSON_REPLACE_INVALID_UTF8 | AE_JSON_ASCII, "\"a\\ufffdb\"");
    expect_encode(L, "{}", 0, "{}");
    expect_encode(L, "json.array()", 0, "[]");
    expect_encode(L, "json.object()", 0, "{}");
    expect_encode(L, "{1, 2, 3}", 0, "[1,2,3]");
    expect_encode(L, "{json.null, json.null}", 0, "[null,null]");
    expect_encode(L, "json.array{1, nil, 3}", 0, "[1,null,3]");
    expect_encode(L, "{a = {b = {}}}", 0, "{\"a\":{\"b\":{}}}");
    expect_encode(L, "{[2] = 'x'}", 0, "{\"2\":\"x\"}");
    expect_encode(L, "{[-1] = 'x'}", 0, "{\"-1\":\"x\"}");
    expect_encode(L, "json.object{'x'}", 0, "{\"1\":\"x\"}");
    expect_encode(L, "{{}, json.array{}, {{}}}", 0, "[{},[],[{}]]");
}

static void test_encode_errors(lua_State *L) {
    expect_encode_error(L, "print", "ae.json: cannot encode a function");
    expect_encode_error(L, "{a = {b = {1, print}}}", "ae.json: cannot encode a function at a.b[2]");
    expect_encode_error(L, "{['x y'] = {coroutine.create(print)}}", "ae.json: cannot encode a thread at [\"x y\"][1]");
    expect_encode_error(L, "io.stdout", "ae.json: cannot encode a userdata");
    expect_encode_error(L, "0/0", "ae.json: cannot encode NaN (not valid JSON)");
    expect_encode_error(L, "{x = math.huge}", "ae.json: cannot encode an infinite number (not valid JSON) at x");
    expect_encode_error(L, "{1, 2, x = 3}",
                        "ae.json: cannot encode a table with both integer and string keys (mark it with json.object "
                        "to encode the integer keys as strings)");
    expect_encode_error(L, "{[true] = 1}",
                        "ae.json: cannot encode a table key of type boolean (JSON object keys are strings)");
    expect_encode_error(L, "{[1.5] = 1}",
                        "ae.json: cannot encode table key 1.5 (a float; JSON object keys are strings)");
    expect_encode_error(L, "(function() local t = {}; t[1] = t; return t end)()",
                        "ae.json: cannot encode a table that contains itself (cycle) at [1]");
    expect_encode_error(L, "json.array{x = 1}",
                        "ae.json: table marked as a JSON array has a key that is not a positive integer");
    expect_encode_error(L, "json.array{[1000] = 1}",
                        "ae.json: table marked as a JSON array is too sparse (largest index 1000, 1 elements)");
    expect_encode_error(L, "'a\\xffb'",
                        "ae.json: invalid UTF-8 in string (byte 2 of 3); use invalid_utf8 = \"replace\" to "
                        "substitute U+FFFD");
    expect_encode_error(L, "'\\xed\\xa0\\x80'", /* a UTF-16 surrogate written as UTF-8 (CESU) */
                        "ae.json: invalid UTF-8 in string (byte 1 of 3); use invalid_utf8 = \"replace\" to "
                        "substitute U+FFFD");
    expect_encode_error(L, "'\\xc0\\x80'", /* overlong NUL */
                        "ae.json: invalid UTF-8 in string (byte 1 of 2); use invalid_utf8 = \"replace\" to "
                        "substitute U+FFFD");
}

static void test_encode_oracle(lua_State *L) {
    oracle_expr(L,
                "{edges = {{name = 'edge-1', serial = 'VC05200028729', links = {{ip = '1.2.3.4', up = true}}, "
                "lastContact = json.null, n = 42, ratio = 0.75}}, total = 1}",
                0);
    oracle_expr(L, "{s = 'tab\\t nl\\n quote\\\" back\\\\ ctrl\\1 \\u{e9}\\u{1F600}'}", 0);
    oracle_expr(L, "{s = 'tab\\t nl\\n quote\\\" back\\\\ ctrl\\1 \\u{e9}\\u{1F600}'}", AE_JSON_ASCII);
    oracle_expr(L, "{[1] = 'a', [3] = 'c', [10] = 'j'}", 0);
    oracle_expr(L, "{1.5, -2.25e-10, 6.02214076e23, 123456789}", 0);
    /* random documents built in Lua */
    const char *gen = "local json = require 'ae.json'\n"
                      "local seed = ...\n"
                      "math.randomseed(seed)\n"
                      "local chars = {'a','Z','0',' ','\"','\\\\','/','\\n','\\t','\\1','\\u{e9}','\\u{20ac}',"
                      "'\\u{1F600}','\\u{7f}','\\u{10FFFF}'}\n"
                      "local function str() local t = {} for i = 1, math.random(0, 12) do "
                      "t[i] = chars[math.random(#chars)] end return table.concat(t) end\n"
                      "local function val(d)\n"
                      "  local r = math.random(d > 4 and 6 or 9)\n"
                      "  if r == 1 then return json.null elseif r == 2 then return math.random() < 0.5\n"
                      "  elseif r == 3 then return math.random(math.mininteger, math.maxinteger)\n"
                      "  elseif r == 4 then return (math.random() - 0.5) * 10 ^ math.random(-30, 30)\n"
                      "  elseif r <= 6 then return str()\n"
                      "  elseif r == 7 then local t = json.array{} for i = 1, math.random(0, 5) do t[i] = val(d + 1) "
                      "end return t\n"
                      "  else local t = {} for _ = 1, math.random(0, 5) do t[str() .. 'k'] = val(d + 1) end "
                      "return t end\n"
                      "end\n"
                      "return val(0)";
    if (luaL_loadstring(L, gen)) {
        fprintf(stderr, "generator: %s\n", lua_tostring(L, -1));
        exit(2);
    }
    int fn = lua_gettop(L);
    int bad = 0;
    for (int i = 0; i < 3000; i++) {
        lua_pushvalue(L, fn);
        lua_pushinteger(L, i);
        if (lua_pcall(L, 1, 1, 0)) {
            fprintf(stderr, "generator: %s\n", lua_tostring(L, -1));
            exit(2);
        }
        char err[AE_JSON_ERRLEN] = "", why[256] = "";
        unsigned flags = (i & 1) ? AE_JSON_ASCII : 0;
        size_t len;
        char *s = ae_json_encode(L, -1, flags, &len, err, sizeof err);
        cJSON *j = s ? cJSON_ParseWithLength(s, len) : NULL;
        int ok = j && same_as_cjson(L, -1, j, why, sizeof why);
        /* and our own decoder gives the same document back */
        if (ok) {
            ok = ae_json_decode(L, s, len, err, sizeof err) == 0 && same_as_cjson(L, -1, j, why, sizeof why);
            if (ok) {
                size_t len2;
                char *s2 = ae_json_encode(L, -1, flags, &len2, err, sizeof err);
                /* key order may differ; compare as parsed trees */
                cJSON *j2 = s2 ? cJSON_ParseWithLength(s2, len2) : NULL;
                ok = j2 && cJSON_Compare(j, j2, 1);
                cJSON_Delete(j2);
                free(s2);
            }
            lua_pop(L, 1);
        }
        if (!ok && bad++ < 5) fprintf(stderr, "random doc %d: %s / %s / %s\n", i, s ? s : "NULL", err, why);
        cJSON_Delete(j);
        free(s);
        lua_pop(L, 1);
    }
    CHECK(bad == 0, "%d random documents differ from the cJSON oracle", bad);
    lua_pop(L, 1);
}

/* build a random cJSON tree, print it with cJSON, decode with ae.json */
static cJSON *random_cjson(int depth) {
    int r = (int)(rnd() % (depth > 4 ? 5 : 7));
    static const char *strs[] = {"",          "plain",       "with \"quotes\"",        "back\\slash", "nl\n tab\t",
                                 "\x01 ctrl", "caf\xc3\xa9", "\xf0\x9f\x98\x80 emoji", "/slash"};
    switch (r) {
    case 0: return cJSON_CreateNull();
    case 1: return cJSON_CreateBool(rnd() & 1);
    case 2: return cJSON_CreateNumber((double)(int64_t)(rnd() % 2000000) - 1000000);
    case 3: return cJSON_CreateNumber(((double)(rnd() % 1000000) / 1000.0) * ((rnd() & 1) ? 1 : -1));
    case 4: return cJSON_CreateString(strs[rnd() % (sizeof strs / sizeof *strs)]);
    case 5: {
        cJSON *a = cJSON_CreateArray();
        for (int i = (int)(rnd() % 5); i > 0; i--)
            cJSON_AddItemToArray(a, random_cjson(depth + 1));
        return a;
    }
    default: {
        cJSON *o = cJSON_CreateObject();
        for (int i = (int)(rnd() % 5); i > 0; i--) {
            char key[32];
            snprintf(key, sizeof key, "k%d_%u", i, (unsigned)(rnd() % 100));
            cJSON_AddItemToObject(o, key, random_cjson(depth + 1));
        }
        return o;
    }
    }
}

static void test_decode_oracle(lua_State *L) {
    int bad = 0;
    for (int i = 0; i < 2000; i++) {
        cJSON *j = random_cjson(0);
        char *s = (i & 1) ? cJSON_Print(j) : cJSON_PrintUnformatted(j); /* formatted: whitespace everywhere */
        char err[AE_JSON_ERRLEN] = "", why[256] = "";
        int top = lua_gettop(L);
        int ok = ae_json_decode(L, s, strlen(s), err, sizeof err) == 0 && lua_gettop(L) == top + 1 &&
                 same_as_cjson(L, -1, j, why, sizeof why);
        if (!ok && bad++ < 5) fprintf(stderr, "cjson doc %d: %s / %s / %s\n", i, s, err, why);
        lua_settop(L, top);
        free(s);
        cJSON_Delete(j);
    }
    CHECK(bad == 0, "%d cJSON-printed documents decode differently", bad);
}

static void test_integers(lua_State *L) {
    static const struct {
        const char *text;
        long long want;
    } ints[] = {{"0", 0},
                {"-0", 0},
                {"9007199254740993", 9007199254740993LL},
                {"-9007199254740993", -9007199254740993LL},
                {"9223372036854775807", INT64_MAX},
                {"-9223372036854775808", INT64_MIN},
                {"1234567890123456789", 1234567890123456789LL}};
    char err[AE_JSON_ERRLEN];
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        int rc = ae_json_decode(L, ints[i].text, strlen(ints[i].text), err, sizeof err);
        CHECK(rc == 0 && lua_isinteger(L, -1) && lua_tointeger(L, -1) == ints[i].want, "integer %s", ints[i].text);
        if (rc == 0) {
            size_t n;
            char *s = ae_json_encode(L, -1, 0, &n, err, sizeof err);
            const char *want = strcmp(ints[i].text, "-0") == 0 ? "0" : ints[i].text;
            CHECK(s && strcmp(s, want) == 0, "integer %s re-encodes as %s", ints[i].text, s ? s : err);
            free(s);
            lua_pop(L, 1);
        }
    }
    /* beyond int64 -> float; with '.' or exponent -> float */
    static const char *floats[] = {"9223372036854775808", "-9223372036854775809", "1e2", "1.0", "18446744073709551616"};
    for (size_t i = 0; i < sizeof floats / sizeof *floats; i++) {
        int rc = ae_json_decode(L, floats[i], strlen(floats[i]), err, sizeof err);
        CHECK(rc == 0 && lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1) &&
                  lua_tonumber(L, -1) == strtod(floats[i], NULL),
              "float %s", floats[i]);
        if (rc == 0) lua_pop(L, 1);
    }
}

static void test_floats(lua_State *L) {
    char err[AE_JSON_ERRLEN];
    int bad = 0;
    /* random bit patterns: encode -> decode must give the same double */
    for (int i = 0; i < 200000; i++) {
        uint64_t bits = rnd();
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d)) continue;
        lua_pushnumber(L, d);
        size_t n;
        char *s = ae_json_encode(L, -1, 0, &n, err, sizeof err);
        lua_pop(L, 1);
        if (!s) {
            bad++;
            continue;
        }
        int ok = ae_json_decode(L, s, n, err, sizeof err) == 0;
        if (ok) {
            double back = lua_tonumber(L, -1);
            ok = !lua_isinteger(L, -1) && memcmp(&back, &d, sizeof d) == 0 && strtod(s, NULL) == d;
            lua_pop(L, 1);
        }
        if (!ok && bad++ < 5) fprintf(stderr, "float %.17g -> %s\n", d, s);
        free(s);
    }
    CHECK(bad == 0, "%d floats do not round-trip", bad);
    /* decimal texts (the decoder's fast path) must agree with strtod */
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        char txt[64];
        int digits = 1 + (int)(rnd() % 17);
        uint64_t m = rnd() % 100000000000000000ull;
        int exp = (int)(rnd() % 60) - 30;
        switch (i % 3) {
        case 0:
            snprintf(txt, sizeof txt, "%llu.%0*llu", (unsigned long long)(m % 100000), digits % 10 + 1,
                     (unsigned long long)(rnd() % 1000000000));
            break;
        case 1: snprintf(txt, sizeof txt, "%llue%d", (unsigned long long)(m % 10000000000000000ull), exp); break;
        default: snprintf(txt, sizeof txt, "-%llu.%llue%d", (unsigned long long)(m % 1000), (unsigned long long)m, exp);
        }
        int ok = ae_json_decode(L, txt, strlen(txt), err, sizeof err) == 0;
        if (ok) {
            ok = lua_tonumber(L, -1) == strtod(txt, NULL);
            lua_pop(L, 1);
        }
        if (!ok && bad++ < 5) fprintf(stderr, "decimal %s: %s\n", txt, err);
    }
    CHECK(bad == 0, "%d decimal texts decode differently from strtod", bad);
}

static void test_strings(lua_State *L) {
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"\"\\u00e9\"", "\xc3\xa9"},
        {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80"},
        {"\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80"},
        {"\"a\\ud800b\"", "a\xef\xbf\xbd"
                          "b"}, /* lone high surrogate */
        {"\"a\\udc00b\"", "a\xef\xbf\xbd"
                          "b"}, /* lone low surrogate */
        {"\"\\ud800\\u0041\"", "\xef\xbf\xbd"
                               "A"}, /* high + non-low */
        {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t"},
        {"\"raw \xe2\x82\xac\"", "raw \xe2\x82\xac"},
    };
    char err[AE_JSON_ERRLEN];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = ae_json_decode(L, cases[i].text, strlen(cases[i].text), err, sizeof err);
        size_t n = 0;
        const char *s = rc == 0 ? lua_tolstring(L, -1, &n) : NULL;
        CHECK(s && n == strlen(cases[i].want) && memcmp(s, cases[i].want, n) == 0, "string %s (%s)", cases[i].text,
              rc ? err : "wrong value");
        if (rc == 0) lua_pop(L, 1);
    }
    /* \u0000 gives an embedded NUL */
    CHECK(ae_json_decode(L, "\"a\\u0000b\"", 10, err, sizeof err) == 0 && lua_rawlen(L, -1) == 3, "embedded NUL");
    lua_pop(L, 1);
}

static void test_decode_errors(lua_State *L) {
#define DE(text, msg) expect_decode_error(L, text, sizeof(text) - 1, msg)
    DE("", "ae.json: expected a value, got end of input at line 1 column 1 (byte 1)");
    DE("   ", "ae.json: expected a value, got end of input at line 1 column 4 (byte 4)");
    DE("[1,2", "ae.json: expected ',' or ']', got end of input at line 1 column 5 (byte 5)");
    DE("[1,]", "ae.json: expected a value, got ']' at line 1 column 4 (byte 4)");
    DE("{\"a\":1,}", "ae.json: expected a string key, got '}' at line 1 column 8 (byte 8)");
    DE("{\"a\" 1}", "ae.json: expected ':', got '1' at line 1 column 6 (byte 6)");
    DE("{a:1}", "ae.json: expected a string key, got 'a' at line 1 column 2 (byte 2)");
    DE("{\"a\":1 \"b\":2}", "ae.json: expected ',' or '}', got '\"' at line 1 column 8 (byte 8)");
    DE("[1]x", "ae.json: expected end of input after the value, got 'x' at line 1 column 4 (byte 4)");
    DE("{\n  \"a\": tru\n}", "ae.json: invalid literal (true?) at line 2 column 8 (byte 10)");
    DE("nul", "ae.json: invalid literal (null?) at line 1 column 1 (byte 1)");
    DE("01", "ae.json: invalid number (leading zero) at line 1 column 1 (byte 1)");
    DE("-", "ae.json: invalid number (digit expected) at line 1 column 2 (byte 2)");
    DE("1.", "ae.json: invalid number (digit expected after '.') at line 1 column 3 (byte 3)");
    DE("1e+", "ae.json: invalid number (digit expected in exponent) at line 1 column 4 (byte 4)");
    DE("+1", "ae.json: expected a value, got '+' at line 1 column 1 (byte 1)");
    DE("NaN", "ae.json: expected a value, got 'N' at line 1 column 1 (byte 1)");
    DE("1e400", "ae.json: number out of range at line 1 column 1 (byte 1)");
    DE("\"abc", "ae.json: unterminated string at line 1 column 1 (byte 1)");
    DE("\"a\\", "ae.json: unterminated string at line 1 column 1 (byte 1)");
    DE("\"a\nb\"", "ae.json: control character U+000A in string (must be escaped) at line 1 column 3 (byte 3)");
    DE("\"\\x\"", "ae.json: invalid escape 'x' in string at line 1 column 2 (byte 2)");
    DE("\"\\u12G4\"", "ae.json: invalid \\u escape (4 hex digits expected) at line 1 column 2 (byte 2)");
    DE("\"\\u12\"", "ae.json: invalid \\u escape (4 hex digits expected) at line 1 column 2 (byte 2)");
    DE("[\"\xc3\xa9\", \"\xff\"]", "ae.json: invalid UTF-8 in string at line 1 column 8 (byte 9)");
    DE("\"\xed\xa0\x80\"", "ae.json: invalid UTF-8 in string at line 1 column 2 (byte 2)");
    DE("\"\xe2\x82\"", "ae.json: invalid UTF-8 in string at line 1 column 2 (byte 2)");
    DE("[1]\0", "ae.json: expected end of input after the value, got byte 0x00 at line 1 column 4 (byte 4)");
    DE("\xef\xbb\xbf[1", "ae.json: expected ',' or ']', got end of input at line 1 column 4 (byte 6)");
#undef DE
    /* the BOM is skipped */
    char err[AE_JSON_ERRLEN];
    CHECK(ae_json_decode(L, "\xef\xbb\xbf[]", 5, err, sizeof err) == 0, "BOM: %s", err);
    lua_pop(L, 1);
    /* not NUL-terminated input: the number at the very end must not read past it */
    char buf[3] = {'1', '2', '3'};
    CHECK(ae_json_decode(L, buf, 2, err, sizeof err) == 0 && lua_tointeger(L, -1) == 12, "length-bounded number");
    lua_pop(L, 1);
    /* a NULL/0 err buffer is allowed */
    CHECK(ae_json_decode(L, "[", 1, NULL, 0) == -1, "NULL err buffer");
}

static void nest(char *buf, int depth, char open, char close) {
    memset(buf, open, (size_t)depth);
    memset(buf + depth, close, (size_t)depth);
    buf[2 * depth] = 0;
}

static void test_depth(lua_State *L) {
    char *buf = malloc(5 * 100000 + 1), err[AE_JSON_ERRLEN];
    nest(buf, AE_JSON_MAX_DEPTH, '[', ']');
    int rc = ae_json_decode(L, buf, strlen(buf), err, sizeof err);
    CHECK(rc == 0, "depth %d decodes: %s", AE_JSON_MAX_DEPTH, err);
    if (rc == 0) {
        size_t n;
        char *s = ae_json_encode(L, -1, 0, &n, err, sizeof err);
        CHECK(s && strcmp(s, buf) == 0, "depth %d re-encodes: %s", AE_JSON_MAX_DEPTH, s ? "differs" : err);
        free(s);
        lua_pop(L, 1);
    }
    nest(buf, AE_JSON_MAX_DEPTH + 1, '[', ']');
    CHECK(ae_json_decode(L, buf, strlen(buf), err, sizeof err) == -1 &&
              strcmp(err, "ae.json: nesting deeper than 1000 levels at line 1 column 1001 (byte 1001)") == 0,
          "depth 1001: %s", err);
    for (int i = 0; i < 100000; i++)
        memcpy(buf + 5 * i, "{\"a\":", 5);
    buf[500000] = 0;
    CHECK(ae_json_decode(L, buf, strlen(buf), err, sizeof err) == -1 &&
              strcmp(err, "ae.json: nesting deeper than 1000 levels at line 1 column 5001 (byte 5001)") == 0,
          "depth 100000 objects: %s", err);
    /* encoder: 1001 nested Lua tables */
    luaL_dostring(L, "local t = {} local r = t for i = 1, 1000 do t[1] = {} t = t[1] end return r");
    size_t n;
    char *s = ae_json_encode(L, -1, 0, &n, err, sizeof err);
    CHECK(!s && strncmp(err, "ae.json: nesting deeper than 1000 levels at [1][1][1]", 53) == 0, "encode depth: %s",
          err);
    free(s);
    lua_pop(L, 1);
    free(buf);
}

static void test_c_api(lua_State *L) {
    char err[AE_JSON_ERRLEN];
    ae_json_buf b = {0};
    int top = lua_gettop(L);
    lua_pushinteger(L, 1);
    CHECK(ae_json_encode_into(L, -1, 0, &b, err, sizeof err) == 0 && b.len == 1, "encode_into");
    lua_pushstring(L, "x");
    CHECK(ae_json_encode_into(L, -1, 0, &b, err, sizeof err) == 0 && strcmp(b.data, "1\"x\"") == 0,
          "encode_into appends");
    lua_pushcfunction(L, luaopen_ae_json);
    CHECK(ae_json_encode_into(L, -1, 0, &b, err, sizeof err) == -1 && b.len == 4, "failed encode_into keeps len");
    lua_settop(L, top);
    ae_json_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0, "buf_free");

    /* decoded containers carry the marks; empty ones re-encode unchanged */
    const char *doc = "{\"a\":[],\"b\":{},\"c\":[null],\"d\":null}";
    CHECK(ae_json_decode(L, doc, strlen(doc), err, sizeof err) == 0, "decode doc");
    lua_getfield(L, -1, "c");
    lua_rawgeti(L, -1, 1);
    CHECK(ae_json_is_null(L, -1), "null inside array is json.null");
    lua_pop(L, 2);
    lua_getfield(L, -1, "d");
    CHECK(ae_json_is_null(L, -1), "null in object is json.null");
    lua_pop(L, 1);
    char *s = ae_json_encode(L, -1, 0, NULL, err, sizeof err);
    cJSON *j1 = cJSON_Parse(doc), *j2 = s ? cJSON_Parse(s) : NULL;
    CHECK(j2 && cJSON_Compare(j1, j2, 1), "round trip of empty containers: %s", s ? s : err);
    cJSON_Delete(j1);
    cJSON_Delete(j2);
    free(s);
    lua_pop(L, 1);
    CHECK(ae_json_decode(L, "null", 4, err, sizeof err) == 0 && ae_json_is_null(L, -1), "top-level null");
    lua_pop(L, 1);
    lua_newtable(L);
    ae_json_mark_array(L, -1);
    s = ae_json_encode(L, -1, 0, NULL, err, sizeof err);
    CHECK(s && strcmp(s, "[]") == 0, "mark_array");
    free(s);
    ae_json_mark_object(L, -1);
    s = ae_json_encode(L, -1, 0, NULL, err, sizeof err);
    CHECK(s && strcmp(s, "{}") == 0, "mark_object");
    free(s);
    lua_pop(L, 1);
    CHECK(lua_gettop(L) == top, "C API keeps the stack balanced");
}

/* json.raw through the C encoder (what ae.nats uses for envelopes): verbatim,
 * or \u-escaped with AE_JSON_ASCII exactly as a string value would be */
static void test_raw(lua_State *L) {
    char err[AE_JSON_ERRLEN];
    int top = lua_gettop(L);
    CHECK(luaL_dostring(
              L, "local json = require 'ae.json'\n"
                 "return {status = 200, body = json.raw('[{\"n\":\"Z\\195\\188rich \\240\\159\\152\\128\"}, 1.50]')},"
                 "  'Z\\195\\188rich \\240\\159\\152\\128'") == LUA_OK,
          "%s", lua_tostring(L, -1));
    lua_getfield(L, top + 1, "body");
    char *plain = ae_json_encode(L, -1, 0, NULL, err, sizeof err);
    CHECK(plain && strcmp(plain, "[{\"n\":\"Z\xC3\xBCrich \xF0\x9F\x98\x80\"}, 1.50]") == 0, "raw verbatim: %s",
          plain ? plain : err);
    char *ascii = ae_json_encode(L, -1, AE_JSON_ASCII, NULL, err, sizeof err);
    char *str = ae_json_encode(L, top + 2, AE_JSON_ASCII, NULL, err, sizeof err); /* the same text as a string value */
    CHECK(ascii && str && strcmp(ascii, "[{\"n\":\"Z\\u00fcrich \\ud83d\\ude00\"}, 1.50]") == 0 &&
              strstr(ascii, str) != NULL,
          "raw ascii: %s / %s", ascii ? ascii : err, str ? str : "");
    lua_pop(L, 1);
    ae_json_buf b = {0};
    CHECK(ae_json_encode_into(L, top + 1, AE_JSON_ASCII, &b, err, sizeof err) == 0, "envelope: %s", err);
    cJSON *j = cJSON_Parse(b.data);
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(j, "body");
    CHECK(cJSON_GetArraySize(body) == 2 &&
              strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(body, 0), "n")->valuestring,
                     "Z\xC3\xBCrich \xF0\x9F\x98\x80") == 0,
          "envelope with a raw body parses: %s", b.data);
    cJSON_Delete(j);
    ae_json_buf_free(&b);
    free(plain);
    free(ascii);
    free(str);
    lua_settop(L, top);
}

/* cJSON builds random arrays of objects, prints them compact or formatted;
 * json.with_member must give the same objects with "host" first. */
static cJSON *random_value(int depth) {
    int r = (int)(rnd() % (depth > 3 ? 4 : 6));
    static const char *strs[] = {"", "a{b}", "\"q\"", "[x]", "\\", "Gda\xC5\x84sk", "host", ":,"};
    switch (r) {
    case 0: return cJSON_CreateNull();
    case 1: return cJSON_CreateNumber((double)(int64_t)(rnd() % 2000000) - 1000000);
    case 2: return cJSON_CreateString(strs[rnd() % 8]);
    case 3: return cJSON_CreateBool(rnd() & 1);
    case 4: {
        cJSON *a = cJSON_CreateArray();
        for (int i = (int)(rnd() % 4); i > 0; i--)
            cJSON_AddItemToArray(a, random_value(depth + 1));
        return a;
    }
    default: {
        cJSON *o = cJSON_CreateObject();
        for (int i = (int)(rnd() % 4); i > 0; i--) {
            char key[16];
            snprintf(key, sizeof key, "%s%d", strs[rnd() % 8], i); /* never exactly "host" */
            cJSON_AddItemToObject(o, key, random_value(depth + 1));
        }
        return o;
    }
    }
}

static void test_with_member(lua_State *L) {
    int top = lua_gettop(L), bad = 0;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "ae.json");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "with_member");
    int fn = lua_gettop(L);
    for (int round = 0; round < 300 && !bad; round++) {
        cJSON *doc = cJSON_CreateArray();
        for (int i = (int)(rnd() % 6); i > 0; i--) {
            cJSON *o = random_value(4); /* depth 4: scalars or arrays... */
            if (!cJSON_IsObject(o)) {
                cJSON_Delete(o);
                o = cJSON_CreateObject();
                cJSON_AddItemToObject(o, "v", random_value(1));
            }
            cJSON_AddItemToArray(doc, o);
        }
        char *text = round & 1 ? cJSON_Print(doc) : cJSON_PrintUnformatted(doc);
        lua_pushvalue(L, fn);
        lua_pushstring(L, text);
        lua_pushliteral(L, "host");
        lua_pushliteral(L, "h\xC3\xA9");
        lua_call(L, 3, 2);
        const char *out = lua_tostring(L, -2);
        cJSON *got = out ? cJSON_Parse(out) : NULL;
        int ok = got && cJSON_GetArraySize(got) == cJSON_GetArraySize(doc);
        for (int i = 0; ok && i < cJSON_GetArraySize(doc); i++) {
            cJSON *g = cJSON_GetArrayItem(got, i), *first = g->child;
            ok = first && strcmp(first->string, "host") == 0 && cJSON_IsString(first) &&
                 strcmp(first->valuestring, "h\xC3\xA9") == 0;
            if (ok) cJSON_Delete(cJSON_DetachItemViaPointer(g, first));
            ok = ok && cJSON_Compare(g, cJSON_GetArrayItem(doc, i), 1);
        }
        CHECK(ok, "with_member of %s gave %s (%s)", text, out ? out : "nil", out ? "" : lua_tostring(L, -1));
        bad = !ok;
        lua_pop(L, 2);
        cJSON_Delete(got);
        cJSON_Delete(doc);
        free(text);
    }
    /* errors come back as nil, message */
    static const char *errs[][2] = {
        {"[{},{\"host\":1}]", "ae.json: element 2 already has a member \"host\" at line 1 column 6 (byte 6)"},
        {"[{}, 7]", "ae.json: element 2 of the array is a number, not an object at line 1 column 6 (byte 6)"},
        {"{}", "ae.json: expected an array of objects, got an object at line 1 column 1 (byte 1)"},
        {"[{}", "ae.json: expected ',' or ']', got end of input at line 1 column 4 (byte 4)"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        lua_pushvalue(L, fn);
        lua_pushstring(L, errs[i][0]);
        lua_pushliteral(L, "host");
        lua_pushinteger(L, 1);
        lua_call(L, 3, 2);
        CHECK(lua_isnil(L, -2) && strcmp(lua_tostring(L, -1), errs[i][1]) == 0, "with_member(%s): %s", errs[i][0],
              lua_tostring(L, -1));
        lua_pop(L, 2);
    }
    lua_settop(L, top);
}

/* json.select's predicate for the tests: keeps the elements that are not
 * numbers and whose index is not a multiple of 3 */
static int keep_some(lua_State *L) {
    lua_pushboolean(L, lua_type(L, 1) != LUA_TNUMBER && lua_tointeger(L, 2) % 3 != 0);
    return 1;
}

static int keep_some_index(int i, const cJSON *item) { return !cJSON_IsNumber(item) && (i + 1) % 3 != 0; }

/* cJSON builds random arrays, prints them compact or formatted; json.select
 * must give the kept elements (cJSON equal, and for compact text the very
 * bytes cJSON printed for them) and count them. */
static void test_select(lua_State *L) {
    int top = lua_gettop(L), bad = 0;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "ae.json");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "select");
    int fn = lua_gettop(L);
    for (int round = 0; round < 300 && !bad; round++) {
        cJSON *doc = cJSON_CreateArray(), *want = cJSON_CreateArray();
        for (int i = (int)(rnd() % 8); i > 0; i--)
            cJSON_AddItemToArray(doc, random_value(2));
        int n = cJSON_GetArraySize(doc), kept = 0;
        for (int i = 0; i < n; i++) {
            const cJSON *item = cJSON_GetArrayItem(doc, i);
            if (keep_some_index(i, item)) {
                cJSON_AddItemToArray(want, cJSON_Duplicate(item, 1));
                kept++;
            }
        }
        char *text = round & 1 ? cJSON_Print(doc) : cJSON_PrintUnformatted(doc);
        lua_pushvalue(L, fn);
        lua_pushstring(L, text);
        lua_pushcfunction(L, keep_some);
        lua_call(L, 2, 2);
        const char *out = lua_tostring(L, -2);
        cJSON *got = out ? cJSON_Parse(out) : NULL;
        int ok = got && cJSON_Compare(got, want, 1) && lua_tointeger(L, -1) == kept;
        if (ok && !(round & 1)) {
            char *exact = cJSON_PrintUnformatted(want);
            ok = strcmp(exact, out) == 0;
            free(exact);
        }
        CHECK(ok, "select of %s gave %s (%s)", text, out ? out : "nil", out ? "" : lua_tostring(L, -1));
        bad = !ok;
        lua_pop(L, 2);
        cJSON_Delete(got);
        cJSON_Delete(want);
        cJSON_Delete(doc);
        free(text);
    }
    static const char *errs[][2] = {
        {"{}", "ae.json: expected an array, got an object at line 1 column 1 (byte 1)"},
        {"[1,]", "ae.json: expected a value, got ']' at line 1 column 4 (byte 4)"},
        {"[\"a\" \"b\"]", "ae.json: expected ',' or ']', got '\"' at line 1 column 6 (byte 6)"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        lua_pushvalue(L, fn);
        lua_pushstring(L, errs[i][0]);
        lua_pushcfunction(L, keep_some);
        lua_call(L, 2, 2);
        CHECK(lua_isnil(L, -2) && strcmp(lua_tostring(L, -1), errs[i][1]) == 0, "select(%s): %s", errs[i][0],
              lua_tostring(L, -1));
        lua_pop(L, 2);
    }
    CHECK(lua_gettop(L) == fn, "select leaves the stack balanced");
    lua_settop(L, top);
}

/* an allocator with a byte budget, to check out-of-memory paths */
static size_t mem_used, mem_limit;
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        mem_used -= old;
        return NULL;
    }
    if (nsize > old && mem_limit && mem_used + (nsize - old) > mem_limit) return NULL;
    void *p = realloc(ptr, nsize);
    if (p) mem_used = mem_used - old + nsize;
    return p;
}

static void test_out_of_memory(void) {
    lua_State *L = lua_newstate(limited_alloc, NULL);
    luaL_openlibs(L);
    /* a document far bigger than the budget */
    size_t n = 200000;
    char *doc = malloc(n * 12 + 16), err[AE_JSON_ERRLEN];
    size_t p = 0;
    doc[p++] = '[';
    for (size_t i = 0; i < n; i++)
        p += (size_t)sprintf(doc + p, "%s\"s%zu\"", i ? "," : "", i);
    doc[p++] = ']';
    mem_limit = mem_used + 256 * 1024;
    int top = lua_gettop(L);
    int rc = ae_json_decode(L, doc, p, err, sizeof err);
    CHECK(rc == -1 && strcmp(err, "ae.json: not enough memory") == 0, "decode out of memory: rc=%d %s", rc, err);
    CHECK(lua_gettop(L) == top, "stack balanced after out of memory");
    mem_limit = 0;
    lua_gc(L, LUA_GCCOLLECT);
    rc = ae_json_decode(L, doc, p, err, sizeof err);
    CHECK(rc == 0 && luaL_len(L, -1) == (lua_Integer)n, "decode after the budget is lifted: %s", err);
    lua_close(L);
    free(doc);
}

int main(void) {
    ae_log_set_level(AE_LOG_CRITICAL);
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "ae.json", luaopen_ae_json, 0);
    lua_pop(L, 1);
    test_encode_basics(L);
    test_encode_errors(L);
    test_encode_oracle(L);
    test_decode_oracle(L);
    test_integers(L);
    test_floats(L);
    test_strings(L);
    test_decode_errors(L);
    test_depth(L);
    test_c_api(L);
    test_raw(L);
    test_with_member(L);
    test_select(L);
    lua_close(L);
    test_out_of_memory();
    return TEST_DONE();
}
