/* libFuzzer target: the exact-ID JSON pre-pass ig_quote_big_ints (exactid.c)
 * and its Lua binding quote_big_ints.
 *
 * Properties checked on every input:
 *  - the sizing pass (out == NULL) and the writing pass agree, and the result
 *    is never shorter than the input (ASan checks the writes stay inside
 *    exactly that many bytes);
 *  - the output is the input with '"' bytes inserted, in pairs;
 *  - the pass is idempotent: running it over its own output changes nothing;
 *  - input that is valid JSON (a small RFC 8259 checker below) gives output
 *    that is valid JSON too, and input that is not gives output that is not
 *    (a big integer used as an object key is never quoted: review C12);
 *  - ig_json_prepare (the fused pass) agrees with ig_utf8_valid and with a
 *    NUL search on the verdict, and gives the same bytes when it accepts;
 *  - the Lua bindings return the same bytes. */
#include "fuzz_common.h"

#define JSON_MAX_DEPTH 200

typedef struct {
    const unsigned char *s;
    size_t n, i;
    int depth;
} json_parser;

static void json_ws(json_parser *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int json_lit(json_parser *p, const char *lit)
{
    size_t k = strlen(lit);
    if (p->n - p->i < k || memcmp(p->s + p->i, lit, k) != 0) return 0;
    p->i += k;
    return 1;
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int json_string(json_parser *p)
{
    if (p->i >= p->n || p->s[p->i] != '"') return 0;
    p->i++;
    while (p->i < p->n) {
        unsigned char c = p->s[p->i++];
        if (c == '"') return 1;
        if (c < 0x20) return 0;
        if (c == '\\') {
            if (p->i >= p->n) return 0;
            c = p->s[p->i++];
            if (c == 'u') {
                int k;
                for (k = 0; k < 4; k++)
                    if (p->i >= p->n || !is_hex(p->s[p->i++])) return 0;
            } else if (!strchr("\"\\/bfnrt", c) || c == 0) {
                return 0;
            }
        }
    }
    return 0;
}

static int json_digits(json_parser *p)
{
    size_t start = p->i;
    while (p->i < p->n && is_digit(p->s[p->i])) p->i++;
    return p->i > start;
}

static int json_number(json_parser *p)
{
    if (p->i < p->n && p->s[p->i] == '-') p->i++;
    if (p->i < p->n && p->s[p->i] == '0') {
        p->i++;
    } else if (!json_digits(p)) {
        return 0;
    }
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        if (!json_digits(p)) return 0;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        if (!json_digits(p)) return 0;
    }
    return 1;
}

static int json_value(json_parser *p);

static int json_container(json_parser *p, unsigned char close, int is_object)
{
    if (++p->depth > JSON_MAX_DEPTH) return 0;
    p->i++; /* the opening bracket */
    json_ws(p);
    if (p->i < p->n && p->s[p->i] == close) {
        p->i++;
        p->depth--;
        return 1;
    }
    for (;;) {
        if (is_object) {
            json_ws(p);
            if (!json_string(p)) return 0;
            json_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') return 0;
            p->i++;
        }
        if (!json_value(p)) return 0;
        if (p->i >= p->n) return 0;
        if (p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->s[p->i] != close) return 0;
        p->i++;
        p->depth--;
        return 1;
    }
}

static int json_value(json_parser *p)
{
    int ok;
    json_ws(p);
    if (p->i >= p->n) return 0;
    switch (p->s[p->i]) {
    case '{': ok = json_container(p, '}', 1); break;
    case '[': ok = json_container(p, ']', 0); break;
    case '"': ok = json_string(p); break;
    case 't': ok = json_lit(p, "true"); break;
    case 'f': ok = json_lit(p, "false"); break;
    case 'n': ok = json_lit(p, "null"); break;
    default: ok = json_number(p); break;
    }
    if (ok) json_ws(p);
    return ok;
}

static int json_valid(const void *s, size_t n)
{
    json_parser p;
    p.s = (const unsigned char *)s;
    p.n = n;
    p.i = 0;
    p.depth = 0;
    return json_value(&p) && p.i == n;
}

/* Is out exactly in with some '"' bytes inserted (an even number of them)? */
static int is_input_plus_quotes(const char *in, size_t n, const char *out, size_t m)
{
    size_t i = 0, j = 0, added = 0;
    while (j < m) {
        if (i < n && out[j] == in[i]) {
            i++;
        } else if (out[j] == '"') {
            added++;
        } else {
            return 0;
        }
        j++;
    }
    return i == n && added % 2 == 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char good[] = "{\"user_id\":17841405793187219,\"a\":[1,-2.5e3,\"\\u00e9\",true,null]}";
    static const char bad[] = "{\"a\":01}";
    (void)argc;
    (void)argv;
    /* the checker itself must accept what the pre-pass is for */
    CHECK(json_valid(good, sizeof good - 1));
    CHECK(!json_valid(bad, sizeof bad - 1));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    size_t n, n2;
    char *out;
    lua_State *L;

    n = ig_quote_big_ints(in, size, NULL);
    CHECK(n >= size);
    CHECK((n - size) % 2 == 0);
    out = (char *)fuzz_alloc(n);
    n2 = ig_quote_big_ints(in, size, out);
    CHECK(n2 == n);
    CHECK(is_input_plus_quotes(in, size, out, n));

    /* idempotent: everything big is inside a string now */
    CHECK(ig_quote_big_ints(out, n, NULL) == n);

    CHECK(json_valid(in, size) == json_valid(out, n));

    {
        size_t pn = 0;
        int status = ig_json_prepare(in, size, NULL, &pn);
        int utf8 = ig_utf8_valid(data, size);
        int nul = memchr(in, '\0', size) != NULL;
        CHECK((status == IG_JSON_OK) == (utf8 && !nul));
        if (!utf8 && !nul) CHECK(status == IG_JSON_BAD_UTF8);
        if (utf8 && nul) CHECK(status == IG_JSON_NUL);
        if (status == IG_JSON_OK) {
            char *pout = (char *)fuzz_alloc(pn);
            size_t pn2 = 0;
            CHECK(pn == n);
            CHECK(ig_json_prepare(in, size, pout, &pn2) == IG_JSON_OK && pn2 == pn);
            CHECK(memcmp(pout, out, n) == 0);
            free(pout);
        }
    }

    L = fuzz_state(ig_open_exactid);
    fuzz_getfn(L, "quote_big_ints");
    lua_pushlstring(L, in, size);
    fuzz_call(L, 1, 1);
    CHECK(fuzz_streq(L, -1, out, n));
    lua_close(L);

    free(out);
    return 0;
}
