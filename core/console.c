/* console.c - the operator console, server side: a Unix socket (mode 0600)
 * that `aengine console` attaches to.
 *
 * Protocol: the client sends one command per line; the engine answers each
 * with one frame "ok <len>\n<len bytes>" or "err <len>\n<len bytes>", in
 * order. Commands are read one at a time per client: a command that waits
 * (reload, eval) holds back the client's next one.
 *
 * Safety:
 *   - peers are checked with SO_PEERCRED: only the engine's own uid (or
 *     root) is served; others get an error frame and are disconnected;
 *   - an answer is capped at 64 KB (a note says it was cut); eval runs as a
 *     task of the unit, so its errors, memory cap and instruction budget are
 *     the unit's and never the engine's;
 *   - writes are non-blocking: while a client has more than 256 KB unread,
 *     its next command is not read; a client that does not read for 10 s
 *     (console.write_timeout), or lets 1 MB pile up, is dropped.
 */
#define _GNU_SOURCE
#include "config.h"
#include "engine.h"
#include "engine_internal.h"
#include "log.h"
#include "strbuf.h"
#include "metrics.h"
#include "reload.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE 65536
#define MAX_OUTPUT 65536
#define HIGH_WATER (256 * 1024)
#define HARD_LIMIT (1024 * 1024)
#define WRITE_TIMEOUT_S 10
#define MAX_CLIENTS 32
#define EVAL_TIMEOUT_S 60

/* ---------------------------------------------------------------- text */

/* ------------------------------------------------------------- clients */

typedef struct creq creq;

typedef struct client {
    struct bufferevent *bev;
    struct event *kick; /* process the next buffered command */
    uid_t uid;
    pid_t pid;
    creq *busy; /* the command in progress, or NULL */
    int paused; /* not reading: too much unread output */
    struct client *prev, *next;
} client;

/* An answer that comes later (reload, eval). */
struct creq {
    unsigned long id;
    client *c; /* NULL once the client is gone */
    struct event *timeout;
    creq *next;
};

static struct evconnlistener *listener;
static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static ino_t sock_ino;
static client *clients;
static int nclients;
static creq *reqs;
static unsigned long next_req_id = 1;
static double write_timeout = WRITE_TIMEOUT_S; /* console.write_timeout */

static void client_free(client *c, const char *why) {
    if (why) AE_LOG_ENGINE(AE_LOG_INFO, "console: client pid %d disconnected: %s", (int)c->pid, why);
    if (c->busy) c->busy->c = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        clients = c->next;
    if (c->next) c->next->prev = c->prev;
    nclients--;
    event_free(c->kick);
    bufferevent_free(c->bev);
    free(c);
}

static void send_frame(client *c, int ok, const char *body, size_t len) {
    static const char note[] = "\n... (output truncated at 64 KB)";
    struct evbuffer *out = bufferevent_get_output(c->bev);
    int cut = len > MAX_OUTPUT;
    size_t n = cut ? MAX_OUTPUT : len;
    evbuffer_add_printf(out, "%s %zu\n", ok ? "ok" : "err", n + (cut ? sizeof note - 1 : 0));
    evbuffer_add(out, body, n);
    if (cut) evbuffer_add(out, note, sizeof note - 1);
    size_t pending = evbuffer_get_length(out);
    if (pending > HARD_LIMIT) {
        ae_metric_inc("aengine_console_dropped_clients", "Console clients dropped for not reading", NULL, NULL, 1);
        client_free(c, "more than 1 MB of unread output");
        return;
    }
    if (pending > HIGH_WATER && !c->paused) {
        c->paused = 1; /* resume reading once the output drained */
        bufferevent_disable(c->bev, EV_READ);
    }
}

/* Finish the current command of c and look at the next one (later, from the
 * loop: an answer may be given from inside a task's Lua code). */
static void answer(client *c, int ok, const char *body, size_t len) { send_frame(c, ok, body, len); }

static void answer_str(client *c, int ok, const char *s) { answer(c, ok, s, strlen(s)); }

static creq *req_new(client *c) {
    creq *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->id = next_req_id++;
    r->c = c;
    r->next = reqs;
    reqs = r;
    c->busy = r;
    return r;
}

static creq *req_find(unsigned long id) {
    for (creq *r = reqs; r; r = r->next)
        if (r->id == id) return r;
    return NULL;
}

/* Deliver the answer of r and free it. */
static void req_done(creq *r, int ok, const char *body, size_t len) {
    for (creq **pp = &reqs; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    if (r->timeout) event_free(r->timeout);
    client *c = r->c;
    free(r);
    if (!c) return;
    c->busy = NULL;
    answer(c, ok, body, len);
    if (c->bev) event_active(c->kick, EV_TIMEOUT, 0);
}

static void req_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    creq *r = arg;
    event_free(r->timeout);
    r->timeout = NULL;
    const char *m = "no answer after 60 s (the task may still be running; see `tasks`)";
    req_done(r, 0, m, strlen(m));
}

static void req_arm_timeout(creq *r, int seconds) {
    struct timeval tv = {seconds, 0};
    r->timeout = evtimer_new(ae_engine_base(), req_timeout, r);
    evtimer_add(r->timeout, &tv);
}

/* -------------------------------------------------------------- helpers */

static const char *unit_state_name(ae_unit_state s) {
    switch (s) {
    case AE_UNIT_STARTING: return "starting";
    case AE_UNIT_RUNNING: return "running";
    case AE_UNIT_DRAINING: return "draining";
    case AE_UNIT_STOPPED: return "stopped";
    default: return "failed";
    }
}

static void fmt_bytes(char *buf, size_t n, size_t v) {
    if (v >= 10 * 1048576)
        snprintf(buf, n, "%.1f MB", (double)v / 1048576.0);
    else
        snprintf(buf, n, "%.1f KB", (double)v / 1024.0);
}

static void fmt_time(char *buf, size_t n, double t) {
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The units a command applies to: the named one (live version), or every
 * unit that is not stopped. When a name was given and not found, answers
 * "no unit" to the client and returns 0. */
static int for_units(client *c, const char *name, ae_unit **list, int max, int *n) {
    *n = 0;
    if (name && *name) {
        ae_unit *u = ae_reload_current(name);
        if (!u) u = ae_engine_find_unit(name);
        if (!u) {
            char m[256];
            snprintf(m, sizeof m, "no unit '%s'", name);
            answer_str(c, 0, m);
            return 0;
        }
        list[(*n)++] = u;
        return 1;
    }
    for (ae_unit *u = ae_engine_units(); u && *n < max; u = u->next)
        if (u->state != AE_UNIT_STOPPED) list[(*n)++] = u;
    return 1;
}

/* -------------------------------------------------------------- commands */

static const char HELP[] =
    "commands:\n"
    "  help                    this text\n"
    "  units                   units: state, version, script hash, memory, tasks, errors\n"
    "  tasks [UNIT]            live tasks (id, name, state, waiting on, age)\n"
    "  timers [UNIT]           scheduled jobs (ae.timer): next run, runs, skips, errors\n"
    "  subs [UNIT]             what brings work in: subscriptions, routes, timers\n"
    "  run UNIT JOB            run a scheduled job now\n"
    "  reload [-f] [UNIT]      reload changed scripts (all, or one unit; -f: even if unchanged)\n"
    "  eval UNIT LUA           evaluate Lua in a task of the unit; results pretty-printed\n"
    "  log level [LEVEL]       show or set the log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)\n"
    "  metrics                 the Prometheus metrics, as /metrics shows them\n"
    "  quit                    leave the console (client side)";

static void cmd_units(client *c) {
    ae_strbuf b = {0};
    ae_strbuf_printf(&b, "%-28s %-9s %4s %-16s %10s %6s %7s\n", "UNIT", "STATE", "VER", "HASH", "MEMORY", "TASKS",
                     "ERRORS");
    for (ae_unit *u = ae_engine_units(); u; u = u->next) {
        if (u->state == AE_UNIT_STOPPED) continue;
        char mem[32];
        fmt_bytes(mem, sizeof mem, u->mem_used);
        ae_strbuf_printf(&b, "%-28s %-9s %4d %-16s %10s %6d %7lu\n", u->name, unit_state_name(u->state), u->version,
                         u->script_hash, mem, u->ntasks, u->task_errors);
        if (u->last_error) ae_strbuf_printf(&b, "  last error: %s\n", u->last_error);
    }
    answer(c, 1, ae_strbuf_str(&b), b.len);
    free(b.s);
}

typedef struct {
    ae_strbuf *b;
    const char *unit;
} task_row;

static void add_task_row(const ae_task_info *t, void *ud) {
    task_row *row = ud;
    ae_strbuf_printf(row->b, "%-24s %8lld %-32s %-8s %-9s %8.1fs\n", row->unit, (long long)t->id, t->name, t->state,
                     t->wait, t->age);
}

static void cmd_tasks(client *c, const char *name) {
    ae_unit *list[256];
    int n;
    if (!for_units(c, name, list, 256, &n)) return;
    ae_strbuf b = {0};
    ae_strbuf_printf(&b, "%-24s %8s %-32s %-8s %-9s %9s\n", "UNIT", "ID", "TASK", "STATE", "WAITING", "AGE");
    for (int i = 0; i < n; i++) {
        task_row row = {&b, list[i]->name};
        ae_task_each(list[i], add_task_row, &row);
    }
    answer(c, 1, ae_strbuf_str(&b), b.len);
    free(b.s);
}

/* Calls require("ae.timer").<fn>(arg) in u's main state when the unit loaded
 * ae.timer (pure Lua, never waits). Leaves results on the stack; returns the
 * count, or -1 (message on the stack), or 0 when ae.timer is not loaded. */
static int timer_call(ae_unit *u, const char *fn, const char *arg, int nres) {
    lua_State *L = u->L;
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "ae.timer");
    lua_remove(L, -2);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    int nargs = 0;
    if (arg) {
        lua_pushstring(L, arg);
        nargs = 1;
    }
    if (lua_pcall(L, nargs, nres, 0) != LUA_OK) return -1;
    return nres;
}

static void cmd_timers(client *c, const char *name) {
    ae_unit *list[256];
    int n;
    if (!for_units(c, name, list, 256, &n)) return;
    ae_strbuf b = {0};
    ae_strbuf_printf(&b, "%-24s %-28s %-6s %-12s %-21s %6s %6s %6s %s\n", "UNIT", "JOB", "KIND", "EVERY/CRON",
                     "NEXT RUN", "RUNS", "SKIPS", "ERRORS", "STATE");
    double now = ae_clock_now();
    for (int i = 0; i < n; i++) {
        ae_unit *u = list[i];
        if (!u->L || u->state == AE_UNIT_STOPPED) continue;
        lua_State *L = u->L;
        int top = lua_gettop(L);
        int r = timer_call(u, "jobs", NULL, 1);
        if (r < 0) {
            ae_strbuf_printf(&b, "%-24s (cannot list jobs: %s)\n", u->name, lua_tostring(L, -1));
        } else if (r > 0 && lua_istable(L, -1)) {
            lua_Integer k = (lua_Integer)lua_rawlen(L, -1);
            for (lua_Integer j = 1; j <= k; j++) {
                lua_rawgeti(L, -1, j);
                int t = lua_gettop(L);
                lua_getfield(L, t, "name");
                lua_getfield(L, t, "kind");
                lua_getfield(L, t, "interval");
                lua_getfield(L, t, "expr");
                lua_getfield(L, t, "next_run");
                lua_getfield(L, t, "runs");
                lua_getfield(L, t, "skipped");
                lua_getfield(L, t, "errors");
                lua_getfield(L, t, "running");
                char sched[64], next[64];
                if (lua_isnumber(L, t + 3))
                    snprintf(sched, sizeof sched, "%gs", lua_tonumber(L, t + 3));
                else
                    snprintf(sched, sizeof sched, "%s", lua_isstring(L, t + 4) ? lua_tostring(L, t + 4) : "-");
                if (lua_isnumber(L, t + 5)) {
                    char iso[32];
                    fmt_time(iso, sizeof iso, lua_tonumber(L, t + 5));
                    snprintf(next, sizeof next, "%s", iso);
                    ae_strbuf_printf(&b, "%-24s %-28s %-6s %-12s %-21s %6lld %6lld %6lld %s (in %.1fs)\n", u->name,
                                     lua_tostring(L, t + 1), lua_tostring(L, t + 2), sched, next,
                                     (long long)lua_tointeger(L, t + 6), (long long)lua_tointeger(L, t + 7),
                                     (long long)lua_tointeger(L, t + 8), lua_toboolean(L, t + 9) ? "running" : "idle",
                                     lua_tonumber(L, t + 5) - now);
                } else {
                    ae_strbuf_printf(&b, "%-24s %-28s %-6s %-12s %-21s %6lld %6lld %6lld %s\n", u->name,
                                     lua_tostring(L, t + 1), lua_tostring(L, t + 2), sched, "-",
                                     (long long)lua_tointeger(L, t + 6), (long long)lua_tointeger(L, t + 7),
                                     (long long)lua_tointeger(L, t + 8), lua_toboolean(L, t + 9) ? "running" : "idle");
                }
                lua_settop(L, t - 1);
            }
        }
        lua_settop(L, top);
    }
    answer(c, 1, ae_strbuf_str(&b), b.len);
    free(b.s);
}

static void cmd_subs(client *c, const char *name) {
    ae_unit *list[256];
    int n;
    if (!for_units(c, name, list, 256, &n)) return;
    ae_strbuf b = {0};
    ae_strbuf_printf(&b, "%-24s %4s %-13s %s\n", "UNIT", "VER", "KIND", "WHAT");
    for (int i = 0; i < n; i++) {
        ae_unit *u = list[i];
        if (!u->L) continue;
        for (ae_resource *r = u->resources.next; r && r != &u->resources; r = r->next) {
            const char *what = "";
            luaL_Buffer lb;
            int described = 0;
            if (r->describe && lua_checkstack(u->L, 4)) {
                luaL_buffinit(u->L, &lb);
                r->describe(r, &lb);
                luaL_pushresult(&lb);
                what = lua_tostring(u->L, -1);
                described = 1;
            }
            ae_strbuf_printf(&b, "%-24s %4d %-13s %s\n", u->name, u->version, r->kind ? r->kind : "?",
                             what ? what : "");
            if (described) lua_pop(u->L, 1);
        }
    }
    answer(c, 1, ae_strbuf_str(&b), b.len);
    free(b.s);
}

static void cmd_run(client *c, const char *unit, const char *job) {
    if (!unit || !*unit || !job || !*job) {
        answer_str(c, 0, "usage: run UNIT JOB");
        return;
    }
    ae_unit *u = ae_reload_current(unit);
    char m[512];
    if (!u) {
        snprintf(m, sizeof m, "no unit '%s' is running", unit);
        answer_str(c, 0, m);
        return;
    }
    int top = lua_gettop(u->L);
    int r = timer_call(u, "run", job, 2);
    if (r == 0)
        snprintf(m, sizeof m, "unit '%s' has no scheduled jobs (it does not use ae.timer)", unit);
    else if (r < 0)
        snprintf(m, sizeof m, "run %s: %s", job, lua_tostring(u->L, -1));
    else if (!lua_toboolean(u->L, -2))
        snprintf(m, sizeof m, "%s: %s", unit, lua_tostring(u->L, -1));
    else
        snprintf(m, sizeof m, "%s: job '%s' started in a new task", unit, job);
    int ok = r > 0 && lua_toboolean(u->L, -2);
    lua_settop(u->L, top);
    if (ok) ae_log(AE_LOG_INFO, unit, 0, "console: job '%s' run now", job);
    answer_str(c, ok, m);
}

static void reload_done(void *arg, int ok, const char *message) {
    creq *r = arg;
    req_done(r, ok, message, strlen(message));
}

static void cmd_reload(client *c, char *args) {
    int force = 0;
    char *unit = NULL;
    for (char *tok = strtok(args, " \t"); tok; tok = strtok(NULL, " \t")) {
        if (strcmp(tok, "-f") == 0 || strcmp(tok, "--force") == 0)
            force = 1;
        else if (!unit)
            unit = tok;
        else {
            answer_str(c, 0, "usage: reload [-f] [UNIT]");
            return;
        }
    }
    AE_LOG_ENGINE(AE_LOG_INFO, "console: reload %s%s", force ? "-f " : "", unit ? unit : "(all)");
    creq *r = req_new(c);
    if (unit)
        ae_reload_unit(unit, force, reload_done, r);
    else
        ae_reload_all(reload_done, r);
}

/* The task body of `eval`: compiles the text (as an expression first), runs
 * it, pretty-prints the results and hands them to deliver(). */
static const char EVAL_SRC[] =
    "local code, deliver, id = ...\n"
    "local f, err = load('return ' .. code, '=console', 't')\n"
    "if not f then f, err = load(code, '=console', 't') end\n"
    "if not f then return deliver(id, false, err) end\n"
    "local res = table.pack(xpcall(f, debug.traceback))\n"
    "if not res[1] then return deliver(id, false, tostring(res[2])) end\n"
    "local LIMIT = 65600\n"
    "local out, size = {}, 0\n"
    "local function emit(s)\n"
    "  if size <= LIMIT then out[#out + 1] = s; size = size + #s end\n"
    "end\n"
    "local function key(k)\n"
    "  if type(k) == 'string' and k:match('^[%a_][%w_]*$') then return k end\n"
    "  if type(k) == 'string' then return '[' .. string.format('%q', k) .. ']' end\n"
    "  return '[' .. tostring(k) .. ']'\n"
    "end\n"
    "local function pp(v, indent, seen)\n"
    "  local t = type(v)\n"
    "  if t == 'string' then return emit(string.format('%q', v)) end\n"
    "  if t ~= 'table' then return emit(tostring(v)) end\n"
    "  if seen[v] then return emit('<cycle>') end\n"
    "  if #indent > 16 then return emit('{...}') end\n"
    "  seen[v] = true\n"
    "  local keys = {}\n"
    "  for k in pairs(v) do keys[#keys + 1] = k end\n"
    "  if #keys == 0 then seen[v] = nil return emit('{}') end\n"
    "  table.sort(keys, function(a, b)\n"
    "    local ta, tb = type(a), type(b)\n"
    "    if ta ~= tb then return ta < tb end\n"
    "    if ta == 'number' or ta == 'string' then return a < b end\n"
    "    return tostring(a) < tostring(b)\n"
    "  end)\n"
    "  local n = #v\n"
    "  emit('{\\n')\n"
    "  for _, k in ipairs(keys) do\n"
    "    if size > LIMIT then break end\n"
    "    emit(indent .. '  ')\n"
    "    if not (math.type(k) == 'integer' and k >= 1 and k <= n) then emit(key(k) .. ' = ') end\n"
    "    pp(v[k], indent .. '  ', seen)\n"
    "    emit(',\\n')\n"
    "  end\n"
    "  emit(indent .. '}')\n"
    "  seen[v] = nil\n"
    "end\n"
    "if res.n == 1 then emit('(no value)') end\n"
    "for i = 2, res.n do\n"
    "  if i > 2 then emit('\\n') end\n"
    "  pp(res[i], '', {})\n"
    "end\n"
    "return deliver(id, true, table.concat(out))\n";

/* deliver(id, ok, text): the eval task's answer (runs inside the task). */
static int l_deliver(lua_State *L) {
    unsigned long id = (unsigned long)luaL_checkinteger(L, 1);
    int ok = lua_toboolean(L, 2);
    size_t len = 0;
    const char *s = luaL_tolstring(L, 3, &len);
    creq *r = req_find(id);
    if (r) req_done(r, ok, s, len);
    return 0;
}

static void cmd_eval(client *c, char *args) {
    while (*args == ' ' || *args == '\t')
        args++;
    char *sp = strpbrk(args, " \t");
    if (!*args || !sp) {
        answer_str(c, 0, "usage: eval UNIT LUA");
        return;
    }
    *sp = '\0';
    const char *unit = args, *code = sp + 1;
    ae_unit *u = ae_reload_current(unit);
    if (!u) {
        char m[256];
        snprintf(m, sizeof m, "no unit '%s' is running", unit);
        answer_str(c, 0, m);
        return;
    }
    lua_State *L = u->L;
    if (!lua_checkstack(L, 4) || luaL_loadbuffer(L, EVAL_SRC, sizeof EVAL_SRC - 1, "=[console]") != LUA_OK) {
        const char *e = lua_gettop(L) ? lua_tostring(L, -1) : NULL;
        char m[512];
        snprintf(m, sizeof m, "eval: cannot prepare the task: %s", e ? e : "out of stack");
        if (e) lua_pop(L, 1);
        answer_str(c, 0, m);
        return;
    }
    creq *r = req_new(c);
    lua_pushstring(L, code);
    lua_pushcfunction(L, l_deliver);
    lua_pushinteger(L, (lua_Integer)r->id);
    ae_task_spawn(u, L, 3, "console eval");
    req_arm_timeout(r, EVAL_TIMEOUT_S);
    ae_log(AE_LOG_INFO, u->name, 0, "console: eval (%zu bytes)", strlen(code));
}

static void cmd_log(client *c, char *args) {
    char *what = strtok(args, " \t");
    char *lvl = strtok(NULL, " \t");
    if (!what || strcmp(what, "level") != 0) {
        answer_str(c, 0, "usage: log level [DEBUG|INFO|WARNING|ERROR|CRITICAL]");
        return;
    }
    char m[128];
    if (lvl) {
        int l = ae_log_level_from_name(lvl);
        if (l < 0) {
            snprintf(m, sizeof m, "unknown log level '%s' (DEBUG, INFO, WARNING, ERROR, CRITICAL)", lvl);
            answer_str(c, 0, m);
            return;
        }
        ae_log_set_level(l);
        AE_LOG_ENGINE(AE_LOG_WARNING, "console: log level set to %s", ae_log_level_name(l));
        snprintf(m, sizeof m, "log level: %s", ae_log_level_name(l));
    } else {
        snprintf(m, sizeof m, "log level: %s", ae_log_level_name(ae_log_level()));
    }
    answer_str(c, 1, m);
}

static void cmd_metrics(client *c) {
    size_t len = 0;
    char *text = ae_metrics_render(&len);
    if (!text) {
        answer_str(c, 0, "metrics: cannot render (out of memory)");
        return;
    }
    answer(c, 1, text, len);
    free(text);
}

/* Words for the client's tab completion: "unit NAME" and "job UNIT NAME". */
static void cmd_complete(client *c) {
    ae_strbuf b = {0};
    for (ae_unit *u = ae_engine_units(); u; u = u->next) {
        if (u->state == AE_UNIT_STOPPED || u != ae_reload_current(u->name)) continue;
        ae_strbuf_printf(&b, "unit %s\n", u->name);
        int top = lua_gettop(u->L);
        if (timer_call(u, "jobs", NULL, 1) > 0 && lua_istable(u->L, -1)) {
            lua_Integer k = (lua_Integer)lua_rawlen(u->L, -1);
            for (lua_Integer j = 1; j <= k; j++) {
                lua_rawgeti(u->L, -1, j);
                lua_getfield(u->L, -1, "name");
                if (lua_isstring(u->L, -1)) ae_strbuf_printf(&b, "job %s %s\n", u->name, lua_tostring(u->L, -1));
                lua_pop(u->L, 2);
            }
        }
        lua_settop(u->L, top);
    }
    answer(c, 1, ae_strbuf_str(&b), b.len);
    free(b.s);
}

static void dispatch(client *c, char *line) {
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
        line[--n] = '\0';
    while (*line == ' ' || *line == '\t')
        line++;
    char *rest = strpbrk(line, " \t");
    if (rest) {
        *rest++ = '\0';
        while (*rest == ' ' || *rest == '\t')
            rest++;
    } else {
        rest = line + strlen(line);
    }
    const char *cmd = line;
    if (!*cmd) {
        answer_str(c, 1, "");
    } else if (strcmp(cmd, "help") == 0 || strcmp(cmd, "?") == 0) {
        answer_str(c, 1, HELP);
    } else if (strcmp(cmd, "units") == 0) {
        cmd_units(c);
    } else if (strcmp(cmd, "tasks") == 0) {
        cmd_tasks(c, *rest ? strtok(rest, " \t") : NULL);
    } else if (strcmp(cmd, "timers") == 0) {
        cmd_timers(c, *rest ? strtok(rest, " \t") : NULL);
    } else if (strcmp(cmd, "subs") == 0) {
        cmd_subs(c, *rest ? strtok(rest, " \t") : NULL);
    } else if (strcmp(cmd, "run") == 0) {
        char *unit = strtok(rest, " \t");
        char *job = unit ? strtok(NULL, " \t") : NULL;
        cmd_run(c, unit, job);
    } else if (strcmp(cmd, "reload") == 0) {
        cmd_reload(c, rest);
    } else if (strcmp(cmd, "eval") == 0) {
        cmd_eval(c, rest);
    } else if (strcmp(cmd, "log") == 0) {
        cmd_log(c, rest);
    } else if (strcmp(cmd, "metrics") == 0) {
        cmd_metrics(c);
    } else if (strcmp(cmd, "_complete") == 0) {
        cmd_complete(c);
    } else {
        char m[200];
        snprintf(m, sizeof m, "unknown command '%.64s' (try: help)", cmd);
        answer_str(c, 0, m);
    }
}

/* Run the buffered commands of c, one at a time. */
static void process(client *c) {
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (!c->busy && !c->paused) {
        size_t len = 0;
        char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
        if (!line) {
            if (evbuffer_get_length(in) > MAX_LINE) {
                struct evbuffer *out = bufferevent_get_output(c->bev);
                evbuffer_add_printf(out, "err 35\ncommand line longer than 64 KB\n");
                client_free(c, "command line too long");
            }
            return;
        }
        if (len > MAX_LINE) {
            free(line);
            client_free(c, "command line too long");
            return;
        }
        dispatch(c, line);
        free(line);
        /* dispatch may have dropped the client (send_frame over the limit) */
        int alive = 0;
        for (client *x = clients; x; x = x->next)
            if (x == c) alive = 1;
        if (!alive) return;
    }
}

static void on_kick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    process(arg);
}

static void on_read(struct bufferevent *bev, void *arg) {
    (void)bev;
    process(arg);
}

static void on_write(struct bufferevent *bev, void *arg) {
    client *c = arg;
    if (c->paused && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        c->paused = 0;
        bufferevent_enable(bev, EV_READ);
        event_active(c->kick, EV_TIMEOUT, 0);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
    (void)bev;
    client *c = arg;
    if (what & BEV_EVENT_TIMEOUT) {
        ae_metric_inc("aengine_console_dropped_clients", "Console clients dropped for not reading", NULL, NULL, 1);
        AE_LOG_ENGINE(AE_LOG_WARNING, "console: client pid %d did not read its output for %g s; dropped", (int)c->pid,
                      write_timeout);
        client_free(c, NULL);
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        client_free(c, NULL);
    }
}

static void refuse(evutil_socket_t fd, const char *msg) {
    char buf[256];
    int n = snprintf(buf, sizeof buf, "err %zu\n%s", strlen(msg), msg);
    if (n > 0) (void)!send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    evutil_closesocket(fd);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int socklen, void *arg) {
    (void)l;
    (void)sa;
    (void)socklen;
    (void)arg;
    struct ucred cr;
    socklen_t crlen = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0) {
        AE_LOG_ENGINE(AE_LOG_WARNING, "console: cannot read the peer's credentials: %s", strerror(errno));
        refuse(fd, "permission denied");
        return;
    }
    if (cr.uid != geteuid() && cr.uid != 0) {
        ae_metric_inc("aengine_console_refused", "Console connections refused (other user)", NULL, NULL, 1);
        AE_LOG_ENGINE(AE_LOG_WARNING, "console: refused pid %d of uid %d (the engine runs as uid %d)", (int)cr.pid,
                      (int)cr.uid, (int)geteuid());
        refuse(fd, "permission denied: the console serves only the engine's own user");
        return;
    }
    if (nclients >= MAX_CLIENTS) {
        AE_LOG_ENGINE(AE_LOG_WARNING, "console: refused pid %d: %d clients already attached", (int)cr.pid, MAX_CLIENTS);
        refuse(fd, "too many console clients");
        return;
    }
    client *c = calloc(1, sizeof *c);
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    evutil_make_socket_nonblocking(fd);
    c->bev = bufferevent_socket_new(ae_engine_base(), fd, BEV_OPT_CLOSE_ON_FREE);
    c->kick = event_new(ae_engine_base(), -1, 0, on_kick, c);
    if (!c->bev || !c->kick) {
        if (c->bev) bufferevent_free(c->bev);
        if (c->kick) event_free(c->kick);
        free(c);
        evutil_closesocket(fd);
        return;
    }
    c->uid = cr.uid;
    c->pid = cr.pid;
    c->next = clients;
    if (clients) clients->prev = c;
    clients = c;
    nclients++;
    struct timeval wt = {(time_t)write_timeout, (suseconds_t)((write_timeout - (double)(time_t)write_timeout) * 1e6)};
    bufferevent_set_timeouts(c->bev, NULL, &wt);
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    AE_LOG_ENGINE(AE_LOG_DEBUG, "console: client attached (pid %d, uid %d)", (int)cr.pid, (int)cr.uid);
}

/* ------------------------------------------------------------ lifecycle */

static void console_at_exit(void) {
    while (clients)
        client_free(clients, NULL);
    while (reqs) {
        creq *r = reqs;
        reqs = r->next;
        if (r->timeout) event_free(r->timeout);
        free(r);
    }
    if (listener) {
        evconnlistener_free(listener);
        listener = NULL;
        struct stat st;
        if (sock_path[0] && stat(sock_path, &st) == 0 && st.st_ino == sock_ino) unlink(sock_path);
    }
    sock_path[0] = '\0';
}

void ae_console_default_path(char *buf, size_t n) { snprintf(buf, n, "/tmp/aengine-%d.sock", (int)getuid()); }

int ae_console_start(void) {
    char def[108];
    ae_console_default_path(def, sizeof def);
    const char *path = getenv("AE_CONSOLE_SOCKET");
    if (!path || !*path) path = ae_config_string("console.socket", def);
    int disabled = strcmp(path, "off") == 0 || strcmp(path, "none") == 0;
    lua_State *C = ae_config_state();
    if (C) {
        if (ae_config_push_path("console.enabled") && lua_isboolean(C, -1) && !lua_toboolean(C, -1)) disabled = 1;
        lua_pop(C, 1);
    }
    if (disabled) {
        AE_LOG_ENGINE(AE_LOG_INFO, "console: disabled");
        return 0;
    }
    write_timeout = ae_config_number("console.write_timeout", WRITE_TIMEOUT_S);
    if (write_timeout <= 0) write_timeout = WRITE_TIMEOUT_S;
    if (strlen(path) >= sizeof sock_path) {
        AE_LOG_ENGINE(AE_LOG_ERROR, "console: socket path too long (max %zu bytes): %s; console disabled",
                      sizeof sock_path - 1, path);
        return -1;
    }
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            AE_LOG_ENGINE(AE_LOG_ERROR, "console: %s exists and is not a socket; console disabled", path);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(probe);
            AE_LOG_ENGINE(AE_LOG_ERROR, "console: another engine listens on %s; console disabled", path);
            return -1;
        }
        if (probe >= 0) close(probe);
        unlink(path); /* stale, from an engine that died */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        AE_LOG_ENGINE(AE_LOG_ERROR, "console: socket: %s; console disabled", strerror(errno));
        return -1;
    }
    mode_t old = umask(0177); /* the socket is created 0600 */
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc != 0 || chmod(path, 0600) != 0 || listen(fd, 16) != 0) {
        AE_LOG_ENGINE(AE_LOG_ERROR, "console: cannot listen on %s: %s; console disabled", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (stat(path, &st) == 0) sock_ino = st.st_ino;
    listener = evconnlistener_new(ae_engine_base(), on_accept, NULL, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (!listener) {
        AE_LOG_ENGINE(AE_LOG_ERROR, "console: cannot listen on %s; console disabled", path);
        close(fd);
        unlink(path);
        return -1;
    }
    snprintf(sock_path, sizeof sock_path, "%s", path);
    ae_engine_at_exit(console_at_exit);
    AE_LOG_ENGINE(AE_LOG_INFO, "console: listening on %s (mode 0600)", path);
    return 0;
}
