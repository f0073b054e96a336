/* main.c - the aengine command line.
 *
 *   aengine run [-c CONFIG.lua] [UNIT.lua ...]   run units
 *   aengine check FILE.lua ...                   compile scripts, report errors
 *   aengine test [BUSTED ARGS]                   run busted specs inside the engine
 *   aengine exec SCRIPT.lua [ARGS]               run one script as a task, then exit
 *   aengine console [--socket PATH] [-e CMD]     attach to a running engine
 *   aengine reload [--socket PATH] [UNIT]        reload a running engine's changed scripts
 */
#define _POSIX_C_SOURCE 200809L
#include "config.h"
#include "engine.h"
#include "engine_internal.h"
#include "log.h"
#include "profile.h"
#include "reload.h"
#include "watchdog.h"

#include <lualib.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ae_engine_exit_requested(void);
void ae_task_settle_shutdown(void);
void ae_bindings_shutdown(void);
int ae_httpd_boot(void); /* http_server.c: main HTTP server if configured */

static void usage(FILE *f) {
    fprintf(f,
            "aengine %s - automation engine: a C core running Lua units\n\n"
            "usage:\n"
            "  aengine run [-c CONFIG.lua] [UNIT.lua ...]  run the units of a config file, or scripts\n"
            "                                              (one script = one unit, configured from env)\n"
            "  aengine check FILE.lua ...                  compile and validate scripts without running\n"
            "  aengine test [BUSTED ARGS ...]              run busted specs inside the engine\n"
            "  aengine exec SCRIPT.lua [ARGS ...]          run one script in a task, exit when it ends\n"
            "  aengine console [--socket PATH] [-e CMD]    attach to a running engine (REPL, or one command)\n"
            "  aengine reload [--socket PATH|--pid PID] [-f] [UNIT]\n"
            "                                              reload a running engine's changed scripts\n"
            "  aengine --version | --help\n\n"
            "Environment: AE_LOG_LEVEL, AE_LOG_FORMAT=json, AE_CLOCK_START, AE_CLOCK_OFFSET,\n"
            "AE_CLOCK_RATE, AE_CLOCK_MANUAL, AE_SHUTDOWN_DEADLINE, AE_SCRIPTS, AE_CONSOLE_SOCKET (see docs/).\n",
            AE_VERSION);
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *unit_name_from_path(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    char *n = strdup(b);
    char *dot = strrchr(n, '.');
    if (dot && strcmp(dot, ".lua") == 0) *dot = '\0';
    return n;
}

static double env_number(const char *name, double def) {
    const char *v = getenv(name);
    return v && *v ? strtod(v, NULL) : def;
}

/* glibc malloc for an engine that moves replies of tens of MB (a VeloCloud
 * host's links, the customer cache): by default each such buffer is a fresh
 * mmap, faulted in page by page and unmapped on free, and glibc also gives
 * the top of the heap back to the kernel as soon as 128 KB are free. Page
 * faults are expensive (on a paravirtualized VM they dominated: the same 18 MB
 * reply cost 1.6x the CPU). So buffers up to malloc.mmap_threshold come from
 * the heap, and up to malloc.trim_threshold of freed heap is kept for the next
 * one. A GLIBC_TUNABLES setting of the same parameter wins. */
static int tunable_set(const char *name) {
    const char *t = getenv("GLIBC_TUNABLES");
    return t && strstr(t, name);
}

static void tune_malloc(void) {
    double mmap_mb = ae_config_number("malloc.mmap_threshold_mb", 32);
    double trim_mb = ae_config_number("malloc.trim_threshold_mb", 128);
    if (mmap_mb > 0 && !tunable_set("glibc.malloc.mmap_threshold") &&
        !mallopt(M_MMAP_THRESHOLD, (int)(mmap_mb * 1024 * 1024)))
        ae_log(AE_LOG_WARNING, "engine", 0, "malloc.mmap_threshold_mb = %g refused by glibc (at most 32)", mmap_mb);
    if (trim_mb > 0 && !tunable_set("glibc.malloc.trim_threshold"))
        mallopt(M_TRIM_THRESHOLD, (int)(trim_mb * 1024 * 1024));
}

static int boot(const char *config_path) {
    ae_log_init();
    ae_clock_init();
    ae_watchdog_init();
    ae_profile_init();
    if (ae_engine_init() != 0) {
        fprintf(stderr, "aengine: cannot create the event loop\n");
        return -1;
    }
    char *err = NULL;
    if (ae_config_load(config_path, &err) != 0) {
        fprintf(stderr, "aengine: config: %s\n", err);
        free(err);
        return -1;
    }
    tune_malloc();
    const char *root = getenv("AE_SCRIPTS");
    if (!root || !*root) root = ae_config_string("scripts", NULL);
    if (!root && is_dir("scripts")) root = "scripts";
    ae_unit_set_search_path(root);
    double deadline = ae_config_number("shutdown_deadline", 30);
    ae_engine_set_shutdown_deadline(env_number("AE_SHUTDOWN_DEADLINE", deadline));
    const char *lvl = ae_config_string("log.level", NULL);
    if (lvl && !getenv("AE_LOG_LEVEL")) {
        int l = ae_log_level_from_name(lvl);
        if (l > 0) ae_log_set_level(l);
    }
    if (ae_httpd_boot() != 0) return -1;
    return 0;
}

static void teardown(void) {
    ae_profile_write();
    ae_units_free_all();
    ae_bindings_shutdown();
    ae_task_settle_shutdown();
    ae_clock_shutdown();
    ae_engine_free();
    ae_config_free();
}

static size_t default_mem_limit(void) {
    return (size_t)(env_number("AE_MEMORY_LIMIT_MB", ae_config_number("defaults.memory_limit_mb", 1024)) * 1048576.0);
}

static long default_budget(void) {
    return (long)env_number("AE_INSTRUCTION_BUDGET", ae_config_number("defaults.instruction_budget", 1e9));
}

static ae_unit *start_unit(const char *name, const char *script, lua_State *from, int cfg_idx, size_t mem, long budget,
                           int argc, char **argv) {
    char *err = NULL;
    ae_unit *u = ae_unit_create(name, script, from, cfg_idx, mem, budget, &err);
    if (!u) {
        ae_log(AE_LOG_ERROR, name, 0, "cannot load %s: %s", script, err);
        free(err);
        return NULL;
    }
    ae_unit_start(u, argc, argv);
    return u;
}

/* Start the units listed in the config's `units` array. */
static int start_config_units(void) {
    lua_State *C = ae_config_state();
    int started = 0, failed = 0;
    if (!ae_config_push_path("units") || !lua_istable(C, -1)) {
        lua_pop(C, 1);
        return 0;
    }
    int n = (int)lua_rawlen(C, -1);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(C, -1, i);
        int t = lua_gettop(C);
        if (!lua_istable(C, t)) {
            lua_pop(C, 1);
            continue;
        }
        lua_getfield(C, t, "enabled");
        int enabled = lua_isnil(C, -1) || lua_toboolean(C, -1);
        lua_getfield(C, t, "script");
        lua_getfield(C, t, "name");
        lua_getfield(C, t, "memory_limit_mb");
        lua_getfield(C, t, "instruction_budget");
        lua_getfield(C, t, "config");
        const char *script = lua_tostring(C, t + 2);
        if (enabled && script) {
            char *name = lua_isstring(C, t + 3) ? strdup(lua_tostring(C, t + 3)) : unit_name_from_path(script);
            size_t mem = lua_isnumber(C, t + 4) ? (size_t)(lua_tonumber(C, t + 4) * 1048576.0) : default_mem_limit();
            long budget = lua_isnumber(C, t + 5) ? (long)lua_tonumber(C, t + 5) : default_budget();
            if (start_unit(name, script, C, t + 6, mem, budget, 0, NULL))
                started++;
            else
                failed++;
            free(name);
        } else if (!script) {
            AE_LOG_ENGINE(AE_LOG_ERROR, "config units[%d] has no script; skipped", i);
            failed++;
        }
        lua_settop(C, t - 1);
    }
    lua_pop(C, 1);
    return failed ? -failed : started;
}

static int cmd_run(int argc, char **argv) {
    const char *config = NULL;
    int first = 0;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            config = argv[++i];
            first = i + 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "aengine run: unknown option %s\n", argv[i]);
            return 2;
        } else {
            break;
        }
    }
    if (!config && first == argc) {
        fprintf(stderr, "aengine run: give -c CONFIG.lua or at least one UNIT.lua\n");
        return 2;
    }
    if (boot(config) != 0) return 1;
    int rc = 0;
    if (config && start_config_units() < 0) rc = 1;
    for (int i = first; i < argc; i++) {
        char *name = unit_name_from_path(argv[i]);
        if (!start_unit(name, argv[i], NULL, 0, default_mem_limit(), default_budget(), 0, NULL)) rc = 1;
        free(name);
    }
    if (rc != 0) {
        AE_LOG_ENGINE(AE_LOG_CRITICAL, "some units failed to load; stopping");
        teardown();
        return 1;
    }
    ae_reload_init(config);
    ae_console_start();
    AE_LOG_ENGINE(AE_LOG_INFO, "aengine %s running (pid %d)", AE_VERSION, (int)getpid());
    rc = ae_engine_run();
    int req = ae_engine_exit_requested();
    teardown();
    return req >= 0 ? req : rc;
}

static int cmd_runner(const char *module, const char *name, int argc, char **argv) {
    if (boot(getenv("AE_CONFIG")) != 0) return 1;
    if (!start_unit(name, module, NULL, 0, default_mem_limit(), default_budget(), argc, argv)) {
        teardown();
        return 1;
    }
    int rc = ae_engine_run();
    int req = ae_engine_exit_requested();
    teardown();
    return req >= 0 ? req : rc;
}

static int cmd_check(int argc, char **argv) {
    if (argc == 0) {
        fprintf(stderr, "aengine check: give at least one FILE.lua\n");
        return 2;
    }
    int bad = 0;
    for (int i = 0; i < argc; i++) {
        lua_State *L = luaL_newstate();
        if (luaL_loadfile(L, argv[i]) != LUA_OK) {
            fprintf(stderr, "%s\n", lua_tostring(L, -1));
            bad++;
        } else {
            printf("%s: ok\n", argv[i]);
        }
        lua_close(L);
    }
    return bad ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("aengine %s (%s)\n", AE_VERSION, LUA_RELEASE);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "run") == 0) return cmd_run(argc - 2, argv + 2);
    if (strcmp(cmd, "check") == 0) return cmd_check(argc - 2, argv + 2);
    if (strcmp(cmd, "console") == 0) return ae_console_client_main(argc - 2, argv + 2);
    if (strcmp(cmd, "reload") == 0) return ae_console_reload_main(argc - 2, argv + 2);
    if (strcmp(cmd, "test") == 0) return cmd_runner("module:ae.testing.busted", "test", argc - 2, argv + 2);
    if (strcmp(cmd, "exec") == 0) {
        if (argc < 3) {
            fprintf(stderr, "aengine exec: give SCRIPT.lua\n");
            return 2;
        }
        char *name = unit_name_from_path(argv[2]);
        int rc = cmd_runner("module:ae.testing.exec", name, argc - 2, argv + 2);
        free(name);
        return rc;
    }
    fprintf(stderr, "aengine: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
