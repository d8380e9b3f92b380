/*
 * POP3 from C: list, retrieve (callbacks, pipelined), top (through the
 * completion queue), delete, and the argument checks, with every op
 * completing exactly once. Runs under valgrind from the test script.
 *
 * Needs a POP3 server with STLS on 127.0.0.1: HERALD_TEST_POP3_PORT, its
 * CA in HERALD_TEST_CA_FILE, user bob / bobpass. Whatever is in bob's
 * maildrop is listed, retrieved and then deleted. Without the variables it
 * says so and exits 0.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald.h"
#include "check.h"


#define WAIT_MS 60000
#define MAX_MESSAGES 1000

/* One entry per token: how often it completed, and with what. */
#define MAX_TOKENS (4 * MAX_MESSAGES + 16)
static atomic_int completed[MAX_TOKENS];
static atomic_uint status_of[MAX_TOKENS];
static int next_token;

/* What list found, and what retrieve brought back: copied during callbacks. */
static char *uidls[MAX_MESSAGES];
static size_t n_uidls;
static uint8_t *bodies[MAX_MESSAGES];
static size_t body_len[MAX_MESSAGES];
static uint64_t sizes[MAX_MESSAGES];

/* strdup is POSIX, not C11. */
static char *copy_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static void *token(void)
{
    if (next_token >= MAX_TOKENS) {
        fprintf(stderr, "too many ops\n");
        exit(1);
    }
    return (void *)(intptr_t)next_token++;
}

static void count(const herald_completion *c)
{
    intptr_t t = (intptr_t)c->user_token;
    if (t < 0 || t >= MAX_TOKENS) {
        fprintf(stderr, "completion with an unknown token %ld\n", (long)t);
        failures++;
        return;
    }
    atomic_store(&status_of[t], c->status);
    atomic_fetch_add(&completed[t], 1);
    if (c->detail == NULL) {
        fprintf(stderr, "completion detail is NULL\n");
        failures++;
    }
    if ((c->cancelled != 0) != (c->status == HERALD_STATUS_CANCELLED)) {
        fprintf(stderr, "cancelled is %d with status %u\n", c->cancelled, c->status);
        failures++;
    }
}

static int each_completed_once(int from, int to)
{
    int bad = 0;
    for (int i = from; i < to; i++)
        if (atomic_load(&completed[i]) != 1) {
            if (bad < 5)
                fprintf(stderr, "op with token %d completed %d times\n", i, atomic_load(&completed[i]));
            bad++;
        }
    return bad == 0;
}

static void on_list(const herald_completion *c)
{
    if (c->status == HERALD_STATUS_OK) {
        size_t n = herald_result_count(c->result);
        if (n > MAX_MESSAGES) {
            fprintf(stderr, "%zu messages; this test takes at most %d\n", n, MAX_MESSAGES);
            n = MAX_MESSAGES;
        }
        for (size_t i = 0; i < n && n_uidls < MAX_MESSAGES; i++) {
            const char *u = herald_result_str(c->result, i, HERALD_FIELD_NAME);
            if (u == NULL) {
                fprintf(stderr, "list item %zu has no UIDL\n", i);
                failures++;
                continue;
            }
            if (herald_result_uid(c->result, i) != i + 1) {
                fprintf(stderr, "list item %zu has message number %llu\n", i,
                        (unsigned long long)herald_result_uid(c->result, i));
                failures++;
            }
            char *copy = copy_str(u);
            if (copy == NULL) {
                failures++;
                continue;
            }
            sizes[n_uidls] = herald_result_int(c->result, i, HERALD_FIELD_SIZE);
            uidls[n_uidls++] = copy;
        }
        /* Out of range: 0 / NULL. */
        if (herald_result_str(c->result, n + 5, HERALD_FIELD_NAME) != NULL || herald_result_uid(c->result, n + 5) != 0) {
            fprintf(stderr, "an index out of range gave something\n");
            failures++;
        }
    } else {
        fprintf(stderr, "list: %s: %s\n", herald_status_str(c->status), c->detail);
    }
    count(c);
}

static void on_retrieve(const herald_completion *c)
{
    if (c->status == HERALD_STATUS_OK) {
        const char *u = herald_result_str(c->result, 0, HERALD_FIELD_NAME);
        size_t len = 0;
        const uint8_t *p = herald_result_bytes(c->result, 0, &len);
        size_t i = 0;
        while (u && i < n_uidls && strcmp(uidls[i], u) != 0)
            i++;
        if (u == NULL || i == n_uidls || p == NULL || len == 0) {
            fprintf(stderr, "retrieve: no UIDL, an unknown one, or no bytes\n");
            failures++;
        } else {
            if (len != sizes[i]) {
                fprintf(stderr, "retrieve %s: %zu bytes, LIST said %llu\n", u, len, (unsigned long long)sizes[i]);
                failures++;
            }
            bodies[i] = malloc(len);
            if (bodies[i]) {
                memcpy(bodies[i], p, len);
                body_len[i] = len;
            }
        }
    } else {
        fprintf(stderr, "retrieve: %s: %s\n", herald_status_str(c->status), c->detail);
    }
    count(c);
}

static void on_any(const herald_completion *c)
{
    count(c);
}

static herald_client *pop3_client(int port, const char *ca)
{
    herald_options *o = herald_options_new(HERALD_PROTOCOL_POP3);
    CHECK(o != NULL);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_HOST, test_host()), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_PORT, port), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_STARTTLS), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_USERNAME, "bob"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_PASSWORD, "bobpass"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_CA_FILE, ca), HERALD_STATUS_OK);
    herald_client *c = NULL;
    CHECK_STATUS(herald_client_new(o, &c), HERALD_STATUS_OK);
    herald_options_free(o);
    return c;
}

static void test_arguments(herald_client *c)
{
    herald_op op = 0;
    const char *bad[] = {"ok-uidl", "has space"};
    const char *null_one[] = {"ok-uidl", NULL};
    CHECK_STATUS(herald_pop3_list_async(NULL, on_any, NULL, &op), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_pop3_list_async(c, on_any, NULL, NULL), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_pop3_retrieve_async(c, NULL, on_any, NULL, &op), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_pop3_retrieve_async(c, "", on_any, NULL, &op), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_pop3_retrieve_async(c, "a\r\nDELE 1", on_any, NULL, &op), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_pop3_top_async(c, "\xff\xfe", 3, on_any, NULL, &op), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_pop3_delete_async(c, bad, 2, on_any, NULL, &op), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_pop3_delete_async(c, null_one, 2, on_any, NULL, &op), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_pop3_delete_async(c, NULL, 1, on_any, NULL, &op), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_pop3_delete_async(c, bad, 0, on_any, NULL, &op), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK(op == 0);
    CHECK(strlen(herald_last_error()) > 0);

    /* A POP3 op on an SMTP client is refused at submit. */
    herald_options *o = herald_options_new(HERALD_PROTOCOL_SMTP);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_HOST, "127.0.0.1"), HERALD_STATUS_OK);
    herald_client *smtp = NULL;
    CHECK_STATUS(herald_client_new(o, &smtp), HERALD_STATUS_OK);
    herald_options_free(o);
    CHECK_STATUS(herald_pop3_list_async(smtp, on_any, NULL, &op), HERALD_STATUS_INVALID_ARGUMENT);
    herald_client_free(smtp);
}

static void test_maildrop(int port, const char *ca)
{
    herald_client *c = pop3_client(port, ca);
    test_arguments(c);
    herald_op op = 0;

    /* List. */
    int first = next_token;
    CHECK_STATUS(herald_pop3_list_async(c, on_list, token(), &op), HERALD_STATUS_OK);
    CHECK(op != 0);
    CHECK_STATUS(herald_wait(c, op, WAIT_MS), HERALD_STATUS_OK);
    CHECK(atomic_load(&status_of[first]) == HERALD_STATUS_OK);
    size_t n = n_uidls;

    /* Retrieve them all at once (pipelined), plus one that is not there. */
    int from = next_token;
    for (size_t i = 0; i < n; i++)
        CHECK_STATUS(herald_pop3_retrieve_async(c, uidls[i], on_retrieve, token(), &op), HERALD_STATUS_OK);
    int missing = next_token;
    CHECK_STATUS(herald_pop3_retrieve_async(c, "no-such-uidl", on_any, token(), &op), HERALD_STATUS_OK);
    CHECK_STATUS(herald_client_flush(c, WAIT_MS), HERALD_STATUS_OK);
    CHECK(each_completed_once(from, next_token));
    for (int t = from; t < missing; t++)
        CHECK(atomic_load(&status_of[t]) == HERALD_STATUS_OK);
    CHECK(atomic_load(&status_of[missing]) == HERALD_STATUS_NOT_FOUND);

    /* TOP 0 through the completion queue: the header block, a prefix of the message. */
    for (size_t i = 0; i < n; i++)
        CHECK_STATUS(herald_pop3_top_async(c, uidls[i], 0, NULL, NULL, &op), HERALD_STATUS_OK);
    for (size_t got = 0; got < n; got++) {
        herald_completion *q = herald_client_next(c, WAIT_MS);
        CHECK(q != NULL);
        if (q == NULL)
            break;
        CHECK(q->status == HERALD_STATUS_OK);
        const char *u = herald_result_str(q->result, 0, HERALD_FIELD_NAME);
        size_t len = 0;
        const uint8_t *p = herald_result_bytes(q->result, 0, &len);
        for (size_t i = 0; u && p && i < n; i++)
            if (strcmp(uidls[i], u) == 0)
                CHECK(bodies[i] && len <= body_len[i] && memcmp(bodies[i], p, len) == 0);
        herald_completion_free(q);
    }
    CHECK(herald_client_next(c, 0) == NULL);

    /* Delete everything, plus a UIDL that is not there: OK, the others named. */
    if (n > 0) {
        const char **all = calloc(n + 1, sizeof *all);
        CHECK(all != NULL);
        if (all) {
            for (size_t i = 0; i < n; i++)
                all[i] = uidls[i];
            all[n] = "no-such-uidl";
            int t = next_token;
            CHECK_STATUS(herald_pop3_delete_async(c, all, n + 1, on_any, token(), &op), HERALD_STATUS_OK);
            free(all); /* copied at the call */
            CHECK_STATUS(herald_wait(c, op, WAIT_MS), HERALD_STATUS_OK);
            CHECK(atomic_load(&status_of[t]) == HERALD_STATUS_OK);
        }
    }
    /* Nothing left: deleting an unknown UIDL is NOT_FOUND. */
    const char *gone[] = {"no-such-uidl"};
    int t = next_token;
    CHECK_STATUS(herald_pop3_delete_async(c, gone, 1, on_any, token(), &op), HERALD_STATUS_OK);
    CHECK_STATUS(herald_wait(c, op, WAIT_MS), HERALD_STATUS_OK);
    CHECK(atomic_load(&status_of[t]) == HERALD_STATUS_NOT_FOUND);

    /* A list in a new session sees the empty maildrop. */
    size_t before = n_uidls;
    int l = next_token;
    CHECK_STATUS(herald_pop3_list_async(c, on_list, token(), &op), HERALD_STATUS_OK);
    CHECK_STATUS(herald_wait(c, op, WAIT_MS), HERALD_STATUS_OK);
    CHECK(atomic_load(&status_of[l]) == HERALD_STATUS_OK);
    CHECK(n_uidls == before);

    /* Ops still queued when the client is freed complete (cancelled or not). */
    int last = next_token;
    for (int i = 0; i < 20; i++)
        CHECK_STATUS(herald_pop3_retrieve_async(c, "no-such-uidl", on_any, token(), &op), HERALD_STATUS_OK);
    herald_client_free(c);
    CHECK(each_completed_once(last, next_token));
    CHECK(each_completed_once(first, next_token));
    printf("pop3: %zu messages listed, retrieved, read with TOP and deleted\n", n);
}

int main(void)
{
    const char *port = getenv("HERALD_TEST_POP3_PORT");
    const char *ca = getenv("HERALD_TEST_CA_FILE");
    if (!port || !ca) {
        printf("pop3: HERALD_TEST_POP3_PORT and HERALD_TEST_CA_FILE not set; nothing to test\n");
        return 0;
    }
    test_maildrop(atoi(port), ca);
    for (size_t i = 0; i < n_uidls; i++)
        free(uidls[i]);
    for (size_t i = 0; i < MAX_MESSAGES; i++)
        free(bodies[i]);
    if (failures) {
        fprintf(stderr, "pop3: %d checks failed\n", failures);
        return 1;
    }
    printf("pop3: all checks passed\n");
    return 0;
}
