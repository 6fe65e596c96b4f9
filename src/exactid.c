/* Exact IDs: a pre-pass over JSON text that quotes integers too long for a
 * double (Instagram sends IDs above 2^53 as bare numbers), fused with the
 * UTF-8 check so that decoding a page scans it once, at memchr-like speed
 * inside strings (SSE2 where the compiler has it), and copies nothing when
 * nothing needs quoting. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "ig.h"

/* The kind of each byte outside strings, looked up once per byte: P punctuation (or any other
 * ASCII byte), Q the quote that opens a string, W whitespace, T a byte that can belong to a bare
 * JSON token (number, literal, or garbage: [0-9A-Za-z+-._]), Z NUL, H a byte >= 0x80. */
enum { P, Q, W, T, Z, H };
static const unsigned char byte_kind[256] = {
    Z, P, P, P, P, P, P, P, P, W, W, P, P, W, P, P,
    P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P,
    W, P, Q, P, P, P, P, P, P, P, P, T, P, T, T, P,
    T, T, T, T, T, T, T, T, T, T, P, P, P, P, P, P,
    P, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T,
    T, T, T, T, T, T, T, T, T, T, T, P, P, P, P, T,
    P, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T,
    T, T, T, T, T, T, T, T, T, T, T, P, P, P, P, P,
    H, H, H, H, H, H, H, H, H, H, H, H, H, H, H, H,
    H, H, H, H, H, H, H, H, H, H, H, H, H, H, H, H,
    H, H, H, H, H, H, H, H, H, H, H, H, H, H, H, H,
    H, H, H, H, H, H, H, H, H, H, H, H, H, H, H, H,
    H, H, H, H, H, H, H, H, H, H, H, H, H, H, H, H,
    H, H, H, H, H, H, H, H, H, H, H, H, H, H, H, H,
    H, H, H, H, H, H, H, H, H, H, H, H, H, H, H, H,
    H, H, H, H, H, H, H, H, H, H, H, H, H, H, H, H,
};

static int is_ws(unsigned char c)
{
    return byte_kind[c] == W;
}

/* A canonical JSON integer (-?[1-9][0-9]*) with at least IG_BIG_INT_DIGITS digits. */
static int is_big_int(const unsigned char *t, size_t n)
{
    size_t i = (n > 0 && t[0] == '-') ? 1 : 0;
    if (n - i < IG_BIG_INT_DIGITS || t[i] == '0') return 0;
    for (; i < n; i++)
        if (t[i] < '0' || t[i] > '9') return 0;
    return 1;
}

/* Index of the first byte at or after i that is '"', '\\', NUL or >= 0x80
 * (len if none): the plain run of a string, skipped 16 bytes at a time. */
static size_t skip_plain(const unsigned char *s, size_t i, size_t len)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), zero = _mm_setzero_si128();
    while (len - i >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                   _mm_cmpeq_epi8(v, zero));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit) | (unsigned)_mm_movemask_epi8(v);
        if (mask) return i + (size_t)__builtin_ctz(mask);
        i += 16;
    }
#endif
    for (; i < len; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\' || c == 0 || c >= 0x80) return i;
    }
    return len;
}

int ig_json_prepare(const char *text, size_t len, char *out, size_t *outlen)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, copied = 0, o = 0;
    unsigned char last = 0; /* the last byte outside strings and whitespace; 0 at the start */
    int status = IG_JSON_OK;

    while (i < len) {
        unsigned char c = s[i];
        unsigned char kind = byte_kind[c];
        if (kind == P) { /* the usual byte outside strings: { } [ ] : , */
            last = c;
            i++;
        } else if (kind == Q) {
            i++;
            for (;;) {
                i = skip_plain(s, i, len);
                if (i >= len) break;
                c = s[i];
                if (c == '"') {
                    i++;
                    break;
                }
                if (c == '\\') {
                    /* the escaped byte goes with it, unless it must be checked itself */
                    i += (i + 1 < len && s[i + 1] != 0 && s[i + 1] < 0x80) ? 2 : 1;
                } else if (c == 0) {
                    status = IG_JSON_NUL;
                    goto done;
                } else {
                    size_t n = ig_utf8_seq(s, i, len);
                    if (n == 0) {
                        status = IG_JSON_BAD_UTF8;
                        goto done;
                    }
                    i += n;
                }
            }
            last = '"';
        } else if (kind == W) {
            i++;
        } else if (kind == T) {
            size_t start = i;
            while (i < len && byte_kind[s[i]] == T) i++;
            /* quoted only in value position: at the start, after ':' '[' ',', and
             * not as an object key (followed by ':'); so invalid JSON such as
             * {12345678901234567:1} is never turned into valid JSON */
            if ((last == 0 || last == ':' || last == '[' || last == ',') && is_big_int(s + start, i - start)) {
                size_t j = i;
                while (j < len && is_ws(s[j])) j++;
                if (j == len || s[j] != ':') {
                    if (out) {
                        memcpy(out + o, text + copied, start - copied);
                        out[o + start - copied] = '"';
                        memcpy(out + o + start - copied + 1, text + start, i - start);
                        out[o + i - copied + 1] = '"';
                    }
                    o += i - copied + 2;
                    copied = i;
                }
            }
            last = 't';
        } else if (kind == Z) {
            status = IG_JSON_NUL;
            goto done;
        } else { /* H */
            size_t n = ig_utf8_seq(s, i, len);
            if (n == 0) {
                status = IG_JSON_BAD_UTF8;
                goto done;
            }
            i += n;
            last = c;
        }
    }
done:
    if (out && len > copied) memcpy(out + o, text + copied, len - copied);
    *outlen = o + (len - copied);
    return status;
}

size_t ig_quote_big_ints(const char *in, size_t len, char *out)
{
    /* the same pass, minus the checks: a NUL or invalid UTF-8 stops the
     * quoting there and the rest is copied as it is */
    size_t n;
    ig_json_prepare(in, len, out, &n);
    return n;
}

/* Pushes the text at index 1 prepared for lua-cjson and returns 1, or pushes nil and a
 * reason and returns 2. */
static int push_prepared(lua_State *L, const char *s, size_t len)
{
    size_t n;
    char small[1024], *out;
    /* short text (a token response) is written in the same pass: each quoted
     * integer has 16+ bytes and adds 2, so the output fits in len + len/8 + 2 */
    int direct = len <= (sizeof small - 2) / 9 * 8;
    int status = ig_json_prepare(s, len, direct ? small : NULL, &n);
    if (status != IG_JSON_OK) {
        lua_pushnil(L);
        lua_pushstring(L, status == IG_JSON_BAD_UTF8 ? "invalid UTF-8" : "invalid JSON");
        return 2;
    }
    if (n == len) { /* nothing to quote: the same string */
        lua_pushvalue(L, 1);
        return 1;
    }
    if (direct) {
        lua_pushlstring(L, small, n);
        return 1;
    }
    out = (char *)lua_newuserdata(L, n);
    ig_json_prepare(s, len, out, &n);
    lua_pushlstring(L, out, n);
    lua_remove(L, -2);
    return 1;
}

static int l_json_prepare(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_settop(L, 1);
    return push_prepared(L, s, len);
}

/* decode(text) -> value | nil, reason: json_prepare, then the decoder (upvalue 1, a
 * lua-cjson decode that raises, called here in protected mode, as lua-cjson's safe decode would
 * call it, one C call fewer) on the prepared text, in one call. Anything but a string is "not a
 * string" (lua-cjson would take a number as JSON text). A memory error is raised. */
static int l_exact_decode(lua_State *L)
{
    size_t len;
    const char *s;
    int status;
    if (lua_type(L, 1) != LUA_TSTRING) {
        lua_pushnil(L);
        lua_pushliteral(L, "not a string");
        return 2;
    }
    s = lua_tolstring(L, 1, &len);
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    if (push_prepared(L, s, len) == 2) return 2;
    status = lua_pcall(L, 1, 1, 0);
    if (status == LUA_ERRRUN) { /* the decoder's error: its message may quote the text */
        lua_pushnil(L);
        lua_pushliteral(L, "invalid JSON");
        return 2;
    }
    if (status != 0) return lua_error(L);
    return 1;
}

/* exact_decoder(decode) -> l_exact_decode bound to decode (a lua-cjson decode that raises) */
static int l_exact_decoder(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_pushcclosure(L, l_exact_decode, 1);
    return 1;
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

/* "id" or a name ending in "_id" */
static int is_id_key(const char *k, size_t n)
{
    return (n == 2 && k[0] == 'i' && k[1] == 'd') || (n >= 3 && memcmp(k + n - 3, "_id", 3) == 0);
}

#define MAX_EXACT_INT 9007199254740992.0 /* 2^53 */
#define MAX_NORMALIZE_DEPTH 64

/* The table at idx, in place: every integral number under an "id" or "..._id" key becomes its
 * exact decimal string (below 2^53 in magnitude: a bigger one was quoted before decoding),
 * and under Lua 5.3+ every other integral number an integer (lua-cjson makes floats). */
static void normalize(lua_State *L, int idx, int depth)
{
    luaL_checkstack(L, 4, "normalize_ids: too deep");
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int tv = lua_type(L, -1);
        if (tv == LUA_TNUMBER) {
            lua_Number x = lua_tonumber(L, -1);
            size_t kn;
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kn) : NULL;
            if (k != NULL && is_id_key(k, kn)) {
                if (x == floor(x) && x > -MAX_EXACT_INT && x < MAX_EXACT_INT) {
                    char digits[24];
                    snprintf(digits, sizeof digits, "%lld", (long long)x);
                    lua_pushvalue(L, -2);
                    lua_pushstring(L, digits);
                    lua_rawset(L, idx);
                }
            }
#if LUA_VERSION_NUM >= 503
            else if (!lua_isinteger(L, -1) && x == floor(x) && x >= -MAX_EXACT_INT * 1024.0
                     && x < MAX_EXACT_INT * 1024.0) { /* within +-2^63 */
                lua_pushvalue(L, -2);
                lua_pushinteger(L, (lua_Integer)x);
                lua_rawset(L, idx);
            }
#endif
        } else if (tv == LUA_TTABLE && depth < MAX_NORMALIZE_DEPTH) {
            normalize(L, lua_gettop(L), depth + 1);
        }
        lua_pop(L, 1);
    }
}

void ig_normalize_ids(lua_State *L, int idx)
{
    normalize(L, idx, 0);
}

/* normalize_ids(value) -> value: decoded Graph data with exact string IDs (see normalize) */
static int l_normalize_ids(lua_State *L)
{
    lua_settop(L, 1);
    if (lua_type(L, 1) == LUA_TTABLE) normalize(L, 1, 0);
    return 1;
}

void ig_open_exactid(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"quote_big_ints", l_quote_big_ints},
        {"json_prepare", l_json_prepare},
        {"exact_decoder", l_exact_decoder},
        {"normalize_ids", l_normalize_ids},
        {NULL, NULL}
    };
    ig_setfuncs(L, funcs);
}
