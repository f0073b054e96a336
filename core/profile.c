/* profile.c - a sampling profiler of the Lua code of every unit.
 *
 * Off unless the environment names an output file: AE_PROFILE=/tmp/prof.txt
 * (AE_PROFILE_HZ = samples per second of the loop thread's CPU time, default
 * 1000). A CPU-time timer of the loop thread (timer_create on its
 * CLOCK_THREAD_CPUTIME_ID, signal SIGPROF to that thread) fires; if a task
 * is running Lua at that moment, the handler arms a one-shot count hook on
 * it (lua_sethook may be called from a signal handler) and the hook records
 * where the task is: the innermost frames as "source:line" under the unit's
 * name, then puts the task's normal hook back (task.c). Otherwise the sample
 * is counted as "outside Lua" (libevent, libcurl, nats.c dispatch, idle CPU
 * of the loop thread's own work). Time spent in a C function called from Lua
 * (JSON, a binding) is charged to the Lua line that called it.
 *
 * At engine exit the file gets two tables, hottest first: samples per line
 * (innermost frame) and per stack (up to PROFILE_DEPTH frames, innermost
 * first). See docs/operating.md, Profiling.
 */
#define _GNU_SOURCE
#include "engine.h"
#include "log.h"
#include "profile.h"
#include "watchdog.h"

#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROFILE_DEPTH 4
#define KEY_MAX 512

typedef struct psample {
    char *key;
    unsigned long count;
    struct psample *next;
} psample;

typedef struct {
    psample **slots;
    size_t nslots, n;
} ptable;

static char *out_path;
static int hz;
static unsigned long total;         /* samples recorded in Lua */
static volatile long outside;       /* timer ticks while no task ran Lua */
static lua_State *volatile current; /* the task thread inside lua_resume, if any */
static timer_t timer;
static ptable stacks, lines;

static unsigned long hash(const char *s) {
    unsigned long h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h;
}

static void table_grow(ptable *t) {
    size_t n = t->nslots ? t->nslots * 2 : 1024;
    psample **slots = calloc(n, sizeof *slots);
    if (!slots) return;
    for (size_t i = 0; i < t->nslots; i++) {
        psample *p = t->slots[i];
        while (p) {
            psample *next = p->next;
            size_t j = hash(p->key) & (n - 1);
            p->next = slots[j];
            slots[j] = p;
            p = next;
        }
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = n;
}

static void table_count(ptable *t, const char *key) {
    if (t->n >= t->nslots * 2) table_grow(t);
    if (!t->slots) return;
    size_t i = hash(key) & (t->nslots - 1);
    for (psample *p = t->slots[i]; p; p = p->next)
        if (strcmp(p->key, key) == 0) {
            p->count++;
            return;
        }
    psample *p = malloc(sizeof *p);
    if (!p || !(p->key = strdup(key))) {
        free(p);
        return;
    }
    p->count = 1;
    p->next = t->slots[i];
    t->slots[i] = p;
    t->n++;
}

static void profile_sample(lua_State *L, const char *unit) {
    char key[KEY_MAX], line[KEY_MAX];
    size_t len = (size_t)snprintf(key, sizeof key, "%s ", unit);
    line[0] = 0;
    lua_Debug ar;
    int depth = 0;
    for (int level = 0; depth < PROFILE_DEPTH && lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar)) break;
        char frame[160];
        if (ar.currentline > 0)
            snprintf(frame, sizeof frame, "%s:%d", ar.short_src, ar.currentline);
        else
            snprintf(frame, sizeof frame, "[%s]", ar.what);
        if (depth == 0) snprintf(line, sizeof line, "%s %s", unit, frame);
        if (len < sizeof key) len += (size_t)snprintf(key + len, sizeof key - len, "%s%s", depth ? " < " : "", frame);
        depth++;
    }
    if (depth == 0) return;
    total++;
    table_count(&stacks, key);
    table_count(&lines, line);
}

static int by_count(const void *a, const void *b) {
    const psample *x = *(const psample *const *)a, *y = *(const psample *const *)b;
    return x->count < y->count ? 1 : x->count > y->count ? -1 : strcmp(x->key, y->key);
}

static void write_table(FILE *f, const char *title, ptable *t) {
    psample **all = malloc((t->n + 1) * sizeof *all);
    size_t n = 0;
    if (!all) return;
    for (size_t i = 0; i < t->nslots; i++)
        for (psample *p = t->slots[i]; p; p = p->next)
            all[n++] = p;
    qsort(all, n, sizeof *all, by_count);
    double all_samples = (double)total + (double)outside;
    fprintf(f, "\n## %s\n%10s %6s  %s\n", title, "samples", "%", "unit, frames");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%10lu %6.2f  %s\n", all[i]->count,
                all_samples > 0 ? 100.0 * (double)all[i]->count / all_samples : 0.0, all[i]->key);
    free(all);
}

static void table_free(ptable *t) {
    for (size_t i = 0; i < t->nslots; i++) {
        psample *p = t->slots[i];
        while (p) {
            psample *next = p->next;
            free(p->key);
            free(p);
            p = next;
        }
    }
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* The instruction budget while profiling. lua_sethook resets the count, so
 * task.c's budget hook (one count hook of the whole budget) restarted from
 * zero after every sample and a runaway task was never stopped. Here the
 * budget of the running task is counted in chunks; a sample loses at most the
 * rest of one chunk (< BUDGET_CHUNK instructions, against the ~1 ms of Lua
 * between two samples). budget_left < 0: the unit has no budget. */
#define BUDGET_CHUNK 1000
static long budget_left = -1;

static void budget_chunk_hook(lua_State *L, lua_Debug *ar);

static void arm_budget(lua_State *L) {
    if (budget_left < 0)
        lua_sethook(L, NULL, 0, 0); /* no budget: no hook, as a task runs (watchdog.c) */
    else
        lua_sethook(L, budget_chunk_hook, LUA_MASKCOUNT,
                    (int)(budget_left < BUDGET_CHUNK ? budget_left : BUDGET_CHUNK));
}

static void budget_chunk_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    budget_left -= lua_gethookcount(L);
    if (budget_left <= 0) ae_watchdog_budget_exceeded(L);
    arm_budget(L);
}

/* The one-shot hook armed by on_tick: one sample, then the budget again. */
static void sample_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    profile_sample(L, ae_unit_of(L)->name);
    arm_budget(L);
}

static void on_tick(int sig) {
    (void)sig;
    lua_State *L = current;
    if (L)
        lua_sethook(L, sample_hook, LUA_MASKCOUNT, 1);
    else
        outside++;
}

lua_State *ae_profile_enter(lua_State *co) {
    lua_State *was = current;
    if (co && out_path) { /* before current = co: on_tick cannot hook co yet */
        long b = ae_unit_of(co)->instr_budget;
        budget_left = b > 0 ? b : -1;
        if (b > 0) arm_budget(co);
    }
    current = co;
    return was;
}

void ae_profile_write(void) {
    if (!out_path) return;
    timer_delete(timer);
    signal(SIGPROF, SIG_IGN);
    current = NULL;
    FILE *f = fopen(out_path, "w");
    if (!f) {
        ae_log(AE_LOG_ERROR, "engine", 0, "profile: cannot write %s", out_path);
    } else {
        double all_samples = (double)total + (double)outside;
        fprintf(f,
                "# aengine Lua profile: %.0f samples of the loop thread's CPU time at %d Hz; in Lua: %lu (%.1f %%), "
                "outside Lua: %ld\n",
                all_samples, hz, total, all_samples > 0 ? 100.0 * (double)total / all_samples : 0.0, outside);
        write_table(f, "by line (innermost frame)", &lines);
        write_table(f, "by stack (innermost first)", &stacks);
        fclose(f);
        ae_log(AE_LOG_INFO, "engine", 0, "profile: %lu samples written to %s", total, out_path);
    }
    table_free(&stacks);
    table_free(&lines);
    free(out_path);
    out_path = NULL;
}

void ae_profile_init(void) {
    const char *path = getenv("AE_PROFILE");
    if (!path || !*path) return;
    const char *h = getenv("AE_PROFILE_HZ");
    hz = h && atoi(h) > 0 ? atoi(h) : 1000;
    if (hz > 100000) hz = 100000;
    if (ae_loop_cpu_timer(SIGPROF, on_tick, 1000000000L / hz, &timer) != 0) {
        ae_log(AE_LOG_ERROR, "engine", 0, "profile: cannot start the profiling timer; profiler off");
        return;
    }
    out_path = strdup(path);
    ae_watchdog_pause(1); /* the budget is counted here while profiling */
    ae_log(AE_LOG_INFO, "engine", 0, "profile: sampling the loop thread at %d Hz into %s", hz, out_path);
}
