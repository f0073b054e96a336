/* tz.h - IANA time zones read from the system tzdata (TZif files), and the
 * civil-calendar arithmetic ae.time and the cron code share.
 *
 * A zone is loaded once (TZif v1/v2/v3/v4, the POSIX TZ footer for instants
 * after the last transition) and cached for the life of the process; the
 * returned pointer stays valid until exit. Lookups are pure functions, so any
 * thread may use a loaded zone.
 */
#ifndef AE_TZ_H
#define AE_TZ_H

#include <stddef.h>
#include <stdint.h>

typedef struct ae_tz ae_tz;

/* One local time type: offset in seconds east of UTC, DST flag, abbreviation. */
typedef struct {
    int32_t offset;
    int isdst;
    char abbr[16];
} ae_tz_type;

/* The zone called name (IANA name such as "America/New_York", "US/Eastern",
 * "UTC", "Etc/GMT+5"). NULL when unknown or unreadable; then err (if given)
 * holds a message. The zone directory is $TZDIR or /usr/share/zoneinfo. */
const ae_tz *ae_tz_get(const char *name, char *err, size_t errlen);
/* The UTC zone (always available, even without tzdata). */
const ae_tz *ae_tz_utc(void);
const char *ae_tz_name(const ae_tz *z);

/* The local time type in force at the UTC instant t (epoch seconds). */
const ae_tz_type *ae_tz_lookup(const ae_tz *z, int64_t t);

/* Result of mapping a local wall-clock time to UTC. */
enum {
    AE_TZ_UNIQUE = 0,    /* exactly one instant has this local time */
    AE_TZ_AMBIGUOUS = 1, /* two instants (a repeated hour when clocks go back) */
    AE_TZ_GAP = 2        /* none (skipped by clocks going forward) */
};

/* Map local wall-clock seconds (local civil time counted as if it were UTC)
 * to UTC instants. Fills out[0] (and out[1] when ambiguous, out[0] < out[1]).
 * For a gap, out[0] = local - offset before the gap (the later instant, like
 * Python's fold=0), out[1] = local - offset after the gap, and *transition is
 * the instant the gap starts (the first valid instant after the skipped
 * local time). Returns AE_TZ_UNIQUE, AE_TZ_AMBIGUOUS or AE_TZ_GAP. */
int ae_tz_local_to_utc(const ae_tz *z, int64_t local, int64_t out[2], int64_t *transition);

/* ------------------------------------------------------- civil calendar */

/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d (m 1..12). */
int64_t ae_days_from_civil(int64_t y, int m, int d);
/* Inverse of ae_days_from_civil. */
void ae_civil_from_days(int64_t days, int64_t *y, int *m, int *d);
int ae_is_leap(int64_t y);
int ae_days_in_month(int64_t y, int m);
/* Floor division and the matching non-negative remainder. */
int64_t ae_floor_div(int64_t a, int64_t b);

/* ------------------------------------------- text conversions (time.c) */

/* Parse s: fmt NULL = ISO-8601 and the other recognised forms, else a
 * strptime-like format. Times without an offset are local to zone (NULL =
 * UTC). Returns 0 and *out, or -1 with a message in err. */
int ae_time_parse(const char *s, const char *fmt, const ae_tz *zone, double *out, char *err, size_t errlen);
/* ISO-8601 or the other recognised forms, naive = UTC (AE_CLOCK_START). */
double ae_time_parse_iso(const char *s, int *ok);
/* strftime-like formatting of t in zone into out (NUL-terminated, truncated
 * to cap). Returns the full length, or -1 (message in err) on an unknown
 * directive. */
int ae_time_format(char *out, size_t cap, const char *fmt, double t, const ae_tz *zone, char *err, size_t errlen);
/* ISO-8601 text of t in zone. precision: 0 = microseconds only when not
 * zero, 's', 'm' (milliseconds), 'u' (microseconds). sep: 'T' or ' '.
 * z_for_utc: write "Z" rather than "+00:00" when zone is UTC. */
int ae_time_iso(char *out, size_t cap, double t, const ae_tz *zone, int precision, char sep, int z_for_utc);

#endif
