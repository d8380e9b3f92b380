/*
 * Loads herald.dll the way Delphi's `external 'herald.dll' name '...'` and
 * any GetProcAddress-based FFI do: by plain, undecorated name. Every name
 * given on the command line must resolve; then a few calls go through the
 * pointers to show the calling convention matches (cdecl).
 *
 *   load_by_name herald_version herald_status_str ...
 */
#include <windows.h>
#include <stdio.h>
#include <string.h>

#include "herald.h"

typedef const char *(*version_fn)(void);
typedef const char *(*status_str_fn)(herald_status);
typedef herald_options *(*options_new_fn)(uint32_t);
typedef herald_status (*options_set_int_fn)(herald_options *, uint32_t, int64_t);
typedef void (*options_free_fn)(herald_options *);

int main(int argc, char **argv)
{
    HMODULE dll = LoadLibraryA("herald.dll");
    if (!dll) {
        fprintf(stderr, "LoadLibrary(herald.dll) failed: %lu\n", GetLastError());
        return 1;
    }
    int missing = 0;
    for (int i = 1; i < argc; i++)
        if (!GetProcAddress(dll, argv[i])) {
            fprintf(stderr, "no export named %s\n", argv[i]);
            missing++;
        }

    version_fn version = (version_fn)(void *)GetProcAddress(dll, "herald_version");
    status_str_fn status_str = (status_str_fn)(void *)GetProcAddress(dll, "herald_status_str");
    options_new_fn options_new = (options_new_fn)(void *)GetProcAddress(dll, "herald_options_new");
    options_set_int_fn set_int = (options_set_int_fn)(void *)GetProcAddress(dll, "herald_options_set_int");
    options_free_fn options_free = (options_free_fn)(void *)GetProcAddress(dll, "herald_options_free");
    if (!version || !status_str || !options_new || !set_int || !options_free) {
        fprintf(stderr, "a core function is missing\n");
        return 1;
    }
    int bad = 0;
    char v[64];
    snprintf(v, sizeof v, "%s", version());
    if (strcmp(v, HERALD_VERSION) != 0)
        fprintf(stderr, "herald_version() is %s, the header says %s\n", version(), HERALD_VERSION), bad++;
    if (strcmp(status_str(HERALD_STATUS_TLS), "unknown status code") == 0)
        fprintf(stderr, "herald_status_str(TLS) is unknown\n"), bad++;
    /* A 64-bit argument after a 32-bit one: a wrong convention shows here. */
    herald_options *o = options_new(HERALD_PROTOCOL_SMTP);
    if (!o || set_int(o, HERALD_OPT_PORT, 2525) != HERALD_STATUS_OK ||
        set_int(o, HERALD_OPT_PORT, (int64_t)1 << 40) != HERALD_STATUS_INVALID_ARGUMENT)
        fprintf(stderr, "herald_options_set_int through the pointer misbehaves\n"), bad++;
    options_free(o);
    FreeLibrary(dll);
    printf("%d of %d names resolved; herald_version() = %s; %s\n", argc - 1 - missing, argc - 1, v,
           bad ? "calls FAILED" : "calls ok");
    return missing || bad ? 1 : 0;
}
