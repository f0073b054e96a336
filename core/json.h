/* json.h - the JSON codec of ae.json, for other bindings (nats.c, http...).
 *
 * A streaming encoder/decoder working directly between JSON text and Lua
 * values (no intermediate tree), with the semantics documented in
 * docs/api/json.md:
 *   - null is the light userdata ae_json_null (json.null in Lua), everywhere;
 *   - decoded arrays/objects carry a shared metatable per kind, so [] and {}
 *     survive a round trip; the encoder honours those marks;
 *   - integer literals that fit int64 decode to Lua integers, exactly;
 *   - nesting is limited to AE_JSON_MAX_DEPTH both ways.
 *
 * Every function here must be called on the thread that owns L (the loop
 * thread) and never raises a Lua error: failures are reported through the
 * return value and an "ae.json: ..." message in err (always NUL-terminated,
 * truncated to errlen). errlen of AE_JSON_ERRLEN is always enough.
 */
#ifndef AE_JSON_H
#define AE_JSON_H

#include <lua.h>
#include <stddef.h>

#define AE_JSON_MAX_DEPTH 1000
#define AE_JSON_ERRLEN 256

/* encoder flags */
enum {
    AE_JSON_ASCII = 1,                /* non-ASCII characters as \uXXXX (surrogate pairs above U+FFFF) */
    AE_JSON_REPLACE_INVALID_UTF8 = 2, /* invalid UTF-8 in a string becomes U+FFFD instead of an error */
};

/* A growable byte buffer. Zero-initialise it; free data with ae_json_buf_free. */
typedef struct {
    char *data;
    size_t len, cap;
} ae_json_buf;

void ae_json_buf_free(ae_json_buf *b);

/* Append the compact JSON text of the value at stack index idx to out.
 * Returns 0, or -1 with err set (out->len is then unchanged; out->data may
 * have grown). Does not change the stack. out->data is NUL-terminated on
 * success. */
int ae_json_encode_into(lua_State *L, int idx, unsigned flags, ae_json_buf *out, char *err, size_t errlen);

/* The compact JSON text of the value at idx as a malloc'd NUL-terminated
 * string (free() it), its length in *len. NULL with err set on failure. */
char *ae_json_encode(lua_State *L, int idx, unsigned flags, size_t *len, char *err, size_t errlen);

/* Decode text[0..len) and push the value on L. Returns 0 (one value pushed)
 * or -1 with err set, e.g. "ae.json: expected ':' at line 1 column 7 (byte 7)",
 * and nothing pushed. Out of memory in L is reported the same way. */
int ae_json_decode(lua_State *L, const char *text, size_t len, char *err, size_t errlen);

/* json.null */
void ae_json_push_null(lua_State *L);
int ae_json_is_null(lua_State *L, int idx);

/* Mark the table at idx as a JSON array / object (sets the shared
 * metatable, replacing any ae.json mark). */
void ae_json_mark_array(lua_State *L, int idx);
void ae_json_mark_object(lua_State *L, int idx);

#endif
