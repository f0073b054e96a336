/* clock.c - the engine clock and the timer heap.
 *
 * Every time-based wait in Lua (sleep, timers, request timeouts) is an
 * ae_timer on the engine clock, kept in one binary min-heap. A single libevent
 * timer is armed for the earliest deadline. This is what lets specs run a
 * 10-minute cycle instantly: with a manual clock, time only moves when a spec
 * advances it, and the due timers fire in deadline order.
 *
 * Real mode: now = start + offset + rate * (monotonic - monotonic_at_start),
 * where start is the wall clock at boot unless AE_CLOCK_START says otherwise.
 */
#define _POSIX_C_SOURCE 200809L
#include "engine.h"
#include "log.h"

#include <event2/event.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double ae_time_parse_iso(const char *s, int *ok); /* time.c */

static struct {
    double start_epoch; /* engine time at mono_start */
    double mono_start;
    double rate;
    int manual;
    double manual_now;
    ae_timer **heap;
    size_t len, cap;
    struct event *ev;
    int firing;
} clk = {0, 0, 1.0, 0, 0, NULL, 0, 0, NULL, 0};

double ae_clock_monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double ae_clock_now(void) {
    if (clk.manual) return clk.manual_now;
    return clk.start_epoch + clk.rate * (ae_clock_monotonic() - clk.mono_start);
}

int ae_clock_is_manual(void) { return clk.manual; }

static void rearm(void);

void ae_clock_set_manual(int manual, double at) {
    if (manual) {
        clk.manual_now = at > 0 ? at : ae_clock_now();
        clk.manual = 1;
    } else if (clk.manual) {
        /* continue in real time from where the manual clock stood */
        clk.start_epoch = clk.manual_now;
        clk.mono_start = ae_clock_monotonic();
        clk.rate = 1.0;
        clk.manual = 0;
    }
    rearm();
}

void ae_clock_set(double t) {
    if (!clk.manual) return;
    if (t > clk.manual_now) clk.manual_now = t;
    rearm();
}

/* Reads AE_CLOCK_START (ISO-8601 or epoch seconds), AE_CLOCK_OFFSET (seconds,
 * may be negative), AE_CLOCK_RATE (> 0, e.g. 60 = one minute per second) and
 * AE_CLOCK_MANUAL (1 = frozen until advanced, for black-box tests). */
void ae_clock_init(void) {
    clk.mono_start = ae_clock_monotonic();
    clk.start_epoch = wall_now();
    const char *s = getenv("AE_CLOCK_START");
    if (s && *s) {
        int ok = 0;
        double t = ae_time_parse_iso(s, &ok);
        if (!ok) {
            char *end;
            t = strtod(s, &end);
            ok = (*end == '\0');
        }
        if (ok)
            clk.start_epoch = t;
        else
            AE_LOG_ENGINE(AE_LOG_ERROR, "AE_CLOCK_START=%s is neither ISO-8601 nor epoch seconds; ignored", s);
    }
    s = getenv("AE_CLOCK_OFFSET");
    if (s && *s) clk.start_epoch += strtod(s, NULL);
    s = getenv("AE_CLOCK_RATE");
    if (s && *s) {
        double r = strtod(s, NULL);
        if (r > 0)
            clk.rate = r;
        else
            AE_LOG_ENGINE(AE_LOG_ERROR, "AE_CLOCK_RATE=%s must be > 0; ignored", s);
    }
    s = getenv("AE_CLOCK_MANUAL");
    if (s && strcmp(s, "1") == 0) {
        clk.manual = 1;
        clk.manual_now = clk.start_epoch;
    }
}

/* ------------------------------------------------------------ heap */

static int earlier(const ae_timer *a, const ae_timer *b) { return a->deadline < b->deadline; }

static void heap_set(size_t i, ae_timer *t) {
    clk.heap[i] = t;
    t->heap_index = i;
}

static void sift_up(size_t i) {
    ae_timer *t = clk.heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!earlier(t, clk.heap[p])) break;
        heap_set(i, clk.heap[p]);
        i = p;
    }
    heap_set(i, t);
}

static void sift_down(size_t i) {
    ae_timer *t = clk.heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        ae_timer *best = t;
        if (l < clk.len && earlier(clk.heap[l], best)) {
            m = l;
            best = clk.heap[l];
        }
        if (r < clk.len && earlier(clk.heap[r], best)) {
            m = r;
            best = clk.heap[r];
        }
        if (m == i) break;
        heap_set(i, clk.heap[m]);
        i = m;
    }
    heap_set(i, t);
}

void ae_timer_init(ae_timer *t, void (*fire)(ae_timer *), void *data) {
    t->deadline = 0;
    t->heap_index = (size_t)-1;
    t->fire = fire;
    t->data = data;
}

int ae_timer_armed(const ae_timer *t) { return t->heap_index != (size_t)-1; }

void ae_timer_stop(ae_timer *t) {
    if (!ae_timer_armed(t)) return;
    size_t i = t->heap_index;
    t->heap_index = (size_t)-1;
    clk.len--;
    if (i != clk.len) {
        heap_set(i, clk.heap[clk.len]);
        sift_down(i);
        sift_up(clk.heap[i]->heap_index);
    }
    if (!clk.firing) rearm();
}

void ae_timer_start(ae_timer *t, double deadline) {
    if (ae_timer_armed(t)) ae_timer_stop(t);
    if (clk.len == clk.cap) {
        size_t ncap = clk.cap ? clk.cap * 2 : 64;
        ae_timer **nh = realloc(clk.heap, ncap * sizeof *nh);
        if (!nh) abort(); /* out of memory in the core: nothing sane to do */
        clk.heap = nh;
        clk.cap = ncap;
    }
    t->deadline = deadline;
    heap_set(clk.len, t);
    clk.len++;
    sift_up(clk.len - 1);
    if (!clk.firing) rearm();
}

double ae_timer_next_deadline(void) { return clk.len ? clk.heap[0]->deadline : -1; }

/* Fire every timer whose deadline has passed, earliest first. */
static void fire_due(void) {
    double now = ae_clock_now();
    clk.firing = 1;
    while (clk.len && clk.heap[0]->deadline <= now) {
        ae_timer *t = clk.heap[0];
        clk.firing = 1;
        ae_timer_stop(t);
        t->fire(t); /* may start or stop timers */
        if (clk.manual) now = ae_clock_now();
    }
    clk.firing = 0;
}

static void on_event(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
    fire_due();
    rearm();
}

static void rearm(void) {
    struct event_base *base = ae_engine_base();
    if (!base) return;
    if (!clk.ev) clk.ev = evtimer_new(base, on_event, NULL);
    evtimer_del(clk.ev);
    if (!clk.len) return;
    double wait = clk.heap[0]->deadline - ae_clock_now();
    if (clk.manual && wait > 0) return; /* manual time: only advancing fires */
    if (wait < 0) wait = 0;
    if (!clk.manual) wait /= clk.rate;
    if (wait > 86400.0 * 30) wait = 86400.0 * 30;
    struct timeval tv;
    tv.tv_sec = (time_t)wait;
    tv.tv_usec = (suseconds_t)((wait - (double)tv.tv_sec) * 1e6);
    evtimer_add(clk.ev, &tv);
}

void ae_clock_shutdown(void) {
    if (clk.ev) event_free(clk.ev);
    clk.ev = NULL;
    free(clk.heap);
    clk.heap = NULL;
    clk.len = clk.cap = 0;
}
