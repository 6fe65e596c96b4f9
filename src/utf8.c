/* UTF-8 validation of network text (RFC 8259 §8.1: JSON between systems is UTF-8;
 * lua-cjson does not check it). Well-formed sequences only (RFC 3629): no overlong
 * forms, no surrogates, nothing above U+10FFFF. */
#include "ig.h"

size_t ig_utf8_seq(const unsigned char *s, size_t i, size_t len)
{
    unsigned char c = s[i], lo = 0x80, hi = 0xBF;
    size_t n, k;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2;
        if (c == 0xE0) lo = 0xA0;
        else if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (len - i <= n) return 0;
    for (k = 1; k <= n; k++) {
        unsigned char b = s[i + k];
        if (b < lo || b > hi) return 0;
        lo = 0x80;
        hi = 0xBF;
    }
    return n + 1;
}

int ig_utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        n = ig_utf8_seq(s, i, len);
        if (n == 0) return 0;
        i += n;
    }
    return 1;
}

static int l_valid_utf8(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_pushboolean(L, ig_utf8_valid((const unsigned char *)s, len));
    return 1;
}

void ig_open_utf8(lua_State *L)
{
    lua_pushcfunction(L, l_valid_utf8);
    lua_setfield(L, -2, "valid_utf8");
}
