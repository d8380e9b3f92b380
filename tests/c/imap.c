/*
 * IMAP from C: append, search, fetch, cancel, and freeing every result,
 * through the completion queue (cb NULL) as a GUI program would. Runs
 * under valgrind.
 *
 * Needs a Dovecot: HERALD_TEST_IMAP_PORT (plain IMAP port on 127.0.0.1,
 * STARTTLS offered) and HERALD_TEST_CA_FILE (its certificate), user
 * alice/alicepass. Without them it says so and exits 0.
 */
#define _DEFAULT_SOURCE /* usleep */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "herald.h"
#include "check.h"


/* The queued completion of `op` (others are not expected here). */
static herald_completion *completion_of(herald_client *c, herald_op op)
{
    herald_completion *done = herald_client_next(c, 60000);
    if (done == NULL) {
        fprintf(stderr, "op %llu did not complete\n", (unsigned long long)op);
        failures++;
        return NULL;
    }
    CHECK(done->op == op);
    CHECK(done->detail != NULL);
    return done;
}

static const char *MSG_FMT = "From: c@example.org\r\nSubject: from C %d\r\n\r\nline one\r\n.dot line\r\n";

int main(void)
{
    const char *port = getenv("HERALD_TEST_IMAP_PORT");
    const char *ca = getenv("HERALD_TEST_CA_FILE");
    if (port == NULL || ca == NULL) {
        printf("imap.c: HERALD_TEST_IMAP_PORT or HERALD_TEST_CA_FILE not set; skipped\n");
        return 0;
    }

    herald_options *o = herald_options_new(HERALD_PROTOCOL_IMAP);
    CHECK(o != NULL);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_HOST, test_host()), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_PORT, atoi(port)), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_CA_FILE, ca), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_USERNAME, "alice"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_PASSWORD, "alicepass"), HERALD_STATUS_OK);
    herald_client *c = NULL;
    CHECK_STATUS(herald_client_new(o, &c), HERALD_STATUS_OK);
    herald_options_free(o);
    if (c == NULL)
        return 1;

    char mailbox[64];
    snprintf(mailbox, sizeof mailbox, "C test %ld", (long)getpid());
    herald_op op = 0;
    herald_completion *done;

    /* Bad input is refused at the call, and no completion comes. */
    CHECK_STATUS(herald_imap_create_async(c, NULL, NULL, NULL, &op), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_imap_create_async(c, "x\r\nA1 LOGOUT", NULL, NULL, &op), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_imap_search_async(c, "INBOX", "ALL\r\n", NULL, NULL, &op), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_imap_fetch_async(c, "INBOX", "1:x", HERALD_FETCH_BODY, NULL, NULL, &op),
                 HERALD_STATUS_INVALID_ARGUMENT);
    CHECK(herald_client_next(c, 0) == NULL);

    CHECK_STATUS(herald_imap_create_async(c, mailbox, NULL, NULL, &op), HERALD_STATUS_OK);
    done = completion_of(c, op);
    if (done) {
        CHECK_STATUS(done->status, HERALD_STATUS_OK);
        herald_completion_free(done);
    }

    /* Append three messages in one op (copied at the call). */
    char *msgs[3];
    size_t lens[3];
    for (int i = 0; i < 3; i++) {
        msgs[i] = malloc(256);
        lens[i] = (size_t)snprintf(msgs[i], 256, MSG_FMT, i);
    }
    CHECK_STATUS(herald_imap_append_async(c, mailbox, (const uint8_t *const *)msgs, lens, 3, "\\Seen", NULL,
                                          (void *)7, &op),
                 HERALD_STATUS_OK);
    uint64_t uids[3] = {0, 0, 0};
    done = completion_of(c, op);
    if (done) {
        CHECK_STATUS(done->status, HERALD_STATUS_OK);
        CHECK(done->user_token == (void *)7);
        CHECK(herald_result_count(done->result) == 3);
        for (size_t i = 0; i < 3; i++) {
            uids[i] = herald_result_uid(done->result, i);
            CHECK(uids[i] > 0);
        }
        CHECK(herald_result_uid(done->result, 3) == 0);
        herald_completion_free(done);
    }

    /* Search and fetch. */
    CHECK_STATUS(herald_imap_search_async(c, mailbox, "SEEN SUBJECT \"from C\"", NULL, NULL, &op), HERALD_STATUS_OK);
    done = completion_of(c, op);
    if (done) {
        CHECK_STATUS(done->status, HERALD_STATUS_OK);
        CHECK(herald_result_count(done->result) == 3);
        herald_completion_free(done);
    }
    CHECK_STATUS(herald_imap_fetch_async(c, mailbox, "1:*",
                                         HERALD_FETCH_BODY | HERALD_FETCH_FLAGS | HERALD_FETCH_ENVELOPE, NULL,
                                         NULL, &op),
                 HERALD_STATUS_OK);
    done = completion_of(c, op);
    if (done) {
        CHECK_STATUS(done->status, HERALD_STATUS_OK);
        CHECK(herald_result_count(done->result) == 3);
        for (size_t i = 0; i < 3 && i < herald_result_count(done->result); i++) {
            size_t len = 0;
            const uint8_t *b = herald_result_bytes(done->result, i, &len);
            CHECK(herald_result_uid(done->result, i) == uids[i]);
            CHECK(b != NULL && len == lens[i] && memcmp(b, msgs[i], len) == 0);
            const char *subject = herald_result_str(done->result, i, HERALD_FIELD_SUBJECT);
            CHECK(subject != NULL && strncmp(subject, "from C ", 7) == 0);
            const char *flags = herald_result_str(done->result, i, HERALD_FIELD_FLAGS);
            CHECK(flags != NULL && strstr(flags, "\\Seen") != NULL);
        }
        CHECK(herald_result_str(done->result, 9, HERALD_FIELD_SUBJECT) == NULL);
        herald_completion_free(done);
    }
    for (int i = 0; i < 3; i++)
        free(msgs[i]);

    /* Cancel a large append: the cancelled completion lists what was appended. */
    enum { BULK = 2000 };
    char *bulk = malloc(2048);
    size_t bulk_len = (size_t)snprintf(bulk, 2048, MSG_FMT, 99);
    const uint8_t **ptrs = malloc(BULK * sizeof *ptrs);
    size_t *bulk_lens = malloc(BULK * sizeof *bulk_lens);
    for (int i = 0; i < BULK; i++) {
        ptrs[i] = (const uint8_t *)bulk;
        bulk_lens[i] = bulk_len;
    }
    CHECK_STATUS(herald_imap_append_async(c, mailbox, ptrs, bulk_lens, BULK, NULL, NULL, NULL, &op),
                 HERALD_STATUS_OK);
    free(ptrs);
    free(bulk_lens);
    free(bulk);
    usleep(20000);
    CHECK_STATUS(herald_cancel(c, op), HERALD_STATUS_OK);
    size_t appended = 0;
    done = completion_of(c, op);
    if (done) {
        CHECK(done->cancelled == 1 || done->status == HERALD_STATUS_OK);
        appended = herald_result_count(done->result);
        CHECK(appended <= BULK);
        herald_completion_free(done);
    }
    CHECK_STATUS(herald_imap_search_async(c, mailbox, "ALL", NULL, NULL, &op), HERALD_STATUS_OK);
    done = completion_of(c, op);
    if (done) {
        CHECK(herald_result_count(done->result) == appended + 3);
        herald_completion_free(done);
    }

    /* Sync state: STATUS, what changed since a MODSEQ, UIDs bound to a UIDVALIDITY. */
    uint64_t validity = 0, modseq = 0;
    CHECK_STATUS(herald_imap_status_async(c, mailbox, NULL, NULL, &op), HERALD_STATUS_OK);
    done = completion_of(c, op);
    if (done) {
        CHECK_STATUS(done->status, HERALD_STATUS_OK);
        CHECK(herald_result_count(done->result) == 1);
        CHECK(herald_result_int(done->result, 0, HERALD_FIELD_MESSAGES) == appended + 3);
        validity = herald_result_int(done->result, 0, HERALD_FIELD_UIDVALIDITY);
        modseq = herald_result_int(done->result, 0, HERALD_FIELD_HIGHESTMODSEQ);
        CHECK(validity > 0 && modseq > 0);
        herald_completion_free(done);
    }
    char one[32];
    snprintf(one, sizeof one, "%llu", (unsigned long long)uids[0]);
    CHECK_STATUS(herald_imap_store_async(c, mailbox, one, HERALD_STORE_ADD, "\\Flagged", NULL, NULL, &op),
                 HERALD_STATUS_OK);
    done = completion_of(c, op);
    if (done) {
        CHECK_STATUS(done->status, HERALD_STATUS_OK);
        CHECK(herald_result_mailbox_int(done->result, HERALD_FIELD_UIDVALIDITY) == validity);
        herald_completion_free(done);
    }
    CHECK_STATUS(herald_imap_fetch_changed_async(c, mailbox, "1:*", HERALD_FETCH_FLAGS, modseq, NULL, NULL, &op),
                 HERALD_STATUS_OK);
    done = completion_of(c, op);
    if (done) {
        CHECK_STATUS(done->status, HERALD_STATUS_OK);
        CHECK(herald_result_count(done->result) == 1);
        CHECK(herald_result_uid(done->result, 0) == uids[0]);
        CHECK(herald_result_int(done->result, 0, HERALD_FIELD_MODSEQ) > modseq);
        CHECK(herald_result_int(done->result, 0, HERALD_FIELD_UIDVALIDITY) == validity);
        herald_completion_free(done);
    }
    char bound[64];
    snprintf(bound, sizeof bound, "1:*;UIDVALIDITY=%llu", (unsigned long long)(validity + 1));
    CHECK_STATUS(herald_imap_fetch_async(c, mailbox, bound, HERALD_FETCH_FLAGS, NULL, NULL, &op), HERALD_STATUS_OK);
    done = completion_of(c, op);
    if (done) {
        CHECK_STATUS(done->status, HERALD_STATUS_NOT_FOUND);
        CHECK(herald_result_count(done->result) == 0);
        CHECK(herald_result_mailbox_int(done->result, HERALD_FIELD_UIDVALIDITY) == validity);
        herald_completion_free(done);
    }

    CHECK_STATUS(herald_imap_delete_async(c, mailbox, NULL, NULL, &op), HERALD_STATUS_OK);
    done = completion_of(c, op);
    if (done) {
        CHECK_STATUS(done->status, HERALD_STATUS_OK);
        herald_completion_free(done);
    }
    /* An op still queued when the client is freed completes cancelled. */
    CHECK_STATUS(herald_imap_list_async(c, "*", NULL, NULL, &op), HERALD_STATUS_OK);
    herald_client_free(c);

    if (failures) {
        fprintf(stderr, "imap.c: %d failures\n", failures);
        return 1;
    }
    printf("imap.c: ok (%zu of %d bulk messages appended before the cancel)\n", appended, BULK);
    return 0;
}
