/* cron.c - cron expressions: parsing into bit sets, and the next match.
 *
 * Syntax per field: `*`, a value, a range `a-b`, a step `*\/n`, `a-b/n` or
 * `a/n` (a to the field's maximum), and comma-separated lists of those.
 * Months accept jan..dec and days of week sun..sat (case-insensitive); day of
 * week 0 and 7 are both Sunday. As in Vixie cron, when both day-of-month and
 * day-of-week are restricted (neither starts with `*`) a day matches if
 * EITHER matches; otherwise both must.
 *
 * The next match is searched in local civil time (year, month, day, hour,
 * minute, skipping whole months/days/hours that cannot match), then mapped to
 * UTC with the zone's rules; see cron.h for the DST behaviour.
 */
#include "cron.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct {
    const char *name;
    int lo, hi;
    const char *const *names; /* names[i] is value lo_names + i */
    int names_base;
    int nnames;
} field_spec;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const field_spec fields[5] = {
    {"minute", 0, 59, NULL, 0, 0},          {"hour", 0, 23, NULL, 0, 0},
    {"day-of-month", 1, 31, NULL, 0, 0},    {"month", 1, 12, month_names, 1, 12},
    {"day-of-week", 0, 7, dow_names, 0, 7},
};

#define FAIL(...)                                                                                                      \
    do {                                                                                                               \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__);                                                         \
        return -1;                                                                                                     \
    } while (0)

/* A number or a name at s[*i]; advances *i. */
static int parse_value(const field_spec *f, const char *s, size_t len, size_t *i, int *out, char *err, size_t errlen) {
    size_t start = *i;
    if (*i < len && isdigit((unsigned char)s[*i])) {
        long v = 0;
        while (*i < len && isdigit((unsigned char)s[*i])) {
            v = v * 10 + (s[*i] - '0');
            if (v > 1000) v = 1000;
            (*i)++;
        }
        if (v < f->lo || v > f->hi) FAIL("%s: value %ld out of range %d-%d", f->name, v, f->lo, f->hi);
        *out = (int)v;
        return 0;
    }
    while (*i < len && isalpha((unsigned char)s[*i]))
        (*i)++;
    size_t n = *i - start;
    if (n == 0) FAIL("%s: expected a number in '%.*s'", f->name, (int)len, s);
    for (int k = 0; k < f->nnames; k++) {
        if (n == 3 && strncasecmp(s + start, f->names[k], 3) == 0) {
            *out = f->names_base + k;
            return 0;
        }
    }
    FAIL("%s: unknown name '%.*s'", f->name, (int)n, s + start);
}

static int parse_field(const field_spec *f, const char *s, size_t len, uint64_t *bits, char *err, size_t errlen) {
    *bits = 0;
    size_t i = 0;
    for (;;) {
        int a, b, step = 1;
        if (i < len && s[i] == '*') {
            a = f->lo;
            b = f->hi;
            i++;
        } else {
            if (parse_value(f, s, len, &i, &a, err, errlen)) return -1;
            b = a;
            if (i < len && s[i] == '-') {
                i++;
                if (parse_value(f, s, len, &i, &b, err, errlen)) return -1;
                if (b < a) FAIL("%s: range %d-%d goes backwards", f->name, a, b);
            } else if (i < len && s[i] == '/') {
                b = f->hi; /* "a/n" = from a to the maximum */
            }
        }
        if (i < len && s[i] == '/') {
            i++;
            if (i >= len || !isdigit((unsigned char)s[i]))
                FAIL("%s: step needs a number in '%.*s'", f->name, (int)len, s);
            long v = 0;
            while (i < len && isdigit((unsigned char)s[i])) {
                v = v * 10 + (s[i] - '0');
                if (v > 1000) v = 1000;
                i++;
            }
            if (v < 1 || v > f->hi - f->lo + 1) FAIL("%s: step %ld out of range 1-%d", f->name, v, f->hi - f->lo + 1);
            step = (int)v;
        }
        for (int v = a; v <= b; v += step)
            *bits |= (uint64_t)1 << v;
        if (i == len) return 0;
        if (s[i] != ',') FAIL("%s: unexpected '%c' in '%.*s'", f->name, s[i], (int)len, s);
        i++;
        if (i == len) FAIL("%s: empty list item in '%.*s'", f->name, (int)len, s);
    }
}

static const struct {
    const char *name, *expr;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},  {"@midnight", "0 0 * * *"}, {"@hourly", "0 * * * *"},
};

int ae_cron_parse(const char *expr, ae_cron *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    if (!expr) FAIL("empty cron expression");
    while (isspace((unsigned char)*expr))
        expr++;
    if (*expr == '@') {
        size_t n = strlen(expr);
        while (n && isspace((unsigned char)expr[n - 1]))
            n--;
        for (size_t k = 0; k < sizeof macros / sizeof macros[0]; k++)
            if (strlen(macros[k].name) == n && strncasecmp(expr, macros[k].name, n) == 0)
                return ae_cron_parse(macros[k].expr, c, err, errlen);
        FAIL("unknown cron macro '%.*s'", (int)n, expr);
    }
    const char *p = expr;
    int nf = 0;
    uint64_t bits[5];
    while (*p) {
        const char *start = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (nf == 5) FAIL("cron expression '%s' has more than 5 fields", expr);
        if (parse_field(&fields[nf], start, (size_t)(p - start), &bits[nf], err, errlen)) return -1;
        if (nf == 2) c->dom_star = *start == '*';
        if (nf == 4) c->dow_star = *start == '*';
        nf++;
        while (isspace((unsigned char)*p))
            p++;
    }
    if (nf != 5)
        FAIL("cron expression '%s' has %d fields, expected 5 (minute hour day-of-month month day-of-week)", expr, nf);
    c->minute = bits[0];
    c->hour = (uint32_t)bits[1];
    c->dom = (uint32_t)bits[2];
    c->month = (uint16_t)bits[3];
    c->dow = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f); /* 7 = Sunday = 0 */
    return 0;
}

static int day_matches(const ae_cron *c, int64_t days, int d) {
    int wd = (int)(((days % 7) + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
    int dom = (c->dom >> d) & 1, dow = (c->dow >> wd) & 1;
    if (c->dom_star || c->dow_star) return dom && dow;
    return dom || dow;
}

/* Smallest local civil minute >= *local (seconds, minute-aligned) that
 * matches; -1 if none before year ylimit. */
static int civil_next(const ae_cron *c, int64_t *local, int64_t ylimit) {
    int64_t days = ae_floor_div(*local, 86400), y;
    int secs = (int)(*local - days * 86400), mo, d;
    int h = secs / 3600, mi = (secs % 3600) / 60;
    ae_civil_from_days(days, &y, &mo, &d);
    for (;;) {
        if (y > ylimit) return -1;
        if (mo > 12) {
            mo = 1;
            y++;
            continue;
        }
        if (!((c->month >> mo) & 1) || d > ae_days_in_month(y, mo)) {
            mo++;
            d = 1;
            h = mi = 0;
            continue;
        }
        int64_t dn = ae_days_from_civil(y, mo, d);
        if (!day_matches(c, dn, d)) {
            d++;
            h = mi = 0;
            continue;
        }
        uint32_t hm = h > 23 ? 0 : c->hour & (~(uint32_t)0 << h);
        if (!hm) {
            d++;
            h = mi = 0;
            continue;
        }
        int nh = __builtin_ctz(hm);
        if (nh != h) {
            h = nh;
            mi = 0;
        }
        uint64_t mm = mi > 59 ? 0 : c->minute & (~(uint64_t)0 << mi);
        if (!mm) {
            h++;
            mi = 0;
            continue;
        }
        mi = __builtin_ctzll(mm);
        *local = dn * 86400 + h * 3600 + mi * 60;
        return 0;
    }
}

int ae_cron_next(const ae_cron *c, const ae_tz *z, double after, double *next) {
    if (!isfinite(after) || fabs(after) > 1e13) return -1;
    int64_t a = (int64_t)floor(after);
    int64_t local = a + ae_tz_lookup(z, a)->offset;
    int64_t y;
    int m, d;
    ae_civil_from_days(ae_floor_div(local, 86400), &y, &m, &d);
    int64_t ylimit = y + 50;
    /* first whole local minute after the local time of `after` */
    local = (ae_floor_div(local, 60) + 1) * 60;
    for (int guard = 0; guard < 100000; guard++) {
        if (civil_next(c, &local, ylimit)) return -1;
        int64_t u[2], tr = 0;
        int kind = ae_tz_local_to_utc(z, local, u, &tr);
        if (kind == AE_TZ_GAP) {
            if ((double)tr > after) {
                *next = (double)tr;
                return 0;
            }
        } else {
            for (int k = 0; k < (kind == AE_TZ_AMBIGUOUS ? 2 : 1); k++) {
                if ((double)u[k] > after) {
                    *next = (double)u[k];
                    return 0;
                }
            }
        }
        local += 60;
    }
    return -1;
}
