/* metrics.c - the process-global Prometheus registry: counters, gauges and
 * histograms with labels, rendered in the text exposition format 0.0.4 the
 * way the original services' prometheus_client (0.6) printed it:
 *   - a counter "X" is exposed as "X_total" (HELP/TYPE on X_total) followed by
 *     a gauge "X_created" (Unix time the series was created);
 *   - values are Python floats (3.0, 4.21, 1.6139952e+09);
 *   - histograms: X_bucket{le=...} (cumulative), X_count, X_sum, X_created.
 * Also: the engine.h hooks ae_metric_inc/set/observe used by the core and the
 * bindings, gauges of every unit computed at scrape time, the readiness
 * status providers, and the Lua module "ae.core.metrics" (ae/metrics.lua
 * builds the metric objects on it).
 */
#define _POSIX_C_SOURCE 200809L
#include "metrics.h"
#include "engine.h"
#include "log.h"
#include "strbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct series {
    char *key;     /* label values joined with \x1f, for lookup */
    char **values; /* nlabels strings */
    double value;  /* counter / gauge */
    double sum, count;
    double *bucket_counts; /* non-cumulative, nbuckets + 1 (+Inf) */
    double created;
    struct series *hnext, *next;
} series;

struct ae_metric_family {
    char *name; /* base name (a counter without _total) */
    char *help;
    ae_metric_type type;
    int nlabels;
    char **labels;
    int nbuckets;
    double *buckets;
    series **table;
    size_t tsize, nseries;
    series *first, *last;
    int warned;
    struct ae_metric_family *next, *hnext;
};

#define FAMILY_BUCKETS 256
static ae_metric_family *families, *families_last;
static ae_metric_family *family_table[FAMILY_BUCKETS];

static const double default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
                                         0.5,   0.75, 1.0,   2.5,  5.0,   7.5, 10.0};

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* vsnprintf: truncation of long names in messages is intended */
static void fmt_to(char *out, size_t n, const char *fmt, ...) AE_PRINTF(3, 4);
static void fmt_to(char *out, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}

static char *xstrdup(const char *s) {
    char *d = strdup(s ? s : "");
    if (!d) abort();
    return d;
}

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz);
    if (!p) abort();
    return p;
}

/* ------------------------------------------------------------- names */

static int valid_metric_name(const char *s) {
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++) {
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':' ||
                 (p != s && *p >= '0' && *p <= '9');
        if (!ok) return 0;
    }
    return 1;
}

static int valid_label_name(const char *s) {
    if (!s || !*s || strncmp(s, "__", 2) == 0) return 0;
    for (const char *p = s; *p; p++) {
        int ok =
            (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || (p != s && *p >= '0' && *p <= '9');
        if (!ok) return 0;
    }
    return 1;
}

static const char *type_name(ae_metric_type t) {
    switch (t) {
    case AE_METRIC_COUNTER: return "counter";
    case AE_METRIC_GAUGE: return "gauge";
    default: return "histogram";
    }
}

/* base name of a counter: without a trailing _total */
static void base_name(ae_metric_type type, const char *name, char *out, size_t n) {
    snprintf(out, n, "%s", name);
    size_t len = strlen(out);
    if (type == AE_METRIC_COUNTER && len > 6 && strcmp(out + len - 6, "_total") == 0) out[len - 6] = '\0';
}

static ae_metric_family *find_base(const char *base) {
    for (ae_metric_family *f = family_table[fnv(base) % FAMILY_BUCKETS]; f; f = f->hnext)
        if (strcmp(f->name, base) == 0) return f;
    return NULL;
}

ae_metric_family *ae_metrics_find(const char *name) {
    ae_metric_family *f = find_base(name);
    if (f) return f;
    char b[256];
    base_name(AE_METRIC_COUNTER, name, b, sizeof b);
    f = find_base(b);
    return f && f->type == AE_METRIC_COUNTER ? f : NULL;
}

ae_metric_type ae_metrics_type(const ae_metric_family *f) { return f->type; }
int ae_metrics_nlabels(const ae_metric_family *f) { return f->nlabels; }
const char *ae_metrics_label(const ae_metric_family *f, int i) {
    return i >= 0 && i < f->nlabels ? f->labels[i] : NULL;
}

/* ------------------------------------------------------------- series */

/* The series key: the label values joined by \x1f. Written into buf when it
 * fits (the common case: no allocation per update), else into fresh memory. */
static char *join_key(int n, const char *const *values, char *buf, size_t bufsize) {
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(values[i]) + 1;
    char *k = len <= bufsize ? buf : xcalloc(len, 1);
    char *p = k;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(values[i]);
        memcpy(p, values[i], l);
        p += l;
        *p++ = '\x1f';
    }
    *p = '\0';
    return k;
}

static series *lookup(ae_metric_family *f, const char *const *values, int create) {
    char buf[256];
    char *key = join_key(f->nlabels, values, buf, sizeof buf);
    size_t h = f->tsize ? fnv(key) % f->tsize : 0;
    for (series *s = f->tsize ? f->table[h] : NULL; s; s = s->hnext) {
        if (strcmp(s->key, key) == 0) {
            if (key != buf) free(key);
            return s;
        }
    }
    if (!create) {
        if (key != buf) free(key);
        return NULL;
    }
    if (key == buf) key = xstrdup(buf);
    if (f->nseries + 1 > f->tsize) { /* grow: keep chains short */
        size_t nsize = f->tsize ? f->tsize * 2 : 8;
        series **nt = xcalloc(nsize, sizeof *nt);
        for (series *s = f->first; s; s = s->next) {
            size_t k = fnv(s->key) % nsize;
            s->hnext = nt[k];
            nt[k] = s;
        }
        free(f->table);
        f->table = nt;
        f->tsize = nsize;
        h = fnv(key) % f->tsize;
    }
    series *s = xcalloc(1, sizeof *s);
    s->key = key;
    s->values = xcalloc((size_t)f->nlabels + 1, sizeof *s->values);
    for (int i = 0; i < f->nlabels; i++)
        s->values[i] = xstrdup(values[i]);
    if (f->type == AE_METRIC_HISTOGRAM) s->bucket_counts = xcalloc((size_t)f->nbuckets + 1, sizeof(double));
    s->created = ae_clock_now();
    s->hnext = f->table[h];
    f->table[h] = s;
    if (f->last)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    f->nseries++;
    return s;
}

static void free_series(ae_metric_family *f, series *s) {
    for (int i = 0; i < f->nlabels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->key);
    free(s->bucket_counts);
    free(s);
}

int ae_metrics_remove(ae_metric_family *f, const char *const *values) {
    series *s = lookup(f, values, 0);
    if (!s) return 0;
    size_t h = fnv(s->key) % f->tsize;
    for (series **pp = &f->table[h]; *pp; pp = &(*pp)->hnext)
        if (*pp == s) {
            *pp = s->hnext;
            break;
        }
    series *prev = NULL;
    for (series *it = f->first; it; prev = it, it = it->next)
        if (it == s) {
            if (prev)
                prev->next = s->next;
            else
                f->first = s->next;
            if (f->last == s) f->last = prev;
            break;
        }
    f->nseries--;
    free_series(f, s);
    return 1;
}

void ae_metrics_clear(ae_metric_family *f) {
    series *s = f->first;
    while (s) {
        series *n = s->next;
        free_series(f, s);
        s = n;
    }
    f->first = f->last = NULL;
    f->nseries = 0;
    if (f->table) memset(f->table, 0, f->tsize * sizeof *f->table);
    if (f->nlabels == 0) lookup(f, NULL, 1); /* an unlabelled metric always has its series */
}

/* ------------------------------------------------------------- declare */

ae_metric_family *ae_metrics_declare(ae_metric_type type, const char *name, const char *help, int nlabels,
                                     const char *const *labels, int nbuckets, const double *buckets, char *err,
                                     size_t errlen) {
    char base[256];
    if (!valid_metric_name(name) || strlen(name) >= sizeof base) {
        fmt_to(err, errlen, "invalid metric name '%s' (letters, digits, '_' and ':', not starting with a digit)",
               name ? name : "");
        return NULL;
    }
    if (nlabels < 0 || nlabels > AE_METRIC_MAX_LABELS) {
        fmt_to(err, errlen, "metric '%s': at most %d labels", name, AE_METRIC_MAX_LABELS);
        return NULL;
    }
    for (int i = 0; i < nlabels; i++) {
        if (!valid_label_name(labels[i])) {
            fmt_to(err, errlen, "metric '%s': invalid label name '%s'", name, labels[i] ? labels[i] : "");
            return NULL;
        }
        if (type == AE_METRIC_HISTOGRAM && strcmp(labels[i], "le") == 0) {
            fmt_to(err, errlen, "metric '%s': a histogram cannot have a label named 'le'", name);
            return NULL;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(labels[i], labels[j]) == 0) {
                fmt_to(err, errlen, "metric '%s': duplicate label name '%s'", name, labels[i]);
                return NULL;
            }
    }
    if (!buckets) {
        buckets = default_buckets;
        nbuckets = (int)(sizeof default_buckets / sizeof default_buckets[0]);
    }
    if (type == AE_METRIC_HISTOGRAM) {
        if (nbuckets < 1 || nbuckets > AE_METRIC_MAX_BUCKETS) {
            fmt_to(err, errlen, "histogram '%s': between 1 and %d buckets", name, AE_METRIC_MAX_BUCKETS);
            return NULL;
        }
        for (int i = 0; i < nbuckets; i++) {
            if (isnan(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1]))) {
                fmt_to(err, errlen, "histogram '%s': buckets must be increasing numbers", name);
                return NULL;
            }
        }
        if (isinf(buckets[nbuckets - 1]) && buckets[nbuckets - 1] > 0) nbuckets--; /* +Inf is implicit */
    }
    base_name(type, name, base, sizeof base);
    ae_metric_family *f = find_base(base);
    if (f) {
        if (f->type != type) {
            fmt_to(err, errlen, "metric '%s' already exists as a %s (declared here as a %s)", base, type_name(f->type),
                   type_name(type));
            return NULL;
        }
        int same = f->nlabels == nlabels;
        for (int i = 0; same && i < nlabels; i++)
            same = strcmp(f->labels[i], labels[i]) == 0;
        if (!same) {
            fmt_to(err, errlen, "metric '%s' already exists with other label names", base);
            return NULL;
        }
        return f;
    }
    /* the names it would expose must not collide with another family's */
    static const char *const sfx_counter[] = {"_total", "_created", NULL};
    static const char *const sfx_gauge[] = {"", NULL};
    static const char *const sfx_hist[] = {"", "_bucket", "_count", "_sum", "_created", NULL};
    const char *const *mine = type == AE_METRIC_COUNTER ? sfx_counter : type == AE_METRIC_GAUGE ? sfx_gauge : sfx_hist;
    for (ae_metric_family *o = families; o; o = o->next) {
        const char *const *theirs = o->type == AE_METRIC_COUNTER ? sfx_counter
                                    : o->type == AE_METRIC_GAUGE ? sfx_gauge
                                                                 : sfx_hist;
        for (int i = 0; mine[i]; i++)
            for (int j = 0; theirs[j]; j++) {
                char a[300], b[300];
                snprintf(a, sizeof a, "%s%s", base, mine[i]);
                snprintf(b, sizeof b, "%s%s", o->name, theirs[j]);
                if (strcmp(a, b) == 0) {
                    fmt_to(err, errlen, "metric '%s' would expose '%s', already exposed by the %s '%s'", name, a,
                           type_name(o->type), o->name);
                    return NULL;
                }
            }
    }
    ae_engine_at_exit(ae_metrics_free_all);
    f = xcalloc(1, sizeof *f);
    f->name = xstrdup(base);
    f->help = xstrdup(help);
    f->type = type;
    f->nlabels = nlabels;
    f->labels = xcalloc((size_t)nlabels + 1, sizeof *f->labels);
    for (int i = 0; i < nlabels; i++)
        f->labels[i] = xstrdup(labels[i]);
    if (type == AE_METRIC_HISTOGRAM) {
        f->nbuckets = nbuckets;
        f->buckets = xcalloc((size_t)nbuckets, sizeof(double));
        memcpy(f->buckets, buckets, (size_t)nbuckets * sizeof(double));
    }
    size_t h = fnv(base) % FAMILY_BUCKETS;
    f->hnext = family_table[h];
    family_table[h] = f;
    if (families_last)
        families_last->next = f;
    else
        families = f;
    families_last = f;
    if (nlabels == 0) lookup(f, NULL, 1);
    return f;
}

/* ------------------------------------------------------------- update */

int ae_metrics_add(ae_metric_family *f, const char *const *values, double by) {
    if (f->type == AE_METRIC_HISTOGRAM) return -1;
    if (f->type == AE_METRIC_COUNTER && (by < 0 || isnan(by))) return -1;
    lookup(f, values, 1)->value += by;
    return 0;
}

int ae_metrics_setv(ae_metric_family *f, const char *const *values, double value) {
    if (f->type != AE_METRIC_GAUGE) return -1;
    lookup(f, values, 1)->value = value;
    return 0;
}

int ae_metrics_observev(ae_metric_family *f, const char *const *values, double value) {
    if (f->type != AE_METRIC_HISTOGRAM || isnan(value)) return -1;
    series *s = lookup(f, values, 1);
    int i = 0;
    while (i < f->nbuckets && value > f->buckets[i])
        i++;
    s->bucket_counts[i] += 1;
    s->count += 1;
    s->sum += value;
    return 0;
}

int ae_metrics_get(ae_metric_family *f, const char *const *values, double *value, double *sum) {
    series *s = lookup(f, values, 0);
    if (value) *value = s ? (f->type == AE_METRIC_HISTOGRAM ? s->count : s->value) : 0;
    if (sum) *sum = s ? s->sum : 0;
    return s != NULL;
}

/* ----------------------------------------------- engine.h hooks (C core) */

static ae_metric_family *hook_family(ae_metric_type type, const char *name, const char *help, const char *ln) {
    ae_metric_family *f = ae_metrics_find(name);
    if (!f) {
        char err[256];
        const char *labels[1] = {ln};
        f = ae_metrics_declare(type, name, help, ln ? 1 : 0, labels, 0, NULL, err, sizeof err);
        if (!f) AE_LOG_ENGINE(AE_LOG_ERROR, "metrics: %s", err);
        return f;
    }
    if (f->type != type || f->nlabels != (ln ? 1 : 0) || (ln && strcmp(f->labels[0], ln) != 0)) {
        if (!f->warned)
            AE_LOG_ENGINE(AE_LOG_ERROR, "metrics: '%s' is a %s with %d label(s); update as %s with label '%s' ignored",
                          f->name, type_name(f->type), f->nlabels, type_name(type), ln ? ln : "");
        f->warned = 1;
        return NULL;
    }
    return f;
}

void ae_metric_inc(const char *name, const char *help, const char *label_name, const char *label_value, double by) {
    ae_metric_family *f = hook_family(AE_METRIC_COUNTER, name, help, label_name);
    const char *v[1] = {label_value ? label_value : ""};
    if (f) ae_metrics_add(f, v, by);
}

void ae_metric_set(const char *name, const char *help, const char *label_name, const char *label_value, double value) {
    ae_metric_family *f = hook_family(AE_METRIC_GAUGE, name, help, label_name);
    const char *v[1] = {label_value ? label_value : ""};
    if (f) ae_metrics_setv(f, v, value);
}

void ae_metric_observe(const char *name, const char *help, const char *label_name, const char *label_value,
                       double value) {
    ae_metric_family *f = hook_family(AE_METRIC_HISTOGRAM, name, help, label_name);
    const char *v[1] = {label_value ? label_value : ""};
    if (f) ae_metrics_observev(f, v, value);
}

/* ------------------------------------------------------------- floats */

/* Python's repr(float): the shortest digits that round-trip, fixed notation
 * for exponents in [-4, 16), else d.ddde+XX. */
static void py_repr(double d, char *out, size_t n) {
    if (d == 0) {
        snprintf(out, n, "%s", signbit(d) ? "-0.0" : "0.0");
        return;
    }
    char tmp[64];
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    const char *s = tmp;
    int neg = 0;
    if (*s == '-') {
        neg = 1;
        s++;
    }
    char digits[32];
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9' && nd < 31) digits[nd++] = *s;
    digits[nd] = '\0';
    int exp = *s == 'e' ? atoi(s + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        digits[--nd] = '\0';
    char buf[64];
    size_t k = 0;
    if (neg) buf[k++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp >= 0) {
            for (int i = 0; i <= exp; i++)
                buf[k++] = i < nd ? digits[i] : '0';
            buf[k++] = '.';
            if (exp + 1 < nd)
                for (int i = exp + 1; i < nd; i++)
                    buf[k++] = digits[i];
            else
                buf[k++] = '0';
        } else {
            buf[k++] = '0';
            buf[k++] = '.';
            for (int i = 0; i < -exp - 1; i++)
                buf[k++] = '0';
            for (int i = 0; i < nd; i++)
                buf[k++] = digits[i];
        }
        buf[k] = '\0';
    } else {
        buf[k++] = digits[0];
        if (nd > 1) {
            buf[k++] = '.';
            for (int i = 1; i < nd; i++)
                buf[k++] = digits[i];
        }
        snprintf(buf + k, sizeof buf - k, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    snprintf(out, n, "%s", buf);
}

void ae_metrics_format_float(double d, char *out, size_t n) {
    if (isnan(d)) {
        snprintf(out, n, "NaN");
        return;
    }
    if (isinf(d)) {
        snprintf(out, n, "%s", d > 0 ? "+Inf" : "-Inf");
        return;
    }
    char s[64];
    py_repr(d, s, sizeof s);
    const char *dotp = strchr(s, '.');
    int dot = dotp ? (int)(dotp - s) : -1;
    if (d > 0 && dot > 6) {
        /* Go switches to exponents sooner than Python (prometheus_client's
         * floatToGoString): mantissa d.ddd with trailing '0' and '.' removed */
        char m[64];
        size_t k = 0;
        m[k++] = s[0];
        m[k++] = '.';
        for (int i = 1; i < dot; i++)
            m[k++] = s[i];
        for (const char *p = dotp + 1; *p; p++)
            m[k++] = *p;
        while (k > 0 && (m[k - 1] == '0' || m[k - 1] == '.'))
            k--;
        m[k] = '\0';
        fmt_to(out, n, "%se+0%d", m, dot - 1);
        return;
    }
    snprintf(out, n, "%s", s);
}

typedef struct provider {
    char *name;
    ae_status_fn fn;
    void *arg;
    struct provider *next;
} provider;

static provider *providers;

/* ------------------------------------------------------------- render */

static void sb_escaped(ae_strbuf *b, const char *s, int quote) {
    for (; *s; s++) {
        if (*s == '\\')
            ae_strbuf_addn(b, "\\\\", 2);
        else if (*s == '\n')
            ae_strbuf_addn(b, "\\n", 2);
        else if (quote && *s == '"')
            ae_strbuf_addn(b, "\\\"", 2);
        else
            ae_strbuf_addn(b, s, 1);
    }
}

static void sb_float(ae_strbuf *b, double v) {
    char f[64];
    ae_metrics_format_float(v, f, sizeof f);
    ae_strbuf_add(b, f);
}

/* name{labels[,le="x"]} value\n */
static void sample(ae_strbuf *b, const char *name, const char *suffix, ae_metric_family *f, series *s, const char *le,
                   double v) {
    ae_strbuf_add(b, name);
    ae_strbuf_add(b, suffix);
    if (f->nlabels || le) {
        ae_strbuf_add(b, "{");
        for (int i = 0; i < f->nlabels; i++) {
            if (i) ae_strbuf_add(b, ",");
            ae_strbuf_add(b, f->labels[i]);
            ae_strbuf_add(b, "=\"");
            sb_escaped(b, s->values[i], 1);
            ae_strbuf_add(b, "\"");
        }
        if (le) {
            if (f->nlabels) ae_strbuf_add(b, ",");
            ae_strbuf_add(b, "le=\"");
            ae_strbuf_add(b, le);
            ae_strbuf_add(b, "\"");
        }
        ae_strbuf_add(b, "}");
    }
    ae_strbuf_add(b, " ");
    sb_float(b, v);
    ae_strbuf_add(b, "\n");
}

static void refresh_unit_gauges(void) {
    char err[256];
    const char *lbl[1] = {"unit"};
    ae_metric_family *tasks = ae_metrics_declare(AE_METRIC_GAUGE, "aengine_unit_tasks", "Tasks alive per unit", 1, lbl,
                                                 0, NULL, err, sizeof err);
    ae_metric_family *mem = ae_metrics_declare(AE_METRIC_GAUGE, "aengine_unit_memory_bytes",
                                               "Lua memory in use per unit", 1, lbl, 0, NULL, err, sizeof err);
    if (!tasks || !mem) return;
    ae_metrics_clear(tasks);
    ae_metrics_clear(mem);
    for (ae_unit *u = ae_engine_units(); u; u = u->next) {
        if (u->state == AE_UNIT_STOPPED) continue;
        const char *v[1] = {u->name};
        double cur = 0;
        ae_metrics_get(tasks, v, &cur, NULL); /* two versions during a reload: summed */
        ae_metrics_setv(tasks, v, cur + u->ntasks);
        ae_metrics_get(mem, v, &cur, NULL);
        ae_metrics_setv(mem, v, cur + (double)u->mem_used);
    }
}

char *ae_metrics_render(size_t *len) {
    refresh_unit_gauges();
    ae_strbuf b = {0};
    ae_strbuf_add(&b, "");
    char le[64];
    for (ae_metric_family *f = families; f; f = f->next) {
        char exposed[300];
        snprintf(exposed, sizeof exposed, "%s%s", f->name, f->type == AE_METRIC_COUNTER ? "_total" : "");
        ae_strbuf_add(&b, "# HELP ");
        ae_strbuf_add(&b, exposed);
        ae_strbuf_add(&b, " ");
        sb_escaped(&b, f->help, 0);
        ae_strbuf_add(&b, "\n# TYPE ");
        ae_strbuf_add(&b, exposed);
        ae_strbuf_add(&b, " ");
        ae_strbuf_add(&b, type_name(f->type));
        ae_strbuf_add(&b, "\n");
        for (series *s = f->first; s; s = s->next) {
            if (f->type == AE_METRIC_HISTOGRAM) {
                double acc = 0;
                for (int i = 0; i <= f->nbuckets; i++) {
                    acc += s->bucket_counts[i];
                    if (i < f->nbuckets)
                        ae_metrics_format_float(f->buckets[i], le, sizeof le);
                    else
                        snprintf(le, sizeof le, "+Inf");
                    sample(&b, f->name, "_bucket", f, s, le, acc);
                }
                sample(&b, f->name, "_count", f, s, NULL, s->count);
                sample(&b, f->name, "_sum", f, s, NULL, s->sum);
            } else {
                sample(&b, exposed, "", f, s, NULL, s->value);
            }
        }
        if (f->type != AE_METRIC_GAUGE && f->first) {
            ae_strbuf_add(&b, "# TYPE ");
            ae_strbuf_add(&b, f->name);
            ae_strbuf_add(&b, "_created gauge\n");
            for (series *s = f->first; s; s = s->next)
                sample(&b, f->name, "_created", f, s, NULL, s->created);
        }
    }
    if (len) *len = b.len;
    return b.s;
}

void ae_metrics_free_all(void) {
    ae_metric_family *f = families;
    while (f) {
        ae_metric_family *n = f->next;
        series *s = f->first;
        while (s) {
            series *sn = s->next;
            free_series(f, s);
            s = sn;
        }
        for (int i = 0; i < f->nlabels; i++)
            free(f->labels[i]);
        free(f->labels);
        free(f->buckets);
        free(f->table);
        free(f->name);
        free(f->help);
        free(f);
        f = n;
    }
    families = families_last = NULL;
    memset(family_table, 0, sizeof family_table);
    while (providers)
        ae_status_provider_remove(providers->name);
}

/* ----------------------------------------------------- status providers */

void ae_status_provider(const char *name, ae_status_fn fn, void *arg) {
    for (provider *p = providers; p; p = p->next)
        if (strcmp(p->name, name) == 0) {
            p->fn = fn;
            p->arg = arg;
            return;
        }
    provider *p = xcalloc(1, sizeof *p);
    p->name = xstrdup(name);
    p->fn = fn;
    p->arg = arg;
    provider **pp = &providers; /* keep registration order */
    while (*pp)
        pp = &(*pp)->next;
    *pp = p;
}

void ae_status_provider_remove(const char *name) {
    for (provider **pp = &providers; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->name, name) == 0) {
            provider *p = *pp;
            *pp = p->next;
            free(p->name);
            free(p);
            return;
        }
}

static int call_provider(lua_State *L) {
    provider *p = lua_touserdata(L, 1);
    lua_settop(L, 0);
    p->fn(L, p->arg);
    lua_settop(L, 1);
    return 1;
}

static const char *unit_state_name(ae_unit_state s) {
    switch (s) {
    case AE_UNIT_STARTING: return "starting";
    case AE_UNIT_RUNNING: return "running";
    case AE_UNIT_DRAINING: return "draining";
    case AE_UNIT_STOPPED: return "stopped";
    default: return "failed";
    }
}

int ae_status_collect(lua_State *L) {
    int ready = 1;
    lua_newtable(L);
    int t = lua_gettop(L);
    /* units: {ok = no unit failed, units = {name = state}} */
    lua_newtable(L);
    lua_newtable(L);
    int units_ok = 1;
    for (ae_unit *u = ae_engine_units(); u; u = u->next) {
        if (u->state == AE_UNIT_STOPPED) continue;
        if (u->state == AE_UNIT_FAILED) units_ok = 0;
        lua_pushstring(L, unit_state_name(u->state));
        lua_setfield(L, -2, u->name);
    }
    lua_setfield(L, -2, "units");
    lua_pushboolean(L, units_ok);
    lua_setfield(L, -2, "ok");
    lua_setfield(L, t, "engine");
    ready = units_ok;
    for (provider *p = providers; p; p = p->next) {
        lua_pushcfunction(L, call_provider);
        lua_pushlightuserdata(L, p);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
            const char *msg = lua_tostring(L, -1);
            AE_LOG_ENGINE(AE_LOG_ERROR, "status provider '%s' failed: %s", p->name, msg ? msg : "?");
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushboolean(L, 0);
            lua_setfield(L, -2, "ok");
            lua_pushstring(L, "status provider failed");
            lua_setfield(L, -2, "error");
        }
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "ok");
            if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) ready = 0;
            lua_pop(L, 1);
        }
        lua_setfield(L, t, p->name);
    }
    return ready;
}

/* ------------------------------------------------------- ae.core.metrics */

static ae_metric_family *check_family(lua_State *L, int i) {
    luaL_checktype(L, i, LUA_TLIGHTUSERDATA);
    return lua_touserdata(L, i);
}

/* declare(type, name, help, {labels}, {buckets}) -> family handle */
static int l_declare(lua_State *L) {
    static const char *const types[] = {"counter", "gauge", "histogram", NULL};
    int type = luaL_checkoption(L, 1, NULL, types);
    const char *name = luaL_checkstring(L, 2);
    const char *help = luaL_optstring(L, 3, "");
    const char *labels[AE_METRIC_MAX_LABELS];
    double buckets[AE_METRIC_MAX_BUCKETS];
    int nl = 0, nb = 0;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        nl = (int)lua_rawlen(L, 4);
        if (nl > AE_METRIC_MAX_LABELS) return luaL_error(L, "ae.metrics: at most %d labels", AE_METRIC_MAX_LABELS);
        for (int i = 0; i < nl; i++) {
            lua_rawgeti(L, 4, i + 1);
            if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "ae.metrics: label names must be strings");
            labels[i] = lua_tostring(L, -1); /* stays referenced by the table */
            lua_pop(L, 1);
        }
    }
    if (!lua_isnoneornil(L, 5)) {
        luaL_checktype(L, 5, LUA_TTABLE);
        nb = (int)lua_rawlen(L, 5);
        if (nb < 1 || nb > AE_METRIC_MAX_BUCKETS)
            return luaL_error(L, "ae.metrics: between 1 and %d buckets", AE_METRIC_MAX_BUCKETS);
        for (int i = 0; i < nb; i++) {
            lua_rawgeti(L, 5, i + 1);
            if (!lua_isnumber(L, -1)) return luaL_error(L, "ae.metrics: buckets must be numbers");
            buckets[i] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    }
    char err[256];
    ae_metric_family *f =
        ae_metrics_declare((ae_metric_type)type, name, help, nl, labels, nb, nb ? buckets : NULL, err, sizeof err);
    if (!f) return luaL_error(L, "ae.metrics: %s", err);
    lua_pushlightuserdata(L, f);
    return 1;
}

/* Label values from the table at index i, in declared order. Raises on a
 * missing or unknown label. */
static void label_values(lua_State *L, ae_metric_family *f, int i, const char **values) {
    if (f->nlabels == 0) {
        if (!lua_isnoneornil(L, i) && (!lua_istable(L, i) || (lua_pushnil(L), lua_next(L, i) != 0)))
            luaL_error(L, "ae.metrics: metric '%s' has no labels", f->name);
        return;
    }
    if (!lua_istable(L, i))
        luaL_error(L, "ae.metrics: metric '%s' needs labels {%s%s}", f->name, f->labels[0],
                   f->nlabels > 1 ? ", ..." : "");
    for (int k = 0; k < f->nlabels; k++) {
        lua_getfield(L, i, f->labels[k]);
        int t = lua_type(L, -1);
        if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN)
            luaL_error(L, "ae.metrics: metric '%s': label '%s' missing", f->name, f->labels[k]);
        if (t == LUA_TBOOLEAN) {
            lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
            lua_replace(L, -2);
        }
        values[k] = lua_tostring(L, -1); /* number converted in place; kept on the stack */
    }
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, i)) {
        lua_pop(L, 1);
        n++;
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "ae.metrics: metric '%s': label names must be strings", f->name);
        int known = 0;
        for (int k = 0; k < f->nlabels && !known; k++)
            known = strcmp(lua_tostring(L, -1), f->labels[k]) == 0;
        if (!known) luaL_error(L, "ae.metrics: metric '%s' has no label '%s'", f->name, lua_tostring(L, -1));
    }
    (void)n;
}

/* add(f, by, labels) */
static int l_add(lua_State *L) {
    ae_metric_family *f = check_family(L, 1);
    double by = luaL_optnumber(L, 2, 1);
    const char *values[AE_METRIC_MAX_LABELS];
    label_values(L, f, 3, values);
    if (f->type == AE_METRIC_COUNTER && (by < 0 || isnan(by)))
        return luaL_error(L, "ae.metrics: counter '%s' can only increase (got %f)", f->name, by);
    if (ae_metrics_add(f, values, by) != 0)
        return luaL_error(L, "ae.metrics: '%s' is a %s", f->name, type_name(f->type));
    return 0;
}

static int l_set(lua_State *L) {
    ae_metric_family *f = check_family(L, 1);
    double v = luaL_checknumber(L, 2);
    const char *values[AE_METRIC_MAX_LABELS];
    label_values(L, f, 3, values);
    if (ae_metrics_setv(f, values, v) != 0) return luaL_error(L, "ae.metrics: '%s' is not a gauge", f->name);
    return 0;
}

static int l_observe(lua_State *L) {
    ae_metric_family *f = check_family(L, 1);
    double v = luaL_checknumber(L, 2);
    const char *values[AE_METRIC_MAX_LABELS];
    label_values(L, f, 3, values);
    if (isnan(v)) return luaL_error(L, "ae.metrics: cannot observe NaN");
    if (ae_metrics_observev(f, values, v) != 0) return luaL_error(L, "ae.metrics: '%s' is not a histogram", f->name);
    return 0;
}

/* get(f, labels) -> value (histogram: count, sum) */
static int l_get(lua_State *L) {
    ae_metric_family *f = check_family(L, 1);
    const char *values[AE_METRIC_MAX_LABELS];
    label_values(L, f, 2, values);
    double v, sum;
    ae_metrics_get(f, values, &v, &sum);
    lua_pushnumber(L, v);
    if (f->type == AE_METRIC_HISTOGRAM) {
        lua_pushnumber(L, sum);
        return 2;
    }
    return 1;
}

static int l_remove(lua_State *L) {
    ae_metric_family *f = check_family(L, 1);
    const char *values[AE_METRIC_MAX_LABELS];
    label_values(L, f, 2, values);
    lua_pushboolean(L, ae_metrics_remove(f, values));
    return 1;
}

static int l_clear(lua_State *L) {
    ae_metrics_clear(check_family(L, 1));
    return 0;
}

static int l_render(lua_State *L) {
    size_t len;
    char *s = ae_metrics_render(&len);
    lua_pushlstring(L, s, len);
    free(s);
    return 1;
}

static int l_format_float(lua_State *L) {
    char buf[64];
    ae_metrics_format_float(luaL_checknumber(L, 1), buf, sizeof buf);
    lua_pushstring(L, buf);
    return 1;
}

/* info(f) -> {name=, type=, help=, labels={...}} */
static int l_info(lua_State *L) {
    ae_metric_family *f = check_family(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, f->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, type_name(f->type));
    lua_setfield(L, -2, "type");
    lua_pushstring(L, f->help);
    lua_setfield(L, -2, "help");
    lua_createtable(L, f->nlabels, 0);
    for (int i = 0; i < f->nlabels; i++) {
        lua_pushstring(L, f->labels[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "labels");
    return 1;
}

static int l_find(lua_State *L) {
    ae_metric_family *f = ae_metrics_find(luaL_checkstring(L, 1));
    if (!f) return 0;
    lua_pushlightuserdata(L, f);
    return 1;
}

int luaopen_ae_core_metrics(lua_State *L) {
    static const luaL_Reg fns[] = {{"declare", l_declare}, {"add", l_add},       {"set", l_set},
                                   {"observe", l_observe}, {"get", l_get},       {"remove", l_remove},
                                   {"clear", l_clear},     {"render", l_render}, {"format_float", l_format_float},
                                   {"info", l_info},       {"find", l_find},     {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_pushstring(L, AE_METRICS_CONTENT_TYPE);
    lua_setfield(L, -2, "content_type");
    return 1;
}
