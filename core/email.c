/* email.c - ae.core.email: send one message over SMTP with libcurl, through
 * the engine's curl multi (http_client.h), without blocking the loop.
 *
 * ae/email.lua builds the MIME message (multipart/mixed, alternative text +
 * html, inline images, base64 attachments, RFC 2047 headers); this file does
 * the SMTP session: EHLO, STARTTLS when asked, AUTH, MAIL FROM, one RCPT TO
 * per recipient (the send goes on when at least one is accepted), DATA, QUIT.
 * The server's replies are watched (debug callback) so a refusal comes back
 * with the server's own text, and refused recipients are reported.
 *
 * Also base64 (b64) for the Lua half: MIME bodies wrapped at 76 columns.
 */
#define _POSIX_C_SOURCE 200809L
#include "http_client.h"
#include "log.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ae_curl_job job;
    ae_task *task;
    ae_unit *unit;
    struct curl_slist *rcpt;
    char *msg;
    size_t msg_len, msg_pos;
    char safe_url[512];
    char host[256];
    char last_error[512]; /* last 4xx/5xx reply of the server */
    char cur_rcpt[320];   /* recipient of the RCPT TO in progress */
    char reply[512];      /* multi-line reply being assembled */
    char *refused;        /* "\n"-separated refused recipients */
    size_t refused_len;
    int accepted;
} mail;

static void mail_free(mail *m) {
    if (m->job.easy) curl_easy_cleanup(m->job.easy);
    curl_slist_free_all(m->rcpt);
    free(m->msg);
    free(m->refused);
    free(m);
}

static size_t on_read(char *p, size_t size, size_t n, void *ud) {
    mail *m = ud;
    size_t want = size * n, left = m->msg_len - m->msg_pos;
    if (want > left) want = left;
    memcpy(p, m->msg + m->msg_pos, want);
    m->msg_pos += want;
    return want;
}

static void add_refused(mail *m, const char *who) {
    size_t n = strlen(who);
    char *p = realloc(m->refused, m->refused_len + n + 2);
    if (!p) return;
    m->refused = p;
    memcpy(p + m->refused_len, who, n);
    m->refused_len += n;
    p[m->refused_len++] = '\n';
    p[m->refused_len] = '\0';
}

/* One server reply line (without CRLF). Replies are "NNN-text" (more lines
 * follow) or "NNN text" (last line). */
static void on_reply_line(mail *m, const char *line, size_t len) {
    if (len < 3 || !isdigit((unsigned char)line[0])) return;
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    int last = len == 3 || line[3] == ' ';
    size_t have = strlen(m->reply);
    if (have && have + 1 < sizeof m->reply) {
        m->reply[have++] = ' ';
        m->reply[have] = '\0';
    }
    const char *text = len > 4 ? line + 4 : "";
    size_t tl = len > 4 ? len - 4 : 0;
    if (have == 0) {
        snprintf(m->reply, sizeof m->reply, "%.*s", (int)len, line);
        if (len > 3) m->reply[3] = ' ';
    } else {
        snprintf(m->reply + have, sizeof m->reply - have, "%.*s", (int)tl, text);
    }
    if (!last) return;
    if (code >= 400) snprintf(m->last_error, sizeof m->last_error, "%s", m->reply);
    if (m->cur_rcpt[0]) {
        if (code >= 400)
            add_refused(m, m->cur_rcpt);
        else
            m->accepted++;
        m->cur_rcpt[0] = '\0';
    }
    m->reply[0] = '\0';
}

static int on_debug(CURL *e, curl_infotype type, char *data, size_t size, void *ud) {
    (void)e;
    mail *m = ud;
    if (type == CURLINFO_HEADER_IN) {
        const char *s = data, *end = data + size;
        while (s < end) {
            const char *eol = memchr(s, '\n', (size_t)(end - s));
            const char *stop = eol ? eol : end;
            size_t len = (size_t)(stop - s);
            while (len && (s[len - 1] == '\r' || s[len - 1] == '\n'))
                len--;
            on_reply_line(m, s, len);
            s = eol ? eol + 1 : end;
        }
    } else if (type == CURLINFO_HEADER_OUT) {
        if (size > 8 && strncasecmp(data, "RCPT TO:", 8) == 0) {
            const char *a = data + 8, *z = data + size;
            while (a < z && (*a == ' ' || *a == '<'))
                a++;
            const char *b = a;
            while (b < z && *b != '>' && *b != '\r' && *b != '\n')
                b++;
            snprintf(m->cur_rcpt, sizeof m->cur_rcpt, "%.*s", (int)(b - a), a);
        }
    }
    return 0;
}

static void mail_done(ae_curl_job *job, CURLcode rc, const char *msg) {
    mail *m = (mail *)job;
    const char *unit = m->unit ? m->unit->name : "engine";
    if (rc != CURLE_OK) {
        ae_metric_inc("aengine_email_errors", "Emails that could not be sent", "host", m->host, 1);
        char err[1200];
        int server = m->last_error[0] && rc != CURLE_OPERATION_TIMEDOUT;
        if (server)
            snprintf(err, sizeof err, "ae.email: %s", m->last_error);
        else
            snprintf(err, sizeof err, "ae.email: %s (%s)", msg, m->safe_url);
        ae_log(AE_LOG_WARNING, unit, 0, "ae.email: sending via %s failed: %s", m->safe_url,
               server ? m->last_error : msg);
        if (m->task) {
            lua_State *co = ae_task_thread(m->task);
            lua_pushnil(co);
            lua_pushstring(co, err);
            ae_task_wake(m->task, 2);
        }
    } else {
        ae_metric_inc("aengine_email_sent", "Emails accepted by the SMTP server", "host", m->host, 1);
        if (m->refused_len)
            ae_log(AE_LOG_WARNING, unit, 0, "ae.email: sent via %s, but some recipients were refused: %.*s",
                   m->safe_url, (int)m->refused_len - 1, m->refused);
        if (m->task) {
            lua_State *co = ae_task_thread(m->task);
            lua_pushboolean(co, 1);
            lua_pushnil(co);
            lua_createtable(co, 0, 2);
            lua_newtable(co);
            int i = 1;
            for (char *s = m->refused; s && *s;) {
                char *nl = strchr(s, '\n');
                lua_pushlstring(co, s, nl ? (size_t)(nl - s) : strlen(s));
                lua_rawseti(co, -2, i++);
                s = nl ? nl + 1 : s + strlen(s);
            }
            lua_setfield(co, -2, "refused");
            lua_pushinteger(co, m->accepted);
            lua_setfield(co, -2, "accepted");
            ae_task_wake(m->task, 3);
        }
    }
    mail_free(m);
}

static void mail_cancel(void *data) {
    mail *m = data;
    m->task = NULL;
    ae_curl_job_abort(&m->job);
    mail_free(m);
}

static const char *field_str(lua_State *L, int t, const char *k, int required) {
    int ty = lua_getfield(L, t, k);
    const char *s = NULL;
    if (ty == LUA_TSTRING)
        s = lua_tostring(L, -1);
    else if (ty != LUA_TNIL || required)
        luaL_error(L, "ae.email: %s must be a string", k);
    lua_pop(L, 1);
    return s;
}

/* send{url, from, rcpt = {...}, message, username, password, starttls,
 *      verify, ca, timeout, connect_timeout} -> true, nil, info | nil, err */
static int l_send(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    ae_task *t = ae_task_check(L);
    const char *url = field_str(L, 1, "url", 1);
    const char *from = field_str(L, 1, "from", 1);
    size_t mlen;
    if (lua_getfield(L, 1, "message") != LUA_TSTRING) return luaL_error(L, "ae.email: message must be a string");
    const char *message = lua_tolstring(L, -1, &mlen);
    lua_pop(L, 1);
    const char *user = field_str(L, 1, "username", 0);
    const char *pass = field_str(L, 1, "password", 0);
    const char *ca = field_str(L, 1, "ca", 0);
    lua_getfield(L, 1, "starttls");
    int starttls = lua_toboolean(L, -1);
    lua_getfield(L, 1, "verify");
    int verify = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
    lua_getfield(L, 1, "timeout");
    double timeout = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 45;
    lua_getfield(L, 1, "connect_timeout");
    double connect_timeout = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 10;
    lua_pop(L, 4);
    if (strncmp(url, "smtp://", 7) != 0 && strncmp(url, "smtps://", 8) != 0)
        return luaL_error(L, "ae.email: url must start with smtp:// or smtps://");
    if (lua_getfield(L, 1, "rcpt") != LUA_TTABLE) return luaL_error(L, "ae.email: rcpt must be a list");
    int ridx = lua_gettop(L);
    lua_Integer nr = luaL_len(L, ridx);
    if (nr < 1) return luaL_error(L, "ae.email: at least one recipient is needed");
    for (lua_Integer i = 1; i <= nr; i++) {
        if (lua_rawgeti(L, ridx, i) != LUA_TSTRING) return luaL_error(L, "ae.email: recipients must be strings");
        lua_pop(L, 1);
    }

    mail *m = calloc(1, sizeof *m);
    CURL *e = m ? curl_easy_init() : NULL;
    if (!e) {
        free(m);
        lua_pushnil(L);
        lua_pushliteral(L, "ae.email: out of memory");
        return 2;
    }
    m->job.easy = e;
    m->job.done = mail_done;
    m->task = t;
    m->unit = ae_unit_of(L);
    ae_curl_safe_url(url, m->safe_url, sizeof m->safe_url, m->host, sizeof m->host);
    int oom = 0;
    for (lua_Integer i = 1; i <= nr; i++) {
        lua_rawgeti(L, ridx, i);
        struct curl_slist *n = curl_slist_append(m->rcpt, lua_tostring(L, -1));
        if (n)
            m->rcpt = n;
        else
            oom = 1;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    m->msg = malloc(mlen ? mlen : 1);
    if (!m->msg) oom = 1;
    if (oom) {
        mail_free(m);
        lua_pushnil(L);
        lua_pushliteral(L, "ae.email: out of memory");
        return 2;
    }
    memcpy(m->msg, message, mlen);
    m->msg_len = mlen;
    if (pass) ae_log_secret(pass);

    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(e, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(e, CURLOPT_MAIL_RCPT, m->rcpt);
#ifdef CURLOPT_MAIL_RCPT_ALLOWFAILS
    curl_easy_setopt(e, CURLOPT_MAIL_RCPT_ALLOWFAILS, 1L);
#else
    curl_easy_setopt(e, CURLOPT_MAIL_RCPT_ALLLOWFAILS, 1L);
#endif
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(e, CURLOPT_READDATA, m);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)mlen);
    curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, on_debug);
    curl_easy_setopt(e, CURLOPT_DEBUGDATA, m);
    /* one fresh session per message: no reuse of a connection that a failed
     * send may have left in an odd state */
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    if (connect_timeout > 0) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect_timeout * 1000));
    if (starttls) curl_easy_setopt(e, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
    if (ca) curl_easy_setopt(e, CURLOPT_CAINFO, ca);
    if (user) curl_easy_setopt(e, CURLOPT_USERNAME, user);
    if (pass) curl_easy_setopt(e, CURLOPT_PASSWORD, pass);

    if (ae_curl_job_start(&m->job, timeout) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "ae.email: %s (%s)", m->job.errbuf, m->safe_url);
        mail_free(m);
        return 2;
    }
    ae_task_set_cancel(t, mail_cancel, m);
    return ae_task_wait(L, 1);
}

/* b64(s [, wrap]) -> base64 of s; wrap = true: CRLF every 76 characters */
static int l_b64(lua_State *L) {
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    int wrap = lua_toboolean(L, 2);
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int col = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        if (i + 1 < n) v |= (unsigned)s[i + 1] << 8;
        if (i + 2 < n) v |= s[i + 2];
        char q[4] = {tbl[(v >> 18) & 63], tbl[(v >> 12) & 63], i + 1 < n ? tbl[(v >> 6) & 63] : '=',
                     i + 2 < n ? tbl[v & 63] : '='};
        luaL_addlstring(&b, q, 4);
        col += 4;
        if (wrap && col >= 76 && i + 3 < n) {
            luaL_addlstring(&b, "\r\n", 2);
            col = 0;
        }
    }
    luaL_pushresult(&b);
    return 1;
}

int luaopen_ae_core_email(lua_State *L) {
    static const luaL_Reg f[] = {{"send", l_send}, {"b64", l_b64}, {NULL, NULL}};
    luaL_newlib(L, f);
    return 1;
}
