/* Force-included (-include) into every src/ file of the torture build only:
 * routes the core's own malloc/calloc/realloc through the harness's failing
 * allocator (tools/torture/torture.c exports these with -rdynamic). free stays
 * libc's free: the hooks allocate with libc. */
#ifndef IG_TORTURE_HOOKS_H
#define IG_TORTURE_HOOKS_H

#include <stdlib.h>

void *ig_torture_malloc(size_t n);
void *ig_torture_calloc(size_t n, size_t size);
void *ig_torture_realloc(void *p, size_t n);

#define malloc(n) ig_torture_malloc(n)
#define calloc(n, size) ig_torture_calloc(n, size)
#define realloc(p, n) ig_torture_realloc(p, n)

#endif
