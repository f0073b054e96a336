/* time.c - ae.time: UTC "now" from the engine clock, ISO-8601 and
 * strptime-style parsing, strftime-style formatting, conversion to and from
 * IANA time zones (tz.c) and the next match of a cron expression (cron.c).
 *
 * Times are epoch seconds (UTC) as Lua floats with microsecond precision.
 * Also exports ae_time_parse_iso() for AE_CLOCK_START (clock.c).
 */
#define _POSIX_C_SOURCE 200809L
#include "engine.h"
#include "cron.h"
#include "tz.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Years 0001..9999: what ISO-8601 text and the formats can express. */
#define T_MIN (-62135596800.0)
#define T_MAX (253402300800.0)

static const char *const mon_abbr[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const mon_full[] = {"January", "February", "March",     "April",   "May",      "June",
                                       "July",    "August",   "September", "October", "November", "December"};
static const char *const day_abbr[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const day_full[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};

/* ------------------------------------------------------ broken-down time */

typedef struct {
    int64_t year;
    int month, day, hour, min, sec, usec;
    int wday; /* 0 = Sunday */
    int yday; /* 0-based */
    int32_t offset;
    int isdst;
    char abbr[16];
    int64_t epoch; /* whole seconds */
} tm_ex;

static void breakdown(double t, const ae_tz *z, tm_ex *o) {
    double fl = floor(t);
    int64_t s = (int64_t)fl;
    long us = lround((t - fl) * 1e6);
    if (us >= 1000000) {
        s++;
        us -= 1000000;
    }
    const ae_tz_type *ty = ae_tz_lookup(z, s);
    int64_t local = s + ty->offset;
    int64_t days = ae_floor_div(local, 86400);
    int secs = (int)(local - days * 86400);
    ae_civil_from_days(days, &o->year, &o->month, &o->day);
    o->hour = secs / 3600;
    o->min = secs % 3600 / 60;
    o->sec = secs % 60;
    o->usec = (int)us;
    o->wday = (int)(((days % 7) + 7 + 4) % 7);
    o->yday = (int)(days - ae_days_from_civil(o->year, 1, 1));
    o->offset = ty->offset;
    o->isdst = ty->isdst;
    o->epoch = s;
    snprintf(o->abbr, sizeof o->abbr, "%s", ty->abbr);
}

/* ----------------------------------------------------------------- parsing */

typedef struct {
    int64_t year;
    int month, day, hour, min, sec;
    double frac;
    int yday; /* 1-based from %j, or 0 */
    int has_off;
    int32_t off;
    int ampm; /* 0 none, 1 AM, 2 PM */
    int hour12;
    const ae_tz *zone; /* a zone named in the text (%Z), or NULL */
    int has_epoch;
    double epoch;
} fields_t;

static void fields_init(fields_t *f) {
    memset(f, 0, sizeof *f);
    f->year = 1900;
    f->month = 1;
    f->day = 1;
}

/* 1..maxd digits -> *v; returns characters used or 0 */
static int digits(const char *s, int mind, int maxd, int *v) {
    int n = 0, x = 0;
    while (n < maxd && isdigit((unsigned char)s[n]))
        x = x * 10 + (s[n++] - '0');
    if (n < mind) return 0;
    *v = x;
    return n;
}

/* fraction digits after the point -> seconds; returns characters used */
static int fraction(const char *s, double *frac) {
    int n = 0;
    double f = 0, scale = 0.1;
    while (isdigit((unsigned char)s[n])) {
        if (n < 9) {
            f += (s[n] - '0') * scale;
            scale /= 10;
        }
        n++;
    }
    *frac = f;
    return n;
}

/* Z | +HH | +HHMM | +HH:MM (| +HH:MM:SS); returns characters used or 0 */
static int parse_offset(const char *s, int32_t *off) {
    if (*s == 'Z' || *s == 'z') {
        *off = 0;
        return 1;
    }
    if (*s != '+' && *s != '-') return 0;
    int sign = *s == '-' ? -1 : 1, h, m = 0, sec = 0, n = 1, k;
    if (!(k = digits(s + n, 2, 2, &h))) return 0;
    n += k;
    int colon = s[n] == ':';
    if (isdigit((unsigned char)s[n + colon])) {
        if (!(k = digits(s + n + colon, 2, 2, &m))) return 0;
        n += colon + k;
        int colon2 = s[n] == ':';
        if (colon == colon2 && isdigit((unsigned char)s[n + colon2])) {
            if (!(k = digits(s + n + colon2, 2, 2, &sec))) return 0;
            n += colon2 + k;
        }
    }
    if (h > 23 || m > 59 || sec > 59) return 0;
    *off = sign * (h * 3600 + m * 60 + sec);
    return n;
}

static int match_ci(const char *s, const char *word) {
    size_t n = strlen(word);
    return strncasecmp(s, word, n) == 0 ? (int)n : 0;
}

/* AM / PM / A.M. / P.M. -> 1/2; returns characters used or 0 */
static int parse_ampm(const char *s, int *ampm) {
    int k;
    if ((k = match_ci(s, "a.m.")) || (k = match_ci(s, "am")))
        *ampm = 1;
    else if ((k = match_ci(s, "p.m.")) || (k = match_ci(s, "pm")))
        *ampm = 2;
    return k;
}

/* Dates and times the specs meet: ISO-8601 (T or space, fraction, Z or
 * offset, date only), Python str(datetime), and US M/D/YYYY h:mm[:ss] AM. */
static const char *parse_auto(const char *s, fields_t *f) {
    int v, k;
    const char *p = s;
    while (isspace((unsigned char)*p))
        p++;
    if ((k = digits(p, 4, 4, &v)) && (p[k] == '-' || p[k] == '/')) {
        char sep = p[k];
        f->year = v;
        p += k + 1;
        if (!(k = digits(p, 1, 2, &f->month)) || p[k] != sep) return "expected YYYY-MM-DD";
        p += k + 1;
        if (!(k = digits(p, 1, 2, &f->day))) return "expected YYYY-MM-DD";
        p += k;
    } else if ((k = digits(p, 1, 2, &f->month)) && p[k] == '/') {
        p += k + 1;
        if (!(k = digits(p, 1, 2, &f->day)) || p[k] != '/') return "expected M/D/YYYY";
        p += k + 1;
        if (!(k = digits(p, 4, 4, &v))) return "expected M/D/YYYY";
        f->year = v;
        p += k;
    } else if ((k = digits(p, 8, 8, &v)) && !isdigit((unsigned char)p[k])) {
        f->year = v / 10000; /* basic format YYYYMMDD[THHMMSS] */
        f->month = v / 100 % 100;
        f->day = v % 100;
        p += k;
        if ((*p == 'T' || *p == 't') && digits(p + 1, 6, 6, &v) && !isdigit((unsigned char)p[7])) {
            f->hour = v / 10000;
            f->min = v / 100 % 100;
            f->sec = v % 100;
            p += 7;
            if (*p == '.' || *p == ',') p += 1 + fraction(p + 1, &f->frac);
        }
    } else {
        return "not a recognised date";
    }
    const char *q = p;
    if (*q == 'T' || *q == 't')
        q++;
    else
        while (*q == ' ')
            q++;
    if (q > p && (k = digits(q, 1, 2, &f->hour)) && q[k] == ':') {
        q += k + 1;
        if (!(k = digits(q, 2, 2, &f->min))) return "expected HH:MM";
        q += k;
        if (*q == ':') {
            if (!(k = digits(q + 1, 2, 2, &f->sec))) return "expected HH:MM:SS";
            q += 1 + k;
            if ((*q == '.' || *q == ',') && isdigit((unsigned char)q[1])) q += 1 + fraction(q + 1, &f->frac);
        }
        const char *r = q;
        while (*r == ' ')
            r++;
        if ((k = parse_ampm(r, &f->ampm))) {
            f->hour12 = 1;
            q = r + k;
        }
        p = q;
    }
    while (*p == ' ')
        p++;
    if (*p) {
        if ((k = match_ci(p, "UTC")) || (k = match_ci(p, "GMT"))) {
            f->has_off = 1;
            f->off = 0;
            p += k;
            if ((*p == '+' || *p == '-') && (k = parse_offset(p, &f->off))) p += k;
        } else if ((k = parse_offset(p, &f->off))) {
            f->has_off = 1;
            p += k;
        }
    }
    while (isspace((unsigned char)*p))
        p++;
    if (*p) return "unexpected text after the time";
    return NULL;
}

/* A name from list (full or 3-letter), case-insensitive; index or -1. */
static int parse_name(const char **sp, const char *const *full, int n) {
    for (int i = 0; i < n; i++) {
        int k = match_ci(*sp, full[i]);
        if (!k) k = strncasecmp(*sp, full[i], 3) == 0 ? 3 : 0;
        if (k) {
            *sp += k;
            return i;
        }
    }
    return -1;
}

/* Expand the composite directives %T %F %D %R; NULL if too long. */
static const char *expand_fmt(const char *fmt, char *buf, size_t len) {
    size_t n = 0;
    for (const char *c = fmt; *c; c++) {
        const char *sub = NULL;
        if (c[0] == '%' && c[1]) {
            switch (c[1]) {
            case 'T': sub = "%H:%M:%S"; break;
            case 'F': sub = "%Y-%m-%d"; break;
            case 'D': sub = "%m/%d/%y"; break;
            case 'R': sub = "%H:%M"; break;
            default: break;
            }
        }
        if (sub) {
            size_t k = strlen(sub);
            if (n + k >= len) return NULL;
            memcpy(buf + n, sub, k);
            n += k;
            c++;
            continue;
        }
        if (n + 1 >= len) return NULL;
        buf[n++] = *c;
        if (c[0] == '%' && c[1]) {
            if (n + 1 >= len) return NULL;
            buf[n++] = *++c;
        }
    }
    buf[n] = '\0';
    return buf;
}

/* strptime-like: see docs/api/time.md for the directives. */
static const char *parse_fmt(const char *s, const char *fmt0, fields_t *f, char *msg, size_t msglen) {
    char fbuf[512];
    const char *fmt = expand_fmt(fmt0, fbuf, sizeof fbuf);
    if (!fmt) return "format too long";
    const char *p = s;
    int v, k;
    for (const char *c = fmt; *c; c++) {
        if (isspace((unsigned char)*c)) {
            if (!isspace((unsigned char)*p)) return "expected white space";
            while (isspace((unsigned char)*p))
                p++;
            while (isspace((unsigned char)c[1]))
                c++;
            continue;
        }
        if (*c != '%') {
            if (tolower((unsigned char)*p) != tolower((unsigned char)*c)) {
                snprintf(msg, msglen, "expected '%c' at '%.20s'", *c, p);
                return msg;
            }
            p++;
            continue;
        }
        c++;
        switch (*c) {
        case 'Y':
            if (!(k = digits(p, 4, 4, &v))) return "%Y expects a 4-digit year";
            f->year = v;
            p += k;
            break;
        case 'y':
            if (!(k = digits(p, 2, 2, &v))) return "%y expects a 2-digit year";
            f->year = v < 69 ? 2000 + v : 1900 + v;
            p += k;
            break;
        case 'm':
            if (!(k = digits(p, 1, 2, &f->month))) return "%m expects a month number";
            p += k;
            break;
        case 'e':
            while (*p == ' ')
                p++;
            /* fall through */
        case 'd':
            if (!(k = digits(p, 1, 2, &f->day))) return "%d expects a day number";
            p += k;
            break;
        case 'H':
            if (!(k = digits(p, 1, 2, &f->hour))) return "%H expects an hour";
            p += k;
            break;
        case 'I':
            if (!(k = digits(p, 1, 2, &f->hour))) return "%I expects an hour";
            f->hour12 = 1;
            p += k;
            break;
        case 'M':
            if (!(k = digits(p, 1, 2, &f->min))) return "%M expects minutes";
            p += k;
            break;
        case 'S':
            if (!(k = digits(p, 1, 2, &f->sec))) return "%S expects seconds";
            p += k;
            break;
        case 'f':
            if (!isdigit((unsigned char)*p)) return "%f expects digits";
            k = 0;
            while (k < 9 && isdigit((unsigned char)p[k]))
                k++;
            {
                char tmp[12] = "0.";
                memcpy(tmp + 2, p, (size_t)k);
                tmp[k + 2] = '\0';
                f->frac = strtod(tmp, NULL);
            }
            p += k;
            break;
        case 'j':
            if (!(k = digits(p, 1, 3, &f->yday)) || f->yday < 1 || f->yday > 366) return "%j expects a day of year";
            p += k;
            break;
        case 'p':
            if (!(k = parse_ampm(p, &f->ampm))) return "%p expects AM or PM";
            p += k;
            break;
        case 'b':
        case 'h':
        case 'B':
            if ((v = parse_name(&p, mon_full, 12)) < 0) return "expected a month name";
            f->month = v + 1;
            break;
        case 'a':
        case 'A':
            if (parse_name(&p, day_full, 7) < 0) return "expected a weekday name";
            break;
        case 'z':
            if (!(k = parse_offset(p, &f->off))) return "%z expects Z or an offset like +0100";
            f->has_off = 1;
            p += k;
            break;
        case 'Z': {
            char name[64];
            size_t n = 0;
            while (n + 1 < sizeof name && (isalnum((unsigned char)p[n]) || strchr("/_+-", p[n]) != NULL) && p[n])
                n++;
            memcpy(name, p, n);
            name[n] = '\0';
            if (n == 0) return "%Z expects a zone name";
            if (strcasecmp(name, "UTC") == 0 || strcasecmp(name, "GMT") == 0 || strcasecmp(name, "Z") == 0) {
                f->has_off = 1;
                f->off = 0;
            } else if (!(f->zone = ae_tz_get(name, NULL, 0))) {
                snprintf(msg, msglen, "unknown time zone '%s'", name);
                return msg;
            }
            p += n;
            break;
        }
        case 's': {
            char *end;
            f->epoch = strtod(p, &end);
            if (end == p || !isfinite(f->epoch)) return "%s expects epoch seconds";
            f->has_epoch = 1;
            p = end;
            break;
        }
        case 'n':
        case 't':
            while (isspace((unsigned char)*p))
                p++;
            break;
        case '%':
            if (*p != '%') return "expected '%'";
            p++;
            break;
        default: snprintf(msg, msglen, "unknown directive '%%%c' in the format", *c ? *c : ' '); return msg;
        }
    }
    if (*p) return "unconverted text remains";
    return NULL;
}

/* Turn parsed fields into epoch seconds; zone is used when the text had no
 * offset. Local times in a DST gap move forward by the gap; ambiguous ones
 * take the first occurrence (Python's fold=0). */
static const char *resolve(fields_t *f, const ae_tz *zone, double *out) {
    if (f->has_epoch) {
        *out = f->epoch;
        return NULL;
    }
    if (f->hour12) {
        if (f->hour < 1 || f->hour > 12) return "hour must be 1-12 with AM/PM";
        if (f->ampm == 1 && f->hour == 12)
            f->hour = 0;
        else if (f->ampm == 2 && f->hour < 12)
            f->hour += 12;
    }
    if (f->year < 1 || f->year > 9999) return "year out of range 1-9999";
    if (f->yday) {
        if (f->yday > 365 + ae_is_leap(f->year)) return "day of year out of range";
        int64_t y;
        ae_civil_from_days(ae_days_from_civil(f->year, 1, 1) + f->yday - 1, &y, &f->month, &f->day);
    }
    if (f->month < 1 || f->month > 12) return "month out of range 1-12";
    if (f->day < 1 || f->day > ae_days_in_month(f->year, f->month)) return "day out of range for the month";
    if (f->hour > 23) return "hour out of range 0-23";
    if (f->min > 59) return "minute out of range 0-59";
    if (f->sec > 59) return "second out of range 0-59";
    int64_t local = ae_days_from_civil(f->year, f->month, f->day) * 86400 + f->hour * 3600 + f->min * 60 + f->sec;
    int64_t u;
    if (f->has_off) {
        u = local - f->off;
    } else {
        int64_t c[2], tr;
        ae_tz_local_to_utc(f->zone ? f->zone : zone, local, c, &tr);
        u = c[0];
    }
    *out = (double)u + f->frac;
    return NULL;
}

double ae_time_parse_iso(const char *s, int *ok) {
    fields_t f;
    double t = 0;
    fields_init(&f);
    *ok = s && !parse_auto(s, &f) && !resolve(&f, ae_tz_utc(), &t);
    return *ok ? t : 0;
}

int ae_time_parse(const char *s, const char *fmt, const ae_tz *zone, double *out, char *err, size_t errlen) {
    fields_t f;
    char msg[128];
    fields_init(&f);
    const char *why = fmt ? parse_fmt(s, fmt, &f, msg, sizeof msg) : parse_auto(s, &f);
    if (!why) why = resolve(&f, zone ? zone : ae_tz_utc(), out);
    if (why && err && errlen)
        snprintf(err, errlen, "cannot parse '%.64s'%s: %s", s, fmt ? " with the format" : "", why);
    return why ? -1 : 0;
}

/* ------------------------------------------------------------- formatting */

typedef struct {
    char *out;
    size_t cap, n;
} sbuf;

static void put(sbuf *b, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++, b->n++)
        if (b->n + 1 < b->cap) b->out[b->n] = s[i];
}
static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

/* pad: '0', ' ' or 0 (none) */
static void num(sbuf *b, int64_t v, int width, char pad) {
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%lld", (long long)(v < 0 ? -v : v));
    if (v < 0) put(b, "-", 1);
    for (int i = len; pad && i < width; i++)
        put(b, &pad, 1);
    put(b, tmp, (size_t)len);
}

static void put_offset(sbuf *b, int32_t off, int colon) {
    int32_t a = off < 0 ? -off : off;
    put(b, off < 0 ? "-" : "+", 1);
    num(b, a / 3600, 2, '0');
    if (colon) put(b, ":", 1);
    num(b, a % 3600 / 60, 2, '0');
    if (a % 60) {
        if (colon) put(b, ":", 1);
        num(b, a % 60, 2, '0');
    }
}

static int iso_weeks(int64_t y) {
    int64_t jan1 = ae_days_from_civil(y, 1, 1);
    int w = (int)(((jan1 % 7) + 7 + 4) % 7); /* 0 = Sunday */
    return (w == 4 || (w == 3 && ae_is_leap(y))) ? 53 : 52;
}

static void iso_week(const tm_ex *t, int64_t *year, int *week) {
    int isowd = t->wday ? t->wday : 7;
    int w = (t->yday + 1 - isowd + 10) / 7;
    *year = t->year;
    if (w < 1) {
        *year = t->year - 1;
        w = iso_weeks(*year);
    } else if (w > iso_weeks(t->year)) {
        *year = t->year + 1;
        w = 1;
    }
    *week = w;
}

static int format_tm(sbuf *b, const char *fmt, const tm_ex *t, char *err, size_t errlen) {
    for (const char *c = fmt; *c; c++) {
        if (*c != '%') {
            put(b, c, 1);
            continue;
        }
        const char *start = c++;
        char pad = '0', flag = 0;
        if (*c == '-' || *c == '_' || *c == '0') {
            flag = *c;
            pad = *c == '-' ? 0 : *c == '_' ? ' ' : '0';
            c++;
        }
        int width = 0;
        while (isdigit((unsigned char)*c) && width < 100)
            width = width * 10 + (*c++ - '0');
        int colon = 0;
        if (*c == ':') colon = 1, c++;
        if (colon && *c != 'z') goto bad;
        if (width && *c != 'f') goto bad;
        int64_t iy;
        int iw;
        switch (*c) {
        case 'a': puts_(b, day_abbr[t->wday]); break;
        case 'A': puts_(b, day_full[t->wday]); break;
        case 'b':
        case 'h': puts_(b, mon_abbr[t->month - 1]); break;
        case 'B': puts_(b, mon_full[t->month - 1]); break;
        case 'c':
            puts_(b, day_abbr[t->wday]);
            put(b, " ", 1);
            puts_(b, mon_abbr[t->month - 1]);
            put(b, " ", 1);
            num(b, t->day, 2, ' ');
            put(b, " ", 1);
            format_tm(b, "%H:%M:%S %Y", t, err, errlen);
            break;
        case 'C': num(b, t->year / 100, 2, pad); break;
        case 'd': num(b, t->day, 2, pad); break;
        case 'D': format_tm(b, "%m/%d/%y", t, err, errlen); break;
        case 'e': num(b, t->day, 2, flag ? pad : ' '); break;
        case 'f': {
            int w = width ? width : 6;
            if (w > 9) w = 9;
            int64_t v = t->usec;
            for (int i = 6; i > w; i--)
                v /= 10;
            for (int i = 6; i < w; i++)
                v *= 10;
            num(b, v, w, '0');
            break;
        }
        case 'F': format_tm(b, "%Y-%m-%d", t, err, errlen); break;
        case 'G': iso_week(t, &iy, &iw), num(b, iy, 4, pad); break;
        case 'g': iso_week(t, &iy, &iw), num(b, iy % 100, 2, pad); break;
        case 'V': iso_week(t, &iy, &iw), num(b, iw, 2, pad); break;
        case 'H': num(b, t->hour, 2, pad); break;
        case 'k': num(b, t->hour, 2, flag ? pad : ' '); break;
        case 'I': num(b, t->hour % 12 ? t->hour % 12 : 12, 2, pad); break;
        case 'l': num(b, t->hour % 12 ? t->hour % 12 : 12, 2, flag ? pad : ' '); break;
        case 'j': num(b, t->yday + 1, 3, pad); break;
        case 'm': num(b, t->month, 2, pad); break;
        case 'M': num(b, t->min, 2, pad); break;
        case 'n': put(b, "\n", 1); break;
        case 't': put(b, "\t", 1); break;
        case 'p': puts_(b, t->hour < 12 ? "AM" : "PM"); break;
        case 'P': puts_(b, t->hour < 12 ? "am" : "pm"); break;
        case 'R': format_tm(b, "%H:%M", t, err, errlen); break;
        case 's': num(b, t->epoch, 1, 0); break;
        case 'S': num(b, t->sec, 2, pad); break;
        case 'T':
        case 'X': format_tm(b, "%H:%M:%S", t, err, errlen); break;
        case 'x': format_tm(b, "%m/%d/%y", t, err, errlen); break;
        case 'u': num(b, t->wday ? t->wday : 7, 1, 0); break;
        case 'w': num(b, t->wday, 1, 0); break;
        case 'U': num(b, (t->yday + 7 - t->wday) / 7, 2, pad); break;
        case 'W': num(b, (t->yday + 7 - (t->wday + 6) % 7) / 7, 2, pad); break;
        case 'y': num(b, t->year % 100, 2, pad); break;
        case 'Y': num(b, t->year, 4, pad); break;
        case 'z': put_offset(b, t->offset, colon); break;
        case 'Z': puts_(b, t->abbr); break;
        case '%': put(b, "%", 1); break;
        default: goto bad;
        }
        continue;
    bad:
        if (err && errlen)
            snprintf(err, errlen, "unknown format directive '%.*s'", (int)(c - start + (*c ? 1 : 0)), start);
        return -1;
    }
    return 0;
}

int ae_time_format(char *out, size_t cap, const char *fmt, double t, const ae_tz *zone, char *err, size_t errlen) {
    tm_ex tm;
    sbuf b = {out, cap, 0};
    breakdown(t, zone ? zone : ae_tz_utc(), &tm);
    if (format_tm(&b, fmt, &tm, err, errlen)) return -1;
    if (cap) out[b.n < cap ? b.n : cap - 1] = '\0';
    return (int)b.n;
}

/* precision: 0 auto (microseconds when non-zero), 's', 'm' (ms), 'u' (us) */
int ae_time_iso(char *out, size_t cap, double t, const ae_tz *zone, int precision, char sep, int z_for_utc) {
    tm_ex tm;
    sbuf b = {out, cap, 0};
    if (!zone) zone = ae_tz_utc();
    breakdown(t, zone, &tm);
    num(&b, tm.year, 4, '0');
    put(&b, "-", 1);
    num(&b, tm.month, 2, '0');
    put(&b, "-", 1);
    num(&b, tm.day, 2, '0');
    put(&b, &sep, 1);
    num(&b, tm.hour, 2, '0');
    put(&b, ":", 1);
    num(&b, tm.min, 2, '0');
    put(&b, ":", 1);
    num(&b, tm.sec, 2, '0');
    if (precision == 'm') {
        put(&b, ".", 1);
        num(&b, tm.usec / 1000, 3, '0');
    } else if (precision == 'u' || (precision == 0 && tm.usec)) {
        put(&b, ".", 1);
        num(&b, tm.usec, 6, '0');
    }
    if (z_for_utc && zone == ae_tz_utc())
        put(&b, "Z", 1);
    else
        put_offset(&b, tm.offset, 1);
    if (cap) out[b.n < cap ? b.n : cap - 1] = '\0';
    return (int)b.n;
}

/* -------------------------------------------------------------- Lua API */

static double check_time(lua_State *L, int idx) {
    double t = luaL_checknumber(L, idx);
    if (!(t >= T_MIN && t < T_MAX)) luaL_argerror(L, idx, "time out of range (years 1-9999)");
    return t;
}

/* The zone named by the optional argument idx (default UTC); on an unknown
 * zone pushes nil, message and returns NULL. */
static const ae_tz *opt_zone(lua_State *L, int idx, const char *fn) {
    if (lua_isnoneornil(L, idx)) return ae_tz_utc();
    const char *name = luaL_checkstring(L, idx);
    char err[256];
    const ae_tz *z = ae_tz_get(name, err, sizeof err);
    if (!z) {
        lua_pushnil(L);
        lua_pushfstring(L, "ae.time.%s: %s", fn, err);
    }
    return z;
}

static int l_now(lua_State *L) {
    lua_pushnumber(L, ae_clock_now());
    return 1;
}

/* parse(s [, tz [, fmt]]) -> epoch | nil, err */
static int l_parse(lua_State *L) {
    const char *s = luaL_checkstring(L, 1);
    const ae_tz *z = opt_zone(L, 2, "parse");
    const char *fmt = luaL_optstring(L, 3, NULL);
    if (!z) return 2;
    double t;
    char err[256];
    if (ae_time_parse(s, fmt, z, &t, err, sizeof err)) {
        lua_pushnil(L);
        lua_pushfstring(L, "ae.time.parse: %s", err);
        return 2;
    }
    lua_pushnumber(L, t);
    return 1;
}

static int push_formatted(lua_State *L, const char *fmt, double t, const ae_tz *z) {
    char small[256], err[128];
    int n = ae_time_format(small, sizeof small, fmt, t, z, err, sizeof err);
    if (n < 0) return luaL_error(L, "ae.time.format: %s", err);
    if ((size_t)n < sizeof small) {
        lua_pushlstring(L, small, (size_t)n);
        return 1;
    }
    char *big = lua_newuserdatauv(L, (size_t)n + 1, 0);
    ae_time_format(big, (size_t)n + 1, fmt, t, z, err, sizeof err);
    lua_pushlstring(L, big, (size_t)n);
    return 1;
}

/* format(t [, fmt [, tz]]) -> string | nil, err */
static int l_format(lua_State *L) {
    double t = check_time(L, 1);
    const char *fmt = luaL_optstring(L, 2, "%Y-%m-%d %H:%M:%S");
    const ae_tz *z = opt_zone(L, 3, "format");
    if (!z) return 2;
    return push_formatted(L, fmt, t, z);
}

/* iso(t [, tz [, opts]]) -> string | nil, err */
static int l_iso(lua_State *L) {
    double t = check_time(L, 1);
    const ae_tz *z = opt_zone(L, 2, "iso");
    if (!z) return 2;
    int precision = 0, zutc = 1;
    char sep = 'T';
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "precision");
        const char *p = luaL_optstring(L, -1, "auto");
        if (strcmp(p, "s") == 0)
            precision = 's';
        else if (strcmp(p, "ms") == 0)
            precision = 'm';
        else if (strcmp(p, "us") == 0)
            precision = 'u';
        else if (strcmp(p, "auto") != 0)
            return luaL_error(L, "ae.time.iso: precision must be \"auto\", \"s\", \"ms\" or \"us\", not '%s'", p);
        lua_getfield(L, 3, "sep");
        const char *s = luaL_optstring(L, -1, "T");
        if (strlen(s) != 1) return luaL_error(L, "ae.time.iso: sep must be one character");
        sep = s[0];
        lua_getfield(L, 3, "z");
        if (!lua_isnil(L, -1)) zutc = lua_toboolean(L, -1);
        lua_pop(L, 3);
    }
    char buf[64];
    int n = ae_time_iso(buf, sizeof buf, t, z, precision, sep, zutc);
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* to_zone(t [, tz]) -> fields | nil, err */
static int l_to_zone(lua_State *L) {
    double t = check_time(L, 1);
    const ae_tz *z = opt_zone(L, 2, "to_zone");
    if (!z) return 2;
    tm_ex tm;
    breakdown(t, z, &tm);
    lua_createtable(L, 0, 12);
    set_int(L, "year", tm.year);
    set_int(L, "month", tm.month);
    set_int(L, "day", tm.day);
    set_int(L, "hour", tm.hour);
    set_int(L, "min", tm.min);
    set_int(L, "sec", tm.sec);
    set_int(L, "usec", tm.usec);
    set_int(L, "wday", tm.wday + 1);
    set_int(L, "yday", tm.yday + 1);
    set_int(L, "offset", tm.offset);
    lua_pushboolean(L, tm.isdst);
    lua_setfield(L, -2, "isdst");
    lua_pushstring(L, tm.abbr);
    lua_setfield(L, -2, "zone");
    return 1;
}

static double field_num(lua_State *L, const char *k, int required, double dflt) {
    lua_getfield(L, 1, k);
    int isnum;
    double v = lua_tonumberx(L, -1, &isnum);
    int isnil = lua_isnil(L, -1);
    lua_pop(L, 1);
    if (isnil && !required) return dflt;
    if (!isnum || !isfinite(v) || fabs(v) > 1e12)
        return luaL_error(L, "ae.time.from_zone: field '%s' must be a number%s", k, required ? " (required)" : "");
    return v;
}

/* from_zone(fields [, tz]) -> epoch | nil, err */
static int l_from_zone(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    const ae_tz *z = opt_zone(L, 2, "from_zone");
    if (!z) return 2;
    double y = field_num(L, "year", 1, 0), mo = field_num(L, "month", 1, 0), d = field_num(L, "day", 1, 0);
    double h = field_num(L, "hour", 0, 0), mi = field_num(L, "min", 0, 0), s = field_num(L, "sec", 0, 0);
    double us = field_num(L, "usec", 0, 0), fold = field_num(L, "fold", 0, 0);
    lua_getfield(L, 1, "offset");
    int has_off = lua_isnumber(L, -1);
    int64_t want_off = has_off ? (int64_t)lua_tonumber(L, -1) : 0;
    lua_pop(L, 1);
    if (y != floor(y) || mo != floor(mo) || d != floor(d) || fabs(y) > 100000)
        return luaL_error(L, "ae.time.from_zone: year, month and day must be integers");
    /* out-of-range fields carry over (month 13 = January next year, ...) */
    int64_t m0 = (int64_t)mo - 1;
    int64_t yy = (int64_t)y + ae_floor_div(m0, 12);
    int mm = (int)(m0 - ae_floor_div(m0, 12) * 12) + 1;
    double secs = floor(h) * 3600 + floor(mi) * 60 + s + us / 1e6;
    double whole = floor(secs);
    int64_t local = (ae_days_from_civil(yy, mm, 1) + (int64_t)d - 1) * 86400 + (int64_t)whole;
    int64_t c[2], tr;
    int kind = ae_tz_local_to_utc(z, local, c, &tr);
    int64_t u = c[fold != 0 ? 1 : 0];
    if (kind == AE_TZ_AMBIGUOUS && has_off) {
        if (local - c[0] == want_off)
            u = c[0];
        else if (local - c[1] == want_off)
            u = c[1];
    }
    double t = (double)u + (secs - whole);
    if (!(t >= T_MIN && t < T_MAX)) {
        lua_pushnil(L);
        lua_pushstring(L, "ae.time.from_zone: date out of range (years 1-9999)");
        return 2;
    }
    lua_pushnumber(L, t);
    return 1;
}

/* cron_next(expr, after [, tz]) -> epoch | nil, err */
static int l_cron_next(lua_State *L) {
    const char *expr = luaL_checkstring(L, 1);
    double after = lua_isnoneornil(L, 2) ? ae_clock_now() : check_time(L, 2);
    const ae_tz *z = opt_zone(L, 3, "cron_next");
    if (!z) return 2;
    ae_cron c;
    char err[256];
    if (ae_cron_parse(expr, &c, err, sizeof err)) {
        lua_pushnil(L);
        lua_pushfstring(L, "ae.time.cron_next: %s", err);
        return 2;
    }
    double next;
    if (ae_cron_next(&c, z, after, &next)) {
        lua_pushnil(L);
        lua_pushfstring(L, "ae.time.cron_next: '%s' never matches", expr);
        return 2;
    }
    lua_pushnumber(L, next);
    return 1;
}

/* cron_valid(expr) -> true | false, err */
static int l_cron_valid(lua_State *L) {
    const char *expr = luaL_checkstring(L, 1);
    ae_cron c;
    char err[256];
    if (ae_cron_parse(expr, &c, err, sizeof err)) {
        lua_pushboolean(L, 0);
        lua_pushfstring(L, "ae.time.cron_valid: %s", err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* zone_valid(tz) -> boolean */
static int l_zone_valid(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    lua_pushboolean(L, ae_tz_get(name, NULL, 0) != NULL);
    return 1;
}

int luaopen_ae_time(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"now", l_now},
        {"parse", l_parse},
        {"format", l_format},
        {"iso", l_iso},
        {"to_zone", l_to_zone},
        {"from_zone", l_from_zone},
        {"cron_next", l_cron_next},
        {"cron_valid", l_cron_valid},
        {"zone_valid", l_zone_valid},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
