/* make bench: the floor of any Lua binding to libcurl. A Lua 5.4 C module with one function,
 * get(url [, ca_file]) -> body, that does what bench/rawcurl.c does per call (one easy handle
 * reused for every transfer, its URL set on the first call, the body collected) and hands the
 * body to Lua as a string. bench/floor.lua decodes it with plain cjson.decode. What it costs
 * over the raw loop is what a Lua process, one C call and lua-cjson cost; what lua-instagram
 * costs over it is its own work (the URL, the exact-ID decode, the checks).
 * Any failed transfer or a status other than 200 raises. */
#include <curl/curl.h>
#include <lua.h>
#include <lauxlib.h>

#include "body.h"

static CURL *handle;
static struct body received;

static int get(lua_State *L)
{
    long status = 0;
    CURLcode rc;
    if (handle == NULL) {
        const char *url = luaL_checkstring(L, 1);
        const char *ca = luaL_optstring(L, 2, NULL);
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return luaL_error(L, "floor: curl_global_init failed");
        handle = curl_easy_init();
        if (handle == NULL) return luaL_error(L, "floor: curl_easy_init failed");
        curl_easy_setopt(handle, CURLOPT_URL, url);
        curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(handle, CURLOPT_WRITEDATA, &received);
        curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(handle, CURLOPT_USERAGENT, "floor");
        if (ca != NULL) curl_easy_setopt(handle, CURLOPT_CAINFO, ca);
    }
    received.len = 0;
    rc = curl_easy_perform(handle);
    if (rc != CURLE_OK) return luaL_error(L, "floor: %s", curl_easy_strerror(rc));
    curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) return luaL_error(L, "floor: HTTP %d", (int)status);
    lua_pushlstring(L, received.data ? received.data : "", received.len);
    return 1;
}

int luaopen_benchfloor(lua_State *L);

int luaopen_benchfloor(lua_State *L)
{
    lua_newtable(L);
    lua_pushcfunction(L, get);
    lua_setfield(L, -2, "get");
    return 1;
}
