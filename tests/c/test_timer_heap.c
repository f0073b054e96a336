/* test_timer_heap.c - the engine clock and the timer heap: ordering, stop
 * from the middle, re-arming, the manual clock, and a randomized check
 * against a sorted reference. */
#include "engine.h"
#include "engine_internal.h"
#include "test.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#define N 2000
static ae_timer timers[N];
static double fired[N];
static int nfired;

static void record(ae_timer *t) { fired[nfired++] = t->deadline; }

static void test_order_and_stop(void) {
    ae_clock_set_manual(1, 1000.0);
    nfired = 0;
    srand(42);
    int stopped = 0;
    for (int i = 0; i < N; i++) {
        ae_timer_init(&timers[i], record, NULL);
        ae_timer_start(&timers[i], 1000.0 + (double)(rand() % 100000) / 100.0);
    }
    /* stop every 7th, re-arm every 11th somewhere else */
    for (int i = 0; i < N; i += 7) {
        ae_timer_stop(&timers[i]);
        stopped++;
    }
    for (int i = 3; i < N; i += 11)
        if (ae_timer_armed(&timers[i])) ae_timer_start(&timers[i], 1000.0 + (double)(rand() % 50000) / 100.0);
    CHECK(!ae_timer_armed(&timers[0]));
    CHECK(ae_timer_next_deadline() >= 1000.0);
    ae_clock_set(1000.0 + 2000.0); /* everything is due; the loop fires them */
    event_base_loop(ae_engine_base(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    CHECK(nfired == N - stopped);
    int sorted = 1;
    for (int i = 1; i < nfired; i++)
        if (fired[i] < fired[i - 1]) sorted = 0;
    CHECK(sorted);
    CHECK(ae_timer_next_deadline() < 0);
}

static int second_fired;
static ae_timer chain_a, chain_b;
static void fire_b(ae_timer *t) {
    (void)t;
    second_fired = 1;
}
static void fire_a(ae_timer *t) {
    (void)t;
    ae_timer_start(&chain_b, ae_clock_now()); /* due at once: fires in the same pass */
}

static void test_timer_started_from_a_timer(void) {
    ae_clock_set_manual(1, 5000.0);
    ae_timer_init(&chain_a, fire_a, NULL);
    ae_timer_init(&chain_b, fire_b, NULL);
    ae_timer_start(&chain_a, 5010.0);
    ae_clock_set(5010.0);
    event_base_loop(ae_engine_base(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    CHECK(second_fired == 1);
}

static void test_manual_clock(void) {
    ae_clock_set_manual(1, 1234.5);
    CHECK(ae_clock_is_manual());
    CHECK(ae_clock_now() == 1234.5);
    ae_clock_set(1000.0); /* never backwards */
    CHECK(ae_clock_now() == 1234.5);
    ae_clock_set(1300.0);
    CHECK(ae_clock_now() == 1300.0);
    ae_clock_set_manual(0, 0);
    CHECK(!ae_clock_is_manual());
    double a = ae_clock_now();
    CHECK(a >= 1300.0 && a < 1301.0); /* continues from where it stood */
    double m1 = ae_clock_monotonic(), m2 = ae_clock_monotonic();
    CHECK(m2 >= m1);
}

static int real_fired;
static void fire_real(ae_timer *t) {
    (void)t;
    real_fired++;
    event_base_loopbreak(ae_engine_base());
}

static void test_real_time_timer(void) {
    ae_clock_set_manual(0, 0);
    ae_timer t;
    ae_timer_init(&t, fire_real, NULL);
    double start = ae_clock_monotonic();
    ae_timer_start(&t, ae_clock_now() + 0.02);
    event_base_dispatch(ae_engine_base());
    double took = ae_clock_monotonic() - start;
    CHECK(real_fired == 1);
    CHECK(took >= 0.015 && took < 1.0);
}

int main(void) {
    if (ae_engine_init() != 0) return 1;
    ae_clock_init();
    test_order_and_stop();
    test_timer_started_from_a_timer();
    test_manual_clock();
    test_real_time_timer();
    ae_clock_shutdown();
    ae_engine_free();
    return TEST_DONE();
}
