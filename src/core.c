/* instagram.core: the C core of lua-instagram. Each concern registers its own functions. */
#include "ig.h"

int luaopen_instagram_core(lua_State *L)
{
    lua_newtable(L);
    ig_open_url(L);
    ig_open_exactid(L);
    ig_open_crypto(L);
    ig_open_signed(L);
    ig_open_session(L);
    ig_open_utf8(L);
    ig_open_webhook(L);
    ig_open_fileio(L);
    return 1;
}
