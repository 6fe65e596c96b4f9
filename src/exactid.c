/* Exact IDs: a pre-pass over JSON text that quotes integers too long for a
 * double (Instagram sends IDs above 2^53 as bare numbers). */
#include <string.h>

#include "ig.h"

/* Bytes that can belong to a bare JSON token (number, literal, or garbage). */
static int is_token_byte(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || c == '-' || c == '+' || c == '.' || c == '_';
}

/* A canonical JSON integer (-?[1-9][0-9]*) with at least IG_BIG_INT_DIGITS digits. */
static int is_big_int(const char *t, size_t n)
{
    size_t i = (n > 0 && t[0] == '-') ? 1 : 0;
    if (n - i < IG_BIG_INT_DIGITS || t[i] == '0') return 0;
    for (; i < n; i++)
        if (t[i] < '0' || t[i] > '9') return 0;
    return 1;
}

static size_t put(char *out, size_t at, const char *src, size_t n)
{
    if (out) memcpy(out + at, src, n);
    return at + n;
}

size_t ig_quote_big_ints(const char *in, size_t len, char *out)
{
    size_t i = 0, o = 0;
    while (i < len) {
        unsigned char c = (unsigned char)in[i];
        size_t start = i;
        if (c == '"') {
            /* skip the string exactly: a backslash always takes the next byte
             * with it, which covers \" \\ and \uXXXX; unterminated runs to the end */
            i++;
            while (i < len && in[i] != '"') i += (in[i] == '\\') ? 2 : 1;
            i = i < len ? i + 1 : len;
            o = put(out, o, in + start, i - start);
        } else if (is_token_byte(c)) {
            while (i < len && is_token_byte((unsigned char)in[i])) i++;
            if (is_big_int(in + start, i - start)) {
                o = put(out, o, "\"", 1);
                o = put(out, o, in + start, i - start);
                o = put(out, o, "\"", 1);
            } else {
                o = put(out, o, in + start, i - start);
            }
        } else {
            o = put(out, o, in + i, 1);
            i++;
        }
    }
    return o;
}

static int l_quote_big_ints(lua_State *L)
{
    size_t len, n;
    const char *s = luaL_checklstring(L, 1, &len);
    char *out;
    n = ig_quote_big_ints(s, len, NULL);
    if (n == len) { /* nothing to quote: hand back the same string */
        lua_settop(L, 1);
        return 1;
    }
    out = (char *)lua_newuserdata(L, n);
    ig_quote_big_ints(s, len, out);
    lua_pushlstring(L, out, n);
    return 1;
}

void ig_open_exactid(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"quote_big_ints", l_quote_big_ints},
        {NULL, NULL}
    };
    ig_setfuncs(L, funcs);
}
