/*
 * The checks the C tests share: CHECK(cond) and CHECK_STATUS(expr, want)
 * print where a check failed and count it in `failures`, which each test's
 * main() turns into its exit status.
 */
#ifndef HERALD_TEST_CHECK_H
#define HERALD_TEST_CHECK_H

#include <stdio.h>

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

#endif
