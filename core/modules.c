/* modules.c - makes every ae.* module requirable in a unit's state: the C
 * modules (the luaopen_ae_ functions found in core at build time) and the
 * Lua modules of core/lua/ (embedded in the binary). The tables come from
 * the generated modules_gen.c (see cmake/gen_modules.cmake). */
#include "engine.h"
#include "engine_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    const unsigned char *src;
    size_t len;
} ae_lua_module;

extern const ae_module ae_c_modules[];
extern const ae_lua_module ae_lua_modules[];

static int load_embedded(lua_State *L) {
    const ae_lua_module *m = lua_touserdata(L, lua_upvalueindex(1));
    char chunkname[160];
    snprintf(chunkname, sizeof chunkname, "@[aengine]/%s.lua", m->name);
    if (luaL_loadbuffer(L, (const char *)m->src, m->len, chunkname) != LUA_OK) return lua_error(L);
    lua_pushstring(L, m->name);
    lua_call(L, 1, 1);
    return 1;
}

void ae_modules_preload(lua_State *L) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (const ae_module *m = ae_c_modules; m->name; m++) {
        lua_pushcfunction(L, m->open);
        lua_setfield(L, -2, m->name);
    }
    for (const ae_lua_module *m = ae_lua_modules; m->name; m++) {
        lua_pushlightuserdata(L, (void *)m);
        lua_pushcclosure(L, load_embedded, 1);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 1);
}

/* ------------------------------------------------------------ exit hooks */

#define MAX_EXIT_HOOKS 32
static void (*exit_hooks[MAX_EXIT_HOOKS])(void);
static int nexit;

void ae_engine_at_exit(void (*fn)(void)) {
    for (int i = 0; i < nexit; i++)
        if (exit_hooks[i] == fn) return;
    if (nexit < MAX_EXIT_HOOKS) exit_hooks[nexit++] = fn;
}

void ae_bindings_shutdown(void) {
    while (nexit > 0)
        exit_hooks[--nexit]();
}

/* ------------------------------------------------------- error helpers */

int ae_error(lua_State *L, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    luaL_where(L, 1);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return lua_error(L);
}

int ae_fail(lua_State *L, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lua_pushnil(L);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    return 2;
}
