/* redis.c - ae.core.redis: asynchronous Redis client (hiredis 0.14 on the
 * engine's libevent loop), the C half of ae.redis (core/lua/ae/redis.lua).
 *
 * Connections are shared engine-wide: one hiredis connection per distinct
 * (name, host, port, db, password). Every unit's redis.connect("main")
 * gets its own client handle (userdata) on the same connection, so commands
 * from all units are pipelined on one socket. A connection is opened lazily
 * by the first command, AUTH/SELECT are sent on every (re)connection before
 * any queued command, and a lost connection is re-established on demand
 * with exponential backoff (logged). Commands issued while the connection is
 * down are queued until it is ready again or their timeout (engine clock)
 * expires. A connection nobody holds a handle to any more is closed; the
 * rest are closed at exit.
 *
 * A command is an "op": it waits in the calling task (ae_task_wait) and is
 * completed by the reply callback, the timeout timer, or the loss of the
 * connection, whichever comes first; the others then only release memory.
 * If the task dies (unit force-closed) the op forgets it and drops the reply.
 *
 * Replies are converted to Lua inside lua_pcall on the unit's main state, so
 * a unit memory limit hit while converting a 5 MB reply is an error for the
 * command, not a panic.
 */
#define _POSIX_C_SOURCE 200809L
#include "engine.h"
#include "log.h"
#include "config.h"
#include "metrics.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CLIENT_MT "ae.core.redis.client"
#define ERROR_MT "ae.redis.error"
#define CONNECT_TIMEOUT 5.0 /* real seconds for TCP connect + AUTH/SELECT */
#define BACKOFF_MIN 0.1
#define BACKOFF_MAX 2.0
#define MAX_DEPTH 64

#define M_COMMANDS "aengine_redis_commands"
#define H_COMMANDS "Redis commands sent, per connection name"
#define M_ERRORS "aengine_redis_errors"
#define H_ERRORS "Redis command failures (error replies, timeouts, connection losses), per connection name"
#define M_CONNECTED "aengine_redis_connected"
#define H_CONNECTED "1 when the Redis connection is up, per connection name"
#define M_RECONNECTS "aengine_redis_connect_failures"
#define H_RECONNECTS "Failed Redis connection attempts, per connection name"

enum { C_DOWN, C_CONNECTING, C_HANDSHAKE, C_READY };
static const char *state_names[] = {"disconnected", "connecting", "handshake", "ready"};

typedef struct rop rop;

typedef struct rconn {
    struct rconn *next;
    char *name, *host, *password;
    int port, db;
    redisAsyncContext *ac;
    int state;
    int refs; /* client handles */
    int handshake_left;
    rop *qhead, *qtail; /* ops waiting for the connection */
    struct event *retry_ev, *connect_ev, *idle_ev;
    int failures; /* consecutive failed attempts */
    unsigned long inflight;
    unsigned long connects;
    char last_error[256];
} rconn;

typedef struct {
    int argc;
    char **argv;
    size_t *argvlen;
} rd_cmd; /* one malloc block: struct, arrays, bytes */

struct rop {
    rconn *c;
    ae_task *task; /* NULL once completed or cancelled */
    ae_unit *unit;
    ae_timer tm;
    double timeout;
    int pipeline;
    int ncmd, got, hold; /* hold: hiredis callbacks still to come */
    int results_ref;     /* pipeline: results table in the unit's registry */
    int failed;          /* pipeline: a conversion failed */
    rd_cmd **cmds;       /* while queued */
    rop *qprev, *qnext;
    int queued;
    char what[40]; /* "GET" or "pipeline of 3" */
    char fail[200];
};

typedef struct {
    rconn *c;
    char *name;
    double timeout;
} rclient;

static rconn *conns;
static int at_exit_registered;
static int exiting; /* at exit the metrics registry may already be gone */

/* ------------------------------------------------------------- helpers */

static void set_connected_metric(rconn *c) {
    if (exiting) return;
    ae_metric_set(M_CONNECTED, H_CONNECTED, "name", c->name, c->state == C_READY ? 1 : 0);
}

static void rd_cmd_free(rd_cmd *cmd) { free(cmd); }

static void op_free_cmds(rop *op) {
    if (!op->cmds) return;
    for (int i = 0; i < op->ncmd; i++)
        rd_cmd_free(op->cmds[i]);
    free(op->cmds);
    op->cmds = NULL;
}

static void dequeue(rop *op) {
    if (!op->queued) return;
    rconn *c = op->c;
    if (op->qprev)
        op->qprev->qnext = op->qnext;
    else
        c->qhead = op->qnext;
    if (op->qnext)
        op->qnext->qprev = op->qprev;
    else
        c->qtail = op->qprev;
    op->qprev = op->qnext = NULL;
    op->queued = 0;
}

static void enqueue(rop *op) {
    rconn *c = op->c;
    op->qnext = NULL;
    op->qprev = c->qtail;
    if (c->qtail)
        c->qtail->qnext = op;
    else
        c->qhead = op;
    c->qtail = op;
    op->queued = 1;
}

/* The op is finished for its task (result delivered, or task gone): stop
 * the timer, drop the results table and free it unless hiredis still holds
 * it (then the last callback frees it). */
static void op_detach(rop *op) {
    ae_timer_stop(&op->tm);
    if (op->results_ref != LUA_NOREF && op->task && op->unit->L) {
        luaL_unref(op->unit->L, LUA_REGISTRYINDEX, op->results_ref);
    }
    op->results_ref = LUA_NOREF;
    op->task = NULL;
    dequeue(op);
    op_free_cmds(op);
    if (op->hold == 0) free(op);
}

/* Wake the task with false, message and finish the op. */
static void op_fail(rop *op, const char *fmt, ...) AE_PRINTF(2, 3);
static void op_fail(rop *op, const char *fmt, ...) {
    if (!op->task) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!exiting) ae_metric_inc(M_ERRORS, H_ERRORS, "name", op->c->name, 1);
    lua_State *co = ae_task_thread(op->task);
    lua_pushboolean(co, 0);
    lua_pushstring(co, msg);
    ae_task_wake(op->task, 2);
    op_detach(op);
}

static void op_timeout(ae_timer *tm) {
    rop *op = tm->data;
    rconn *c = op->c;
    const char *why = c->state == C_READY ? "no reply" : c->last_error[0] ? c->last_error : state_names[c->state];
    ae_log(AE_LOG_WARNING, "engine", 0, "ae.redis: %s: %s timed out after %g s (%s)", c->name, op->what, op->timeout,
           why);
    op_fail(op, "ae.redis: %s: timeout after %g s waiting for %s (%s)", c->name, op->timeout, op->what, why);
}

static void op_cancel(void *data) {
    rop *op = data;
    op_detach(op);
}

/* ------------------------------------------------------ reply -> Lua */

static void push_reply(lua_State *L, redisReply *r, int depth, int top) {
    luaL_checkstack(L, 4, "ae.redis: reply too deep");
    if (depth > MAX_DEPTH) luaL_error(L, "ae.redis: reply nested deeper than %d levels", MAX_DEPTH);
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: lua_pushlstring(L, r->str, r->len); break;
    case REDIS_REPLY_INTEGER: lua_pushinteger(L, (lua_Integer)r->integer); break;
    case REDIS_REPLY_NIL:
        if (top)
            lua_pushnil(L);
        else
            lua_pushlightuserdata(L, NULL);
        break;
    case REDIS_REPLY_ERROR:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, r->str, r->len);
        lua_setfield(L, -2, "err");
        luaL_setmetatable(L, ERROR_MT);
        break;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, (int)r->elements, 0);
        for (size_t i = 0; i < r->elements; i++) {
            push_reply(L, r->element[i], depth + 1, 0);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    default: luaL_error(L, "ae.redis: unknown reply type %d", r->type);
    }
}

/* protected: (lightuserdata reply, results table or nil, index) -> value
 * (single) or nothing (stored in the table). */
static int p_convert(lua_State *L) {
    redisReply *r = lua_touserdata(L, 1);
    if (lua_istable(L, 2)) {
        push_reply(L, r, 0, 0);
        lua_rawseti(L, 2, lua_tointeger(L, 3));
        return 0;
    }
    push_reply(L, r, 0, 1);
    return 1;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
    rop *op = privdata;
    redisReply *r = reply;
    rconn *c = op->c;
    op->hold--;
    if (c->inflight) c->inflight--;
    if (!op->task) {
        if (op->hold == 0) free(op);
        return;
    }
    if (!r) {
        op_fail(op, "ae.redis: %s: connection lost before the reply to %s (%s)", c->name, op->what,
                ac && ac->err ? ac->errstr : "connection closed");
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) ae_metric_inc(M_ERRORS, H_ERRORS, "name", c->name, 1);
    lua_State *UL = op->unit->L;
    lua_State *co = ae_task_thread(op->task);
    int base = lua_gettop(UL);
    if (!op->pipeline) {
        if (r->type == REDIS_REPLY_ERROR) {
            lua_pushboolean(co, 0);
            lua_pushfstring(co, "ae.redis: %s", r->str ? r->str : "error");
            ae_task_wake(op->task, 2);
            op_detach(op);
            return;
        }
        lua_pushcfunction(UL, p_convert);
        lua_pushlightuserdata(UL, r);
        if (lua_pcall(UL, 1, 1, 0) != LUA_OK) {
            snprintf(op->fail, sizeof op->fail, "%s", lua_tostring(UL, -1) ? lua_tostring(UL, -1) : "?");
            lua_settop(UL, base);
            op_fail(op, "ae.redis: %s: cannot convert the reply to %s: %s", c->name, op->what, op->fail);
            return;
        }
        lua_pushboolean(co, 1);
        lua_xmove(UL, co, 1);
        lua_settop(UL, base);
        ae_task_wake(op->task, 2);
        op_detach(op);
        return;
    }
    op->got++;
    if (!op->failed) {
        lua_pushcfunction(UL, p_convert);
        lua_pushlightuserdata(UL, r);
        lua_rawgeti(UL, LUA_REGISTRYINDEX, op->results_ref);
        lua_pushinteger(UL, op->got);
        if (lua_pcall(UL, 3, 0, 0) != LUA_OK) {
            op->failed = 1;
            snprintf(op->fail, sizeof op->fail, "%s", lua_tostring(UL, -1) ? lua_tostring(UL, -1) : "?");
        }
        lua_settop(UL, base);
    }
    if (op->got < op->ncmd) return;
    if (op->failed) {
        op_fail(op, "ae.redis: %s: cannot convert the replies to %s: %s", c->name, op->what, op->fail);
        return;
    }
    lua_pushboolean(co, 1);
    lua_rawgeti(co, LUA_REGISTRYINDEX, op->results_ref);
    ae_task_wake(op->task, 2);
    op_detach(op);
}

/* Hand the op's commands to hiredis (connection ready). -1 when hiredis
 * refuses (context going away): the replies of the commands already handed
 * over come back NULL later and only release the op. */
static int op_send(rop *op, rd_cmd **cmds, int ncmd) {
    rconn *c = op->c;
    for (int i = 0; i < ncmd; i++) {
        if (redisAsyncCommandArgv(c->ac, on_reply, op, cmds[i]->argc, (const char **)cmds[i]->argv, cmds[i]->argvlen) !=
            REDIS_OK)
            return -1;
        op->hold++;
        c->inflight++;
    }
    return 0;
}

static void free_cmds(rd_cmd **cmds, int n) {
    for (int i = 0; i < n; i++)
        rd_cmd_free(cmds[i]);
    free(cmds);
}

/* ----------------------------------------------------------- connection */

static void conn_connect(rconn *c);

static void retry_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    rconn *c = arg;
    if (c->state == C_DOWN && c->qhead) conn_connect(c);
}

/* Fail every queued op now (non-transient failure such as a bad password). */
static void fail_queue(rconn *c, const char *reason) {
    while (c->qhead) {
        rop *op = c->qhead;
        dequeue(op);
        op_fail(op, "ae.redis: %s: %s", c->name, reason);
    }
}

/* The connection attempt or the connection failed: forget the context
 * (hiredis frees it) and retry with backoff while commands are waiting. */
static void conn_down(rconn *c, const char *reason, int was_ready) {
    c->ac = NULL;
    c->state = C_DOWN;
    c->handshake_left = 0;
    event_del(c->connect_ev);
    snprintf(c->last_error, sizeof c->last_error, "%s", reason);
    set_connected_metric(c);
    if (was_ready) {
        c->failures = 0;
        ae_log(AE_LOG_WARNING, "engine", 0, "ae.redis: %s: connection to %s:%d lost: %s", c->name, c->host, c->port,
               reason);
    } else {
        c->failures++;
        ae_metric_inc(M_RECONNECTS, H_RECONNECTS, "name", c->name, 1);
    }
    if (!c->qhead) return; /* reconnect on the next command */
    double delay = 0;
    if (c->failures > 0) {
        delay = BACKOFF_MIN * pow(2, c->failures - 1);
        if (delay > BACKOFF_MAX) delay = BACKOFF_MAX;
    }
    if (!was_ready)
        ae_log(AE_LOG_WARNING, "engine", 0,
               "ae.redis: %s: cannot connect to %s:%d (%s), attempt %d; retrying in %.1f s", c->name, c->host, c->port,
               reason, c->failures, delay);
    struct timeval tv = {(time_t)delay, (suseconds_t)((delay - (time_t)delay) * 1e6)};
    event_add(c->retry_ev, &tv);
}

static void conn_ready(rconn *c) {
    c->state = C_READY;
    c->failures = 0;
    c->last_error[0] = '\0';
    c->connects++;
    event_del(c->connect_ev);
    set_connected_metric(c);
    ae_log(c->connects > 1 ? AE_LOG_WARNING : AE_LOG_INFO, "engine", 0, "ae.redis: %s: connected to %s:%d db %d%s",
           c->name, c->host, c->port, c->db, c->connects > 1 ? " (reconnected)" : "");
    while (c->qhead && c->state == C_READY) {
        rop *op = c->qhead;
        dequeue(op);
        rd_cmd **cmds = op->cmds;
        int ncmd = op->ncmd;
        op->cmds = NULL;
        if (op_send(op, cmds, ncmd) != 0)
            op_fail(op, "ae.redis: %s: connection closing, %s not sent", c->name, op->what);
        free_cmds(cmds, ncmd);
    }
}

static void on_handshake(redisAsyncContext *ac, void *reply, void *privdata) {
    rconn *c = privdata;
    redisReply *r = reply;
    if (ac != c->ac || c->state != C_HANDSHAKE) return; /* an old context going away */
    if (!r) return;                                     /* the disconnect callback handles it */
    if (r->type == REDIS_REPLY_ERROR) {
        char reason[256];
        /* replies come in order: AUTH (when a password is set), then SELECT */
        int total = (c->password ? 1 : 0) + (c->db ? 1 : 0);
        int is_auth = c->password && c->handshake_left == total;
        if (is_auth)
            snprintf(reason, sizeof reason, "AUTH failed: %s", r->str ? r->str : "error");
        else
            snprintf(reason, sizeof reason, "SELECT %d failed: %s", c->db, r->str ? r->str : "error");
        ae_log(AE_LOG_ERROR, "engine", 0, "ae.redis: %s: %s:%d: %s", c->name, c->host, c->port, reason);
        ae_metric_inc(M_RECONNECTS, H_RECONNECTS, "name", c->name, 1);
        fail_queue(c, reason);
        redisAsyncContext *old = c->ac;
        c->ac = NULL;
        c->state = C_DOWN;
        snprintf(c->last_error, sizeof c->last_error, "%s", reason);
        event_del(c->connect_ev);
        set_connected_metric(c);
        redisAsyncDisconnect(old);
        return;
    }
    if (--c->handshake_left == 0) conn_ready(c);
}

static void on_connect(const redisAsyncContext *ac, int status) {
    rconn *c = ac->data;
    if (!c || ac != c->ac) return;
    if (status != REDIS_OK) {
        conn_down(c, ac->errstr[0] ? ac->errstr : "connect failed", 0);
        return;
    }
    if (c->state == C_CONNECTING) {
        c->state = C_HANDSHAKE;
        if (c->handshake_left == 0) conn_ready(c);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    rconn *c = ac->data;
    if (!c || ac != c->ac) return;
    conn_down(c, status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr : "connection error"),
              c->state == C_READY);
}

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    rconn *c = arg;
    if (!c->ac || c->state == C_READY) return;
    redisAsyncContext *ac = c->ac;
    char reason[64];
    snprintf(reason, sizeof reason, "connect timeout after %g s", CONNECT_TIMEOUT);
    conn_down(c, reason, 0);
    ac->data = NULL;
    redisAsyncFree(ac);
}

static void conn_connect(rconn *c) {
    event_del(c->retry_ev);
    redisAsyncContext *ac = redisAsyncConnect(c->host, c->port);
    if (!ac) {
        c->state = C_DOWN;
        conn_down(c, "out of memory", 0);
        return;
    }
    if (ac->err) {
        char reason[256];
        snprintf(reason, sizeof reason, "%s", ac->errstr);
        redisAsyncFree(ac);
        conn_down(c, reason, 0);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->state = C_CONNECTING;
    redisLibeventAttach(ac, ae_engine_base());
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->handshake_left = 0;
    if (c->password) {
        const char *argv[] = {"AUTH", c->password};
        size_t lens[] = {4, strlen(c->password)};
        redisAsyncCommandArgv(ac, on_handshake, c, 2, argv, lens);
        c->handshake_left++;
    }
    if (c->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", c->db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        redisAsyncCommandArgv(ac, on_handshake, c, 2, argv, lens);
        c->handshake_left++;
    }
    struct timeval tv = {(time_t)CONNECT_TIMEOUT, 0};
    event_add(c->connect_ev, &tv);
}

static void conn_free(rconn *c) {
    for (rconn **pp = &conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    fail_queue(c, "connection closed");
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac); /* pending callbacks run with NULL replies */
    }
    c->state = C_DOWN;
    set_connected_metric(c);
    event_free(c->retry_ev);
    event_free(c->connect_ev);
    event_free(c->idle_ev);
    free(c->name);
    free(c->host);
    free(c->password);
    free(c);
}

static void idle_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    rconn *c = arg;
    if (c->refs == 0 && !c->qhead) {
        ae_log(AE_LOG_DEBUG, "engine", 0, "ae.redis: %s: no client left, closing the connection", c->name);
        conn_free(c);
    }
}

static void redis_at_exit(void) {
    exiting = 1;
    ae_status_provider_remove("redis");
    while (conns)
        conn_free(conns);
}

/* /_ready: {ok=, connections = {{name=, address=, state=, last_error=}...}}.
 * Not ok while a connection that has commands waiting cannot connect, or
 * whose last attempt failed. Idle connections not yet opened are fine. */
static void redis_status(lua_State *L, void *arg) {
    (void)arg;
    int ok = 1, i = 0;
    lua_newtable(L);
    lua_newtable(L);
    for (rconn *c = conns; c; c = c->next) {
        if (c->state != C_READY && (c->failures > 0 || c->qhead)) ok = 0;
        lua_createtable(L, 0, 4);
        lua_pushstring(L, c->name);
        lua_setfield(L, -2, "name");
        lua_pushfstring(L, "%s:%d/%d", c->host, c->port, c->db);
        lua_setfield(L, -2, "address");
        lua_pushstring(L, state_names[c->state]);
        lua_setfield(L, -2, "state");
        if (c->last_error[0]) {
            lua_pushstring(L, c->last_error);
            lua_setfield(L, -2, "last_error");
        }
        lua_rawseti(L, -2, ++i);
    }
    lua_setfield(L, -2, "connections");
    lua_pushboolean(L, ok);
    lua_setfield(L, -2, "ok");
}

static int streq(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

static rconn *conn_get(const char *name, const char *host, int port, int db, const char *password) {
    for (rconn *c = conns; c; c = c->next)
        if (streq(c->name, name) && streq(c->host, host) && c->port == port && c->db == db &&
            streq(c->password, password))
            return c;
    rconn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->name = strdup(name);
    c->host = strdup(host);
    c->password = password ? strdup(password) : NULL;
    c->port = port;
    c->db = db;
    c->retry_ev = evtimer_new(ae_engine_base(), retry_cb, c);
    c->connect_ev = evtimer_new(ae_engine_base(), connect_timeout_cb, c);
    c->idle_ev = evtimer_new(ae_engine_base(), idle_cb, c);
    if (!c->name || !c->host || (password && !c->password) || !c->retry_ev || !c->connect_ev || !c->idle_ev) {
        if (c->retry_ev) event_free(c->retry_ev);
        if (c->connect_ev) event_free(c->connect_ev);
        if (c->idle_ev) event_free(c->idle_ev);
        free(c->name);
        free(c->host);
        free(c->password);
        free(c);
        return NULL;
    }
    c->next = conns;
    conns = c;
    if (!at_exit_registered) {
        at_exit_registered = 1;
        ae_engine_at_exit(redis_at_exit);
        ae_status_provider("redis", redis_status, NULL);
    }
    set_connected_metric(c);
    return c;
}

/* ------------------------------------------------------------- Lua API */

/* client(name, host, port, db, password|nil, timeout) -> client */
static int l_client(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    const char *host = luaL_checkstring(L, 2);
    lua_Integer port = luaL_checkinteger(L, 3);
    lua_Integer db = luaL_checkinteger(L, 4);
    const char *password = luaL_optstring(L, 5, NULL);
    double timeout = luaL_checknumber(L, 6);
    if (port < 1 || port > 65535) return luaL_error(L, "ae.redis: %s: port %d out of range", name, (int)port);
    if (db < 0 || db > 100000) return luaL_error(L, "ae.redis: %s: bad db number %d", name, (int)db);
    if (!(timeout > 0)) return luaL_error(L, "ae.redis: %s: timeout must be a positive number of seconds", name);
    if (password && !*password) password = NULL;
    if (password) ae_log_secret(password);
    rclient *cl = lua_newuserdatauv(L, sizeof *cl, 0);
    memset(cl, 0, sizeof *cl);
    luaL_setmetatable(L, CLIENT_MT);
    cl->name = strdup(name);
    cl->c = conn_get(name, host, (int)port, (int)db, password);
    if (!cl->c || !cl->name) return luaL_error(L, "ae.redis: out of memory");
    cl->c->refs++;
    cl->timeout = timeout;
    return 1;
}

static rclient *check_client(lua_State *L, int i) {
    rclient *cl = luaL_checkudata(L, i, CLIENT_MT);
    if (!cl->c) luaL_error(L, "ae.redis: client is closed");
    return cl;
}

static int l_client_gc(lua_State *L) {
    rclient *cl = luaL_checkudata(L, 1, CLIENT_MT);
    if (cl->c) {
        rconn *c = cl->c;
        cl->c = NULL;
        /* never free a connection from here (a GC step may run inside one of
         * its callbacks): look again from the loop */
        if (--c->refs == 0) {
            struct timeval tv = {0, 0};
            event_add(c->idle_ev, &tv);
        }
    }
    free(cl->name);
    cl->name = NULL;
    return 0;
}

static const char *forbidden[] = {"SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "MONITOR", "SELECT",
                                  "AUTH",      "QUIT",       NULL};
static const char *pipeline_only[] = {"MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", NULL};

/* Check the values at [first, last] of L as one command; raises on bad
 * input (before anything is allocated). */
static void check_cmd(lua_State *L, int first, int last, const char *where, int in_pipeline) {
    if (last < first) luaL_error(L, "ae.redis: %s: no command name", where);
    for (int i = first; i <= last; i++) {
        int t = lua_type(L, i);
        if (t == LUA_TNUMBER && !lua_isinteger(L, i) && isnan(lua_tonumber(L, i)))
            luaL_error(L, "ae.redis: %s: argument #%d is NaN", where, i - first + 1);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            luaL_error(L, "ae.redis: %s: argument #%d is a %s (strings and numbers only)", where, i - first + 1,
                       luaL_typename(L, i));
    }
    if (lua_type(L, first) != LUA_TSTRING || lua_rawlen(L, first) == 0)
        luaL_error(L, "ae.redis: %s: the command name must be a non-empty string", where);
    size_t len = lua_rawlen(L, first);
    const char *name = lua_tostring(L, first);
    char upper[32];
    if (len >= sizeof upper) return;
    for (size_t i = 0; i <= len; i++)
        upper[i] = (char)((name[i] >= 'a' && name[i] <= 'z') ? name[i] - 32 : name[i]);
    for (int i = 0; forbidden[i]; i++)
        if (strcmp(upper, forbidden[i]) == 0)
            luaL_error(L,
                       "ae.redis: %s: %s is not supported on a shared connection (set db/password in the connection "
                       "config instead of SELECT/AUTH; no pub/sub)",
                       where, upper);
    if (!in_pipeline)
        for (int i = 0; pipeline_only[i]; i++)
            if (strcmp(upper, pipeline_only[i]) == 0)
                luaL_error(L,
                           "ae.redis: %s: %s is only allowed inside r:pipeline (other tasks' commands share the "
                           "connection)",
                           where, upper);
}

/* Copy the (checked) command at [first, last] of L; NULL when out of memory. */
static rd_cmd *build_cmd(lua_State *L, int first, int last) {
    int argc = last - first + 1;
    size_t total = 0;
    for (int i = first; i <= last; i++)
        total += lua_type(L, i) == LUA_TSTRING ? lua_rawlen(L, i) + 1 : 32;
    size_t head = sizeof(rd_cmd) + (size_t)argc * (sizeof(char *) + sizeof(size_t));
    rd_cmd *cmd = malloc(head + total);
    if (!cmd) return NULL;
    cmd->argc = argc;
    cmd->argv = (char **)(cmd + 1);
    cmd->argvlen = (size_t *)(cmd->argv + argc);
    char *p = (char *)cmd + head;
    for (int i = first; i <= last; i++) {
        int k = i - first;
        size_t n;
        if (lua_type(L, i) == LUA_TSTRING) {
            const char *s = lua_tolstring(L, i, &n);
            memcpy(p, s, n);
        } else if (lua_isinteger(L, i)) {
            n = (size_t)snprintf(p, 32, "%lld", (long long)lua_tointeger(L, i));
        } else {
            n = (size_t)snprintf(p, 32, "%.17g", lua_tonumber(L, i));
        }
        p[n] = '\0';
        cmd->argv[k] = p;
        cmd->argvlen[k] = n;
        p += n + 1;
    }
    return cmd;
}

/* Start an op for the running task and wait. cmds: owned by the op. */
static int op_start(lua_State *L, rclient *cl, rd_cmd **cmds, int ncmd, int pipeline) {
    ae_task *t = ae_task_check(L);
    rconn *c = cl->c;
    int results_ref = LUA_NOREF;
    if (pipeline) {
        lua_createtable(L, ncmd, 0); /* may raise: nothing allocated yet but cmds */
        results_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    rop *op = calloc(1, sizeof *op);
    if (!op) {
        free_cmds(cmds, ncmd);
        luaL_unref(L, LUA_REGISTRYINDEX, results_ref);
        return luaL_error(L, "ae.redis: out of memory");
    }
    op->c = c;
    op->task = t;
    op->unit = ae_task_unit(t);
    op->timeout = cl->timeout;
    op->pipeline = pipeline;
    op->ncmd = ncmd;
    op->results_ref = results_ref;
    if (pipeline) {
        snprintf(op->what, sizeof op->what, "pipeline of %d", ncmd);
    } else {
        snprintf(op->what, sizeof op->what, "%.*s", (int)(cmds[0]->argvlen[0] < 30 ? cmds[0]->argvlen[0] : 30),
                 cmds[0]->argv[0]);
        for (char *s = op->what; *s; s++)
            if (*s >= 'a' && *s <= 'z') *s = (char)(*s - 32);
    }
    ae_metric_inc(M_COMMANDS, H_COMMANDS, "name", c->name, ncmd);
    ae_timer_init(&op->tm, op_timeout, op);
    if (c->state == C_READY) {
        int rc = op_send(op, cmds, ncmd);
        free_cmds(cmds, ncmd);
        if (rc != 0) {
            char what[40];
            snprintf(what, sizeof what, "%s", op->what);
            ae_metric_inc(M_ERRORS, H_ERRORS, "name", c->name, 1);
            op_detach(op); /* task still running: nothing to wake */
            lua_pushboolean(L, 0);
            lua_pushfstring(L, "ae.redis: %s: connection closing, %s not sent", c->name, what);
            return 2;
        }
    } else {
        op->cmds = cmds;
        enqueue(op);
        if (c->state == C_DOWN && !event_pending(c->retry_ev, EV_TIMEOUT, NULL)) conn_connect(c);
    }
    ae_timer_start(&op->tm, ae_clock_now() + op->timeout);
    ae_task_set_cancel(t, op_cancel, op);
    return ae_task_wait(L, 1);
}

/* call(client, cmd, args...) -> true, value | false, message */
static int l_call(lua_State *L) {
    rclient *cl = check_client(L, 1);
    ae_task_check(L);
    int top = lua_gettop(L);
    check_cmd(L, 2, top, "call", 0);
    rd_cmd **cmds = malloc(sizeof *cmds);
    rd_cmd *cmd = cmds ? build_cmd(L, 2, top) : NULL;
    if (!cmd) {
        free(cmds);
        return luaL_error(L, "ae.redis: out of memory");
    }
    cmds[0] = cmd;
    return op_start(L, cl, cmds, 1, 0);
}

/* pipeline(client, {{cmd, args...}, ...}) -> true, results | false, message */
static int l_pipeline(lua_State *L) {
    rclient *cl = check_client(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    ae_task_check(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    if (n < 1) return luaL_error(L, "ae.redis: pipeline: no commands");
    if (n > 10000000) return luaL_error(L, "ae.redis: pipeline: too many commands (%d)", (int)n);
    lua_settop(L, 2);
    /* check everything before allocating anything */
    for (lua_Integer i = 1; i <= n; i++) {
        char where[48];
        snprintf(where, sizeof where, "pipeline command #%d", (int)i);
        if (lua_rawgeti(L, 2, i) != LUA_TTABLE)
            return luaL_error(L, "ae.redis: %s is a %s, not a list", where, luaL_typename(L, -1));
        int len = (int)lua_rawlen(L, 3);
        luaL_checkstack(L, len + 8, "ae.redis: pipeline command too long");
        for (int k = 1; k <= len; k++)
            lua_rawgeti(L, 3, k);
        check_cmd(L, 4, 3 + len, where, 1);
        lua_settop(L, 2);
    }
    rd_cmd **cmds = calloc((size_t)n, sizeof *cmds);
    if (!cmds) return luaL_error(L, "ae.redis: out of memory");
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        int len = (int)lua_rawlen(L, 3);
        for (int k = 1; k <= len; k++)
            lua_rawgeti(L, 3, k);
        cmds[i - 1] = build_cmd(L, 4, 3 + len);
        lua_settop(L, 2);
        if (!cmds[i - 1]) {
            for (lua_Integer j = 0; j < i - 1; j++)
                rd_cmd_free(cmds[j]);
            free(cmds);
            return luaL_error(L, "ae.redis: out of memory");
        }
    }
    return op_start(L, cl, cmds, (int)n, 1);
}

/* config(name) -> string | table | nil: the engine config's redis.<name> */
static int l_config(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    lua_State *CL = ae_config_state();
    if (!CL) return 0;
    char path[160];
    snprintf(path, sizeof path, "redis.%s", name);
    int found = ae_config_push_path(path);
    int ty = lua_type(CL, -1);
    if (!found) {
        lua_pop(CL, 1);
        return 0;
    }
    if (ty == LUA_TSTRING) {
        lua_pushstring(L, lua_tostring(CL, -1));
    } else if (ty == LUA_TTABLE) {
        lua_newtable(L);
        lua_pushnil(CL);
        while (lua_next(CL, -2)) {
            if (lua_type(CL, -2) == LUA_TSTRING) {
                int vt = lua_type(CL, -1);
                if (vt == LUA_TSTRING)
                    lua_pushstring(L, lua_tostring(CL, -1));
                else if (vt == LUA_TNUMBER && lua_isinteger(CL, -1))
                    lua_pushinteger(L, lua_tointeger(CL, -1));
                else if (vt == LUA_TNUMBER)
                    lua_pushnumber(L, lua_tonumber(CL, -1));
                else if (vt == LUA_TBOOLEAN)
                    lua_pushboolean(L, lua_toboolean(CL, -1));
                else {
                    lua_pop(CL, 1);
                    continue;
                }
                lua_setfield(L, -2, lua_tostring(CL, -2));
            }
            lua_pop(CL, 1);
        }
    } else {
        lua_pop(CL, 1);
        return luaL_error(L, "ae.redis: config redis.%s must be a string or a table, not a %s", name,
                          lua_typename(L, ty));
    }
    lua_pop(CL, 1);
    return 1;
}

/* status() -> list of {name=, host=, port=, db=, state=, clients=, queued=,
 * inflight=, last_error=} for every connection of the engine */
static int l_status(lua_State *L) {
    lua_newtable(L);
    int i = 0;
    for (rconn *c = conns; c; c = c->next) {
        int q = 0;
        for (rop *op = c->qhead; op; op = op->qnext)
            q++;
        lua_createtable(L, 0, 9);
        lua_pushstring(L, c->name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, c->host);
        lua_setfield(L, -2, "host");
        lua_pushinteger(L, c->port);
        lua_setfield(L, -2, "port");
        lua_pushinteger(L, c->db);
        lua_setfield(L, -2, "db");
        lua_pushstring(L, state_names[c->state]);
        lua_setfield(L, -2, "state");
        lua_pushinteger(L, c->refs);
        lua_setfield(L, -2, "clients");
        lua_pushinteger(L, q);
        lua_setfield(L, -2, "queued");
        lua_pushinteger(L, (lua_Integer)c->inflight);
        lua_setfield(L, -2, "inflight");
        lua_pushinteger(L, (lua_Integer)c->connects);
        lua_setfield(L, -2, "connects");
        if (c->last_error[0]) {
            lua_pushstring(L, c->last_error);
            lua_setfield(L, -2, "last_error");
        }
        lua_rawseti(L, -2, ++i);
    }
    return 1;
}

/* client:info() -> name, timeout, state */
static int l_client_info(lua_State *L) {
    rclient *cl = check_client(L, 1);
    lua_pushstring(L, cl->name);
    lua_pushnumber(L, cl->timeout);
    lua_pushstring(L, state_names[cl->c->state]);
    return 3;
}

static int l_error_tostring(lua_State *L) {
    lua_getfield(L, 1, "err");
    lua_pushfstring(L, "ae.redis: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
    return 1;
}

int luaopen_ae_core_redis(lua_State *L) {
    if (luaL_newmetatable(L, CLIENT_MT)) {
        lua_pushcfunction(L, l_client_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, "ae.redis.client");
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    static const luaL_Reg f[] = {{"client", l_client}, {"call", l_call},     {"pipeline", l_pipeline},
                                 {"config", l_config}, {"status", l_status}, {"info", l_client_info},
                                 {NULL, NULL}};
    luaL_newlib(L, f);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    if (luaL_newmetatable(L, ERROR_MT)) {
        lua_pushcfunction(L, l_error_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "ae.redis.error");
        lua_setfield(L, -2, "__name");
    }
    lua_setfield(L, -2, "error_mt");
    return 1;
}
