/* Webhook delivery signatures (PLATFORM.md §1.3): the X-Hub-Signature-256
 * header is "sha256=" and 64 lower-case hex digits of HMAC-SHA256(app secret,
 * raw body). The body is hashed exactly as received, never re-serialized.
 * Policy (which header, the secrets list, error objects) is the Lua layer's. */
#include <string.h>

#include <openssl/crypto.h>

#include "ig.h"

#define PREFIX "sha256="
#define PREFIX_LEN (sizeof PREFIX - 1)
#define HEX_LEN (IG_SHA256_LEN * 2)

/* Why a header is unusable; the strings are the Lua-visible reasons. */
static const char *const MISSING = "missing";
static const char *const SHA1 = "sha1";
static const char *const MALFORMED = "malformed";

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1; /* upper case too: Meta sends lower case, anything else is not its header */
}

/* NULL and the digest in mac, or the reason the header is refused. */
static const char *parse_header(const char *h, size_t len, unsigned char mac[IG_SHA256_LEN])
{
    size_t i;
    if (len == 0) return MISSING;
    if (len >= 5 && memcmp(h, "sha1=", 5) == 0) return SHA1;
    if (len != PREFIX_LEN + HEX_LEN || memcmp(h, PREFIX, PREFIX_LEN) != 0) return MALFORMED;
    for (i = 0; i < IG_SHA256_LEN; i++) {
        int hi = hex_value((unsigned char)h[PREFIX_LEN + 2 * i]);
        int lo = hex_value((unsigned char)h[PREFIX_LEN + 2 * i + 1]);
        if (hi < 0 || lo < 0) return MALFORMED;
        mac[i] = (unsigned char)(hi << 4 | lo);
    }
    return NULL;
}

static int fail(lua_State *L, const char *reason)
{
    lua_pushnil(L);
    lua_pushstring(L, reason);
    return 2;
}

/* webhook_verify(body, header, secrets) -> index of the first secret whose
 * HMAC matches, or nil, reason ("no_secret", "missing", "sha1", "malformed",
 * "mismatch", "hmac"). Every secret is tried, so the time taken does not
 * tell which one matched. Misuse (a non-string secret) raises. */
static int l_webhook_verify(lua_State *L)
{
    size_t body_len, header_len, n, i;
    const char *body = luaL_checklstring(L, 1, &body_len);
    const char *header = luaL_checklstring(L, 2, &header_len);
    unsigned char want[IG_SHA256_LEN], mac[IG_SHA256_LEN];
    const char *reason;
    size_t matched = 0;
    int failed = 0;

    luaL_checktype(L, 3, LUA_TTABLE);
    n = (size_t)ig_rawlen(L, 3);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, 3, (lua_Integer)i);
        if (lua_type(L, -1) != LUA_TSTRING || ig_rawlen(L, -1) == 0)
            return luaL_error(L, "webhook_verify: secrets[%d] must be a non-empty string", (int)i);
        lua_pop(L, 1);
    }
    if (n == 0) return fail(L, "no_secret");

    reason = parse_header(header, header_len, want);
    if (reason != NULL) return fail(L, reason);

    for (i = 1; i <= n; i++) {
        size_t key_len;
        const char *key;
        lua_rawgeti(L, 3, (lua_Integer)i);
        key = lua_tolstring(L, -1, &key_len);
        if (ig_hmac_sha256(key, key_len, body, body_len, mac) != 0)
            failed = 1;
        else if (CRYPTO_memcmp(mac, want, IG_SHA256_LEN) == 0 && matched == 0)
            matched = i;
        lua_pop(L, 1);
    }
    OPENSSL_cleanse(mac, sizeof mac);
    if (matched == 0) return fail(L, failed ? "hmac" : "mismatch");
    lua_pushinteger(L, (lua_Integer)matched);
    return 1;
}

void ig_open_webhook(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"webhook_verify", l_webhook_verify},
        {NULL, NULL}
    };
    ig_setfuncs(L, funcs);
}
