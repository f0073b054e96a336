/* watchdog.h - the tasks' instruction budget, armed only for a resume that
 * runs long (see watchdog.c). */
#ifndef AE_WATCHDOG_H
#define AE_WATCHDOG_H

#include <lua.h>
#include <time.h>

void ae_watchdog_init(void); /* on the loop thread; reads AE_WATCHDOG_MS */
/* Around lua_resume of a task thread: enter returns the previous one, which
 * leave restores. */
lua_State *ae_watchdog_enter(lua_State *co);
void ae_watchdog_leave(lua_State *was);
void ae_watchdog_pause(int paused);  /* the profiler counts the budget itself */
void ae_watchdog_open(lua_State *L); /* a new unit state: coroutine.create / wrap hooked */
/* Raises the task's "instruction budget exceeded" error (also profile.c's). */
int ae_watchdog_budget_exceeded(lua_State *L);

/* A timer on the calling (loop) thread's CPU clock: signo every interval_ns of
 * its CPU time (also used by profile.c). 0, or -1 with errno. */
int ae_loop_cpu_timer(int signo, void (*handler)(int), long interval_ns, timer_t *timer);

#endif
