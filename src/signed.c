/* Meta signed_request verification: "<base64url sig>.<base64url payload>",
 * sig = HMAC-SHA256(app_secret, payload as received). JSON checks (algorithm,
 * issued_at) are the Lua layer's. */
#include <string.h>

#include <openssl/crypto.h>

#include "ig.h"

#define SIGNED_REQUEST_MAX (64 * 1024)
/* a 32-byte signature is 43 characters, 44 with its padding */
#define SIGNATURE_TEXT_MAX 44

static int fail(lua_State *L, const char *reason)
{
    lua_pushnil(L);
    lua_pushstring(L, reason);
    return 2;
}

static int l_verify_signed_request(lua_State *L)
{
    size_t len, secret_len, sig_len, payload_len, n;
    const char *sr = luaL_checklstring(L, 1, &len);
    const char *secret = luaL_checklstring(L, 2, &secret_len);
    const char *dot, *payload;
    unsigned char sig[SIGNATURE_TEXT_MAX], mac[IG_SHA256_LEN];
    unsigned char *out;
    int same;

    if (secret_len == 0) return fail(L, "app secret is empty");
    if (len > SIGNED_REQUEST_MAX) return fail(L, "signed_request is longer than 64 KiB");
    dot = (const char *)memchr(sr, '.', len);
    if (dot == NULL) return fail(L, "signed_request has no '.' separator");
    sig_len = (size_t)(dot - sr);
    payload = dot + 1;
    payload_len = len - sig_len - 1;
    if (memchr(payload, '.', payload_len) != NULL) return fail(L, "signed_request has more than one '.'");
    if (sig_len == 0) return fail(L, "signed_request has an empty signature");
    if (payload_len == 0) return fail(L, "signed_request has an empty payload");

    if (sig_len > SIGNATURE_TEXT_MAX || ig_b64url_decode(sr, sig_len, sig, &n) != 0)
        return fail(L, "signature is not valid base64url");
    if (n != IG_SHA256_LEN) return fail(L, "signature is not 32 bytes");

    if (ig_hmac_sha256(secret, secret_len, payload, payload_len, mac) != 0)
        return fail(L, "HMAC computation failed");
    same = CRYPTO_memcmp(mac, sig, IG_SHA256_LEN) == 0;
    OPENSSL_cleanse(mac, sizeof mac);
    OPENSSL_cleanse(sig, sizeof sig);
    if (!same) return fail(L, "signature does not match");

    /* only an authenticated payload is decoded */
    out = (unsigned char *)lua_newuserdata(L, payload_len / 4 * 3 + 3);
    if (ig_b64url_decode(payload, payload_len, out, &n) != 0)
        return fail(L, "payload is not valid base64url");
    lua_pushlstring(L, (const char *)out, n);
    return 1;
}

void ig_open_signed(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"verify_signed_request", l_verify_signed_request},
        {NULL, NULL}
    };
    ig_setfuncs(L, funcs);
}
