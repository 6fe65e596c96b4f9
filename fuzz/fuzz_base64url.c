/* libFuzzer target: base64url (crypto.c): ig_b64url_decode, ig_b64url_encode
 * and the Lua bindings base64url_decode / base64url_encode.
 *
 * Properties checked on every input:
 *  - decode writes inside the documented room, (len / 4 + 1) * 3 bytes
 *    (the buffer is exactly that big, so ASan sees any overflow);
 *  - decode accepts exactly what a separate reference validator accepts
 *    (alphabet A-Z a-z 0-9 - _, length % 4 != 1, zero unused bits, '='
 *    padding only when it completes the last quantum);
 *  - an accepted input is canonical: encoding the result gives the input back
 *    (without its padding), and the decoded length is the expected one;
 *  - decode(encode(x)) == x for the raw input bytes;
 *  - the Lua bindings agree with the C functions. */
#include "fuzz_common.h"

static int alphabet_value(unsigned char c)
{
    static const char ALPHA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *p;
    if (c == 0) return -1;
    p = strchr(ALPHA, c);
    return p ? (int)(p - ALPHA) : -1;
}

/* The reference rule, written independently of crypto.c. */
static int reference_valid(const unsigned char *s, size_t n)
{
    size_t pad = 0, len, i;
    int last;
    while (pad < n && s[n - 1 - pad] == '=') pad++;
    len = n - pad;
    if (pad > 2) return 0;
    if (pad > 0 && (n % 4 != 0 || len % 4 != 4 - pad)) return 0;
    if (len % 4 == 1) return 0;
    for (i = 0; i < len; i++)
        if (alphabet_value(s[i]) < 0) return 0;
    if (len % 4 == 0) return 1;
    last = alphabet_value(s[len - 1]);
    /* 2 chars carry 12 bits for 1 byte (4 spare), 3 chars 18 bits for 2 (2 spare) */
    return len % 4 == 2 ? (last & 0x0f) == 0 : (last & 0x03) == 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t room = (size / 4 + 1) * 3, n = 0, enc_len, stripped = size;
    unsigned char *out = (unsigned char *)fuzz_alloc(room);
    char *enc;
    int rc, valid;
    lua_State *L;

    rc = ig_b64url_decode((const char *)data, size, out, &n);
    valid = reference_valid(data, size);
    CHECK((rc == 0) == valid);
    CHECK(rc == 0 || rc == -1);
    while (stripped > 0 && data[stripped - 1] == '=') stripped--;
    if (rc == 0) {
        CHECK(n <= room);
        CHECK(n == stripped / 4 * 3 + (stripped % 4 ? stripped % 4 - 1 : 0));
        enc_len = ig_b64url_encoded_len(n);
        CHECK(enc_len == stripped);
        enc = (char *)fuzz_alloc(enc_len);
        ig_b64url_encode(out, n, enc);
        CHECK(memcmp(enc, data, enc_len) == 0);
        free(enc);
    }

    /* the other direction, on the raw bytes */
    enc_len = ig_b64url_encoded_len(size);
    enc = (char *)fuzz_alloc(enc_len);
    ig_b64url_encode(data, size, enc);
    {
        size_t i, m = 0;
        unsigned char *back = (unsigned char *)fuzz_alloc((enc_len / 4 + 1) * 3);
        for (i = 0; i < enc_len; i++) CHECK(alphabet_value((unsigned char)enc[i]) >= 0);
        CHECK(ig_b64url_decode(enc, enc_len, back, &m) == 0);
        CHECK(m == size && (size == 0 || memcmp(back, data, size) == 0));
        free(back);
    }

    L = fuzz_state(ig_open_crypto);
    fuzz_getfn(L, "base64url_decode");
    lua_pushlstring(L, (const char *)data, size);
    fuzz_call(L, 1, 2);
    if (rc == 0) {
        CHECK(fuzz_streq(L, -2, out, n));
        CHECK(lua_isnil(L, -1));
    } else {
        CHECK(lua_isnil(L, -2));
        CHECK(lua_type(L, -1) == LUA_TSTRING);
    }
    lua_settop(L, 1);
    fuzz_getfn(L, "base64url_encode");
    lua_pushlstring(L, (const char *)data, size);
    fuzz_call(L, 1, 1);
    CHECK(fuzz_streq(L, -1, enc, enc_len));
    lua_close(L);

    free(enc);
    free(out);
    return 0;
}
