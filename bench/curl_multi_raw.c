/* curl_multi_raw.c - the "raw" side of the HTTP client benchmark: a plain C
 * program that keeps N GET requests in flight on one libcurl multi handle
 * (curl_multi_poll loop, easy handles re-used so connections stay alive) and
 * reports requests per second.
 *
 * For a fair comparison it asks libcurl for the same work ae.http does
 * (core/http_client.c): same multi settings, same per-handle options
 * (NOSIGNAL, protocols, "Expect:" suppressed, Accept-Encoding, TCP
 * keep-alive, User-Agent, connect timeout, redirects, TLS verification, a
 * share handle for DNS and TLS sessions), and it collects the response body
 * and header lines into buffers. It does not build anything from them: no
 * status/header parsing, no Lua values, no task switch. With "minimal" as the
 * 4th argument it sets only URL, write callback and NOSIGNAL (the bare
 * libcurl cost).
 *
 * usage: bench_curl_multi_raw URL TOTAL IN_FLIGHT [minimal]
 * prints: raw in_flight=N requests=T seconds=S rps=R
 */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char *p;
    size_t len, cap;
} buf;

static size_t buf_add(buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

typedef struct {
    CURL *e;
    buf body, hdr;
} req;

static size_t on_body(char *p, size_t s, size_t n, void *ud) { return buf_add(&((req *)ud)->body, p, s * n); }

static size_t on_header(char *p, size_t s, size_t n, void *ud) {
    req *r = ud;
    if (s * n >= 5 && memcmp(p, "HTTP/", 5) == 0) r->hdr.len = 0;
    return buf_add(&r->hdr, p, s * n);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s URL TOTAL IN_FLIGHT [minimal]\n", argv[0]);
        return 2;
    }
    const char *url = argv[1];
    long total = atol(argv[2]), conc = atol(argv[3]);
    int minimal = argc > 4 && strcmp(argv[4], "minimal") == 0;
    if (conc > total) conc = total;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, 1024L);
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    CURLSH *share = curl_share_init();
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    static char expect[] = "Expect:";
    struct curl_slist hdrs = {expect, NULL};
    req *reqs = calloc((size_t)conc, sizeof *reqs);
    if (!reqs) return 1;
    long started = 0, done = 0, failed = 0;
    double t0 = now();
    for (long i = 0; i < conc; i++) {
        req *r = &reqs[i];
        CURL *e = r->e = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
        if (!minimal) {
            curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
            curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
            curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
            curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, &hdrs);
            curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
            curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
            curl_easy_setopt(e, CURLOPT_USERAGENT, "aengine/bench");
            curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
            curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
            curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
            curl_easy_setopt(e, CURLOPT_SHARE, share);
        }
        curl_multi_add_handle(m, e);
        started++;
    }
    int running = 1;
    while (done < total) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            CURL *e = msg->easy_handle;
            req *r = NULL;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
            long status = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK || status != 200) failed++;
            done++;
            r->body.len = r->hdr.len = 0;
            curl_multi_remove_handle(m, e);
            if (started < total) {
                curl_multi_add_handle(m, e); /* same handle: its connection is reused */
                started++;
            }
        }
        if (done < total) curl_multi_poll(m, NULL, 0, 1000, NULL);
    }
    double dt = now() - t0;
    printf("raw in_flight=%ld requests=%ld failed=%ld seconds=%.3f rps=%.0f\n", conc, total, failed, dt,
           (double)total / dt);
    for (long i = 0; i < conc; i++) {
        curl_easy_cleanup(reqs[i].e);
        free(reqs[i].body.p);
        free(reqs[i].hdr.p);
    }
    free(reqs);
    curl_multi_cleanup(m);
    curl_share_cleanup(share);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
