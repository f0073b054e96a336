/* strbuf.h - a growable, always NUL-terminated text buffer for the C core
 * (console answers, the /metrics page, reload reports). Out of memory aborts:
 * these are small operator texts, not data paths. */
#ifndef AE_STRBUF_H
#define AE_STRBUF_H

#include "log.h"

#include <stddef.h>

typedef struct {
    char *s; /* NULL until the first add; free() it when done */
    size_t len, cap;
} ae_strbuf;

void ae_strbuf_addn(ae_strbuf *b, const char *s, size_t n);
void ae_strbuf_add(ae_strbuf *b, const char *s);
void ae_strbuf_printf(ae_strbuf *b, const char *fmt, ...) AE_PRINTF(2, 3);
const char *ae_strbuf_str(const ae_strbuf *b); /* "" while empty */

#endif
