/* Crypto concerns, all through OpenSSL libcrypto: HMAC-SHA256, base64url,
 * constant-time comparison, random state. */
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "ig.h"

#define RANDOM_STATE_DEFAULT 32
#define RANDOM_STATE_MIN 16
#define RANDOM_STATE_MAX 256

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t ig_b64url_encoded_len(size_t n)
{
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

void ig_b64url_encode(const unsigned char *in, size_t len, char *out)
{
    size_t i = 0;
    while (len - i >= 3) {
        unsigned long v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8) | in[i + 2];
        *out++ = B64URL[(v >> 18) & 63];
        *out++ = B64URL[(v >> 12) & 63];
        *out++ = B64URL[(v >> 6) & 63];
        *out++ = B64URL[v & 63];
        i += 3;
    }
    if (len - i == 1) {
        unsigned long v = (unsigned long)in[i] << 16;
        *out++ = B64URL[(v >> 18) & 63];
        *out++ = B64URL[(v >> 12) & 63];
    } else if (len - i == 2) {
        unsigned long v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8);
        *out++ = B64URL[(v >> 18) & 63];
        *out++ = B64URL[(v >> 12) & 63];
        *out++ = B64URL[(v >> 6) & 63];
    }
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

int ig_b64url_decode(const char *in, size_t len, unsigned char *out, size_t *outlen)
{
    size_t pad = 0, i, n = 0, tail;
    unsigned long acc = 0;
    int bits = 0;

    while (pad < len && pad < 2 && in[len - 1 - pad] == '=') pad++;
    if (pad > 0) {
        /* padding is optional, but when present it must complete the last quantum */
        if (len % 4 != 0) return -1;
        len -= pad;
    }
    tail = len % 4;
    if (tail == 1 || (pad > 0 && pad != 4 - tail)) return -1;

    for (i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (unsigned long)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1UL << bits) - 1;
        }
    }
    if (acc != 0) return -1; /* non-zero unused bits: not the canonical encoding */
    *outlen = n;
    return 0;
}

int ig_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                   unsigned char out[IG_SHA256_LEN])
{
    unsigned int mdlen = 0;
    static const unsigned char empty = 0;
    if (keylen > INT_MAX) return -1;
    if (HMAC(EVP_sha256(), keylen ? key : &empty, (int)keylen,
             msglen ? (const unsigned char *)msg : &empty, msglen, out, &mdlen) == NULL
        || mdlen != IG_SHA256_LEN)
        return -1;
    return 0;
}

/* Pushes base64url(in) without padding. */
static void push_b64url(lua_State *L, const unsigned char *in, size_t len)
{
    size_t n = ig_b64url_encoded_len(len);
    char *out;
    if (n == 0) {
        lua_pushliteral(L, "");
        return;
    }
    out = (char *)lua_newuserdata(L, n);
    ig_b64url_encode(in, len, out);
    lua_pushlstring(L, out, n);
    lua_remove(L, -2);
}

static int l_random_state(lua_State *L)
{
    lua_Integer nbytes = luaL_optinteger(L, 1, RANDOM_STATE_DEFAULT);
    unsigned char buf[RANDOM_STATE_MAX];
    luaL_argcheck(L, nbytes >= RANDOM_STATE_MIN && nbytes <= RANDOM_STATE_MAX, 1,
                  "nbytes must be between 16 and 256");
    if (RAND_bytes(buf, (int)nbytes) != 1) {
        OPENSSL_cleanse(buf, sizeof buf);
        lua_pushnil(L);
        lua_pushliteral(L, "random_state: the random number generator failed");
        return 2;
    }
    push_b64url(L, buf, (size_t)nbytes);
    OPENSSL_cleanse(buf, sizeof buf);
    return 1;
}

static int l_constant_time_equal(lua_State *L)
{
    size_t la, lb;
    const char *a = luaL_checklstring(L, 1, &la);
    const char *b = luaL_checklstring(L, 2, &lb);
    lua_pushboolean(L, la == lb && CRYPTO_memcmp(a, b, la) == 0);
    return 1;
}

static int l_hmac_sha256_hex(lua_State *L)
{
    static const char HEX[] = "0123456789abcdef";
    size_t kl, ml, i;
    const char *key = luaL_checklstring(L, 1, &kl);
    const char *msg = luaL_checklstring(L, 2, &ml);
    unsigned char mac[IG_SHA256_LEN];
    char hex[IG_SHA256_LEN * 2];
    if (ig_hmac_sha256(key, kl, msg, ml, mac) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "hmac_sha256_hex: HMAC computation failed");
        return 2;
    }
    for (i = 0; i < IG_SHA256_LEN; i++) {
        hex[i * 2] = HEX[mac[i] >> 4];
        hex[i * 2 + 1] = HEX[mac[i] & 15];
    }
    lua_pushlstring(L, hex, sizeof hex);
    OPENSSL_cleanse(mac, sizeof mac);
    OPENSSL_cleanse(hex, sizeof hex);
    return 1;
}

static int l_base64url_encode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    push_b64url(L, (const unsigned char *)s, len);
    return 1;
}

static int l_base64url_decode(lua_State *L)
{
    size_t len, n;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned char *out = (unsigned char *)lua_newuserdata(L, len / 4 * 3 + 3);
    if (ig_b64url_decode(s, len, out, &n) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "base64url_decode: invalid base64url");
        return 2;
    }
    lua_pushlstring(L, (const char *)out, n);
    return 1;
}

void ig_open_crypto(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"random_state", l_random_state},
        {"constant_time_equal", l_constant_time_equal},
        {"hmac_sha256_hex", l_hmac_sha256_hex},
        {"base64url_encode", l_base64url_encode},
        {"base64url_decode", l_base64url_decode},
        {NULL, NULL}
    };
    ig_setfuncs(L, funcs);
}
