/* URL concerns: RFC 3986 percent-encoding, decoding, query building and parsing. */
#include <stdlib.h>
#include <string.h>

#include "ig.h"

static const char HEX_UPPER[] = "0123456789ABCDEF";

/* RFC 3986 unreserved: ALPHA DIGIT - . _ ~ (a table: url_encode scans whole tokens) */
#define U1(c) ((c) >= 'A' && (c) <= 'Z') || ((c) >= 'a' && (c) <= 'z') || ((c) >= '0' && (c) <= '9') \
    || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~'
#define U4(c) U1(c), U1((c) + 1), U1((c) + 2), U1((c) + 3)
#define U16(c) U4(c), U4((c) + 4), U4((c) + 8), U4((c) + 12)
#define U64(c) U16(c), U16((c) + 16), U16((c) + 32), U16((c) + 48)
static const unsigned char UNRESERVED[256] = {U64(0), U64(64), U64(128), U64(192)};
#undef U64
#undef U16
#undef U4
#undef U1

static int is_unreserved(unsigned char c)
{
    return UNRESERVED[c];
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

size_t ig_url_decode(const char *in, size_t len, char *out, int plus_is_space)
{
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned char c = (unsigned char)in[i];
        if (c == '%' && len - i >= 3) {
            int hi = hex_value((unsigned char)in[i + 1]);
            int lo = hex_value((unsigned char)in[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out[n++] = (char)(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out[n++] = (c == '+' && plus_is_space) ? ' ' : (char)c;
        i++;
    }
    return n;
}

/* Runs of unreserved bytes (most of a token or an ID) go in with one
 * luaL_addlstring; each other byte as %XX. */
static void add_encoded(luaL_Buffer *b, const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && is_unreserved((unsigned char)s[i])) i++;
        if (i > start) luaL_addlstring(b, s + start, i - start);
        if (i < len) {
            unsigned char c = (unsigned char)s[i++];
            char esc[3];
            esc[0] = '%';
            esc[1] = HEX_UPPER[c >> 4];
            esc[2] = HEX_UPPER[c & 15];
            luaL_addlstring(b, esc, 3);
        }
    }
}

static int l_url_encode(lua_State *L)
{
    size_t len, i = 0;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    while (i < len && is_unreserved((unsigned char)s[i])) i++;
    if (i == len && lua_type(L, 1) == LUA_TSTRING) {
        /* nothing to encode (a token, an ID, a field name): the string itself, not a copy */
        lua_settop(L, 1);
        return 1;
    }
    luaL_buffinit(L, &b);
    add_encoded(&b, s, len);
    luaL_pushresult(&b);
    return 1;
}

/* Pushes the decoding of s; the scratch buffer is a userdata so an
 * allocation error cannot leak it. */
static void push_decoded(lua_State *L, const char *s, size_t len, int plus_is_space)
{
    char *out;
    size_t n;
    if (len == 0) {
        lua_pushliteral(L, "");
        return;
    }
    out = (char *)lua_newuserdata(L, len);
    n = ig_url_decode(s, len, out, plus_is_space);
    lua_pushlstring(L, out, n);
    lua_remove(L, -2);
}

static int l_url_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    push_decoded(L, s, len, lua_toboolean(L, 2));
    return 1;
}

/* Pushes the query form of the value at idx: strings as they are, numbers and
 * booleans as tostring gives them; anything else raises. Never converts the
 * original slot in place (that would confuse lua_next). */
static void push_query_string(lua_State *L, int idx, const char *what)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        lua_pushvalue(L, idx);
        return;
    case LUA_TNUMBER:
        lua_pushvalue(L, idx);
        lua_tolstring(L, -1, NULL);
        return;
    case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
        return;
    default:
        luaL_error(L, "bad argument #1 to 'build_query' (%s must be a string, number or boolean, got %s)",
                   what, luaL_typename(L, idx));
    }
}

typedef struct {
    const char *k, *v;
    size_t kl, vl;
} query_pair;

static int compare_bytes(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c != 0) return c;
    return al < bl ? -1 : (al > bl ? 1 : 0);
}

static int compare_pairs(const void *pa, const void *pb)
{
    const query_pair *a = (const query_pair *)pa, *b = (const query_pair *)pb;
    int c = compare_bytes(a->k, a->kl, b->k, b->kl);
    return c != 0 ? c : compare_bytes(a->v, a->vl, b->v, b->vl);
}

/* build_query(t): an array of {key, value} pairs (order kept) or a map
 * (keys sorted bytewise). */
static int l_build_query(lua_State *L)
{
    int flat, n = 0, i, is_array;
    query_pair *qp;
    luaL_Buffer b;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_newtable(L); /* 2: key1, value1, key2, value2, ... as strings */
    flat = 2;

    lua_rawgeti(L, 1, 1);
    is_array = lua_type(L, -1) == LUA_TTABLE;
    lua_pop(L, 1);

    if (is_array) {
        int len = (int)ig_rawlen(L, 1);
        for (i = 1; i <= len; i++) {
            lua_rawgeti(L, 1, i);
            if (lua_type(L, -1) != LUA_TTABLE)
                luaL_error(L, "bad argument #1 to 'build_query' (pair #%d must be a table, got %s)",
                           i, luaL_typename(L, -1));
            lua_rawgeti(L, -1, 1);
            push_query_string(L, -1, "key");
            lua_rawseti(L, flat, ++n * 2 - 1);
            lua_pop(L, 1);
            lua_rawgeti(L, -1, 2);
            push_query_string(L, -1, "value");
            lua_rawseti(L, flat, n * 2);
            lua_pop(L, 2);
        }
    } else {
        lua_pushnil(L);
        while (lua_next(L, 1) != 0) {
            push_query_string(L, -2, "key");
            lua_rawseti(L, flat, ++n * 2 - 1);
            push_query_string(L, -1, "value");
            lua_rawseti(L, flat, n * 2);
            lua_pop(L, 1);
        }
    }

    if (n == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    /* the strings stay referenced by the flat table, so the pointers are stable */
    qp = (query_pair *)lua_newuserdata(L, (size_t)n * sizeof *qp);
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, flat, i * 2 + 1);
        qp[i].k = lua_tolstring(L, -1, &qp[i].kl);
        lua_rawgeti(L, flat, i * 2 + 2);
        qp[i].v = lua_tolstring(L, -1, &qp[i].vl);
        lua_pop(L, 2);
    }
    if (!is_array) qsort(qp, (size_t)n, sizeof *qp, compare_pairs);

    luaL_buffinit(L, &b);
    for (i = 0; i < n; i++) {
        if (i > 0) luaL_addchar(&b, '&');
        add_encoded(&b, qp[i].k, qp[i].kl);
        luaL_addchar(&b, '=');
        add_encoded(&b, qp[i].v, qp[i].vl);
    }
    luaL_pushresult(&b);
    return 1;
}

/* Stores value (top) under key (below it) in the table at t: a repeated key
 * turns into an array of its values. Pops both. */
static void store_arg(lua_State *L, int t)
{
    lua_pushvalue(L, -2);
    lua_rawget(L, t);
    switch (lua_type(L, -1)) {
    case LUA_TNIL:
        lua_pop(L, 1);
        lua_rawset(L, t);
        return;
    case LUA_TSTRING:
        lua_createtable(L, 2, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 2);
        lua_rawset(L, t);
        return;
    default: /* an array made by an earlier repeat */
        lua_insert(L, -2);
        lua_rawseti(L, -2, (int)ig_rawlen(L, -2) + 1);
        lua_pop(L, 2);
        return;
    }
}

static int ends_with_encoded_hash(const char *s, size_t len)
{
    return len >= 4 && s[len - 4] == '%' && s[len - 3] == '2' && s[len - 2] == '3' && s[len - 1] == '_';
}

static int l_parse_query(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *end, *p, *q;
    lua_settop(L, 1);
    lua_newtable(L); /* 2: result */

    q = (const char *)memchr(s, '#', len);
    end = q ? q : s + len;
    if (ends_with_encoded_hash(s, (size_t)(end - s))) end -= 4;
    q = (const char *)memchr(s, '?', (size_t)(end - s));
    p = q ? q + 1 : s;

    while (p < end) {
        const char *amp = (const char *)memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp ? amp : end;
        if (pair_end > p) {
            const char *eq = (const char *)memchr(p, '=', (size_t)(pair_end - p));
            const char *key_end = eq ? eq : pair_end;
            push_decoded(L, p, (size_t)(key_end - p), 1);
            if (eq)
                push_decoded(L, eq + 1, (size_t)(pair_end - eq - 1), 1);
            else
                lua_pushliteral(L, "");
            store_arg(L, 2);
        }
        p = pair_end + 1;
    }
    return 1;
}

void ig_open_url(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"url_encode", l_url_encode},
        {"url_decode", l_url_decode},
        {"build_query", l_build_query},
        {"parse_query", l_parse_query},
        {NULL, NULL}
    };
    ig_setfuncs(L, funcs);
}
