/*
 * The checks the C tests share: CHECK(cond) and CHECK_STATUS(expr, want)
 * print where a check failed and count it in `failures`, which each test's
 * main() turns into its exit status.
 */
#ifndef HERALD_TEST_CHECK_H
#define HERALD_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "herald.h"

static int failures;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                               \
        }                                                                             \
    } while (0)

#define CHECK_STATUS(expr, want)                                                               \
    do {                                                                                       \
        herald_status got_ = (expr);                                                           \
        if (got_ != (want)) {                                                                  \
            fprintf(stderr, "%s:%d: %s gave %u (%s: %s), want %u\n", __FILE__, __LINE__, #expr, \
                    got_, herald_status_str(got_), herald_last_error(), (unsigned)(want));      \
            failures++;                                                                        \
        }                                                                                      \
    } while (0)

/* The test servers' host name: HERALD_TEST_HOST, else 127.0.0.1 (the tests
 * under wine use "localhost": Wine's SChannel matches only DNS names of the
 * certificate, not its IP address). */
static inline const char *test_host(void)
{
    const char *h = getenv("HERALD_TEST_HOST");
    return h && *h ? h : "127.0.0.1";
}

#endif
