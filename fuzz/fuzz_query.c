/* libFuzzer target: the callback/query parser (url.c): ig_url_decode and the
 * Lua bindings url_decode, url_encode, build_query and parse_query.
 *
 * Properties checked on every input:
 *  - ig_url_decode (output buffer exactly len bytes) matches a separate
 *    reference decoder, with and without plus_is_space;
 *  - url_decode(url_encode(s)) == s and url_encode emits only unreserved
 *    bytes and upper-case %XX;
 *  - parse_query(s) never raises and gives string keys mapping to strings or
 *    to arrays (2+ items) of strings, with no more decoded bytes than input;
 *  - a pair split out of the input (at the first NUL, else the middle)
 *    survives build_query -> parse_query (a value ending in "#_" loses it:
 *    the trailing "%23_" rule of the contract), in array and map form. */
#include "fuzz_common.h"

static int hexval(unsigned char c)
{
    static const char HEX[] = "0123456789abcdef";
    const char *p;
    if (c == 0) return -1;
    if (c >= 'A' && c <= 'F') c = (unsigned char)(c - 'A' + 'a');
    p = strchr(HEX, c);
    return p ? (int)(p - HEX) : -1;
}

static size_t reference_decode(const unsigned char *s, size_t n, unsigned char *out, int plus)
{
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[o++] = (unsigned char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
            i += 2;
        } else {
            out[o++] = plus && s[i] == '+' ? ' ' : s[i];
        }
    }
    return o;
}

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'
        || c == '_' || c == '~';
}

/* Only unreserved bytes, upper-case %XX, and the bytes of also. */
static void check_encoded(const char *e, size_t n, const char *also)
{
    size_t i = 0;
    while (i < n) {
        if (e[i] == '%') {
            CHECK(i + 2 < n);
            CHECK(strchr("0123456789ABCDEF", e[i + 1]) && e[i + 1]);
            CHECK(strchr("0123456789ABCDEF", e[i + 2]) && e[i + 2]);
            i += 3;
        } else {
            CHECK(is_unreserved((unsigned char)e[i]) || (e[i] && strchr(also, e[i])));
            i++;
        }
    }
}

/* Checks the shape of the parse_query result on top; returns its decoded bytes. */
static size_t check_parsed(lua_State *L)
{
    size_t total = 0, len;
    int t = lua_gettop(L);
    CHECK(lua_type(L, t) == LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        CHECK(lua_type(L, -2) == LUA_TSTRING);
        lua_tolstring(L, -2, &len);
        if (lua_type(L, -1) == LUA_TSTRING) {
            total += len;
            lua_tolstring(L, -1, &len);
            total += len;
        } else {
            lua_Integer i, n;
            CHECK(lua_type(L, -1) == LUA_TTABLE);
            n = (lua_Integer)lua_rawlen(L, -1);
            CHECK(n >= 2);
            for (i = 1; i <= n; i++) {
                size_t vl;
                total += len;
                CHECK(lua_rawgeti(L, -1, i) == LUA_TSTRING);
                lua_tolstring(L, -1, &vl);
                total += vl;
                lua_pop(L, 1);
            }
            lua_pushinteger(L, n); /* nothing past the array part */
            CHECK(lua_next(L, -2) == 0);
        }
        lua_pop(L, 1);
    }
    return total;
}

static void roundtrip_pair(lua_State *L, const char *k, size_t kl, const char *v, size_t vl)
{
    size_t ql, expect = vl;
    const char *q;
    if (vl >= 2 && v[vl - 2] == '#' && v[vl - 1] == '_') expect = vl - 2;

    lua_settop(L, 1);
    fuzz_getfn(L, "build_query"); /* 2 */
    lua_createtable(L, 1, 0);
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, k, kl);
    lua_rawseti(L, -2, 1);
    lua_pushlstring(L, v, vl);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, 1);
    fuzz_call(L, 1, 1); /* 2: the query */
    q = lua_tolstring(L, 2, &ql);
    CHECK(q != NULL);
    check_encoded(q, ql, "=&");

    fuzz_getfn(L, "build_query"); /* the map form gives the same text */
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, k, kl);
    lua_pushlstring(L, v, vl);
    lua_rawset(L, -3);
    fuzz_call(L, 1, 1);
    CHECK(fuzz_streq(L, -1, q, ql));
    lua_pop(L, 1);

    fuzz_getfn(L, "parse_query");
    lua_pushvalue(L, 2);
    fuzz_call(L, 1, 1); /* 3 */
    lua_pushlstring(L, k, kl);
    lua_rawget(L, 3);
    CHECK(fuzz_streq(L, -1, v, expect));
    lua_settop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    char *out = (char *)fuzz_alloc(size);
    unsigned char *ref = (unsigned char *)fuzz_alloc(size);
    size_t n, rn, total;
    int plus;
    lua_State *L = fuzz_state(ig_open_url);

    for (plus = 0; plus <= 1; plus++) {
        n = ig_url_decode(in, size, out, plus);
        rn = reference_decode(data, size, ref, plus);
        CHECK(n == rn && n <= size && (n == 0 || memcmp(out, ref, n) == 0));
        fuzz_getfn(L, "url_decode");
        lua_pushlstring(L, in, size);
        lua_pushboolean(L, plus);
        fuzz_call(L, 2, 1);
        CHECK(fuzz_streq(L, -1, out, n));
        lua_settop(L, 1);
    }

    fuzz_getfn(L, "url_encode");
    lua_pushlstring(L, in, size);
    fuzz_call(L, 1, 1); /* 2 */
    {
        size_t el;
        const char *e = lua_tolstring(L, 2, &el);
        check_encoded(e, el, "");
    }
    fuzz_getfn(L, "url_decode");
    lua_pushvalue(L, 2);
    fuzz_call(L, 1, 1);
    CHECK(fuzz_streq(L, -1, in, size));
    lua_settop(L, 1);

    fuzz_getfn(L, "parse_query");
    lua_pushlstring(L, in, size);
    fuzz_call(L, 1, 1);
    total = check_parsed(L);
    CHECK(total <= size || size == 0);
    lua_settop(L, 1);

    {
        const char *nul = (const char *)memchr(in, 0, size);
        size_t kl = nul ? (size_t)(nul - in) : size / 2;
        size_t vstart = nul ? kl + 1 : kl;
        roundtrip_pair(L, in, kl, in + vstart, size - vstart);
    }

    lua_close(L);
    free(ref);
    free(out);
    return 0;
}
