/* engine_internal.h - wiring between the core files (engine, unit, task,
 * clock, main). Bindings use engine.h only. */
#ifndef AE_ENGINE_INTERNAL_H
#define AE_ENGINE_INTERNAL_H

#include "engine.h"

/* engine.c */
int ae_engine_init(void);
int ae_engine_run(void);
void ae_engine_free(void);
void ae_engine_schedule(ae_task *t);
void ae_engine_schedule_yielded(ae_task *t); /* task.yield: after the next poll */
int ae_engine_has_ready(void);
void ae_engine_set_reload_handler(void (*fn)(void));
void ae_engine_set_shutdown_deadline(double seconds);

/* clock.c */
void ae_clock_init(void);
void ae_clock_shutdown(void);

/* task.c */
void ae_task_resume_now(ae_task *t);
ae_task *ae_task_ready_next(ae_task *t);
void ae_task_set_ready_next(ae_task *t, ae_task *next);
void ae_task_destroy_all(ae_unit *u); /* force: unit being closed */
int ae_tasks_io_pending(double younger_than_seconds);
typedef struct {
    unsigned long id;
    const char *name, *state, *wait; /* wait: what a waiting task waits on */
    double age;                      /* seconds since it started */
} ae_task_info;
void ae_task_each(ae_unit *u, void (*fn)(const ae_task_info *, void *), void *ud); /* every live task */
void ae_task_describe_all(lua_State *L, ae_unit *u); /* pushes a list of {id, name, state, wait, age} */
int luaopen_ae_core_task(lua_State *L);

/* unit.c */
int ae_units_live_tasks(void);
void ae_units_drain_all(void);
void ae_unit_task_finished(ae_unit *u);
void ae_unit_close_now(ae_unit *u);
void ae_units_free_all(void);
void ae_unit_set_search_path(const char *scripts_root);
void ae_unit_set_preload(void (*fn)(lua_State *L));

/* modules.c: registers every ae.* module in a fresh state */
void ae_modules_preload(lua_State *L);

#endif
