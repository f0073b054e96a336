/* nats.c - the C half of ae.nats (module "ae.core.nats"): NATS connections on
 * nats.c 3.4, subscriptions as unit resources, and non-blocking requests over
 * one multiplexed inbox per connection, timed on the engine clock.
 *
 * Threads: nats.c drives its socket from the engine's libevent loop
 * (natsOptions_SetEventLoop): it reads and parses on the loop thread, and the
 * loop writes what it buffered at the end of the iteration that published.
 * Subscriptions are synchronous nats.c subscriptions that the loop empties
 * right after each read, so a message reaches its task with no thread hop
 * (with nats.c's own reader and delivery threads, a request/reply cost ~7
 * context switches per side). nats.c still runs a connect worker (ours), its
 * reconnect, ping-timer and async-callback threads; those only call the event
 * callbacks below (under a mutex) or ae_engine_post. Every Lua call happens on
 * the loop thread. Lifetimes are reference counted on the loop thread:
 *   - a subscription (nsub) is held by nats.c until it is unsubscribed, its
 *     drain is complete or its connection closed (sub_nats_done), by a
 *     delivery in progress, and by its Lua handle; it frees its
 *     natsSubscription when the last reference goes.
 *   - a connection (nconn) is held by its Lua handles, its subscriptions, the
 *     connect worker thread and nats.c until the closed callback arrived.
 *
 * The envelope, JSON, offload and retry policy live in ae/nats.lua.
 */
#define _POSIX_C_SOURCE 200809L
#include "config.h"
#include "engine.h"
#include "log.h"

#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <fcntl.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONN_MT "ae.nats.conn"
#define SUB_MT "ae.nats.sub"
#define PENDING_LIMIT 65536
#define MAX_SERVERS 16

#define H_IN "Messages received from NATS"
#define H_OUT "Messages published to NATS"
#define DRAIN_POLL_MS 10 /* how often a drain's completion is looked at */

typedef struct nconn nconn;

/* The connection's socket in our event loop (nats.c's natsEvLoop_* callbacks).
 * attach/detach and the read/write add/remove calls may come from nats.c's
 * threads (connect, reconnect, ping timer): they only touch this under mu. */
typedef struct nel {
    nconn *c;
    natsConnection *nc;
    pthread_mutex_t mu;
    struct event *rd, *wr; /* the socket; recreated on every (re)attach */
    struct event *flush;   /* activated when nats.c has buffered output */
    int attached, want_write, wr_added;
} nel;

struct waiter {
    ae_task *t;
    nconn *c;
    struct waiter *next, *prev;
};
typedef struct nsub nsub;
typedef struct preq preq;

enum { C_CONNECTING, C_READY, C_FAILED, C_CLOSED };
enum { S_USER, S_MUX };

struct nsub {
    int kind;
    nconn *c;
    natsSubscription *sub;
    ae_resource res; /* S_USER: resource of the unit */
    ae_unit *unit;
    int fn_ref;
    int active;  /* delivers to Lua */
    int in_nats; /* nats.c still holds it (see sub_nats_done) */
    int draining;
    int held; /* holds its draining unit open (ae_unit_hold) */
    ae_resource hold;
    char *subject, *queue;
    char task_name[64]; /* "nats <subject>", the name of each message's task */
    int refs;
    unsigned long received, dropped;
    nsub *gnext, *gprev; /* global list (exit) */
};

struct preq {
    uint64_t id;
    nconn *c;
    ae_task *task;
    ae_timer timer;
    double timeout;
    char *subject;
    preq *hnext;
};

struct nconn {
    natsConnection *nc;
    natsOptions *opts;
    nel el;
    int state;
    int refs;
    int is_default;
    int closing; /* close asked: a disconnect is expected, not news */
    char *err;
    char name[64];
    char inbox[64]; /* "_INBOX.<nuid>." */
    nsub *mux;
    uint64_t next_id;
    preq **buckets;
    size_t nbuckets, npending;
    struct waiter *waiters; /* tasks in wait() until the connect attempt ends */
    unsigned long disconnects, reconnects, slow_consumers, late_replies;
    nconn *gnext, *gprev;
};

typedef struct {
    nconn *c;
} conn_box;
typedef struct {
    nsub *s;
} sub_box;

static nconn *conns;      /* every live nconn */
static nsub *subs;        /* every live nsub */
static nconn *default_cn; /* the engine's shared connection */
static int exit_hooked;
static struct event *drain_tick; /* polls drains while ndraining > 0 */
static int ndraining;

/* ------------------------------------------------------------ lifetimes */

static void conn_release(nconn *c);

static void sub_free(nsub *s) {
    if (s->gprev)
        s->gprev->gnext = s->gnext;
    else if (subs == s)
        subs = s->gnext;
    if (s->gnext) s->gnext->gprev = s->gprev;
    if (s->sub) natsSubscription_Destroy(s->sub);
    free(s->subject);
    free(s->queue);
    nconn *c = s->c;
    free(s);
    if (c) conn_release(c);
}

static void sub_release(nsub *s) {
    if (--s->refs == 0) sub_free(s);
}

static void conn_free(nconn *c) {
    if (c->gprev)
        c->gprev->gnext = c->gnext;
    else if (conns == c)
        conns = c->gnext;
    if (c->gnext) c->gnext->gprev = c->gprev;
    if (default_cn == c) default_cn = NULL;
    if (c->nc) natsConnection_Destroy(c->nc);
    if (c->opts) natsOptions_Destroy(c->opts);
    if (c->el.rd) event_free(c->el.rd);
    if (c->el.wr) event_free(c->el.wr);
    if (c->el.flush) event_free(c->el.flush);
    pthread_mutex_destroy(&c->el.mu);
    free(c->buckets);
    free(c->err);
    free(c);
}

static void conn_release(nconn *c) {
    if (--c->refs == 0) conn_free(c);
}

/* ------------------------------------------------------- pending requests */

static size_t bucket_of(nconn *c, uint64_t id) {
    return (size_t)(id * 0x9E3779B97F4A7C15ull >> 20) & (c->nbuckets - 1);
}

static int map_put(nconn *c, preq *r) {
    if (c->npending + 1 > c->nbuckets) {
        size_t nb = c->nbuckets ? c->nbuckets * 2 : 256;
        preq **b = calloc(nb, sizeof *b);
        if (!b) return -1;
        size_t ob = c->nbuckets;
        preq **old = c->buckets;
        c->buckets = b;
        c->nbuckets = nb;
        for (size_t i = 0; i < ob; i++) {
            for (preq *p = old[i], *n; p; p = n) {
                n = p->hnext;
                size_t k = bucket_of(c, p->id);
                p->hnext = b[k];
                b[k] = p;
            }
        }
        free(old);
    }
    size_t k = bucket_of(c, r->id);
    r->hnext = c->buckets[k];
    c->buckets[k] = r;
    c->npending++;
    return 0;
}

static preq *map_take(nconn *c, uint64_t id) {
    if (!c->nbuckets) return NULL;
    for (preq **pp = &c->buckets[bucket_of(c, id)]; *pp; pp = &(*pp)->hnext) {
        if ((*pp)->id == id) {
            preq *r = *pp;
            *pp = r->hnext;
            c->npending--;
            return r;
        }
    }
    return NULL;
}

static void preq_free(preq *r) {
    ae_timer_stop(&r->timer);
    free(r->subject);
    free(r);
}

/* Fail every waiting request of a connection that is going away. */
static void fail_all_requests(nconn *c, const char *why) {
    c->refs++; /* each request holds one; keep c alive until the end */
    for (size_t i = 0; i < c->nbuckets; i++) {
        preq *r;
        while ((r = c->buckets[i])) {
            c->buckets[i] = r->hnext;
            c->npending--;
            if (r->task) {
                lua_State *co = ae_task_thread(r->task);
                lua_pushnil(co);
                lua_pushfstring(co, "%s", why);
                ae_task_wake(r->task, 2);
            }
            preq_free(r);
            conn_release(c);
        }
    }
    conn_release(c);
}

static void req_timeout(ae_timer *t) {
    preq *r = t->data;
    nconn *c = r->c;
    map_take(c, r->id);
    ae_metric_inc("aengine_nats_request_timeouts", "NATS requests that got no reply in time", "subject", r->subject, 1);
    if (r->task) {
        lua_State *co = ae_task_thread(r->task);
        lua_pushnil(co);
        char msg[64];
        snprintf(msg, sizeof msg, "timeout after %g s", r->timeout);
        lua_pushstring(co, msg);
        ae_task_wake(r->task, 2);
    }
    free(r->subject);
    free(r);
    conn_release(c);
}

static void req_cancel(void *data) {
    preq *r = data;
    nconn *c = r->c;
    map_take(c, r->id);
    r->task = NULL;
    preq_free(r);
    conn_release(c);
}

/* ------------------------------------------------------------- delivery */

static int deliver_user(nsub *s, natsMsg *m);
static void deliver_reply(nconn *c, natsMsg *m);

/* A message the loop took from a subscription. natsMsg_Destroy hands every
 * message to nats.c's garbage-collector thread and wakes it (two futex calls
 * and a context switch per message: ~4 system calls per request/reply in a
 * busy engine). Such a message belongs to the loop alone once taken, so it is
 * freed here; natsMsg_free is exported by libnats but not declared in nats.h
 * (CMake checks it exists, else natsMsg_Destroy). */
#ifdef AE_HAVE_NATSMSG_FREE
void natsMsg_free(void *msg);
#define msg_free(m) natsMsg_free(m)
#else
#define msg_free(m) natsMsg_Destroy(m)
#endif

/* Hand what nats.c queued for s to the unit (one task per message) or to the
 * waiting requests (the mux inbox). aengine_nats_messages_in is counted once
 * per batch (a metric lookup per message was ~4% of a request/reply). */
static void sub_pull(nsub *s) {
    size_t delivered = 0;
    while (s->in_nats && s->sub) {
        int pending = 0;
        if (natsSubscription_GetPending(s->sub, &pending, NULL) != NATS_OK || pending <= 0) break;
        for (; pending > 0 && s->in_nats && s->sub; pending--) {
            natsMsg *m = NULL;
            natsStatus st = natsSubscription_NextMsg(&m, s->sub, 0);
            if (st == NATS_SLOW_CONSUMER) continue; /* reported by on_error; the rest is still queued */
            if (st != NATS_OK) break;
            if (s->kind == S_MUX) {
                deliver_reply(s->c, m);
                delivered++;
            } else {
                delivered += (size_t)deliver_user(s, m);
            }
            msg_free(m);
        }
    }
    if (delivered)
        ae_metric_inc("aengine_nats_messages_in", H_IN, "subject", s->kind == S_MUX ? "_INBOX" : s->subject,
                      (double)delivered);
}

static void sub_nats_done(nsub *s);

/* Is the drain of s over? (nats.c marks it once the server confirmed the
 * UNSUB and the last queued message was taken.) */
static void sub_check_drain(nsub *s) {
    if (s->draining && s->in_nats && s->sub && natsSubscription_DrainCompletionStatus(s->sub) != NATS_ILLEGAL_STATE)
        sub_nats_done(s);
}

/* Run fn on every subscription of c (every one when c is NULL) that pick
 * selects; each is held while fn runs, since fn may run Lua that unsubscribes
 * or closes anything. */
static void subs_each(nconn *c, int (*pick)(nsub *), void (*fn)(nsub *)) {
    nsub *some[32], **sel = some;
    size_t n = 0, cap = sizeof some / sizeof some[0];
    for (nsub *s = subs; s; s = s->gnext) {
        if ((c && s->c != c) || !pick(s)) continue;
        if (n == cap) {
            nsub **bigger = malloc(2 * cap * sizeof *bigger);
            if (!bigger) break; /* the rest waits for the next read or tick */
            memcpy(bigger, sel, n * sizeof *bigger);
            if (sel != some) free(sel);
            sel = bigger;
            cap *= 2;
        }
        s->refs++;
        sel[n++] = s;
    }
    for (size_t i = 0; i < n; i++) {
        fn(sel[i]);
        sub_release(sel[i]);
    }
    if (sel != some) free(sel);
}

static int has_pending(nsub *s) {
    int pending = 0;
    return s->in_nats && s->sub && natsSubscription_GetPending(s->sub, &pending, NULL) == NATS_OK && pending > 0;
}
static int is_draining(nsub *s) { return s->in_nats && s->draining; }
static int in_nats(nsub *s) { return s->in_nats; }
static void pull_and_check(nsub *s) {
    sub_pull(s);
    sub_check_drain(s);
}

/* ------------------------------------------------------- event loop glue */

static void el_free_event(void *ev) { event_free(ev); }

/* The socket is readable: nats.c reads and parses one buffer, then the loop
 * delivers what it queued. */
static void el_on_read(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    nel *e = arg;
    natsConnection_ProcessReadEvent(e->nc);
    subs_each(e->c, has_pending, pull_and_check);
}

static void el_on_writable(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    nel *e = arg;
    natsConnection_ProcessWriteEvent(e->nc); /* all written: nats.c removes the write interest */
}

/* nats.c buffered output: write it once the current callbacks are done (so a
 * loop iteration's publishes go out in one write); wait for the socket to be
 * writable only if it did not take everything. */
static void el_on_flush(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    nel *e = arg;
    pthread_mutex_lock(&e->mu);
    int go = e->attached && e->want_write;
    pthread_mutex_unlock(&e->mu);
    if (!go) return;
    natsConnection_ProcessWriteEvent(e->nc);
    pthread_mutex_lock(&e->mu);
    if (e->attached && e->want_write && !e->wr_added && e->wr && event_add(e->wr, NULL) == 0) e->wr_added = 1;
    pthread_mutex_unlock(&e->mu);
}

/* natsEvLoop_Attach: loop is our nconn (natsOptions_SetEventLoop's loop). */
static natsStatus el_attach(void **user, void *loop, natsConnection *nc, natsSock fd) {
    nconn *c = loop;
    nel *e = &c->el;
    struct event_base *base = ae_engine_base();
    pthread_mutex_lock(&e->mu);
    struct event *old_rd = e->rd, *old_wr = e->wr;
    if (old_rd) event_del_noblock(old_rd);
    if (old_wr) event_del_noblock(old_wr);
    e->nc = nc;
    e->rd = event_new(base, fd, EV_READ | EV_PERSIST, el_on_read, e);
    e->wr = event_new(base, fd, EV_WRITE | EV_PERSIST, el_on_writable, e);
    e->want_write = e->wr_added = 0;
    natsStatus st = NATS_OK;
    if (!e->rd || !e->wr || event_add(e->rd, NULL) != 0)
        st = NATS_ERR;
    else
        e->attached = 1;
    pthread_mutex_unlock(&e->mu);
    /* a callback of the old socket may be running on the loop right now */
    if (old_rd) ae_engine_post(el_free_event, old_rd);
    if (old_wr) ae_engine_post(el_free_event, old_wr);
    *user = e;
    return st;
}

static natsStatus el_read(void *user, bool add) {
    nel *e = user;
    int rc = 0;
    pthread_mutex_lock(&e->mu);
    if (e->rd) rc = add ? event_add(e->rd, NULL) : event_del_noblock(e->rd);
    pthread_mutex_unlock(&e->mu);
    return rc == 0 ? NATS_OK : NATS_ERR;
}

static natsStatus el_write(void *user, bool add) {
    nel *e = user;
    pthread_mutex_lock(&e->mu);
    if (add) {
        e->want_write = 1;
        event_active(e->flush, EV_WRITE, 0); /* thread-safe: evthread is on */
    } else {
        e->want_write = 0;
        if (e->wr_added) event_del_noblock(e->wr);
        e->wr_added = 0;
    }
    pthread_mutex_unlock(&e->mu);
    return NATS_OK;
}

static natsStatus el_detach(void *user) {
    nel *e = user;
    pthread_mutex_lock(&e->mu);
    e->attached = e->want_write = e->wr_added = 0;
    if (e->rd) event_del_noblock(e->rd);
    if (e->wr) event_del_noblock(e->wr);
    pthread_mutex_unlock(&e->mu);
    return NATS_OK; /* the events are freed with the nconn, on the loop */
}

/* Write what nats.c still buffers, now (close, exit). */
static void el_write_now(nconn *c) {
    pthread_mutex_lock(&c->el.mu);
    int go = c->el.attached && c->el.want_write;
    pthread_mutex_unlock(&c->el.mu);
    if (go && c->nc) natsConnection_ProcessWriteEvent(c->nc);
}

static void drain_poll(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
    subs_each(NULL, is_draining, pull_and_check);
    if (ndraining <= 0 && drain_tick) event_del(drain_tick);
}

/* A drain was started on s: poll until nats.c says it is complete. */
static void drain_started(nsub *s) {
    s->draining = 1;
    ndraining++;
    if (!drain_tick) drain_tick = event_new(ae_engine_base(), -1, EV_PERSIST, drain_poll, NULL);
    struct timeval tv = {0, DRAIN_POLL_MS * 1000};
    if (drain_tick && !event_pending(drain_tick, EV_TIMEOUT, NULL)) event_add(drain_tick, &tv);
}

static void sub_deactivate(nsub *s, int flush);

/* nats.c is done with the subscription (unsubscribed, drained, or its
 * connection closed): no callback will come any more. */
/* nats.c is done with the subscription: it was unsubscribed, its drain is
 * complete or its connection closed. No message will come any more. */
static void sub_nats_done(nsub *s) {
    if (!s->in_nats) return;
    s->in_nats = 0;
    if (s->draining) ndraining--;
    if (s->kind == S_USER && s->active) {
        ae_unit_remove_resource(&s->res);
        sub_deactivate(s, 1);
    }
    if (s->held) { /* a drain is over: the unit may close */
        s->held = 0;
        ae_unit_unhold(s->unit, &s->hold);
    }
    sub_release(s); /* nats.c's reference */
}

typedef struct {
    nsub *s;
    natsMsg *m;
} spawn_ctx;

static int spawn_protected(lua_State *L) {
    spawn_ctx *x = lua_touserdata(L, 1);
    nsub *s = x->s;
    natsMsg *m = x->m;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn_ref);
    lua_pushstring(L, natsMsg_GetSubject(m));
    const char *reply = natsMsg_GetReply(m);
    lua_pushstring(L, reply ? reply : "");
    lua_pushlstring(L, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
    ae_task_spawn(s->unit, L, 3, s->task_name);
    return 0;
}

/* Start the message's task; 1 when it counts as received (the caller counts
 * aengine_nats_messages_in), 0 when dropped. */
static int deliver_user(nsub *s, natsMsg *m) {
    if (!s->active || !s->unit || s->unit->state == AE_UNIT_STOPPED) {
        s->dropped++;
        ae_metric_inc("aengine_nats_messages_dropped", "NATS messages dropped (subscription closed)", "subject",
                      s->subject, 1);
        /* the unit may be gone: do not touch it */
        ae_log(AE_LOG_WARNING, "engine", 0, "ae.nats: message on %s arrived after the subscription was closed; dropped",
               natsMsg_GetSubject(m));
        return 0;
    }
    s->received++;
    lua_State *L = s->unit->L;
    spawn_ctx x = {s, m};
    lua_pushcfunction(L, spawn_protected);
    lua_pushlightuserdata(L, &x);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        ae_log(AE_LOG_ERROR, s->unit->name, 0, "ae.nats: cannot start a task for a message on %s: %s", s->subject,
               lua_tostring(L, -1));
        lua_pop(L, 1);
        ae_metric_inc("aengine_nats_messages_dropped", "NATS messages dropped (subscription closed)", "subject",
                      s->subject, 1);
    }
    return 1;
}

/* (aengine_nats_messages_in{subject="_INBOX"} is counted by the caller) */
static void deliver_reply(nconn *c, natsMsg *m) {
    if (natsMsg_IsNoResponders(m)) return; /* the timeout decides, as in the original */
    const char *subj = natsMsg_GetSubject(m);
    size_t pl = strlen(c->inbox);
    if (strncmp(subj, c->inbox, pl) != 0) return;
    char *end;
    errno = 0;
    unsigned long long id = strtoull(subj + pl, &end, 10);
    preq *r = (*end || errno) ? NULL : map_take(c, (uint64_t)id);
    if (!r) {
        c->late_replies++;
        ae_metric_inc("aengine_nats_late_replies", "Replies that came after their request gave up", NULL, NULL, 1);
        return;
    }
    if (r->task) {
        lua_State *co = ae_task_thread(r->task);
        lua_pushlstring(co, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        ae_task_wake(r->task, 1);
    }
    preq_free(r);
    conn_release(c);
}

static nsub *sub_new(nconn *c, int kind, const char *subject, const char *queue) {
    nsub *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->kind = kind;
    s->subject = strdup(subject);
    s->queue = queue ? strdup(queue) : NULL;
    snprintf(s->task_name, sizeof s->task_name, "nats %s", subject);
    s->fn_ref = LUA_NOREF;
    s->c = c;
    c->refs++;
    s->gnext = subs;
    if (subs) subs->gprev = s;
    subs = s;
    return s;
}

/* Subscribe on nats.c (a synchronous subscription: the loop takes its
 * messages after each read); on success nats.c holds one reference. */
static natsStatus sub_start(nsub *s) {
    natsStatus st;
    if (s->queue)
        st = natsConnection_QueueSubscribeSync(&s->sub, s->c->nc, s->subject, s->queue);
    else
        st = natsConnection_SubscribeSync(&s->sub, s->c->nc, s->subject);
    if (st != NATS_OK) return st;
    s->refs++;
    s->in_nats = 1;
    natsSubscription_SetPendingLimits(s->sub, PENDING_LIMIT, -1);
    return NATS_OK;
}

/* -------------------------------------------------------- connection events */

enum { CE_DISCONNECTED, CE_RECONNECTED, CE_CONNECTED, CE_CLOSED, CE_ERROR };
typedef struct {
    nconn *c;
    int kind;
    natsStatus err;
    char url[256];
    char subject[160];
    char why[256]; /* CE_CLOSED: nats.c's last error (e.g. "Authorization Violation") */
} conn_event;

static void conn_event_loop(void *arg) {
    conn_event *e = arg;
    nconn *c = e->c;
    switch (e->kind) {
    case CE_DISCONNECTED:
        if (c->closing) break;
        c->disconnects++;
        ae_metric_inc("aengine_nats_disconnects", "NATS connection losses", "connection", c->name, 1);
        ae_log(AE_LOG_WARNING, "engine", 0, "ae.nats: connection '%s' lost its server; reconnecting", c->name);
        break;
    case CE_RECONNECTED:
        c->reconnects++;
        ae_metric_inc("aengine_nats_reconnects", "NATS reconnections", "connection", c->name, 1);
        ae_log(AE_LOG_INFO, "engine", 0, "ae.nats: connection '%s' reconnected to %s", c->name, e->url);
        break;
    case CE_CONNECTED:
        ae_log(AE_LOG_INFO, "engine", 0, "ae.nats: connection '%s' connected to %s", c->name, e->url);
        break;
    case CE_ERROR:
        if (e->err == NATS_SLOW_CONSUMER) {
            c->slow_consumers++;
            ae_metric_inc("aengine_nats_slow_consumers", "NATS slow consumer events (messages dropped by nats.c)",
                          "subject", e->subject, 1);
            ae_log(AE_LOG_WARNING, "engine", 0, "ae.nats: slow consumer on %s: pending limit reached, messages dropped",
                   e->subject);
        } else {
            ae_metric_inc("aengine_nats_errors", "NATS asynchronous errors", "connection", c->name, 1);
            ae_log(AE_LOG_ERROR, "engine", 0, "ae.nats: connection '%s': %s", c->name, natsStatus_GetText(e->err));
        }
        break;
    case CE_CLOSED:
        c->state = C_CLOSED;
        subs_each(c, in_nats, sub_nats_done); /* nats.c closed them with the connection */
        if (!c->closing) {
            /* nats.c gave up: max_reconnect reached, or every server refused
             * the connection twice (wrong user/password or token: nats.c
             * does not keep the server's "Authorization Violation") */
            char why[400];
            snprintf(why, sizeof why,
                     "gave up reconnecting: %s (the servers refused the credentials, or max_reconnect was reached)",
                     *e->why ? e->why : "closed");
            free(c->err);
            c->err = strdup(why);
            ae_metric_inc("aengine_nats_errors", "NATS asynchronous errors", "connection", c->name, 1);
            ae_log(AE_LOG_ERROR, "engine", 0, "ae.nats: connection '%s' closed: %s", c->name, c->err);
        }
        fail_all_requests(c, c->err && !c->closing ? c->err : "connection closed");
        conn_release(c); /* nats.c's reference */
        break;
    }
    free(e);
}

static void post_event(natsConnection *nc, nconn *c, int kind, natsStatus err, natsSubscription *sub) {
    conn_event *e = calloc(1, sizeof *e);
    if (!e) return;
    e->c = c;
    e->kind = kind;
    e->err = err;
    if (nc && (kind == CE_RECONNECTED || kind == CE_CONNECTED))
        natsConnection_GetConnectedUrl(nc, e->url, sizeof e->url);
    if (nc && kind == CE_CLOSED) {
        const char *why = NULL;
        if (natsConnection_GetLastError(nc, &why) != NATS_OK && why) snprintf(e->why, sizeof e->why, "%s", why);
    }
    if (sub) {
        const char *subj = natsSubscription_GetSubject(sub);
        snprintf(e->subject, sizeof e->subject, "%s", subj ? subj : "?");
    }
    ae_engine_post(conn_event_loop, e);
}

static void on_disconnected(natsConnection *nc, void *cl) { post_event(nc, cl, CE_DISCONNECTED, NATS_OK, NULL); }
static void on_reconnected(natsConnection *nc, void *cl) { post_event(nc, cl, CE_RECONNECTED, NATS_OK, NULL); }
static void on_connected(natsConnection *nc, void *cl) { post_event(nc, cl, CE_CONNECTED, NATS_OK, NULL); }
static void on_closed(natsConnection *nc, void *cl) { post_event(nc, cl, CE_CLOSED, NATS_OK, NULL); }
static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *cl) {
    post_event(nc, cl, CE_ERROR, err, sub);
}

/* ------------------------------------------------------------- connect */

typedef struct {
    nconn *c;
    natsConnection *nc;
    natsStatus st;
    char err[256];
} connect_job;

static const char *conn_unusable(nconn *c);

static void connect_done(void *arg) {
    connect_job *j = arg;
    nconn *c = j->c;
    if (c->state == C_CLOSED) {
        /* nats.c gave up (the server refused the credentials twice) and its
         * closed event reached the loop before Connect returned here: the
         * connection stays closed, with the reason the event gave. */
        c->nc = j->nc;
    } else if (j->st == NATS_OK || j->st == NATS_NOT_YET_CONNECTED) {
        c->nc = j->nc;
        c->state = C_READY;
        c->mux = sub_new(c, S_MUX, "", NULL);
        natsStatus st = NATS_NO_MEMORY;
        if (c->mux) {
            char subj[80];
            snprintf(subj, sizeof subj, "%s*", c->inbox);
            free(c->mux->subject);
            c->mux->subject = strdup(subj);
            st = sub_start(c->mux);
        }
        if (st != NATS_OK) {
            /* e.g. the connection was already closed by an auth failure: say why */
            const char *why = NULL;
            if (natsConnection_GetLastError(c->nc, &why) == NATS_OK || !why || !*why) why = natsStatus_GetText(st);
            c->state = C_FAILED;
            free(c->err);
            c->err = strdup(why);
            ae_log(AE_LOG_ERROR, "engine", 0, "ae.nats: connection '%s' failed: %s", c->name, why);
            ae_metric_inc("aengine_nats_errors", "NATS asynchronous errors", "connection", c->name, 1);
            if (c->mux) sub_free(c->mux);
            c->mux = NULL;
        }
        if (j->st == NATS_OK) {
            char url[256] = "";
            natsConnection_GetConnectedUrl(c->nc, url, sizeof url);
            ae_log(AE_LOG_INFO, "engine", 0, "ae.nats: connection '%s' connected to %s", c->name, url);
        } else {
            ae_log(AE_LOG_WARNING, "engine", 0, "ae.nats: connection '%s': no server reachable yet; retrying forever",
                   c->name);
        }
    } else {
        c->state = C_FAILED;
        free(c->err);
        c->err = strdup(j->err);
        ae_log(AE_LOG_ERROR, "engine", 0, "ae.nats: connection '%s' failed: %s", c->name, j->err);
        ae_metric_inc("aengine_nats_errors", "NATS asynchronous errors", "connection", c->name, 1);
        conn_release(c); /* no closed callback will ever come */
    }
    struct waiter *w;
    while ((w = c->waiters)) {
        c->waiters = w->next;
        lua_State *co = ae_task_thread(w->t);
        const char *e = conn_unusable(c);
        if (e) {
            lua_pushnil(co);
            lua_pushstring(co, e);
        } else {
            lua_pushboolean(co, 1);
        }
        ae_task_wake(w->t, e ? 2 : 1);
        free(w);
    }
    free(j);
    conn_release(c); /* the worker's reference */
}

static void *connect_worker(void *arg) {
    connect_job *j = arg;
    j->st = natsConnection_Connect(&j->nc, j->c->opts);
    if (j->st != NATS_OK && j->st != NATS_NOT_YET_CONNECTED) {
        const char *last = nats_GetLastError(NULL);
        snprintf(j->err, sizeof j->err, "%s%s%s", natsStatus_GetText(j->st), last && *last ? ": " : "",
                 last ? last : "");
    }
    ae_engine_post(connect_done, j);
    return NULL;
}

/* Engine exit (every unit is closed): close every connection, let nats.c
 * join its threads, then free what is left. */
static void at_exit(void) {
    for (nconn *c = conns; c; c = c->gnext) {
        c->closing = 1;
        el_write_now(c);
        if (c->nc) natsConnection_Close(c->nc);
    }
    for (nsub *s = subs; s; s = s->gnext) {
        if (s->sub) natsSubscription_Destroy(s->sub);
        s->sub = NULL;
    }
    for (nconn *c = conns; c; c = c->gnext) {
        if (c->nc) natsConnection_Destroy(c->nc);
        c->nc = NULL;
    }
    nats_CloseAndWait(2000);
    if (drain_tick) event_free(drain_tick);
    drain_tick = NULL;
    while (subs) {
        subs->c = NULL;
        sub_free(subs);
    }
    while (conns) {
        nconn *c = conns;
        for (size_t i = 0; i < c->nbuckets; i++) {
            preq *r;
            while ((r = c->buckets[i])) {
                c->buckets[i] = r->hnext;
                preq_free(r);
            }
        }
        conn_free(c);
    }
}

static const char *opt_string(lua_State *L, int t, const char *k) {
    lua_getfield(L, t, k);
    const char *s = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1);
    return s;
}

static double opt_number(lua_State *L, int t, const char *k, double def) {
    lua_getfield(L, t, k);
    double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

/* Settings of a connection, from a Lua table or from the engine config. */
typedef struct {
    const char *servers[MAX_SERVERS];
    int nservers;
    const char *user, *password, *token, *name, *ca, *cert, *key;
    double reconnect_wait, connect_timeout, ping_interval;
    int max_reconnect, reconnect_buf;
    int send_asap; /* write each publish at once (else nats.c's flusher batches after a 1 ms sleep) */
} conn_settings;

static nconn *conn_create(conn_settings *cs, char *errbuf, size_t errlen) {
    natsOptions *o = NULL;
    natsStatus st = natsOptions_Create(&o);
    nconn *c = calloc(1, sizeof *c);
    if (st != NATS_OK || !c) {
        snprintf(errbuf, errlen, "out of memory");
        if (o) natsOptions_Destroy(o);
        free(c);
        return NULL;
    }
    c->opts = o;
    c->el.c = c;
    pthread_mutex_init(&c->el.mu, NULL);
    c->el.flush = event_new(ae_engine_base(), -1, 0, el_on_flush, &c->el);
    if (!c->el.flush) {
        st = NATS_NO_MEMORY;
        snprintf(errbuf, errlen, "out of memory");
    }
    snprintf(c->name, sizeof c->name, "%s", cs->name ? cs->name : "aengine");
#define TRY(call, what)                                                                                                \
    do {                                                                                                               \
        if (st == NATS_OK) {                                                                                           \
            st = (call);                                                                                               \
            if (st != NATS_OK) snprintf(errbuf, errlen, "%s: %s", what, natsStatus_GetText(st));                       \
        }                                                                                                              \
    } while (0)
    TRY(natsOptions_SetServers(o, cs->servers, cs->nservers), "servers");
    TRY(natsOptions_SetName(o, c->name), "name");
    TRY(natsOptions_SetMaxReconnect(o, cs->max_reconnect), "max_reconnect");
    TRY(natsOptions_SetReconnectWait(o, (int64_t)(cs->reconnect_wait * 1000)), "reconnect_wait");
    TRY(natsOptions_SetReconnectJitter(o, 100, 1000), "reconnect jitter");
    TRY(natsOptions_SetReconnectBufSize(o, cs->reconnect_buf), "reconnect_buf");
    TRY(natsOptions_SetTimeout(o, (int64_t)(cs->connect_timeout * 1000)), "connect_timeout");
    TRY(natsOptions_SetPingInterval(o, (int64_t)(cs->ping_interval * 1000)), "ping_interval");
    TRY(natsOptions_SetMaxPingsOut(o, 2), "max pings out");
    TRY(natsOptions_SetMaxPendingMsgs(o, PENDING_LIMIT), "pending limit");
    /* like the original client: a request nobody serves waits for its timeout */
    TRY(natsOptions_DisableNoResponders(o, true), "no responders");
    TRY(natsOptions_SetSendAsap(o, cs->send_asap != 0), "send_asap");
    TRY(natsOptions_SetEventLoop(o, c, el_attach, el_read, el_write, el_detach), "event loop");
    TRY(natsOptions_SetRetryOnFailedConnect(o, true, on_connected, c), "retry on failed connect");
    TRY(natsOptions_SetDisconnectedCB(o, on_disconnected, c), "callbacks");
    TRY(natsOptions_SetReconnectedCB(o, on_reconnected, c), "callbacks");
    TRY(natsOptions_SetClosedCB(o, on_closed, c), "callbacks");
    TRY(natsOptions_SetErrorHandler(o, on_error, c), "callbacks");
    if (cs->user || cs->password) TRY(natsOptions_SetUserInfo(o, cs->user, cs->password), "user/password");
    if (cs->token) TRY(natsOptions_SetToken(o, cs->token), "token");
    if (cs->ca || cs->cert) {
        TRY(natsOptions_SetSecure(o, true), "tls");
        if (cs->ca) TRY(natsOptions_LoadCATrustedCertificates(o, cs->ca), "tls.ca");
        if (cs->cert) TRY(natsOptions_LoadCertificatesChain(o, cs->cert, cs->key ? cs->key : cs->cert), "tls.cert");
    }
#undef TRY
    if (st != NATS_OK) {
        const char *last = nats_GetLastError(NULL);
        if (last && *last) {
            size_t l = strlen(errbuf);
            snprintf(errbuf + l, errlen - l, " (%s)", last);
        }
        natsOptions_Destroy(o);
        if (c->el.flush) event_free(c->el.flush);
        pthread_mutex_destroy(&c->el.mu);
        free(c);
        return NULL;
    }
    char nuid[32];
    natsInbox *ib = NULL;
    if (natsInbox_Create(&ib) == NATS_OK) {
        snprintf(nuid, sizeof nuid, "%s", (const char *)ib + 7); /* skip "_INBOX." */
        natsInbox_Destroy(ib);
    } else {
        snprintf(nuid, sizeof nuid, "%lx", (unsigned long)(size_t)c);
    }
    snprintf(c->inbox, sizeof c->inbox, "_INBOX.%s.", nuid);
    c->state = C_CONNECTING;
    c->refs = 2; /* nats.c (until closed/failure) + the connect worker */
    c->gnext = conns;
    if (conns) conns->gprev = c;
    conns = c;
    if (!exit_hooked) {
        exit_hooked = 1;
        ae_engine_at_exit(at_exit);
    }
    connect_job *j = calloc(1, sizeof *j);
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (!j || (j->c = c, pthread_create(&th, &attr, connect_worker, j)) != 0) {
        pthread_attr_destroy(&attr);
        free(j);
        c->state = C_FAILED;
        c->err = strdup("cannot start the connect thread");
        c->refs = 0; /* no worker, no nats.c: only the handle pushed next */
        return c;
    }
    pthread_attr_destroy(&attr);
    return c;
}

/* Credentials inside a server URL (nats://user:password@host, nats://token@host)
 * are masked in logs like the password= and token= options. */
static void url_secret(const char *url) {
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *at = strchr(p, '@');
    if (!at) return;
    const char *slash = strchr(p, '/');
    if (slash && slash < at) return;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *from = colon ? colon + 1 : p;
    char buf[256];
    size_t n = (size_t)(at - from);
    if (n == 0 || n >= sizeof buf) return;
    memcpy(buf, from, n);
    buf[n] = 0;
    ae_log_secret(buf);
}

static void settings_secrets(const conn_settings *cs) {
    if (cs->password) ae_log_secret(cs->password);
    if (cs->token) ae_log_secret(cs->token);
    for (int i = 0; i < cs->nservers; i++)
        url_secret(cs->servers[i]);
}

static void settings_defaults(conn_settings *cs) {
    memset(cs, 0, sizeof *cs);
    cs->reconnect_wait = 2;
    cs->connect_timeout = 2;
    cs->ping_interval = 120;
    cs->max_reconnect = -1;
    cs->reconnect_buf = 8 * 1024 * 1024;
    cs->send_asap = 1;
}

/* ------------------------------------------------------------ Lua handles */

static void push_conn(lua_State *L, nconn *c) {
    conn_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->c = c;
    c->refs++;
    luaL_setmetatable(L, CONN_MT);
}

static nconn *check_conn(lua_State *L, int i) {
    conn_box *b = luaL_checkudata(L, i, CONN_MT);
    if (!b->c) luaL_error(L, "ae.nats: the connection handle was released");
    return b->c;
}

/* Is the connection usable? Returns NULL when it is, else an error text. */
static const char *conn_unusable(nconn *c) {
    switch (c->state) {
    case C_READY: return NULL;
    case C_CONNECTING: return "not connected yet (call wait first)";
    case C_FAILED: return c->err ? c->err : "connect failed";
    default: return c->err && !c->closing ? c->err : "connection closed";
    }
}

/* default() -> handle to the engine's shared connection */
static int l_default(lua_State *L) {
    if (!default_cn || default_cn->state == C_FAILED || default_cn->state == C_CLOSED) {
        if (default_cn) { /* a failed default is replaced on the next use */
            nconn *old = default_cn;
            default_cn = NULL;
            if (old->is_default) {
                old->is_default = 0;
                conn_release(old);
            }
        }
        conn_settings cs;
        settings_defaults(&cs);
        char keys[MAX_SERVERS][32];
        char *copies[MAX_SERVERS + 8];
        int ncopies = 0;
        for (int i = 1; i <= MAX_SERVERS; i++) {
            snprintf(keys[i - 1], sizeof keys[0], "nats.servers.%d", i);
            const char *s = ae_config_string(keys[i - 1], NULL);
            if (!s) break;
            cs.servers[cs.nservers++] = copies[ncopies++] = strdup(s);
        }
        if (cs.nservers == 0) {
            const char *one = ae_config_string("nats.servers", NULL);
            if (one) cs.servers[cs.nservers++] = copies[ncopies++] = strdup(one);
        }
        for (int i = 1; cs.nservers == 0 || (i > 1 && i <= MAX_SERVERS); i++) {
            char var[32];
            snprintf(var, sizeof var, "NATS_SERVER%d", i);
            const char *e = getenv(var);
            if (!e || !*e) break;
            cs.servers[cs.nservers++] = e;
        }
        if (cs.nservers == 0) cs.servers[cs.nservers++] = "nats://127.0.0.1:4222";
        static const struct {
            const char *key, *env;
        } strs[] = {{"nats.user", "NATS_USER"},      {"nats.password", "NATS_PASSWORD"},
                    {"nats.token", "NATS_TOKEN"},    {"nats.name", "NATS_CLIENT_NAME"},
                    {"nats.tls.ca", "NATS_TLS_CA"},  {"nats.tls.cert", "NATS_TLS_CERT"},
                    {"nats.tls.key", "NATS_TLS_KEY"}};
        const char **dst[] = {&cs.user, &cs.password, &cs.token, &cs.name, &cs.ca, &cs.cert, &cs.key};
        for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
            const char *v = ae_config_string(strs[i].key, NULL);
            if (v)
                *dst[i] = copies[ncopies++] = strdup(v);
            else if (getenv(strs[i].env) && *getenv(strs[i].env))
                *dst[i] = getenv(strs[i].env);
        }
        cs.reconnect_wait = ae_config_number("nats.reconnect_wait", cs.reconnect_wait);
        cs.connect_timeout = ae_config_number("nats.connect_timeout", cs.connect_timeout);
        cs.ping_interval = ae_config_number("nats.ping_interval", cs.ping_interval);
        cs.send_asap = ae_config_bool("nats.send_asap", cs.send_asap);
        if (!cs.name) cs.name = "default";
        settings_secrets(&cs); /* before the copies are freed */
        char err[512] = "";
        nconn *c = conn_create(&cs, err, sizeof err);
        for (int i = 0; i < ncopies; i++)
            free(copies[i]);
        if (!c) return ae_fail(L, "ae.nats: default connection: %s", err);
        c->is_default = 1;
        c->refs++; /* the engine's reference */
        default_cn = c;
    }
    push_conn(L, default_cn);
    return 1;
}

/* connect{servers=, user=, password=, token=, name=, tls={ca=,cert=,key=},
 * reconnect_wait=, connect_timeout=, ping_interval=, max_reconnect=,
 * reconnect_buf=, send_asap=} -> handle (the connect goes on in the background) */
static int l_connect(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    conn_settings cs;
    settings_defaults(&cs);
    lua_getfield(L, 1, "servers");
    if (lua_isstring(L, -1)) {
        cs.servers[cs.nservers++] = lua_tostring(L, -1);
    } else if (lua_istable(L, -1)) {
        int n = (int)lua_rawlen(L, -1);
        for (int i = 1; i <= n && cs.nservers < MAX_SERVERS; i++) {
            lua_rawgeti(L, -1, i);
            if (!lua_isstring(L, -1)) return luaL_error(L, "ae.nats.connect: servers[%d] must be a URL string", i);
            cs.servers[cs.nservers++] = lua_tostring(L, -1);
            lua_pop(L, 1); /* the string stays alive in the table */
        }
    }
    if (cs.nservers == 0) return luaL_error(L, "ae.nats.connect: servers must be a URL or a list of URLs");
    /* keep the servers value on the stack while we build */
    cs.user = opt_string(L, 1, "user");
    cs.password = opt_string(L, 1, "password");
    cs.token = opt_string(L, 1, "token");
    cs.name = opt_string(L, 1, "name");
    lua_getfield(L, 1, "tls");
    if (lua_istable(L, -1)) {
        int t = lua_gettop(L);
        cs.ca = opt_string(L, t, "ca");
        cs.cert = opt_string(L, t, "cert");
        cs.key = opt_string(L, t, "key");
    }
    cs.reconnect_wait = opt_number(L, 1, "reconnect_wait", cs.reconnect_wait);
    cs.connect_timeout = opt_number(L, 1, "connect_timeout", cs.connect_timeout);
    cs.ping_interval = opt_number(L, 1, "ping_interval", cs.ping_interval);
    cs.max_reconnect = (int)opt_number(L, 1, "max_reconnect", cs.max_reconnect);
    cs.reconnect_buf = (int)opt_number(L, 1, "reconnect_buf", cs.reconnect_buf);
    lua_getfield(L, 1, "send_asap");
    if (!lua_isnil(L, -1)) cs.send_asap = lua_toboolean(L, -1);
    lua_pop(L, 1);
    settings_secrets(&cs);
    char err[512] = "";
    nconn *c = conn_create(&cs, err, sizeof err);
    if (!c) return luaL_error(L, "ae.nats.connect: %s", err);
    push_conn(L, c);
    return 1;
}

static void waiter_cancel(void *data) {
    struct waiter *w = data;
    if (w->prev)
        w->prev->next = w->next;
    else
        w->c->waiters = w->next;
    if (w->next) w->next->prev = w->prev;
    free(w);
}

/* wait(h) -> true | nil, err: wait for the first connect attempt to end. */
static int l_wait(lua_State *L) {
    nconn *c = check_conn(L, 1);
    if (c->state == C_CONNECTING) {
        ae_task *t = ae_task_check(L);
        struct waiter *w = calloc(1, sizeof *w);
        if (!w) return luaL_error(L, "ae.nats: out of memory");
        w->t = t;
        w->c = c;
        w->next = c->waiters;
        if (c->waiters) c->waiters->prev = w;
        c->waiters = w;
        ae_task_set_cancel(t, waiter_cancel, w);
        lua_settop(L, 1);
        return ae_task_wait(L, 1);
    }
    const char *e = conn_unusable(c);
    if (e) return ae_fail(L, "%s", e);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_ready(lua_State *L) {
    nconn *c = check_conn(L, 1);
    lua_pushboolean(L, c->state != C_CONNECTING);
    return 1;
}

/* publish(h, subject, data[, reply]) -> true | nil, err */
static int l_publish(lua_State *L) {
    nconn *c = check_conn(L, 1);
    const char *subj = luaL_checkstring(L, 2);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    const char *reply = luaL_optstring(L, 4, NULL);
    const char *e = conn_unusable(c);
    if (e) return ae_fail(L, "%s", e);
    if (!*subj) return ae_fail(L, "empty subject");
    natsStatus st = reply && *reply ? natsConnection_PublishRequest(c->nc, subj, reply, data, (int)len)
                                    : natsConnection_Publish(c->nc, subj, data, (int)len);
    if (st != NATS_OK) {
        ae_metric_inc("aengine_nats_errors", "NATS asynchronous errors", "connection", c->name, 1);
        return ae_fail(L, "publish to %s: %s", subj, natsStatus_GetText(st));
    }
    ae_metric_inc("aengine_nats_messages_out", H_OUT, "subject", subj, 1);
    lua_pushboolean(L, 1);
    return 1;
}

/* request(h, subject, data, timeout) -> reply data | nil, err
 * One attempt: publish with a reply subject of the mux inbox and wait for
 * one message, at most timeout seconds of engine clock. */
static int l_request(lua_State *L) {
    nconn *c = check_conn(L, 1);
    const char *subj = luaL_checkstring(L, 2);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    double timeout = luaL_checknumber(L, 4);
    ae_task *t = ae_task_check(L);
    const char *e = conn_unusable(c);
    if (e) return ae_fail(L, "%s", e);
    if (!*subj) return ae_fail(L, "empty subject");
    preq *r = calloc(1, sizeof *r);
    if (!r || !(r->subject = strdup(subj))) {
        free(r);
        return luaL_error(L, "ae.nats: out of memory");
    }
    r->id = ++c->next_id;
    r->c = c;
    r->timeout = timeout;
    ae_timer_init(&r->timer, req_timeout, r);
    if (map_put(c, r) != 0) {
        free(r->subject);
        free(r);
        return luaL_error(L, "ae.nats: out of memory");
    }
    c->refs++;
    char reply[96]; /* inbox + id, formatted by hand (snprintf was 1% of a round trip) */
    size_t il = strlen(c->inbox);
    memcpy(reply, c->inbox, il);
    char digits[24], *d = digits + sizeof digits;
    uint64_t v = r->id;
    do
        *--d = (char)('0' + v % 10);
    while (v /= 10);
    memcpy(reply + il, d, (size_t)(digits + sizeof digits - d));
    reply[il + (size_t)(digits + sizeof digits - d)] = 0;
    natsStatus st = natsConnection_PublishRequest(c->nc, subj, reply, data, (int)len);
    if (st != NATS_OK) {
        map_take(c, r->id);
        preq_free(r);
        conn_release(c);
        ae_metric_inc("aengine_nats_request_errors", "NATS requests that failed to be sent", "subject", subj, 1);
        return ae_fail(L, "publish to %s: %s", subj, natsStatus_GetText(st));
    }
    ae_metric_inc("aengine_nats_messages_out", H_OUT, "subject", subj, 1);
    r->task = t;
    ae_task_set_cancel(t, req_cancel, r);
    ae_timer_start(&r->timer, ae_clock_now() + timeout);
    lua_settop(L, 0);
    return ae_task_wait(L, 1);
}

/* ----------------------------------------------------------- subscriptions */

static void sub_deactivate(nsub *s, int flush) {
    if (!s->active) return;
    /* hand what is already queued to the unit while it can still take it */
    if (flush && s->unit && s->unit->state != AE_UNIT_STOPPED) sub_pull(s);
    s->active = 0;
    if (s->unit && s->unit->state != AE_UNIT_STOPPED && s->unit->L && s->fn_ref != LUA_NOREF)
        luaL_unref(s->unit->L, LUA_REGISTRYINDEX, s->fn_ref);
    s->fn_ref = LUA_NOREF;
}

/* The unit was force-closed while its subscription was still draining. */
static void sub_hold_close(ae_resource *r) {
    nsub *s = (nsub *)((char *)r - offsetof(nsub, hold));
    s->held = 0;
    sub_deactivate(s, 0);
    if (s->sub) natsSubscription_Unsubscribe(s->sub);
    sub_nats_done(s);
}

/* The unit stops taking work (reload, shutdown): DRAIN the subscription, so
 * that the messages already sent to it are still handled here (while a new
 * version of the unit, subscribed in the same queue group, takes the new
 * ones); the unit stays open until nats.c says the drain is complete. */
static void sub_res_close(ae_resource *r) {
    nsub *s = (nsub *)((char *)r - offsetof(nsub, res));
    if (s->sub && !s->draining && s->unit && s->unit->state == AE_UNIT_DRAINING) {
        natsStatus st = natsSubscription_Drain(s->sub);
        if (st == NATS_OK) {
            drain_started(s);
            s->held = 1;
            ae_unit_hold(s->unit, &s->hold, "draining subscription", sub_hold_close);
            return;
        }
        ae_log(AE_LOG_WARNING, s->unit->name, 0, "ae.nats: cannot drain %s (%s); unsubscribing", s->subject,
               natsStatus_GetText(st));
    }
    sub_deactivate(s, 1);
    if (s->sub) natsSubscription_Unsubscribe(s->sub);
    sub_nats_done(s); /* may free s */
}

static void sub_res_describe(ae_resource *r, luaL_Buffer *b) {
    nsub *s = (nsub *)((char *)r - offsetof(nsub, res));
    luaL_addstring(b, s->subject);
    if (s->queue) {
        luaL_addstring(b, " queue=");
        luaL_addstring(b, s->queue);
    }
}

/* subscribe(h, subject, queue|nil, fn) -> sub | nil, err
 * fn(subject, reply, data) runs in a new task of the calling unit for every
 * message. */
static int l_subscribe(lua_State *L) {
    nconn *c = check_conn(L, 1);
    const char *subj = luaL_checkstring(L, 2);
    const char *queue = luaL_optstring(L, 3, NULL);
    luaL_checktype(L, 4, LUA_TFUNCTION);
    ae_unit *u = ae_unit_of(L);
    if (!u) return luaL_error(L, "ae.nats.subscribe: no unit");
    if (u->state == AE_UNIT_DRAINING || u->state == AE_UNIT_STOPPED)
        return ae_fail(L, "the unit is draining: no new subscriptions");
    const char *e = conn_unusable(c);
    if (e) return ae_fail(L, "%s", e);
    if (!*subj) return ae_fail(L, "empty subject");
    nsub *s = sub_new(c, S_USER, subj, queue && *queue ? queue : NULL);
    if (!s) return luaL_error(L, "ae.nats: out of memory");
    s->refs = 1; /* the Lua handle, taken below */
    s->unit = u;
    lua_pushvalue(L, 4);
    /* the function lives in the unit's main state registry (same registry) */
    s->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->active = 1;
    natsStatus st = sub_start(s);
    if (st != NATS_OK) {
        sub_deactivate(s, 0);
        sub_release(s);
        return ae_fail(L, "subscribe to %s: %s", subj, natsStatus_GetText(st));
    }
    ae_unit_add_resource(u, &s->res, "subscription", sub_res_close);
    s->res.describe = sub_res_describe;
    sub_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->s = s;
    luaL_setmetatable(L, SUB_MT);
    return 1;
}

static nsub *check_sub(lua_State *L) {
    sub_box *b = luaL_checkudata(L, 1, SUB_MT);
    return b->s;
}

static int l_sub_unsubscribe(lua_State *L) {
    nsub *s = check_sub(L);
    if (s && s->active) {
        ae_unit_remove_resource(&s->res);
        sub_deactivate(s, 1);
        natsStatus st = s->sub ? natsSubscription_Unsubscribe(s->sub) : NATS_OK;
        sub_nats_done(s); /* the Lua handle still holds s */
        if (st != NATS_OK && st != NATS_INVALID_SUBSCRIPTION && st != NATS_CONNECTION_CLOSED)
            return ae_fail(L, "unsubscribe %s: %s", s->subject, natsStatus_GetText(st));
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* drain(): stop interest on the server but deliver what is already on the
 * way; the subscription then closes by itself. */
static int l_sub_drain(lua_State *L) {
    nsub *s = check_sub(L);
    if (s && s->active && !s->draining && s->in_nats) {
        natsStatus st = natsSubscription_Drain(s->sub);
        if (st == NATS_OK) drain_started(s);
        if (st != NATS_OK && st != NATS_INVALID_SUBSCRIPTION && st != NATS_CONNECTION_CLOSED)
            return ae_fail(L, "drain %s: %s", s->subject, natsStatus_GetText(st));
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_sub_info(lua_State *L) {
    nsub *s = check_sub(L);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, s->subject);
    lua_setfield(L, -2, "subject");
    if (s->queue) {
        lua_pushstring(L, s->queue);
        lua_setfield(L, -2, "queue");
    }
    lua_pushboolean(L, s->active);
    lua_setfield(L, -2, "active");
    lua_pushinteger(L, (lua_Integer)s->received);
    lua_setfield(L, -2, "received");
    lua_pushinteger(L, (lua_Integer)s->dropped);
    lua_setfield(L, -2, "dropped");
    int pending = 0;
    if (s->in_nats && s->sub) natsSubscription_GetPending(s->sub, &pending, NULL);
    lua_pushinteger(L, pending);
    lua_setfield(L, -2, "queued");
    return 1;
}

static int l_sub_gc(lua_State *L) {
    sub_box *b = luaL_checkudata(L, 1, SUB_MT);
    if (b->s) {
        nsub *s = b->s;
        b->s = NULL;
        /* the subscription itself stays a resource of the unit; if the unit
         * state is being closed the resource was closed first. */
        if (s->unit && s->unit->state == AE_UNIT_STOPPED) {
            s->active = 0; /* the state is being closed: its registry goes too */
            s->fn_ref = LUA_NOREF;
        }
        sub_release(s);
    }
    return 0;
}

/* ------------------------------------------------------------ connection */

static int l_close(lua_State *L) {
    conn_box *b = luaL_checkudata(L, 1, CONN_MT);
    nconn *c = b->c;
    if (c && !c->is_default && c->state != C_CLOSED) {
        c->closing = 1;
        if (c->nc) {
            el_write_now(c);
            natsConnection_Close(c->nc);
        }
        fail_all_requests(c, "connection closed");
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_conn_gc(lua_State *L) {
    conn_box *b = luaL_checkudata(L, 1, CONN_MT);
    nconn *c = b->c;
    if (!c) return 0;
    b->c = NULL;
    conn_release(c);
    return 0;
}

static int l_status(lua_State *L) {
    nconn *c = check_conn(L, 1);
    lua_createtable(L, 0, 12);
    int connected = c->nc && natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED;
    lua_pushboolean(L, connected);
    lua_setfield(L, -2, "connected");
    static const char *states[] = {"connecting", "ready", "failed", "closed"};
    lua_pushstring(L, states[c->state]);
    lua_setfield(L, -2, "state");
    lua_pushstring(L, c->name);
    lua_setfield(L, -2, "name");
    if (c->err) {
        lua_pushstring(L, c->err);
        lua_setfield(L, -2, "error");
    }
    if (c->nc) {
        char url[256];
        if (natsConnection_GetConnectedUrl(c->nc, url, sizeof url) == NATS_OK && *url) {
            lua_pushstring(L, url);
            lua_setfield(L, -2, "server");
        }
        natsStatistics *st = NULL;
        if (natsStatistics_Create(&st) == NATS_OK) {
            uint64_t im = 0, ib = 0, om = 0, ob = 0, rc = 0;
            if (natsConnection_GetStats(c->nc, st) == NATS_OK &&
                natsStatistics_GetCounts(st, &im, &ib, &om, &ob, &rc) == NATS_OK) {
                lua_pushinteger(L, (lua_Integer)im);
                lua_setfield(L, -2, "in_msgs");
                lua_pushinteger(L, (lua_Integer)om);
                lua_setfield(L, -2, "out_msgs");
                lua_pushinteger(L, (lua_Integer)ib);
                lua_setfield(L, -2, "in_bytes");
                lua_pushinteger(L, (lua_Integer)ob);
                lua_setfield(L, -2, "out_bytes");
            }
            natsStatistics_Destroy(st);
        }
    }
    lua_pushinteger(L, (lua_Integer)c->reconnects);
    lua_setfield(L, -2, "reconnects");
    lua_pushinteger(L, (lua_Integer)c->disconnects);
    lua_setfield(L, -2, "disconnects");
    lua_pushinteger(L, (lua_Integer)c->npending);
    lua_setfield(L, -2, "pending_requests");
    lua_pushinteger(L, (lua_Integer)c->slow_consumers);
    lua_setfield(L, -2, "slow_consumers");
    lua_pushinteger(L, (lua_Integer)c->late_replies);
    lua_setfield(L, -2, "late_replies");
    lua_pushstring(L, c->inbox);
    lua_setfield(L, -2, "inbox");
    return 1;
}

/* flush(h, timeout_s) -> true | nil, err: a PING/PONG round trip. The PONG
 * is read by the loop, so nats.c's blocking flush runs on a short-lived
 * thread while the calling task waits. */
typedef struct {
    nconn *c;
    ae_task *t; /* NULL once the task gave up */
    int64_t ms;
    natsStatus st;
} flush_job;

static void flush_done(void *arg) {
    flush_job *j = arg;
    if (j->t) {
        lua_State *co = ae_task_thread(j->t);
        if (j->st == NATS_OK) {
            lua_pushboolean(co, 1);
            ae_task_wake(j->t, 1);
        } else {
            lua_pushnil(co);
            lua_pushfstring(co, "flush: %s", natsStatus_GetText(j->st));
            ae_task_wake(j->t, 2);
        }
    }
    conn_release(j->c);
    free(j);
}

static void *flush_worker(void *arg) {
    flush_job *j = arg;
    j->st = natsConnection_FlushTimeout(j->c->nc, j->ms);
    ae_engine_post(flush_done, j);
    return NULL;
}

static void flush_cancel(void *data) { ((flush_job *)data)->t = NULL; }

static int l_flush(lua_State *L) {
    nconn *c = check_conn(L, 1);
    double t = luaL_optnumber(L, 2, 1.0);
    ae_task *task = ae_task_check(L);
    const char *e = conn_unusable(c);
    if (e) return ae_fail(L, "%s", e);
    flush_job *j = calloc(1, sizeof *j);
    if (!j) return luaL_error(L, "ae.nats: out of memory");
    j->c = c;
    j->t = task;
    j->ms = (int64_t)(t * 1000);
    c->refs++;
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, flush_worker, j);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        conn_release(c);
        free(j);
        return ae_fail(L, "flush: cannot start a thread");
    }
    ae_task_set_cancel(task, flush_cancel, j);
    lua_settop(L, 0);
    return ae_task_wait(L, 1);
}

/* random_id() -> 22 characters of the shortuuid alphabet (about 128 bits).
 * Random bytes come from /dev/urandom 4 KB at a time (a read per id showed in
 * profiles: one per request); only the loop thread calls this. */
static int l_random_id(lua_State *L) {
    static const char alpha[] = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"; /* 57 */
    static int fd = -2;
    static unsigned char pool[4096];
    static int got = 0;
    char out[23];
    if (fd == -2) fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    int k = 0;
    while (k < 22) {
        if (got <= 0) {
            ssize_t n = fd >= 0 ? read(fd, pool, sizeof pool) : -1;
            if (n <= 0) {
                for (size_t i = 0; i < sizeof pool; i++)
                    pool[i] = (unsigned char)(rand() & 0xff);
                n = sizeof pool;
            }
            got = (int)n;
        }
        unsigned char v = pool[--got];
        if (v < 57 * 4) out[k++] = alpha[v % 57]; /* rejection: no bias */
    }
    out[22] = 0;
    lua_pushstring(L, out);
    return 1;
}

/* count(name, help, label_name, label_value[, by]): a counter for the Lua half */
static int l_count(lua_State *L) {
    ae_metric_inc(luaL_checkstring(L, 1), luaL_checkstring(L, 2), luaL_optstring(L, 3, NULL),
                  luaL_optstring(L, 4, NULL), luaL_optnumber(L, 5, 1));
    return 0;
}

int luaopen_ae_core_nats(lua_State *L) {
    static const luaL_Reg conn_m[] = {{"__gc", l_conn_gc}, {NULL, NULL}};
    static const luaL_Reg sub_m[] = {{"unsubscribe", l_sub_unsubscribe},
                                     {"drain", l_sub_drain},
                                     {"info", l_sub_info},
                                     {"__gc", l_sub_gc},
                                     {NULL, NULL}};
    static const luaL_Reg f[] = {{"default", l_default},
                                 {"connect", l_connect},
                                 {"wait", l_wait},
                                 {"ready", l_ready},
                                 {"publish", l_publish},
                                 {"request", l_request},
                                 {"subscribe", l_subscribe},
                                 {"close", l_close},
                                 {"status", l_status},
                                 {"flush", l_flush},
                                 {"random_id", l_random_id},
                                 {"count", l_count},
                                 {NULL, NULL}};
    if (luaL_newmetatable(L, CONN_MT)) luaL_setfuncs(L, conn_m, 0);
    lua_pop(L, 1);
    if (luaL_newmetatable(L, SUB_MT)) {
        luaL_setfuncs(L, sub_m, 0);
        lua_pushvalue(L, -1);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luaL_newlib(L, f);
    lua_pushinteger(L, 1048576);
    lua_setfield(L, -2, "MAX_INLINE");
    return 1;
}
