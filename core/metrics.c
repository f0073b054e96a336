/* metrics.c - placeholder, being written */
#include "engine.h"
void ae_metric_inc(const char *n, const char *h, const char *ln, const char *lv, double by) {
    (void)n;
    (void)h;
    (void)ln;
    (void)lv;
    (void)by;
}
void ae_metric_set(const char *n, const char *h, const char *ln, const char *lv, double by) {
    (void)n;
    (void)h;
    (void)ln;
    (void)lv;
    (void)by;
}
void ae_metric_observe(const char *n, const char *h, const char *ln, const char *lv, double by) {
    (void)n;
    (void)h;
    (void)ln;
    (void)lv;
    (void)by;
}
