/* metrics.h - the process-global Prometheus registry (metrics.c) and the
 * readiness "status providers" that /_ready reports.
 *
 * Families are process-global: one value per process, shared by every unit,
 * alive until exit (a unit reload keeps its counters). The three engine.h
 * hooks (ae_metric_inc/set/observe) create a family on first use.
 */
#ifndef AE_METRICS_H
#define AE_METRICS_H

#include <lua.h>
#include <stddef.h>

typedef enum { AE_METRIC_COUNTER, AE_METRIC_GAUGE, AE_METRIC_HISTOGRAM } ae_metric_type;

typedef struct ae_metric_family ae_metric_family;

#define AE_METRIC_MAX_LABELS 16
#define AE_METRIC_MAX_BUCKETS 64

/* Declare (or find) a family. name: counters may be given with or without
 * "_total"; the exposed name always has it. labels: label names (may be
 * NULL when nlabels is 0). buckets: histogram upper bounds, increasing (NULL
 * = the Prometheus defaults); +Inf is implicit. On error returns NULL and
 * writes a message to err (size errlen). Declaring an existing name again
 * returns it when type and label names match, else fails. */
ae_metric_family *ae_metrics_declare(ae_metric_type type, const char *name, const char *help, int nlabels,
                                     const char *const *labels, int nbuckets, const double *buckets, char *err,
                                     size_t errlen);
ae_metric_family *ae_metrics_find(const char *name);
ae_metric_type ae_metrics_type(const ae_metric_family *f);
int ae_metrics_nlabels(const ae_metric_family *f);
const char *ae_metrics_label(const ae_metric_family *f, int i);

/* Update the series of these label values (nvalues must equal the family's
 * label count). Counters refuse negative increments (-1). */
int ae_metrics_add(ae_metric_family *f, const char *const *values, double by);
int ae_metrics_setv(ae_metric_family *f, const char *const *values, double value);
int ae_metrics_observev(ae_metric_family *f, const char *const *values, double value);
/* Current value (counter/gauge) or count (histogram) of a series; 0 if absent.
 * *sum gets the histogram sum when non-NULL. Returns 1 when the series exists. */
int ae_metrics_get(ae_metric_family *f, const char *const *values, double *value, double *sum);
/* Remove one series / every series of a family. */
int ae_metrics_remove(ae_metric_family *f, const char *const *values);
void ae_metrics_clear(ae_metric_family *f);

/* The whole registry in the Prometheus text format 0.0.4 (malloc'd, NUL
 * terminated; *len gets the length). Refreshes the engine's unit gauges. */
char *ae_metrics_render(size_t *len);
#define AE_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A double as the Python prometheus_client prints it (repr, then Go-style
 * exponent for large positive values): 3.0, 4.21, 1.6139952e+09, +Inf, NaN. */
void ae_metrics_format_float(double v, char *buf, size_t n);

/* Free the registry (process exit). */
void ae_metrics_free_all(void);

/* ----------------------------------------------------- status providers */
/* A binding reports its state for GET /_ready by registering a provider:
 * fn pushes ONE plain value (usually a table such as {ok = true, url = ...})
 * on L, a scratch state owned by the registry. A table with ok == false
 * marks the engine not ready (503). Registering a name again replaces it. */
typedef void (*ae_status_fn)(lua_State *L, void *arg);
void ae_status_provider(const char *name, ae_status_fn fn, void *arg);
void ae_status_provider_remove(const char *name);
/* Push a table {name = value, ...} of every provider (plus "units") on L and
 * return 1 when everything is ok. */
int ae_status_collect(lua_State *L);

#endif
