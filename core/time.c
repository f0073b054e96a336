/* time.c - placeholder, being written */
#include "engine.h"
double ae_time_parse_iso(const char *s, int *ok);
double ae_time_parse_iso(const char *s, int *ok) {
    (void)s;
    *ok = 0;
    return 0;
}
