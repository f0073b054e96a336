/* engine_lua.c - ae.engine: the engine seen from Lua (units, stop, exit,
 * reload, start_unit, stop_unit). Used by the console, the test runner and
 * operators' scripts. */
#define _POSIX_C_SOURCE 200809L
#include "engine.h"
#include "engine_internal.h"
#include "reload.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ------------------------------------------------- reload / start / stop */

/* A task waiting for a reload or start to complete. The completion may come
 * before the call returns (compile error, unchanged script). */
typedef struct {
    ae_task *task; /* NULL once the task is gone */
    int waiting;   /* the task yielded: the completion wakes it */
    int done, ok;
    char *message;
} waiter;

static void waiter_cancel(void *data) {
    waiter *w = data;
    w->task = NULL;
}

static void waiter_done(void *arg, int ok, const char *message) {
    waiter *w = arg;
    if (!w->waiting) { /* synchronous: the Lua function reads it */
        w->done = 1;
        w->ok = ok;
        w->message = strdup(message);
        return;
    }
    if (w->task) {
        lua_State *co = ae_task_thread(w->task);
        if (ok) {
            lua_pushboolean(co, 1);
        } else {
            lua_pushnil(co);
        }
        lua_pushstring(co, message);
        ae_task_wake(w->task, 2);
    }
    free(w);
}

/* Returns the results now, or waits for them. */
static int waiter_finish(lua_State *L, waiter *w) {
    if (w->done) {
        if (w->ok)
            lua_pushboolean(L, 1);
        else
            lua_pushnil(L);
        lua_pushstring(L, w->message ? w->message : "out of memory");
        free(w->message);
        free(w);
        return 2;
    }
    w->waiting = 1;
    ae_task_set_cancel(w->task, waiter_cancel, w);
    return ae_task_wait(L, 0);
}

static waiter *new_waiter(lua_State *L) {
    ae_task *t = ae_task_check(L);
    waiter *w = calloc(1, sizeof *w);
    if (!w) luaL_error(L, "ae.engine: out of memory");
    w->task = t;
    return w;
}

/* reload([name [, {force = true}]]) -> true, message | nil, message
 * Without a name: everything (config re-read, changed scripts). Waits until
 * the new version(s) started or failed. */
static int l_reload(lua_State *L) {
    const char *name = luaL_optstring(L, 1, NULL);
    int force = 0;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "force");
        force = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    waiter *w = new_waiter(L);
    if (name)
        ae_reload_unit(name, force, waiter_done, w);
    else
        ae_reload_all(waiter_done, w);
    return waiter_finish(L, w);
}

/* start_unit{name =, script =, config =, memory_limit_mb =, instruction_budget =}
 * -> true, message | nil, message. Waits until its start task ended. */
static int l_start_unit(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "script");
    const char *script = lua_tostring(L, -1);
    if (!script) return luaL_error(L, "ae.engine.start_unit: script (a file path) is required");
    lua_getfield(L, 1, "name");
    const char *name = lua_tostring(L, -1);
    if (!name) return luaL_error(L, "ae.engine.start_unit: name is required");
    lua_getfield(L, 1, "memory_limit_mb");
    size_t mem = lua_isnumber(L, -1) ? (size_t)(lua_tonumber(L, -1) * 1048576.0) : ae_reload_default_mem_limit();
    lua_getfield(L, 1, "instruction_budget");
    long budget = lua_isnumber(L, -1) ? (long)lua_tonumber(L, -1) : ae_reload_default_budget();
    lua_getfield(L, 1, "config");
    int cfg = lua_istable(L, -1) ? lua_gettop(L) : 0;
    waiter *w = new_waiter(L);
    ae_reload_start_unit(name, script, L, cfg, mem, budget, waiter_done, w);
    return waiter_finish(L, w);
}

/* stop_unit(name) -> true | nil, message: drain it (in-flight tasks finish). */
static int l_stop_unit(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    if (ae_reload_stop_unit(name) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "ae.engine.stop_unit: no unit '%s' is running", name);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_version(lua_State *L) {
    lua_pushstring(L, AE_VERSION);
    return 1;
}

int luaopen_ae_engine(lua_State *L) {
    static const luaL_Reg f[] = {{"exit", l_exit},           {"stop", l_stop},     {"units", l_units},
                                 {"version", l_version},     {"reload", l_reload}, {"start_unit", l_start_unit},
                                 {"stop_unit", l_stop_unit}, {NULL, NULL}};
    luaL_newlib(L, f);
    return 1;
}
