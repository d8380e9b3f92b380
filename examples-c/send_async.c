/*
 * send_async: queue a batch of messages and let herald send them in the
 * background, with a completion callback per message.
 *
 *   send_async [-n COUNT] [-o DIR]                 PICKUP: .eml files into DIR (default ./outbox)
 *   send_async [-n COUNT] [-p PORT] [-k] HOST      SMTP to HOST (default port 25, STARTTLS required;
 *                                                   -k: no TLS, for a local test server)
 *
 * The main thread only queues work and then waits; every message is built,
 * sent and reported on herald's own threads.
 */
#define _POSIX_C_SOURCE 200809L /* mkdir */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _WIN32
#include <direct.h>
#define mkdir(dir, mode) _mkdir(dir) /* Windows' mkdir takes no mode */
#endif

#include "herald.h"

static atomic_int ok_count;
static atomic_int failed_count;

/* Runs on herald's delivery thread, once per message. */
static void on_done(const herald_completion *c)
{
    int index = (int)(intptr_t)c->user_token;
    if (c->status == HERALD_STATUS_OK) {
        atomic_fetch_add(&ok_count, 1);
        if (index < 3)
            printf("message %d: sent (%s)\n", index, c->detail);
    } else {
        atomic_fetch_add(&failed_count, 1);
        printf("message %d: %s: %s\n", index, herald_status_str(c->status), c->detail);
    }
}

static int fail(const char *what, herald_status s)
{
    fprintf(stderr, "%s: %s: %s\n", what, herald_status_str(s), herald_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    int count = 20;
    long port = 25;
    int plain = 0;
    const char *dir = "outbox";
    const char *host = NULL;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            count = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-p") && i + 1 < argc)
            port = atol(argv[++i]);
        else if (!strcmp(argv[i], "-o") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "-k"))
            plain = 1;
        else if (argv[i][0] != '-')
            host = argv[i];
        else {
            fprintf(stderr, "usage: %s [-n COUNT] [-o DIR] | [-n COUNT] [-p PORT] [-k] HOST\n", argv[0]);
            return 2;
        }
    }

    printf("herald %s\n", herald_version());
    herald_options *o;
    herald_status s;
    if (host) {
        o = herald_options_new(HERALD_PROTOCOL_SMTP);
        if ((s = herald_options_set_str(o, HERALD_OPT_HOST, host)) != HERALD_STATUS_OK ||
            (s = herald_options_set_int(o, HERALD_OPT_PORT, port)) != HERALD_STATUS_OK ||
            (plain && (s = herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_NONE)) != HERALD_STATUS_OK))
            return fail("options", s);
        printf("sending %d messages to %s:%ld\n", count, host, port);
    } else {
        mkdir(dir, 0755);
        o = herald_options_new(HERALD_PROTOCOL_PICKUP);
        if ((s = herald_options_set_str(o, HERALD_OPT_PICKUP_DIR, dir)) != HERALD_STATUS_OK)
            return fail("options", s);
        printf("writing %d messages into %s/\n", count, dir);
    }

    herald_client *client;
    s = herald_client_new(o, &client);
    herald_options_free(o); /* the client has its own copy */
    if (s != HERALD_STATUS_OK)
        return fail("herald_client_new", s);

    for (int i = 0; i < count; i++) {
        herald_message *m = herald_message_new();
        char subject[64], text[128];
        snprintf(subject, sizeof subject, "herald demo message %d", i);
        snprintf(text, sizeof text, "Hello from herald.\nThis is message %d of %d.\n", i, count);
        herald_message_set_from(m, "Demo Sender <sender@example.org>");
        herald_message_add_to(m, "recipient@example.org");
        herald_message_set_subject(m, subject);
        herald_message_set_text(m, text);
        herald_op op;
        s = herald_send_async(client, m, on_done, (void *)(intptr_t)i, &op);
        herald_message_free(m); /* copied by herald_send_async */
        if (s != HERALD_STATUS_OK)
            return fail("herald_send_async", s);
    }
    printf("queued %d messages; the main thread is free now\n", count);

    s = herald_client_flush(client, 120000);
    if (s != HERALD_STATUS_OK)
        fprintf(stderr, "flush: %s\n", herald_status_str(s));
    herald_client_free(client);
    printf("%d sent, %d failed\n", atomic_load(&ok_count), atomic_load(&failed_count));
    return atomic_load(&failed_count) == 0 && atomic_load(&ok_count) == count ? 0 : 1;
}
