/* test_time.c - the zone layer (tz.c), cron (cron.c) and the text
 * conversions of ae.time (time.c). Zone answers are also checked against
 * glibc's localtime_r, which reads the same tzdata. */
#define _POSIX_C_SOURCE 200809L
#include "cron.h"
#include "tz.h"
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const ae_tz *zone(const char *name) {
    char err[256];
    const ae_tz *z = ae_tz_get(name, err, sizeof err);
    if (!z) {
        printf("cannot load %s: %s\n", name, err);
        exit(1);
    }
    return z;
}

static double iso(const char *s) {
    int ok;
    double t = ae_time_parse_iso(s, &ok);
    if (!ok) printf("cannot parse %s\n", s);
    return t;
}

static void test_civil(void) {
    int bad = 0;
    for (int64_t d = -800000; d <= 800000; d += 7) {
        int64_t y;
        int m, dd;
        ae_civil_from_days(d, &y, &m, &dd);
        if (ae_days_from_civil(y, m, dd) != d || dd < 1 || dd > ae_days_in_month(y, m)) bad++;
    }
    CHECK(bad == 0, "civil round trip: %d mismatches", bad);
    CHECK(ae_days_from_civil(1970, 1, 1) == 0, "epoch day");
    CHECK(ae_days_from_civil(2000, 3, 1) == 11017, "2000-03-01");
    CHECK(ae_is_leap(2000) && !ae_is_leap(2100) && ae_is_leap(2024) && !ae_is_leap(2023), "leap years");
    CHECK(ae_floor_div(-1, 86400) == -1 && ae_floor_div(86400, 86400) == 1, "floor_div");
}

/* offsets, DST flags and abbreviations against glibc for random instants */
static void test_against_libc(void) {
    static const char *zones[] = {"America/New_York", "US/Eastern",    "Europe/Madrid",       "UTC",
                                  "Etc/GMT+5",        "Asia/Kolkata",  "Australia/Lord_Howe", "America/Sao_Paulo",
                                  "Pacific/Chatham",  "Europe/London", "America/Los_Angeles", "Africa/Casablanca"};
    srand(12345);
    for (size_t i = 0; i < sizeof zones / sizeof zones[0]; i++) {
        const ae_tz *z = zone(zones[i]);
        setenv("TZ", zones[i], 1);
        tzset();
        int bad = 0, bad_rt = 0;
        for (int k = 0; k < 20000; k++) {
            /* 1901..2100, biased to include transition neighbourhoods */
            int64_t t = -2145916800LL + (int64_t)((double)rand() / RAND_MAX * 6249223200.0);
            if (k % 4 == 0) t = (t / 3600) * 3600 + (k % 3) - 1;
            time_t tt = (time_t)t;
            struct tm tm;
            localtime_r(&tt, &tm);
            const ae_tz_type *ty = ae_tz_lookup(z, t);
            if (ty->offset != tm.tm_gmtoff || ty->isdst != (tm.tm_isdst > 0) || strcmp(ty->abbr, tm.tm_zone) != 0) {
                if (bad < 3)
                    printf("  %s t=%lld: ours %d %d %s, libc %ld %d %s\n", zones[i], (long long)t, ty->offset,
                           ty->isdst, ty->abbr, tm.tm_gmtoff, tm.tm_isdst, tm.tm_zone);
                bad++;
            }
            /* local -> UTC must give back t among its answers */
            int64_t u[2], tr;
            int kind = ae_tz_local_to_utc(z, t + ty->offset, u, &tr);
            if (kind == AE_TZ_GAP || (u[0] != t && u[1] != t)) bad_rt++;
        }
        CHECK(bad == 0, "%s: %d of 20000 instants differ from libc", zones[i], bad);
        CHECK(bad_rt == 0, "%s: %d local->utc round trips failed", zones[i], bad_rt);
    }
    unsetenv("TZ");
    tzset();
}

static void test_zones(void) {
    const ae_tz *ny = zone("America/New_York");
    double spring = iso("2021-03-14T07:00:00Z"), fall = iso("2021-11-07T06:00:00Z");
    CHECK(ae_tz_lookup(ny, (int64_t)spring - 1)->offset == -18000, "EST before spring forward");
    CHECK(ae_tz_lookup(ny, (int64_t)spring)->offset == -14400, "EDT after spring forward");
    CHECK(strcmp(ae_tz_lookup(ny, (int64_t)spring)->abbr, "EDT") == 0, "abbr EDT");
    CHECK(ae_tz_lookup(ny, (int64_t)fall - 1)->offset == -14400, "EDT before fall back");
    CHECK(ae_tz_lookup(ny, (int64_t)fall)->offset == -18000, "EST after fall back");
    /* far future comes from the POSIX footer */
    CHECK(ae_tz_lookup(ny, (int64_t)iso("2045-07-01T12:00:00Z"))->offset == -14400, "2045 summer EDT");
    CHECK(ae_tz_lookup(ny, (int64_t)iso("2045-01-01T12:00:00Z"))->offset == -18000, "2045 winter EST");
    CHECK(ae_tz_lookup(ny, (int64_t)iso("2045-03-12T06:59:59Z"))->offset == -18000, "2045-03-12 before");
    CHECK(ae_tz_lookup(ny, (int64_t)iso("2045-03-12T07:00:00Z"))->offset == -14400, "2045-03-12 after");
    CHECK(ae_tz_lookup(ny, (int64_t)iso("9999-06-01T00:00:00Z"))->offset == -14400, "year 9999");
    const ae_tz *lh = zone("Australia/Lord_Howe");
    CHECK(ae_tz_lookup(lh, (int64_t)iso("2041-01-15T00:00:00Z"))->offset == 39600, "Lord Howe summer +11");
    CHECK(ae_tz_lookup(lh, (int64_t)iso("2041-07-15T00:00:00Z"))->offset == 37800, "Lord Howe winter +10:30");
    CHECK(ae_tz_lookup(zone("Asia/Kolkata"), 0)->offset == 19800, "Kolkata +5:30");
    const ae_tz *g5 = zone("Etc/GMT+5");
    CHECK(ae_tz_lookup(g5, 1600000000)->offset == -18000 && strcmp(ae_tz_lookup(g5, 0)->abbr, "-05") == 0,
          "Etc/GMT+5 is UTC-5");
    const ae_tz *utc = zone("UTC");
    CHECK(utc == ae_tz_utc() && ae_tz_lookup(utc, 123)->offset == 0, "UTC");
    CHECK(zone("US/Eastern") == zone("US/Eastern"), "zones are cached");
    CHECK(strcmp(ae_tz_name(zone("US/Eastern")), "US/Eastern") == 0, "zone name");

    char err[256] = "";
    CHECK(ae_tz_get("Mars/Olympus", err, sizeof err) == NULL && strstr(err, "unknown time zone 'Mars/Olympus'"),
          "unknown zone: %s", err);
    CHECK(ae_tz_get("../../etc/passwd", err, sizeof err) == NULL && strstr(err, "invalid"), "path escape: %s", err);
    CHECK(ae_tz_get("", err, sizeof err) == NULL, "empty name");
    CHECK(ae_tz_get("America", err, sizeof err) == NULL, "a directory is not a zone: %s", err);
    CHECK(ae_tz_get("zone.tab", err, sizeof err) == NULL, "a non-TZif file is not a zone: %s", err);

    /* local -> UTC around the 2021 US changes */
    int64_t u[2], tr = 0;
    int64_t gap = (int64_t)iso("2021-03-14T02:30:00Z"); /* local wall time */
    CHECK(ae_tz_local_to_utc(ny, gap, u, &tr) == AE_TZ_GAP, "02:30 on 2021-03-14 does not exist");
    CHECK(tr == (int64_t)spring, "gap starts at 07:00Z");
    CHECK(u[0] == (int64_t)iso("2021-03-14T07:30:00Z") && u[1] == (int64_t)iso("2021-03-14T06:30:00Z"),
          "gap candidates");
    int64_t amb = (int64_t)iso("2021-11-07T01:30:00Z");
    CHECK(ae_tz_local_to_utc(ny, amb, u, &tr) == AE_TZ_AMBIGUOUS, "01:30 on 2021-11-07 happens twice");
    CHECK(u[0] == (int64_t)iso("2021-11-07T05:30:00Z") && u[1] == (int64_t)iso("2021-11-07T06:30:00Z"),
          "both occurrences");
    CHECK(ae_tz_local_to_utc(ny, (int64_t)iso("2021-07-01T12:00:00Z"), u, &tr) == AE_TZ_UNIQUE &&
              u[0] == (int64_t)iso("2021-07-01T16:00:00Z"),
          "unique");
}

static void test_parse(void) {
    static const struct {
        const char *s;
        double t;
    } ok[] = {
        {"2021-02-22T15:04:05Z", 1614006245},
        {"2021-02-22T15:04:05.123456Z", 1614006245.123456},
        {"2021-02-22T16:04:05+01:00", 1614006245},
        {"2021-02-22T10:04:05-0500", 1614006245},
        {"2021-02-22T10:04:05-05", 1614006245},
        {"2021-02-22 15:04:05", 1614006245},
        {"2021-02-22", 1613952000},
        {"2021-01-19T09:59:43.663-05:00", 1611068383.663},
        {"2020-10-05T13:22:00.000Z", 1601904120},
        {"2021-02-22 15:04:05.123456+00:00", 1614006245.123456},
        {"2020-06-23T13:00:00.000+0000", 1592917200},
        {"3/15/2021 5:31:54 PM", 1615829514},
        {"3/15/2021 12:05:00 AM", 1615766700},
        {"12/1/2020", 1606780800},
        {"2021-02-22t15:04:05z", 1614006245},
        {"  2021-02-22T15:04:05Z  ", 1614006245},
        {"2021-02-22 15:04", 1614006240},
        {"2021-02-22 15:04:05 UTC", 1614006245},
        {"20210222T150405Z", 1614006245},
        {"2021/02/22 15:04:05", 1614006245},
        {"2020-02-29T00:00:00Z", 1582934400},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        double t = 0;
        char err[256] = "";
        int rc = ae_time_parse(ok[i].s, NULL, NULL, &t, err, sizeof err);
        CHECK(rc == 0 && fabs(t - ok[i].t) < 1e-6, "parse '%s' -> %.6f (%s), want %.6f", ok[i].s, t, err, ok[i].t);
    }
    static const char *bad[] = {"",
                                "0000-00-00 00:00:00",
                                "2021-02-30",
                                "2021-13-01",
                                "2021-02-22T25:00:00Z",
                                "2021-02-22T15:60:00Z",
                                "2021-02-22T15:04:05+25:00",
                                "2021-02-22T15:04:05Zjunk",
                                "yesterday",
                                "2019-02-29",
                                "13/45/2020",
                                "3/15/2021 13:31:54 PM"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double t;
        char err[256] = "";
        CHECK(ae_time_parse(bad[i], NULL, NULL, &t, err, sizeof err) == -1 && strstr(err, "cannot parse"),
              "'%s' must not parse", bad[i]);
    }
    /* naive times in a zone, with the DST rules */
    const ae_tz *ny = zone("US/Eastern");
    double t;
    ae_time_parse("2021-03-15 13:41:30", NULL, ny, &t, NULL, 0);
    CHECK(t == iso("2021-03-15T17:41:30Z"), "naive in EDT");
    ae_time_parse("2021-03-14 02:30", NULL, ny, &t, NULL, 0);
    CHECK(t == iso("2021-03-14T07:30:00Z"), "gap time moves forward (03:30 EDT)");
    ae_time_parse("2021-11-07 01:30", NULL, ny, &t, NULL, 0);
    CHECK(t == iso("2021-11-07T05:30:00Z"), "ambiguous time takes the first (EDT)");
    ae_time_parse("2021-03-15T13:41:30Z", NULL, ny, &t, NULL, 0);
    CHECK(t == iso("2021-03-15T13:41:30Z"), "an explicit offset wins over the zone");

    /* explicit formats */
    static const struct {
        const char *s, *fmt;
        const char *zone;
        double t;
    } fm[] = {
        {"2020-06-23 03.00PM", "%Y-%m-%d %I.%M%p", "US/Pacific", 1592949600},
        {"2020-06-21 4.00PM", "%Y-%m-%d %I.%M%p", "US/Pacific", 1592780400},
        {"2020-03-16 12:00AM", "%Y-%m-%d %I:%M%p", "UTC", 1584316800},
        {"Mar 16, 2020 @ 04:00 PM", "%b %d, %Y @ %I:%M %p", "UTC", 1584374400},
        {"16/March/20 23:59:59.5", "%d/%B/%y %T.%f", "UTC", 1584403199.5},
        {"2021-060", "%Y-%j", "UTC", 1614556800},
        {"1614006245", "%s", "UTC", 1614006245},
        {"Mon, 22 Feb 2021 15:04:05 +0000", "%a, %d %b %Y %H:%M:%S %z", "UTC", 1614006245},
        {"2021-02-22 10:04:05 America/New_York", "%F %T %Z", "UTC", 1614006245},
    };
    for (size_t i = 0; i < sizeof fm / sizeof fm[0]; i++) {
        char err[256] = "";
        int rc = ae_time_parse(fm[i].s, fm[i].fmt, zone(fm[i].zone), &t, err, sizeof err);
        CHECK(rc == 0 && fabs(t - fm[i].t) < 1e-6, "parse '%s' with '%s' -> %.3f (%s), want %.3f", fm[i].s, fm[i].fmt,
              t, err, fm[i].t);
    }
    char err[256] = "";
    CHECK(ae_time_parse("2020-06-23 03.00", "%Y-%m-%d %I.%M%p", NULL, &t, err, sizeof err) == -1 &&
              strstr(err, "AM or PM"),
          "missing AM/PM: %s", err);
    CHECK(ae_time_parse("2020-06-23x", "%Y-%m-%d", NULL, &t, err, sizeof err) == -1 && strstr(err, "remains"),
          "trailing text: %s", err);
    CHECK(ae_time_parse("2020-06-23", "%Y-%m-%d %Q", NULL, &t, err, sizeof err) == -1, "bad directive");
    int okflag;
    ae_time_parse_iso("garbage", &okflag);
    CHECK(!okflag, "ae_time_parse_iso reports failure");
}

static void test_format(void) {
    const ae_tz *ny = zone("America/New_York");
    double t = 1614006245.123456; /* 2021-02-22T15:04:05.123456Z, a Monday */
    char buf[256], err[128];
    static const struct {
        const char *fmt, *want;
        int utc;
    } cases[] = {
        {"%Y-%m-%d %H:%M:%S", "2021-02-22 15:04:05", 1},
        {"%Y-%m-%dT%H:%M:%S.%f%z", "2021-02-22T10:04:05.123456-0500", 0},
        {"%:z %Z", "-05:00 EST", 0},
        {"%a %A %b %B %j %u %w", "Mon Monday Feb February 053 1 1", 1},
        {"%I:%M %p|%l|%P", "03:04 PM| 3|pm", 1},
        {"%-m/%-d/%Y %-I:%M:%S %p", "2/22/2021 3:04:05 PM", 1},
        {"%3f|%f|%9f", "123|123456|123456000", 1},
        {"%s", "1614006245", 1},
        {"%F %T %D %R", "2021-02-22 15:04:05 02/22/21 15:04", 1},
        {"%G-W%V %U %W %C %y %e %k", "2021-W08 08 08 20 21 22 15", 1},
        {"%c", "Mon Feb 22 15:04:05 2021", 1},
        {"100%%", "100%", 1},
        {"%b %d, %Y @ %I:%M %p UTC", "Feb 22, 2021 @ 03:04 PM UTC", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int n = ae_time_format(buf, sizeof buf, cases[i].fmt, t, cases[i].utc ? NULL : ny, err, sizeof err);
        CHECK(n >= 0 && strcmp(buf, cases[i].want) == 0, "format '%s' -> '%s', want '%s'", cases[i].fmt, buf,
              cases[i].want);
    }
    CHECK(ae_time_format(buf, sizeof buf, "%Q", t, NULL, err, sizeof err) == -1 && strstr(err, "%Q"), "bad: %s", err);
    CHECK(ae_time_format(buf, sizeof buf, "abc %", t, NULL, err, sizeof err) == -1, "trailing %%");
    CHECK(ae_time_format(buf, 5, "%Y-%m-%d", t, NULL, err, sizeof err) == 10 && strcmp(buf, "2021") == 0,
          "truncation reports the full length");
    /* ISO week edge: 2021-01-03 (Sunday) is in 2020-W53 */
    ae_time_format(buf, sizeof buf, "%G-%V", iso("2021-01-03T12:00:00Z"), NULL, err, sizeof err);
    CHECK(strcmp(buf, "2020-53") == 0, "ISO week of 2021-01-03: %s", buf);

    ae_time_iso(buf, sizeof buf, 1614006245, NULL, 0, 'T', 1);
    CHECK(strcmp(buf, "2021-02-22T15:04:05Z") == 0, "iso UTC: %s", buf);
    ae_time_iso(buf, sizeof buf, t, ny, 0, 'T', 1);
    CHECK(strcmp(buf, "2021-02-22T10:04:05.123456-05:00") == 0, "iso NY: %s", buf);
    ae_time_iso(buf, sizeof buf, 1601904120, NULL, 'm', 'T', 1);
    CHECK(strcmp(buf, "2020-10-05T13:22:00.000Z") == 0, "iso ms: %s", buf);
    ae_time_iso(buf, sizeof buf, t, NULL, 'u', ' ', 0);
    CHECK(strcmp(buf, "2021-02-22 15:04:05.123456+00:00") == 0, "iso python style: %s", buf);
    ae_time_iso(buf, sizeof buf, 1614006245.9999996, NULL, 0, 'T', 1);
    CHECK(strcmp(buf, "2021-02-22T15:04:06Z") == 0, "rounding carries into seconds: %s", buf);
    ae_time_iso(buf, sizeof buf, iso("2021-07-01T00:00:00Z"), zone("Asia/Kolkata"), 0, 'T', 1);
    CHECK(strcmp(buf, "2021-07-01T05:30:00+05:30") == 0, "iso Kolkata: %s", buf);

    /* parse(format(t)) round trips in several zones */
    static const char *zs[] = {"UTC", "US/Eastern", "Europe/Madrid", "Australia/Lord_Howe", "Asia/Kolkata"};
    int bad = 0;
    for (size_t k = 0; k < 5; k++) {
        const ae_tz *z = zone(zs[k]);
        for (double x = 946684800.25; x < 2524608000.0; x += 7777777.5) {
            double back;
            ae_time_iso(buf, sizeof buf, x, z, 0, 'T', 1);
            if (ae_time_parse(buf, NULL, NULL, &back, err, sizeof err) || fabs(back - x) > 1e-6) bad++;
        }
    }
    CHECK(bad == 0, "iso round trips: %d failures", bad);
}

static double next_of(const char *expr, const char *after, const char *tz) {
    ae_cron c;
    char err[256];
    if (ae_cron_parse(expr, &c, err, sizeof err)) {
        printf("  cron '%s': %s\n", expr, err);
        return -1;
    }
    double n;
    if (ae_cron_next(&c, zone(tz), iso(after), &n)) return -2;
    return n;
}

static void test_cron(void) {
    static const struct {
        const char *expr, *after, *tz, *want;
    } cases[] = {
        {"*/15 * * * *", "2021-02-22T15:04:05Z", "UTC", "2021-02-22T15:15:00Z"},
        {"*/15 * * * *", "2021-02-22T15:15:00Z", "UTC", "2021-02-22T15:30:00Z"}, /* strictly after */
        {"0 8 * * *", "2021-02-22T08:00:00Z", "UTC", "2021-02-23T08:00:00Z"},
        {"0 0 1 * *", "2021-02-22T00:00:00Z", "US/Eastern", "2021-03-01T05:00:00Z"},
        {"0 0 1 * *", "2021-03-01T05:00:00Z", "US/Eastern", "2021-04-01T04:00:00Z"},
        {"30 9 * * mon-fri", "2021-02-19T15:00:00Z", "US/Eastern", "2021-02-22T14:30:00Z"},
        {"0 12 * * 7", "2021-02-22T00:00:00Z", "UTC", "2021-02-28T12:00:00Z"},
        {"0 12 * * 0", "2021-02-22T00:00:00Z", "UTC", "2021-02-28T12:00:00Z"},
        {"0 0 13 * fri", "2021-02-22T00:00:00Z", "UTC", "2021-02-26T00:00:00Z"}, /* dom OR dow */
        {"0 0 13 * fri", "2021-03-06T00:00:00Z", "UTC", "2021-03-12T00:00:00Z"},
        {"0 0 */10 * fri", "2021-02-22T00:00:00Z", "UTC", "2021-05-21T00:00:00Z"}, /* "*" start: AND */
        {"0 0 29 2 *", "2021-01-01T00:00:00Z", "UTC", "2024-02-29T00:00:00Z"},
        {"0 0 29 feb *", "2096-03-01T00:00:00Z", "UTC", "2104-02-29T00:00:00Z"},
        {"1-10/3 5 * jan,JUL *", "2021-02-22T00:00:00Z", "UTC", "2021-07-01T05:01:00Z"},
        {"@hourly", "2021-02-22T15:04:05Z", "UTC", "2021-02-22T16:00:00Z"},
        {"@daily", "2021-02-22T15:04:05Z", "Asia/Kolkata", "2021-02-22T18:30:00Z"},
        {"0 0 * * *", "2041-01-01T00:00:00Z", "Australia/Lord_Howe", "2041-01-01T13:00:00Z"},
        /* spring forward: 02:xx does not exist on 2021-03-14 in New York */
        {"30 2 * * *", "2021-03-13T08:00:00Z", "US/Eastern", "2021-03-14T07:00:00Z"},
        {"30 2 * * *", "2021-03-14T07:00:00Z", "US/Eastern", "2021-03-15T06:30:00Z"},
        {"*/15 * * * *", "2021-03-14T06:50:00Z", "US/Eastern", "2021-03-14T07:00:00Z"},
        {"*/15 * * * *", "2021-03-14T07:00:00Z", "US/Eastern", "2021-03-14T07:15:00Z"},
        {"0 3 * * *", "2021-03-13T09:00:00Z", "US/Eastern", "2021-03-14T07:00:00Z"},
        /* fall back: 01:xx happens twice on 2021-11-07, runs once */
        {"30 1 * * *", "2021-11-06T12:00:00Z", "US/Eastern", "2021-11-07T05:30:00Z"},
        {"30 1 * * *", "2021-11-07T05:30:00Z", "US/Eastern", "2021-11-08T06:30:00Z"},
        {"0 * * * *", "2021-11-07T05:00:00Z", "US/Eastern", "2021-11-07T07:00:00Z"},
        {"45 1 * * *", "2021-11-07T06:10:00Z", "US/Eastern", "2021-11-07T06:45:00Z"}, /* started in 2nd 01:xx */
        /* far future from the POSIX rule */
        {"30 2 * * *", "2045-03-11T12:00:00Z", "America/New_York", "2045-03-12T07:00:00Z"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double n = next_of(cases[i].expr, cases[i].after, cases[i].tz);
        char buf[64];
        ae_time_iso(buf, sizeof buf, n, NULL, 0, 'T', 1);
        CHECK(n == iso(cases[i].want), "cron '%s' after %s in %s -> %s, want %s", cases[i].expr, cases[i].after,
              cases[i].tz, buf, cases[i].want);
    }
    CHECK(next_of("0 0 30 2 *", "2021-01-01T00:00:00Z", "UTC") == -2, "Feb 30 never matches");
    CHECK(next_of("0 0 31 4,6,9,11 *", "2021-01-01T00:00:00Z", "UTC") == -2, "31st of 30-day months");

    static const struct {
        const char *expr, *msg;
    } bad[] = {
        {"", "0 fields"},
        {"* * * *", "4 fields"},
        {"* * * * * *", "more than 5"},
        {"60 * * * *", "minute: value 60 out of range 0-59"},
        {"* 24 * * *", "hour: value 24"},
        {"* * 0 * *", "day-of-month: value 0"},
        {"* * * 13 *", "month: value 13"},
        {"* * * * 8", "day-of-week: value 8"},
        {"*/0 * * * *", "step 0"},
        {"5-1 * * * *", "goes backwards"},
        {"* * * foo *", "unknown name 'foo'"},
        {"* * * * monday", "unknown name 'monday'"},
        {"1,,2 * * * *", "expected a number"},
        {"1, * * * *", "empty list item"},
        {"*/ * * * *", "step needs a number"},
        {"1-* * * * *", "expected a number"},
        {"@reboot", "unknown cron macro"},
        {"a * * * *", "unknown name 'a'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ae_cron c;
        char err[256] = "";
        int rc = ae_cron_parse(bad[i].expr, &c, err, sizeof err);
        CHECK(rc == -1 && strstr(err, bad[i].msg), "cron '%s': got '%s', want '%s'", bad[i].expr, err, bad[i].msg);
    }
    ae_cron c;
    CHECK(ae_cron_parse("0-59/30 */6 1,15 jan-jun sun,sat", &c, NULL, 0) == 0 &&
              c.minute == ((1ULL << 0) | (1ULL << 30)) && c.hour == 0x41041 && c.dom == ((1u << 1) | (1u << 15)) &&
              c.month == 0x7e && c.dow == 0x41,
          "bit sets");
    CHECK(ae_cron_parse("0 0 * * 5-7", &c, NULL, 0) == 0 && c.dow == 0x61, "5-7 includes Sunday");
}

int main(void) {
    test_civil();
    test_zones();
    test_against_libc();
    test_parse();
    test_format();
    test_cron();
    return TEST_DONE();
}
