/* fuzz_json.c - libFuzzer target for the ae.json decoder and encoder.
 *
 * Not part of the default build. Build and run with clang:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore tests/fuzz/fuzz_json.c core/json.c \
 *         $(pkg-config --cflags --libs lua5.4) -lm -o build/fuzz_json
 *   build/fuzz_json -max_total_time=60 -max_len=4096
 *
 * For every input: decode must either fail with an "ae.json: ... at line"
 * message and leave the stack as it was, or push one value; that value must
 * encode (plain and ascii), and the text must decode again to a value whose
 * encoding has the same length (same members, key order may differ).
 */
#include "json.h"
#include "engine.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* json.c's Lua functions log and count; the fuzzer only uses the C API */
ae_unit *ae_unit_of(lua_State *L) {
    (void)L;
    return NULL;
}
void ae_log(int level, const char *module, int line, const char *fmt, ...) {
    (void)level;
    (void)module;
    (void)line;
    (void)fmt;
}
void ae_metric_inc(const char *n, const char *h, const char *ln, const char *lv, double by) {
    (void)n;
    (void)h;
    (void)ln;
    (void)lv;
    (void)by;
}

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[AE_JSON_ERRLEN];
    if (!L) {
        L = luaL_newstate();
        luaL_openlibs(L);
    }
    int top = lua_gettop(L);
    if (ae_json_decode(L, (const char *)data, size, err, sizeof err)) {
        if (strncmp(err, "ae.json: ", 9) != 0 || !strstr(err, " at line ")) abort();
        if (lua_gettop(L) != top) abort();
        return 0;
    }
    if (lua_gettop(L) != top + 1) abort();
    for (unsigned flags = 0; flags <= AE_JSON_ASCII; flags += AE_JSON_ASCII) {
        size_t n1, n2;
        char *t1 = ae_json_encode(L, -1, flags, &n1, err, sizeof err);
        if (!t1) abort(); /* whatever decodes must encode */
        if (ae_json_decode(L, t1, n1, err, sizeof err)) abort();
        char *t2 = ae_json_encode(L, -1, flags, &n2, err, sizeof err);
        if (!t2 || n1 != n2) abort();
        free(t1);
        free(t2);
        lua_pop(L, 1);
    }
    lua_settop(L, top);
    if (size % 64 == 0) lua_gc(L, LUA_GCCOLLECT);
    return 0;
}
