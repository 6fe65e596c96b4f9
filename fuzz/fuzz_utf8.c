/* libFuzzer target: UTF-8 validation (utf8.c): ig_utf8_valid.
 *
 * Properties checked on every input:
 *  - the validator agrees with a reference written differently: decode each
 *    sequence to its code point, then reject overlong forms, surrogates and
 *    values above U+10FFFF by value rather than by lead-byte tables;
 *  - a valid input stays valid when cut at any sequence boundary, and an
 *    input cut inside a multi-byte sequence is invalid. */
#include "fuzz_common.h"

static size_t sequence_length(unsigned char c)
{
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 0;
}

/* The reference rule: decode, then judge the code point. */
static int reference_valid(const unsigned char *s, size_t n)
{
    static const unsigned long MIN_FOR_LENGTH[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    size_t i = 0, k, len;
    unsigned long cp;
    while (i < n) {
        len = sequence_length(s[i]);
        if (len == 0 || i + len > n) return 0;
        cp = len == 1 ? s[i] : (unsigned long)(s[i] & (0x7F >> len));
        for (k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (unsigned long)(s[i + k] & 0x3F);
        }
        if (cp < MIN_FOR_LENGTH[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int valid = ig_utf8_valid(data, size);
    size_t i;
    CHECK(valid == reference_valid(data, size));
    if (valid) {
        for (i = 0; i < size; i++) {
            int boundary = (data[i] & 0xC0) != 0x80;
            CHECK(ig_utf8_valid(data, i) == boundary);
        }
    }
    return 0;
}
