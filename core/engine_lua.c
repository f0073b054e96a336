/* engine_lua.c - ae.engine: the engine seen from Lua (units, stop, exit).
 * Used by the console, the test runner and operators' scripts. */
#define _POSIX_C_SOURCE 200809L
#include "engine.h"
#include "engine_internal.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

static int exit_code_requested = -1;

int ae_engine_exit_requested(void) { return exit_code_requested; }

/* exit(code): leave the loop now with this exit code (the calling task never
 * resumes; units are closed by main). Replaces os.exit in exec/test mode. */
static int l_exit(lua_State *L) {
    int code;
    if (lua_isboolean(L, 1))
        code = lua_toboolean(L, 1) ? 0 : 1;
    else
        code = (int)luaL_optinteger(L, 1, 0);
    fflush(stdout);
    fflush(stderr);
    exit_code_requested = code;
    event_base_loopbreak(ae_engine_base());
    if (ae_task_of(L)) return ae_task_wait(L, 0);
    exit(code);
}

/* stop([code]): graceful stop, as SIGTERM */
static int l_stop(lua_State *L) {
    ae_engine_stop((int)luaL_optinteger(L, 1, 0));
    return 0;
}

static const char *state_name(ae_unit_state s) {
    switch (s) {
    case AE_UNIT_STARTING: return "starting";
    case AE_UNIT_RUNNING: return "running";
    case AE_UNIT_DRAINING: return "draining";
    case AE_UNIT_STOPPED: return "stopped";
    default: return "failed";
    }
}

/* units() -> list of {name, state, script, hash, version, memory, peak, tasks, errors} */
static int l_units(lua_State *L) {
    lua_newtable(L);
    int i = 1;
    for (ae_unit *u = ae_engine_units(); u; u = u->next) {
        lua_newtable(L);
        lua_pushstring(L, u->name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, state_name(u->state));
        lua_setfield(L, -2, "state");
        lua_pushstring(L, u->script);
        lua_setfield(L, -2, "script");
        lua_pushstring(L, u->script_hash);
        lua_setfield(L, -2, "hash");
        lua_pushinteger(L, u->version);
        lua_setfield(L, -2, "version");
        lua_pushinteger(L, (lua_Integer)u->mem_used);
        lua_setfield(L, -2, "memory");
        lua_pushinteger(L, (lua_Integer)u->mem_peak);
        lua_setfield(L, -2, "memory_peak");
        lua_pushinteger(L, (lua_Integer)u->mem_limit);
        lua_setfield(L, -2, "memory_limit");
        lua_pushinteger(L, u->ntasks);
        lua_setfield(L, -2, "tasks");
        lua_pushinteger(L, (lua_Integer)u->tasks_started);
        lua_setfield(L, -2, "tasks_started");
        lua_pushinteger(L, (lua_Integer)u->task_errors);
        lua_setfield(L, -2, "task_errors");
        if (u->last_error) {
            lua_pushstring(L, u->last_error);
            lua_setfield(L, -2, "last_error");
        }
        lua_rawseti(L, -2, i++);
    }
    return 1;
}

static int l_version(lua_State *L) {
    lua_pushstring(L, AE_VERSION);
    return 1;
}

int luaopen_ae_engine(lua_State *L) {
    static const luaL_Reg f[] = {
        {"exit", l_exit}, {"stop", l_stop}, {"units", l_units}, {"version", l_version}, {NULL, NULL}};
    luaL_newlib(L, f);
    return 1;
}
