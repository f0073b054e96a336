/* http_server.c - the engine's HTTP server (libevent evhttp), module
 * "ae.core.httpd"; ae/httpd.lua is the Lua half (require "ae.httpd").
 *
 * Servers are process-global: the engine's main server (config http.listen,
 * env AE_HTTP_LISTEN, default 0.0.0.0:5000) with the built-in routes
 * GET /_health, /_ready and /metrics, plus extra listeners units open with
 * httpd.listen(addr). Several units may mount routes on one server; a route
 * is an ae_resource of its unit, so draining the unit removes it.
 *
 * Each request matched to a route is handled in a new task of the route's
 * unit: the task runs the unit's dispatcher (ae/httpd.lua) with the handler,
 * the request table and a "pending" userdata; the dispatcher answers through
 * respond(). If the unit's state is closed while the request is pending, the
 * pending userdata's __gc answers 503. Routing, CORS preflight, 404/405, 413
 * (evhttp's max body size), malformed requests (evhttp answers 400) and slow
 * clients (evhttp timeouts) are handled here without entering Lua.
 */
#define _POSIX_C_SOURCE 200809L
#include "config.h"
#include "engine.h"
#include "log.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <lualib.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define PENDING_MT "ae.httpd.pending"
#define HANDLE_MT "ae.httpd.server"
#define DISPATCH_KEY "ae.httpd.dispatch"
#define MAX_SEGMENTS 128

typedef struct server server;
typedef struct pending pending;

typedef struct route {
    struct route *next;
    server *srv;
    char method[16]; /* "GET", ... or "*" */
    char *pattern;
    int nseg;
    char **segs; /* "lit", ":name" or "*name" */
    int score;   /* specificity: literals weigh most */
    ae_unit *unit;
    int fn_ref; /* handler, in the unit's registry */
    ae_resource res;
} route;

struct pending {
    struct evhttp_request *req;
    server *srv;
    pending *prev, *next;
    double started;
    int done;
};

struct server {
    server *next;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    char *requested; /* address as asked for */
    char host[INET6_ADDRSTRLEN + 2];
    int port;
    int is_main;
    int refs;    /* open handles (httpd.listen) */
    int closing; /* no intake; freed when the last pending request is answered */
    int free_scheduled;
    route *routes;
    pending *pending;
    /* CORS */
    int cors_on, cors_any, cors_credentials, cors_max_age, norigins;
    char **origins;
    char *cors_methods, *cors_headers;
};

typedef struct {
    server *srv;
    ae_unit *owner;
    ae_resource res;
    int self_ref;
    int closed;
} handle;

static server *servers;
static server *main_srv;
static lua_State *scratch; /* for /_ready status providers */

static const char *method_name(enum evhttp_cmd_type c) {
    switch (c) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "UNKNOWN";
    }
}

static int valid_method(const char *m) {
    static const char *const ok[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "*", NULL};
    for (int i = 0; ok[i]; i++)
        if (strcmp(m, ok[i]) == 0) return 1;
    return 0;
}

/* ---------------------------------------------------------------- JSON out */

static void json_string(struct evbuffer *b, const char *s, size_t n) {
    evbuffer_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': evbuffer_add(b, "\\\"", 2); break;
        case '\\': evbuffer_add(b, "\\\\", 2); break;
        case '\n': evbuffer_add(b, "\\n", 2); break;
        case '\r': evbuffer_add(b, "\\r", 2); break;
        case '\t': evbuffer_add(b, "\\t", 2); break;
        default:
            if (c < 0x20)
                evbuffer_add_printf(b, "\\u%04x", c);
            else
                evbuffer_add(b, &s[i], 1);
        }
    }
    evbuffer_add(b, "\"", 1);
}

/* A plain Lua value as JSON (status documents: strings, numbers, booleans,
 * tables; a table 1..n is an array). */
static void json_value(struct evbuffer *b, lua_State *L, int idx, int depth) {
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: evbuffer_add_printf(b, "%s", lua_toboolean(L, idx) ? "true" : "false"); break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            evbuffer_add_printf(b, "%lld", (long long)lua_tointeger(L, idx));
        else if (isfinite(lua_tonumber(L, idx)))
            evbuffer_add_printf(b, "%.17g", lua_tonumber(L, idx));
        else
            evbuffer_add(b, "null", 4);
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        json_string(b, s, n);
        break;
    }
    case LUA_TTABLE: {
        if (depth > 16) {
            evbuffer_add(b, "null", 4);
            break;
        }
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            count++;
            lua_pop(L, 1);
        }
        if (n > 0 && n == count) {
            evbuffer_add(b, "[", 1);
            for (lua_Integer i = 1; i <= n; i++) {
                if (i > 1) evbuffer_add(b, ",", 1);
                lua_rawgeti(L, idx, i);
                json_value(b, L, -1, depth + 1);
                lua_pop(L, 1);
            }
            evbuffer_add(b, "]", 1);
        } else {
            int first = 1;
            evbuffer_add(b, "{", 1);
            lua_pushnil(L);
            while (lua_next(L, idx)) {
                if (lua_type(L, -2) == LUA_TSTRING) {
                    if (!first) evbuffer_add(b, ",", 1);
                    first = 0;
                    size_t kn;
                    const char *k = lua_tolstring(L, -2, &kn);
                    json_string(b, k, kn);
                    evbuffer_add(b, ":", 1);
                    json_value(b, L, -1, depth + 1);
                }
                lua_pop(L, 1);
            }
            evbuffer_add(b, "}", 1);
        }
        break;
    }
    default: evbuffer_add(b, "null", 4); break;
    }
}

/* ---------------------------------------------------------------- replies */

static const char *header(struct evhttp_request *req, const char *name) {
    return evhttp_find_header(evhttp_request_get_input_headers(req), name);
}

static int origin_allowed(server *srv, const char *origin) {
    if (srv->cors_any) return 1;
    for (int i = 0; i < srv->norigins; i++)
        if (strcmp(srv->origins[i], origin) == 0) return 1;
    return 0;
}

static void add_cors(server *srv, struct evhttp_request *req) {
    if (!srv || !srv->cors_on) return;
    const char *origin = header(req, "Origin");
    if (!origin || !origin_allowed(srv, origin)) return;
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_remove_header(out, "Access-Control-Allow-Origin");
    evhttp_add_header(out, "Access-Control-Allow-Origin", srv->cors_any && !srv->cors_credentials ? "*" : origin);
    if (!srv->cors_any || srv->cors_credentials) evhttp_add_header(out, "Vary", "Origin");
    if (srv->cors_credentials) evhttp_add_header(out, "Access-Control-Allow-Credentials", "true");
}

static void count_reply(int code, double started) {
    char c[16];
    snprintf(c, sizeof c, "%d", code);
    ae_metric_inc("aengine_http_server_requests", "HTTP requests answered by the engine's server", "code", c, 1);
    if (started > 0)
        ae_metric_observe("aengine_http_server_request_seconds", "Time to answer an HTTP request", NULL, NULL,
                          ae_clock_monotonic() - started);
}

/* Reply from C: body is sent as is with the given content type. */
static void reply(server *srv, struct evhttp_request *req, int code, const char *ctype, const char *body, size_t len,
                  double started) {
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    if (ctype) evhttp_add_header(out, "Content-Type", ctype);
    add_cors(srv, req);
    struct evbuffer *b = evbuffer_new();
    if (b && body) evbuffer_add(b, body, len);
    evhttp_send_reply(req, code, NULL, b);
    if (b) evbuffer_free(b);
    count_reply(code, started);
}

static void reply_error(server *srv, struct evhttp_request *req, int code, const char *msg, double started) {
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, code, NULL);
        return;
    }
    evbuffer_add(b, "{\"error\":", 9);
    json_string(b, msg, strlen(msg));
    evbuffer_add(b, "}", 1);
    size_t n = evbuffer_get_length(b);
    reply(srv, req, code, "application/json", (const char *)evbuffer_pullup(b, -1), n, started);
    evbuffer_free(b);
}

/* ---------------------------------------------------------------- pending */

static void server_maybe_free(server *srv);

static void pending_unlink(pending *p) {
    server *srv = p->srv;
    if (!srv) return;
    if (p->prev)
        p->prev->next = p->next;
    else
        srv->pending = p->next;
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = NULL;
    p->srv = NULL;
    server_maybe_free(srv);
}

/* Answer a pending request that will never get its handler's reply. */
static void pending_abort(pending *p, int code, const char *msg) {
    if (p->done) return;
    p->done = 1;
    server *srv = p->srv;
    if (p->req) {
        /* after the loop ended (units force-closed at exit) nothing would
         * write the reply out: write it to the socket now */
        struct event_base *base = ae_engine_base();
        struct evhttp_connection *conn = evhttp_request_get_connection(p->req);
        struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
        reply_error(srv, p->req, code, msg, p->started);
        if (bev && base && event_base_got_break(base))
            evbuffer_write(bufferevent_get_output(bev), bufferevent_getfd(bev));
    }
    p->req = NULL;
    pending_unlink(p);
}

static int pending_gc(lua_State *L) {
    pending *p = luaL_checkudata(L, 1, PENDING_MT);
    pending_abort(p, 503, "service unavailable: the handler's unit stopped before answering");
    return 0;
}

/* ---------------------------------------------------------------- servers */

static void route_free(route *r) {
    ae_unit_remove_resource(&r->res);
    if (r->unit && r->unit->L && r->fn_ref != LUA_NOREF) luaL_unref(r->unit->L, LUA_REGISTRYINDEX, r->fn_ref);
    for (int i = 0; i < r->nseg; i++)
        free(r->segs[i]);
    free(r->segs);
    free(r->pattern);
    free(r);
}

static void route_unlink(route *r) {
    if (!r->srv) return;
    for (route **pp = &r->srv->routes; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    r->srv = NULL;
}

static void server_free(server *srv) {
    while (srv->pending)
        pending_abort(srv->pending, 503, "service unavailable: server closing");
    while (srv->routes) {
        route *r = srv->routes;
        route_unlink(r);
        route_free(r);
    }
    for (server **pp = &servers; *pp; pp = &(*pp)->next)
        if (*pp == srv) {
            *pp = srv->next;
            break;
        }
    if (main_srv == srv) main_srv = NULL;
    if (srv->http) evhttp_free(srv->http);
    for (int i = 0; i < srv->norigins; i++)
        free(srv->origins[i]);
    free(srv->origins);
    free(srv->cors_methods);
    free(srv->cors_headers);
    free(srv->requested);
    free(srv);
}

/* A closing server is freed once its last pending request is answered. The
 * free is deferred to the loop: we may be inside an evhttp callback. */
static void free_later(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    server *srv = arg;
    srv->free_scheduled = 0;
    if (srv->closing && !srv->pending) server_free(srv);
}

static void server_maybe_free(server *srv) {
    if (srv->closing && !srv->pending && !srv->free_scheduled && ae_engine_base()) {
        struct timeval tv = {0, 0};
        srv->free_scheduled = 1;
        event_base_once(ae_engine_base(), -1, EV_TIMEOUT, free_later, srv, &tv);
    }
}

static void server_close(server *srv) {
    if (srv->closing) return;
    srv->closing = 1;
    if (srv->sock) evhttp_del_accept_socket(srv->http, srv->sock);
    srv->sock = NULL;
    while (srv->routes) {
        route *r = srv->routes;
        route_unlink(r);
        route_free(r);
    }
    server_maybe_free(srv);
}

static void httpd_at_exit(void) {
    while (servers)
        server_free(servers);
    if (scratch) lua_close(scratch);
    scratch = NULL;
}

/* "host:port", "[v6]:port", ":port" or "port" -> host, port */
static int parse_address(const char *addr, char *host, size_t hn, int *port) {
    const char *colon;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':') return -1;
        snprintf(host, hn, "%.*s", (int)(end - addr - 1), addr + 1);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon) {
            snprintf(host, hn, "%.*s", (int)(colon - addr), addr);
        } else {
            snprintf(host, hn, "0.0.0.0");
            colon = addr - 1;
        }
    }
    if (!*host) snprintf(host, hn, "0.0.0.0");
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || p < 0 || p > 65535) return -1;
    *port = (int)p;
    return 0;
}

static void on_request(struct evhttp_request *req, void *arg);

static server *server_open(const char *addr, int is_main, char *err, size_t errlen) {
    struct event_base *base = ae_engine_base();
    if (!base) {
        snprintf(err, errlen, "the engine loop is not running");
        return NULL;
    }
    char host[INET6_ADDRSTRLEN + 2];
    int port;
    if (!addr || parse_address(addr, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "invalid listen address '%s' (want host:port)", addr ? addr : "");
        return NULL;
    }
    if (port != 0) /* the same address again: share the server */
        for (server *s = servers; s; s = s->next)
            if (!s->closing && s->port == port && strcmp(s->host, host) == 0) return s;
    struct evhttp *http = evhttp_new(base);
    if (!http) {
        snprintf(err, errlen, "cannot create an HTTP server");
        return NULL;
    }
    struct evhttp_bound_socket *sock = evhttp_bind_socket_with_handle(http, host, (ev_uint16_t)port);
    if (!sock) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
        evhttp_free(http);
        return NULL;
    }
    server *srv = calloc(1, sizeof *srv);
    if (!srv) abort();
    srv->http = http;
    srv->sock = sock;
    srv->requested = strdup(addr);
    snprintf(srv->host, sizeof srv->host, "%s", host);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    srv->port = port;
    if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    srv->is_main = is_main;
    double max_body = ae_config_number("http.max_body", 10 * 1048576.0);
    double max_headers = ae_config_number("http.max_headers", 65536);
    double timeout = ae_config_number("http.timeout", 30);
    evhttp_set_max_body_size(http, (ev_ssize_t)max_body);
    evhttp_set_max_headers_size(http, (ev_ssize_t)max_headers);
    struct timeval tv = {(time_t)timeout, (suseconds_t)((timeout - (double)(time_t)timeout) * 1e6)};
    evhttp_set_timeout_tv(http, &tv);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH | EVHTTP_REQ_TRACE |
                                         EVHTTP_REQ_CONNECT);
    evhttp_set_default_content_type(http, "text/plain; charset=utf-8");
    evhttp_set_gencb(http, on_request, srv);
    srv->next = servers;
    servers = srv;
    ae_engine_at_exit(httpd_at_exit);
    AE_LOG_ENGINE(AE_LOG_INFO, "http server listening on %s:%d%s", srv->host, srv->port, is_main ? " (main)" : "");
    return srv;
}

static const char *main_address_config(void) {
    const char *env = getenv("AE_HTTP_LISTEN");
    if (env && *env) return env;
    return ae_config_string("http.listen", NULL);
}

static server *get_main(const char *addr, char *err, size_t errlen) {
    if (main_srv) return main_srv;
    if (!addr) addr = main_address_config();
    if (!addr) addr = "0.0.0.0:5000";
    main_srv = server_open(addr, 1, err, errlen);
    if (main_srv) main_srv->refs++; /* never closed before exit */
    return main_srv;
}

/* Start the main server at boot when the config or env names an address. */
int ae_httpd_boot(void) {
    const char *addr = main_address_config();
    if (!addr) return 0;
    char err[256];
    if (!get_main(addr, err, sizeof err)) {
        AE_LOG_ENGINE(AE_LOG_CRITICAL, "http: %s", err);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- routing */

static char *decode(const char *s, size_t n, int plus) {
    char *tmp = malloc(n + 1);
    if (!tmp) abort();
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    size_t outn;
    char *d = evhttp_uridecode(tmp, plus, &outn);
    free(tmp);
    if (!d) abort();
    return d;
}

typedef struct {
    int n;
    char *seg[MAX_SEGMENTS];
    const char *raw[MAX_SEGMENTS]; /* start of each segment in the raw path */
} split_path;

static int split(const char *path, split_path *sp) {
    sp->n = 0;
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p) break;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (sp->n >= MAX_SEGMENTS) return -1;
        sp->raw[sp->n] = p;
        sp->seg[sp->n++] = decode(p, n, 0);
        p += n;
    }
    return 0;
}

static void split_free(split_path *sp) {
    for (int i = 0; i < sp->n; i++)
        free(sp->seg[i]);
}

static int route_matches(route *r, split_path *sp) {
    int i = 0;
    for (; i < r->nseg; i++) {
        const char *s = r->segs[i];
        if (s[0] == '*') return 1;
        if (i >= sp->n) return 0;
        if (s[0] == ':') continue;
        if (strcmp(s, sp->seg[i]) != 0) return 0;
    }
    return i == sp->n;
}

static int method_matches(route *r, const char *m) { return r->method[0] == '*' || strcmp(r->method, m) == 0; }

/* Best route for the path and method; *path_known set when some route
 * matches the path with another method (405), allow gets those methods. */
static route *find_route(server *srv, split_path *sp, const char *m, int *path_known, char *allow, size_t an) {
    route *best = NULL;
    *path_known = 0;
    allow[0] = '\0';
    for (route *r = srv->routes; r; r = r->next) {
        if (!route_matches(r, sp)) continue;
        *path_known = 1;
        if (method_matches(r, m) || (strcmp(m, "HEAD") == 0 && strcmp(r->method, "GET") == 0)) {
            /* newest first in the list: ties keep the newest (a reloaded unit) */
            if (!best || r->score > best->score ||
                (r->score == best->score && strcmp(best->method, m) != 0 && strcmp(r->method, m) == 0))
                best = r;
        } else if (!strstr(allow, r->method) && strlen(allow) + strlen(r->method) + 3 < an) {
            if (allow[0]) strcat(allow, ", ");
            strcat(allow, r->method);
        }
    }
    return best;
}

/* ---------------------------------------------------------------- dispatch */

typedef struct {
    server *srv;
    route *r;
    struct evhttp_request *req;
    split_path *sp;
    const char *method;
    const char *path;
    double started;
    pending *p;
} dispatch_ctx;

static void push_query(lua_State *L, const char *q) {
    lua_newtable(L);
    if (!q) return;
    const char *p = q;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        if (n > 0) {
            const char *eq = memchr(p, '=', n);
            size_t kn = eq ? (size_t)(eq - p) : n;
            char *k = decode(p, kn, 1);
            char *v = eq ? decode(eq + 1, n - kn - 1, 1) : strdup("");
            if (!v) abort();
            lua_pushstring(L, v);
            lua_setfield(L, -2, k);
            free(k);
            free(v);
        }
        p += n;
        if (*p == '&') p++;
    }
}

static void push_headers(lua_State *L, struct evhttp_request *req) {
    lua_newtable(L);
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    char name[256];
    for (struct evkeyval *kv = h->tqh_first; kv; kv = kv->next.tqe_next) {
        size_t i = 0;
        for (; kv->key[i] && i < sizeof name - 1; i++)
            name[i] = (char)tolower((unsigned char)kv->key[i]);
        name[i] = '\0';
        lua_getfield(L, -1, name);
        if (lua_isstring(L, -1)) { /* repeated header: joined as "a, b" */
            lua_pushstring(L, ", ");
            lua_pushstring(L, kv->value);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushstring(L, kv->value);
        }
        lua_setfield(L, -2, name);
    }
}

/* Runs protected on the unit's main state: builds the request and spawns
 * the handler task. */
static int spawn_request(lua_State *L) {
    dispatch_ctx *c = lua_touserdata(L, 1);
    route *r = c->r;
    ae_unit *u = r->unit;
    lua_settop(L, 0);
    lua_getfield(L, LUA_REGISTRYINDEX, DISPATCH_KEY);
    if (!lua_isfunction(L, -1)) return luaL_error(L, "ae.httpd: the unit has no request dispatcher");
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->fn_ref);
    lua_createtable(L, 0, 8);
    lua_pushstring(L, c->method);
    lua_setfield(L, -2, "method");
    lua_pushstring(L, c->path);
    lua_setfield(L, -2, "path");
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(c->req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    lua_pushstring(L, evhttp_request_get_uri(c->req));
    lua_setfield(L, -2, "uri");
    push_query(L, q);
    lua_setfield(L, -2, "query");
    /* params */
    lua_newtable(L);
    for (int i = 0; i < r->nseg; i++) {
        const char *s = r->segs[i];
        if (s[0] == ':') {
            lua_pushstring(L, c->sp->seg[i]);
            lua_setfield(L, -2, s + 1);
        } else if (s[0] == '*') {
            if (i < c->sp->n) {
                luaL_Buffer b;
                luaL_buffinit(L, &b);
                for (int k = i; k < c->sp->n; k++) {
                    if (k > i) luaL_addchar(&b, '/');
                    luaL_addstring(&b, c->sp->seg[k]);
                }
                luaL_pushresult(&b);
            } else {
                lua_pushliteral(L, "");
            }
            lua_setfield(L, -2, s + 1);
            break;
        }
    }
    lua_setfield(L, -2, "params");
    push_headers(L, c->req);
    lua_setfield(L, -2, "headers");
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t blen = evbuffer_get_length(in);
    lua_pushlstring(L, blen ? (const char *)evbuffer_pullup(in, -1) : "", blen);
    lua_setfield(L, -2, "body");
    char *peer = NULL;
    ev_uint16_t pport = 0;
    struct evhttp_connection *conn = evhttp_request_get_connection(c->req);
    if (conn) evhttp_connection_get_peer(conn, &peer, &pport);
    if (peer) {
        lua_pushfstring(L, strchr(peer, ':') ? "[%s]:%d" : "%s:%d", peer, (int)pport);
        lua_setfield(L, -2, "remote");
    }
    /* pending last: once created, its __gc guarantees an answer */
    pending *p = lua_newuserdatauv(L, sizeof *p, 0);
    memset(p, 0, sizeof *p);
    luaL_setmetatable(L, PENDING_MT);
    p->req = c->req;
    p->srv = c->srv;
    p->started = c->started;
    p->next = c->srv->pending;
    if (p->next) p->next->prev = p;
    c->srv->pending = p;
    c->p = p;
    char name[64];
    snprintf(name, sizeof name, "http %s %.48s", c->method, c->path);
    ae_task_spawn(u, L, 3, name);
    return 0;
}

static void serve_builtin(server *srv, struct evhttp_request *req, const char *path, const char *m, double started) {
    (void)m;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    int verbose = q && (strstr(q, "verbose=1") || strstr(q, "verbose=true"));
    if (strcmp(path, "/_health") == 0 && !verbose) {
        reply(srv, req, 200, "application/json", "null", 4, started);
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        size_t len;
        char *text = ae_metrics_render(&len);
        reply(srv, req, 200, AE_METRICS_CONTENT_TYPE, text, len, started);
        free(text);
        return;
    }
    /* /_ready or /_health?verbose=1 */
    if (!scratch) {
        scratch = luaL_newstate();
        if (!scratch) {
            reply_error(srv, req, 500, "out of memory", started);
            return;
        }
    }
    lua_settop(scratch, 0);
    int ready = ae_status_collect(scratch);
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        reply_error(srv, req, 500, "out of memory", started);
        return;
    }
    evbuffer_add_printf(b, "{\"ready\":%s,\"status\":", ready ? "true" : "false");
    json_value(b, scratch, -1, 0);
    evbuffer_add(b, "}", 1);
    lua_settop(scratch, 0);
    size_t n = evbuffer_get_length(b);
    reply(srv, req, ready ? 200 : 503, "application/json", (const char *)evbuffer_pullup(b, -1), n, started);
    evbuffer_free(b);
}

static int is_builtin(const char *path) {
    return strcmp(path, "/_health") == 0 || strcmp(path, "/_ready") == 0 || strcmp(path, "/metrics") == 0;
}

static void on_request(struct evhttp_request *req, void *arg) {
    server *srv = arg;
    double started = ae_clock_monotonic();
    const char *m = method_name(evhttp_request_get_command(req));
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path) path = "/";
    if (srv->closing) {
        reply_error(srv, req, 503, "service unavailable: server closing", started);
        return;
    }
    if (srv->is_main && is_builtin(path) && (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)) {
        serve_builtin(srv, req, path, m, started);
        return;
    }
    split_path sp;
    if (split(path, &sp) != 0) {
        split_free(&sp);
        reply_error(srv, req, 414, "path has too many segments", started);
        return;
    }
    int known;
    char allow[128];
    /* CORS preflight: OPTIONS with Access-Control-Request-Method, answered here */
    const char *acrm = header(req, "Access-Control-Request-Method");
    if (srv->cors_on && strcmp(m, "OPTIONS") == 0 && acrm) {
        route *r = find_route(srv, &sp, acrm, &known, allow, sizeof allow);
        split_free(&sp);
        const char *origin = header(req, "Origin");
        if (!known) {
            reply_error(srv, req, 404, "not found", started);
            return;
        }
        if (!r || !origin || !origin_allowed(srv, origin)) {
            reply_error(srv, req, 403, "CORS preflight refused", started);
            return;
        }
        struct evkeyvalq *out = evhttp_request_get_output_headers(req);
        evhttp_add_header(out, "Access-Control-Allow-Methods", srv->cors_methods);
        const char *acrh = header(req, "Access-Control-Request-Headers");
        if (srv->cors_headers)
            evhttp_add_header(out, "Access-Control-Allow-Headers", srv->cors_headers);
        else if (acrh)
            evhttp_add_header(out, "Access-Control-Allow-Headers", acrh);
        char age[32];
        snprintf(age, sizeof age, "%d", srv->cors_max_age);
        evhttp_add_header(out, "Access-Control-Max-Age", age);
        reply(srv, req, 204, NULL, NULL, 0, started);
        return;
    }
    route *r = find_route(srv, &sp, m, &known, allow, sizeof allow);
    if (!r) {
        split_free(&sp);
        if (known) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
            reply_error(srv, req, 405, "method not allowed", started);
        } else {
            reply_error(srv, req, 404, "not found", started);
        }
        return;
    }
    ae_unit *u = r->unit;
    if (!u || !u->L || (u->state != AE_UNIT_RUNNING && u->state != AE_UNIT_STARTING)) {
        split_free(&sp);
        reply_error(srv, req, 503, "service unavailable: unit stopping", started);
        return;
    }
    char *dpath = decode(path, strlen(path), 0);
    dispatch_ctx c = {srv, r, req, &sp, m, dpath, started, NULL};
    lua_State *L = u->L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, spawn_request);
    lua_pushlightuserdata(L, &c);
    int st = lua_pcall(L, 1, 0, 0);
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        ae_log(AE_LOG_ERROR, u->name, 0, "http %s %s: cannot start the handler: %s", m, path, msg ? msg : "?");
        ae_metric_inc("aengine_http_server_dispatch_errors", "Requests whose handler task could not start", "unit",
                      u->name, 1);
        if (c.p) {
            c.p->done = 1;
            c.p->req = NULL;
            pending_unlink(c.p);
        }
        reply_error(srv, req, st == LUA_ERRMEM ? 503 : 500, "internal error", started);
    }
    lua_settop(L, top);
    free(dpath);
    split_free(&sp);
}

/* ---------------------------------------------------------------- Lua API */

static server *opt_server(lua_State *L, int i, int create) {
    if (!lua_isnoneornil(L, i)) {
        handle *h = luaL_checkudata(L, i, HANDLE_MT);
        if (h->closed || !h->srv) luaL_error(L, "ae.httpd: server is closed");
        return h->srv;
    }
    char err[256];
    server *srv = create ? get_main(NULL, err, sizeof err) : main_srv;
    if (!srv && create) luaL_error(L, "ae.httpd: %s", err);
    return srv;
}

static void route_close_resource(ae_resource *res) {
    route *r = (route *)((char *)res - offsetof(route, res));
    route_unlink(r);
    route_free(r);
}

static void route_describe(ae_resource *res, luaL_Buffer *b) {
    route *r = (route *)((char *)res - offsetof(route, res));
    luaL_addstring(b, r->method);
    luaL_addchar(b, ' ');
    luaL_addstring(b, r->pattern);
}

/* route(server|nil, method, pattern, fn) */
static int l_route(lua_State *L) {
    char method[16];
    const char *ms = luaL_checkstring(L, 2);
    const char *pattern = luaL_checkstring(L, 3);
    luaL_checktype(L, 4, LUA_TFUNCTION);
    size_t i = 0;
    for (; ms[i] && i < sizeof method - 1; i++)
        method[i] = (char)toupper((unsigned char)ms[i]);
    method[i] = '\0';
    if (!valid_method(method) || ms[i]) return luaL_error(L, "ae.httpd.route: unknown method '%s'", ms);
    if (pattern[0] != '/') return luaL_error(L, "ae.httpd.route: the pattern must start with '/' (got '%s')", pattern);
    ae_unit *u = ae_unit_of(L);
    if (u->state == AE_UNIT_DRAINING || u->state == AE_UNIT_STOPPED)
        return luaL_error(L, "ae.httpd.route: unit '%s' is stopping; no new routes", u->name);
    server *srv = opt_server(L, 1, 1);
    /* parse the pattern */
    const char *segs[MAX_SEGMENTS];
    size_t lens[MAX_SEGMENTS];
    int n = 0, score = 0;
    for (const char *p = pattern; *p;) {
        while (*p == '/')
            p++;
        if (!*p) break;
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n >= MAX_SEGMENTS) return luaL_error(L, "ae.httpd.route: pattern too long");
        if ((p[0] == ':' || p[0] == '*') && len == 1)
            return luaL_error(L, "ae.httpd.route: '%c' needs a name in '%s'", p[0], pattern);
        if (n > 0 && segs[n - 1][0] == '*')
            return luaL_error(L, "ae.httpd.route: '*%.*s' must be the last segment of '%s'", (int)lens[n - 1] - 1,
                              segs[n - 1] + 1, pattern);
        segs[n] = p;
        lens[n++] = len;
        score += p[0] == ':' ? 2 : p[0] == '*' ? 1 : 3;
        p += len;
    }
    if (n && segs[n - 1][0] != '*') score += 1000; /* fixed length beats a catch-all */
    for (route *r = srv->routes; r; r = r->next)
        if (r->unit == u && strcmp(r->method, method) == 0 && strcmp(r->pattern, pattern) == 0)
            return luaL_error(L, "ae.httpd.route: %s %s is already routed in this unit", method, pattern);
    route *r = calloc(1, sizeof *r);
    if (!r) return luaL_error(L, "ae.httpd.route: out of memory");
    snprintf(r->method, sizeof r->method, "%s", method);
    r->pattern = strdup(pattern);
    r->segs = calloc((size_t)n + 1, sizeof *r->segs);
    if (!r->pattern || !r->segs) abort();
    for (int k = 0; k < n; k++) {
        if (segs[k][0] == ':' || segs[k][0] == '*') {
            r->segs[k] = malloc(lens[k] + 1);
            if (!r->segs[k]) abort();
            memcpy(r->segs[k], segs[k], lens[k]);
            r->segs[k][lens[k]] = '\0';
        } else {
            r->segs[k] = decode(segs[k], lens[k], 0);
        }
    }
    r->nseg = n;
    r->score = score;
    r->unit = u;
    lua_pushvalue(L, 4);
    r->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    r->srv = srv;
    r->next = srv->routes;
    srv->routes = r;
    ae_unit_add_resource(u, &r->res, "route", route_close_resource);
    r->res.describe = route_describe;
    return 0;
}

/* unroute(server|nil, method, pattern) -> true if removed */
static int l_unroute(lua_State *L) {
    server *srv = opt_server(L, 1, 0);
    const char *ms = luaL_checkstring(L, 2);
    const char *pattern = luaL_checkstring(L, 3);
    ae_unit *u = ae_unit_of(L);
    if (srv)
        for (route *r = srv->routes; r; r = r->next)
            if (r->unit == u && strcasecmp(r->method, ms) == 0 && strcmp(r->pattern, pattern) == 0) {
                route_unlink(r);
                route_free(r);
                lua_pushboolean(L, 1);
                return 1;
            }
    lua_pushboolean(L, 0);
    return 1;
}

static void push_address(lua_State *L, server *srv) {
    const char *host = srv->host;
    if (strcmp(host, "0.0.0.0") == 0) host = "127.0.0.1";
    if (strcmp(host, "::") == 0) host = "::1";
    lua_pushfstring(L, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, srv->port);
}

static void handle_release(handle *h) {
    if (h->closed) return;
    h->closed = 1;
    ae_unit_remove_resource(&h->res);
    server *srv = h->srv;
    h->srv = NULL;
    if (srv && --srv->refs == 0 && !srv->is_main) server_close(srv);
    if (h->self_ref != LUA_NOREF && h->owner && h->owner->L) {
        luaL_unref(h->owner->L, LUA_REGISTRYINDEX, h->self_ref);
        h->self_ref = LUA_NOREF;
    }
}

static void handle_close_resource(ae_resource *res) { handle_release((handle *)((char *)res - offsetof(handle, res))); }

/* listen(addr) -> server handle, port, address */
static int l_listen(lua_State *L) {
    const char *addr = luaL_checkstring(L, 1);
    ae_unit *u = ae_unit_of(L);
    if (u->state == AE_UNIT_DRAINING || u->state == AE_UNIT_STOPPED)
        return luaL_error(L, "ae.httpd.listen: unit '%s' is stopping", u->name);
    char err[256];
    server *srv = server_open(addr, 0, err, sizeof err);
    if (!srv) return ae_fail(L, "ae.httpd.listen: %s", err);
    handle *h = lua_newuserdatauv(L, sizeof *h, 0);
    memset(h, 0, sizeof *h);
    luaL_setmetatable(L, HANDLE_MT);
    h->srv = srv;
    h->owner = u;
    srv->refs++;
    lua_pushvalue(L, -1);
    h->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ae_unit_add_resource(u, &h->res, "listener", handle_close_resource);
    lua_pushinteger(L, srv->port);
    push_address(L, srv);
    return 3;
}

static int l_handle_close(lua_State *L) {
    handle_release(luaL_checkudata(L, 1, HANDLE_MT));
    return 0;
}

static int l_handle_gc(lua_State *L) {
    handle *h = luaL_checkudata(L, 1, HANDLE_MT);
    h->self_ref = LUA_NOREF; /* the state is going away */
    handle_release(h);
    return 0;
}

/* address() -> "host:port" of the main server (started on first use) */
static int l_address(lua_State *L) {
    server *srv = opt_server(L, 1, 1);
    push_address(L, srv);
    lua_pushinteger(L, srv->port);
    return 2;
}

/* start([addr]) -> address, port: start the main server on addr now */
static int l_start(lua_State *L) {
    const char *addr = luaL_optstring(L, 1, NULL);
    char err[256];
    server *srv = get_main(addr, err, sizeof err);
    if (!srv) return ae_fail(L, "ae.httpd.start: %s", err);
    push_address(L, srv);
    lua_pushinteger(L, srv->port);
    return 2;
}

/* What evhttp may write in one go when it writes the rest of a large reply.
 * Libevent's default is 16 KB per loop iteration, so the rest of an 18 MB
 * reply took ~1,100 iterations of a busy server's loop (over a second). */
#define HTTPD_MAX_SINGLE_WRITE (8 * 1024 * 1024)

/* Write a reply at once instead of on the next loop iteration. evhttp_send_reply
 * only enables the connection's write event: epoll then reports the socket
 * writable, the reply is written and the event is disabled again, two
 * epoll_ctl calls and a wakeup per request (40 % of a busy server's system
 * calls; each is costly on a paravirtualized VM). When the whole reply fits
 * in the socket, tell evhttp the write is done (its write callback finishes
 * the request and goes back to reading, which disables the write event before
 * the loop ever applied it). A partial write leaves the rest to evhttp.
 * The bufferevent's own write callback freezes the start of the output buffer
 * after each write (only it may drain it), and so does this one: without the
 * unfreeze, every reply after the first partial one on a kept-alive
 * connection went the slow way. */
static void write_now(struct evhttp_connection *evcon) {
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    if (!bev) return;
    struct evbuffer *out = bufferevent_get_output(bev);
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0 || evbuffer_get_length(out) == 0) return;
    evbuffer_unfreeze(out, 1);
    int written = evbuffer_write(out, fd);
    evbuffer_freeze(out, 1);
    if (written < 0) return; /* EAGAIN or an error: evhttp's own write sees it */
    if (evbuffer_get_length(out) == 0)
        bufferevent_trigger(bev, EV_WRITE, 0);
    else
        bufferevent_set_max_single_write(bev, HTTPD_MAX_SINGLE_WRITE);
}

/* respond(pending, status, headers, body) -> true if sent */
static int l_respond(lua_State *L) {
    pending *p = luaL_checkudata(L, 1, PENDING_MT);
    int status = (int)luaL_checkinteger(L, 2);
    size_t blen = 0;
    const char *body = luaL_optlstring(L, 4, "", &blen);
    if (status < 100 || status > 999) return luaL_error(L, "ae.httpd: invalid status %d", status);
    if (p->done || !p->req) {
        lua_pushboolean(L, 0);
        return 1;
    }
    struct evkeyvalq *out = evhttp_request_get_output_headers(p->req);
    if (lua_istable(L, 3)) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                const char *k = lua_tostring(L, -2);
                if (lua_istable(L, -1)) {
                    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
                        const char *v = lua_tostring(L, -1);
                        if (v && evhttp_add_header(out, k, v) != 0)
                            return luaL_error(L, "ae.httpd: invalid header %s", k);
                        lua_pop(L, 1);
                    }
                    lua_pop(L, 1);
                } else {
                    const char *v = lua_tostring(L, -1);
                    if (!v) return luaL_error(L, "ae.httpd: header '%s' must be a string", k);
                    if (evhttp_add_header(out, k, v) != 0)
                        return luaL_error(L, "ae.httpd: invalid header %s (CR/LF not allowed)", k);
                }
            }
            lua_pop(L, 1);
        }
    }
    p->done = 1;
    server *srv = p->srv;
    add_cors(srv, p->req);
    struct evbuffer *b = evbuffer_new();
    if (b) evbuffer_add(b, body, blen);
    struct evhttp_connection *evcon = evhttp_request_get_connection(p->req);
    evhttp_send_reply(p->req, status, NULL, b);
    if (b) evbuffer_free(b);
    if (evcon) write_now(evcon);
    count_reply(status, p->started);
    p->req = NULL;
    pending_unlink(p);
    lua_pushboolean(L, 1);
    return 1;
}

/* set_dispatcher(fn): the unit's Lua dispatcher (ae/httpd.lua) */
static int l_set_dispatcher(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushvalue(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, DISPATCH_KEY);
    return 0;
}

static char *join_list(lua_State *L, int idx, const char *def) {
    if (lua_isnoneornil(L, idx)) return def ? strdup(def) : NULL;
    if (lua_type(L, idx) == LUA_TSTRING) return strdup(lua_tostring(L, idx));
    luaL_checktype(L, idx, LUA_TTABLE);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int n = (int)lua_rawlen(L, idx);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        const char *s = lua_tostring(L, -1);
        if (!s) luaL_error(L, "ae.httpd.cors: lists hold strings");
        lua_pop(L, 1);
        if (i > 1) luaL_addstring(&b, ", ");
        luaL_addstring(&b, s);
    }
    luaL_pushresult(&b);
    char *r = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return r;
}

/* cors(server|nil, opts): opts.origins, methods, headers, max_age, credentials; false turns CORS off */
static int l_cors(lua_State *L) {
    server *srv = opt_server(L, 1, 1);
    for (int i = 0; i < srv->norigins; i++)
        free(srv->origins[i]);
    free(srv->origins);
    free(srv->cors_methods);
    free(srv->cors_headers);
    srv->origins = NULL;
    srv->cors_methods = srv->cors_headers = NULL;
    srv->norigins = srv->cors_any = srv->cors_on = 0;
    if (lua_isboolean(L, 2) && !lua_toboolean(L, 2)) return 0;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "origins");
    if (lua_isnil(L, -1)) {
        srv->cors_any = 1;
    } else {
        if (lua_isstring(L, -1)) {
            lua_newtable(L);
            lua_pushvalue(L, -2);
            lua_rawseti(L, -2, 1);
            lua_replace(L, -2);
        }
        luaL_argcheck(L, lua_istable(L, -1), 2, "origins must be a list of strings");
        int n = (int)lua_rawlen(L, -1);
        srv->origins = calloc((size_t)n + 1, sizeof *srv->origins);
        if (!srv->origins) abort();
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            const char *o = lua_tostring(L, -1);
            if (!o) return luaL_error(L, "ae.httpd.cors: origins must be strings");
            if (strcmp(o, "*") == 0)
                srv->cors_any = 1;
            else
                srv->origins[srv->norigins++] = strdup(o);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, 2, "methods");
    srv->cors_methods = join_list(L, lua_gettop(L), "GET, POST, PUT, PATCH, DELETE, OPTIONS");
    lua_pop(L, 1);
    lua_getfield(L, 2, "headers");
    srv->cors_headers = join_list(L, lua_gettop(L), NULL);
    lua_pop(L, 1);
    lua_getfield(L, 2, "max_age");
    srv->cors_max_age = (int)luaL_optinteger(L, -1, 600);
    lua_pop(L, 1);
    lua_getfield(L, 2, "credentials");
    srv->cors_credentials = lua_toboolean(L, -1);
    lua_pop(L, 1);
    srv->cors_on = 1;
    return 0;
}

/* routes(server|nil) -> list of {method=, pattern=, unit=} */
static int l_routes(lua_State *L) {
    server *srv = opt_server(L, 1, 0);
    lua_newtable(L);
    int i = 1;
    for (route *r = srv ? srv->routes : NULL; r; r = r->next) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, r->method);
        lua_setfield(L, -2, "method");
        lua_pushstring(L, r->pattern);
        lua_setfield(L, -2, "pattern");
        lua_pushstring(L, r->unit ? r->unit->name : "?");
        lua_setfield(L, -2, "unit");
        lua_rawseti(L, -2, i++);
    }
    return 1;
}

int luaopen_ae_core_httpd(lua_State *L) {
    if (luaL_newmetatable(L, PENDING_MT)) {
        lua_pushcfunction(L, pending_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, HANDLE_MT)) {
        static const luaL_Reg hm[] = {{"close", l_handle_close}, {NULL, NULL}};
        luaL_newlib(L, hm);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_handle_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg f[] = {{"route", l_route},
                                 {"unroute", l_unroute},
                                 {"listen", l_listen},
                                 {"address", l_address},
                                 {"start", l_start},
                                 {"respond", l_respond},
                                 {"set_dispatcher", l_set_dispatcher},
                                 {"cors", l_cors},
                                 {"routes", l_routes},
                                 {NULL, NULL}};
    luaL_newlib(L, f);
    return 1;
}
