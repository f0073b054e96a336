/* log.c - log lines in the original platform's layout (platform.md §8), or
 * JSON lines, with registered secrets masked; and the ae.log Lua module.
 *
 * Environment: ENVIRONMENT_NAME (printed, "None" when unset, as the original),
 * AE_LOG_LEVEL (DEBUG..CRITICAL, default DEBUG as the original),
 * AE_LOG_FORMAT=json. Lines go to stdout, flushed per line.
 */
#define _POSIX_C_SOURCE 200809L
#include "log.h"
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_SECRETS 64

static struct {
    int level, json;
    char env[128], host[128];
    char *secrets[MAX_SECRETS];
    int nsecrets;
} lg = {AE_LOG_DEBUG, 0, "None", "localhost", {0}, 0};

static const char *names[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};

int ae_log_level_from_name(const char *name) {
    for (int i = 0; i < 5; i++)
        if (strcasecmp(name, names[i]) == 0) return (i + 1) * 10;
    if (strcasecmp(name, "warn") == 0) return AE_LOG_WARNING;
    return -1;
}

const char *ae_log_level_name(int level) {
    int i = level / 10 - 1;
    if (i < 0) i = 0;
    if (i > 4) i = 4;
    return names[i];
}

void ae_log_init(void) {
    const char *e = getenv("ENVIRONMENT_NAME");
    snprintf(lg.env, sizeof lg.env, "%s", e && *e ? e : "None");
    if (gethostname(lg.host, sizeof lg.host) != 0) snprintf(lg.host, sizeof lg.host, "localhost");
    lg.host[sizeof lg.host - 1] = '\0';
    e = getenv("AE_LOG_LEVEL");
    if (e && *e) {
        int l = ae_log_level_from_name(e);
        if (l > 0) lg.level = l;
    }
    e = getenv("AE_LOG_FORMAT");
    lg.json = e && strcmp(e, "json") == 0;
}

int ae_log_level(void) { return lg.level; }
void ae_log_set_level(int level) { lg.level = level; }
void ae_log_set_json(int on) { lg.json = on; }

void ae_log_secret(const char *secret) {
    if (!secret || strlen(secret) < 3) return; /* masking "a" would garble every line */
    for (int i = 0; i < lg.nsecrets; i++)
        if (strcmp(lg.secrets[i], secret) == 0) return;
    if (lg.nsecrets < MAX_SECRETS) lg.secrets[lg.nsecrets++] = strdup(secret);
}

/* Replace every registered secret in s (in place; result may be shorter). */
static void mask(char *s) {
    for (int i = 0; i < lg.nsecrets; i++) {
        const char *sec = lg.secrets[i];
        size_t n = strlen(sec);
        char *p;
        while ((p = strstr(s, sec)) != NULL) {
            const char *stars = "********";
            size_t m = n < 8 ? n : 8;
            memcpy(p, stars, m);
            memmove(p + m, p + n, strlen(p + n) + 1);
        }
    }
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

void ae_logv(int level, const char *module, int line, const char *fmt, va_list ap) {
    if (level < lg.level) return;
    char stackbuf[2048];
    char *msg = stackbuf;
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(stackbuf, sizeof stackbuf, fmt, ap);
    if (n >= (int)sizeof stackbuf) {
        msg = malloc((size_t)n + 1);
        if (msg)
            vsnprintf(msg, (size_t)n + 1, fmt, cp);
        else
            msg = stackbuf;
    }
    va_end(cp);
    mask(msg);
    char ts[32];
    double now = ae_engine_base() ? ae_clock_now() : (double)time(NULL);
    time_t secs = (time_t)now;
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
    if (lg.json) {
        fputs("{\"time\":", stdout);
        json_str(stdout, ts);
        fputs(",\"env\":", stdout);
        json_str(stdout, lg.env);
        fputs(",\"host\":", stdout);
        json_str(stdout, lg.host);
        fputs(",\"unit\":", stdout);
        json_str(stdout, module ? module : "engine");
        fprintf(stdout, ",\"line\":%d,\"level\":\"%s\",\"message\":", line, ae_log_level_name(level));
        json_str(stdout, msg);
        fputs("}\n", stdout);
    } else {
        fprintf(stdout, "%s: %s: %s: %s::%d %s: %s\n", ts, lg.env, lg.host, module ? module : "engine", line,
                ae_log_level_name(level), msg);
    }
    fflush(stdout);
    if (msg != stackbuf) free(msg);
}

void ae_log(int level, const char *module, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ae_logv(level, module, line, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------- ae.log */

static int caller_line(lua_State *L) {
    lua_Debug ar;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar)) return ar.currentline;
    return 0;
}

/* log.<level>(fmt, ...): string.format when there are extra arguments,
 * tostring of the single argument otherwise. */
static int log_at(lua_State *L, int level) {
    if (level < lg.level) return 0;
    int n = lua_gettop(L);
    const char *msg;
    if (n > 1) {
        lua_getglobal(L, "string");
        lua_getfield(L, -1, "format");
        lua_remove(L, -2);
        lua_insert(L, 1);
        if (lua_pcall(L, n, 1, 0) != LUA_OK) {
            /* a bad format string must not lose the line: log what we have */
            msg = lua_pushfstring(L, "(bad log format: %s)", lua_tostring(L, -1));
        } else {
            msg = lua_tostring(L, -1);
        }
    } else {
        msg = luaL_tolstring(L, 1, NULL);
    }
    ae_unit *u = ae_unit_of(L);
    ae_log(level, u ? u->name : "lua", caller_line(L), "%s", msg ? msg : "");
    return 0;
}

static int l_debug(lua_State *L) { return log_at(L, AE_LOG_DEBUG); }
static int l_info(lua_State *L) { return log_at(L, AE_LOG_INFO); }
static int l_warning(lua_State *L) { return log_at(L, AE_LOG_WARNING); }
static int l_error(lua_State *L) { return log_at(L, AE_LOG_ERROR); }
static int l_critical(lua_State *L) { return log_at(L, AE_LOG_CRITICAL); }

/* level() -> name; level(name) sets it for the whole engine */
static int l_level(lua_State *L) {
    if (lua_isstring(L, 1)) {
        int l = ae_log_level_from_name(lua_tostring(L, 1));
        if (l < 0)
            return luaL_error(L, "ae.log.level: unknown level '%s' (DEBUG, INFO, WARNING, ERROR, CRITICAL)",
                              lua_tostring(L, 1));
        lg.level = l;
    }
    lua_pushstring(L, ae_log_level_name(lg.level));
    return 1;
}

static int l_secret(lua_State *L) {
    const char *s = luaL_optstring(L, 1, NULL);
    if (s) ae_log_secret(s);
    lua_settop(L, 1);
    return 1;
}

static int l_json(lua_State *L) {
    lg.json = lua_toboolean(L, 1);
    return 0;
}

int luaopen_ae_log(lua_State *L) {
    static const luaL_Reg f[] = {
        {"debug", l_debug},       {"info", l_info},   {"warning", l_warning}, {"warn", l_warning}, {"error", l_error},
        {"critical", l_critical}, {"level", l_level}, {"secret", l_secret},   {"json", l_json},    {NULL, NULL}};
    luaL_newlib(L, f);
    return 1;
}
