/*
 * The C API contract, checked from C: statuses, NULL and bad input, option
 * validation, ownership, exactly-once completions, the completion queue and
 * its wakeup handle, cancel, and freeing a client from inside its own
 * callback. Runs under valgrind from scripts/test.sh.
 *
 * Needs no server. With HERALD_TEST_SMTP_PORT set (an smtp-sink on
 * 127.0.0.1), it also sends through SMTP.
 *
 * Also builds for Windows (mingw-w64) and runs under wine from
 * tests/windows.rs: there the wakeup handle is an event HANDLE, waited on
 * with WaitForSingleObject, and the scratch directories are made in the
 * current directory.
 */
#define _DEFAULT_SOURCE /* usleep, mkdir, dirent */
#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <process.h>
#else
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#endif

#include "herald.h"
#include "check.h"

#ifdef _WIN32
#define SCRATCH_DIR "" /* relative: the current directory */
#define make_dir(d) mkdir(d)
#define sleep_ms(ms) Sleep(ms)
#define close_socket(s) closesocket(s)
typedef SOCKET socket_t;
/* The wakeup handle is an event HANDLE: signalled within timeout_ms? */
static int wakeup_signalled(int64_t h, int timeout_ms)
{
    return WaitForSingleObject((HANDLE)(intptr_t)h, (DWORD)timeout_ms) == WAIT_OBJECT_0;
}
#else
#define SCRATCH_DIR "/tmp/"
#define make_dir(d) mkdir(d, 0700)
#define sleep_ms(ms) usleep((ms) * 1000)
#define close_socket(s) close(s)
typedef int socket_t;
/* The wakeup handle is a file descriptor: readable within timeout_ms? */
static int wakeup_signalled(int64_t fd, int timeout_ms)
{
    struct pollfd p = {.fd = (int)fd, .events = POLLIN};
    return poll(&p, 1, timeout_ms) == 1;
}
#endif


#define MAX_OPS 5000
static atomic_int completions_by_token[MAX_OPS];
static atomic_int completions_total;
static atomic_int completions_ok;
static atomic_int completions_cancelled;

static void reset_counts(void)
{
    for (int i = 0; i < MAX_OPS; i++)
        atomic_store(&completions_by_token[i], 0);
    atomic_store(&completions_total, 0);
    atomic_store(&completions_ok, 0);
    atomic_store(&completions_cancelled, 0);
}

static void count_completion(const herald_completion *c)
{
    intptr_t token = (intptr_t)c->user_token;
    if (token >= 0 && token < MAX_OPS)
        atomic_fetch_add(&completions_by_token[token], 1);
    atomic_fetch_add(&completions_total, 1);
    if (c->status == HERALD_STATUS_OK)
        atomic_fetch_add(&completions_ok, 1);
    if (c->cancelled) {
        atomic_fetch_add(&completions_cancelled, 1);
        if (c->status != HERALD_STATUS_CANCELLED)
            fprintf(stderr, "cancelled completion with status %u\n", c->status), failures++;
    }
    if (c->detail == NULL)
        fprintf(stderr, "completion detail is NULL\n"), failures++;
}

static int each_completed_once(int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (atomic_load(&completions_by_token[i]) != 1) {
            if (bad < 5)
                fprintf(stderr, "op with token %d completed %d times\n", i, atomic_load(&completions_by_token[i]));
            bad++;
        }
    return bad == 0;
}

static char tmpdir[256];

static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (l >= sl && strcmp(e->d_name + l - sl, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0)))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static herald_client *pickup_client(const char *dir)
{
    herald_options *o = herald_options_new(HERALD_PROTOCOL_PICKUP);
    CHECK(o != NULL);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_PICKUP_DIR, dir), HERALD_STATUS_OK);
    herald_client *c = NULL;
    CHECK_STATUS(herald_client_new(o, &c), HERALD_STATUS_OK);
    herald_options_free(o);
    return c;
}

static const char RAW[] = "From: a@example.org\r\nTo: b@example.org\r\nSubject: raw\r\n\r\n.dot line\r\nend";
static const char *RCPT[] = {"b@example.org"};

static void test_statuses_and_version(void)
{
    for (uint32_t s = 0; s <= 15; s++) {
        CHECK(herald_status_str(s) != NULL);
        CHECK(strcmp(herald_status_str(s), "unknown status code") != 0);
    }
    CHECK(herald_status_str(12345) != NULL);
    CHECK(strcmp(herald_version(), HERALD_VERSION) == 0);
    CHECK(herald_version_number() == HERALD_VERSION_NUMBER);
    CHECK(HERALD_VERSION_NUMBER ==
          HERALD_VERSION_MAJOR * 1000000 + HERALD_VERSION_MINOR * 1000 + HERALD_VERSION_PATCH);
}

/* herald_last_error(): one buffer per thread, rewritten only by failures, so
 * reading it before or after the failing call (C leaves the order of
 * printf's arguments open) sees that call's detail, never freed memory. */
static void test_last_error_idiom(void)
{
    herald_options *o = herald_options_new(HERALD_PROTOCOL_SMTP);
    const char *before = herald_last_error(); /* as if evaluated first */
    herald_status s = herald_options_set_int(o, HERALD_OPT_PORT, 0);
    CHECK_STATUS(s, HERALD_STATUS_INVALID_ARGUMENT);
    CHECK(herald_last_error() == before);
    CHECK(strstr(before, "PORT") != NULL);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_PORT, 25), HERALD_STATUS_OK);
    CHECK(strstr(herald_last_error(), "PORT") != NULL); /* a success leaves it alone */
    char line[512];
    snprintf(line, sizeof line, "%s: %s",
             herald_status_str(herald_options_set_int(o, HERALD_OPT_SECURITY, 9)), herald_last_error());
    CHECK(strncmp(line, "invalid argument: SECURITY", 26) == 0);
    herald_options_free(o);
}

/* A function that returns a value gives its fallback (NULL, 0, -1) when it
 * cannot answer, and herald_last_error() then names the reason. */
static int last_error_mentions(const char *what)
{
    return strstr(herald_last_error(), what) != NULL;
}

static void test_value_fallbacks_say_why(void)
{
    size_t len = 7;
    CHECK(herald_client_next(NULL, 0) == NULL);
    CHECK(last_error_mentions("client is NULL"));
    herald_options_set_int(NULL, 0, 0); /* a different reason in between */
    CHECK(herald_client_wakeup_handle(NULL) == -1);
    CHECK(last_error_mentions("client is NULL"));
    CHECK(herald_options_new(99) == NULL);
    CHECK(last_error_mentions("unknown protocol 99"));
    CHECK(herald_result_count(NULL) == 0);
    CHECK(last_error_mentions("result is NULL"));
    CHECK(herald_options_new(98) == NULL);
    CHECK(herald_result_uid(NULL, 0) == 0);
    CHECK(last_error_mentions("result is NULL"));
    CHECK(herald_options_new(98) == NULL);
    CHECK(herald_result_str(NULL, 0, HERALD_FIELD_NAME) == NULL);
    CHECK(last_error_mentions("result is NULL"));
    CHECK(herald_options_new(98) == NULL);
    CHECK(herald_result_int(NULL, 0, HERALD_FIELD_SIZE) == 0);
    CHECK(last_error_mentions("result is NULL"));
    CHECK(herald_options_new(98) == NULL);
    CHECK(herald_result_bytes(NULL, 0, &len) == NULL && len == 0);
    CHECK(last_error_mentions("result is NULL"));
    /* The never-NULL ones stay never NULL. */
    CHECK(herald_status_str(9999) != NULL && herald_last_error() != NULL && herald_version() != NULL);
}

static void test_options(void)
{
    CHECK(herald_options_new(0) == NULL);
    CHECK(herald_options_new(99) == NULL);
    herald_options *o = herald_options_new(HERALD_PROTOCOL_SMTP);
    CHECK(o != NULL);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_PORT, 0), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_PORT, 65536), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_MAX_CONNECTIONS, 0), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_options_set_int(o, 999, 1), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_options_set_str(o, 999, "x"), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_PORT, "25"), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_HOST, NULL), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_HOST, "\xff\xfe"), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_USERNAME, "bob\r\nQUIT"), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_SECURITY, 7), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK(strlen(herald_last_error()) > 0);
    CHECK_STATUS(herald_options_set_str(NULL, HERALD_OPT_HOST, "x"), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_options_set_int(NULL, HERALD_OPT_PORT, 25), HERALD_STATUS_INVALID_ARGUMENT);

    herald_client *c = (herald_client *)0x1;
    /* No HOST yet: refused, and *out untouched. */
    CHECK_STATUS(herald_client_new(o, &c), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK(c == (herald_client *)0x1);
    CHECK_STATUS(herald_client_new(NULL, &c), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_HOST, "127.0.0.1"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_client_new(o, NULL), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_client_new(o, &c), HERALD_STATUS_OK);
    herald_options_free(o); /* the client keeps its own copy */
    herald_client_free(c);

    herald_options *p = herald_options_new(HERALD_PROTOCOL_PICKUP);
    CHECK_STATUS(herald_options_set_str(p, HERALD_OPT_PICKUP_DIR, "/nonexistent/herald-test-dir"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_client_new(p, &c), HERALD_STATUS_INVALID_ARGUMENT);
    herald_options_free(p);

    /* free(NULL) is a no-op everywhere. */
    herald_options_free(NULL);
    herald_client_free(NULL);
    herald_message_free(NULL);
    herald_completion_free(NULL);
    herald_bytes_free(NULL, 0);
}

static void test_message(void)
{
    herald_message *m = herald_message_new();
    CHECK(m != NULL);
    CHECK_STATUS(herald_message_set_from(NULL, "a@b.c"), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_message_set_from(m, NULL), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_message_set_from(m, "a@b.c\r\nRCPT TO:<x@y.z>"), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_message_add_to(m, "x@y.z\nBcc: evil@y.z"), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_message_add_header(m, "X-Test", "v\r\nBcc: evil@y.z"), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_message_add_header(m, "X-Bad:Name", "v"), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_message_set_subject(m, "bad\r\nsubject"), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_message_set_text(m, "\xc3\x28"), HERALD_STATUS_INVALID_ARGUMENT);

    uint8_t *bytes = (uint8_t *)0x1;
    size_t len = 7;
    /* Incomplete (no From): refused, out-params untouched. */
    CHECK(herald_message_to_bytes(m, &bytes, &len) != HERALD_STATUS_OK);
    CHECK(bytes == (uint8_t *)0x1 && len == 7);

    CHECK_STATUS(herald_message_set_from(m, "Sender <sender@example.org>"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_message_add_to(m, "to@example.org"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_message_add_bcc(m, "hidden@example.org"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_message_set_subject(m, "Gr\xc3\xbc\xc3\x9f" "e"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_message_set_text(m, "hello\n.dot\n"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_message_add_header(m, "X-Mailer-Test", "yes"), HERALD_STATUS_OK);
    static const uint8_t blob[] = {0, 1, 2, 3, 255};
    CHECK_STATUS(herald_message_attach_bytes(m, "blob.bin", "application/octet-stream", blob, sizeof blob),
                 HERALD_STATUS_OK);
    CHECK_STATUS(herald_message_attach_file(m, "/nonexistent/file.txt", NULL), HERALD_STATUS_IO);
    CHECK_STATUS(herald_message_to_bytes(m, &bytes, &len), HERALD_STATUS_OK);
    CHECK(len > 0);
    char *text = malloc(len + 1);
    memcpy(text, bytes, len);
    text[len] = 0;
    CHECK(strstr(text, "hidden@example.org") == NULL); /* Bcc never in the bytes */
    CHECK(strstr(text, "X-Mailer-Test: yes") != NULL);
    CHECK(strstr(text, "Date: ") != NULL);
    CHECK(strstr(text, "Message-ID: ") != NULL || strstr(text, "Message-Id: ") != NULL);
    free(text);
    herald_bytes_free(bytes, len);
    herald_message_free(m);
}

static void test_pickup_callbacks(void)
{
    snprintf(tmpdir, sizeof tmpdir, SCRATCH_DIR "herald-c-test-%d", (int)getpid());
    make_dir(tmpdir);
    herald_client *c = pickup_client(tmpdir);
    reset_counts();
    enum { N = 200 };
    herald_op ops[N];
    for (int i = 0; i < N; i++)
        CHECK_STATUS(herald_send_raw_async(c, "a@example.org", RCPT, 1, (const uint8_t *)RAW, sizeof RAW - 1,
                                           count_completion, (void *)(intptr_t)i, &ops[i]),
                     HERALD_STATUS_OK);
    for (int i = 1; i < N; i++)
        CHECK(ops[i] != 0 && ops[i] != ops[i - 1]);
    CHECK_STATUS(herald_client_flush(c, 30000), HERALD_STATUS_OK);
    CHECK_STATUS(herald_wait(c, ops[0], 0), HERALD_STATUS_OK);
    CHECK(atomic_load(&completions_total) == N);
    CHECK(atomic_load(&completions_ok) == N);
    CHECK(each_completed_once(N));
    CHECK(count_files(tmpdir, ".eml") == N);

    /* Bad input at the call: the op is refused and never completes. */
    herald_op op = 77;
    const char *bad_rcpt[] = {"x@example.org\r\nDATA"};
    CHECK_STATUS(herald_send_raw_async(c, "a@example.org", bad_rcpt, 1, (const uint8_t *)RAW, sizeof RAW - 1,
                                       count_completion, (void *)(intptr_t)0, &op),
                 HERALD_STATUS_INVALID_ARGUMENT);
    CHECK(op == 77);
    CHECK_STATUS(herald_send_raw_async(c, "a@example.org\r\n", RCPT, 1, (const uint8_t *)RAW, sizeof RAW - 1,
                                       count_completion, NULL, &op),
                 HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_send_raw_async(c, "a@example.org", RCPT, 0, (const uint8_t *)RAW, sizeof RAW - 1,
                                       count_completion, NULL, &op),
                 HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_send_raw_async(c, "a@example.org", RCPT, 1, NULL, 10, count_completion, NULL, &op),
                 HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_send_raw_async(c, "a@example.org", RCPT, 1, (const uint8_t *)RAW, sizeof RAW - 1,
                                       count_completion, NULL, NULL),
                 HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_send_async(c, NULL, count_completion, NULL, &op), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_cancel(c, 0), HERALD_STATUS_NOT_FOUND);
    CHECK_STATUS(herald_cancel(c, 1u << 30), HERALD_STATUS_NOT_FOUND);
    CHECK_STATUS(herald_cancel(c, ops[0]), HERALD_STATUS_OK); /* already completed: harmless */
    CHECK_STATUS(herald_wait(c, 1u << 30, 0), HERALD_STATUS_NOT_FOUND);
    CHECK_STATUS(herald_cancel(NULL, 1), HERALD_STATUS_INVALID_ARGUMENT);
    herald_client_free(c);
    CHECK(atomic_load(&completions_total) == N);
    remove_dir(tmpdir);
}

static void test_completion_queue(void)
{
    snprintf(tmpdir, sizeof tmpdir, SCRATCH_DIR "herald-c-queue-%d", (int)getpid());
    make_dir(tmpdir);
    herald_client *c = pickup_client(tmpdir);
    int64_t h = herald_client_wakeup_handle(c);
#ifdef _WIN32
    CHECK(h != 0 && h != -1);
#else
    CHECK(h >= 0);
#endif
    CHECK(!wakeup_signalled(h, 0));
    CHECK(herald_client_next(c, 0) == NULL);
    enum { N = 50 };
    for (int i = 0; i < N; i++) {
        herald_op op;
        CHECK_STATUS(herald_send_raw_async(c, "a@example.org", RCPT, 1, (const uint8_t *)RAW, sizeof RAW - 1,
                                           NULL, (void *)(intptr_t)(1000 + i), &op),
                     HERALD_STATUS_OK);
    }
    int got = 0;
    int seen[N] = {0};
    while (got < N) {
        if (!wakeup_signalled(h, 10000))
            break;
        herald_completion *comp;
        while ((comp = herald_client_next(c, 0)) != NULL) {
            intptr_t t = (intptr_t)comp->user_token - 1000;
            CHECK(t >= 0 && t < N);
            if (t >= 0 && t < N)
                seen[t]++;
            CHECK(comp->status == HERALD_STATUS_OK);
            CHECK(comp->detail != NULL);
            got++;
            herald_completion_free(comp);
        }
    }
    CHECK(got == N);
    for (int i = 0; i < N; i++)
        CHECK(seen[i] == 1);
    CHECK(!wakeup_signalled(h, 0)); /* nothing queued: not signalled */
    CHECK(herald_client_next(c, 50) == NULL);
    CHECK(count_files(tmpdir, ".eml") == N);

    /* A completion the caller took stays valid after the client is gone. */
    herald_op op;
    CHECK_STATUS(herald_send_raw_async(c, "a@example.org", RCPT, 1, (const uint8_t *)RAW, sizeof RAW - 1, NULL,
                                       NULL, &op),
                 HERALD_STATUS_OK);
    herald_completion *last = herald_client_next(c, 10000);
    CHECK(last != NULL);
    herald_client_free(c);
    if (last) {
        CHECK(last->op == op);
        CHECK(strlen(last->detail) > 0);
        herald_completion_free(last);
    }
    remove_dir(tmpdir);
}

/* ---- freeing a client from inside its own completion callback ---- */
static herald_client *self_freeing;
static atomic_int freed_in_callback;
static atomic_int submitting_done;

static void free_on_first(const herald_completion *c)
{
    count_completion(c);
    if (atomic_fetch_add(&freed_in_callback, 1) == 0) {
        /* Nothing else may use a client while it is freed: let the
           submitting loop finish first (the later ops stay pending). */
        while (!atomic_load(&submitting_done))
            usleep(1000);
        herald_client_free(self_freeing); /* must not deadlock */
    }
}

static void test_free_inside_callback(void)
{
    snprintf(tmpdir, sizeof tmpdir, SCRATCH_DIR "herald-c-free-%d", (int)getpid());
    make_dir(tmpdir);
    self_freeing = pickup_client(tmpdir);
    reset_counts();
    enum { N = 2000 };
    int accepted = 0;
    atomic_store(&submitting_done, 0);
    for (int i = 0; i < N; i++) {
        herald_op op;
        herald_status s = herald_send_raw_async(self_freeing, "a@example.org", RCPT, 1, (const uint8_t *)RAW,
                                                sizeof RAW - 1, free_on_first, (void *)(intptr_t)i, &op);
        if (s != HERALD_STATUS_OK)
            break;
        accepted++;
    }
    atomic_store(&submitting_done, 1);
    CHECK(accepted == N); /* the free waited for this loop */
    /* Every accepted op completes exactly once; the free happened inside the callback. */
    for (int spin = 0; spin < 200 && atomic_load(&completions_total) < accepted; spin++)
        sleep_ms(10);
    CHECK(atomic_load(&completions_total) == accepted);
    CHECK(each_completed_once(accepted));
    remove_dir(tmpdir);
}

/* ---- SMTP against a server that accepts and never speaks: timeouts, cancel, free ---- */
static socket_t silent_listener(int *port)
{
#ifdef _WIN32
    WSADATA wsa;
    WSAStartup(MAKEWORD(2, 2), &wsa);
#endif
    socket_t s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(s, (struct sockaddr *)&a, sizeof a);
    listen(s, 128);
    socklen_t l = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return s;
}

static herald_client *smtp_client(int port, int io_timeout_ms, int max_conn)
{
    herald_options *o = herald_options_new(HERALD_PROTOCOL_SMTP);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_HOST, "127.0.0.1"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_PORT, port), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_NONE), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_IO_TIMEOUT_MS, io_timeout_ms), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_MAX_CONNECTIONS, max_conn), HERALD_STATUS_OK);
    herald_client *c = NULL;
    CHECK_STATUS(herald_client_new(o, &c), HERALD_STATUS_OK);
    herald_options_free(o);
    return c;
}

static herald_status last_status;
static void remember(const herald_completion *c)
{
    count_completion(c);
    last_status = c->status;
}

static void test_silent_server(void)
{
    int port;
    socket_t ls = silent_listener(&port);

    /* A greeting that never comes: TIMEOUT. */
    herald_client *c = smtp_client(port, 300, 1);
    reset_counts();
    herald_op op;
    CHECK_STATUS(herald_send_raw_async(c, "a@example.org", RCPT, 1, (const uint8_t *)RAW, sizeof RAW - 1, remember,
                                       (void *)0, &op),
                 HERALD_STATUS_OK);
    CHECK_STATUS(herald_wait(c, op, 20000), HERALD_STATUS_OK);
    CHECK(last_status == HERALD_STATUS_TIMEOUT);
    herald_client_free(c);

    /* Cancel a running op (blocked on the read) and a queued one. */
    c = smtp_client(port, 60000, 1);
    reset_counts();
    herald_op running, queued;
    CHECK_STATUS(herald_send_raw_async(c, "a@example.org", RCPT, 1, (const uint8_t *)RAW, sizeof RAW - 1,
                                       count_completion, (void *)0, &running),
                 HERALD_STATUS_OK);
    CHECK_STATUS(herald_send_raw_async(c, "a@example.org", RCPT, 1, (const uint8_t *)RAW, sizeof RAW - 1,
                                       count_completion, (void *)1, &queued),
                 HERALD_STATUS_OK);
    sleep_ms(200);
    CHECK_STATUS(herald_cancel(c, queued), HERALD_STATUS_OK);
    CHECK_STATUS(herald_cancel(c, running), HERALD_STATUS_OK);
    CHECK_STATUS(herald_wait(c, running, 5000), HERALD_STATUS_OK);
    CHECK_STATUS(herald_wait(c, queued, 5000), HERALD_STATUS_OK);
    CHECK(atomic_load(&completions_cancelled) == 2);
    CHECK(each_completed_once(2));

    /* Free with thousands pending: all complete (cancelled) before free returns. */
    reset_counts();
    enum { N = 3000 };
    for (int i = 0; i < N; i++)
        CHECK_STATUS(herald_send_raw_async(c, "a@example.org", RCPT, 1, (const uint8_t *)RAW, sizeof RAW - 1,
                                           count_completion, (void *)(intptr_t)i, &op),
                     HERALD_STATUS_OK);
    herald_client_free(c);
    CHECK(atomic_load(&completions_total) == N);
    CHECK(atomic_load(&completions_cancelled) == N);
    CHECK(each_completed_once(N));
    close_socket(ls);
}

static void test_smtp_sink(int port)
{
    herald_client *c = smtp_client(port, 10000, 4);
    reset_counts();
    enum { N = 300 };
    for (int i = 0; i < N; i++) {
        herald_op op;
        CHECK_STATUS(herald_send_raw_async(c, "a@example.org", RCPT, 1, (const uint8_t *)RAW, sizeof RAW - 1,
                                           count_completion, (void *)(intptr_t)i, &op),
                     HERALD_STATUS_OK);
    }
    CHECK_STATUS(herald_client_flush(c, 60000), HERALD_STATUS_OK);
    CHECK(atomic_load(&completions_ok) == N);
    CHECK(each_completed_once(N));
    herald_client_free(c);
}

int main(void)
{
    test_statuses_and_version();
    test_last_error_idiom();
    test_value_fallbacks_say_why();
    test_options();
    test_message();
    test_pickup_callbacks();
    test_completion_queue();
    test_free_inside_callback();
    test_silent_server();
    const char *sink = getenv("HERALD_TEST_SMTP_PORT");
    if (sink)
        test_smtp_sink(atoi(sink));
    if (failures) {
        fprintf(stderr, "api_contract: %d checks failed\n", failures);
        return 1;
    }
    printf("api_contract: all checks passed%s\n", sink ? " (with SMTP)" : "");
    return 0;
}
