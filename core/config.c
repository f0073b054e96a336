/* config.c - the engine configuration: a Lua file returning a table, kept in
 * a small Lua state of its own for the life of the process. Bindings read
 * their settings with ae_config_string("nats.servers.1", NULL) style paths.
 *
 * Without a config file the table is empty and every binding falls back to
 * the original services' environment variables (NATS_SERVER1, REDIS_HOSTNAME...).
 */
#define _POSIX_C_SOURCE 200809L
#include "config.h"
#include "log.h"

#include <lualib.h>
#include <stdlib.h>
#include <string.h>

static lua_State *CL;
static int cfg_ref = LUA_NOREF;

int ae_config_load(const char *path, char **err) {
    if (!CL) {
        CL = luaL_newstate();
        luaL_openlibs(CL);
    }
    if (!path) {
        lua_newtable(CL);
    } else if (luaL_dofile(CL, path) != LUA_OK) {
        *err = strdup(lua_tostring(CL, -1));
        lua_pop(CL, 1);
        return -1;
    } else if (!lua_istable(CL, -1)) {
        size_t n = strlen(path) + 64;
        *err = malloc(n);
        if (*err) snprintf(*err, n, "%s: the config file must return a table", path);
        lua_settop(CL, 0);
        return -1;
    }
    lua_settop(CL, 1);
    if (cfg_ref != LUA_NOREF) luaL_unref(CL, LUA_REGISTRYINDEX, cfg_ref);
    cfg_ref = luaL_ref(CL, LUA_REGISTRYINDEX);
    return 0;
}

lua_State *ae_config_state(void) { return CL; }

/* Push the value at a dotted path ("redis.main", "units.2.name"); numeric
 * segments index arrays. Pushes nil when absent. */
int ae_config_push_path(const char *path) {
    if (!CL || cfg_ref == LUA_NOREF) {
        if (CL) lua_pushnil(CL);
        return 0;
    }
    lua_rawgeti(CL, LUA_REGISTRYINDEX, cfg_ref);
    char seg[128];
    const char *p = path;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof seg) n = sizeof seg - 1;
        memcpy(seg, p, n);
        seg[n] = '\0';
        if (!lua_istable(CL, -1)) {
            lua_pop(CL, 1);
            lua_pushnil(CL);
            return 0;
        }
        char *end;
        long idx = strtol(seg, &end, 10);
        if (*end == '\0' && n > 0)
            lua_rawgeti(CL, -1, idx);
        else
            lua_getfield(CL, -1, seg);
        lua_remove(CL, -2);
        p = dot ? dot + 1 : p + n;
    }
    return !lua_isnil(CL, -1);
}

const char *ae_config_string(const char *path, const char *def) {
    static char buf[4][1024];
    static int slot;
    const char *r = def;
    if (!CL) return def;
    if (ae_config_push_path(path) && (lua_type(CL, -1) == LUA_TSTRING || lua_type(CL, -1) == LUA_TNUMBER)) {
        char *b = buf[slot++ % 4];
        snprintf(b, sizeof buf[0], "%s", lua_tostring(CL, -1));
        r = b;
    }
    lua_pop(CL, 1);
    return r;
}

double ae_config_number(const char *path, double def) {
    double r = def;
    if (!CL) return def;
    if (ae_config_push_path(path) && lua_type(CL, -1) == LUA_TNUMBER) r = lua_tonumber(CL, -1);
    lua_pop(CL, 1);
    return r;
}

int ae_config_bool(const char *path, int def) {
    int r = def;
    if (!CL) return def;
    if (ae_config_push_path(path) && lua_type(CL, -1) == LUA_TBOOLEAN) r = lua_toboolean(CL, -1);
    lua_pop(CL, 1);
    return r;
}

void ae_config_free(void) {
    if (CL) lua_close(CL);
    CL = NULL;
    cfg_ref = LUA_NOREF;
}
