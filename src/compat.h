/* Private Lua 5.1/LuaJIT compatibility. Debian's LuaJIT 2.1 headers already
 * declare luaL_setfuncs and friends while LUA_VERSION_NUM is 501, so the
 * helpers here use ig_ names and never redefine a standard one. */
#ifndef IG_COMPAT_H
#define IG_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM == 501
#define ig_rawlen(L, i) lua_objlen((L), (i))
#else
#define ig_rawlen(L, i) lua_rawlen((L), (i))
#endif

/* Registers l into the table on top of the stack (no upvalues). */
static inline void ig_setfuncs(lua_State *L, const luaL_Reg *l)
{
    for (; l->name != NULL; l++) {
        lua_pushcfunction(L, l->func);
        lua_setfield(L, -2, l->name);
    }
}

#endif
