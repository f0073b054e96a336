/* test.h - what every C unit test (tests/c/test_*.c) shares: the CHECK macro
 * and the pass/fail tally.
 *
 *   CHECK(cond);                         counts a pass, or prints
 *   CHECK(cond, "got %d", n);            "FAIL file:line: (cond) message" to
 *                                        stderr and counts a failure
 *   return TEST_DONE();                  prints "N passed, M failed" (the line
 *                                        ctest logs are read for) and gives
 *                                        the exit status: 0 only if none failed
 *
 * The message, when given, must start with a string literal (a printf
 * format). Include once, from the test's own .c file. */
#ifndef AE_TEST_H
#define AE_TEST_H

#include <stdio.h>

static int test_passed, test_failed;

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (cond) {                                                                                                    \
            test_passed++;                                                                                             \
        } else {                                                                                                       \
            test_failed++;                                                                                             \
            fprintf(stderr, "FAIL %s:%d: (%s)", __FILE__, __LINE__, #cond);                                            \
            fprintf(stderr, " " __VA_ARGS__);                                                                          \
            fputc('\n', stderr);                                                                                       \
        }                                                                                                              \
    } while (0)

static inline int test_done(void) {
    fflush(stderr);
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}

#define TEST_DONE() test_done()

#endif
