/* task.c - tasks: every entry into Lua runs as a coroutine ("task") of a unit.
 *
 * A task is READY (queued for resume), RUNNING, WAITING (yielded by a binding
 * until ae_task_wake) or DONE. Resumes only happen from the engine's ready
 * queue, so a binding callback never re-enters Lua. A task's error is caught
 * here, logged with its traceback, unit and task name, and counted; nothing
 * else is affected.
 *
 * Also the C half of ae.task (module "ae.core.task"): spawn, current,
 * suspend/wake, sleep, settle. ae/task.lua builds gather and semaphores on it.
 */
#define _POSIX_C_SOURCE 200809L
#include "engine.h"
#include "engine_internal.h"
#include "log.h"
#include "profile.h"
#include "watchdog.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

enum { T_READY, T_RUNNING, T_WAITING, T_DONE };
enum { W_NONE, W_SUSPEND, W_IO, W_SLEEP };

struct ae_task {
    lua_State *co;
    int ref; /* registry ref (in the unit's state) that keeps the thread alive */
    ae_unit *unit;
    char name[64];
    unsigned long id;
    int state, wait_kind, nargs, refcount;
    double wait_since, started;
    ae_task *ready_next;
    ae_task *prev, *next; /* unit's task list */
    void (*cancel)(void *);
    void *cancel_data;
    ae_timer sleep_timer;
    int ok;       /* when DONE: 1 = returned, 0 = raised */
    int is_start; /* the unit's first task (its chunk): reports to on_start_done */
};

static unsigned long next_id = 1;
static ae_task *running;

#define HANDLE_MT "ae.task.handle"

/* --------------------------------------------------------------- accessors */

ae_task *ae_task_ready_next(ae_task *t) { return t->ready_next; }
void ae_task_set_ready_next(ae_task *t, ae_task *n) { t->ready_next = n; }
lua_State *ae_task_thread(ae_task *t) { return t->co; }
ae_unit *ae_task_unit(ae_task *t) { return t->unit; }
const char *ae_task_name(ae_task *t) { return t->name; }
void ae_task_set_name(ae_task *t, const char *name) { snprintf(t->name, sizeof t->name, "%s", name); }
int ae_task_waiting(ae_task *t) { return t->state == T_WAITING; }

ae_task *ae_task_of(lua_State *L) {
    ae_task *t = *(ae_task **)lua_getextraspace(L);
    return (t && t->co == L) ? t : NULL;
}

ae_task *ae_task_check(lua_State *L) {
    ae_task *t = ae_task_of(L);
    if (!t)
        luaL_error(L, "this call waits, so it must be made inside a task (not in a plain coroutine or a C callback)");
    return t;
}

void ae_task_set_cancel(ae_task *t, void (*cancel)(void *), void *data) {
    t->cancel = cancel;
    t->cancel_data = data;
}

/* ------------------------------------------------------------------ spawn */

static void sleep_fire(ae_timer *tm) {
    ae_task *t = tm->data;
    ae_task_wake(t, 0);
}

ae_task *ae_task_spawn(ae_unit *u, lua_State *L, int nargs, const char *name) {
    ae_task *t = calloc(1, sizeof *t);
    if (!t) luaL_error(L, "out of memory spawning a task");
    lua_State *co;
    if (u->n_idle > 0) { /* a thread whose task returned: empty stack, status OK */
        u->n_idle--;
        co = u->idle_threads[u->n_idle];
        t->ref = u->idle_refs[u->n_idle];
    } else {
        co = lua_newthread(u->L); /* on u->L's stack */
        t->ref = luaL_ref(u->L, LUA_REGISTRYINDEX);
    }
    if (!lua_checkstack(co, nargs + 1)) {
        luaL_unref(u->L, LUA_REGISTRYINDEX, t->ref);
        free(t);
        luaL_error(L, "too many arguments for a task (%d)", nargs);
    }
    t->co = co;
    *(ae_task **)lua_getextraspace(co) = t;
    t->unit = u;
    t->id = next_id++;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "task");
    t->started = ae_clock_now();
    lua_xmove(L, co, nargs + 1);
    t->nargs = nargs;
    t->is_start = (u->tasks_started == 0);
    t->refcount = 1; /* the engine's reference, dropped when DONE */
    ae_timer_init(&t->sleep_timer, sleep_fire, t);
    t->next = u->tasks;
    if (u->tasks) u->tasks->prev = t;
    u->tasks = t;
    u->ntasks++;
    u->tasks_started++;
    t->state = T_READY;
    ae_engine_schedule(t);
    return t;
}

/* ------------------------------------------------------------ wait / wake */

int ae_task_wait(lua_State *L, int io) {
    ae_task *t = ae_task_check(L);
    t->state = T_WAITING;
    t->wait_kind = io ? W_IO : W_SUSPEND;
    t->wait_since = ae_clock_monotonic();
    return lua_yield(L, 0);
}

void ae_task_wake(ae_task *t, int nresults) {
    if (t->state != T_WAITING) return;
    t->cancel = NULL;
    t->cancel_data = NULL;
    ae_timer_stop(&t->sleep_timer);
    t->state = T_READY;
    t->wait_kind = W_NONE;
    t->nargs = nresults;
    ae_engine_schedule(t);
}

void ae_task_retain(ae_task *t) { t->refcount++; }

void ae_task_release(ae_task *t) {
    if (--t->refcount == 0) free(t);
}

/* ---------------------------------------------------------------- resume */

static void unlink_task(ae_task *t) {
    ae_unit *u = t->unit;
    if (t->prev)
        t->prev->next = t->next;
    else
        u->tasks = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

/* A thread whose task returned is reused by a later task of the unit (up to
 * AE_IDLE_THREADS kept); one that raised, was cut off or carries a hook of
 * the script's own is let go. */
static void keep_or_free_thread(ae_unit *u, ae_task *t, int ok) {
    lua_State *co = t->co;
    if (co && ok && u->n_idle < AE_IDLE_THREADS && lua_status(co) == LUA_OK && lua_gethook(co) == NULL &&
        u->state != AE_UNIT_DRAINING) {
        lua_settop(co, 0); /* the main function's results */
        u->idle_threads[u->n_idle] = co;
        u->idle_refs[u->n_idle] = t->ref;
        u->n_idle++;
        return;
    }
    luaL_unref(u->L, LUA_REGISTRYINDEX, t->ref);
}

static void finish(ae_task *t, int ok, const char *err) {
    ae_unit *u = t->unit;
    if (t->is_start && u->on_start_done) {
        void (*done)(ae_unit *, int, const char *) = u->on_start_done;
        u->on_start_done = NULL;
        done(u, ok, err);
    }
    t->state = T_DONE;
    t->ok = ok;
    ae_timer_stop(&t->sleep_timer);
    unlink_task(t);
    if (t->co) *(ae_task **)lua_getextraspace(t->co) = NULL;
    keep_or_free_thread(u, t, ok);
    t->ref = LUA_NOREF;
    t->co = NULL;
    u->ntasks--;
    ae_task_release(t);
    ae_unit_task_finished(u); /* may close a draining unit */
}

static int current_line(lua_State *co) {
    lua_Debug ar;
    for (int level = 0; lua_getstack(co, level, &ar); level++) {
        if (lua_getinfo(co, "Sl", &ar) && ar.currentline > 0) return ar.currentline;
    }
    return 0;
}

void ae_task_resume_now(ae_task *t) {
    if (t->state != T_READY) return;
    ae_unit *u = t->unit;
    ae_task *outer = running;
    running = t;
    t->state = T_RUNNING;
    int nres = 0;
    u->in_resume++;
    lua_State *watched = ae_watchdog_enter(t->co);
    lua_State *profiled = ae_profile_enter(t->co);
    int st = lua_resume(t->co, NULL, t->nargs, &nres);
    ae_profile_enter(profiled);
    ae_watchdog_leave(watched);
    u->in_resume--;
    t->nargs = 0;
    running = outer;
    if (st == LUA_YIELD) {
        if (t->state == T_RUNNING) {
            /* a bare coroutine.yield() at task level: let others run, come back */
            lua_pop(t->co, nres);
            t->state = T_READY;
            ae_engine_schedule_yielded(t);
        }
        return;
    }
    if (st != LUA_OK) {
        const char *msg = lua_tostring(t->co, -1);
        if (!msg) msg = luaL_typename(t->co, -1);
        if (st == LUA_ERRMEM && u->mem_limit) msg = "memory limit reached (not enough memory)";
        int line = current_line(t->co);
        luaL_traceback(u->L, t->co, msg, 0);
        ae_log(AE_LOG_ERROR, u->name, line, "task '%s' failed: %s", t->name, lua_tostring(u->L, -1));
        lua_pop(u->L, 1);
        u->task_errors++;
        ae_metric_inc("aengine_task_errors", "Task errors per unit", "unit", u->name, 1);
        finish(t, 0, msg);
        return;
    }
    finish(t, 1, NULL);
}

/* Destroy every task of a unit that is being force-closed. */
void ae_task_destroy_all(ae_unit *u) {
    while (u->tasks) {
        ae_task *t = u->tasks;
        if (t->state == T_WAITING && t->cancel) t->cancel(t->cancel_data);
        t->cancel = NULL;
        /* a READY task may still be in the engine's queue: leave it there as
         * DONE; resume_now ignores it, release happens when refcount drops */
        finish(t, 0, "the unit was closed before its start task ended");
    }
}

int ae_tasks_io_pending(double younger_than) {
    double now = ae_clock_monotonic();
    int n = 0;
    for (ae_unit *u = ae_engine_units(); u; u = u->next)
        for (ae_task *t = u->tasks; t; t = t->next)
            if (t->state == T_WAITING && t->wait_kind == W_IO && now - t->wait_since < younger_than) n++;
    return n;
}

static const char *state_name(int s) {
    switch (s) {
    case T_READY: return "ready";
    case T_RUNNING: return "running";
    case T_WAITING: return "waiting";
    default: return "done";
    }
}

static const char *wait_name(int w) {
    switch (w) {
    case W_SUSPEND: return "suspended";
    case W_IO: return "io";
    case W_SLEEP: return "sleep";
    default: return "";
    }
}

void ae_task_each(ae_unit *u, void (*fn)(const ae_task_info *, void *), void *ud) {
    for (ae_task *t = u->tasks; t; t = t->next) {
        ae_task_info info = {t->id, t->name, state_name(t->state), wait_name(t->wait_kind),
                             ae_clock_now() - t->started};
        fn(&info, ud);
    }
}

static void describe_one(const ae_task_info *info, void *ud) {
    lua_State *L = ud;
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)info->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, info->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, info->state);
    lua_setfield(L, -2, "state");
    lua_pushstring(L, info->wait);
    lua_setfield(L, -2, "wait");
    lua_pushnumber(L, info->age);
    lua_setfield(L, -2, "age");
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

void ae_task_describe_all(lua_State *L, ae_unit *u) {
    lua_newtable(L);
    ae_task_each(u, describe_one, L);
}

/* ------------------------------------------------------------- Lua handles */

typedef struct {
    ae_task *t;
} handle;

static void push_handle(lua_State *L, ae_task *t) {
    handle *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->t = t;
    ae_task_retain(t);
    luaL_setmetatable(L, HANDLE_MT);
}

static ae_task *check_handle(lua_State *L, int i) {
    handle *h = luaL_checkudata(L, i, HANDLE_MT);
    return h->t;
}

static int handle_gc(lua_State *L) {
    handle *h = luaL_checkudata(L, 1, HANDLE_MT);
    if (h->t) ae_task_release(h->t);
    h->t = NULL;
    return 0;
}

static int handle_eq(lua_State *L) {
    lua_pushboolean(L, check_handle(L, 1) == check_handle(L, 2));
    return 1;
}

static int handle_tostring(lua_State *L) {
    ae_task *t = check_handle(L, 1);
    lua_pushfstring(L, "task #%d '%s' (%s)", (int)t->id, t->name, state_name(t->state));
    return 1;
}

/* spawn(fn, ...) -> handle */
static int l_spawn(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    ae_unit *u = ae_unit_of(L);
    int nargs = lua_gettop(L) - 1;
    ae_task *parent = ae_task_of(L);
    char name[80];
    snprintf(name, sizeof name, "%.56s/spawn", parent ? parent->name : "task");
    ae_task *t = ae_task_spawn(u, L, nargs, name);
    push_handle(L, t);
    return 1;
}

/* current() -> handle or nil */
static int l_current(lua_State *L) {
    ae_task *t = ae_task_of(L);
    if (!t) return 0;
    push_handle(L, t);
    return 1;
}

/* suspend() -> values given to wake() */
static int l_suspend(lua_State *L) { return ae_task_wait(L, 0); }

/* wake(handle, ...) -> true if the task was suspended and is now ready */
static int l_wake(lua_State *L) {
    ae_task *t = check_handle(L, 1);
    if (t->state != T_WAITING || t->wait_kind != W_SUSPEND) {
        lua_pushboolean(L, 0);
        return 1;
    }
    int n = lua_gettop(L) - 1;
    lua_checkstack(t->co, n + LUA_MINSTACK);
    for (int i = 2; i <= n + 1; i++)
        lua_pushvalue(L, i);
    lua_xmove(L, t->co, n);
    ae_task_wake(t, n);
    lua_pushboolean(L, 1);
    return 1;
}

/* sleep(seconds) */
static int l_sleep(lua_State *L) {
    double s = luaL_checknumber(L, 1);
    ae_task *t = ae_task_check(L);
    if (s < 0) s = 0;
    ae_timer_start(&t->sleep_timer, ae_clock_now() + s);
    t->state = T_WAITING;
    t->wait_kind = W_SLEEP;
    t->wait_since = ae_clock_monotonic();
    return lua_yield(L, 0);
}

static int l_name(lua_State *L) {
    ae_task *t = lua_isnoneornil(L, 1) ? ae_task_of(L) : check_handle(L, 1);
    if (!t) return 0;
    if (lua_isstring(L, 2)) ae_task_set_name(t, lua_tostring(L, 2));
    lua_pushstring(L, t->name);
    return 1;
}

static int l_status(lua_State *L) {
    ae_task *t = check_handle(L, 1);
    lua_pushstring(L, state_name(t->state));
    if (t->state == T_DONE) {
        lua_pushboolean(L, t->ok);
        return 2;
    }
    return 1;
}

/* report_error(msg): log and count an error without raising (used by
 * ae.task when a joined task failed: the joiner gets the error, the operator
 * still sees it). */
static int l_report_error(lua_State *L) {
    const char *msg = luaL_checkstring(L, 1);
    ae_unit *u = ae_unit_of(L);
    ae_task *t = ae_task_of(L);
    ae_log(AE_LOG_ERROR, u->name, current_line(L), "task '%s' failed: %s", t ? t->name : "?", msg);
    u->task_errors++;
    ae_metric_inc("aengine_task_errors", "Task errors per unit", "unit", u->name, 1);
    return 0;
}

/* list() -> tasks of this unit */
static int l_list(lua_State *L) {
    ae_task_describe_all(L, ae_unit_of(L));
    return 1;
}

/* ---------------------------------------------------------------- settle */
/* settle(grace): wait until the whole engine is quiet: no task ready to run
 * and no task waiting on I/O for less than `grace` real seconds. Used by the
 * manual clock so that advancing time happens between bursts of activity. */

typedef struct settler {
    ae_task *t;
    double grace, since;
    struct settler *next;
} settler;

static settler *settlers;
static struct event *settle_ev;

static void settle_check(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
    if (ae_engine_has_ready()) return;
    if (ae_clock_is_manual()) {
        double d = ae_timer_next_deadline();
        if (d >= 0 && d <= ae_clock_now()) return; /* a due timer has yet to fire */
    }
    settler **pp = &settlers;
    while (*pp) {
        settler *s = *pp;
        if (ae_tasks_io_pending(s->grace) == 0) {
            *pp = s->next;
            ae_task_wake(s->t, 0);
            ae_task_release(s->t);
            free(s);
        } else {
            pp = &s->next;
        }
    }
    if (!settlers) event_del(settle_ev);
}

static void settle_cancel(void *data) {
    settler *s = data;
    for (settler **pp = &settlers; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            ae_task_release(s->t);
            free(s);
            return;
        }
    }
}

static int l_settle(lua_State *L) {
    double grace = luaL_optnumber(L, 1, 2.0);
    ae_task *t = ae_task_check(L);
    settler *s = calloc(1, sizeof *s);
    if (!s) return luaL_error(L, "out of memory");
    s->t = t;
    ae_task_retain(t);
    s->grace = grace;
    s->next = settlers;
    settlers = s;
    if (!settle_ev) settle_ev = event_new(ae_engine_base(), -1, EV_PERSIST, settle_check, NULL);
    struct timeval tv = {0, 1000};
    event_add(settle_ev, &tv);
    ae_task_set_cancel(t, settle_cancel, s);
    t->state = T_WAITING;
    t->wait_kind = W_SUSPEND; /* not I/O: settling tasks do not keep others from settling */
    t->wait_since = ae_clock_monotonic();
    return lua_yield(L, 0);
}

void ae_task_settle_shutdown(void) {
    if (settle_ev) event_free(settle_ev);
    settle_ev = NULL;
}

int luaopen_ae_core_task(lua_State *L) {
    static const luaL_Reg handle_m[] = {{"__gc", handle_gc},
                                        {"__eq", handle_eq},
                                        {"__tostring", handle_tostring},
                                        {"__close", handle_gc},
                                        {NULL, NULL}};
    if (luaL_newmetatable(L, HANDLE_MT)) {
        luaL_setfuncs(L, handle_m, 0);
        lua_pushstring(L, "ae.task");
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    static const luaL_Reg f[] = {{"spawn", l_spawn},
                                 {"current", l_current},
                                 {"suspend", l_suspend},
                                 {"wake", l_wake},
                                 {"sleep", l_sleep},
                                 {"name", l_name},
                                 {"status", l_status},
                                 {"report_error", l_report_error},
                                 {"list", l_list},
                                 {"settle", l_settle},
                                 {NULL, NULL}};
    luaL_newlib(L, f);
    return 1;
}
