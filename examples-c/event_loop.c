/*
 * event_loop: the way a GUI main loop uses herald. No callbacks: completions
 * are queued on the client, and the loop wakes up when herald's wakeup
 * handle becomes readable, then takes them on its own thread.
 *
 *   event_loop [-n COUNT] [-o DIR]                 PICKUP into DIR (default ./outbox)
 *   event_loop [-n COUNT] [-p PORT] [-k] HOST      SMTP (-k: no TLS, for a local test server)
 */
#define _POSIX_C_SOURCE 200809L /* poll, mkdir */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "herald.h"

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

    herald_options *o;
    if (host) {
        o = herald_options_new(HERALD_PROTOCOL_SMTP);
        herald_options_set_str(o, HERALD_OPT_HOST, host);
        herald_options_set_int(o, HERALD_OPT_PORT, port);
        if (plain)
            herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_NONE);
    } else {
        mkdir(dir, 0755);
        o = herald_options_new(HERALD_PROTOCOL_PICKUP);
        herald_options_set_str(o, HERALD_OPT_PICKUP_DIR, dir);
    }
    herald_client *client;
    herald_status s = herald_client_new(o, &client);
    herald_options_free(o);
    if (s != HERALD_STATUS_OK) {
        fprintf(stderr, "herald_client_new: %s: %s\n", herald_status_str(s), herald_last_error());
        return 1;
    }

    /* Queue the work: no callback, so completions wait on the client. */
    for (int i = 0; i < count; i++) {
        char msg[256];
        int len = snprintf(msg, sizeof msg,
                           "From: loop@example.org\r\nTo: someone@example.org\r\n"
                           "Subject: event loop %d\r\n\r\nbody %d\r\n", i, i);
        const char *rcpt[] = {"someone@example.org"};
        herald_op op;
        s = herald_send_raw_async(client, "loop@example.org", rcpt, 1, (const uint8_t *)msg, (size_t)len,
                                  NULL, (void *)(intptr_t)i, &op);
        if (s != HERALD_STATUS_OK) {
            fprintf(stderr, "send: %s: %s\n", herald_status_str(s), herald_last_error());
            herald_client_free(client);
            return 1;
        }
    }

    /* The main loop: wait for the wakeup handle next to whatever else a GUI waits on. */
    struct pollfd p = {.fd = (int)herald_client_wakeup_handle(client), .events = POLLIN};
    int done = 0, ok = 0, ticks = 0;
    while (done < count && ticks < 120) {
        int n = poll(&p, 1, 1000);
        if (n == 0) {
            ticks++;
            continue;
        }
        herald_completion *c;
        while ((c = herald_client_next(client, 0)) != NULL) {
            done++;
            if (c->status == HERALD_STATUS_OK)
                ok++;
            else
                printf("op %llu (message %d): %s: %s\n", (unsigned long long)c->op, (int)(intptr_t)c->user_token,
                       herald_status_str(c->status), c->detail);
            herald_completion_free(c);
        }
    }
    printf("%d of %d completed on the main thread, %d sent\n", done, count, ok);
    herald_client_free(client);
    return ok == count ? 0 : 1;
}
