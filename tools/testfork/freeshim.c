/* Test-only LD_PRELOAD shim (never shipped) for spec/core_wipe_spec.lua: at
 * exit, writes to $FREESHIM_OUT how many blocks passed to free() still held
 * the bytes "SENTINELSECRET" (review C9: libcurl's copies of URLs, headers and
 * bodies were freed unwiped). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void (*real_free)(void *);
static int hits;

void free(void *p)
{
    if (real_free == NULL) *(void **)(&real_free) = dlsym(RTLD_NEXT, "free");
    if (p) {
        size_t n = malloc_usable_size(p);
        if (n >= 14 && memmem(p, n, "SENTINELSECRET", 14) != NULL) hits++;
    }
    real_free(p);
}

__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("FREESHIM_OUT");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (f) {
        fprintf(f, "%d\n", hits);
        fclose(f);
    }
}
