/* reload.h - hot reload of units (reload.c) and the console server
 * (console.c). Used by main.c, engine_lua.c and console.c. */
#ifndef AE_RELOAD_H
#define AE_RELOAD_H

#include "engine.h"

/* Completion of a reload or start: called exactly once, possibly before the
 * call that started the operation returns. ok=1 on success; message says
 * what happened (never NULL). */
typedef void (*ae_reload_cb)(void *arg, int ok, const char *message);

/* Install the SIGHUP handler and remember the config file (NULL: none) and
 * which units it started, so a reload can add, stop and reconfigure them. */
void ae_reload_init(const char *config_path);

/* The live version of a unit (not draining, not a new version still
 * starting), or NULL. */
ae_unit *ae_reload_current(const char *name);

/* Reload one unit if its script changed (force: even if not). */
void ae_reload_unit(const char *name, int force, ae_reload_cb cb, void *arg);

/* Reload everything: re-read the config file, start the units it adds,
 * stop the ones it removes, reload the units whose script or config entry
 * changed. The message is a per-unit summary. */
void ae_reload_all(ae_reload_cb cb, void *arg);

/* Start a new unit; cb runs when its start task ended (or failed to
 * compile). config_index: a table on `from`'s stack, or 0. */
void ae_reload_start_unit(const char *name, const char *script, lua_State *from, int config_index, size_t mem_limit,
                          long instr_budget, ae_reload_cb cb, void *arg);

/* Stop a unit: drain it (in-flight tasks finish, then it is closed).
 * Returns 0, or -1 when no such unit runs. */
int ae_reload_stop_unit(const char *name);

/* Default memory cap and instruction budget of a unit (env, then config). */
size_t ae_reload_default_mem_limit(void);
long ae_reload_default_budget(void);

/* ------------------------------------------------------------ console */

/* Start the console server on its Unix socket (path from AE_CONSOLE_SOCKET,
 * config console.socket, or the default). Returns 0, or -1 (logged). */
int ae_console_start(void);
/* Default socket path: /tmp/aengine-<uid>.sock (buf of n bytes). */
void ae_console_default_path(char *buf, size_t n);
/* The `aengine console` client; argv after "console". */
int ae_console_client_main(int argc, char **argv);
/* `aengine reload`: the console's reload command, or SIGHUP with --pid. */
int ae_console_reload_main(int argc, char **argv);

#endif
