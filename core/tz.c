/* tz.c - IANA time zones from the system tzdata.
 *
 * A zone file (TZif, RFC 8536) holds the list of transition instants, the
 * local time types they switch to, and, from version 2 on, a POSIX TZ string
 * (e.g. "EST5EDT,M3.2.0,M11.1.0") that describes every instant after the last
 * listed transition; that is how dates in 2040 and later are answered. Zones
 * are parsed once and cached for the life of the process (a mutex guards the
 * cache; a loaded zone is immutable). Leap-second ("right/") zones are
 * refused. "US/Eastern" and the other US/ links moved to the tzdata-legacy
 * package in newer Debian releases: when such a file is missing, the name is
 * resolved through a built-in alias table.
 */
#define _POSIX_C_SOURCE 200809L
#include "tz.h"
#include "engine.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------- civil calendar */

int64_t ae_floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

int ae_is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int ae_days_in_month(int64_t y, int m) {
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ae_is_leap(y)) return 29;
    return dm[m - 1];
}

/* Count in 400-year eras starting on March 1st, so that the leap day is the
 * last day of a "year" and month lengths follow a fixed 153-day pattern. */
int64_t ae_days_from_civil(int64_t y, int m, int d) {
    if (m <= 2) y--;
    int64_t era = ae_floor_div(y, 400);
    int64_t yoe = y - era * 400;                         /* 0..399 */
    int64_t mp = m > 2 ? m - 3 : m + 9;                  /* March = 0 */
    int64_t doy = (153 * mp + 2) / 5 + d - 1;            /* 0..365 */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; /* 0..146096 */
    return era * 146097 + doe - 719468;                  /* 719468 = days from 0000-03-01 to 1970-01-01 */
}

void ae_civil_from_days(int64_t days, int64_t *y, int *m, int *d) {
    int64_t z = days + 719468;
    int64_t era = ae_floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* ------------------------------------------------------- POSIX TZ rules */

typedef struct {
    char kind; /* 'J' (1..365, no leap day), 'N' (0..365), 'M' (month.week.day) */
    int n, m, w, d;
    int32_t time; /* local seconds after midnight; may be negative or > 24h */
} rule_date;

typedef struct {
    int valid, has_dst;
    ae_tz_type std, dst;
    rule_date start, end;
} posix_rule;

struct ae_tz {
    char *name;
    int64_t *trans;
    uint8_t *trans_type;
    size_t ntrans;
    ae_tz_type *types;
    size_t ntypes;
    posix_rule rule;
    struct ae_tz *next;
};

static const char *parse_abbr(const char *p, char *out, size_t n) {
    size_t len = 0;
    if (*p == '<') {
        p++;
        while (*p && *p != '>') {
            if (!(isalnum((unsigned char)*p) || *p == '+' || *p == '-')) return NULL;
            if (len + 1 < n) out[len++] = *p;
            p++;
        }
        if (*p != '>') return NULL;
        p++;
    } else {
        while (isalpha((unsigned char)*p)) {
            if (len + 1 < n) out[len++] = *p;
            p++;
        }
    }
    if (len < 1) return NULL;
    out[len] = '\0';
    return p;
}

/* [+|-]hh[:mm[:ss]] -> seconds; hours up to maxh */
static const char *parse_hms(const char *p, int32_t *out, int maxh) {
    int sign = 1;
    if (*p == '+' || *p == '-') sign = (*p++ == '-') ? -1 : 1;
    if (!isdigit((unsigned char)*p)) return NULL;
    int h = 0, mi = 0, s = 0, nd = 0;
    while (isdigit((unsigned char)*p) && nd < 3)
        h = h * 10 + (*p++ - '0'), nd++;
    if (h > maxh) return NULL;
    if (*p == ':') {
        p++;
        if (!isdigit((unsigned char)p[0]) || !isdigit((unsigned char)p[1])) return NULL;
        mi = (p[0] - '0') * 10 + (p[1] - '0');
        p += 2;
        if (*p == ':') {
            p++;
            if (!isdigit((unsigned char)p[0]) || !isdigit((unsigned char)p[1])) return NULL;
            s = (p[0] - '0') * 10 + (p[1] - '0');
            p += 2;
        }
    }
    if (mi > 59 || s > 59) return NULL;
    *out = sign * (h * 3600 + mi * 60 + s);
    return p;
}

static const char *parse_int(const char *p, int *out, int lo, int hi) {
    if (!isdigit((unsigned char)*p)) return NULL;
    int v = 0;
    while (isdigit((unsigned char)*p)) {
        v = v * 10 + (*p++ - '0');
        if (v > hi) return NULL;
    }
    if (v < lo) return NULL;
    *out = v;
    return p;
}

static const char *parse_rule_date(const char *p, rule_date *r) {
    memset(r, 0, sizeof *r);
    if (*p == 'J') {
        r->kind = 'J';
        p = parse_int(p + 1, &r->n, 1, 365);
    } else if (*p == 'M') {
        r->kind = 'M';
        p = parse_int(p + 1, &r->m, 1, 12);
        if (p && *p == '.')
            p = parse_int(p + 1, &r->w, 1, 5);
        else
            p = NULL;
        if (p && *p == '.')
            p = parse_int(p + 1, &r->d, 0, 6);
        else
            p = NULL;
    } else {
        r->kind = 'N';
        p = parse_int(p, &r->n, 0, 365);
    }
    if (!p) return NULL;
    r->time = 7200;
    if (*p == '/') p = parse_hms(p + 1, &r->time, 167);
    return p;
}

/* Parse a POSIX TZ string such as "EST5EDT,M3.2.0,M11.1.0" or
 * "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0". Returns 0 on success. */
static int parse_posix(const char *s, posix_rule *r) {
    memset(r, 0, sizeof *r);
    const char *p = parse_abbr(s, r->std.abbr, sizeof r->std.abbr);
    int32_t off;
    if (!p || !(p = parse_hms(p, &off, 24))) return -1;
    r->std.offset = -off; /* POSIX offsets count west of UTC */
    if (*p) {
        if (!(p = parse_abbr(p, r->dst.abbr, sizeof r->dst.abbr))) return -1;
        r->has_dst = 1;
        r->dst.isdst = 1;
        r->dst.offset = r->std.offset + 3600;
        if (*p && *p != ',') {
            if (!(p = parse_hms(p, &off, 24))) return -1;
            r->dst.offset = -off;
        }
        if (*p == ',') {
            if (!(p = parse_rule_date(p + 1, &r->start)) || *p != ',') return -1;
            if (!(p = parse_rule_date(p + 1, &r->end))) return -1;
        } else {
            /* no rule given: the POSIX default, US rules since 2007 */
            r->start = (rule_date){'M', 0, 3, 2, 0, 7200};
            r->end = (rule_date){'M', 0, 11, 1, 0, 7200};
        }
    }
    if (*p) return -1;
    r->valid = 1;
    return 0;
}

/* Local (wall-clock) seconds of the rule's moment in year y. */
static int64_t rule_local(const rule_date *r, int64_t y) {
    int64_t days;
    if (r->kind == 'J') {
        days = ae_days_from_civil(y, 1, 1) + r->n - 1 + (ae_is_leap(y) && r->n >= 60);
    } else if (r->kind == 'N') {
        days = ae_days_from_civil(y, 1, 1) + r->n;
    } else {
        int64_t first = ae_days_from_civil(y, r->m, 1);
        int dow1 = (int)((first % 7 + 7 + 4) % 7); /* 1970-01-01 was a Thursday (4) */
        int64_t day = first + (r->d - dow1 + 7) % 7 + 7 * (r->w - 1);
        int dim = ae_days_in_month(y, r->m);
        while (day >= first + dim)
            day -= 7; /* week 5 = the last such weekday */
        days = day;
    }
    return days * 86400 + r->time;
}

static const ae_tz_type *rule_lookup(const posix_rule *r, int64_t t) {
    if (!r->has_dst) return &r->std;
    int64_t y;
    int m, d;
    ae_civil_from_days(ae_floor_div(t + r->std.offset, 86400), &y, &m, &d);
    int64_t start = rule_local(&r->start, y) - r->std.offset; /* start time is in standard time */
    int64_t end = rule_local(&r->end, y) - r->dst.offset;     /* end time is in daylight time */
    if (start < end) return (t >= start && t < end) ? &r->dst : &r->std;
    return (t >= end && t < start) ? &r->std : &r->dst; /* southern hemisphere */
}

/* ------------------------------------------------------------ TZif files */

static uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static int64_t be64(const unsigned char *p) { return (int64_t)(((uint64_t)be32(p) << 32) | be32(p + 4)); }

static void set_err(char *err, size_t n, const char *fmt, const char *a, const char *b) {
    if (err && n) snprintf(err, n, fmt, a, b);
}

static void tz_free(ae_tz *z) {
    if (!z) return;
    free(z->name);
    free(z->trans);
    free(z->trans_type);
    free(z->types);
    free(z);
}

/* Parse TZif data; returns NULL and sets why on malformed input. */
static ae_tz *parse_tzif(const unsigned char *buf, size_t len, const char **why) {
    *why = "not a TZif file";
    if (len < 44 || memcmp(buf, "TZif", 4) != 0) return NULL;
    int version = buf[4] ? buf[4] - '0' : 1;
    const unsigned char *h = buf;
    size_t tsize = 4;
    if (version >= 2) {
        /* skip the v1 block: its header tells its size */
        uint32_t c[6];
        for (int i = 0; i < 6; i++)
            c[i] = be32(buf + 20 + 4 * i);
        size_t v1 = (size_t)c[3] * 5 + (size_t)c[4] * 6 + c[5] + (size_t)c[2] * 8 + c[1] + c[0];
        if (44 + v1 + 44 > len) return NULL;
        h = buf + 44 + v1;
        if (memcmp(h, "TZif", 4) != 0) return NULL;
        tsize = 8;
    }
    uint32_t isutcnt = be32(h + 20), isstdcnt = be32(h + 24), leapcnt = be32(h + 28);
    uint32_t timecnt = be32(h + 32), typecnt = be32(h + 36), charcnt = be32(h + 40);
    const unsigned char *p = h + 44, *end = buf + len;
    size_t need = (size_t)timecnt * (tsize + 1) + (size_t)typecnt * 6 + charcnt + (size_t)leapcnt * (tsize + 4) +
                  isstdcnt + isutcnt;
    *why = "truncated TZif file";
    if (typecnt == 0 || typecnt > 256 || charcnt == 0 || (size_t)(end - p) < need) return NULL;
    if (leapcnt) {
        *why = "leap-second zones are not supported";
        return NULL;
    }
    ae_tz *z = calloc(1, sizeof *z);
    if (!z) return NULL;
    z->ntrans = timecnt;
    z->ntypes = typecnt;
    z->trans = calloc(timecnt ? timecnt : 1, sizeof *z->trans);
    z->trans_type = calloc(timecnt ? timecnt : 1, 1);
    z->types = calloc(typecnt, sizeof *z->types);
    *why = "out of memory";
    if (!z->trans || !z->trans_type || !z->types) goto fail;
    for (uint32_t i = 0; i < timecnt; i++, p += tsize) {
        z->trans[i] = tsize == 8 ? be64(p) : (int64_t)(int32_t)be32(p);
        if (i && z->trans[i] <= z->trans[i - 1]) {
            *why = "transitions out of order";
            goto fail;
        }
    }
    for (uint32_t i = 0; i < timecnt; i++, p++) {
        if (*p >= typecnt) {
            *why = "bad local time type index";
            goto fail;
        }
        z->trans_type[i] = *p;
    }
    const unsigned char *chars = p + (size_t)typecnt * 6;
    for (uint32_t i = 0; i < typecnt; i++, p += 6) {
        z->types[i].offset = (int32_t)be32(p);
        z->types[i].isdst = p[4] != 0;
        unsigned ai = p[5];
        if (ai >= charcnt || z->types[i].offset <= -90000 || z->types[i].offset >= 90000) {
            *why = "bad local time type";
            goto fail;
        }
        size_t n = strnlen((const char *)chars + ai, charcnt - ai);
        if (n >= sizeof z->types[i].abbr) n = sizeof z->types[i].abbr - 1;
        memcpy(z->types[i].abbr, chars + ai, n);
        z->types[i].abbr[n] = '\0';
    }
    p = h + 44 + need;
    if (version >= 2 && p < end && *p == '\n') {
        const unsigned char *nl = memchr(p + 1, '\n', (size_t)(end - p - 1));
        if (nl && nl > p + 1 && nl - p < 128) {
            char footer[128];
            memcpy(footer, p + 1, (size_t)(nl - p - 1));
            footer[nl - p - 1] = '\0';
            if (parse_posix(footer, &z->rule) != 0) {
                *why = "bad POSIX TZ footer";
                goto fail;
            }
        }
    }
    return z;
fail:
    tz_free(z);
    return NULL;
}

/* --------------------------------------------------------------- cache */

static ae_tz_type utc_type = {0, 0, "UTC"};
static ae_tz utc_zone = {.name = "UTC", .types = &utc_type, .ntypes = 1};

const ae_tz *ae_tz_utc(void) { return &utc_zone; }

const char *ae_tz_name(const ae_tz *z) { return z->name; }

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static ae_tz *cache;

/* Links that Debian 13+ ships only in tzdata-legacy. */
static const char *const aliases[][2] = {
    {"US/Eastern", "America/New_York"},
    {"US/Central", "America/Chicago"},
    {"US/Mountain", "America/Denver"},
    {"US/Pacific", "America/Los_Angeles"},
    {"US/Alaska", "America/Anchorage"},
    {"US/Hawaii", "Pacific/Honolulu"},
    {"US/Arizona", "America/Phoenix"},
    {"US/East-Indiana", "America/Indiana/Indianapolis"},
    {"US/Indiana-Starke", "America/Indiana/Knox"},
    {"US/Michigan", "America/Detroit"},
    {"US/Aleutian", "America/Adak"},
    {"US/Samoa", "Pacific/Pago_Pago"},
    {"Etc/UTC", "UTC"},
    {"Etc/Zulu", "UTC"},
    {"Zulu", "UTC"},
    {"Universal", "UTC"},
    {"Etc/Universal", "UTC"},
};

static int name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > 200 || name[0] == '/' || name[0] == '.' || name[0] == '-') return 0;
    for (const char *p = name; *p; p++) {
        if (!(isalnum((unsigned char)*p) || *p == '/' || *p == '_' || *p == '-' || *p == '+' || *p == '.')) return 0;
        if (*p == '.' && p[1] == '.') return 0;
        if (*p == '/' && (p[1] == '.' || p[1] == '/' || p[1] == '\0')) return 0;
    }
    return 1;
}

/* Read and parse dir/name. 1 = loaded, 0 = no such file, -1 = error (why set). */
static int load_file(const char *name, ae_tz **out, const char **why) {
    const char *dir = getenv("TZDIR");
    if (!dir || !*dir) dir = "/usr/share/zoneinfo";
    char path[512];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT || errno == ENOTDIR) return 0;
        *why = strerror(errno);
        return -1;
    }
    unsigned char *buf = malloc(1 << 20);
    size_t len = buf ? fread(buf, 1, 1 << 20, f) : 0;
    int rd_errno = ferror(f) ? errno : 0;
    fclose(f);
    if (!buf || rd_errno || len < 4 || memcmp(buf, "TZif", 4) != 0) {
        free(buf);
        if (!buf) {
            *why = "out of memory";
            return -1;
        }
        if (rd_errno && rd_errno != EISDIR) {
            *why = strerror(rd_errno);
            return -1;
        }
        return 0; /* a directory or another file of the tzdata tree: not a zone */
    }
    *out = parse_tzif(buf, len, why);
    free(buf);
    return *out ? 1 : -1;
}

const ae_tz *ae_tz_get(const char *name, char *err, size_t errlen) {
    if (!name) name = "UTC";
    if (strcmp(name, "UTC") == 0 || strcmp(name, "Z") == 0) return ae_tz_utc();
    if (!name_ok(name)) {
        set_err(err, errlen, "invalid time zone name '%s'%s", name, "");
        return NULL;
    }
    pthread_mutex_lock(&cache_lock);
    ae_tz *z;
    for (z = cache; z; z = z->next)
        if (strcmp(z->name, name) == 0) break;
    if (!z) {
        const char *why = NULL;
        const char *file = name;
        int rc = load_file(file, &z, &why);
        for (size_t i = 0; rc == 0 && i < sizeof aliases / sizeof aliases[0]; i++) {
            if (strcmp(aliases[i][0], name) == 0) {
                file = aliases[i][1];
                if (strcmp(file, "UTC") == 0) {
                    pthread_mutex_unlock(&cache_lock);
                    return ae_tz_utc();
                }
                rc = load_file(file, &z, &why);
            }
        }
        if (rc == 1) {
            z->name = strdup(name);
            if (!z->name) {
                tz_free(z);
                z = NULL;
                set_err(err, errlen, "time zone '%s': %s", name, "out of memory");
            } else {
                z->next = cache;
                cache = z;
            }
        } else if (rc == 0) {
            set_err(err, errlen, "unknown time zone '%s'%s", name, "");
        } else {
            /* the file exists but cannot be used: an installation problem */
            set_err(err, errlen, "time zone '%s': %s", name, why ? why : "unreadable");
            AE_LOG_ENGINE(AE_LOG_ERROR, "ae.time: time zone file for '%s' (%s) is unusable: %s", name, file,
                          why ? why : "unreadable");
            ae_metric_inc("aengine_time_zone_errors", "Time zone files that could not be loaded", "zone", name, 1);
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return z;
}

/* ------------------------------------------------------------- lookups */

const ae_tz_type *ae_tz_lookup(const ae_tz *z, int64_t t) {
    size_t n = z->ntrans;
    if (n == 0 || t >= z->trans[n - 1]) {
        if (z->rule.valid) return rule_lookup(&z->rule, t);
        return n ? &z->types[z->trans_type[n - 1]] : &z->types[0];
    }
    if (t < z->trans[0]) return &z->types[0];
    size_t lo = 0, hi = n - 1; /* trans[lo] <= t < trans[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->trans[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return &z->types[z->trans_type[lo]];
}

int ae_tz_local_to_utc(const ae_tz *z, int64_t local, int64_t out[2], int64_t *transition) {
    /* The offsets in force a day before and after (and at) the local time
     * are the only candidates, as long as a zone never changes its offset
     * twice within a day (true of all tzdata). */
    int32_t before = ae_tz_lookup(z, local - 86400)->offset;
    int32_t after = ae_tz_lookup(z, local + 86400)->offset;
    int32_t cand[3] = {before, ae_tz_lookup(z, local)->offset, after};
    int64_t found[3];
    int nf = 0;
    for (int i = 0; i < 3; i++) {
        int64_t u = local - cand[i];
        if (ae_tz_lookup(z, u)->offset != cand[i]) continue;
        int dup = 0;
        for (int j = 0; j < nf; j++)
            dup |= found[j] == u;
        if (!dup) found[nf++] = u;
    }
    if (nf == 1) {
        out[0] = out[1] = found[0];
        return AE_TZ_UNIQUE;
    }
    if (nf >= 2) {
        int64_t lo = found[0], hi = found[0];
        for (int j = 1; j < nf; j++) {
            if (found[j] < lo) lo = found[j];
            if (found[j] > hi) hi = found[j];
        }
        out[0] = lo;
        out[1] = hi;
        return AE_TZ_AMBIGUOUS;
    }
    /* A gap: clocks jumped from `before` to `after` at some instant T with
     * T + before <= local < T + after. Find T by bisection. */
    out[0] = local - before;
    out[1] = local - after;
    if (after <= before) { /* not a forward jump after all (tzdata never does this) */
        if (transition) *transition = out[0];
        return AE_TZ_GAP;
    }
    int64_t lo = local - after, hi = local - before; /* offset(lo) = before, offset(hi) = after */
    int32_t off_lo = ae_tz_lookup(z, lo)->offset;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (ae_tz_lookup(z, mid)->offset == off_lo)
            lo = mid;
        else
            hi = mid;
    }
    if (transition) *transition = hi;
    return AE_TZ_GAP;
}
