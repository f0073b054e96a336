/* reload.c - hot reload of units, with nothing lost.
 *
 * A reload of unit U (SIGHUP, `aengine reload`, the console's `reload`, or
 * ae.engine.reload):
 *   1. the script is compiled into a fresh state (a compile error leaves the
 *      old version running: logged, counted, kept in old->last_error);
 *   2. the new version's start task runs the chunk, which registers its
 *      subscriptions, timers and routes; meanwhile both versions are
 *      subscribed (queue groups split the requests between them);
 *   3. when that start task ended without error (unit->on_start_done), the
 *      every() jobs of the new version take over the grid of the old ones
 *      (same name and interval: next run = old next run, so a tick is neither
 *      doubled nor skipped), then the old version is drained: its resources
 *      are closed (subscriptions drained, timers stopped), its in-flight tasks
 *      finish in the old state, which is closed after the last one;
 *   4. if the start task raised, the new version is drained instead and the
 *      old one keeps running.
 * A start task still running after reload.start_timeout seconds (default 10)
 * is taken as started (a unit whose chunk runs a main loop).
 *
 * A reload of everything also re-reads the config file: units it adds are
 * started, units it removes (or disables) are stopped, units whose entry
 * (script, config, limits) changed are reloaded even if the script did not.
 */
#define _POSIX_C_SOURCE 200809L
#include "config.h"
#include "engine.h"
#include "engine_internal.h"
#include "log.h"
#include "strbuf.h"
#include "reload.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- helpers */

static char *xstrdup(const char *s) {
    char *d = strdup(s ? s : "");
    if (!d) abort();
    return d;
}

static char *xprintf(const char *fmt, ...) AE_PRINTF(1, 2);
static char *xprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = malloc((size_t)n + 1);
    if (!s) abort();
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Same hash as unit.c's script_hash (FNV-1a of the file, 16 hex digits). */
static int hash_file(const char *path, char out[17]) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    uint64_t h = 1469598103934665603ULL;
    unsigned char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        h = fnv_bytes(h, buf, n);
    fclose(f);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
    return 0;
}

static int unit_alive(ae_unit *u) {
    for (ae_unit *v = ae_engine_units(); v; v = v->next)
        if (v == u) return u->state != AE_UNIT_STOPPED;
    return 0;
}

static double env_number(const char *name, double def) {
    const char *v = getenv(name);
    return v && *v ? strtod(v, NULL) : def;
}

size_t ae_reload_default_mem_limit(void) {
    return (size_t)(env_number("AE_MEMORY_LIMIT_MB", ae_config_number("defaults.memory_limit_mb", 1024)) * 1048576.0);
}

long ae_reload_default_budget(void) {
    return (long)env_number("AE_INSTRUCTION_BUDGET", ae_config_number("defaults.instruction_budget", 1e9));
}

/* ------------------------------------------------------ pending starts */

typedef struct pending {
    char *name;
    ae_unit *old; /* version being replaced, NULL for a new unit */
    int old_version;
    ae_unit *nu;
    double t0;
    struct event *timeout_ev;
    ae_reload_cb cb;
    void *arg;
    struct pending *next;
} pending;

static pending *pendings;

static pending *pending_for(const char *name) {
    for (pending *p = pendings; p; p = p->next)
        if (strcmp(p->name, name) == 0) return p;
    return NULL;
}

static int is_pending_new(ae_unit *u) {
    for (pending *p = pendings; p; p = p->next)
        if (p->nu == u) return 1;
    return 0;
}

ae_unit *ae_reload_current(const char *name) {
    for (ae_unit *u = ae_engine_units(); u; u = u->next) {
        if (strcmp(u->name, name) != 0) continue;
        if (u->state != AE_UNIT_RUNNING && u->state != AE_UNIT_STARTING) continue;
        if (u->replaced_by || is_pending_new(u)) continue;
        return u;
    }
    return NULL;
}

/* Lua run on the loop (no task of either state is running here): hand the
 * grid of the old version's every() jobs to the new version's jobs. */
static const char ADOPT_SRC[] = "local name, interval, next_run = ...\n"
                                "local timer = package.loaded['ae.timer']\n"
                                "if type(timer) ~= 'table' or not timer.get then return false end\n"
                                "local j = timer.get(name)\n"
                                "if not j or j.cancelled or j.kind ~= 'every' or j.interval ~= interval then\n"
                                "  return false\n"
                                "end\n"
                                "j.anchor, j.scheduled = next_run, next_run\n"
                                "j.timer:start(next_run)\n"
                                "return true\n";

static int adopt_timers(ae_unit *old, ae_unit *nu) {
    lua_State *O = old->L, *N = nu->L;
    int adopted = 0;
    int otop = lua_gettop(O), ntop = lua_gettop(N);
    lua_getfield(O, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(O, -1, "ae.timer");
    if (!lua_istable(O, -1)) goto done;
    lua_getfield(O, -1, "jobs");
    if (!lua_isfunction(O, -1) || lua_pcall(O, 0, 1, 0) != LUA_OK || !lua_istable(O, -1)) goto done;
    if (luaL_loadbuffer(N, ADOPT_SRC, sizeof ADOPT_SRC - 1, "=[reload]") != LUA_OK) goto done;
    int fn = lua_gettop(N);
    lua_Integer n = (lua_Integer)lua_rawlen(O, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(O, -1, i);
        lua_getfield(O, -1, "kind");
        lua_getfield(O, -2, "name");
        lua_getfield(O, -3, "interval");
        lua_getfield(O, -4, "next_run");
        const char *kind = lua_tostring(O, -4);
        if (kind && strcmp(kind, "every") == 0 && lua_isstring(O, -3) && lua_isnumber(O, -2) && lua_isnumber(O, -1)) {
            lua_pushvalue(N, fn);
            lua_pushstring(N, lua_tostring(O, -3));
            lua_pushnumber(N, lua_tonumber(O, -2));
            lua_pushnumber(N, lua_tonumber(O, -1));
            if (lua_pcall(N, 3, 1, 0) == LUA_OK) {
                adopted += lua_toboolean(N, -1);
            } else {
                ae_log(AE_LOG_WARNING, nu->name, 0, "reload: cannot move timer '%s' to the new version: %s",
                       lua_tostring(O, -3), lua_tostring(N, -1));
            }
            lua_pop(N, 1);
        }
        lua_pop(O, 5);
    }
done:
    lua_settop(O, otop);
    lua_settop(N, ntop);
    return adopted;
}

static void complete(pending *p, int ok, const char *err) {
    for (pending **pp = &pendings; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    if (p->timeout_ev) event_free(p->timeout_ev);
    p->timeout_ev = NULL;
    double ms = (ae_clock_monotonic() - p->t0) * 1000.0;
    char *msg;
    int old_alive = p->old && unit_alive(p->old);
    if (ok) {
        if (old_alive) {
            int adopted = adopt_timers(p->old, p->nu);
            p->old->replaced_by = p->nu;
            ae_log(AE_LOG_INFO, p->name, 0,
                   "reload: version %d started in %.1f ms (hash %s, %d timer(s) kept on their grid); draining "
                   "version %d",
                   p->nu->version, ms, p->nu->script_hash, adopted, p->old_version);
            ae_unit_drain(p->old);
            msg = xprintf("%s: reloaded, version %d -> %d (%.1f ms)", p->name, p->old_version, p->nu->version, ms);
        } else if (p->old) {
            ae_log(AE_LOG_WARNING, p->name, 0, "reload: version %d started, but version %d had already stopped",
                   p->nu->version, p->old_version);
            msg = xprintf("%s: version %d started (the old version had already stopped)", p->name, p->nu->version);
        } else {
            msg = xprintf("%s: started, version %d (%.1f ms)", p->name, p->nu->version, ms);
        }
        ae_metric_inc("aengine_reloads_total", "Units (re)started by a reload", "unit", p->name, 1);
        ae_metric_observe("aengine_reload_seconds", "Time from reload request to the new version started", "unit",
                          p->name, ms / 1000.0);
    } else {
        const char *why = err ? err : "unknown error";
        if (old_alive) {
            msg = xprintf("%s: reload to version %d failed, version %d keeps running: start failed: %s", p->name,
                          p->nu->version, p->old_version, why);
            free(p->old->last_error);
            p->old->last_error = xstrdup(msg);
        } else {
            msg = xprintf("%s: start failed: %s", p->name, why);
        }
        ae_log(AE_LOG_ERROR, p->name, 0, "%s", msg);
        ae_metric_inc("aengine_reload_failures_total", "Reloads or starts that failed", "unit", p->name, 1);
        if (unit_alive(p->nu)) ae_unit_drain(p->nu);
    }
    if (p->cb) p->cb(p->arg, ok, msg);
    free(msg);
    free(p->name);
    free(p);
}

static void on_start_done(ae_unit *u, int ok, const char *err) {
    pending *p = u->on_start_done_arg;
    u->on_start_done_arg = NULL;
    if (p) complete(p, ok, err);
}

static void on_start_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    pending *p = arg;
    if (!unit_alive(p->nu)) return; /* its on_start_done already ran */
    ae_log(AE_LOG_WARNING, p->name, 0,
           "reload: the start task of version %d is still running after %.1f s; taking it as started", p->nu->version,
           ae_clock_monotonic() - p->t0);
    p->nu->on_start_done = NULL;
    p->nu->on_start_done_arg = NULL;
    complete(p, 1, NULL);
}

/* Create and start `name` from `script` (replacing `old` when not NULL). */
static void begin(const char *name, const char *script, ae_unit *old, lua_State *from, int cfg_idx, size_t mem,
                  long budget, ae_reload_cb cb, void *arg) {
    if (pending_for(name)) {
        char *m = xprintf("%s: a reload or start of this unit is already in progress", name);
        ae_log(AE_LOG_WARNING, name, 0, "%s", m);
        if (cb) cb(arg, 0, m);
        free(m);
        return;
    }
    if (ae_engine_stopping()) {
        char *m = xprintf("%s: the engine is stopping; not (re)started", name);
        if (cb) cb(arg, 0, m);
        free(m);
        return;
    }
    double t0 = ae_clock_monotonic();
    char *err = NULL;
    ae_unit *nu = ae_unit_create(name, script, from, cfg_idx, mem, budget, &err);
    if (!nu) {
        char *m;
        if (old) {
            m = xprintf("%s: reload failed, version %d keeps running: cannot load %s: %s", name, old->version, script,
                        err ? err : "?");
            free(old->last_error);
            old->last_error = xstrdup(m);
        } else {
            m = xprintf("%s: cannot load %s: %s", name, script, err ? err : "?");
        }
        free(err);
        ae_log(AE_LOG_ERROR, name, 0, "%s", m);
        ae_metric_inc("aengine_reload_failures_total", "Reloads or starts that failed", "unit", name, 1);
        if (cb) cb(arg, 0, m);
        free(m);
        return;
    }
    pending *p = calloc(1, sizeof *p);
    if (!p) abort();
    p->name = xstrdup(name);
    p->old = old;
    p->old_version = old ? old->version : 0;
    p->nu = nu;
    p->t0 = t0;
    p->cb = cb;
    p->arg = arg;
    if (old) nu->version = old->version + 1;
    nu->on_start_done = on_start_done;
    nu->on_start_done_arg = p;
    p->next = pendings;
    pendings = p;
    double tmo = ae_config_number("reload.start_timeout", 10);
    if (tmo > 0) {
        struct timeval tv = {(time_t)tmo, (suseconds_t)((tmo - (double)(time_t)tmo) * 1e6)};
        p->timeout_ev = evtimer_new(ae_engine_base(), on_start_timeout, p);
        evtimer_add(p->timeout_ev, &tv);
    }
    ae_unit_start(nu, 0, NULL);
}

void ae_reload_start_unit(const char *name, const char *script, lua_State *from, int config_index, size_t mem_limit,
                          long instr_budget, ae_reload_cb cb, void *arg) {
    if (ae_reload_current(name)) {
        char *m = xprintf("%s: a unit of that name is already running", name);
        if (cb) cb(arg, 0, m);
        free(m);
        return;
    }
    begin(name, script, NULL, from, config_index, mem_limit, instr_budget, cb, arg);
}

/* Reload `old` from `script` with the config at cfg_idx of `from` (or, when
 * from is NULL, a copy of the old version's config). */
static void reload_from(ae_unit *old, const char *script, lua_State *from, int cfg_idx, size_t mem, long budget,
                        ae_reload_cb cb, void *arg) {
    char *name = xstrdup(old->name);
    char *path = xstrdup(script);
    if (!from) {
        lua_rawgeti(old->L, LUA_REGISTRYINDEX, old->config_ref);
        begin(name, path, old, old->L, lua_gettop(old->L), mem, budget, cb, arg);
        if (unit_alive(old)) lua_pop(old->L, 1);
    } else {
        begin(name, path, old, from, cfg_idx, mem, budget, cb, arg);
    }
    free(name);
    free(path);
}

static int script_changed(ae_unit *u, const char *script) {
    if (strcmp(u->script, script) != 0) return 1;
    char h[17];
    if (hash_file(script, h) != 0) return 1; /* let the load report it */
    return strcmp(h, u->script_hash) != 0;
}

void ae_reload_unit(const char *name, int force, ae_reload_cb cb, void *arg) {
    ae_unit *u = ae_reload_current(name);
    if (!u) {
        char *m = pending_for(name) ? xprintf("%s: a reload or start of this unit is already in progress", name)
                                    : xprintf("%s: no such unit is running", name);
        if (cb) cb(arg, 0, m);
        free(m);
        return;
    }
    if (strncmp(u->script, "module:", 7) == 0) {
        char *m = xprintf("%s: a built-in runner cannot be reloaded", name);
        if (cb) cb(arg, 0, m);
        free(m);
        return;
    }
    if (!force && !script_changed(u, u->script)) {
        char *m = xprintf("%s: unchanged (version %d, hash %s)", name, u->version, u->script_hash);
        if (cb) cb(arg, 1, m);
        free(m);
        return;
    }
    reload_from(u, u->script, NULL, 0, u->mem_limit, u->instr_budget, cb, arg);
}

int ae_reload_stop_unit(const char *name) {
    ae_unit *u = ae_reload_current(name);
    if (!u) return -1;
    ae_log(AE_LOG_INFO, name, 0, "stopping (version %d)", u->version);
    ae_unit_drain(u);
    return 0;
}

/* ----------------------------------------------------- config-managed */

static char *config_path;

/* Units the config file started: name -> fingerprint of its entry. */
typedef struct managed {
    char *name;
    char fp[17];
    struct managed *next;
} managed;
static managed *managed_units;

static managed *managed_find(const char *name) {
    for (managed *m = managed_units; m; m = m->next)
        if (strcmp(m->name, name) == 0) return m;
    return NULL;
}

static void managed_set(const char *name, const char *fp) {
    managed *m = managed_find(name);
    if (!m) {
        m = calloc(1, sizeof *m);
        if (!m) abort();
        m->name = xstrdup(name);
        m->next = managed_units;
        managed_units = m;
    }
    snprintf(m->fp, sizeof m->fp, "%s", fp);
}

static void managed_del(const char *name) {
    for (managed **pp = &managed_units; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            managed *m = *pp;
            *pp = m->next;
            free(m->name);
            free(m);
            return;
        }
    }
}

static void managed_free_all(void) {
    while (managed_units)
        managed_del(managed_units->name);
    free(config_path);
    config_path = NULL;
}

/* Canonical text of a config entry (keys sorted), hashed. */
static const char SERIALIZE_SRC[] =
    "local function ser(v, depth, out)\n"
    "  local t = type(v)\n"
    "  if t ~= 'table' then out[#out + 1] = t .. ':' .. tostring(v) return end\n"
    "  if depth > 32 then out[#out + 1] = '{...}' return end\n"
    "  local keys = {}\n"
    "  for k in pairs(v) do keys[#keys + 1] = k end\n"
    "  table.sort(keys, function(a, b)\n"
    "    local ta, tb = type(a), type(b)\n"
    "    if ta ~= tb then return ta < tb end\n"
    "    if ta == 'number' or ta == 'string' then return a < b end\n"
    "    return tostring(a) < tostring(b)\n"
    "  end)\n"
    "  out[#out + 1] = '{'\n"
    "  for _, k in ipairs(keys) do\n"
    "    ser(k, depth + 1, out) out[#out + 1] = '=' ser(v[k], depth + 1, out) out[#out + 1] = ','\n"
    "  end\n"
    "  out[#out + 1] = '}'\n"
    "end\n"
    "local out = {}\n"
    "ser(..., 0, out)\n"
    "return table.concat(out)\n";

static void fingerprint(lua_State *C, int idx, char out[17]) {
    idx = lua_absindex(C, idx);
    uint64_t h = 1469598103934665603ULL;
    if (luaL_loadbuffer(C, SERIALIZE_SRC, sizeof SERIALIZE_SRC - 1, "=[fingerprint]") == LUA_OK) {
        lua_pushvalue(C, idx);
        if (lua_pcall(C, 1, 1, 0) == LUA_OK) {
            size_t n;
            const char *s = lua_tolstring(C, -1, &n);
            if (s) h = fnv_bytes(h, s, n);
        }
    }
    lua_pop(C, 1);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static char *name_from_path(const char *path) {
    const char *b = strrchr(path, '/');
    char *n = xstrdup(b ? b + 1 : path);
    char *dot = strrchr(n, '.');
    if (dot && strcmp(dot, ".lua") == 0) *dot = '\0';
    return n;
}

/* One entry of the config's `units`, read from the table at index t of C. */
typedef struct {
    int enabled;
    const char *script;
    char *name;
    size_t mem;
    long budget;
    int cfg_idx; /* stack index of its config table in C (may be nil) */
    char fp[17];
} entry;

/* Pushes 6 values on C (keep them until the entry is no longer used). */
static void read_entry(lua_State *C, int t, entry *e) {
    lua_getfield(C, t, "enabled");
    e->enabled = lua_isnil(C, -1) || lua_toboolean(C, -1);
    lua_getfield(C, t, "script");
    lua_getfield(C, t, "name");
    lua_getfield(C, t, "memory_limit_mb");
    lua_getfield(C, t, "instruction_budget");
    lua_getfield(C, t, "config");
    e->script = lua_type(C, t + 2) == LUA_TSTRING ? lua_tostring(C, t + 2) : NULL;
    e->name = NULL;
    if (e->script) e->name = lua_isstring(C, t + 3) ? xstrdup(lua_tostring(C, t + 3)) : name_from_path(e->script);
    e->mem = lua_isnumber(C, t + 4) ? (size_t)(lua_tonumber(C, t + 4) * 1048576.0) : ae_reload_default_mem_limit();
    e->budget = lua_isnumber(C, t + 5) ? (long)lua_tonumber(C, t + 5) : ae_reload_default_budget();
    e->cfg_idx = t + 6;
    fingerprint(C, t, e->fp);
}

/* ---------------------------------------------------------- reload all */

typedef struct batch {
    int pending;
    int failed;
    ae_strbuf text; /* one line per unit */
    ae_reload_cb cb;
    void *arg;
} batch;

static void batch_add(batch *b, const char *line) {
    ae_strbuf_add(&b->text, line);
    ae_strbuf_addn(&b->text, "\n", 1);
}

static void batch_release(batch *b) {
    if (--b->pending > 0) return;
    if (!b->text.s) batch_add(b, "no units");
    if (b->text.len && b->text.s[b->text.len - 1] == '\n') b->text.s[--b->text.len] = '\0';
    AE_LOG_ENGINE(b->failed ? AE_LOG_WARNING : AE_LOG_INFO, "reload done%s", b->failed ? " with failures" : "");
    if (b->cb) b->cb(b->arg, !b->failed, b->text.s);
    free(b->text.s);
    free(b);
}

typedef struct {
    batch *b;
    char *name;
    char fp[17];
    int managed; /* record the fingerprint on success */
} batch_op;

static void batch_op_done(void *arg, int ok, const char *message) {
    batch_op *op = arg;
    batch_add(op->b, message);
    if (!ok) op->b->failed++;
    if (op->managed) {
        if (ok)
            managed_set(op->name, op->fp);
        else if (!ae_reload_current(op->name))
            managed_del(op->name); /* a new unit that did not start: retried next time */
    }
    batch_release(op->b);
    free(op->name);
    free(op);
}

static batch_op *new_op(batch *b, const char *name, const char *fp, int is_managed) {
    batch_op *op = calloc(1, sizeof *op);
    if (!op) abort();
    op->b = b;
    op->name = xstrdup(name);
    if (fp) snprintf(op->fp, sizeof op->fp, "%s", fp);
    op->managed = is_managed;
    b->pending++;
    return op;
}

typedef struct seen {
    char *name;
    struct seen *next;
} seen;

static int seen_has(seen *s, const char *name) {
    for (; s; s = s->next)
        if (strcmp(s->name, name) == 0) return 1;
    return 0;
}

void ae_reload_all(ae_reload_cb cb, void *arg) {
    batch *b = calloc(1, sizeof *b);
    if (!b) abort();
    b->cb = cb;
    b->arg = arg;
    b->pending = 1; /* released at the end of this function */
    seen *names = NULL;
    if (config_path) {
        char *err = NULL;
        if (ae_config_load(config_path, &err) != 0) {
            char *m = xprintf("config %s: %s; nothing reloaded", config_path, err ? err : "?");
            AE_LOG_ENGINE(AE_LOG_ERROR, "reload: %s", m);
            ae_metric_inc("aengine_reload_failures_total", "Reloads or starts that failed", "unit", "engine", 1);
            free(err);
            batch_add(b, m);
            free(m);
            b->failed++;
            batch_release(b);
            return;
        }
        lua_State *C = ae_config_state();
        if (ae_config_push_path("units") && lua_istable(C, -1)) {
            int list = lua_gettop(C);
            int n = (int)lua_rawlen(C, list);
            for (int i = 1; i <= n; i++) {
                lua_rawgeti(C, list, i);
                int t = lua_gettop(C);
                if (!lua_istable(C, t)) {
                    lua_settop(C, t - 1);
                    continue;
                }
                entry e;
                read_entry(C, t, &e);
                if (!e.script) {
                    char *m = xprintf("config units[%d] has no script; skipped", i);
                    AE_LOG_ENGINE(AE_LOG_ERROR, "reload: %s", m);
                    batch_add(b, m);
                    b->failed++;
                    free(m);
                } else if (e.enabled && !seen_has(names, e.name)) {
                    seen *s = malloc(sizeof *s);
                    if (!s) abort();
                    s->name = xstrdup(e.name);
                    s->next = names;
                    names = s;
                    ae_unit *cur = ae_reload_current(e.name);
                    managed *m = managed_find(e.name);
                    if (!cur) {
                        ae_reload_start_unit(e.name, e.script, C, e.cfg_idx, e.mem, e.budget, batch_op_done,
                                             new_op(b, e.name, e.fp, 1));
                    } else if (script_changed(cur, e.script) || !m || strcmp(m->fp, e.fp) != 0 ||
                               cur->mem_limit != e.mem || cur->instr_budget != e.budget) {
                        reload_from(cur, e.script, C, e.cfg_idx, e.mem, e.budget, batch_op_done,
                                    new_op(b, e.name, e.fp, 1));
                    } else {
                        char *msg = xprintf("%s: unchanged (version %d)", e.name, cur->version);
                        batch_add(b, msg);
                        free(msg);
                    }
                }
                free(e.name);
                lua_settop(C, t - 1);
            }
        }
        lua_settop(C, 0);
        /* units the config no longer lists (or disables) */
        for (managed *m = managed_units; m;) {
            managed *next = m->next;
            if (!seen_has(names, m->name)) {
                ae_unit *cur = ae_reload_current(m->name);
                if (cur) {
                    char *msg =
                        xprintf("%s: stopped (no longer in the config), version %d draining", m->name, cur->version);
                    ae_log(AE_LOG_INFO, m->name, 0, "%s", msg);
                    ae_unit_drain(cur);
                    batch_add(b, msg);
                    free(msg);
                }
                managed_del(m->name);
            }
            m = next;
        }
    }
    /* other units (command line, started from Lua): changed scripts only */
    for (ae_unit *u = ae_engine_units(); u; u = u->next) {
        if (u->state != AE_UNIT_RUNNING && u->state != AE_UNIT_STARTING) continue;
        if (u->replaced_by || is_pending_new(u) || seen_has(names, u->name) || managed_find(u->name)) continue;
        if (strncmp(u->script, "module:", 7) == 0) continue;
        if (pending_for(u->name)) continue;
        if (script_changed(u, u->script)) {
            /* begin() prepends the new unit to the list, behind u: no revisit */
            reload_from(u, u->script, NULL, 0, u->mem_limit, u->instr_budget, batch_op_done,
                        new_op(b, u->name, NULL, 0));
        } else {
            char *msg = xprintf("%s: unchanged (version %d)", u->name, u->version);
            batch_add(b, msg);
            free(msg);
        }
    }
    while (names) {
        seen *n = names->next;
        free(names->name);
        free(names);
        names = n;
    }
    batch_release(b);
}

/* --------------------------------------------------------------- init */

static void on_sighup(void) { ae_reload_all(NULL, NULL); }

static void reload_at_exit(void) {
    while (pendings) {
        pending *p = pendings;
        pendings = p->next;
        if (p->timeout_ev) event_free(p->timeout_ev);
        if (unit_alive(p->nu)) p->nu->on_start_done = NULL;
        /* no callback: its owner (console, a task) is gone by now */
        free(p->name);
        free(p);
    }
    managed_free_all();
}

void ae_reload_init(const char *path) {
    free(config_path);
    config_path = path ? xstrdup(path) : NULL;
    ae_engine_set_reload_handler(on_sighup);
    ae_engine_at_exit(reload_at_exit);
    if (!path) return;
    lua_State *C = ae_config_state();
    if (ae_config_push_path("units") && lua_istable(C, -1)) {
        int list = lua_gettop(C);
        int n = (int)lua_rawlen(C, list);
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(C, list, i);
            int t = lua_gettop(C);
            if (lua_istable(C, t)) {
                entry e;
                read_entry(C, t, &e);
                if (e.script && e.enabled && ae_reload_current(e.name)) managed_set(e.name, e.fp);
                free(e.name);
            }
            lua_settop(C, t - 1);
        }
    }
    lua_settop(C, 0);
}
