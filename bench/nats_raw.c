/* nats_raw.c - the "raw nats.c" side of the ae.nats benchmark: a replier and
 * a requester on plain nats.c, with the same JSON-sized payloads, keeping N
 * requests in flight through one mux inbox (like ae.nats does).
 * usage: bench_nats_raw URL INFLIGHT SECONDS
 * prints: raw inflight=N rps=R */
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static natsConnection *req_nc;
static const char *payload = "{\"request_id\":\"Vt3kQ8mZpR2cXb7nHs4eWa\",\"body\":{\"ticket_id\":5126381}}";
static const char *reply_body =
    "{\"request_id\":\"Vt3kQ8mZpR2cXb7nHs4eWa\",\"body\":{\"ticketID\":5126381},\"status\":200}";
static atomic_long done;
static atomic_int stop;
static char inbox[64];

static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *cl) {
    (void)sub;
    (void)cl;
    if (natsMsg_GetReply(m)) natsConnection_PublishString(nc, natsMsg_GetReply(m), reply_body);
    natsMsg_Destroy(m);
}

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *cl) {
    (void)nc;
    (void)sub;
    (void)cl;
    natsMsg_Destroy(m);
    atomic_fetch_add(&done, 1);
    if (!atomic_load(&stop)) natsConnection_PublishRequestString(req_nc, "bench.raw", inbox, payload);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s URL INFLIGHT SECONDS [asap|batch]\n", argv[0]);
        return 2;
    }
    int inflight = atoi(argv[2]);
    double seconds = atof(argv[3]);
    natsConnection *rep_nc = NULL;
    natsSubscription *s1 = NULL, *s2 = NULL;
    /* "asap": write every publish at once, as ae.nats does by default
     * (send_asap); "batch" (default): nats.c's flusher thread batches */
    natsOptions *opts = NULL;
    if (natsOptions_Create(&opts) != NATS_OK || natsOptions_SetURL(opts, argv[1]) != NATS_OK ||
        natsOptions_SetSendAsap(opts, argc > 4 && strcmp(argv[4], "asap") == 0) != NATS_OK) {
        fprintf(stderr, "bad options\n");
        return 1;
    }
    if (natsConnection_Connect(&rep_nc, opts) != NATS_OK || natsConnection_Connect(&req_nc, opts) != NATS_OK) {
        fprintf(stderr, "cannot connect\n");
        return 1;
    }
    natsConnection_QueueSubscribe(&s1, rep_nc, "bench.raw", "q", on_request, NULL);
    natsConnection_Flush(rep_nc);
    snprintf(inbox, sizeof inbox, "_INBOX.rawbench.1");
    natsConnection_Subscribe(&s2, req_nc, "_INBOX.rawbench.*", on_reply, NULL);
    natsConnection_Flush(req_nc);
    int64_t t0 = nats_Now();
    for (int i = 0; i < inflight; i++)
        natsConnection_PublishRequestString(req_nc, "bench.raw", inbox, payload);
    nats_Sleep((int64_t)(seconds * 1000));
    atomic_store(&stop, 1);
    long n = atomic_load(&done);
    double el = (double)(nats_Now() - t0) / 1000.0;
    printf("raw inflight=%d rps=%.0f\n", inflight, (double)n / el);
    natsSubscription_Destroy(s1);
    natsSubscription_Destroy(s2);
    natsConnection_Destroy(rep_nc);
    natsConnection_Destroy(req_nc);
    natsOptions_Destroy(opts);
    nats_Close();
    return 0;
}
