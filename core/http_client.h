/* http_client.h - the engine's one libcurl multi handle, driven by the
 * libevent loop (http_client.c). ae.core.http and ae.core.email run their
 * transfers through it; nothing here blocks the loop.
 *
 * A job wraps one easy handle. ae_curl_job_start() adds it to the multi and
 * arms an engine-clock timeout (so the manual clock of specs controls it);
 * when the transfer ends (done, failed, timed out) the handle is removed from
 * the multi and job->done(job, rc, msg) is called on the loop thread, never
 * inside a libcurl callback, so it may free the job and the easy handle.
 */
#ifndef AE_HTTP_CLIENT_H
#define AE_HTTP_CLIENT_H

#include "engine.h"

#include <curl/curl.h>

typedef struct ae_curl_job ae_curl_job;
struct ae_curl_job {
    CURL *easy;
    /* rc: CURLE_OK or the failure; msg: libcurl's message (never NULL) */
    void (*done)(ae_curl_job *job, CURLcode rc, const char *msg);
    /* private */
    ae_timer timer;
    double timeout;
    int active;
    char errbuf[CURL_ERROR_SIZE];
};

/* The engine's multi handle (created on first use). NULL if libcurl cannot
 * be initialised. */
CURLM *ae_curl_multi(void);
/* Start job->easy; timeout in seconds (<= 0: none). Returns 0, or -1 with a
 * message in job->errbuf (done is not called then). */
int ae_curl_job_start(ae_curl_job *job, double timeout);
/* Remove a running job from the multi without calling done. */
void ae_curl_job_abort(ae_curl_job *job);
/* Copy url to out without user:password (for logs and errors); host gets the
 * host name (may be NULL). */
void ae_curl_safe_url(const char *url, char *out, size_t outlen, char *host, size_t hostlen);

#endif
