/* http_client.c - ae.core.http: the HTTP client binding.
 *
 * One CURLM per engine, driven by the libevent loop: libcurl tells us which
 * sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to call it back
 * (CURLMOPT_TIMERFUNCTION); both become events on ae_engine_base(). A request
 * is an easy handle added to that multi; the calling task waits
 * (ae_task_wait) and is woken with the response or the error. Connections
 * stay in the multi's pool for reuse.
 *
 * A client object (ae.core.http.client) owns a share handle (its cookie jar,
 * DNS and TLS session cache) and a cap on transfers in flight; requests over
 * the cap wait in a FIFO queue. ae/http.lua builds URLs, query strings,
 * JSON/form bodies and the public API on top of this.
 *
 * The multi layer (ae_curl_*) is also used by email.c for SMTP.
 */
#define _POSIX_C_SOURCE 200809L
#include "http_client.h"
#include "log.h"

#include <ctype.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------ curl multi */

static struct {
    CURLM *multi;
    struct event *timer_ev;
    int running;
    int init_failed;
} cm;

/* The sockets libcurl asks us to watch, indexed by descriptor.
 *
 * A connection that goes back to libcurl's pool gets CURL_POLL_REMOVE and is
 * usually asked for CURL_POLL_IN again by the next request on it. Freeing
 * and re-creating its event each time costs two epoll_ctl calls per request,
 * so the event of a pooled connection stays registered for reading ("idle")
 * and is reused as is. That is only safe for sockets we know libcurl closes
 * through our CURLOPT_CLOSESOCKETFUNCTION (sockets it opened through our
 * CURLOPT_OPENSOCKETFUNCTION, flag "ours"): libcurl does not report the
 * closing of a pooled connection to the socket callback, and a registered
 * event on a closed descriptor could fire for whatever reuses the number.
 * Other sockets (resolver socketpairs, email's connections) are freed on
 * CURL_POLL_REMOVE as before. An idle socket that becomes readable (the
 * server closed the kept-alive connection) is unregistered at once, so a
 * level-triggered EOF cannot spin the loop; libcurl finds the connection
 * dead when it next checks it. */
typedef struct {
    struct event *ev;
    curl_socket_t fd;
    short kind;         /* EV_READ/EV_WRITE registered now, 0: not registered */
    unsigned char ours; /* opened by open_socket: close_socket will tell us */
    unsigned char idle; /* not in libcurl's socket hash: just opened, or removed (in its pool) */
} sockctx;

static struct {
    sockctx **v;
    size_t n;
} socks;

static sockctx *sock_get(curl_socket_t s) { return s >= 0 && (size_t)s < socks.n ? socks.v[s] : NULL; }

static void sock_free(curl_socket_t s) {
    sockctx *sc = sock_get(s);
    if (!sc) return;
    if (sc->ev) event_free(sc->ev); /* also removes it from the active queue */
    free(sc);
    socks.v[s] = NULL;
}

/* the entry for s, created (not registered) if needed; NULL when out of memory */
static sockctx *sock_make(curl_socket_t s) {
    if (s < 0) return NULL;
    if ((size_t)s >= socks.n) {
        size_t n = socks.n ? socks.n : 64;
        while (n <= (size_t)s)
            n *= 2;
        sockctx **v = realloc(socks.v, n * sizeof *v);
        if (!v) return NULL;
        memset(v + socks.n, 0, (n - socks.n) * sizeof *v);
        socks.v = v;
        socks.n = n;
    }
    if (!socks.v[s]) {
        sockctx *sc = calloc(1, sizeof *sc);
        if (!sc) return NULL;
        sc->fd = s;
        socks.v[s] = sc;
    }
    return socks.v[s];
}

static void finish_job(ae_curl_job *job, CURLcode rc, const char *override) {
    if (!job->active) return;
    job->active = 0;
    ae_timer_stop(&job->timer);
    curl_multi_remove_handle(cm.multi, job->easy);
    const char *msg = override ? override : (job->errbuf[0] ? job->errbuf : curl_easy_strerror(rc));
    char copy[CURL_ERROR_SIZE + 64];
    snprintf(copy, sizeof copy, "%s", msg);
    /* trailing newline libcurl sometimes leaves in errbuf */
    size_t n = strlen(copy);
    while (n > 0 && (copy[n - 1] == '\n' || copy[n - 1] == '\r'))
        copy[--n] = '\0';
    job->done(job, rc, copy);
}

static void check_done(void) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(cm.multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        ae_curl_job *job = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&job);
        CURLcode rc = m->data.result;
        if (job) finish_job(job, rc, NULL);
    }
}

static void on_socket(evutil_socket_t fd, short what, void *arg) {
    sockctx *sc = arg;
    if (sc->idle) {
        /* a pooled connection is readable: closed by the server (or data
         * nobody asked for). Stop watching it; libcurl's own check drops the
         * connection when a request next wants it. */
        event_del(sc->ev);
        sc->kind = 0;
        return;
    }
    int flags = 0;
    if (what & EV_READ) flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE) flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(cm.multi, fd, flags, &cm.running);
    check_done();
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
    curl_multi_socket_action(cm.multi, CURL_SOCKET_TIMEOUT, 0, &cm.running);
    check_done();
}

static int socket_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
    (void)e;
    (void)userp;
    if (what == CURL_POLL_REMOVE) {
        sockctx *sc = sock_get(s);
        if (!sc) return 0;
        if (!sc->ours) {
            sock_free(s);
        } else {
            sc->idle = 1;
            if (sc->kind != EV_READ && sc->kind) {
                event_del(sc->ev);
                sc->kind = 0;
            }
        }
        return 0;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    sockctx *sc = sock_get(s);
    /* an entry libcurl does not know (socketp is ours only while the socket
     * is in its hash) and that is not a pooled connection of ours: left by a
     * socket closed without a REMOVE; its event is stale */
    if (sc && sc != socketp && !sc->idle) sock_free(s);
    sc = sock_make(s);
    if (!sc) return -1;
    if (sc != socketp) curl_multi_assign(cm.multi, s, sc);
    sc->idle = 0;
    if (sc->kind == kind && sc->ev) return 0; /* e.g. a pooled connection asked for reading again */
    if (!sc->ev) {
        sc->ev = event_new(ae_engine_base(), s, kind | EV_PERSIST, on_socket, sc);
        if (!sc->ev) {
            sock_free(s);
            return -1;
        }
    } else {
        if (sc->kind) event_del(sc->ev);
        event_assign(sc->ev, ae_engine_base(), s, kind | EV_PERSIST, on_socket, sc);
    }
    sc->kind = 0;
    if (kind && event_add(sc->ev, NULL) != 0) return -1;
    sc->kind = kind;
    return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION of ae.http's handles: a plain socket, marked as
 * one whose closing close_socket will see */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a) {
    (void)clientp;
    (void)purpose;
    int type = a->socktype;
#ifdef SOCK_CLOEXEC
    type |= SOCK_CLOEXEC;
#endif
    curl_socket_t s = socket(a->family, type, a->protocol);
    if (s == CURL_SOCKET_BAD) return s;
    sock_free(s); /* an entry left by a socket closed behind our back */
    sockctx *sc = sock_make(s);
    if (sc) sc->ours = sc->idle = 1; /* out of memory: an ordinary socket, freed on REMOVE */
    return s;
}

/* CURLOPT_CLOSESOCKETFUNCTION: forget the descriptor before it can be reused */
static int close_socket(void *clientp, curl_socket_t s) {
    (void)clientp;
    sock_free(s);
    return close(s);
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp) {
    (void)m;
    (void)userp;
    if (timeout_ms < 0) {
        evtimer_del(cm.timer_ev);
    } else {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evtimer_add(cm.timer_ev, &tv);
    }
    return 0;
}

static void multi_shutdown(void) {
    if (cm.multi) {
        curl_multi_cleanup(cm.multi); /* closes pooled connections (socket_cb REMOVE) */
        cm.multi = NULL;
    }
    if (cm.timer_ev) {
        event_free(cm.timer_ev);
        cm.timer_ev = NULL;
    }
    for (size_t i = 0; i < socks.n; i++)
        sock_free((curl_socket_t)i); /* none left unless libcurl skipped a REMOVE */
    free(socks.v);
    socks.v = NULL;
    socks.n = 0;
    curl_global_cleanup();
}

CURLM *ae_curl_multi(void) {
    if (cm.multi || cm.init_failed) return cm.multi;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cm.init_failed = 1;
        AE_LOG_ENGINE(AE_LOG_CRITICAL, "ae.http: curl_global_init failed");
        return NULL;
    }
    cm.multi = curl_multi_init();
    cm.timer_ev = evtimer_new(ae_engine_base(), on_timer, NULL);
    if (!cm.multi || !cm.timer_ev) {
        cm.init_failed = 1;
        AE_LOG_ENGINE(AE_LOG_CRITICAL, "ae.http: cannot create the curl multi handle");
        return NULL;
    }
    curl_multi_setopt(cm.multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(cm.multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    /* keep plenty of idle connections for reuse; per-client caps bound the
     * number in flight, so no per-host limit here */
    curl_multi_setopt(cm.multi, CURLMOPT_MAXCONNECTS, 1024L);
    curl_multi_setopt(cm.multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    curl_multi_setopt(cm.multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    ae_engine_at_exit(multi_shutdown);
    return cm.multi;
}

static void job_timeout(ae_timer *tm) {
    ae_curl_job *job = tm->data;
    curl_off_t got = 0;
    curl_easy_getinfo(job->easy, CURLINFO_SIZE_DOWNLOAD_T, &got);
    char msg[160];
    snprintf(msg, sizeof msg,
             "Operation timed out after %.0f milliseconds with %" CURL_FORMAT_CURL_OFF_T " bytes received",
             job->timeout * 1000.0, got);
    finish_job(job, CURLE_OPERATION_TIMEDOUT, msg);
}

int ae_curl_job_start(ae_curl_job *job, double timeout) {
    job->errbuf[0] = '\0';
    if (!ae_curl_multi()) {
        snprintf(job->errbuf, sizeof job->errbuf, "libcurl is not available");
        return -1;
    }
    ae_timer_init(&job->timer, job_timeout, job);
    job->timeout = timeout;
    curl_easy_setopt(job->easy, CURLOPT_PRIVATE, (char *)job);
    curl_easy_setopt(job->easy, CURLOPT_ERRORBUFFER, job->errbuf);
    CURLMcode mc = curl_multi_add_handle(cm.multi, job->easy);
    if (mc != CURLM_OK) {
        snprintf(job->errbuf, sizeof job->errbuf, "%s", curl_multi_strerror(mc));
        return -1;
    }
    job->active = 1;
    if (timeout > 0) ae_timer_start(&job->timer, ae_clock_now() + timeout);
    return 0;
}

void ae_curl_job_abort(ae_curl_job *job) {
    if (!job->active) return;
    job->active = 0;
    ae_timer_stop(&job->timer);
    curl_multi_remove_handle(cm.multi, job->easy);
}

/* host of a URL without userinfo: between "://" and the next '/', ':', '?' or
 * '#' ("[...]" kept whole for IPv6) */
static int quick_host(const char *url, char *host, size_t hostlen) {
    const char *p = strstr(url, "://");
    if (!p) return -1;
    p += 3;
    const char *e = p;
    if (*e == '[') {
        e = strchr(e, ']');
        if (!e) return -1;
        e++;
    } else {
        e += strcspn(e, "/:?#");
    }
    if (e == p) return -1;
    if (host) snprintf(host, hostlen, "%.*s", (int)(e - p), p);
    return 0;
}

void ae_curl_safe_url(const char *url, char *out, size_t outlen, char *host, size_t hostlen) {
    if (host && hostlen) host[0] = '\0';
    /* common case: no credentials in the URL, nothing to parse */
    if (!strchr(url, '@') && strlen(url) < outlen && quick_host(url, host, hostlen) == 0) {
        memcpy(out, url, strlen(url) + 1);
        return;
    }
    CURLU *u = curl_url();
    char *s = NULL, *h = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK) {
        curl_url_set(u, CURLUPART_USER, NULL, 0);
        curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
        curl_url_set(u, CURLUPART_OPTIONS, NULL, 0);
        curl_url_get(u, CURLUPART_URL, &s, 0);
        curl_url_get(u, CURLUPART_HOST, &h, 0);
    }
    if (s) {
        snprintf(out, outlen, "%s", s);
    } else {
        /* unparsable: keep it, but drop anything that looks like userinfo */
        const char *at = strchr(url, '@'), *scheme = strstr(url, "://");
        if (at && scheme && at > scheme)
            snprintf(out, outlen, "%.*s://%s", (int)(scheme - url), url, at + 1);
        else
            snprintf(out, outlen, "%s", url);
    }
    if (h && host) snprintf(host, hostlen, "%s", h);
    curl_free(s);
    curl_free(h);
    if (u) curl_url_cleanup(u);
}

/* ------------------------------------------------------------- buffers */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static int buf_add(buf *b, const char *s, size_t n) {
    if (b->oom) return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static void buf_free(buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------- clients */

#define CLIENT_MT "ae.core.http.client"

typedef struct xfer xfer;

static size_t on_body(char *p, size_t size, size_t n, void *ud);
static size_t on_header(char *p, size_t size, size_t n, void *ud);

typedef struct hclient {
    CURLSH *share;
    int cookies;
    int max_in_flight, in_flight;
    xfer *qhead, *qtail;
    int refs;   /* the Lua userdata + every live transfer */
    xfer *idle; /* finished transfers kept with their easy handle for reuse */
    int nidle, idle_cap;
} hclient;

/* A transfer. Kept in its client's idle list after use, with its easy
 * handle still configured: the options that never change (callbacks,
 * protocols, encoding, user agent, share) are set once when the handle is
 * created, and a new request only sets what differs from the last one. */
struct xfer {
    ae_curl_job job;
    hclient *cl;
    ae_task *task;
    ae_unit *unit;
    struct curl_slist *hdrs;
    char *body;
    buf resp, rhdr;
    double timeout;
    int queued;
    xfer *qnext;
    /* what the easy handle holds from the last request */
    long set_connect_ms, set_follow, set_maxredirs, set_verify;
    unsigned char set_ca, set_tls, set_auth, set_nobody, set_post, set_custom;
    char method[16];
    char host[256];
    char safe_url[1024];
};

/* What libcurl reads from a socket at a time (its default is 16 KB). It
 * reads once per readable event, so an 18 MB reply took ~1,100 rounds of a
 * busy loop; allocated once per pooled transfer handle. */
#define RECV_BUFFER (256 * 1024)

/* response buffers bigger than this are not kept with an idle transfer */
#define KEEP_BUF (64 * 1024)

static char expect_none[] = "Expect:";
static struct curl_slist expect_list = {expect_none, NULL};

/* the options that are the same for every request of a client */
static void easy_constant_options(xfer *x) {
    CURL *e = x->job.easy;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)RECV_BUFFER);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "aengine/" AE_VERSION);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)&x->job);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->job.errbuf);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
    if (x->cl->share) curl_easy_setopt(e, CURLOPT_SHARE, x->cl->share);
    if (x->cl->cookies) curl_easy_setopt(e, CURLOPT_COOKIEFILE, ""); /* cookie engine on; jar in the share */
    /* libcurl's defaults, as last set */
    x->set_connect_ms = 300000;
    x->set_follow = 0;
    x->set_maxredirs = 30;
    x->set_verify = 1;
    x->set_ca = x->set_tls = x->set_auth = x->set_nobody = x->set_post = x->set_custom = 0;
}

/* a transfer for a new request: an idle one (handle still configured) or a
 * new one; NULL when out of memory */
static xfer *xfer_take(hclient *c) {
    xfer *x = c->idle;
    if (x) {
        c->idle = x->qnext;
        c->nidle--;
        x->qnext = NULL;
        x->task = NULL;
        x->unit = NULL;
        x->resp.len = x->rhdr.len = 0;
        x->job.errbuf[0] = '\0';
        return x;
    }
    x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->job.easy = curl_easy_init();
    if (!x->job.easy) {
        free(x);
        return NULL;
    }
    x->cl = c;
    easy_constant_options(x);
    return x;
}

static void xfer_destroy(xfer *x) {
    if (x->job.easy) curl_easy_cleanup(x->job.easy);
    curl_slist_free_all(x->hdrs);
    free(x->body);
    buf_free(&x->resp);
    buf_free(&x->rhdr);
    free(x);
}

static void client_unref(hclient *c) {
    if (--c->refs > 0) return;
    while (c->idle) {
        xfer *x = c->idle;
        c->idle = x->qnext;
        xfer_destroy(x);
    }
    if (c->share) curl_share_cleanup(c->share);
    free(c);
}

/* the request is over (the handle is out of the multi): keep the transfer
 * for the next request, or free it */
static void xfer_free(xfer *x) {
    hclient *c = x->cl;
    x->task = NULL;
    x->queued = 0;
    if (x->hdrs) {
        curl_slist_free_all(x->hdrs);
        x->hdrs = NULL;
    }
    free(x->body);
    x->body = NULL;
    if (c->nidle < c->idle_cap && !x->resp.oom && !x->rhdr.oom) {
        if (x->resp.cap > KEEP_BUF) buf_free(&x->resp);
        if (x->rhdr.cap > KEEP_BUF) buf_free(&x->rhdr);
        x->qnext = c->idle;
        c->idle = x;
        c->nidle++;
    } else {
        xfer_destroy(x);
    }
    client_unref(c);
}

static void queue_remove(hclient *c, xfer *x) {
    xfer **pp = &c->qhead;
    xfer *prev = NULL;
    while (*pp && *pp != x) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (!*pp) return;
    *pp = x->qnext;
    if (c->qtail == x) c->qtail = prev;
    x->qnext = NULL;
    x->queued = 0;
}

static void pump(hclient *c);

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    xfer *x = ud;
    if (x->resp.len == 0 && x->resp.cap < (1 << 20)) {
        /* a large body with a Content-Length gets its buffer once: growing by
         * doubling copied it ~twice more (18 MB VeloCloud replies) */
        curl_off_t cl = -1;
        if (curl_easy_getinfo(x->job.easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK && cl > (1 << 20) &&
            cl < (curl_off_t)1 << 32) {
            char *q = realloc(x->resp.p, (size_t)cl + 1);
            if (q) {
                x->resp.p = q;
                x->resp.cap = (size_t)cl + 1;
            }
        }
    }
    return buf_add(&x->resp, p, size * n) == 0 ? size * n : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    xfer *x = ud;
    size_t len = size * n;
    /* a new status line (redirect, 100 Continue): keep only the last
     * response's headers */
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) x->rhdr.len = 0;
    return buf_add(&x->rhdr, p, len) == 0 ? len : 0;
}

/* registry key of the metatable of response tables (ae/http.lua's Response) */
static const char response_mt = 0;

/* Push the response table on co. */
static void push_response(lua_State *co, xfer *x) {
    CURL *e = x->job.easy;
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    char *eff = NULL;
    curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &eff);
    curl_off_t total_us = 0;
    curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &total_us);
    lua_createtable(co, 0, 5);
    lua_pushinteger(co, status);
    lua_setfield(co, -2, "status");
    lua_pushlstring(co, x->resp.p ? x->resp.p : "", x->resp.len);
    lua_setfield(co, -2, "body");
    if (!eff || strcmp(eff, x->safe_url) == 0) {
        lua_pushstring(co, x->safe_url); /* not redirected: already without credentials */
    } else {
        char safe[1024];
        ae_curl_safe_url(eff, safe, sizeof safe, NULL, 0);
        lua_pushstring(co, safe);
    }
    lua_setfield(co, -2, "url");
    lua_pushnumber(co, (double)total_us / 1e6);
    lua_setfield(co, -2, "time");
    /* headers: lower-cased names, repeated headers joined with ", " */
    const char *s = x->rhdr.p, *end = s ? s + x->rhdr.len : NULL;
    int nlines = 0; /* the table at its final size: one rehash at most */
    for (const char *p = s; p && p < end && (p = memchr(p, '\n', (size_t)(end - p))); p++)
        nlines++;
    lua_createtable(co, 0, nlines > 2 ? nlines - 2 : 0); /* minus status line and blank line */
    /* names seen so far (lower-cased, in the raw buffer's order): a name is
     * looked up in the table only when it repeats one of them */
    enum { SEEN_MAX = 32 };
    struct {
        size_t len;
        char name[48];
    } seen[SEEN_MAX];
    int nseen = 0, seen_full = 0;
    while (s && s < end) {
        const char *eol = memchr(s, '\n', (size_t)(end - s));
        const char *next = eol ? eol + 1 : end;
        if (!eol) eol = end;
        const char *colon = memchr(s, ':', (size_t)(eol - s));
        if (colon && colon > s && !(eol - s >= 5 && memcmp(s, "HTTP/", 5) == 0)) {
            char name[256];
            size_t nl = (size_t)(colon - s);
            if (nl >= sizeof name) nl = sizeof name - 1;
            for (size_t i = 0; i < nl; i++)
                name[i] = (char)tolower((unsigned char)s[i]);
            name[nl] = '\0';
            const char *v = colon + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            int repeat = seen_full;
            for (int i = 0; i < nseen && !repeat; i++)
                repeat = seen[i].len == nl && memcmp(seen[i].name, name, nl) == 0;
            if (!repeat) {
                if (nseen < SEEN_MAX && nl < sizeof seen[0].name) {
                    seen[nseen].len = nl;
                    memcpy(seen[nseen].name, name, nl);
                    nseen++;
                } else {
                    seen_full = 1; /* many or long names: look every later name up */
                }
            }
            if (repeat && lua_getfield(co, -1, name) == LUA_TSTRING) {
                lua_pushliteral(co, ", ");
                lua_pushlstring(co, v, (size_t)(ve - v));
                lua_concat(co, 3);
            } else {
                if (repeat) lua_pop(co, 1);
                lua_pushlstring(co, v, (size_t)(ve - v));
            }
            lua_setfield(co, -2, name);
        }
        s = next;
    }
    lua_setfield(co, -2, "headers");
    if (lua_rawgetp(co, LUA_REGISTRYINDEX, &response_mt) == LUA_TTABLE)
        lua_setmetatable(co, -2);
    else
        lua_pop(co, 1);
}

static int task_line(ae_task *t) {
    lua_State *co = ae_task_thread(t);
    lua_Debug ar;
    for (int level = 0; co && lua_getstack(co, level, &ar); level++)
        if (lua_getinfo(co, "Sl", &ar) && ar.currentline > 0 && ar.source[0] == '@' &&
            strncmp(ar.source, "@[aengine]/", 11) != 0)
            return ar.currentline;
    return 0;
}

static void xfer_done(ae_curl_job *job, CURLcode rc, const char *msg) {
    xfer *x = (xfer *)job;
    hclient *c = x->cl;
    c->in_flight--;
    curl_off_t total_us = 0;
    curl_easy_getinfo(job->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    const char *host = x->host[0] ? x->host : "unknown";
    ae_metric_observe("aengine_http_client_seconds", "HTTP client request duration in seconds", "host", host,
                      (double)total_us / 1e6);
    if (rc == CURLE_WRITE_ERROR && (x->resp.oom || x->rhdr.oom)) msg = "out of memory reading the response";
    if (rc != CURLE_OK) {
        ae_metric_inc("aengine_http_client_errors", "HTTP client requests that failed (network, TLS, timeout)", "host",
                      host, 1);
        ae_log(AE_LOG_WARNING, x->unit ? x->unit->name : "engine", x->task ? task_line(x->task) : 0,
               "ae.http: %s %s failed: %s", x->method, x->safe_url, msg);
    }
    if (x->task) {
        lua_State *co = ae_task_thread(x->task);
        if (rc == CURLE_OK) {
            push_response(co, x);
            ae_task_wake(x->task, 1);
        } else {
            lua_pushnil(co);
            lua_pushfstring(co, "ae.http: %s (%s)", msg, x->safe_url);
            ae_task_wake(x->task, 2);
        }
    }
    c->refs++; /* keep c while pumping */
    xfer_free(x);
    pump(c);
    client_unref(c);
}

/* start a transfer now; on failure wake its task with the error */
static int xfer_start(xfer *x) {
    x->cl->in_flight++;
    if (ae_curl_job_start(&x->job, x->timeout) == 0) return 0;
    x->cl->in_flight--;
    return -1;
}

static void pump(hclient *c) {
    while (c->qhead && c->in_flight < c->max_in_flight) {
        xfer *x = c->qhead;
        queue_remove(c, x);
        if (xfer_start(x) != 0) {
            ae_log(AE_LOG_ERROR, x->unit ? x->unit->name : "engine", 0, "ae.http: %s %s failed: %s", x->method,
                   x->safe_url, x->job.errbuf);
            if (x->task) {
                lua_State *co = ae_task_thread(x->task);
                lua_pushnil(co);
                lua_pushfstring(co, "ae.http: %s (%s)", x->job.errbuf, x->safe_url);
                ae_task_wake(x->task, 2);
            }
            xfer_free(x);
        }
    }
}

/* the waiting task is being destroyed (unit force-closed) */
static void xfer_cancel(void *data) {
    xfer *x = data;
    hclient *c = x->cl;
    x->task = NULL;
    if (x->queued) {
        queue_remove(c, x);
        xfer_free(x);
        return;
    }
    ae_curl_job_abort(&x->job);
    c->in_flight--;
    c->refs++;
    xfer_free(x);
    pump(c);
    client_unref(c);
}

static hclient *check_client(lua_State *L, int i) {
    hclient **pc = luaL_checkudata(L, i, CLIENT_MT);
    if (!*pc) luaL_error(L, "ae.http: client is closed");
    return *pc;
}

/* client{cookies = bool, max_in_flight = n} -> client */
static int l_client(lua_State *L) {
    int cookies = 0;
    lua_Integer max = 64;
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_getfield(L, 1, "cookies");
        cookies = lua_toboolean(L, -1);
        lua_getfield(L, 1, "max_in_flight");
        if (!lua_isnil(L, -1)) {
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1)
                return luaL_error(L, "ae.http.client: max_in_flight must be an integer >= 1");
            max = lua_tointeger(L, -1);
        }
        lua_pop(L, 2);
    }
    if (max > 100000) max = 100000;
    if (!ae_curl_multi()) return luaL_error(L, "ae.http: libcurl could not be initialised");
    hclient **pc = lua_newuserdatauv(L, sizeof *pc, 0);
    *pc = NULL;
    luaL_setmetatable(L, CLIENT_MT);
    hclient *c = calloc(1, sizeof *c);
    if (!c) return luaL_error(L, "ae.http: out of memory");
    c->refs = 1;
    c->cookies = cookies;
    c->max_in_flight = (int)max;
    /* no idle transfers with cookies: libcurl 7.88 loses the
     * CURLOPT_COOKIEFILE list of a handle that is reset before a transfer
     * loaded it */
    c->idle_cap = cookies ? 0 : (max < 256 ? (int)max : 256);
    c->share = curl_share_init();
    if (c->share) {
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
        if (cookies) curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE);
    }
    *pc = c;
    return 1;
}

static int l_client_gc(lua_State *L) {
    hclient **pc = luaL_checkudata(L, 1, CLIENT_MT);
    if (*pc) client_unref(*pc);
    *pc = NULL;
    return 0;
}

static int l_client_stats(lua_State *L) {
    hclient *c = check_client(L, 1);
    int queued = 0;
    for (xfer *x = c->qhead; x; x = x->qnext)
        queued++;
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, c->in_flight);
    lua_setfield(L, -2, "in_flight");
    lua_pushinteger(L, queued);
    lua_setfield(L, -2, "queued");
    lua_pushinteger(L, c->max_in_flight);
    lua_setfield(L, -2, "max_in_flight");
    return 1;
}

static CURL *cookie_handle(hclient *c) {
    CURL *e = curl_easy_init();
    if (!e) return NULL;
    curl_easy_setopt(e, CURLOPT_SHARE, c->share);
    return e;
}

/* cookies() -> list of {domain, path, name, value, secure, http_only, expires} */
static int l_client_cookies(lua_State *L) {
    hclient *c = check_client(L, 1);
    lua_newtable(L);
    if (!c->cookies || !c->share) return 1;
    CURL *e = cookie_handle(c);
    if (!e) return luaL_error(L, "ae.http: out of memory");
    struct curl_slist *list = NULL;
    curl_easy_getinfo(e, CURLINFO_COOKIELIST, &list);
    int i = 1;
    for (struct curl_slist *l = list; l; l = l->next) {
        /* Netscape format: domain, tailmatch, path, secure, expires, name, value */
        const char *f[7];
        size_t fl[7];
        const char *s = l->data;
        int nf = 0;
        while (nf < 7) {
            const char *tab = nf < 6 ? strchr(s, '\t') : NULL;
            f[nf] = s;
            fl[nf] = tab ? (size_t)(tab - s) : strlen(s);
            nf++;
            if (!tab) break;
            s = tab + 1;
        }
        if (nf < 7) continue;
        int http_only = 0;
        if (fl[0] > 10 && memcmp(f[0], "#HttpOnly_", 10) == 0) {
            http_only = 1;
            f[0] += 10;
            fl[0] -= 10;
        }
        lua_createtable(L, 0, 7);
        lua_pushlstring(L, f[0], fl[0]);
        lua_setfield(L, -2, "domain");
        lua_pushlstring(L, f[2], fl[2]);
        lua_setfield(L, -2, "path");
        lua_pushlstring(L, f[5], fl[5]);
        lua_setfield(L, -2, "name");
        lua_pushlstring(L, f[6], fl[6]);
        lua_setfield(L, -2, "value");
        lua_pushboolean(L, fl[3] == 4 && memcmp(f[3], "TRUE", 4) == 0);
        lua_setfield(L, -2, "secure");
        lua_pushboolean(L, http_only);
        lua_setfield(L, -2, "http_only");
        lua_pushinteger(L, strtoll(f[4], NULL, 10));
        lua_setfield(L, -2, "expires");
        lua_rawseti(L, -2, i++);
    }
    curl_slist_free_all(list);
    curl_easy_cleanup(e);
    return 1;
}

static int l_client_clear_cookies(lua_State *L) {
    hclient *c = check_client(L, 1);
    if (!c->cookies || !c->share) return 0;
    CURL *e = cookie_handle(c);
    if (!e) return luaL_error(L, "ae.http: out of memory");
    curl_easy_setopt(e, CURLOPT_COOKIELIST, "ALL");
    curl_easy_cleanup(e);
    return 0;
}

/* ------------------------------------------------------------- request */

/* the option getters read table t (0: no table, the default) */
static const char *opt_string(lua_State *L, int t, const char *k) {
    if (!t) return NULL;
    int ty = lua_getfield(L, t, k);
    const char *s = NULL;
    if (ty == LUA_TSTRING)
        s = lua_tostring(L, -1);
    else if (ty != LUA_TNIL)
        luaL_error(L, "ae.http: %s must be a string", k);
    lua_pop(L, 1); /* the string stays alive in the options table */
    return s;
}

static double opt_number(lua_State *L, int t, const char *k, double dflt) {
    if (!t) return dflt;
    int ty = lua_getfield(L, t, k);
    double v = dflt;
    if (ty == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
    else if (ty != LUA_TNIL)
        luaL_error(L, "ae.http: %s must be a number", k);
    lua_pop(L, 1);
    return v;
}

static int opt_bool(lua_State *L, int t, const char *k, int dflt) {
    if (!t) return dflt;
    int ty = lua_getfield(L, t, k);
    int v = ty == LUA_TNIL ? dflt : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static void register_auth_secret(const char *value) {
    ae_log_secret(value);
    const char *sp = strchr(value, ' ');
    if (sp) ae_log_secret(sp + 1); /* the token of "Bearer <token>" */
}

/* request(client, method, url, headers, body, opts) -> response | nil, err
 *   method, url: strings; headers: nil or {"Name: value", ...}; body: nil or
 *   a string; opts: nil or {timeout, connect_timeout, verify, ca, cert, key,
 *   key_password, user, password, follow, max_redirects} (absent: defaults) */
static int l_request(lua_State *L) {
    hclient *c = check_client(L, 1);
    size_t mlen = 0;
    const char *method = luaL_checklstring(L, 2, &mlen);
    const char *url = luaL_checkstring(L, 3);
    int ht = lua_type(L, 4);
    if (ht != LUA_TNIL && ht != LUA_TNONE && ht != LUA_TTABLE) return luaL_error(L, "ae.http: headers must be a table");
    int hidx = 4;
    size_t body_len = 0;
    const char *body = NULL;
    if (lua_type(L, 5) == LUA_TSTRING)
        body = lua_tolstring(L, 5, &body_len);
    else if (!lua_isnoneornil(L, 5))
        return luaL_error(L, "ae.http: body must be a string");
    int ot = 0;
    if (lua_type(L, 6) == LUA_TTABLE)
        ot = 6;
    else if (!lua_isnoneornil(L, 6))
        return luaL_error(L, "ae.http: options must be a table");
    ae_task *t = ae_task_check(L);
    if (mlen == 0 || mlen >= 16) return luaL_error(L, "ae.http: bad method '%s'", method);
    for (size_t i = 0; i < mlen; i++)
        if (!isupper((unsigned char)method[i])) return luaL_error(L, "ae.http: bad method '%s'", method);
    double timeout = opt_number(L, ot, "timeout", 30);
    double connect_timeout = opt_number(L, ot, "connect_timeout", 10);
    int verify = opt_bool(L, ot, "verify", 1);
    int follow = opt_bool(L, ot, "follow", 1);
    double max_redirects = opt_number(L, ot, "max_redirects", 5);
    const char *ca = opt_string(L, ot, "ca");
    const char *cert = opt_string(L, ot, "cert");
    const char *key = opt_string(L, ot, "key");
    const char *key_password = opt_string(L, ot, "key_password");
    const char *user = opt_string(L, ot, "user");
    const char *password = opt_string(L, ot, "password");

    /* everything validated: allocate (no Lua error from here on) */
    xfer *x = xfer_take(c);
    if (!x) {
        lua_pushnil(L);
        lua_pushliteral(L, "ae.http: out of memory");
        return 2;
    }
    CURL *e = x->job.easy;
    x->job.done = xfer_done;
    c->refs++;
    x->task = t;
    x->unit = ae_unit_of(L);
    x->timeout = timeout;
    snprintf(x->method, sizeof x->method, "%s", method);
    ae_curl_safe_url(url, x->safe_url, sizeof x->safe_url, x->host, sizeof x->host);

    int oom = 0;
    if (ht == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, hidx);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, hidx, i);
            const char *h = lua_tostring(L, -1);
            if (h) {
                if (strncasecmp(h, "authorization:", 14) == 0) {
                    const char *v = h + 14;
                    while (*v == ' ')
                        v++;
                    register_auth_secret(v);
                }
                struct curl_slist *nl = curl_slist_append(x->hdrs, h);
                if (!nl) oom = 1;
                x->hdrs = nl ? nl : x->hdrs;
            }
            lua_pop(L, 1);
        }
    }
    /* no "Expect: 100-continue" round trip on large bodies */
    if (x->hdrs) {
        struct curl_slist *nl = curl_slist_append(x->hdrs, "Expect:");
        if (nl) x->hdrs = nl;
    }
    if (password) ae_log_secret(password);
    if (key_password) ae_log_secret(key_password);

    /* a handle that had a CA file goes back to libcurl's default CA store
     * only through a reset */
    if (x->set_ca && !ca) {
        curl_easy_reset(e);
        easy_constant_options(x);
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs ? x->hdrs : &expect_list);
    long connect_ms = connect_timeout > 0 ? (long)(connect_timeout * 1000) : 300000;
    if (connect_ms != x->set_connect_ms) {
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
        x->set_connect_ms = connect_ms;
    }
    if (follow != x->set_follow) {
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
        x->set_follow = follow;
    }
    if ((long)max_redirects != x->set_maxredirs) {
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)max_redirects);
        x->set_maxredirs = (long)max_redirects;
    }
    if (verify != x->set_verify) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
        x->set_verify = verify;
    }
    if (ca) curl_easy_setopt(e, CURLOPT_CAINFO, ca);
    x->set_ca = ca != NULL;
    if (cert || key || key_password || x->set_tls) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, cert);
        curl_easy_setopt(e, CURLOPT_SSLKEY, key);
        curl_easy_setopt(e, CURLOPT_KEYPASSWD, key_password);
        x->set_tls = cert || key || key_password;
    }
    if (user || password) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, user ? user : "");
        curl_easy_setopt(e, CURLOPT_PASSWORD, password ? password : "");
        x->set_auth = 1;
    } else if (x->set_auth) {
        curl_easy_setopt(e, CURLOPT_USERNAME, NULL);
        curl_easy_setopt(e, CURLOPT_PASSWORD, NULL);
        x->set_auth = 0;
    }

    /* the method: back to a plain GET first if the last request was not one */
    int is_head = strcmp(method, "HEAD") == 0, is_post = strcmp(method, "POST") == 0;
    int with_body = !is_head && (body || is_post);
    int custom = !is_head && !is_post && (with_body || strcmp(method, "GET") != 0);
    if (x->set_post && !with_body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    }
    if ((x->set_nobody && !is_head) || (x->set_post && !with_body)) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    if (x->set_custom && !custom) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    x->set_nobody = (unsigned char)is_head;
    x->set_post = (unsigned char)with_body;
    x->set_custom = (unsigned char)custom;
    if (is_head) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (with_body) {
        if (body) {
            x->body = malloc(body_len ? body_len : 1);
            if (!x->body)
                oom = 1;
            else
                memcpy(x->body, body, body_len);
        }
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body ? x->body : "");
    }
    if (custom) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (oom) {
        xfer_free(x);
        lua_pushnil(L);
        lua_pushliteral(L, "ae.http: out of memory");
        return 2;
    }

    if (c->in_flight < c->max_in_flight && !c->qhead) {
        if (xfer_start(x) != 0) {
            ae_log(AE_LOG_ERROR, x->unit->name, 0, "ae.http: %s %s failed: %s", x->method, x->safe_url, x->job.errbuf);
            lua_pushnil(L);
            lua_pushfstring(L, "ae.http: %s (%s)", x->job.errbuf, x->safe_url);
            xfer_free(x);
            return 2;
        }
    } else {
        x->queued = 1;
        if (c->qtail)
            c->qtail->qnext = x;
        else
            c->qhead = x;
        c->qtail = x;
    }
    ae_task_set_cancel(t, xfer_cancel, x);
    return ae_task_wait(L, 1);
}

/* escape(s) -> percent-encoded s (RFC 3986 unreserved kept) */
static int l_escape(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    int plus = lua_toboolean(L, 2); /* form encoding: space as '+' */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            luaL_addchar(&b, (char)ch);
        } else if (ch == ' ' && plus) {
            luaL_addchar(&b, '+');
        } else {
            luaL_addchar(&b, '%');
            luaL_addchar(&b, hex[ch >> 4]);
            luaL_addchar(&b, hex[ch & 15]);
        }
    }
    luaL_pushresult(&b);
    return 1;
}

/* response_metatable(mt): the metatable every response table gets */
static int l_response_metatable(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &response_mt);
    return 0;
}

/* safe_url(url) -> url without credentials, host */
static int l_safe_url(lua_State *L) {
    const char *url = luaL_checkstring(L, 1);
    char out[2048], host[256];
    ae_curl_safe_url(url, out, sizeof out, host, sizeof host);
    lua_pushstring(L, out);
    lua_pushstring(L, host);
    return 2;
}

int luaopen_ae_core_http(lua_State *L) {
    static const luaL_Reg cm_[] = {{"request", l_request},
                                   {"cookies", l_client_cookies},
                                   {"clear_cookies", l_client_clear_cookies},
                                   {"stats", l_client_stats},
                                   {NULL, NULL}};
    if (luaL_newmetatable(L, CLIENT_MT)) {
        luaL_newlib(L, cm_);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_client_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg f[] = {{"client", l_client},
                                 {"request", l_request},
                                 {"escape", l_escape},
                                 {"safe_url", l_safe_url},
                                 {"response_metatable", l_response_metatable},
                                 {NULL, NULL}};
    luaL_newlib(L, f);
    lua_pushstring(L, curl_version());
    lua_setfield(L, -2, "curl_version");
    return 1;
}
