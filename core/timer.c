/* timer.c - ae.core.timer: a timer object owned by a unit, whose firing
 * spawns a task running its Lua function. ae/timer.lua builds every/after/
 * cron (fixed grid, no overlap, run-now) on top of it.
 *
 * Also ae.core.clock: the engine clock seen from Lua (now, manual mode, set,
 * next deadline); ae/clock.lua builds advance() on top of it.
 */
#define _POSIX_C_SOURCE 200809L
#include "engine.h"
#include "engine_internal.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

#define TIMER_MT "ae.core.timer"

typedef struct {
    ae_timer tm;
    ae_resource res;
    ae_unit *unit;
    int fn_ref; /* function to run in a new task when the timer fires */
    int self_ref;
    int closed;
    char name[64];
} ltimer;

static void ltimer_fire(ae_timer *tm) {
    ltimer *t = tm->data;
    if (t->closed) return;
    lua_State *L = t->unit->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
    ae_task_spawn(t->unit, L, 1, t->name);
}

static void ltimer_release(ltimer *t) {
    if (t->closed) return;
    t->closed = 1;
    ae_timer_stop(&t->tm);
    ae_unit_remove_resource(&t->res);
    lua_State *L = t->unit->L;
    if (L) {
        luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
    }
    t->fn_ref = t->self_ref = LUA_NOREF;
}

/* the unit stops taking work: the timer never fires again */
static void ltimer_close_resource(ae_resource *r) {
    ltimer *t = (ltimer *)((char *)r - offsetof(ltimer, res));
    ltimer_release(t);
}

static ltimer *check_timer(lua_State *L) { return luaL_checkudata(L, 1, TIMER_MT); }

/* new(fn, name) -> timer (not armed) */
static int l_new(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    const char *name = luaL_optstring(L, 2, "timer");
    ae_unit *u = ae_unit_of(L);
    if (u->state == AE_UNIT_DRAINING || u->state == AE_UNIT_STOPPED)
        return luaL_error(L, "ae.timer: unit '%s' is stopping; no new timers", u->name);
    ltimer *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, TIMER_MT);
    t->unit = u;
    snprintf(t->name, sizeof t->name, "%s", name);
    ae_timer_init(&t->tm, ltimer_fire, t);
    lua_pushvalue(L, 1);
    t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* alive until closed */
    ae_unit_add_resource(u, &t->res, "timer", ltimer_close_resource);
    return 1;
}

/* timer:start(deadline) - deadline in engine-clock epoch seconds */
static int l_start(lua_State *L) {
    ltimer *t = check_timer(L);
    double at = luaL_checknumber(L, 2);
    if (t->closed) return luaL_error(L, "ae.timer: timer '%s' is closed", t->name);
    ae_timer_start(&t->tm, at);
    return 0;
}

static int l_stop(lua_State *L) {
    ltimer *t = check_timer(L);
    ae_timer_stop(&t->tm);
    return 0;
}

static int l_close(lua_State *L) {
    ltimer_release(check_timer(L));
    return 0;
}

static int l_deadline(lua_State *L) {
    ltimer *t = check_timer(L);
    if (t->closed || !ae_timer_armed(&t->tm)) return 0;
    lua_pushnumber(L, t->tm.deadline);
    return 1;
}

static int l_closed(lua_State *L) {
    lua_pushboolean(L, check_timer(L)->closed);
    return 1;
}

static int l_gc(lua_State *L) {
    ltimer *t = check_timer(L);
    /* only reached once closed (self_ref keeps it alive before), or when the
     * whole state closes */
    t->closed = 1;
    ae_timer_stop(&t->tm);
    ae_unit_remove_resource(&t->res);
    return 0;
}

int luaopen_ae_core_timer(lua_State *L) {
    static const luaL_Reg m[] = {{"start", l_start},       {"stop", l_stop},     {"close", l_close},
                                 {"deadline", l_deadline}, {"closed", l_closed}, {NULL, NULL}};
    if (luaL_newmetatable(L, TIMER_MT)) {
        luaL_newlib(L, m);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg f[] = {{"new", l_new}, {NULL, NULL}};
    luaL_newlib(L, f);
    return 1;
}

/* ------------------------------------------------------------ ae.core.clock */

static int c_now(lua_State *L) {
    lua_pushnumber(L, ae_clock_now());
    return 1;
}

static int c_monotonic(lua_State *L) {
    lua_pushnumber(L, ae_clock_monotonic());
    return 1;
}

/* manual(true [, at]) freezes the clock (at: epoch seconds); manual(false)
 * lets it run in real time again from where it stands. */
static int c_manual(lua_State *L) {
    if (lua_gettop(L) > 0) ae_clock_set_manual(lua_toboolean(L, 1), luaL_optnumber(L, 2, 0));
    lua_pushboolean(L, ae_clock_is_manual());
    return 1;
}

static int c_set(lua_State *L) {
    double t = luaL_checknumber(L, 1);
    if (!ae_clock_is_manual()) return luaL_error(L, "ae.clock: set() needs a manual clock (call clock.freeze first)");
    ae_clock_set(t);
    return 0;
}

static int c_next_deadline(lua_State *L) {
    double d = ae_timer_next_deadline();
    if (d < 0) return 0;
    lua_pushnumber(L, d);
    return 1;
}

int luaopen_ae_core_clock(lua_State *L) {
    static const luaL_Reg f[] = {{"now", c_now}, {"monotonic", c_monotonic},         {"manual", c_manual},
                                 {"set", c_set}, {"next_deadline", c_next_deadline}, {NULL, NULL}};
    luaL_newlib(L, f);
    return 1;
}
