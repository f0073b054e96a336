/* unit.c - units: one Lua script in its own lua_State with its own config,
 * memory cap (a counting lua_Alloc) and instruction budget (task.c's hook).
 *
 * Life of a unit: create (load and compile the script) -> start (run the
 * chunk as the "start" task) -> running (its subscriptions, timers and routes
 * spawn tasks) -> drain (resources closed: no new intake) -> closed when its
 * last task ends (or force-closed at shutdown).
 */
#define _POSIX_C_SOURCE 200809L
#include "engine.h"
#include "engine_internal.h"
#include "log.h"
#include "watchdog.h"

#include <event2/event.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ae_unit *units;
static char *scripts_root;

ae_unit *ae_engine_units(void) { return units; }

ae_unit *ae_engine_find_unit(const char *name) {
    for (ae_unit *u = units; u; u = u->next)
        if (strcmp(u->name, name) == 0 && u->state != AE_UNIT_STOPPED) return u;
    return NULL;
}

void ae_unit_set_search_path(const char *root) {
    free(scripts_root);
    scripts_root = root ? strdup(root) : NULL;
}

/* -------------------------------------------------------------- allocator */

static void *unit_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    ae_unit *u = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        u->mem_used -= old;
        free(ptr);
        return NULL;
    }
    /* refuse growth past the cap; Lua turns NULL into a memory error that
     * stops only the task that allocated. Only while a task runs: there the
     * error is caught by lua_resume. Outside (a binding pushing a reply onto
     * a waiting task, the loop spawning a task) an allocation failure would
     * be an unprotected error and abort the process, so the cap is let slip
     * by that allocation and enforced at the unit's next resume. */
    if (u->mem_limit && u->in_resume && nsize > old && u->mem_used - old + nsize > u->mem_limit) return NULL;
    void *n = realloc(ptr, nsize);
    if (!n) return NULL;
    u->mem_used = u->mem_used - old + nsize;
    if (u->mem_used > u->mem_peak) u->mem_peak = u->mem_used;
    return n;
}

ae_unit *ae_unit_of(lua_State *L) {
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

/* ------------------------------------------------------------- resources */

void ae_unit_add_resource(ae_unit *u, ae_resource *r, const char *kind, void (*close)(ae_resource *)) {
    r->kind = kind;
    r->close = close;
    r->next = u->resources.next;
    r->prev = &u->resources;
    u->resources.next->prev = r;
    u->resources.next = r;
}

void ae_unit_remove_resource(ae_resource *r) {
    if (!r->next) return;
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

static int held(const ae_unit *u) { return u->holds.next != &u->holds; }

void ae_unit_hold(ae_unit *u, ae_resource *r, const char *kind, void (*close)(ae_resource *)) {
    r->kind = kind;
    r->close = close;
    r->next = u->holds.next;
    r->prev = &u->holds;
    u->holds.next->prev = r;
    u->holds.next = r;
}

void ae_unit_unhold(ae_unit *u, ae_resource *r) {
    ae_unit_remove_resource(r);
    ae_unit_task_finished(u); /* may close a draining unit */
}

static void close_holds(ae_unit *u) {
    while (held(u)) {
        ae_resource *r = u->holds.next;
        ae_unit_remove_resource(r);
        if (r->close) r->close(r);
    }
}

static void close_resources(ae_unit *u) {
    while (u->resources.next != &u->resources) {
        ae_resource *r = u->resources.next;
        ae_unit_remove_resource(r);
        if (r->close) r->close(r);
    }
}

/* ------------------------------------------------------ copying config */

/* Copy a plain value (nil, boolean, number, string, table of those) from
 * one state to another. Functions and userdata become nil. */
static void copy_value(lua_State *from, int idx, lua_State *to, int depth) {
    idx = lua_absindex(from, idx);
    switch (lua_type(from, idx)) {
    case LUA_TBOOLEAN: lua_pushboolean(to, lua_toboolean(from, idx)); break;
    case LUA_TNUMBER:
        if (lua_isinteger(from, idx))
            lua_pushinteger(to, lua_tointeger(from, idx));
        else
            lua_pushnumber(to, lua_tonumber(from, idx));
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(from, idx, &n);
        lua_pushlstring(to, s, n);
        break;
    }
    case LUA_TTABLE:
        if (depth > 32) {
            lua_pushnil(to);
            break;
        }
        lua_newtable(to);
        lua_pushnil(from);
        while (lua_next(from, idx)) {
            copy_value(from, -2, to, depth + 1);
            copy_value(from, -1, to, depth + 1);
            if (lua_isnil(to, -2))
                lua_pop(to, 2);
            else
                lua_rawset(to, -3);
            lua_pop(from, 1);
        }
        break;
    default: lua_pushnil(to); break;
    }
}

/* --------------------------------------------------------------- create */

static void hash_file(const char *path, char out[17]) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    FILE *f = fopen(path, "rb");
    if (f) {
        int c;
        while ((c = fgetc(f)) != EOF) {
            h ^= (unsigned char)c;
            h *= 1099511628211ULL;
        }
        fclose(f);
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static void set_package_path(lua_State *L) {
    if (!scripts_root) return;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", scripts_root, scripts_root, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

ae_unit *ae_unit_create(const char *name, const char *script, lua_State *L_from, int config_index, size_t mem_limit,
                        long instr_budget, char **err) {
    ae_unit *u = calloc(1, sizeof *u);
    if (!u) {
        *err = strdup("out of memory");
        return NULL;
    }
    u->name = strdup(name);
    u->script = strdup(script);
    u->mem_limit = 0; /* no cap while the standard libraries load */
    u->instr_budget = instr_budget;
    u->resources.next = u->resources.prev = &u->resources;
    u->holds.next = u->holds.prev = &u->holds;
    u->config_ref = LUA_NOREF;
    u->version = 1;
    lua_State *L = lua_newstate(unit_alloc, u);
    if (!L) {
        *err = strdup("cannot create a Lua state");
        free(u->name);
        free(u->script);
        free(u);
        return NULL;
    }
    u->L = L;
    /* threads copy the main thread's extra space: NULL means "not a task" */
    *(ae_task **)lua_getextraspace(L) = NULL;
    luaL_openlibs(L);
    ae_watchdog_open(L);
    set_package_path(L);
    ae_modules_preload(L);
    /* config */
    if (L_from && config_index && lua_istable(L_from, config_index))
        copy_value(L_from, config_index, L, 0);
    else
        lua_newtable(L);
    u->config_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    /* compile */
    int st;
    if (strncmp(script, "module:", 7) == 0) {
        /* a built-in runner (aengine test / exec): the chunk calls the module */
        lua_pushfstring(L, "return require('%s')(...)", script + 7);
        st = luaL_loadbuffer(L, lua_tostring(L, -1), lua_rawlen(L, -1), script);
        lua_remove(L, -2);
    } else {
        st = luaL_loadfile(L, script);
    }
    if (st != LUA_OK) {
        *err = strdup(lua_tostring(L, -1));
        lua_close(L);
        free(u->name);
        free(u->script);
        free(u);
        return NULL;
    }
    lua_setfield(L, LUA_REGISTRYINDEX, "ae.unit.chunk");
    hash_file(script, u->script_hash);
    u->mem_limit = mem_limit;
    u->state = AE_UNIT_STARTING;
    u->next = units;
    units = u;
    return u;
}

int ae_unit_start(ae_unit *u, int argc, char **argv) {
    lua_State *L = u->L;
    if (argv) {
        lua_createtable(L, argc, 1);
        for (int i = 0; i < argc; i++) {
            lua_pushstring(L, argv[i]);
            lua_rawseti(L, -2, i + 1);
        }
        lua_pushstring(L, u->script);
        lua_rawseti(L, -2, 0);
        lua_setglobal(L, "arg");
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "ae.unit.chunk");
    lua_rawgeti(L, LUA_REGISTRYINDEX, u->config_ref);
    int n = 1;
    for (int i = 0; argv && i < argc; i++, n++)
        lua_pushstring(L, argv[i]);
    ae_task_spawn(u, L, n, "start");
    u->state = AE_UNIT_RUNNING;
    ae_log(AE_LOG_INFO, u->name, 0, "unit started from %s (version %d, hash %s)", u->script, u->version,
           u->script_hash);
    return 0;
}

/* ---------------------------------------------------------------- drain */

static void free_unit(ae_unit *u) {
    for (ae_unit **pp = &units; *pp; pp = &(*pp)->next) {
        if (*pp == u) {
            *pp = u->next;
            break;
        }
    }
    free(u->name);
    free(u->script);
    free(u->last_error);
    free(u);
}

void ae_unit_close_now(ae_unit *u) {
    if (u->state == AE_UNIT_STOPPED) return;
    u->state = AE_UNIT_STOPPED; /* first: dying tasks must not schedule a close */
    close_resources(u);
    close_holds(u);
    ae_task_destroy_all(u);
    close_resources(u); /* anything a dying task registered */
    close_holds(u);
    lua_close(u->L);
    u->L = NULL;
    ae_log(AE_LOG_INFO, u->name, 0, "unit closed");
    if (u->on_closed) u->on_closed(u, u->on_closed_arg);
    free_unit(u);
}

static void close_later(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    ae_unit *u = arg;
    u->close_scheduled = 0;
    if (u->state == AE_UNIT_DRAINING && u->ntasks == 0 && !held(u)) ae_unit_close_now(u);
}

void ae_unit_task_finished(ae_unit *u) {
    if (u->state == AE_UNIT_DRAINING && u->ntasks == 0 && !held(u) && !u->close_scheduled) {
        struct timeval tv = {0, 0};
        u->close_scheduled = 1;
        event_base_once(ae_engine_base(), -1, EV_TIMEOUT, close_later, u, &tv);
    }
}

void ae_unit_drain(ae_unit *u) {
    if (u->state == AE_UNIT_DRAINING || u->state == AE_UNIT_STOPPED) return;
    u->state = AE_UNIT_DRAINING;
    ae_log(AE_LOG_INFO, u->name, 0, "draining: intake stopped, %d task(s) finishing", u->ntasks);
    close_resources(u);
    ae_unit_task_finished(u);
}

void ae_units_drain_all(void) {
    for (ae_unit *u = units; u; u = u->next)
        ae_unit_drain(u);
}

int ae_units_live_tasks(void) {
    int n = 0;
    for (ae_unit *u = units; u; u = u->next)
        if (u->state != AE_UNIT_STOPPED) {
            n += u->ntasks;
            for (ae_resource *r = u->holds.next; r != &u->holds; r = r->next)
                n++; /* a hold is work still to come */
        }
    return n;
}

void ae_units_free_all(void) {
    while (units)
        ae_unit_close_now(units);
    free(scripts_root);
    scripts_root = NULL;
}

/* --------------------------------------------------------- ae.unit module */

static int l_unit_index(lua_State *L) {
    ae_unit *u = ae_unit_of(L);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "name") == 0)
        lua_pushstring(L, u->name);
    else if (strcmp(k, "config") == 0)
        lua_rawgeti(L, LUA_REGISTRYINDEX, u->config_ref);
    else if (strcmp(k, "script") == 0)
        lua_pushstring(L, u->script);
    else if (strcmp(k, "version") == 0)
        lua_pushinteger(L, u->version);
    else if (strcmp(k, "memory") == 0)
        lua_pushinteger(L, (lua_Integer)u->mem_used);
    else if (strcmp(k, "draining") == 0)
        lua_pushboolean(L, u->state == AE_UNIT_DRAINING);
    else
        lua_pushnil(L);
    return 1;
}

int luaopen_ae_unit(lua_State *L) {
    lua_newtable(L);
    lua_newtable(L);
    lua_pushcfunction(L, l_unit_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    return 1;
}
