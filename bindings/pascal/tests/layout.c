/* Prints the C layout of herald_completion: sizeof, then each field's offset. */
#include <stddef.h>
#include <stdio.h>
#include "herald.h"

int main(void)
{
    printf("%zu %zu %zu %zu %zu %zu %zu %zu\n", sizeof(herald_completion),
           offsetof(herald_completion, op), offsetof(herald_completion, status),
           offsetof(herald_completion, cancelled), offsetof(herald_completion, user_token),
           offsetof(herald_completion, reply_code), offsetof(herald_completion, detail),
           offsetof(herald_completion, result));
    return 0;
}
