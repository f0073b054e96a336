/* engine.h - the aengine core API: one event loop, units (one lua_State each)
 * and tasks (one coroutine per entry into Lua).
 *
 * Every binding (nats.c, redis.c, http_client.c, ...) is written against this
 * header only. The contract for a binding that waits on I/O:
 *
 *   static int l_thing_call(lua_State *L) {
 *       ae_task *t = ae_task_check(L);         // raises if not inside a task
 *       op->task = t;                          // remember who waits
 *       ae_task_set_cancel(t, op_cancel, op);  // detach op if the task dies
 *       start_io(op);
 *       return ae_task_wait(L, 1);             // yield; 1 = counts as pending I/O
 *   }
 *   static void on_io_done(op) {              // on the loop thread
 *       if (op->task) {
 *           lua_State *co = ae_task_thread(op->task);
 *           lua_pushxxx(co, result);           // push the values the call returns
 *           ae_task_wake(op->task, 1);         // resumes later from the loop
 *       }
 *   }
 *
 * Lua only ever runs on the loop thread. Code running on another thread hands
 * work to the loop with ae_engine_post().
 */
#ifndef AE_ENGINE_H
#define AE_ENGINE_H

#include <lua.h>
#include <lauxlib.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct ae_engine ae_engine;
typedef struct ae_unit ae_unit;
typedef struct ae_task ae_task;
typedef struct ae_timer ae_timer;

#define AE_VERSION "0.1.0"

/* ---------------------------------------------------------------- engine */

/* The process-wide engine (there is exactly one). */
ae_engine *ae_engine_get(void);
struct event_base *ae_engine_base(void);

/* Run fn(arg) on the loop thread soon. Safe to call from any thread. */
void ae_engine_post(void (*fn)(void *arg), void *arg);

/* Ask the engine to stop: stop intake, let tasks finish up to the shutdown
 * deadline, then leave the loop with exit_code. */
void ae_engine_stop(int exit_code);
int ae_engine_stopping(void);

/* Process exit hooks: run after every unit is closed (free global state of
 * a binding: curl_global_cleanup, nats_Close...). */
void ae_engine_at_exit(void (*fn)(void));

/* Shutdown hooks: called when the engine starts stopping (stop intake). */
typedef void (*ae_hook_fn)(void *arg);
void ae_engine_on_stop(ae_hook_fn fn, void *arg);

/* ----------------------------------------------------------------- clock */

/* Engine time in seconds since the Unix epoch (UTC), sub-second precision.
 * Real time, optionally shifted/scaled (AE_CLOCK_START, AE_CLOCK_OFFSET,
 * AE_CLOCK_RATE), or a manual clock that only moves when advanced (specs). */
double ae_clock_now(void);
int ae_clock_is_manual(void);
void ae_clock_set_manual(int manual, double at);
/* Move a manual clock to t (never backwards) and fire the timers due. */
void ae_clock_set(double t);
/* Real monotonic seconds, unaffected by the engine clock (for measuring). */
double ae_clock_monotonic(void);

/* ---------------------------------------------------------------- timers */

/* A one-shot timer on the engine clock. Owned by the caller; stop it before
 * freeing. fire() runs on the loop thread. */
struct ae_timer {
    double deadline;   /* engine clock seconds */
    size_t heap_index; /* position in the heap, (size_t)-1 when not armed */
    void (*fire)(ae_timer *t);
    void *data;
};
void ae_timer_init(ae_timer *t, void (*fire)(ae_timer *), void *data);
void ae_timer_start(ae_timer *t, double deadline);
void ae_timer_stop(ae_timer *t);
int ae_timer_armed(const ae_timer *t);
/* Earliest deadline armed, or -1 when none. */
double ae_timer_next_deadline(void);

/* ----------------------------------------------------------------- units */

typedef enum {
    AE_UNIT_STARTING,
    AE_UNIT_RUNNING,
    AE_UNIT_DRAINING, /* no new intake; in-flight tasks finishing */
    AE_UNIT_STOPPED,
    AE_UNIT_FAILED
} ae_unit_state;

/* Resources a unit holds (subscriptions, timers, routes...). When the unit
 * stops taking work, close() is called on each: it must stop new intake and
 * release everything that would call into the unit's Lua state. */
typedef struct ae_resource {
    struct ae_resource *prev, *next;
    const char *kind; /* "timer", "subscription", "route"... for the console */
    void (*close)(struct ae_resource *r);
    void (*describe)(struct ae_resource *r, luaL_Buffer *b); /* optional */
} ae_resource;

/* Task threads a unit keeps for reuse: a new thread is a lua_State, a stack
 * grown on the first calls, and later the collector's work to free them. */
#define AE_IDLE_THREADS 64

struct ae_unit {
    char *name;
    char *script; /* path of the script */
    char script_hash[17];
    int version; /* 1, 2, ... incremented on each reload */
    lua_State *L;
    ae_unit_state state;
    size_t mem_used, mem_peak, mem_limit; /* bytes; limit 0 = none */
    long instr_budget;                    /* per resume; 0 = none */
    int config_ref;                       /* registry ref of the config table */
    int ntasks;                           /* live tasks */
    unsigned long tasks_started, task_errors;
    ae_resource resources; /* sentinel of a circular list */
    ae_resource holds;     /* what keeps a draining unit open (see ae_unit_hold) */
    ae_task *tasks;        /* list of live tasks */
    ae_unit *next;         /* engine's list */
    ae_unit *replaced_by;  /* during reload */
    char *last_error;
    int close_scheduled;
    int in_resume; /* > 0 while a task of this unit runs (allocations are protected) */
    /* threads of tasks that returned, kept for the next tasks (task.c) */
    lua_State *idle_threads[AE_IDLE_THREADS];
    int idle_refs[AE_IDLE_THREADS], n_idle;
    void (*on_closed)(ae_unit *u, void *arg);
    void *on_closed_arg;
    /* called once when the start task ends: ok=1 returned, 0 raised or was
     * destroyed (err says why). Used by reload.c; cleared before the call. */
    void (*on_start_done)(ae_unit *u, int ok, const char *err);
    void *on_start_done_arg;
};

/* Create a unit from a script. config_index: a stack index (in L_from) of the
 * unit's config table, or 0. Returns NULL and sets *err on failure. */
ae_unit *ae_unit_create(const char *name, const char *script, lua_State *L_from, int config_index, size_t mem_limit,
                        long instr_budget, char **err);
/* Run the script's chunk as the unit's start task. */
int ae_unit_start(ae_unit *u, int nargs_from_cli, char **argv);
/* Stop intake (close resources); the unit is closed when its last task ends. */
void ae_unit_drain(ae_unit *u);
/* The unit a Lua state (or any of its threads) belongs to. */
ae_unit *ae_unit_of(lua_State *L);
void ae_unit_add_resource(ae_unit *u, ae_resource *r, const char *kind, void (*close)(ae_resource *));
void ae_unit_remove_resource(ae_resource *r);
/* Keep a draining unit open until ae_unit_unhold: e.g. a NATS subscription
 * being drained, whose messages already on the way must still run in this
 * unit. close() is called only if the unit is force-closed first (shutdown
 * deadline); it must then forget the unit. */
void ae_unit_hold(ae_unit *u, ae_resource *r, const char *kind, void (*close)(ae_resource *));
void ae_unit_unhold(ae_unit *u, ae_resource *r);
ae_unit *ae_engine_units(void);
ae_unit *ae_engine_find_unit(const char *name);

/* ----------------------------------------------------------------- tasks */

/* Spawn a task in unit u: the function and its nargs arguments are on top of
 * the stack of L (any thread of u, or u->L). They are popped. The task starts
 * from the loop soon, not inside this call. Returns the task. */
ae_task *ae_task_spawn(ae_unit *u, lua_State *L, int nargs, const char *name);
/* Like ae_task_spawn from C code that is not in Lua (e.g. a message callback):
 * the function and arguments are on u->L's stack. */

/* The running task of a thread, or NULL when L is not a task. */
ae_task *ae_task_of(lua_State *L);
/* The running task, or raises a Lua error "must be called inside a task". */
ae_task *ae_task_check(lua_State *L);
lua_State *ae_task_thread(ae_task *t);
ae_unit *ae_task_unit(ae_task *t);
const char *ae_task_name(ae_task *t);
void ae_task_set_name(ae_task *t, const char *name);

/* Suspend the running task. io=1 when it waits on I/O (used by the manual
 * clock to know when the engine is quiet). Use as: return ae_task_wait(L, 1);
 * The values pushed by the waker are what the Lua call returns. */
int ae_task_wait(lua_State *L, int io);
/* Wake a waiting task; nresults values have been pushed on its thread.
 * It resumes from the loop, never inside this call. */
void ae_task_wake(ae_task *t, int nresults);
int ae_task_waiting(ae_task *t);
/* Called if the task is destroyed while waiting (unit force-closed), so the
 * pending operation forgets the task. Cleared by ae_task_wake. */
void ae_task_set_cancel(ae_task *t, void (*cancel)(void *data), void *data);

/* Keep a task alive (reference counted handle) after it finished, so its
 * results can be read by a joiner. */
void ae_task_retain(ae_task *t);
void ae_task_release(ae_task *t);

/* -------------------------------------------------------------- metrics */
/* Minimal hooks the core uses to count things; implemented by metrics.c. */
void ae_metric_inc(const char *name, const char *help, const char *label_name, const char *label_value, double by);
void ae_metric_set(const char *name, const char *help, const char *label_name, const char *label_value, double value);
void ae_metric_observe(const char *name, const char *help, const char *label_name, const char *label_value,
                       double value);

/* ------------------------------------------------------------ Lua helpers */

/* Register a module loader so that require(name) works in every unit. */
typedef struct {
    const char *name;
    lua_CFunction open;
} ae_module;
/* Raise a Lua error with a "module.function: message" prefix. */
int ae_error(lua_State *L, const char *fmt, ...);
/* Return nil, message (the uniform soft-error convention). */
int ae_fail(lua_State *L, const char *fmt, ...);

#endif
