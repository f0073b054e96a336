/* http_bench_server.c - a tiny single-threaded libevent evhttp server for the
 * HTTP client benchmark (bench/http_client_bench.sh): answers every request
 * with 200 "hello" and keeps connections alive.
 *
 * usage: bench_http_bench_server [port]   (0 or none: a free port)
 * Prints "port N" on stdout once listening; runs until SIGTERM/SIGINT or
 * until stdin reaches EOF (so it dies with the script that started it).
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void on_request(struct evhttp_request *req, void *arg) {
    (void)arg;
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    evbuffer_add(out, "hello", 5);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void on_stop(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void on_stdin(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    char buf[256];
    if (read(fd, buf, sizeof buf) <= 0) event_base_loopbreak(arg);
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    evhttp_set_gencb(http, on_request, NULL);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(http, "127.0.0.1", (unsigned short)port);
    if (!bs) {
        fprintf(stderr, "cannot bind 127.0.0.1:%d\n", port);
        return 1;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &len);
    printf("port %d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    fflush(stdout);
    struct event *term = evsignal_new(base, SIGTERM, on_stop, base);
    struct event *intr = evsignal_new(base, SIGINT, on_stop, base);
    struct event *in = event_new(base, 0, EV_READ | EV_PERSIST, on_stdin, base);
    evsignal_add(term, NULL);
    evsignal_add(intr, NULL);
    event_add(in, NULL);
    event_base_dispatch(base);
    event_free(term);
    event_free(intr);
    event_free(in);
    evhttp_free(http);
    event_base_free(base);
    return 0;
}
