/* cron.h - 5-field cron expressions ("minute hour day-of-month month
 * day-of-week") and the next matching instant in an IANA time zone. */
#ifndef AE_CRON_H
#define AE_CRON_H

#include "tz.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t minute;            /* bit n = minute n matches (0..59) */
    uint32_t hour;              /* 0..23 */
    uint32_t dom;               /* 1..31 */
    uint16_t month;             /* 1..12 */
    uint8_t dow;                /* 0..6, Sunday = 0 */
    uint8_t dom_star, dow_star; /* the field started with '*' */
} ae_cron;

/* Parse expr: five fields, or one of @yearly @annually @monthly @weekly
 * @daily @midnight @hourly. Returns 0, or -1 with a message in err. */
int ae_cron_parse(const char *expr, ae_cron *c, char *err, size_t errlen);

/* The first instant strictly after `after` (epoch seconds) whose local time
 * in zone z matches. Local times skipped by a forward DST jump fire at the
 * first valid instant after the jump; a repeated local hour fires once (its
 * first occurrence, or the second if `after` is already past the first).
 * Returns 0 and sets *next, or -1 when nothing matches in the next 50 years
 * (e.g. "0 0 30 2 *"). */
int ae_cron_next(const ae_cron *c, const ae_tz *z, double after, double *next);

#endif
