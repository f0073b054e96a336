/* engine.c - the event loop: the ready queue of tasks to resume, work posted
 * from other threads, signals, the "settle" check of the manual clock, and
 * graceful shutdown.
 *
 * Nothing here runs Lua directly except through task.c's resume function,
 * which is only ever called from the ready-queue event on the loop thread.
 */
#define _POSIX_C_SOURCE 200809L
#include "engine.h"
#include "engine_internal.h"
#include "log.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

typedef struct posted {
    void (*fn)(void *);
    void *arg;
    struct posted *next;
} posted;

typedef struct stop_hook {
    ae_hook_fn fn;
    void *arg;
    struct stop_hook *next;
} stop_hook;

struct ae_engine {
    struct event_base *base;
    /* tasks to resume, FIFO */
    ae_task *ready_head, *ready_tail;     /* spawned or woken: resumed this turn */
    ae_task *yielded_head, *yielded_tail; /* gave way (task.yield): resumed next turn */
    struct event *ready_ev;
    int in_ready; /* on_ready is resuming tasks */
    /* work posted from other threads */
    pthread_mutex_t post_lock;
    posted *post_head, *post_tail;
    struct event *post_ev;
    /* signals */
    struct event *sig_term, *sig_int, *sig_hup;
    /* shutdown */
    int stopping, exit_code;
    double shutdown_deadline; /* seconds after stop is requested */
    struct event *shutdown_ev, *shutdown_poll;
    stop_hook *stop_hooks;
    void (*on_reload)(void);
};

static ae_engine eng;
static int engine_ready;

ae_engine *ae_engine_get(void) { return &eng; }
struct event_base *ae_engine_base(void) {
    return engine_ready ? eng.base : NULL;
}

/* ------------------------------------------------------------ ready queue */

static void queue_append(ae_task **head, ae_task **tail, ae_task *t) {
    ae_task_retain(t); /* the queue's reference, dropped after the resume */
    ae_task_set_ready_next(t, NULL);
    if (*tail)
        ae_task_set_ready_next(*tail, t);
    else
        *head = t;
    *tail = t;
}

void ae_engine_schedule(ae_task *t) {
    queue_append(&eng.ready_head, &eng.ready_tail, t);
    if (!eng.in_ready) event_active(eng.ready_ev, EV_TIMEOUT, 0);
}

void ae_engine_schedule_yielded(ae_task *t) {
    if (!eng.in_ready) {
        ae_engine_schedule(t);
        return;
    }
    queue_append(&eng.yielded_head, &eng.yielded_tail, t);
}

int ae_engine_has_ready(void) { return eng.ready_head != NULL || eng.yielded_head != NULL; }

/* A turn of the ready queue ends, and the loop polls, once it has resumed
 * this many tasks or run this long: the engine's own deferred work (a
 * drained unit's close, libevent's zero-timeout events) and I/O wait at most
 * that long for a chain of tasks handing over to each other. */
#define RESUMES_PER_TURN 1024
#define TURN_SECONDS 0.001

static void on_ready(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
    /* A turn resumes the tasks spawned or woken so far and those spawned or
     * woken by them (a chain of hand-overs costs no poll), up to
     * RESUMES_PER_TURN or TURN_SECONDS; a task that yields (task.yield) waits for the next
     * turn, after a poll with a zero timeout, so I/O is served between. Not
     * event_active for that: libevent runs an event activated from a callback
     * in the same pass, so a task that yields in a loop would keep the loop from
     * ever polling, and the writes it queued would wait for its end. */
    static const struct timeval next_round = {0, 0};
    eng.in_ready = 1;
    double until = ae_clock_monotonic() + TURN_SECONDS;
    for (int n = 0; eng.ready_head && n < RESUMES_PER_TURN && (n == 0 || ae_clock_monotonic() < until); n++) {
        ae_task *t = eng.ready_head;
        eng.ready_head = ae_task_ready_next(t);
        if (!eng.ready_head) eng.ready_tail = NULL;
        ae_task_resume_now(t);
        ae_task_release(t);
    }
    eng.in_ready = 0;
    if (eng.yielded_head) { /* behind anything still ready */
        if (eng.ready_tail)
            ae_task_set_ready_next(eng.ready_tail, eng.yielded_head);
        else
            eng.ready_head = eng.yielded_head;
        eng.ready_tail = eng.yielded_tail;
        eng.yielded_head = eng.yielded_tail = NULL;
    }
    if (eng.ready_head) event_add(eng.ready_ev, &next_round);
}

/* ------------------------------------------------------- posted from threads */

void ae_engine_post(void (*fn)(void *), void *arg) {
    posted *p = malloc(sizeof *p);
    if (!p) abort();
    p->fn = fn;
    p->arg = arg;
    p->next = NULL;
    pthread_mutex_lock(&eng.post_lock);
    if (eng.post_tail)
        eng.post_tail->next = p;
    else
        eng.post_head = p;
    eng.post_tail = p;
    pthread_mutex_unlock(&eng.post_lock);
    event_active(eng.post_ev, EV_READ, 0); /* thread-safe: evthread enabled */
}

static void on_posted(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
    pthread_mutex_lock(&eng.post_lock);
    posted *p = eng.post_head;
    eng.post_head = eng.post_tail = NULL;
    pthread_mutex_unlock(&eng.post_lock);
    while (p) {
        posted *n = p->next;
        p->fn(p->arg);
        free(p);
        p = n;
    }
}

/* ---------------------------------------------------------------- stopping */

void ae_engine_on_stop(ae_hook_fn fn, void *arg) {
    stop_hook *h = malloc(sizeof *h);
    if (!h) abort();
    h->fn = fn;
    h->arg = arg;
    h->next = eng.stop_hooks;
    eng.stop_hooks = h;
}

int ae_engine_stopping(void) { return eng.stopping; }

/* At the shutdown deadline: which tasks and held resources kept the engine
 * (at most `max` lines), so an operator can tell a slow vendor call from a
 * stuck loop. */
typedef struct {
    const char *unit;
    int shown, max;
} live_log;

static void log_live_task(const ae_task_info *t, void *ud) {
    live_log *l = ud;
    if (l->shown++ >= l->max) return;
    ae_log(AE_LOG_WARNING, l->unit, 0, "still running at the deadline: task '%s' (%s, waiting on %s, %.1f s old)",
           t->name, t->state, t->wait, t->age);
}

static void log_live_tasks(int max) {
    live_log l = {NULL, 0, max};
    for (ae_unit *u = ae_engine_units(); u && l.shown < max; u = u->next) {
        l.unit = u->name;
        ae_task_each(u, log_live_task, &l);
        for (ae_resource *r = u->holds.next; r != &u->holds && l.shown < max; r = r->next, l.shown++)
            ae_log(AE_LOG_WARNING, u->name, 0, "still open at the deadline: %s", r->kind);
    }
}

static void finish(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
    int live = ae_units_live_tasks();
    if (live > 0) {
        AE_LOG_ENGINE(AE_LOG_WARNING, "shutdown deadline reached with %d task(s) still running; exiting", live);
        log_live_tasks(20);
    }
    event_base_loopbreak(eng.base);
}

static void poll_drained(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
    if (ae_units_live_tasks() == 0) {
        AE_LOG_ENGINE(AE_LOG_INFO, "all tasks finished; exiting with code %d", eng.exit_code);
        event_base_loopbreak(eng.base);
    }
}

void ae_engine_stop(int exit_code) {
    if (eng.stopping) return;
    eng.stopping = 1;
    eng.exit_code = exit_code;
    for (stop_hook *h = eng.stop_hooks; h; h = h->next)
        h->fn(h->arg);
    ae_units_drain_all();
    struct timeval tv = {(time_t)eng.shutdown_deadline,
                         (suseconds_t)((eng.shutdown_deadline - (double)(time_t)eng.shutdown_deadline) * 1e6)};
    eng.shutdown_ev = evtimer_new(eng.base, finish, NULL);
    evtimer_add(eng.shutdown_ev, &tv);
    struct timeval poll = {0, 10000};
    eng.shutdown_poll = event_new(eng.base, -1, EV_PERSIST, poll_drained, NULL);
    event_add(eng.shutdown_poll, &poll);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    (void)arg;
    if (sig == SIGHUP) {
        AE_LOG_ENGINE(AE_LOG_INFO, "SIGHUP: reloading changed scripts");
        if (eng.on_reload) eng.on_reload();
        return;
    }
    if (eng.stopping) {
        AE_LOG_ENGINE(AE_LOG_WARNING, "second stop signal: exiting now");
        event_base_loopbreak(eng.base);
        return;
    }
    AE_LOG_ENGINE(AE_LOG_INFO, "%s: stopping intake, waiting up to %.1f s for running tasks",
                  sig == SIGTERM ? "SIGTERM" : "SIGINT", eng.shutdown_deadline);
    ae_engine_stop(0);
}

void ae_engine_set_reload_handler(void (*fn)(void)) { eng.on_reload = fn; }
void ae_engine_set_shutdown_deadline(double seconds) { eng.shutdown_deadline = seconds; }

/* ------------------------------------------------------------ lifecycle */

int ae_engine_init(void) {
    memset(&eng, 0, sizeof eng);
    eng.shutdown_deadline = 30.0;
    /* libevent allocates with calloc (request objects, header entries, buffer
     * chains: several per HTTP request), and glibc's calloc skips the
     * per-thread cache and takes the slow path every time (a tenth of a busy
     * HTTP server's CPU). Through these hooks its calloc is malloc + memset.
     * Set before libevent allocates anything; the same free either way. */
    event_set_mem_functions(malloc, realloc, free);
    evthread_use_pthreads();
    /* The epoll changelist folds the add/del pairs one loop iteration makes
     * on a socket (evhttp enables and disables writing around every reply,
     * libcurl flips its sockets between read and write) into one epoll_ctl. */
    struct event_config *cfg = event_config_new();
    if (cfg) event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    eng.base = cfg ? event_base_new_with_config(cfg) : NULL;
    if (cfg) event_config_free(cfg);
    if (!eng.base) eng.base = event_base_new();
    if (!eng.base) return -1;
    pthread_mutex_init(&eng.post_lock, NULL);
    eng.ready_ev = event_new(eng.base, -1, 0, on_ready, NULL);
    eng.post_ev = event_new(eng.base, -1, 0, on_posted, NULL);
    eng.sig_term = evsignal_new(eng.base, SIGTERM, on_signal, NULL);
    eng.sig_int = evsignal_new(eng.base, SIGINT, on_signal, NULL);
    eng.sig_hup = evsignal_new(eng.base, SIGHUP, on_signal, NULL);
    evsignal_add(eng.sig_term, NULL);
    evsignal_add(eng.sig_int, NULL);
    evsignal_add(eng.sig_hup, NULL);
    signal(SIGPIPE, SIG_IGN);
    engine_ready = 1;
    return 0;
}

int ae_engine_run(void) {
    event_base_dispatch(eng.base);
    return eng.exit_code;
}

void ae_engine_free(void) {
    event_free(eng.ready_ev);
    event_free(eng.post_ev);
    event_free(eng.sig_term);
    event_free(eng.sig_int);
    event_free(eng.sig_hup);
    if (eng.shutdown_ev) event_free(eng.shutdown_ev);
    if (eng.shutdown_poll) event_free(eng.shutdown_poll);
    while (eng.stop_hooks) {
        stop_hook *n = eng.stop_hooks->next;
        free(eng.stop_hooks);
        eng.stop_hooks = n;
    }
    engine_ready = 0;
    event_base_free(eng.base);
    pthread_mutex_destroy(&eng.post_lock);
}
