/*
 * windows_event_loop: the way a Win32 GUI main loop uses herald. No
 * callbacks: completions are queued on the client, whose wakeup handle is
 * an event HANDLE signalled exactly while completions are queued. The loop
 * waits on it and on the thread's message queue at once with
 * MsgWaitForMultipleObjects, dispatches window messages (here a timer's
 * WM_TIMER, standing in for a GUI's input and paint messages), and takes
 * the completions on its own thread with herald_client_next(c, 0).
 *
 *   windows_event_loop [-n COUNT] [-o DIR]                 PICKUP into DIR (default .\outbox)
 *   windows_event_loop [-n COUNT] [-p PORT] [-k] HOST      SMTP (-k: no TLS, for a local test server)
 *
 * Build (mingw-w64): x86_64-w64-mingw32-gcc -std=c11 -Iinclude
 *     examples-c/windows_event_loop.c -o windows_event_loop.exe -Lpath/to/dll -lherald
 * and put herald.dll beside the .exe.
 */
#include <windows.h>
#include <direct.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald.h"

static int timer_ticks;

/* A timer on the thread's queue: the GUI stays responsive while mail goes out. */
static void CALLBACK on_timer(HWND hwnd, UINT msg, UINT_PTR id, DWORD now)
{
    (void)hwnd, (void)msg, (void)id, (void)now;
    timer_ticks++;
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

    herald_options *o;
    if (host) {
        o = herald_options_new(HERALD_PROTOCOL_SMTP);
        herald_options_set_str(o, HERALD_OPT_HOST, host);
        herald_options_set_int(o, HERALD_OPT_PORT, port);
        if (plain)
            herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_NONE);
    } else {
        _mkdir(dir);
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
    /* Owned by the client: wait on it, never close or reset it. */
    HANDLE wakeup = (HANDLE)(intptr_t)herald_client_wakeup_handle(client);

    /* Queue the work: no callback, so completions wait on the client. */
    for (int i = 0; i < count; i++) {
        char msg[256];
        int len = snprintf(msg, sizeof msg,
                           "From: loop@example.org\r\nTo: someone@example.org\r\n"
                           "Subject: windows event loop %d\r\n\r\nbody %d\r\n", i, i);
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

    UINT_PTR timer = SetTimer(NULL, 0, 50, on_timer);
    int done = 0, ok = 0, idle_seconds = 0, stale_wakeups = 0;
    while (done < count && idle_seconds < 120) {
        DWORD r = MsgWaitForMultipleObjects(1, &wakeup, FALSE, 1000, QS_ALLINPUT);
        if (r == WAIT_OBJECT_0) {
            /* Completions are queued: take them all, on this thread. */
            herald_completion *c;
            int taken = 0;
            while ((c = herald_client_next(client, 0)) != NULL) {
                taken++;
                done++;
                if (c->status == HERALD_STATUS_OK)
                    ok++;
                else
                    printf("op %llu (message %d): %s: %s\n", (unsigned long long)c->op,
                           (int)(intptr_t)c->user_token, herald_status_str(c->status), c->detail);
                herald_completion_free(c);
            }
            if (taken == 0)
                stale_wakeups++; /* signalled with nothing queued: would be a herald bug */
        } else if (r == WAIT_OBJECT_0 + 1) {
            /* Window messages: dispatch them as any GUI loop does. */
            MSG m;
            while (PeekMessageA(&m, NULL, 0, 0, PM_REMOVE)) {
                TranslateMessage(&m);
                DispatchMessageA(&m);
            }
        } else if (r == WAIT_TIMEOUT) {
            idle_seconds++;
        } else {
            fprintf(stderr, "MsgWaitForMultipleObjects failed: %lu\n", GetLastError());
            break;
        }
    }
    if (timer)
        KillTimer(NULL, timer);
    /* Everything taken: the handle is no longer signalled. */
    int still_signalled = WaitForSingleObject(wakeup, 0) == WAIT_OBJECT_0;
    printf("%d of %d completed on the main thread, %d sent, %d timer ticks dispatched%s%s\n", done, count, ok,
           timer_ticks, stale_wakeups ? ", spurious wakeups" : "", still_signalled ? ", handle still signalled" : "");
    herald_client_free(client);
    return ok == count && !stale_wakeups && !still_signalled ? 0 : 1;
}
