/* Shared helpers for the libFuzzer targets in fuzz/. Each target links the
 * src/ files it needs directly (no instagram.core module load); where the
 * code under test is only reachable through its Lua binding, a bare Lua 5.4
 * state (no standard libraries) holds the concern's functions in a table at
 * stack index 1 and calls them under lua_pcall. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A failed property aborts, so libFuzzer saves the input as a crash. */
#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, \
                    #cond);                                                      \
            abort();                                                             \
        }                                                                        \
    } while (0)

/* A fresh state whose stack slot 1 is a table filled by open (an ig_open_*). */
static inline lua_State *fuzz_state(void (*open)(lua_State *))
{
    lua_State *L = luaL_newstate();
    CHECK(L != NULL);
    lua_newtable(L);
    open(L);
    return L;
}

/* Pushes core[name] for a call. */
static inline void fuzz_getfn(lua_State *L, const char *name)
{
    lua_getfield(L, 1, name);
    CHECK(lua_type(L, -1) == LUA_TFUNCTION);
}

/* Calls the function and nargs arguments on top; the call must not raise. */
static inline void fuzz_call(lua_State *L, int nargs, int nresults)
{
    int status = lua_pcall(L, nargs, nresults, 0);
    if (status != LUA_OK) {
        fprintf(stderr, "unexpected Lua error: %s\n", lua_tostring(L, -1));
        abort();
    }
}

/* Is the value at idx the string s (length n)? */
static inline int fuzz_streq(lua_State *L, int idx, const void *s, size_t n)
{
    size_t len;
    const char *v;
    if (lua_type(L, idx) != LUA_TSTRING) return 0;
    v = lua_tolstring(L, idx, &len);
    return len == n && (n == 0 || memcmp(v, s, n) == 0);
}

/* malloc that never returns NULL and never asks for 0 bytes. */
static inline void *fuzz_alloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    CHECK(p != NULL);
    return p;
}

#endif
