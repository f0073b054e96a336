/* test_metrics.c - C tests of the Prometheus registry (core/metrics.c):
 * Python float formatting (against values printed by prometheus_client),
 * the exact exposition of counters / gauges / histograms, label escaping,
 * the engine.h hooks, declaration conflicts, removal, and status providers.
 * Exits non-zero on any failure; prints "N passed, M failed".
 */
#include "engine.h"
#include "engine_internal.h"
#include "metrics.h"
#include "test.h"

#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_float(double v, const char *want) {
    char buf[64];
    ae_metrics_format_float(v, buf, sizeof buf);
    CHECK(strcmp(buf, want) == 0, "format_float(%.17g) = '%s', want '%s'", v, buf, want);
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

static void test_floats(void) {
    check_float(3, "3.0");
    check_float(0, "0.0");
    check_float(-0.0, "-0.0");
    check_float(4.21, "4.21");
    check_float(0.1, "0.1");
    check_float(1.0 / 3, "0.3333333333333333");
    check_float(1613995200, "1.6139952e+09");
    check_float(1613995200.5, "1.6139952005e+09");
    check_float(1234567, "1.234567e+06");
    check_float(999999, "999999.0");
    check_float(123456.5, "123456.5");
    check_float(-1234567, "-1234567.0");
    check_float(1e-5, "1e-05");
    check_float(1.5e-7, "1.5e-07");
    check_float(0.0001, "0.0001");
    check_float(1e16, "1e+16");
    check_float(1.5e300, "1.5e+300");
    check_float(1e22, "1e+22");
    check_float(12345678901234567.0, "1.2345678901234568e+16");
    check_float(INFINITY, "+Inf");
    check_float(-INFINITY, "-Inf");
    check_float(NAN, "NaN");
    check_float(1e10, "1e+010"); /* prometheus_client's own quirk: 'e+0' + str(10) */
}

static void test_exposition(void) {
    char err[256];
    ae_metric_family *c = ae_metrics_declare(AE_METRIC_COUNTER, "outage_ticket_counter", "Tickets created", 0, NULL, 0,
                                             NULL, err, sizeof err);
    CHECK(c != NULL, "declare counter: %s", err);
    ae_metrics_add(c, NULL, 1);
    ae_metrics_add(c, NULL, 2);
    CHECK(ae_metrics_add(c, NULL, -1) == -1, "counter refuses negative increments");
    const char *lbl[3] = {"enterprise_name", "name", "state"};
    ae_metric_family *g =
        ae_metrics_declare(AE_METRIC_GAUGE, "edge_state_gauge", "Edge States", 3, lbl, 0, NULL, err, sizeof err);
    CHECK(g != NULL, "declare gauge: %s", err);
    const char *v1[3] = {"Titan America|85940|", "TA-Store-0042", "CONNECTED"};
    const char *v2[3] = {"q\"uo\\te\nd", "n", "OFFLINE"};
    ae_metrics_add(g, v1, 1);
    ae_metrics_setv(g, v2, 2.5);
    double buckets[2] = {0.5, 2};
    ae_metric_family *h = ae_metrics_declare(AE_METRIC_HISTOGRAM, "req_seconds", "Help with \\ and\nnewline", 0, NULL,
                                             2, buckets, err, sizeof err);
    CHECK(h != NULL, "declare histogram: %s", err);
    ae_metrics_observev(h, NULL, 0.25);
    ae_metrics_observev(h, NULL, 1);
    ae_metrics_observev(h, NULL, 3);

    size_t len;
    char *text = ae_metrics_render(&len);
    CHECK(len == strlen(text), "length");
    CHECK(contains(text, "# HELP outage_ticket_counter_total Tickets created\n"
                         "# TYPE outage_ticket_counter_total counter\n"
                         "outage_ticket_counter_total 3.0\n"
                         "# TYPE outage_ticket_counter_created gauge\n"
                         "outage_ticket_counter_created 1."),
          "counter block:\n%s", text);
    CHECK(contains(text, "# HELP edge_state_gauge Edge States\n# TYPE edge_state_gauge gauge\n"
                         "edge_state_gauge{enterprise_name=\"Titan America|85940|\",name=\"TA-Store-0042\","
                         "state=\"CONNECTED\"} 1.0\n"
                         "edge_state_gauge{enterprise_name=\"q\\\"uo\\\\te\\nd\",name=\"n\",state=\"OFFLINE\"} 2.5\n"),
          "gauge block:\n%s", text);
    CHECK(contains(text, "# HELP req_seconds Help with \\\\ and\\nnewline\n"
                         "# TYPE req_seconds histogram\n"
                         "req_seconds_bucket{le=\"0.5\"} 1.0\n"
                         "req_seconds_bucket{le=\"2.0\"} 2.0\n"
                         "req_seconds_bucket{le=\"+Inf\"} 3.0\n"
                         "req_seconds_count 3.0\n"
                         "req_seconds_sum 4.25\n"
                         "# TYPE req_seconds_created gauge\n"
                         "req_seconds_created "),
          "histogram block:\n%s", text);
    CHECK(!contains(text, "edge_state_gauge_created"), "gauges have no _created");
    free(text);

    /* remove / clear */
    CHECK(ae_metrics_remove(g, v1) == 1, "remove existing series");
    CHECK(ae_metrics_remove(g, v1) == 0, "remove missing series");
    double val = -1;
    CHECK(ae_metrics_get(g, v2, &val, NULL) == 1 && val == 2.5, "get after remove of the other series");
    ae_metrics_clear(c);
    CHECK(ae_metrics_get(c, NULL, &val, NULL) == 1 && val == 0, "cleared unlabelled counter is back at 0");

    /* a series key longer than lookup's stack buffer takes the allocated path */
    char longv[600];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    const char *v3[3] = {longv, "n", "DEGRADED"};
    ae_metrics_setv(g, v3, 7);
    ae_metrics_add(g, v3, 1);
    CHECK(ae_metrics_get(g, v3, &val, NULL) == 1 && val == 8, "long key series found again (%g)", val);
    CHECK(ae_metrics_remove(g, v3) == 1, "long key series removed");
    CHECK(ae_metrics_get(g, v3, &val, NULL) == 0, "long key series gone");
    /* many series: the hash table grows and keeps every series */
    char name[32];
    const char *lv[3] = {name, "x", "y"};
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "e%d", i);
        ae_metrics_add(g, lv, i);
    }
    int ok = 1;
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "e%d", i);
        if (!ae_metrics_get(g, lv, &val, NULL) || val != i) ok = 0;
    }
    CHECK(ok, "1000 series kept");
}

static void test_conflicts(void) {
    char err[256];
    CHECK(ae_metrics_declare(AE_METRIC_GAUGE, "outage_ticket_counter", "", 0, NULL, 0, NULL, err, sizeof err) == NULL,
          "type conflict refused");
    CHECK(contains(err, "already exists as a counter"), "message: %s", err);
    CHECK(ae_metrics_declare(AE_METRIC_GAUGE, "outage_ticket_counter_total", "", 0, NULL, 0, NULL, err, sizeof err) ==
              NULL,
          "exposed-name collision refused");
    CHECK(ae_metrics_declare(AE_METRIC_COUNTER, "outage_ticket_counter_total", "x", 0, NULL, 0, NULL, err,
                             sizeof err) == ae_metrics_find("outage_ticket_counter"),
          "counter given with _total is the same family");
    const char *bad[1] = {"__x"};
    CHECK(ae_metrics_declare(AE_METRIC_GAUGE, "g_bad", "", 1, bad, 0, NULL, err, sizeof err) == NULL,
          "reserved label refused");
    CHECK(ae_metrics_declare(AE_METRIC_GAUGE, "9lives", "", 0, NULL, 0, NULL, err, sizeof err) == NULL,
          "bad metric name refused");
    double unsorted[2] = {2, 1};
    CHECK(ae_metrics_declare(AE_METRIC_HISTOGRAM, "h_bad", "", 0, NULL, 2, unsorted, err, sizeof err) == NULL,
          "unsorted buckets refused");
}

static void test_hooks(void) {
    ae_metric_inc("aengine_task_errors", "Task errors per unit", "unit", "a", 1);
    ae_metric_inc("aengine_task_errors", "Task errors per unit", "unit", "a", 2);
    ae_metric_inc("aengine_task_errors", "Task errors per unit", "unit", "b", 1);
    ae_metric_set("nats_connected", "Connected", NULL, NULL, 1);
    ae_metric_observe("http_client_seconds", "Latency", "host", "x", 0.2);
    ae_metric_set("aengine_task_errors", "misuse: wrong type, ignored", "unit", "a", 99); /* logged once, ignored */
    ae_metric_family *f = ae_metrics_find("aengine_task_errors");
    const char *a[1] = {"a"};
    double v = 0;
    CHECK(f && ae_metrics_get(f, a, &v, NULL) && v == 3, "hook counter = %g", v);
    char *text = ae_metrics_render(NULL);
    CHECK(contains(text, "aengine_task_errors_total{unit=\"a\"} 3.0\naengine_task_errors_total{unit=\"b\"} 1.0\n"),
          "hook counters rendered:\n%s", text);
    CHECK(contains(text, "nats_connected 1.0\n"), "hook gauge rendered");
    CHECK(contains(text, "http_client_seconds_bucket{host=\"x\",le=\"0.25\"} 1.0\n"), "hook histogram rendered");
    free(text);
}

static void provider_ok(lua_State *L, void *arg) {
    (void)arg;
    lua_newtable(L);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "ok");
}

static void provider_down(lua_State *L, void *arg) {
    lua_newtable(L);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "ok");
    lua_pushstring(L, arg);
    lua_setfield(L, -2, "error");
}

static void provider_raises(lua_State *L, void *arg) {
    (void)arg;
    luaL_error(L, "boom");
}

static void test_status(void) {
    lua_State *L = luaL_newstate();
    ae_status_provider("nats", provider_ok, NULL);
    CHECK(ae_status_collect(L) == 1, "ready when every provider is ok");
    lua_getfield(L, -1, "nats");
    lua_getfield(L, -1, "ok");
    CHECK(lua_toboolean(L, -1), "nats.ok");
    lua_settop(L, 0);
    ae_status_provider("redis", provider_down, "connection refused");
    CHECK(ae_status_collect(L) == 0, "not ready when a provider says ok=false");
    lua_getfield(L, -1, "redis");
    lua_getfield(L, -1, "error");
    CHECK(strcmp(lua_tostring(L, -1), "connection refused") == 0, "provider details kept");
    lua_settop(L, 0);
    ae_status_provider("redis", provider_raises, NULL); /* replaces */
    CHECK(ae_status_collect(L) == 0, "a provider that raises counts as not ok");
    CHECK(lua_gettop(L) == 1, "one table pushed");
    lua_settop(L, 0);
    ae_status_provider_remove("redis");
    CHECK(ae_status_collect(L) == 1, "ready again after removal");
    lua_close(L);
    ae_status_provider_remove("nats");
}

int main(void) {
    ae_clock_init();
    test_floats();
    test_exposition();
    test_conflicts();
    test_hooks();
    test_status();
    ae_metrics_free_all();
    return TEST_DONE();
}
