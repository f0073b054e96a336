/* log.h - engine logging: the original platform's line layout
 *   <UTC YYYY-MM-DD HH:MM:SS>: <ENVIRONMENT_NAME>: <hostname>: <unit>::<line> <LEVEL>: <message>
 * or one JSON object per line (AE_LOG_FORMAT=json). Registered secrets are
 * masked in every line. */
#ifndef AE_LOG_H
#define AE_LOG_H

#include <stdarg.h>

enum { AE_LOG_DEBUG = 10, AE_LOG_INFO = 20, AE_LOG_WARNING = 30, AE_LOG_ERROR = 40, AE_LOG_CRITICAL = 50 };

void ae_log_init(void);
int ae_log_level(void);
void ae_log_set_level(int level);
int ae_log_level_from_name(const char *name); /* -1 if unknown */
const char *ae_log_level_name(int level);
void ae_log_set_json(int on);
void ae_log_secret(const char *secret);

#if defined(__GNUC__)
#define AE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define AE_PRINTF(a, b)
#endif

/* module: the unit name (or "engine"); line: script line or 0. */
void ae_log(int level, const char *module, int line, const char *fmt, ...) AE_PRINTF(4, 5);
void ae_logv(int level, const char *module, int line, const char *fmt, va_list ap);

#define AE_LOG_ENGINE(level, ...) ae_log((level), "engine", 0, __VA_ARGS__)

#endif
