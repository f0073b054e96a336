/* json.c - ae.json: JSON encode/decode straight between text and Lua values.
 *
 * A hand-written streaming codec, no intermediate tree (see docs/api/json.md,
 * "why not a cJSON tree": integers beyond 2^53 must stay exact). The C API
 * for other bindings is in json.h; the Lua module ae.json is at the bottom.
 *
 * Semantics (the contract of docs/api/json.md):
 *  - json.null (a light userdata) <-> null, also at top level and in arrays;
 *  - decoded arrays/objects get a shared metatable per kind ("ae.json.array",
 *    "ae.json.object"), so [] and {} round-trip; json.array/json.object set
 *    the same marks on script tables;
 *  - unmarked tables: keys 1..n (no holes, n >= 1) -> array; string keys ->
 *    object; only integer keys -> object with the integers as strings;
 *    integer and string keys mixed -> error; an empty table -> {};
 *  - integers that fit int64 decode exactly as Lua integers, floats encode in
 *    their shortest round-trip form, integral floats keep a ".0";
 *  - strings must be valid UTF-8 (decode: always; encode: error, or U+FFFD
 *    with invalid_utf8 = "replace"); \u escapes incl. surrogate pairs, lone
 *    surrogates decode to U+FFFD; ascii = true escapes non-ASCII like Python;
 *  - nesting is limited to AE_JSON_MAX_DEPTH in both directions.
 *
 * Neither direction calls Lua code (raw accesses only, no metamethods),
 * except the callbacks of json.decode_each and json.select, called between
 * two array elements (when no string is being built in the scratch buffer,
 * so a callback may decode or encode itself). Errors inside the codec use longjmp to the entry
 * point of each direction; the only memory held across them is the
 * thread-local scratch/output buffers, which are reused, never leaked.
 */
#define _POSIX_C_SOURCE 200809L
#include "json.h"
#include "engine.h"
#include "log.h"

#include <lauxlib.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARRAY_MT "ae.json.array"
#define OBJECT_MT "ae.json.object"
#define RAW_MT "ae.json.raw" /* json.raw: {text = "<JSON text>"}, written verbatim */

/* json.null is the address of this byte, as a light userdata. */
static char null_sentinel;
#define JSON_NULL ((void *)&null_sentinel)

/* Buffers kept between calls (only the loop thread runs Lua; _Thread_local
 * keeps C tests or other threads from sharing them). Trimmed after big use. */
static _Thread_local ae_json_buf scratch; /* decoder: strings with escapes */
static _Thread_local ae_json_buf outbuf;  /* json.encode output */
#define KEEP_BUFFER (1u << 20)

/* ------------------------------------------------------------------ buffer */

void ae_json_buf_free(ae_json_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Ensure room for n more bytes (+1 for a final NUL). 0 or -1 (out of memory). */
static int buf_grow(ae_json_buf *b, size_t n) {
    if (n > SIZE_MAX / 2 - b->len) return -1;
    size_t need = b->len + n + 1, cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

static inline int buf_reserve(ae_json_buf *b, size_t n) { return b->cap - b->len > n ? 0 : buf_grow(b, n); }

static void buf_trim(ae_json_buf *b) {
    if (b->cap > KEEP_BUFFER) ae_json_buf_free(b);
    b->len = 0;
}

/* -------------------------------------------------------------------- UTF-8 */

/* Length of the valid UTF-8 sequence at s (s < e, *s >= 0x80), or 0. Strict:
 * no overlongs, no surrogates, nothing above U+10FFFF. *cp gets the code point. */
static size_t utf8_seq(const unsigned char *s, const unsigned char *e, uint32_t *cp) {
    unsigned c = s[0];
    size_t n = (size_t)(e - s);
    if (c >= 0xC2 && c <= 0xDF) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && s[1] > 0x9F) return 0; /* surrogate */
        *cp = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
        if (c == 0xF4 && s[1] > 0x8F) return 0; /* > U+10FFFF */
        *cp = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
        return 4;
    }
    return 0;
}

static size_t utf8_put(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ------------------------------------------------------------------ marks */

/* Push the shared metatable of a kind, creating it on first use. */
static void push_mt(lua_State *L, const char *name) {
    if (luaL_getmetatable(L, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        luaL_newmetatable(L, name); /* sets __name */
    }
}

void ae_json_push_null(lua_State *L) { lua_pushlightuserdata(L, JSON_NULL); }

int ae_json_is_null(lua_State *L, int idx) {
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == JSON_NULL;
}

void ae_json_mark_array(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    push_mt(L, ARRAY_MT);
    lua_setmetatable(L, idx);
}

void ae_json_mark_object(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    push_mt(L, OBJECT_MT);
    lua_setmetatable(L, idx);
}

/* ================================================================ encoder */

enum { F_INDEX, F_SKEY, F_IKEY };

typedef struct {
    const void *tbl;
    int kind; /* F_INDEX: index; F_SKEY: key/klen; F_IKEY: ikey */
    lua_Integer index;
    const char *key;
    size_t klen;
} enc_frame;

typedef struct {
    lua_State *L;
    ae_json_buf *b;
    unsigned flags;
    const void *array_mt, *object_mt, *raw_mt;
    int depth;
    jmp_buf jb;
    char *err;
    size_t errlen;
    enc_frame frames[AE_JSON_MAX_DEPTH + 1];
} enc;

static int is_ident(const char *s, size_t n) {
    if (n == 0 || n > 40 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_')) return 0;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return 0;
    }
    return 1;
}

/* Raise an encoder error: the message, then " at <path>" of the value being
 * encoded (Lua syntax, 1-based indices), unless it is the top-level value. */
_Noreturn static void enc_fail(enc *e, const char *fmt, ...) AE_PRINTF(2, 3);
_Noreturn static void enc_fail(enc *e, const char *fmt, ...) {
    char msg[160], path[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t pl = 0;
    path[0] = 0;
    for (int i = 0; i < e->depth && pl < sizeof path - 1; i++) {
        const enc_frame *f = &e->frames[i];
        int n;
        if (f->kind == F_INDEX)
            n = snprintf(path + pl, sizeof path - pl, "[%lld]", (long long)f->index);
        else if (f->kind == F_IKEY)
            n = snprintf(path + pl, sizeof path - pl, "[\"%lld\"]", (long long)f->index);
        else if (is_ident(f->key, f->klen))
            n = snprintf(path + pl, sizeof path - pl, "%s%.*s", i ? "." : "", (int)f->klen, f->key);
        else
            n = snprintf(path + pl, sizeof path - pl, "[\"%.*s\"]", (int)(f->klen > 24 ? 24 : f->klen), f->key);
        if (n < 0) break;
        pl += (size_t)n;
    }
    if (pl >= sizeof path - 1) strcpy(path + sizeof path - 4, "...");
    if (path[0])
        snprintf(e->err, e->errlen, "ae.json: %s at %s", msg, path);
    else
        snprintf(e->err, e->errlen, "ae.json: %s", msg);
    longjmp(e->jb, 1);
}

static inline void enc_reserve(enc *e, size_t n) {
    if (buf_reserve(e->b, n)) enc_fail(e, "out of memory");
}

static inline void enc_raw(enc *e, const char *s, size_t n) {
    enc_reserve(e, n);
    memcpy(e->b->data + e->b->len, s, n);
    e->b->len += n;
}

static inline void enc_char(enc *e, char c) {
    enc_reserve(e, 1);
    e->b->data[e->b->len++] = c;
}

/* decimal digits of v into the end of buf[24]; returns the start */
static char *fmt_int(char *end, lua_Integer v) {
    uint64_t u = v < 0 ? 0u - (uint64_t)v : (uint64_t)v;
    char *p = end;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--p = '-';
    return p;
}

static void enc_integer(enc *e, lua_Integer v) {
    char tmp[24], *end = tmp + sizeof tmp;
    char *p = fmt_int(end, v);
    enc_raw(e, p, (size_t)(end - p));
}

/* Shortest of %.15g/%.16g/%.17g that reads back as d; integral values keep
 * a ".0" so they decode as floats again (Python's repr does the same). */
static void enc_float(enc *e, double d) {
    char tmp[40];
    if (!isfinite(d)) enc_fail(e, "cannot encode %s (not valid JSON)", isnan(d) ? "NaN" : "an infinite number");
    if (d == floor(d) && fabs(d) < 1e15) {
        char *end = tmp + 24, *p = fmt_int(end, (lua_Integer)d);
        if (d == 0 && signbit(d)) *--p = '-';
        enc_raw(e, p, (size_t)(end - p));
        enc_raw(e, ".0", 2);
        return;
    }
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (prec == 17 || strtod(tmp, NULL) == d) break;
    }
    enc_raw(e, tmp, (size_t)n);
    if (!memchr(tmp, '.', (size_t)n) && !memchr(tmp, 'e', (size_t)n)) enc_raw(e, ".0", 2);
}

/* 0 = copy as is; 1 = short escape; 2 = \u00XX; 3 = non-ASCII (validate) */
static unsigned char esc_raw[256], esc_ascii[256];
static const char hexd[] = "0123456789abcdef";

static void init_tables(void);

static inline char *put_u16(char *o, unsigned v) {
    o[0] = '\\';
    o[1] = 'u';
    o[2] = hexd[(v >> 12) & 15];
    o[3] = hexd[(v >> 8) & 15];
    o[4] = hexd[(v >> 4) & 15];
    o[5] = hexd[v & 15];
    return o + 6;
}

static void enc_string(enc *e, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str, *end = s + n;
    const unsigned char *cls = (e->flags & AE_JSON_ASCII) ? esc_ascii : esc_raw;
    ae_json_buf *b = e->b;
    enc_reserve(e, n + 2);
    b->data[b->len++] = '"';
    while (s < end) {
        const unsigned char *run = s;
        while (s < end && !cls[*s])
            s++;
        if (s > run) {
            memcpy(b->data + b->len, run, (size_t)(s - run));
            b->len += (size_t)(s - run);
        }
        if (s == end) break;
        /* an escape: up to 12 bytes for at most 4 input bytes, plus the rest */
        enc_reserve(e, 13 + (size_t)(end - s));
        char *o = b->data + b->len;
        unsigned c = *s;
        switch (cls[c]) {
        case 1:
            o[0] = '\\';
            o[1] = c == '"'    ? '"'
                   : c == '\\' ? '\\'
                   : c == '\b' ? 'b'
                   : c == '\f' ? 'f'
                   : c == '\n' ? 'n'
                   : c == '\r' ? 'r'
                               : 't';
            o += 2;
            s++;
            break;
        case 2:
            o = put_u16(o, c);
            s++;
            break;
        default: {
            uint32_t cp = 0;
            size_t k = utf8_seq(s, end, &cp);
            if (!k) {
                if (!(e->flags & AE_JSON_REPLACE_INVALID_UTF8))
                    enc_fail(e,
                             "invalid UTF-8 in string (byte %zu of %zu); use invalid_utf8 = \"replace\" to substitute "
                             "U+FFFD",
                             (size_t)(s - (const unsigned char *)str) + 1, n);
                cp = 0xFFFD;
                k = 1;
                if (e->flags & AE_JSON_ASCII)
                    o = put_u16(o, cp);
                else
                    o += utf8_put(o, cp);
            } else if (e->flags & AE_JSON_ASCII) {
                if (cp >= 0x10000) {
                    cp -= 0x10000;
                    o = put_u16(o, 0xD800 + (cp >> 10));
                    o = put_u16(o, 0xDC00 + (cp & 0x3FF));
                } else {
                    o = put_u16(o, cp);
                }
            } else {
                memcpy(o, s, k);
                o += k;
            }
            s += k;
        }
        }
        b->len = (size_t)(o - b->data);
    }
    b->data[b->len++] = '"';
}

static void enc_value(enc *e, int idx);

/* A json.raw value: its text verbatim. With AE_JSON_ASCII, bytes >= 0x7F
 * (which valid JSON has only inside strings) become \u escapes as enc_string
 * writes them, so a raw part of a message is as ASCII as the rest. */
static void enc_raw_value(enc *e, int idx) {
    lua_State *L = e->L;
    lua_pushliteral(L, "text");
    int t = lua_rawget(L, idx);
    if (t != LUA_TSTRING) {
        lua_pop(L, 1);
        enc_fail(e, "cannot encode a json.raw value whose text is a %s (must be a string)", lua_typename(L, t));
    }
    size_t n;
    const char *str = lua_tolstring(L, -1, &n);
    if (!(e->flags & AE_JSON_ASCII)) {
        enc_raw(e, str, n);
        lua_pop(L, 1);
        return;
    }
    const unsigned char *s = (const unsigned char *)str, *end = s + n;
    ae_json_buf *b = e->b;
    enc_reserve(e, n);
    while (s < end) {
        const unsigned char *run = s;
        /* 8 bytes at a time while none is >= 0x7F (b + 1 carries only out of 0xFF, already caught by b) */
        for (uint64_t w; end - s >= 8; s += 8) {
            memcpy(&w, s, 8);
            if ((w | (w + 0x0101010101010101u)) & 0x8080808080808080u) break;
        }
        while (s < end && *s < 0x7F)
            s++;
        if (s > run) {
            memcpy(b->data + b->len, run, (size_t)(s - run));
            b->len += (size_t)(s - run);
        }
        if (s == end) break;
        enc_reserve(e, 12 + (size_t)(end - s));
        char *o = b->data + b->len;
        uint32_t cp = 0x7F;
        size_t k = *s == 0x7F ? 1 : utf8_seq(s, end, &cp);
        if (!k) {
            if (!(e->flags & AE_JSON_REPLACE_INVALID_UTF8))
                enc_fail(e, "invalid UTF-8 in a json.raw text (byte %zu of %zu)",
                         (size_t)(s - (const unsigned char *)str) + 1, n);
            cp = 0xFFFD;
            k = 1;
        }
        if (cp >= 0x10000) {
            cp -= 0x10000;
            o = put_u16(o, 0xD800 + (cp >> 10));
            o = put_u16(o, 0xDC00 + (cp & 0x3FF));
        } else {
            o = put_u16(o, cp);
        }
        s += k;
        b->len = (size_t)(o - b->data);
    }
    lua_pop(L, 1);
}

/* Key scan of a table: counts positive integer keys, their max, and whether
 * string / non-positive integer keys exist. Raises on other key types, and
 * on mixed integer/string keys when mixed_is_error. */
typedef struct {
    lua_Integer count, max;
    int has_str, has_nonpos;
} keyscan;

_Noreturn static void key_type_error(enc *e, lua_State *L, int kidx) {
    if (lua_type(L, kidx) == LUA_TNUMBER)
        enc_fail(e, "cannot encode table key %.14g (a float; JSON object keys are strings)", lua_tonumber(L, kidx));
    enc_fail(e, "cannot encode a table key of type %s (JSON object keys are strings)", luaL_typename(L, kidx));
}

static void scan_keys(enc *e, int idx, keyscan *ks, int mixed_is_error) {
    lua_State *L = e->L;
    memset(ks, 0, sizeof *ks);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_isinteger(L, -1)) {
            lua_Integer k = lua_tointeger(L, -1);
            if (k > 0) {
                ks->count++;
                if (k > ks->max) ks->max = k;
            } else {
                ks->has_nonpos = 1;
            }
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            ks->has_str = 1;
        } else {
            key_type_error(e, L, lua_gettop(L));
        }
        if (mixed_is_error && ks->has_str && (ks->count || ks->has_nonpos))
            enc_fail(e, "cannot encode a table with both integer and string keys (mark it with json.object to encode "
                        "the integer keys as strings)");
    }
}

static void enc_array(enc *e, int idx, lua_Integer n) {
    lua_State *L = e->L;
    enc_frame *f = &e->frames[e->depth];
    f->kind = F_INDEX;
    enc_char(e, '[');
    e->depth++;
    for (lua_Integer i = 1; i <= n; i++) {
        if (i > 1) enc_char(e, ',');
        f->index = i;
        lua_rawgeti(L, idx, i);
        enc_value(e, lua_gettop(L));
        lua_pop(L, 1);
    }
    e->depth--;
    enc_char(e, ']');
}

/* int_keys: 0 = only string keys allowed (an integer key means a mixed
 * table), 1 = integer keys become strings */
static void enc_object(enc *e, int idx, int int_keys) {
    lua_State *L = e->L;
    enc_frame *f = &e->frames[e->depth];
    int first = 1;
    enc_char(e, '{');
    e->depth++;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kt = lua_type(L, -2);
        if (!first) enc_char(e, ',');
        first = 0;
        if (kt == LUA_TSTRING) {
            size_t kl;
            const char *k = lua_tolstring(L, -2, &kl);
            f->kind = F_SKEY;
            f->key = k;
            f->klen = kl;
            enc_string(e, k, kl);
        } else if (lua_isinteger(L, -2)) {
            f->kind = F_IKEY;
            f->index = lua_tointeger(L, -2);
            if (!int_keys) {
                e->depth--;
                enc_fail(e, "cannot encode a table with both integer and string keys (mark it with json.object to "
                            "encode the integer keys as strings)");
            }
            char tmp[24], *end = tmp + sizeof tmp, *p = fmt_int(end, f->index);
            enc_char(e, '"');
            enc_raw(e, p, (size_t)(end - p));
            enc_char(e, '"');
        } else {
            e->depth--;
            key_type_error(e, L, lua_gettop(L) - 1);
        }
        enc_char(e, ':');
        enc_value(e, lua_gettop(L));
        lua_pop(L, 1);
    }
    e->depth--;
    enc_char(e, '}');
}

static void enc_table(enc *e, int idx) {
    lua_State *L = e->L;
    const void *p = lua_topointer(L, idx);
    if (e->depth >= AE_JSON_MAX_DEPTH) enc_fail(e, "nesting deeper than %d levels", AE_JSON_MAX_DEPTH);
    for (int i = 0; i < e->depth; i++)
        if (e->frames[i].tbl == p) enc_fail(e, "cannot encode a table that contains itself (cycle)");
    if (!lua_checkstack(L, 4)) enc_fail(e, "Lua stack overflow");
    e->frames[e->depth].tbl = p;
    const void *mt = NULL;
    if (lua_getmetatable(L, idx)) {
        mt = lua_topointer(L, -1);
        lua_pop(L, 1);
    }
    if (mt && mt == e->raw_mt) {
        enc_raw_value(e, idx);
        return;
    }
    keyscan ks;
    if (mt == e->array_mt) {
        scan_keys(e, idx, &ks, 0);
        if (ks.has_str || ks.has_nonpos)
            enc_fail(e, "table marked as a JSON array has a key that is not a positive integer");
        if (ks.max > 2 * ks.count + 16)
            enc_fail(e, "table marked as a JSON array is too sparse (largest index %lld, %lld elements)",
                     (long long)ks.max, (long long)ks.count);
        enc_array(e, idx, ks.max);
        return;
    }
    if (mt == e->object_mt) {
        enc_object(e, idx, 1);
        return;
    }
    /* unmarked: the first key decides how much we must look at */
    lua_pushnil(L);
    if (!lua_next(L, idx)) {
        enc_raw(e, "{}", 2);
        return;
    }
    int first_is_string = lua_type(L, -2) == LUA_TSTRING;
    lua_pop(L, 2);
    if (first_is_string) {
        enc_object(e, idx, 0);
        return;
    }
    scan_keys(e, idx, &ks, 1);
    if (!ks.has_nonpos && ks.count == ks.max)
        enc_array(e, idx, ks.max);
    else
        enc_object(e, idx, 1);
}

static void enc_value(enc *e, int idx) {
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: enc_raw(e, "null", 4); break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            enc_raw(e, "true", 4);
        else
            enc_raw(e, "false", 5);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            enc_integer(e, lua_tointeger(L, idx));
        else
            enc_float(e, lua_tonumber(L, idx));
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        enc_string(e, s, n);
        break;
    }
    case LUA_TTABLE: enc_table(e, idx); break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == JSON_NULL) {
            enc_raw(e, "null", 4);
            break;
        }
        /* fallthrough */
    default: enc_fail(e, "cannot encode a %s", luaL_typename(L, idx));
    }
}

/* the setjmp lives here, not in the function owning e (see longjmp rules) */
static int enc_run(enc *e, int idx) {
    if (setjmp(e->jb)) return -1;
    enc_value(e, idx);
    return 0;
}

int ae_json_encode_into(lua_State *L, int idx, unsigned flags, ae_json_buf *out, char *err, size_t errlen) {
    static _Thread_local enc *cached; /* the frame array is 40 KB: keep it off the C stack */
    char dummy[AE_JSON_ERRLEN];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    init_tables();
    if (!cached && !(cached = malloc(sizeof *cached))) {
        snprintf(err, errlen, "ae.json: out of memory");
        return -1;
    }
    enc *e = cached;
    cached = NULL; /* in use (re-entry cannot happen, but stay correct if it did) */
    idx = lua_absindex(L, idx);
    int top = lua_gettop(L);
    size_t len0 = out->len;
    e->L = L;
    e->b = out;
    e->flags = flags;
    e->depth = 0;
    e->err = err;
    e->errlen = errlen;
    e->array_mt = e->object_mt = e->raw_mt = NULL;
    if (lua_checkstack(L, 3)) {
        if (luaL_getmetatable(L, ARRAY_MT) == LUA_TTABLE) e->array_mt = lua_topointer(L, -1);
        if (luaL_getmetatable(L, OBJECT_MT) == LUA_TTABLE) e->object_mt = lua_topointer(L, -1);
        if (luaL_getmetatable(L, RAW_MT) == LUA_TTABLE) e->raw_mt = lua_topointer(L, -1);
        lua_pop(L, 3);
    }
    int rc = enc_run(e, idx);
    lua_settop(L, top);
    if (rc == 0 && buf_reserve(out, 1) == 0) {
        out->data[out->len] = 0;
    } else {
        if (rc == 0) snprintf(err, errlen, "ae.json: out of memory");
        out->len = len0;
        rc = -1;
    }
    if (cached)
        free(e);
    else
        cached = e;
    return rc;
}

char *ae_json_encode(lua_State *L, int idx, unsigned flags, size_t *len, char *err, size_t errlen) {
    ae_json_buf b = {0};
    if (ae_json_encode_into(L, idx, flags, &b, err, errlen)) {
        ae_json_buf_free(&b);
        return NULL;
    }
    if (len) *len = b.len;
    return b.data;
}

/* ================================================================ decoder */

typedef struct {
    lua_State *L;
    const char *start, *p, *end;
    int depth;
    int array_mt, object_mt; /* stack slots of the metatables */
    jmp_buf jb;
    char *err;
    size_t errlen;
    /* json.decode_each: the top-level member whose array goes to a callback */
    const char *each_key;
    size_t each_len;
    int each_fn;        /* stack slot of the callback */
    int each_failed;    /* the callback raised: its error is in the registry */
    lua_Integer each_n; /* elements given to the callback; -1: the member was not a list */
    /* validate only (json.with_member): same grammar and errors, nothing is
     * pushed; dec_string leaves the decoded string in sval/slen instead */
    int validate;
    const char *sval;
    size_t slen;
    const char *member_key; /* with_member: a key the elements must not have */
    size_t member_len;
    lua_Integer elem; /* with_member: 1-based index of the element being read */
} dec;

#define EACH_ERROR "ae.json.each_error"

/* A decoder over text[0, len) that writes its error message to err. */
static void dec_init(dec *d, lua_State *L, const char *text, size_t len, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    d->L = L;
    d->start = d->p = text;
    d->end = text + len;
    d->err = err;
    d->errlen = errlen;
}

/* After a run: the scratch buffer a big document grew is not kept. */
static void scratch_release(void) {
    if (scratch.cap > KEEP_BUFFER) buf_trim(&scratch);
}

_Noreturn static void dec_fail(dec *d, const char *at, const char *fmt, ...) AE_PRINTF(3, 4);
_Noreturn static void dec_fail(dec *d, const char *at, const char *fmt, ...) {
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t line = 1, col = 1;
    for (const char *q = d->start; q < at; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)*q & 0xC0) != 0x80) {
            col++; /* columns count characters, not UTF-8 continuation bytes */
        }
    }
    snprintf(d->err, d->errlen, "ae.json: %s at line %zu column %zu (byte %zu)", msg, line, col,
             (size_t)(at - d->start) + 1);
    longjmp(d->jb, 1);
}

/* "'x'", "end of input" or "byte 0xNN" for the character at p */
static const char *got(dec *d, const char *p, char *tmp) {
    if (p >= d->end) return "end of input";
    unsigned char c = (unsigned char)*p;
    if (c >= 0x21 && c < 0x7F)
        snprintf(tmp, 16, "'%c'", c);
    else
        snprintf(tmp, 16, "byte 0x%02X", c);
    return tmp;
}

static inline const char *skip_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* 1 = plain string byte (0x20..0x7F except '"' and '\\') */
static unsigned char str_plain[256];
static signed char hexval[256];

static void init_tables(void) {
    static int done;
    if (done) return;
    for (int c = 0; c < 256; c++) {
        str_plain[c] = c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
        hexval[c] = (signed char)(c >= '0' && c <= '9'   ? c - '0'
                                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                         : -1);
        unsigned char cls = 0;
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
            cls = 1;
        else if (c < 0x20)
            cls = 2;
        else if (c >= 0x80)
            cls = 3;
        esc_raw[c] = cls;
        esc_ascii[c] = c == 0x7F ? 2 : cls; /* Python's ensure_ascii escapes DEL too */
    }
    done = 1;
}

static int hex4(const char *p, const char *e, unsigned *v) {
    if (e - p < 4) return 0;
    int a = hexval[(unsigned char)p[0]], b = hexval[(unsigned char)p[1]], c = hexval[(unsigned char)p[2]],
        x = hexval[(unsigned char)p[3]];
    if ((a | b | c | x) < 0) return 0;
    *v = (unsigned)(a << 12 | b << 8 | c << 4 | x);
    return 1;
}

/* d->p at the opening quote; pushes the string, leaves d->p after it */
static void dec_string(dec *d) {
    const char *open = d->p, *s = open + 1, *q = s, *e = d->end;
    for (;;) {
        while (q < e && str_plain[(unsigned char)*q])
            q++;
        if (q >= e) dec_fail(d, open, "unterminated string");
        unsigned char c = (unsigned char)*q;
        if (c == '"') {
            if (d->validate) {
                d->sval = s;
                d->slen = (size_t)(q - s);
            } else {
                lua_pushlstring(d->L, s, (size_t)(q - s));
            }
            d->p = q + 1;
            return;
        }
        if (c == '\\') break;
        if (c < 0x20) dec_fail(d, q, "control character U+%04X in string (must be escaped)", c);
        uint32_t cp;
        size_t k = utf8_seq((const unsigned char *)q, (const unsigned char *)e, &cp);
        if (!k) dec_fail(d, q, "invalid UTF-8 in string");
        q += k;
    }
    /* slow path: there are escapes; build the string in the scratch buffer */
    ae_json_buf *b = &scratch;
    b->len = 0;
    if (buf_reserve(b, (size_t)(e - s))) dec_fail(d, open, "out of memory");
    memcpy(b->data, s, (size_t)(q - s));
    b->len = (size_t)(q - s);
    for (;;) {
        const char *run = q;
        while (q < e && str_plain[(unsigned char)*q])
            q++;
        memcpy(b->data + b->len, run, (size_t)(q - run));
        b->len += (size_t)(q - run);
        if (q >= e) dec_fail(d, open, "unterminated string");
        unsigned char c = (unsigned char)*q;
        if (c == '"') break;
        if (c == '\\') {
            if (q + 1 >= e) dec_fail(d, open, "unterminated string");
            char x = q[1], r;
            switch (x) {
            case '"': r = '"'; break;
            case '\\': r = '\\'; break;
            case '/': r = '/'; break;
            case 'b': r = '\b'; break;
            case 'f': r = '\f'; break;
            case 'n': r = '\n'; break;
            case 'r': r = '\r'; break;
            case 't': r = '\t'; break;
            case 'u': {
                unsigned u, lo;
                if (!hex4(q + 2, e, &u)) dec_fail(d, q, "invalid \\u escape (4 hex digits expected)");
                q += 6;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (e - q >= 6 && q[0] == '\\' && q[1] == 'u' && hex4(q + 2, e, &lo) && lo >= 0xDC00 &&
                        lo <= 0xDFFF) {
                        u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                        q += 6;
                    } else {
                        u = 0xFFFD; /* lone high surrogate */
                    }
                } else if (u >= 0xDC00 && u <= 0xDFFF) {
                    u = 0xFFFD; /* lone low surrogate */
                }
                /* an escape is >= 6 input bytes, its UTF-8 <= 4: the reserve above holds */
                b->len += utf8_put(b->data + b->len, u);
                continue;
            }
            default: dec_fail(d, q, "invalid escape %s in string", got(d, q + 1, (char[16]){0}));
            }
            b->data[b->len++] = r;
            q += 2;
            continue;
        }
        if (c < 0x20) dec_fail(d, q, "control character U+%04X in string (must be escaped)", c);
        uint32_t cp;
        size_t k = utf8_seq((const unsigned char *)q, (const unsigned char *)e, &cp);
        if (!k) dec_fail(d, q, "invalid UTF-8 in string");
        memcpy(b->data + b->len, q, k);
        b->len += k;
        q += k;
    }
    d->p = q + 1;
    if (d->validate) {
        d->sval = b->data;
        d->slen = b->len;
    } else {
        lua_pushlstring(d->L, b->data, b->len);
    }
}

static const double pow10_tab[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

static void dec_number(dec *d) {
    const char *start = d->p, *p = start, *e = d->end;
    int neg = 0, overflow = 0, is_int = 1;
    uint64_t m = 0;
    int frac_digits = 0, exp10 = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (p >= e || !is_digit(*p)) dec_fail(d, p, "invalid number (digit expected)");
    if (*p == '0') {
        p++;
        if (p < e && is_digit(*p)) dec_fail(d, start, "invalid number (leading zero)");
    } else {
        while (p < e && is_digit(*p)) {
            unsigned dg = (unsigned)(*p - '0');
            if (m > (UINT64_MAX - dg) / 10)
                overflow = 1;
            else
                m = m * 10 + dg;
            p++;
        }
    }
    if (p < e && *p == '.') {
        is_int = 0;
        p++;
        if (p >= e || !is_digit(*p)) dec_fail(d, p, "invalid number (digit expected after '.')");
        while (p < e && is_digit(*p)) {
            unsigned dg = (unsigned)(*p - '0');
            if (m > (UINT64_MAX - dg) / 10) {
                overflow = 1;
            } else if (!overflow) {
                m = m * 10 + dg;
                if (++frac_digits > 400) overflow = 1; /* let strtod handle absurd lengths */
            }
            p++;
        }
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        is_int = 0;
        p++;
        int eneg = 0;
        if (p < e && (*p == '+' || *p == '-')) eneg = *p++ == '-';
        if (p >= e || !is_digit(*p)) dec_fail(d, p, "invalid number (digit expected in exponent)");
        while (p < e && is_digit(*p)) {
            if (exp10 < 100000) exp10 = exp10 * 10 + (*p - '0');
            p++;
        }
        if (eneg) exp10 = -exp10;
    }
    d->p = p;
    if (is_int && !overflow) {
        if (d->validate) return; /* an integer or a finite float either way */
        if (!neg && m <= (uint64_t)INT64_MAX) {
            lua_pushinteger(d->L, (lua_Integer)m);
            return;
        }
        if (neg && m <= (uint64_t)INT64_MAX + 1) {
            lua_pushinteger(d->L, (lua_Integer)(0u - m));
            return;
        }
    }
    /* Clinger's fast path: exact mantissa and power of ten, one rounding */
    int e10 = exp10 - frac_digits;
    if (!overflow && m <= (1ull << 53) && e10 >= -22 && e10 <= 22) {
        if (d->validate) return; /* finite */
        double v = (double)m;
        v = e10 < 0 ? v / pow10_tab[-e10] : v * pow10_tab[e10];
        lua_pushnumber(d->L, neg ? -v : v);
        return;
    }
    char tmp[128], *txt = tmp;
    size_t n = (size_t)(p - start);
    if (n >= sizeof tmp && !(txt = malloc(n + 1))) dec_fail(d, start, "out of memory");
    memcpy(txt, start, n);
    txt[n] = 0;
    double v = strtod(txt, NULL);
    if (txt != tmp) free(txt);
    if (!isfinite(v)) dec_fail(d, start, "number out of range");
    if (!d->validate) lua_pushnumber(d->L, v);
}

static void dec_value(dec *d);

static void dec_enter(dec *d) {
    if (d->depth >= AE_JSON_MAX_DEPTH) dec_fail(d, d->p, "nesting deeper than %d levels", AE_JSON_MAX_DEPTH);
    if (!lua_checkstack(d->L, 4)) dec_fail(d, d->p, "Lua stack overflow");
    d->depth++;
}

/* After a container's element: 1 when a ',' announces another one, 0 when
 * `close` ends the container (both consumed); anything else fails. */
static int dec_more(dec *d, char close) {
    char tmp[16];
    d->p = skip_ws(d->p, d->end);
    if (d->p < d->end && *d->p == ',') {
        d->p++;
        return 1;
    }
    if (d->p < d->end && *d->p == close) {
        d->p++;
        return 0;
    }
    dec_fail(d, d->p, "expected ',' or '%c', got %s", close, got(d, d->p, tmp));
}

/* Containers are built with their final size: up to PENDING_MAX elements (or
 * key/value pairs) are decoded onto the stack first, then moved into a table
 * created with that size, so small objects and arrays (the common case) cost
 * one allocation instead of a rehash per power of two. Larger ones switch to
 * inserting directly into a table sized for what was pending so far. */
#define PENDING_MAX 32

/* Replace the n values (pairs: 2n) above base with a table holding them. */
static void dec_collect(lua_State *L, int base, int n, int pairs, int size) {
    if (pairs) {
        lua_createtable(L, 0, size);
        for (int i = 0; i < n; i++) {
            lua_pushvalue(L, base + 1 + 2 * i);
            lua_pushvalue(L, base + 2 + 2 * i);
            lua_rawset(L, -3);
        }
    } else {
        lua_createtable(L, size, 0);
        for (int i = 0; i < n; i++) {
            lua_pushvalue(L, base + 1 + i);
            lua_rawseti(L, -2, i + 1);
        }
    }
    if (n > 0) { /* the table to base + 1, over the first value */
        lua_replace(L, base + 1);
        lua_settop(L, base + 1);
    }
}

/* Validate-only containers: the grammar and messages of dec_array /
 * dec_object, nothing pushed. In an element of with_member's array (depth 2)
 * a key equal to member_key fails. */
static void val_array(dec *d) {
    dec_enter(d);
    d->p = skip_ws(d->p + 1, d->end);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
    } else {
        do
            dec_value(d);
        while (dec_more(d, ']'));
    }
    d->depth--;
}

static void val_object(dec *d) {
    char tmp[16];
    dec_enter(d);
    d->p = skip_ws(d->p + 1, d->end);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
    } else {
        do {
            d->p = skip_ws(d->p, d->end);
            if (d->p >= d->end || *d->p != '"') dec_fail(d, d->p, "expected a string key, got %s", got(d, d->p, tmp));
            const char *key_at = d->p;
            dec_string(d);
            if (d->member_key && d->depth == 2 && d->slen == d->member_len &&
                memcmp(d->sval, d->member_key, d->slen) == 0)
                dec_fail(d, key_at, "element %lld already has a member \"%.*s\"", (long long)d->elem,
                         (int)(d->member_len > 40 ? 40 : d->member_len), d->member_key);
            d->p = skip_ws(d->p, d->end);
            if (d->p >= d->end || *d->p != ':') dec_fail(d, d->p, "expected ':', got %s", got(d, d->p, tmp));
            d->p++;
            dec_value(d);
        } while (dec_more(d, '}'));
    }
    d->depth--;
}

static void dec_array(dec *d) {
    if (d->validate) {
        val_array(d);
        return;
    }
    lua_State *L = d->L;
    dec_enter(d);
    int base = lua_gettop(L), table = 0;
    lua_Integer n = 0;
    d->p = skip_ws(d->p + 1, d->end);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
    } else {
        for (;;) {
            if (!lua_checkstack(L, 4)) dec_fail(d, d->p, "Lua stack overflow");
            dec_value(d);
            n++;
            if (table)
                lua_rawseti(L, base + 1, n);
            else if (n == PENDING_MAX) {
                dec_collect(L, base, (int)n, 0, 2 * PENDING_MAX);
                table = 1;
            }
            if (!dec_more(d, ']')) break;
        }
    }
    if (!table) dec_collect(L, base, (int)n, 0, (int)n);
    lua_pushvalue(L, d->array_mt);
    lua_setmetatable(L, -2);
    d->depth--;
}

/* The callback (d->each_fn) with the element and its index pushed above it:
 * an error it raises is kept in the registry (raise_each_error) and ends the
 * decode. fn names the API in the message. */
static void each_call(dec *d, int nresults, const char *fn) {
    if (lua_pcall(d->L, 2, nresults, 0) != LUA_OK) {
        lua_setfield(d->L, LUA_REGISTRYINDEX, EACH_ERROR);
        d->each_failed = 1;
        snprintf(d->err, d->errlen, "ae.json.%s: the callback raised an error", fn);
        longjmp(d->jb, 1);
    }
}

/* Raise again, in the caller, the error the callback raised. */
static int raise_each_error(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, EACH_ERROR);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, EACH_ERROR);
    return lua_error(L);
}

/* json.decode_each: the array at d->p goes element by element to the
 * callback (element, index); nothing is left on the stack. */
static void dec_array_each(dec *d) {
    lua_State *L = d->L;
    dec_enter(d);
    lua_Integer n = 0;
    d->p = skip_ws(d->p + 1, d->end);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
    } else {
        for (;;) {
            if (!lua_checkstack(L, 4)) dec_fail(d, d->p, "Lua stack overflow");
            lua_pushvalue(L, d->each_fn);
            dec_value(d);
            lua_pushinteger(L, ++n);
            each_call(d, 0, "decode_each");
            if (!dec_more(d, ']')) break;
        }
    }
    d->each_n = n;
    d->depth--;
}

static void dec_object(dec *d) {
    if (d->validate) {
        val_object(d);
        return;
    }
    lua_State *L = d->L;
    char tmp[16];
    dec_enter(d);
    int base = lua_gettop(L), table = 0, n = 0;
    d->p = skip_ws(d->p + 1, d->end);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
    } else {
        for (;;) {
            if (!lua_checkstack(L, 5)) dec_fail(d, d->p, "Lua stack overflow");
            d->p = skip_ws(d->p, d->end);
            if (d->p >= d->end || *d->p != '"') dec_fail(d, d->p, "expected a string key, got %s", got(d, d->p, tmp));
            dec_string(d);
            d->p = skip_ws(d->p, d->end);
            if (d->p >= d->end || *d->p != ':') dec_fail(d, d->p, "expected ':', got %s", got(d, d->p, tmp));
            d->p++;
            if (d->each_key && d->depth == 1) {
                size_t klen;
                const char *k = lua_tolstring(L, -1, &klen);
                d->p = skip_ws(d->p, d->end);
                if (klen == d->each_len && memcmp(k, d->each_key, klen) == 0 && d->p < d->end && *d->p == '[') {
                    lua_pop(L, 1); /* the key: this member is not kept */
                    dec_array_each(d);
                    goto next_member;
                }
            }
            dec_value(d);
            if (table)
                lua_rawset(L, base + 1);
            else if (++n == PENDING_MAX) {
                dec_collect(L, base, n, 1, 2 * PENDING_MAX);
                table = 1;
            }
        next_member:
            if (!dec_more(d, '}')) break;
        }
    }
    if (!table) dec_collect(L, base, n, 1, n);
    lua_pushvalue(L, d->object_mt);
    lua_setmetatable(L, -2);
    d->depth--;
}

static void dec_literal(dec *d, const char *word, size_t n) {
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0) dec_fail(d, d->p, "invalid literal (%s?)", word);
    d->p += n;
}

static void dec_value(dec *d) {
    char tmp[16];
    d->p = skip_ws(d->p, d->end);
    if (d->p >= d->end) dec_fail(d, d->p, "expected a value, got end of input");
    switch (*d->p) {
    case '{': dec_object(d); break;
    case '[': dec_array(d); break;
    case '"': dec_string(d); break;
    case 't':
        dec_literal(d, "true", 4);
        if (!d->validate) lua_pushboolean(d->L, 1);
        break;
    case 'f':
        dec_literal(d, "false", 5);
        if (!d->validate) lua_pushboolean(d->L, 0);
        break;
    case 'n':
        dec_literal(d, "null", 4);
        if (!d->validate) lua_pushlightuserdata(d->L, JSON_NULL);
        break;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9': dec_number(d); break;
    default: dec_fail(d, d->p, "expected a value, got %s", got(d, d->p, tmp));
    }
}

static void skip_bom(dec *d) {
    if (d->end - d->p >= 3 && memcmp(d->p, "\xEF\xBB\xBF", 3) == 0) d->p += 3; /* UTF-8 BOM */
}

/* After the document's value: only whitespace may follow. */
static void dec_end(dec *d) {
    char tmp[16];
    d->p = skip_ws(d->p, d->end);
    if (d->p < d->end) dec_fail(d, d->p, "expected end of input after the value, got %s", got(d, d->p, tmp));
}

static int dec_run(dec *d) {
    if (setjmp(d->jb)) return -1;
    skip_bom(d);
    dec_value(d);
    dec_end(d);
    return 0;
}

/* Decode onto L's stack. Returns 0 with the value on top, or -1 with the
 * stack as it was and err set. Lua errors (out of memory) propagate. */
static int decode_with(lua_State *L, const char *text, size_t len, char *err, size_t errlen, const char *each_key,
                       size_t each_len, int each_fn, int *each_failed, lua_Integer *each_n) {
    dec d;
    int top = lua_gettop(L);
    dec_init(&d, L, text, len, err, errlen);
    d.each_key = each_key;
    d.each_len = each_len;
    d.each_fn = each_fn;
    d.each_n = -1;
    init_tables();
    luaL_checkstack(L, 8, "ae.json");
    push_mt(L, ARRAY_MT);
    push_mt(L, OBJECT_MT);
    d.array_mt = top + 1;
    d.object_mt = top + 2;
    int rc = dec_run(&d);
    scratch_release();
    if (each_failed) *each_failed = d.each_failed;
    if (each_n) *each_n = d.each_n;
    if (rc) {
        lua_settop(L, top);
        return -1;
    }
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    return 0;
}

static int decode(lua_State *L, const char *text, size_t len, char *err, size_t errlen) {
    return decode_with(L, text, len, err, errlen, NULL, 0, 0, NULL, NULL);
}

typedef struct {
    const char *text;
    size_t len;
    char *err;
    size_t errlen;
    int rc;
} pdecode_args;

static int pdecode(lua_State *L) {
    pdecode_args *a = lua_touserdata(L, 1);
    lua_pop(L, 1);
    a->rc = decode(L, a->text, a->len, a->err, a->errlen);
    return a->rc ? 0 : 1;
}

int ae_json_decode(lua_State *L, const char *text, size_t len, char *err, size_t errlen) {
    char dummy[AE_JSON_ERRLEN];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    if (!lua_checkstack(L, 3)) {
        snprintf(err, errlen, "ae.json: Lua stack overflow");
        return -1;
    }
    pdecode_args a = {text, len, err, errlen, -1};
    lua_pushcfunction(L, pdecode);
    lua_pushlightuserdata(L, &a);
    int st = lua_pcall(L, 1, 1, 0);
    if (st != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        snprintf(err, errlen, "ae.json: %s", m ? m : "error while decoding");
        lua_pop(L, 1);
        return -1;
    }
    if (a.rc) {
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* ======================================================== json.with_member */

/* Offsets of the elements' '{' in with_member's text. Kept between calls (like
 * scratch) so that no Lua error can leak it; trimmed after big use. */
static _Thread_local struct {
    size_t *v;
    size_t n, cap;
} elems;

static void elems_push(dec *d, size_t off) {
    if (elems.n == elems.cap) {
        size_t cap = elems.cap ? elems.cap * 2 : 1024;
        size_t *v = cap <= SIZE_MAX / sizeof *v ? realloc(elems.v, cap * sizeof *v) : NULL;
        if (!v) dec_fail(d, d->p, "out of memory");
        elems.v = v;
        elems.cap = cap;
    }
    elems.v[elems.n++] = off;
}

static void elems_trim(void) {
    if (elems.cap > KEEP_BUFFER / sizeof *elems.v) {
        free(elems.v);
        elems.v = NULL;
        elems.cap = 0;
    }
    elems.n = 0;
}

static const char *kind_of(char c) {
    switch (c) {
    case '[': return "an array";
    case '"': return "a string";
    case 't':
    case 'f': return "a boolean";
    case 'n': return "null";
    default: return "a number";
    }
}

/* The document (after an optional BOM) must be a JSON array: leaves d->p on
 * its '['. Anything else fails with the decoder's message when it is not JSON
 * at all, else "expected <what>, got ..." at its start. */
static void expect_array(dec *d, const char *what) {
    skip_bom(d);
    d->p = skip_ws(d->p, d->end);
    if (d->p < d->end && *d->p == '[') return;
    const char *at = d->p;
    d->validate = 1;
    dec_value(d); /* not JSON at all: the decoder's message */
    dec_end(d);
    dec_fail(d, at, "expected %s, got %s", what, *at == '{' ? "an object" : kind_of(*at));
}

/* Validate d's text as a JSON array of objects (the decoder in validate mode,
 * so exactly what json.decode accepts), recording the offset of each
 * element's '{' in elems; *open / *close get the array's '[' and ']'. */
static int members_run(dec *d, const char **open, const char **close) {
    const char *key = d->member_key;
    d->member_key = NULL; /* checked in the elements only */
    if (setjmp(d->jb)) return -1;
    expect_array(d, "an array of objects");
    d->member_key = key;
    *open = d->p;
    dec_enter(d);
    d->p = skip_ws(d->p + 1, d->end);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
    } else {
        do {
            d->p = skip_ws(d->p, d->end);
            d->elem++;
            if (d->p < d->end && *d->p == '{') {
                elems_push(d, (size_t)(d->p - d->start));
                dec_value(d);
            } else {
                const char *at = d->p;
                dec_value(d); /* invalid JSON: the decoder's message */
                dec_fail(d, at, "element %lld of the array is %s, not an object", (long long)d->elem, kind_of(*at));
            }
        } while (dec_more(d, ']'));
    }
    *close = d->p - 1;
    d->depth--;
    dec_end(d);
    return 0;
}

/* with_member(text, key, value) -> new_text | nil, message: text, a JSON array
 * of objects, with "key":value inserted first in every object. Validates with
 * the decoder (no Lua values built), then copies once. */
static int l_with_member(lua_State *L) {
    char err[AE_JSON_ERRLEN];
    size_t len, klen;
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_error(L, "ae.json.with_member: text must be a string, got %s", luaL_typename(L, 1));
    if (lua_type(L, 2) != LUA_TSTRING)
        return luaL_error(L, "ae.json.with_member: key must be a string, got %s", luaL_typename(L, 2));
    luaL_checkany(L, 3);
    lua_settop(L, 3);
    const char *text = lua_tolstring(L, 1, &len), *key = lua_tolstring(L, 2, &klen);
    init_tables();
    /* the member's text, "key":value, at the start of outbuf */
    outbuf.len = 0;
    if (ae_json_encode_into(L, 2, 0, &outbuf, err, sizeof err) || buf_reserve(&outbuf, 1) ||
        (outbuf.data[outbuf.len++] = ':', ae_json_encode_into(L, 3, 0, &outbuf, err, sizeof err))) {
        buf_trim(&outbuf);
        if (!strstr(err, "ae.json")) snprintf(err, sizeof err, "ae.json: out of memory");
        lua_pushstring(L, err);
        return lua_error(L);
    }
    size_t m = outbuf.len;
    dec d;
    dec_init(&d, L, text, len, err, sizeof err);
    d.validate = 1;
    d.member_key = key;
    d.member_len = klen;
    elems.n = 0;
    const char *open = NULL, *close = NULL;
    int rc = members_run(&d, &open, &close);
    scratch_release();
    size_t n = elems.n, body = rc ? 0 : (size_t)(close - open) + 1;
    if (!rc && (n > (SIZE_MAX / 2 - body) / (m + 1) || buf_reserve(&outbuf, body + n * (m + 1)))) {
        snprintf(err, sizeof err, "ae.json: out of memory");
        rc = -1;
    }
    if (rc) {
        buf_trim(&outbuf);
        elems_trim();
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    char *member = outbuf.data, *o = outbuf.data + m;
    const char *src = open;
    for (size_t i = 0; i < n; i++) {
        const char *brace = text + elems.v[i];
        memcpy(o, src, (size_t)(brace + 1 - src));
        o += brace + 1 - src;
        memcpy(o, member, m);
        o += m;
        src = brace + 1;
        if (*skip_ws(src, d.end) != '}') *o++ = ','; /* the object is valid: not at the end */
    }
    memcpy(o, src, (size_t)(close + 1 - src));
    o += close + 1 - src;
    elems_trim();
    lua_pushlstring(L, outbuf.data + m, (size_t)(o - (outbuf.data + m)));
    buf_trim(&outbuf);
    return 1;
}

/* ================================================================ ae.json */

static unsigned encode_flags(lua_State *L, int idx) {
    unsigned flags = 0;
    if (lua_isnoneornil(L, idx)) return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        if (strcmp(k, "ascii") == 0) {
            if (!lua_isboolean(L, -1)) luaL_error(L, "ae.json.encode: option 'ascii' must be a boolean");
            if (lua_toboolean(L, -1)) flags |= AE_JSON_ASCII;
        } else if (strcmp(k, "invalid_utf8") == 0) {
            const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
            if (strcmp(v, "replace") == 0)
                flags |= AE_JSON_REPLACE_INVALID_UTF8;
            else if (strcmp(v, "error") != 0)
                luaL_error(L, "ae.json.encode: option 'invalid_utf8' must be \"error\" or \"replace\"");
        } else {
            lua_pushvalue(L, -2);
            luaL_error(L, "ae.json.encode: unknown option '%s'", luaL_tolstring(L, -1, NULL));
        }
        lua_pop(L, 1);
    }
    return flags;
}

/* encode(value [, opts]) -> string; raises on values JSON cannot hold */
static int l_encode(lua_State *L) {
    char err[AE_JSON_ERRLEN];
    luaL_checkany(L, 1);
    unsigned flags = encode_flags(L, 2);
    outbuf.len = 0;
    if (ae_json_encode_into(L, 1, flags, &outbuf, err, sizeof err)) {
        buf_trim(&outbuf);
        lua_pushstring(L, err);
        return lua_error(L);
    }
    lua_pushlstring(L, outbuf.data, outbuf.len);
    buf_trim(&outbuf);
    return 1;
}

/* nil, err for a document that is not JSON, with a DEBUG line and a metric */
static int decode_failed(lua_State *L, const char *what, const char *err) {
    ae_unit *u = ae_unit_of(L);
    const char *uname = u && u->name ? u->name : "engine";
    lua_Debug ar;
    int line = 0;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar)) line = ar.currentline > 0 ? ar.currentline : 0;
    ae_log(AE_LOG_DEBUG, uname, line, "%s failed: %s", what, err);
    ae_metric_inc("aengine_json_decode_errors", "Invalid JSON documents given to ae.json.decode", "unit", uname, 1);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* ------------------------------------------------------------ buffers */

/* json.buffer(capacity): bytes filled by appends, which decode and
 * decode_each read in place. For a document that arrives in pieces (an
 * offloaded NATS message read from Redis 1 MB at a time): joining the pieces
 * into a Lua string would hold the pieces and the string at once, and a
 * single read holds the client library's buffer and reply as well.
 *
 * The bytes come from the state's allocator (so a unit's memory cap counts
 * them) but not through Lua's own accounting: an 18 MB buffer counted as new
 * Lua memory set off a major collection of the whole heap each time one
 * arrived, and while it was alive every collection was judged "bad" (it could
 * not be freed), which kept the collector doing full collections. Instead the
 * owner frees it as soon as it is done (buffer:free()), or the collector does
 * when the small userdata goes. */
#define BUFFER_MT "ae.json.buffer"
typedef struct {
    size_t len, cap;
    char *data; /* NULL once freed */
} text_buffer;

static text_buffer *check_buffer(lua_State *L, int idx) { return luaL_checkudata(L, idx, BUFFER_MT); }

static text_buffer *live_buffer(lua_State *L, int idx) {
    text_buffer *b = check_buffer(L, idx);
    if (!b->data) luaL_error(L, "ae.json.buffer: used after free()");
    return b;
}

static void buffer_release(lua_State *L, text_buffer *b) {
    if (!b->data) return;
    void *ud;
    lua_Alloc alloc = lua_getallocf(L, &ud);
    alloc(ud, b->data, b->cap + 1, 0);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* buffer(capacity) -> buffer */
static int l_buffer(lua_State *L) {
    lua_Integer cap = luaL_checkinteger(L, 1);
    if (cap < 0 || (lua_Unsigned)cap > (lua_Unsigned)(SIZE_MAX / 2))
        return luaL_error(L, "ae.json.buffer: capacity must be between 0 and %I bytes", (lua_Integer)(SIZE_MAX / 2));
    text_buffer *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->len = b->cap = 0;
    b->data = NULL;
    luaL_setmetatable(L, BUFFER_MT);
    void *ud;
    lua_Alloc alloc = lua_getallocf(L, &ud);
    b->data = alloc(ud, NULL, 0, (size_t)cap + 1); /* + 1: never a zero-size request */
    if (!b->data) return luaL_error(L, "ae.json.buffer: not enough memory for %I bytes", cap);
    b->cap = (size_t)cap;
    return 1;
}

/* buffer:append(s) -> buffer; more than the capacity raises */
static int l_buffer_append(lua_State *L) {
    text_buffer *b = live_buffer(L, 1);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    if (n > b->cap - b->len)
        return luaL_error(L, "ae.json.buffer: %I more bytes do not fit (%I of %I used)", (lua_Integer)n,
                          (lua_Integer)b->len, (lua_Integer)b->cap);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    lua_settop(L, 1);
    return 1;
}

static int l_buffer_len(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)check_buffer(L, 1)->len);
    return 1;
}

/* tostring(buffer): its bytes as a string (a copy) */
static int l_buffer_tostring(lua_State *L) {
    text_buffer *b = live_buffer(L, 1);
    lua_pushlstring(L, b->data, b->len);
    return 1;
}

/* buffer:free(): its memory now; using it afterwards raises. Idempotent.
 * Also the buffer's __gc. */
static int l_buffer_free(lua_State *L) {
    buffer_release(L, check_buffer(L, 1));
    return 0;
}

/* The text argument of decode / decode_each: a string or a buffer. */
static const char *text_arg(lua_State *L, int idx, size_t *len, const char *fn) {
    if (lua_type(L, idx) == LUA_TSTRING) return lua_tolstring(L, idx, len);
    text_buffer *b = luaL_testudata(L, idx, BUFFER_MT);
    if (!b) luaL_error(L, "ae.json.%s: text must be a string or a json.buffer, got %s", fn, luaL_typename(L, idx));
    if (!b->data) luaL_error(L, "ae.json.%s: the json.buffer was freed", fn);
    *len = b->len;
    return b->data;
}

/* ============================================================ json.select */

/* The byte ranges [from, to) of the elements json.select keeps, in a
 * userdata at a stack slot: grown by replacing it with a bigger one (the old
 * one is garbage), so neither a Lua error nor a callback that calls select
 * itself can leak or clobber it. */
typedef struct {
    int slot;      /* stack slot of the userdata */
    size_t *v;     /* 2 offsets per kept element */
    size_t n, cap; /* kept elements, room */
    size_t bytes;  /* sum of the kept elements' lengths */
} sel_ranges;

static void sel_keep(dec *d, sel_ranges *r, size_t from, size_t to) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        if (cap > SIZE_MAX / (2 * sizeof *r->v)) dec_fail(d, d->p, "out of memory");
        size_t *v = lua_newuserdatauv(d->L, cap * 2 * sizeof *v, 0); /* raises on out of memory */
        if (r->n) memcpy(v, r->v, r->n * 2 * sizeof *v);
        lua_replace(d->L, r->slot);
        r->v = v;
        r->cap = cap;
    }
    r->v[2 * r->n] = from;
    r->v[2 * r->n + 1] = to;
    r->n++;
    r->bytes += to - from;
}

/* Decode d's text, which must be a JSON array, one element at a time: each
 * goes to the callback at d->each_fn (element, index), and the ranges of the
 * elements it returns a truthy value for are recorded in r. */
static int select_run(dec *d, sel_ranges *r) {
    lua_State *L = d->L;
    if (setjmp(d->jb)) return -1;
    expect_array(d, "an array");
    dec_enter(d);
    lua_Integer n = 0;
    d->p = skip_ws(d->p + 1, d->end);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
    } else {
        do {
            if (!lua_checkstack(L, 4)) dec_fail(d, d->p, "Lua stack overflow");
            d->p = skip_ws(d->p, d->end);
            const char *from = d->p;
            lua_pushvalue(L, d->each_fn);
            dec_value(d);
            lua_pushinteger(L, ++n);
            each_call(d, 1, "select");
            int keep = lua_toboolean(L, -1);
            lua_pop(L, 1);
            if (keep) sel_keep(d, r, (size_t)(from - d->start), (size_t)(d->p - d->start));
        } while (dec_more(d, ']'));
    }
    d->depth--;
    dec_end(d);
    return 0;
}

/* select(text, fn) -> new_text, kept | nil, message: text, a JSON array,
 * decoded element by element (json.decode's rules and messages); fn(element,
 * index) decides which elements are kept, and the result is the array of the
 * kept elements' original texts, joined with ",". An error raised by fn
 * propagates. */
static int l_select(lua_State *L) {
    char err[AE_JSON_ERRLEN];
    size_t len;
    const char *text = text_arg(L, 1, &len, "select");
    if (lua_type(L, 2) != LUA_TFUNCTION)
        return luaL_error(L, "ae.json.select: fn must be a function, got %s", luaL_typename(L, 2));
    lua_settop(L, 2);
    init_tables();
    luaL_checkstack(L, 8, "ae.json");
    lua_pushnil(L); /* 3: the ranges */
    push_mt(L, ARRAY_MT);
    push_mt(L, OBJECT_MT);
    sel_ranges r = {.slot = 3};
    dec d;
    dec_init(&d, L, text, len, err, sizeof err);
    d.array_mt = 4;
    d.object_mt = 5;
    d.each_fn = 2;
    int rc = select_run(&d, &r);
    scratch_release();
    lua_settop(L, 5);
    if (rc) {
        if (d.each_failed) return raise_each_error(L);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    /* "[" kept elements joined with "," "]"; the text is still at slot 1 */
    size_t total = r.bytes + (r.n ? r.n - 1 : 0) + 2;
    luaL_Buffer b;
    char *o = luaL_buffinitsize(L, &b, total), *o0 = o;
    *o++ = '[';
    for (size_t i = 0; i < r.n; i++) {
        if (i) *o++ = ',';
        memcpy(o, text + r.v[2 * i], r.v[2 * i + 1] - r.v[2 * i]);
        o += r.v[2 * i + 1] - r.v[2 * i];
    }
    *o++ = ']';
    luaL_pushresultsize(&b, (size_t)(o - o0));
    lua_pushinteger(L, (lua_Integer)r.n);
    return 2;
}

/* decode(text) -> value | nil, "ae.json: <what> at line L column C (byte B)" */
static int l_decode(lua_State *L) {
    char err[AE_JSON_ERRLEN];
    size_t len;
    const char *text = text_arg(L, 1, &len, "decode");
    lua_settop(L, 1);
    if (decode(L, text, len, err, sizeof err) == 0) return 1;
    return decode_failed(L, "json.decode", err);
}

/* decode_each(text, key, fn) -> value, n | nil, message: as decode, but when
 * the top-level value is an object whose member `key` is an array, that array
 * is not built: fn(element, index) gets its elements one by one, the result
 * has no such member, and n is the number of elements (nil when there was no
 * such array). An error raised by fn propagates. */
static int l_decode_each(lua_State *L) {
    char err[AE_JSON_ERRLEN];
    size_t len, klen;
    const char *text = text_arg(L, 1, &len, "decode_each");
    const char *key = luaL_checklstring(L, 2, &klen);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lua_settop(L, 3);
    int failed = 0;
    lua_Integer n = -1;
    if (decode_with(L, text, len, err, sizeof err, key, klen, 3, &failed, &n) == 0) {
        if (n < 0)
            lua_pushnil(L);
        else
            lua_pushinteger(L, n);
        return 2;
    }
    if (failed) return raise_each_error(L);
    return decode_failed(L, "json.decode_each", err);
}

/* array([t]) / object([t]) -> t, marked */
static int mark(lua_State *L, const char *name, const char *fn) {
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else if (!lua_istable(L, 1)) {
        return luaL_error(L, "ae.json.%s: expected a table, got %s", fn, luaL_typename(L, 1));
    }
    lua_settop(L, 1);
    if (lua_getmetatable(L, 1)) {
        push_mt(L, ARRAY_MT);
        push_mt(L, OBJECT_MT);
        if (!lua_rawequal(L, -1, -3) && !lua_rawequal(L, -2, -3))
            return luaL_error(L, "ae.json.%s: the table already has a metatable that is not an ae.json mark", fn);
        lua_settop(L, 1);
    }
    push_mt(L, name);
    lua_setmetatable(L, 1);
    return 1;
}

static int l_array(lua_State *L) { return mark(L, ARRAY_MT, "array"); }

/* raw(text) -> {text = text} marked "ae.json.raw": encode writes the text as
 * is (it is not validated: it must be one JSON value) */
static int l_raw(lua_State *L) {
    size_t n;
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_error(L, "ae.json.raw: text must be a string, got %s", luaL_typename(L, 1));
    const char *s = lua_tolstring(L, 1, &n);
    if (skip_ws(s, s + n) == s + n) return luaL_error(L, "ae.json.raw: text is empty (one JSON value is needed)");
    lua_settop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, 1);
    lua_setfield(L, 2, "text");
    push_mt(L, RAW_MT);
    lua_setmetatable(L, 2);
    return 1;
}
static int l_object(lua_State *L) { return mark(L, OBJECT_MT, "object"); }

/* is_array(v) -> true when encode(v) would give a JSON array */
static int l_is_array(lua_State *L) {
    if (!lua_istable(L, 1)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_settop(L, 1);
    if (lua_getmetatable(L, 1)) {
        push_mt(L, RAW_MT);
        if (lua_rawequal(L, -2, -1)) { /* json.raw: its text is an array */
            size_t n;
            lua_pushliteral(L, "text");
            const char *s = lua_rawget(L, 1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
            const char *p = s ? skip_ws(s, s + n) : NULL;
            lua_pushboolean(L, p && p < s + n && *p == '[');
            return 1;
        }
        lua_pop(L, 1);
        push_mt(L, ARRAY_MT);
        push_mt(L, OBJECT_MT);
        if (lua_rawequal(L, -3, -2)) {
            lua_pushboolean(L, 1);
            return 1;
        }
        if (lua_rawequal(L, -3, -1)) {
            lua_pushboolean(L, 0);
            return 1;
        }
        lua_settop(L, 1);
    }
    lua_Integer count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) <= 0) {
            lua_pushboolean(L, 0);
            return 1;
        }
        lua_Integer k = lua_tointeger(L, -1);
        count++;
        if (k > max) max = k;
    }
    lua_pushboolean(L, count > 0 && count == max);
    return 1;
}

int luaopen_ae_json(lua_State *L) {
    static const luaL_Reg fns[] = {{"encode", l_encode},
                                   {"decode", l_decode},
                                   {"decode_each", l_decode_each},
                                   {"array", l_array},
                                   {"object", l_object},
                                   {"is_array", l_is_array},
                                   {"raw", l_raw},
                                   {"with_member", l_with_member},
                                   {"buffer", l_buffer},
                                   {"select", l_select},
                                   {NULL, NULL}};
    static const luaL_Reg buffer_m[] = {{"append", l_buffer_append}, {"free", l_buffer_free},
                                        {"__len", l_buffer_len},     {"__tostring", l_buffer_tostring},
                                        {"__gc", l_buffer_free},     {NULL, NULL}};
    init_tables();
    if (luaL_newmetatable(L, BUFFER_MT)) {
        luaL_setfuncs(L, buffer_m, 0);
        lua_pushvalue(L, -1);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    lua_pushlightuserdata(L, JSON_NULL);
    lua_setfield(L, -2, "null");
    lua_pushinteger(L, AE_JSON_MAX_DEPTH);
    lua_setfield(L, -2, "max_depth");
    push_mt(L, ARRAY_MT);
    lua_pop(L, 1);
    push_mt(L, OBJECT_MT);
    lua_pop(L, 1);
    push_mt(L, RAW_MT);
    lua_pop(L, 1);
    return 1;
}
