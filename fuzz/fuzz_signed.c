/* libFuzzer target: the signed_request verifier verify_signed_request
 * (signed.c, reachable only through its Lua binding) over base64url and
 * HMAC-SHA256 (crypto.c).
 *
 * The first input byte picks a mode (byte % 3); the rest is used as:
 *  0  a signed_request checked against a random 32-byte secret the fuzzer
 *     never sees: it must never verify;
 *  1  "<secret>\n<signed_request>" (no newline: secret "appsecret"): when it
 *     verifies, the signature is recomputed independently with OpenSSL and
 *     the returned bytes re-encoded must give the payload text; a failure
 *     reason is the same under another secret (it cannot carry the secret);
 *  2  "<secret><payload bytes>" with the secret length taken from the mode
 *     byte: a signed_request made here (padded or not, per the mode byte)
 *     must verify and give the payload back; the same with one signature
 *     character changed, or with another secret, must not.
 * LLVMFuzzerInitialize checks the published vectors and the 64 KiB cap. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "fuzz_common.h"

#define MAX_SIGNED (64 * 1024)

static const char ALPHA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static unsigned char hidden_secret[32];

typedef struct {
    int ok;
    const char *bytes; /* payload on success, reason on failure; valid until lua_settop */
    size_t len;
} verdict;

static verdict verify(lua_State *L, const void *sr, size_t srlen, const void *secret, size_t slen)
{
    verdict v;
    lua_settop(L, 1);
    fuzz_getfn(L, "verify_signed_request");
    lua_pushlstring(L, (const char *)sr, srlen);
    lua_pushlstring(L, (const char *)secret, slen);
    fuzz_call(L, 2, 2);
    v.ok = lua_type(L, -2) == LUA_TSTRING;
    if (v.ok) {
        CHECK(lua_isnil(L, -1));
        v.bytes = lua_tolstring(L, -2, &v.len);
    } else {
        CHECK(lua_isnil(L, -2));
        CHECK(lua_type(L, -1) == LUA_TSTRING);
        v.bytes = lua_tolstring(L, -1, &v.len);
        CHECK(v.len > 0);
    }
    return v;
}

static int contains(const char *hay, size_t n, const void *needle, size_t k)
{
    size_t i;
    if (k == 0 || k > n) return 0;
    for (i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return 1;
    return 0;
}

/* base64url without padding, own encoder (not crypto.c's). */
static size_t encode(const unsigned char *in, size_t n, char *out)
{
    size_t i, o = 0;
    for (i = 0; i < n; i += 3) {
        unsigned long v = (unsigned long)in[i] << 16;
        size_t left = n - i;
        if (left > 1) v |= (unsigned long)in[i + 1] << 8;
        if (left > 2) v |= in[i + 2];
        out[o++] = ALPHA[(v >> 18) & 63];
        out[o++] = ALPHA[(v >> 12) & 63];
        if (left > 1) out[o++] = ALPHA[(v >> 6) & 63];
        if (left > 2) out[o++] = ALPHA[v & 63];
    }
    return o;
}

static void mac(const void *secret, size_t slen, const void *msg, size_t mlen, unsigned char md[32])
{
    unsigned int mdlen = 0;
    static const unsigned char zero = 0;
    CHECK(HMAC(EVP_sha256(), slen ? secret : &zero, (int)slen, mlen ? (const unsigned char *)msg : &zero, mlen,
               md, &mdlen) != NULL);
    CHECK(mdlen == 32);
}

static size_t strip_padding(const char *s, size_t n)
{
    while (n > 0 && s[n - 1] == '=') n--;
    return n;
}

/* Makes "<sig>.<payload>" for payload bytes under secret; returns its length.
 * out needs 64 + 2 + (n / 3 + 1) * 4 bytes. */
static size_t make_signed(const void *secret, size_t slen, const unsigned char *payload, size_t n, int padded,
                          char *out)
{
    unsigned char md[32];
    size_t sig_len, p_len;
    char *p;
    /* payload text first (the MAC is over the text as sent) */
    p = out + 45; /* 43 signature chars, '=', '.' */
    p_len = encode(payload, n, p);
    if (padded)
        while (p_len % 4) p[p_len++] = '=';
    mac(secret, slen, p, p_len, md);
    sig_len = encode(md, 32, out);
    if (padded) out[sig_len++] = '=';
    out[sig_len++] = '.';
    memmove(out + sig_len, p, p_len);
    return sig_len + p_len;
}

static void mode_hidden(lua_State *L, const uint8_t *d, size_t n)
{
    verdict v = verify(L, d, n, hidden_secret, sizeof hidden_secret);
    CHECK(!v.ok);
}

static void mode_given(lua_State *L, const uint8_t *d, size_t n)
{
    const uint8_t *nl = (const uint8_t *)memchr(d, '\n', n);
    const void *secret = "appsecret";
    size_t slen = 9;
    verdict v;
    if (nl) {
        secret = d;
        slen = (size_t)(nl - d);
        n -= slen + 1;
        d = nl + 1;
    }
    v = verify(L, d, n, secret, slen);
    if (v.ok) {
        const char *dot = (const char *)memchr(d, '.', n);
        size_t sig_len, p_len;
        unsigned char md[32];
        char text[44];
        char *re;
        CHECK(slen > 0 && n <= MAX_SIGNED && dot != NULL);
        sig_len = strip_padding((const char *)d, (size_t)(dot - (const char *)d));
        p_len = n - (size_t)(dot - (const char *)d) - 1;
        mac(secret, slen, dot + 1, p_len, md);
        CHECK(sig_len == 43 && encode(md, 32, text) == 43 && memcmp(text, d, 43) == 0);
        re = (char *)fuzz_alloc(v.len / 3 * 4 + 4);
        CHECK(encode((const unsigned char *)v.bytes, v.len, re) == strip_padding(dot + 1, p_len));
        CHECK(memcmp(re, dot + 1, strip_padding(dot + 1, p_len)) == 0);
        free(re);
    } else if (slen > 0) {
        /* the reason does not depend on the secret (so cannot leak it):
         * another secret of the same length fails the same way */
        char *reason = (char *)fuzz_alloc(v.len), *other = (char *)fuzz_alloc(slen);
        size_t rlen = v.len, i;
        memcpy(reason, v.bytes, rlen);
        for (i = 0; i < slen; i++) other[i] = (char)(((const unsigned char *)secret)[i] ^ 0x5a);
        v = verify(L, d, n, other, slen);
        CHECK(!v.ok && v.len == rlen && memcmp(v.bytes, reason, rlen) == 0);
        free(other);
        free(reason);
    }
}

static void mode_made(lua_State *L, uint8_t mode, const uint8_t *d, size_t n)
{
    size_t slen = 1 + (size_t)(mode >> 3) % 24, srlen, pos;
    int padded = mode & 4;
    char *sr, *secret2;
    verdict v;
    if (n < slen) return;
    sr = (char *)fuzz_alloc(64 + 2 + ((n - slen) / 3 + 1) * 4);
    srlen = make_signed(d, slen, d + slen, n - slen, padded, sr);
    v = verify(L, sr, srlen, d, slen);
    if (n == slen) {
        CHECK(!v.ok); /* empty payload */
    } else if (srlen > MAX_SIGNED) {
        CHECK(!v.ok);
    } else {
        CHECK(v.ok);
        CHECK(v.len == n - slen && memcmp(v.bytes, d + slen, v.len) == 0);

        /* another secret: one more byte */
        secret2 = (char *)fuzz_alloc(slen + 1);
        memcpy(secret2, d, slen);
        secret2[slen] = 'x';
        v = verify(L, sr, srlen, secret2, slen + 1);
        CHECK(!v.ok);
        free(secret2);

        /* one signature character changed to another alphabet character */
        pos = (n - slen) % 43;
        sr[pos] = ALPHA[(strchr(ALPHA, sr[pos]) - ALPHA + 1 + d[n - 1] % 63) % 64];
        v = verify(L, sr, srlen, d, slen);
        CHECK(!v.ok);
    }
    free(sr);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char php[] =
        "U0_O1MqqNKUt32633zAkdd2Ce-jGVgRgJeRauyx_zC8=.eyJvYXV0aF90b2tlbiI6ImZvb190b2tlbiIsImFsZ29yaXRobSI6IkhNQUMtU0hB"
        "MjU2IiwiaXNzdWVkX2F0IjozMjEsImNvZGUiOiJmb29fY29kZSIsInN0YXRlIjoiZm9vX3N0YXRlIiwidXNlcl9pZCI6MTIzLCJmb28iOiJi"
        "YXIifQ==";
    static const char meta[] =
        "N32LNcvDGXq0GI1jxm-tj1ysJh2uqkNIBcUhUmTp19k.eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjEyOTE4NDA0MDAs"
        "Imlzc3VlZF9hdCI6MTI5MTgzNjgwMCwidXNlcl9pZCI6IjIxODQ3MSJ9";
    static const char meta_json[] =
        "{\"algorithm\":\"HMAC-SHA256\",\"expires\":1291840400,\"issued_at\":1291836800,\"user_id\":\"218471\"}";
    lua_State *L;
    verdict v;
    char *big;
    size_t len;
    (void)argc;
    (void)argv;

    CHECK(RAND_bytes(hidden_secret, sizeof hidden_secret) == 1);

    L = fuzz_state(ig_open_signed);
    v = verify(L, php, sizeof php - 1, "foo_app_secret", 14);
    CHECK(v.ok && v.len > 0 && v.bytes[0] == '{');
    v = verify(L, meta, sizeof meta - 1, "appsecret", 9);
    CHECK(v.ok && v.len == sizeof meta_json - 1 && memcmp(v.bytes, meta_json, v.len) == 0);
    v = verify(L, meta, sizeof meta - 1, "appsecreT", 9);
    CHECK(!v.ok);

    /* the cap: a valid signed_request of exactly 64 KiB verifies, one byte more is refused */
    big = (char *)fuzz_alloc(MAX_SIGNED + 64);
    {
        unsigned char *payload = (unsigned char *)fuzz_alloc(MAX_SIGNED);
        size_t n = (MAX_SIGNED - 44) / 4 * 3; /* 43 + '.' + 4/3 n == 64 KiB */
        memset(payload, 'a', MAX_SIGNED);
        len = make_signed("k", 1, payload, n, 0, big);
        CHECK(len == MAX_SIGNED);
        v = verify(L, big, len, "k", 1);
        CHECK(v.ok && v.len == n);
        len = make_signed("k", 1, payload, n + 1, 0, big);
        CHECK(len > MAX_SIGNED);
        v = verify(L, big, len, "k", 1);
        CHECK(!v.ok && contains(v.bytes, v.len, "64 KiB", 6));
        free(payload);
    }
    free(big);
    lua_close(L);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L;
    uint8_t mode;
    if (size == 0) return 0;
    mode = data[0];
    L = fuzz_state(ig_open_signed);
    switch (mode % 3) {
    case 0: mode_hidden(L, data + 1, size - 1); break;
    case 1: mode_given(L, data + 1, size - 1); break;
    default: mode_made(L, mode, data + 1, size - 1); break;
    }
    lua_close(L);
    return 0;
}
