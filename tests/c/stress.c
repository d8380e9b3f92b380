/*
 * Stress for the engine's lifetimes, run under valgrind (tests/c_programs.rs, stress_in_c_under_valgrind)
 * and AddressSanitizer (scripts/asan.sh): rounds of clients sending to a
 * server of their own whose connections misbehave in turn (a trickled
 * greeting, an endless line, silence, a reset, or a proper SMTP dialogue),
 * with short deadlines (OP_TIMEOUT_MS), cancels racing the deadline
 * watchdog and the workers, and clients freed with ops in flight or from
 * inside their own callback. Every op must complete exactly once.
 */
#define _DEFAULT_SOURCE /* usleep */
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "herald.h"
#include "check.h"

#define OPS 24
#define ROUNDS 16

static atomic_int done_by_token[OPS];
static atomic_int stop_server;
static atomic_uint connections;

/* ---- the server: each connection misbehaves in its own way ---- */

static int send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one line (without CRLF) into buf; -1 when the client left. */
static int read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t r = recv(fd, &c, 1, 0);
        if (r <= 0)
            return -1;
        if (c == '\n')
            break;
        if (c != '\r' && n + 1 < cap)
            buf[n++] = c;
    }
    buf[n] = 0;
    return (int)n;
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    unsigned kind = atomic_fetch_add(&connections, 1) % 5;
    char line[1024];
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    switch (kind) {
    case 0: /* a greeting trickled a byte every 20 ms */
        send_all(fd, "220 ", 4);
        for (int i = 0; i < 100 && !atomic_load(&stop_server); i++) {
            if (send_all(fd, "x", 1) < 0)
                break;
            usleep(20000);
        }
        break;
    case 1: { /* a line that never ends */
        static const char chunk[4096] = {'y'};
        send_all(fd, "220 ", 4);
        for (int i = 0; i < 2000 && !atomic_load(&stop_server); i++)
            if (send_all(fd, chunk, sizeof chunk) < 0)
                break;
        break;
    }
    case 2: /* silence */
        while (!atomic_load(&stop_server) && read_line(fd, line, sizeof line) >= 0) {
        }
        break;
    case 3: { /* a reset */
        struct linger l = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        break;
    }
    default: /* a proper (minimal) SMTP server */
        send_all(fd, "220 stress.test\r\n", 17);
        while (read_line(fd, line, sizeof line) >= 0) {
            if (strncmp(line, "EHLO", 4) == 0) {
                send_all(fd, "250-stress.test\r\n250 PIPELINING\r\n", 33);
            } else if (strcmp(line, "DATA") == 0) {
                send_all(fd, "354 go\r\n", 8);
                while (read_line(fd, line, sizeof line) >= 0 && strcmp(line, ".") != 0) {
                }
                send_all(fd, "250 ok\r\n", 8);
            } else if (strcmp(line, "QUIT") == 0) {
                send_all(fd, "221 bye\r\n", 9);
                break;
            } else {
                send_all(fd, "250 ok\r\n", 8);
            }
        }
    }
    close(fd);
    return NULL;
}

static int listener;

static void *accept_loop(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_server)) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t t;
        if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) == 0)
            pthread_detach(t);
        else
            close(fd);
    }
    return NULL;
}

/* ---- the clients ---- */

static _Atomic(herald_client *) freeing_client; /* freed from inside its callback */
static atomic_int freed_in_callback;              /* ... and that free has returned */

static void on_done(const herald_completion *c)
{
    intptr_t token = (intptr_t)c->user_token;
    if (token >= 0 && token < OPS)
        atomic_fetch_add(&done_by_token[token], 1);
    CHECK(c->detail != NULL);
    CHECK((c->status == HERALD_STATUS_CANCELLED) == (c->cancelled != 0));
    if (token == 7) {
        herald_client *me = atomic_exchange(&freeing_client, NULL);
        if (me) {
            herald_client_free(me); /* delivers every other completion first */
            atomic_store(&freed_in_callback, 1);
        }
    }
}

static void round_of(int round, int port)
{
    for (int i = 0; i < OPS; i++)
        atomic_store(&done_by_token[i], 0);
    herald_options *o = herald_options_new(HERALD_PROTOCOL_SMTP);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_HOST, "127.0.0.1"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_PORT, port), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_NONE), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_MAX_CONNECTIONS, 2 + round % 3), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_IO_TIMEOUT_MS, 150), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_OP_TIMEOUT_MS, 100 + 40 * (round % 5)),
                 HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_MAX_LINE_BYTES, 8192), HERALD_STATUS_OK);
    herald_client *c = NULL;
    CHECK_STATUS(herald_client_new(o, &c), HERALD_STATUS_OK);
    herald_options_free(o);
    if (!c)
        return;

    const char *rcpt[] = {"b@stress.test"};
    static const char msg[] = "Subject: stress\r\n\r\nbody\r\n";
    herald_op ops[OPS] = {0};
    int mode = round % 4; /* 0: wait, 1: cancel some, 2: free at once, 3: free in a callback */
    if (mode == 3) {
        atomic_store(&freed_in_callback, 0);
        atomic_store(&freeing_client, c);
    }
    for (int i = 0; i < OPS; i++) {
        CHECK_STATUS(herald_send_raw_async(c, "a@stress.test", rcpt, 1, (const uint8_t *)msg,
                                           sizeof msg - 1, on_done, (void *)(intptr_t)i, &ops[i]),
                     HERALD_STATUS_OK);
        if (mode == 1 && i % 3 == 0) {
            usleep(1000 * (i % 7));
            CHECK_STATUS(herald_cancel(c, ops[i / 2]), HERALD_STATUS_OK);
        }
    }
    if (mode == 3) {
        /* Op 7's callback frees the client; wait until it has. */
        for (int i = 0; i < 500 && !atomic_load(&freed_in_callback); i++)
            usleep(10000);
        if (atomic_exchange(&freeing_client, NULL)) {
            fprintf(stderr, "round %d: op 7 never completed\n", round);
            failures++;
            herald_client_free(c);
        }
    } else {
        if (mode != 2)
            herald_client_flush(c, 5000);
        herald_client_free(c);
    }
    for (int i = 0; i < OPS; i++) {
        int n = atomic_load(&done_by_token[i]);
        if (n != 1) {
            fprintf(stderr, "round %d: op %d completed %d times\n", round, i, n);
            failures++;
        }
    }
}

int main(void)
{
    listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    CHECK(bind(listener, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(listener, 64) == 0);
    CHECK(getsockname(listener, (struct sockaddr *)&a, &len) == 0);
    struct timeval tv = {0, 100000};
    setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    pthread_t acceptor;
    pthread_create(&acceptor, NULL, accept_loop, NULL);

    for (int r = 0; r < ROUNDS; r++)
        round_of(r, ntohs(a.sin_port));

    atomic_store(&stop_server, 1);
    pthread_join(acceptor, NULL);
    close(listener);
    usleep(300000); /* let the server's connection threads notice */
    if (failures) {
        fprintf(stderr, "stress: %d failures\n", failures);
        return 1;
    }
    printf("stress: %d rounds of %d ops, %u connections, every op completed once\n", ROUNDS, OPS,
           atomic_load(&connections));
    return 0;
}
