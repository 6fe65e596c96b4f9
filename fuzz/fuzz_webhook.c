/* libFuzzer target: the webhook signature check webhook_verify (webhook.c,
 * reachable only through its Lua binding): the X-Hub-Signature-256 header
 * parser, then HMAC-SHA256 (crypto.c) over the raw body and CRYPTO_memcmp.
 *
 * The first input byte picks a mode (byte % 3); the rest is used as:
 *  0  "<header>\n<body>" checked against a random 32-byte secret the fuzzer
 *     never sees: it must never verify;
 *  1  "<header>\n<body>" (no newline: all header, empty body) under the secret
 *     "appsecret": the verdict must be the one an independent reference gives
 *     (missing / sha1 / malformed / mismatch / index 1), and a failure reason
 *     must not change under another secret (it cannot carry the secret);
 *  2  "<secret><body>" with the secret length taken from the mode byte: the
 *     header made here with OpenSSL must verify, as index 2 behind another
 *     secret; the same with one hex digit changed, in upper case, or without
 *     the "sha256=" prefix must not.
 * LLVMFuzzerInitialize checks a vector computed outside this project. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "fuzz_common.h"

static const char HEXDIGITS[] = "0123456789abcdef";
static unsigned char hidden_secret[32];

typedef struct {
    long index;         /* > 0 on success */
    const char *reason; /* on failure; valid until lua_settop */
    size_t len;
} verdict;

/* secrets: count strings, each given as pointer and length */
static verdict verify(lua_State *L, const void *body, size_t blen, const void *header, size_t hlen,
                      const void *const *secrets, const size_t *slens, int count)
{
    verdict v;
    int i;
    lua_settop(L, 1);
    fuzz_getfn(L, "webhook_verify");
    lua_pushlstring(L, (const char *)body, blen);
    lua_pushlstring(L, (const char *)header, hlen);
    lua_createtable(L, count, 0);
    for (i = 0; i < count; i++) {
        lua_pushlstring(L, (const char *)secrets[i], slens[i]);
        lua_rawseti(L, -2, i + 1);
    }
    fuzz_call(L, 3, 2);
    v.index = 0;
    v.reason = NULL;
    v.len = 0;
    if (lua_type(L, -2) == LUA_TNUMBER) {
        CHECK(lua_isnil(L, -1));
        v.index = (long)lua_tointeger(L, -2);
        CHECK(v.index >= 1 && v.index <= count);
    } else {
        CHECK(lua_isnil(L, -2));
        CHECK(lua_type(L, -1) == LUA_TSTRING);
        v.reason = lua_tolstring(L, -1, &v.len);
    }
    return v;
}

static verdict verify1(lua_State *L, const void *body, size_t blen, const void *header, size_t hlen,
                       const void *secret, size_t slen)
{
    return verify(L, body, blen, header, hlen, &secret, &slen, 1);
}

static int is_reason(const verdict *v, const char *s)
{
    return v->reason != NULL && v->len == strlen(s) && memcmp(v->reason, s, v->len) == 0;
}

/* "sha256=" + lower-case hex of HMAC-SHA256(secret, body), by OpenSSL directly. */
static void make_header(const void *secret, size_t slen, const void *body, size_t blen, char out[71])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    static const unsigned char zero = 0;
    size_t i;
    CHECK(HMAC(EVP_sha256(), slen ? secret : &zero, (int)slen, blen ? (const unsigned char *)body : &zero, blen,
               md, &mdlen) != NULL);
    CHECK(mdlen == 32);
    memcpy(out, "sha256=", 7);
    for (i = 0; i < 32; i++) {
        out[7 + 2 * i] = HEXDIGITS[md[i] >> 4];
        out[8 + 2 * i] = HEXDIGITS[md[i] & 15];
    }
}

/* The reference: what the parser must make of a header. */
static const char *reference_reason(const uint8_t *h, size_t n)
{
    size_t i;
    if (n == 0) return "missing";
    if (n >= 5 && memcmp(h, "sha1=", 5) == 0) return "sha1";
    if (n != 71 || memcmp(h, "sha256=", 7) != 0) return "malformed";
    for (i = 7; i < n; i++)
        if (strchr(HEXDIGITS, h[i]) == NULL || h[i] == 0) return "malformed";
    return NULL;
}

static void split(const uint8_t *d, size_t n, const uint8_t **h, size_t *hlen, const uint8_t **b, size_t *blen)
{
    const uint8_t *nl = (const uint8_t *)memchr(d, '\n', n);
    *h = d;
    if (nl) {
        *hlen = (size_t)(nl - d);
        *b = nl + 1;
        *blen = n - *hlen - 1;
    } else {
        *hlen = n;
        *b = d + n;
        *blen = 0;
    }
}

static void mode_hidden(lua_State *L, const uint8_t *d, size_t n)
{
    const uint8_t *h, *b;
    size_t hlen, blen;
    verdict v;
    split(d, n, &h, &hlen, &b, &blen);
    v = verify1(L, b, blen, h, hlen, hidden_secret, sizeof hidden_secret);
    CHECK(v.index == 0);
}

static void mode_given(lua_State *L, const uint8_t *d, size_t n)
{
    static const char secret[] = "appsecret", other[] = "appsecreT";
    const uint8_t *h, *b;
    size_t hlen, blen, rlen;
    const char *want = NULL;
    char made[71], *reason;
    verdict v;
    split(d, n, &h, &hlen, &b, &blen);
    v = verify1(L, b, blen, h, hlen, secret, 9);
    want = reference_reason(h, hlen);
    if (want == NULL) {
        make_header(secret, 9, b, blen, made);
        want = memcmp(made, h, 71) == 0 ? NULL : "mismatch";
    }
    if (want == NULL) {
        CHECK(v.index == 1);
        return;
    }
    CHECK(is_reason(&v, want));
    /* another secret gives the same reason */
    rlen = v.len;
    reason = (char *)fuzz_alloc(rlen);
    memcpy(reason, v.reason, rlen);
    v = verify1(L, b, blen, h, hlen, other, 9);
    CHECK(v.index == 0 && v.len == rlen && memcmp(v.reason, reason, rlen) == 0);
    free(reason);
}

static void mode_made(lua_State *L, uint8_t mode, const uint8_t *d, size_t n)
{
    size_t slen = 1 + (size_t)(mode >> 2) % 40, pos, i;
    const void *secrets[2];
    size_t slens[2];
    char header[71], changed[71];
    int letters = 0;
    verdict v;
    if (n < slen) return;
    make_header(d, slen, d + slen, n - slen, header);

    v = verify1(L, d + slen, n - slen, header, 71, d, slen);
    CHECK(v.index == 1);
    secrets[0] = "another secret";
    slens[0] = 14;
    secrets[1] = d;
    slens[1] = slen;
    v = verify(L, d + slen, n - slen, header, 71, secrets, slens, 2);
    /* the other secret could only match if it were the same bytes */
    CHECK(v.index == 2 || (slen == 14 && memcmp(d, "another secret", 14) == 0 && v.index == 1));

    /* one hex digit changed to another hex digit */
    memcpy(changed, header, 71);
    pos = 7 + (n - slen) % 64;
    changed[pos] = HEXDIGITS[(strchr(HEXDIGITS, changed[pos]) - HEXDIGITS + 1 + (n ? d[n - 1] : 0) % 15) % 16];
    v = verify1(L, d + slen, n - slen, changed, 71, d, slen);
    CHECK(is_reason(&v, "mismatch"));

    /* upper case: not Meta's header */
    memcpy(changed, header, 71);
    for (i = 7; i < 71; i++)
        if (changed[i] >= 'a' && changed[i] <= 'f') {
            changed[i] = (char)(changed[i] - 'a' + 'A');
            letters = 1;
        }
    v = verify1(L, d + slen, n - slen, changed, 71, d, slen);
    CHECK(letters ? is_reason(&v, "malformed") : v.index == 1);

    /* without the prefix */
    v = verify1(L, d + slen, n - slen, header + 7, 64, d, slen);
    CHECK(is_reason(&v, "malformed"));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* HMAC-SHA256("meta-app-secret-0123456789abcdef", body) by Python's hmac module */
    static const char body[] = "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400538867190\",\"time\":1762010783728,"
        "\"messaging\":[{\"sender\":{\"id\":\"17841400538867190\"},\"recipient\":{\"id\":\"1129842642640637\"},"
        "\"timestamp\":1762010770464,\"message\":{\"mid\":\"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwNTM4ODY3"
        "MTkwOjM0MDI4MjM2Njg0MTcxMDMwMTI0NDI3NjE0MjE5NjI3MjE4ODU5NTozMjQ2NTU0MTQ0MTY0MjM2MjA1OTMxMDQyMDM0NjU1Njg2NAZ"
        "DZD\",\"text\":\"Ol\\u00e1, testando amor \\ud83e\\udd70 https:\\/\\/x.example\\/a\",\"is_echo\":true}}]}]}";
    static const char sig[] = "sha256=cf29b7b0fd61c8e8839009c904e8f53564c02e2c2f47d14b877084d674740c5f";
    static const char secret[] = "meta-app-secret-0123456789abcdef";
    lua_State *L;
    verdict v;
    (void)argc;
    (void)argv;
    CHECK(RAND_bytes(hidden_secret, sizeof hidden_secret) == 1);
    CHECK(sizeof body - 1 == 465);
    L = fuzz_state(ig_open_webhook);
    v = verify1(L, body, sizeof body - 1, sig, sizeof sig - 1, secret, sizeof secret - 1);
    CHECK(v.index == 1);
    v = verify1(L, body, sizeof body - 2, sig, sizeof sig - 1, secret, sizeof secret - 1);
    CHECK(is_reason(&v, "mismatch"));
    v = verify(L, body, sizeof body - 1, sig, sizeof sig - 1, NULL, NULL, 0);
    CHECK(is_reason(&v, "no_secret"));
    lua_close(L);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L;
    uint8_t mode;
    if (size == 0) return 0;
    mode = data[0];
    L = fuzz_state(ig_open_webhook);
    switch (mode % 3) {
    case 0: mode_hidden(L, data + 1, size - 1); break;
    case 1: mode_given(L, data + 1, size - 1); break;
    default: mode_made(L, mode, data + 1, size - 1); break;
    }
    lua_close(L);
    return 0;
}
