/* instagram.core: shared declarations. The pure C functions below use no
 * Lua API, so fuzz targets can link them without a Lua state. */
#ifndef IG_H
#define IG_H

#include <stddef.h>

#include <lua.h>
#include <lauxlib.h>
#include "compat.h"

int luaopen_instagram_core(lua_State *L);

void ig_open_url(lua_State *L);
void ig_open_exactid(lua_State *L);
void ig_open_crypto(lua_State *L);
void ig_open_signed(lua_State *L);
void ig_open_session(lua_State *L);
void ig_open_utf8(lua_State *L);
void ig_open_webhook(lua_State *L);
void ig_open_fileio(lua_State *L);

/* url.c. Decodes len bytes of in into out (room for len bytes is enough);
 * malformed %-sequences are copied. Returns the decoded length. */
size_t ig_url_decode(const char *in, size_t len, char *out, int plus_is_space);

/* exactid.c. ig_json_prepare scans JSON text once: it checks the UTF-8
 * (RFC 3629, as ig_utf8_valid) and rejects NUL bytes (lua-cjson would stop
 * there), and writes to out (if not NULL) the text with every integer literal
 * of IG_BIG_INT_DIGITS or more digits in value position (at the start or after
 * ':', '[' or ',', and not followed by ':') wrapped in quotes. *outlen gets the
 * output length (len when nothing is quoted); call with out == NULL first to
 * size the buffer. Returns IG_JSON_OK, or IG_JSON_BAD_UTF8 / IG_JSON_NUL with
 * the output complete up to the offending byte and the rest copied as it is.
 * ig_quote_big_ints is the same pass that ignores the status. */
#define IG_BIG_INT_DIGITS 16
#define IG_JSON_OK 0
#define IG_JSON_BAD_UTF8 1
#define IG_JSON_NUL 2
int ig_json_prepare(const char *in, size_t len, char *out, size_t *outlen);
/* The table at idx, in place: normalize_ids (exactid.c). */
void ig_normalize_ids(lua_State *L, int idx);
size_t ig_quote_big_ints(const char *in, size_t len, char *out);

/* utf8.c. 1 if s is well-formed UTF-8 (RFC 3629), else 0. */
int ig_utf8_valid(const unsigned char *s, size_t len);
/* Length of the well-formed UTF-8 sequence of 2-4 bytes at s[i] (s[i] >= 0x80), or 0. */
size_t ig_utf8_seq(const unsigned char *s, size_t i, size_t len);

/* crypto.c */
#define IG_SHA256_LEN 32
/* Length of the unpadded base64url text for n input bytes. */
size_t ig_b64url_encoded_len(size_t n);
/* Writes ig_b64url_encoded_len(len) chars (no NUL). */
void ig_b64url_encode(const unsigned char *in, size_t len, char *out);
/* Strict decode: alphabet A-Z a-z 0-9 - _, optional correct '=' padding,
 * zero unused bits. out needs room for (len / 4 + 1) * 3 bytes.
 * Returns 0 and sets *outlen, or -1. */
int ig_b64url_decode(const char *in, size_t len, unsigned char *out, size_t *outlen);
/* HMAC-SHA256 via OpenSSL. Returns 0 on success, -1 on failure. */
int ig_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                   unsigned char out[IG_SHA256_LEN]);

#endif
