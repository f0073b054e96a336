/* watchdog.c - the instruction budget of the units' tasks, at no cost while
 * tasks behave.
 *
 * A unit's instruction_budget stops a task that runs away (a loop that never
 * waits) with "instruction budget exceeded". A count hook set at every resume
 * would do it, but with any count hook Lua 5.4 leaves its fast path: every
 * instruction goes through luaG_traceexec (measured: a plain Lua loop ran
 * 1.5-1.7x slower with a hook of count 1e9 than with none). So a task runs
 * without a hook, and a timer on the loop thread's CPU clock (signal
 * SIGVTALRM to that thread, every AE_WATCHDOG_MS of its CPU time, default
 * 100) looks at which resume is running: if one resume has been running since
 * the previous tick, the handler arms the count hook on that task's thread
 * (lua_sethook may be called from a signal handler). The task then fails after
 * `budget` more instructions, as before: a runaway task is stopped after at
 * least one tick of CPU time plus its budget.
 *
 * Coroutines a task creates itself (coroutine.create / wrap) run inside that
 * task's resume but on their own thread, which the tick does not know: they
 * get the count hook from birth, as every thread did before (the wrappers
 * below). While the profiler runs (AE_PROFILE), it counts the budget itself
 * and the watchdog stays out of its way.
 */
#define _GNU_SOURCE
#include "watchdog.h"
#include "engine.h"
#include "log.h"

#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static lua_State *volatile watched;    /* the task thread inside lua_resume, if any */
static volatile long watched_budget;   /* its unit's budget (0: none) */
static volatile unsigned long resumes; /* resumes entered so far */
static unsigned long seen_at_tick;     /* `resumes` at the previous tick */
static volatile sig_atomic_t paused;   /* while the profiler counts the budget */

int ae_watchdog_budget_exceeded(lua_State *L) {
    return luaL_error(L, "instruction budget exceeded: more than %I Lua instructions without waiting",
                      (lua_Integer)ae_unit_of(L)->instr_budget);
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    ae_watchdog_budget_exceeded(L);
}

static int hook_count(long budget) { return budget > INT_MAX ? INT_MAX : (int)budget; }

static void on_tick(int sig) {
    (void)sig;
    lua_State *L = watched;
    unsigned long n = resumes;
    if (L && !paused && n == seen_at_tick && watched_budget > 0 && lua_gethook(L) != budget_hook)
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, hook_count(watched_budget));
    seen_at_tick = n;
}

lua_State *ae_watchdog_enter(lua_State *co) {
    lua_State *was = watched;
    /* a hook armed during an earlier resume of this thread: this one starts clean */
    if (lua_gethook(co) == budget_hook) lua_sethook(co, NULL, 0, 0);
    watched_budget = ae_unit_of(co)->instr_budget;
    resumes++;
    watched = co;
    return was;
}

void ae_watchdog_leave(lua_State *was) {
    /* back in the resume that was running (a nested resume), or none; its
     * hook, if the watchdog armed one, stays */
    watched_budget = was ? ae_unit_of(was)->instr_budget : 0;
    resumes++;
    watched = was;
}

void ae_watchdog_pause(int on) { paused = on; }

/* coroutine.create / coroutine.wrap: the new thread copies the count hook of
 * the thread that creates it (lua_newthread), so the creator holds the hook
 * for the duration of the call. Upvalue 1: Lua's own function. */
static int hooked_create(lua_State *L) {
    lua_Hook hook = lua_gethook(L);
    int mask = lua_gethookmask(L), count = lua_gethookcount(L);
    long budget = ae_unit_of(L)->instr_budget;
    if (budget > 0 && !(mask & LUA_MASKCOUNT)) lua_sethook(L, budget_hook, LUA_MASKCOUNT, hook_count(budget));
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    int st = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    if (lua_gethook(L) != hook || lua_gethookmask(L) != mask) lua_sethook(L, hook, mask, count);
    if (st != LUA_OK) return lua_error(L);
    return lua_gettop(L);
}

static void wrap_field(lua_State *L, const char *name) {
    lua_getfield(L, -1, name);
    if (lua_isfunction(L, -1)) {
        lua_pushcclosure(L, hooked_create, 1);
        lua_setfield(L, -2, name);
    } else {
        lua_pop(L, 1);
    }
}

void ae_watchdog_open(lua_State *L) {
    lua_getglobal(L, "coroutine");
    if (lua_istable(L, -1)) {
        wrap_field(L, "create");
        wrap_field(L, "wrap");
    }
    lua_pop(L, 1);
}

/* A timer on the calling thread's CPU clock that sends it `signo` every
 * interval_ns of its CPU time: it fires only while the loop thread works,
 * never while it waits in epoll. 0, or -1 with errno. */
int ae_loop_cpu_timer(int signo, void (*handler)(int), long interval_ns, timer_t *timer) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    clockid_t cpu;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = signo;
    sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    struct itimerspec its = {{interval_ns / 1000000000L, interval_ns % 1000000000L},
                             {interval_ns / 1000000000L, interval_ns % 1000000000L}};
    if (sigaction(signo, &sa, NULL) != 0 || pthread_getcpuclockid(pthread_self(), &cpu) != 0 ||
        timer_create(cpu, &sev, timer) != 0)
        return -1;
    if (timer_settime(*timer, 0, &its, NULL) != 0) {
        int e = errno;
        timer_delete(*timer);
        errno = e;
        return -1;
    }
    return 0;
}

void ae_watchdog_init(void) {
    const char *ms_env = getenv("AE_WATCHDOG_MS");
    long ms = ms_env && atol(ms_env) > 0 ? atol(ms_env) : 100;
    timer_t timer;
    if (ae_loop_cpu_timer(SIGVTALRM, on_tick, ms * 1000000L, &timer) != 0)
        /* without the timer a runaway task is not stopped: say so, keep running */
        ae_log(AE_LOG_WARNING, "engine", 0, "watchdog: no CPU-time timer (%s): the instruction budget is not enforced",
               strerror(errno));
}
