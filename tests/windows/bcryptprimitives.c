/*
 * A test-only stand-in for bcryptprimitives.dll, which Wine 8.0 lacks and
 * Rust's std imports ProcessPrng from. Built by tests/windows.rs and put
 * beside the test programs; never shipped. Real Windows (8 and later) has
 * its own bcryptprimitives.dll.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom, advapi32 */

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
