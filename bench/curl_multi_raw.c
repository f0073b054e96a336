/* curl_multi_raw.c - the "raw" side of the HTTP client benchmark: a plain C
 * program that keeps N GET requests in flight on one libcurl multi handle
 * (curl_multi_poll loop, easy handles re-used so connections stay alive) and
 * reports requests per second. Same multi settings as core/http_client.c.
 *
 * usage: bench_curl_multi_raw URL TOTAL IN_FLIGHT
 * prints: raw in_flight=N requests=T seconds=S rps=R
 */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static size_t sink(char *p, size_t s, size_t n, void *ud) {
    (void)p;
    (*(size_t *)ud) += s * n;
    return s * n;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s URL TOTAL IN_FLIGHT\n", argv[0]);
        return 2;
    }
    const char *url = argv[1];
    long total = atol(argv[2]), conc = atol(argv[3]);
    if (conc > total) conc = total;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, 1024L);
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    size_t bytes = 0;
    long started = 0, done = 0, failed = 0;
    double t0 = now();
    for (long i = 0; i < conc; i++) {
        CURL *e = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &bytes);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
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
            if (msg->data.result != CURLE_OK) failed++;
            done++;
            curl_multi_remove_handle(m, e);
            if (started < total) {
                curl_multi_add_handle(m, e); /* same handle: its connection is reused */
                started++;
            } else {
                curl_easy_cleanup(e);
            }
        }
        if (done < total) curl_multi_poll(m, NULL, 0, 1000, NULL);
    }
    double dt = now() - t0;
    printf("raw in_flight=%ld requests=%ld failed=%ld seconds=%.3f rps=%.0f\n", conc, total, failed, dt,
           (double)total / dt);
    curl_multi_cleanup(m);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
