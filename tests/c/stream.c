/*
 * Streaming fetch from C: items to a callback then one final completion,
 * items through the completion queue, and fetch to a directory. Runs under
 * valgrind.
 *
 * Needs a Dovecot: HERALD_TEST_IMAP_PORT (plain IMAP on 127.0.0.1) whose
 * alice/alicepass INBOX holds HERALD_TEST_MESSAGES messages, and
 * HERALD_TEST_DIR, an empty directory to fetch into. Without them it says
 * so and exits 0.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald.h"
#include "check.h"

/* What the callbacks saw; written on herald's delivery thread. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static size_t items_seen;
static size_t bytes_seen;
static int final_seen;
static uint64_t final_count;
static int item_after_final;

static void on_item(const herald_completion *c)
{
    pthread_mutex_lock(&lock);
    if (final_seen)
        item_after_final = 1;
    CHECK(herald_completion_is_item(c) == 1);
    CHECK(c->status == HERALD_STATUS_OK);
    CHECK(herald_result_count(c->result) == 1);
    CHECK(herald_result_int(c->result, 0, HERALD_FIELD_INDEX) == items_seen + 1);
    size_t len = 0;
    CHECK(herald_result_bytes(c->result, 0, &len) != NULL);
    items_seen++;
    bytes_seen += len;
    pthread_mutex_unlock(&lock);
}

static void on_final(const herald_completion *c)
{
    pthread_mutex_lock(&lock);
    CHECK(herald_completion_is_item(c) == 0);
    CHECK_STATUS(c->status, HERALD_STATUS_OK);
    final_seen++;
    final_count = herald_result_int(c->result, 0, HERALD_FIELD_COUNT);
    pthread_mutex_unlock(&lock);
}

int main(void)
{
    const char *port = getenv("HERALD_TEST_IMAP_PORT");
    const char *count = getenv("HERALD_TEST_MESSAGES");
    const char *dir = getenv("HERALD_TEST_DIR");
    if (port == NULL || count == NULL || dir == NULL) {
        printf("stream.c: HERALD_TEST_IMAP_PORT, HERALD_TEST_MESSAGES or HERALD_TEST_DIR not set; skipped\n");
        return 0;
    }
    size_t n = (size_t)atoi(count);

    herald_options *o = herald_options_new(HERALD_PROTOCOL_IMAP);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_HOST, test_host()), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_PORT, atoi(port)), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_NONE), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_USERNAME, "alice"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_PASSWORD, "alicepass"), HERALD_STATUS_OK);
    herald_client *c = NULL;
    CHECK_STATUS(herald_client_new(o, &c), HERALD_STATUS_OK);
    herald_options_free(o);
    if (c == NULL)
        return 1;
    herald_op op = 0;

    /* Bad input is refused at the call. */
    CHECK_STATUS(herald_imap_fetch_stream_async(c, NULL, "1:*", HERALD_FETCH_BODY, on_item, on_final, NULL, &op),
                 HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_imap_fetch_to_dir_async(c, "INBOX", "1:*", NULL, NULL, NULL, &op),
                 HERALD_STATUS_INVALID_ARGUMENT);
    CHECK(herald_completion_is_item(NULL) == 0);

    /* Items to a callback, then the one final completion. */
    CHECK_STATUS(herald_imap_fetch_stream_async(c, "INBOX", "1:*", HERALD_FETCH_BODY | HERALD_FETCH_FLAGS, on_item,
                                                on_final, NULL, &op),
                 HERALD_STATUS_OK);
    CHECK_STATUS(herald_wait(c, op, 60000), HERALD_STATUS_OK);
    pthread_mutex_lock(&lock);
    CHECK(items_seen == n);
    CHECK(final_seen == 1);
    CHECK(final_count == n);
    CHECK(item_after_final == 0);
    pthread_mutex_unlock(&lock);

    /* The queue: items, then the final completion. */
    CHECK_STATUS(herald_imap_fetch_stream_async(c, "INBOX", "1:*", HERALD_FETCH_HEADERS, NULL, NULL, (void *)5, &op),
                 HERALD_STATUS_OK);
    size_t queued = 0;
    for (;;) {
        herald_completion *done = herald_client_next(c, 60000);
        CHECK(done != NULL);
        if (done == NULL)
            break;
        CHECK(done->op == op && done->user_token == (void *)5);
        int item = herald_completion_is_item(done);
        if (!item) {
            CHECK_STATUS(done->status, HERALD_STATUS_OK);
            CHECK(herald_result_int(done->result, 0, HERALD_FIELD_COUNT) == queued);
        } else {
            queued++;
        }
        herald_completion_free(done);
        if (!item)
            break;
    }
    CHECK(queued == n);

    /* Into a directory: the result lists the files. */
    CHECK_STATUS(herald_imap_fetch_to_dir_async(c, "INBOX", "1:*", dir, NULL, NULL, &op), HERALD_STATUS_OK);
    herald_completion *done = herald_client_next(c, 60000);
    CHECK(done != NULL);
    if (done) {
        CHECK_STATUS(done->status, HERALD_STATUS_OK);
        CHECK(herald_result_count(done->result) == n);
        for (size_t i = 0; i < herald_result_count(done->result); i++) {
            const char *path = herald_result_str(done->result, i, HERALD_FIELD_NAME);
            CHECK(path != NULL);
            FILE *f = path ? fopen(path, "rb") : NULL;
            CHECK(f != NULL);
            if (f) {
                fseek(f, 0, SEEK_END);
                CHECK((uint64_t)ftell(f) == herald_result_int(done->result, i, HERALD_FIELD_SIZE));
                fclose(f);
            }
        }
        herald_completion_free(done);
    }
    herald_client_free(c);

    if (failures) {
        fprintf(stderr, "stream.c: %d failures\n", failures);
        return 1;
    }
    printf("stream.c: ok (%zu messages, %zu bytes streamed)\n", n, bytes_seen);
    return 0;
}
