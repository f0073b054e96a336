/* console_client.c - `aengine console` and `aengine reload`: attach to a
 * running engine over its console socket (see console.c for the protocol).
 *
 *   aengine console [--socket PATH | -c CONFIG] [-e COMMAND]
 *   aengine reload  [--socket PATH | -c CONFIG | --pid PID] [-f] [UNIT]
 *
 * Interactive use has line editing, history (~/.aengine_history) and tab
 * completion of commands, unit and job names (libedit). -e runs one command
 * and exits non-zero when it failed; without a terminal, commands are read
 * from stdin, one per line.
 */
#define _GNU_SOURCE
#include "config.h"
#include "engine.h"
#include "reload.h"

#include <editline/readline.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define ANSWER_TIMEOUT_MS 120000

static int sock = -1;

static const char *socket_path(const char *opt, const char *config) {
    static char buf[108];
    if (opt) return opt;
    const char *env = getenv("AE_CONSOLE_SOCKET");
    if (env && *env) return env;
    if (config) {
        char *err = NULL;
        if (ae_config_load(config, &err) != 0) {
            fprintf(stderr, "aengine: config: %s\n", err ? err : "?");
            free(err);
        } else {
            const char *p = ae_config_string("console.socket", NULL);
            if (p) {
                snprintf(buf, sizeof buf, "%s", p);
                ae_config_free();
                return buf;
            }
        }
        ae_config_free();
    }
    ae_console_default_path(buf, sizeof buf);
    return buf;
}

static int attach(const char *path) {
    struct sockaddr_un sa;
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "aengine console: socket path too long: %s\n", path);
        return -1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0 || connect(sock, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "aengine console: cannot connect to %s: %s (is the engine running? see --socket)\n", path,
                strerror(errno));
        if (sock >= 0) close(sock);
        sock = -1;
        return -1;
    }
    return 0;
}

static int write_all(const char *s, size_t n) {
    while (n) {
        ssize_t w = send(sock, s, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Buffered reading of answers. */
static char rbuf[65536];
static size_t rlen;

static int fill(void) {
    struct pollfd p = {sock, POLLIN, 0};
    int r;
    do {
        r = poll(&p, 1, ANSWER_TIMEOUT_MS);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        fprintf(stderr, "aengine console: no answer from the engine after %d s\n", ANSWER_TIMEOUT_MS / 1000);
        return -1;
    }
    ssize_t n;
    do {
        n = recv(sock, rbuf + rlen, sizeof rbuf - rlen, 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return -1;
    rlen += (size_t)n;
    return 0;
}

/* Reads one frame; *body is malloc'd. Returns 1 ok, 0 err, -1 lost. */
static int read_answer(char **body, size_t *blen) {
    char *nl;
    while (!(nl = memchr(rbuf, '\n', rlen))) {
        if (rlen == sizeof rbuf || fill() != 0) return -1;
    }
    *nl = '\0';
    int ok;
    char *end;
    if (strncmp(rbuf, "ok ", 3) == 0)
        ok = 1;
    else if (strncmp(rbuf, "err ", 4) == 0)
        ok = 0;
    else
        return -1;
    size_t len = strtoul(rbuf + (ok ? 3 : 4), &end, 10);
    if (*end) return -1;
    size_t hdr = (size_t)(nl - rbuf) + 1;
    memmove(rbuf, rbuf + hdr, rlen - hdr);
    rlen -= hdr;
    char *b = malloc(len + 1);
    if (!b) return -1;
    size_t got = 0;
    while (got < len) {
        if (rlen == 0 && fill() != 0) {
            free(b);
            return -1;
        }
        size_t take = rlen < len - got ? rlen : len - got;
        memcpy(b + got, rbuf, take);
        memmove(rbuf, rbuf + take, rlen - take);
        rlen -= take;
        got += take;
    }
    b[len] = '\0';
    *body = b;
    *blen = len;
    return ok;
}

/* Sends one command and prints the answer. Returns 1 ok, 0 err, -1 lost. */
static int command(const char *cmd, int quiet) {
    size_t n = strlen(cmd);
    /* on a failed write still read: a refusal frame may be waiting */
    int sent = write_all(cmd, n) == 0 && write_all("\n", 1) == 0;
    char *body = NULL;
    size_t len = 0;
    int r = read_answer(&body, &len);
    if (!sent && r > 0) r = 0; /* an answer, but not to this command */
    if (r < 0) {
        fprintf(stderr, "aengine console: connection lost\n");
        return -1;
    }
    if (!quiet) {
        FILE *f = r ? stdout : stderr;
        fwrite(body, 1, len, f);
        if (len && body[len - 1] != '\n') fputc('\n', f);
        fflush(f);
    }
    free(body);
    return r;
}

/* ------------------------------------------------------ tab completion */

static const char *const commands[] = {"help",   "units", "tasks", "timers",  "subs", "run",
                                       "reload", "eval",  "log",   "metrics", "quit", NULL};
static const char *const levels[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", NULL};

static char **cands;
static int ncands;

static void cands_clear(void) {
    for (int i = 0; i < ncands; i++)
        free(cands[i]);
    free(cands);
    cands = NULL;
    ncands = 0;
}

static void cands_add(const char *s, size_t n) {
    char **c = realloc(cands, sizeof *cands * (size_t)(ncands + 1));
    if (!c) return;
    cands = c;
    cands[ncands] = strndup(s, n);
    if (cands[ncands]) ncands++;
}

/* Asks the engine for "unit NAME" / "job UNIT NAME" lines; keeps the units
 * (unit == NULL) or the jobs of `unit`. */
static void fetch_names(const char *unit) {
    if (write_all("_complete\n", 10) != 0) return;
    char *body = NULL;
    size_t len = 0;
    if (read_answer(&body, &len) != 1) {
        free(body);
        return;
    }
    for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n")) {
        if (!unit && strncmp(line, "unit ", 5) == 0) {
            cands_add(line + 5, strlen(line + 5));
        } else if (unit && strncmp(line, "job ", 4) == 0) {
            char *u = line + 4, *sp = strchr(u, ' ');
            if (sp && (size_t)(sp - u) == strlen(unit) && strncmp(u, unit, (size_t)(sp - u)) == 0)
                cands_add(sp + 1, strlen(sp + 1));
        }
    }
    free(body);
}

static char *generator(const char *text, int state) {
    static int i;
    static size_t len;
    if (!state) {
        i = 0;
        len = strlen(text);
    }
    while (i < ncands) {
        const char *c = cands[i++];
        if (strncmp(c, text, len) == 0) return strdup(c);
    }
    return NULL;
}

static char **complete(const char *text, int start, int end) {
    (void)end;
    rl_attempted_completion_over = 1; /* never fall back to file names */
    cands_clear();
    /* the words before the one being completed */
    char *words[3] = {NULL, NULL, NULL};
    int nw = 0;
    char *copy = strndup(rl_line_buffer, (size_t)start);
    if (!copy) return NULL;
    for (char *w = strtok(copy, " \t"); w; w = strtok(NULL, " \t")) {
        if (nw < 3) words[nw] = w;
        nw++;
    }
    if (nw == 0) {
        for (int k = 0; commands[k]; k++)
            cands_add(commands[k], strlen(commands[k]));
    } else if (nw == 1 && strcmp(words[0], "log") == 0) {
        cands_add("level", 5);
    } else if (nw == 2 && strcmp(words[0], "log") == 0 && strcmp(words[1], "level") == 0) {
        for (int k = 0; levels[k]; k++)
            cands_add(levels[k], strlen(levels[k]));
    } else if (nw == 1 &&
               (strcmp(words[0], "tasks") == 0 || strcmp(words[0], "timers") == 0 || strcmp(words[0], "subs") == 0 ||
                strcmp(words[0], "run") == 0 || strcmp(words[0], "eval") == 0 || strcmp(words[0], "reload") == 0)) {
        if (strcmp(words[0], "reload") == 0) cands_add("-f", 2);
        fetch_names(NULL);
    } else if (nw == 2 && strcmp(words[0], "reload") == 0 && strcmp(words[1], "-f") == 0) {
        fetch_names(NULL);
    } else if (nw == 2 && strcmp(words[0], "run") == 0) {
        fetch_names(words[1]);
    }
    free(copy);
    if (ncands == 0) return NULL;
    return rl_completion_matches(text, generator);
}

/* --------------------------------------------------------------- modes */

static void usage(FILE *f) {
    fprintf(f, "usage: aengine console [--socket PATH | -c CONFIG.lua] [-e COMMAND]\n"
               "Attach to a running engine (socket: --socket, $AE_CONSOLE_SOCKET, the config's\n"
               "console.socket, or /tmp/aengine-<uid>.sock). -e runs one command and exits\n"
               "(status 1 when it failed, 2 when the engine cannot be reached). Type `help` inside.\n");
}

static int interactive(const char *path) {
    char hist[4096] = "";
    const char *home = getenv("HOME");
    if (home && *home) snprintf(hist, sizeof hist, "%s/.aengine_history", home);
    rl_readline_name = "aengine";
    rl_attempted_completion_function = complete;
    using_history();
    stifle_history(1000);
    if (hist[0]) read_history(hist);
    printf("aengine console on %s - type `help`, Tab completes, `quit` leaves\n", path);
    int rc = 0;
    for (;;) {
        char *line = readline("aengine> ");
        if (!line) {
            putchar('\n');
            break;
        }
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        size_t n = strlen(s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
            s[--n] = '\0';
        if (!*s) {
            free(line);
            continue;
        }
        add_history(s);
        if (strcmp(s, "quit") == 0 || strcmp(s, "exit") == 0) {
            free(line);
            break;
        }
        int r = command(s, 0);
        free(line);
        if (r < 0) {
            rc = 1;
            break;
        }
    }
    if (hist[0]) write_history(hist);
    cands_clear();
    return rc;
}

static int from_stdin(void) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (!n) continue;
        if (strcmp(line, "quit") == 0 || strcmp(line, "exit") == 0) break;
        int r = command(line, 0);
        if (r < 0) {
            rc = 2;
            break;
        }
        if (r == 0) rc = 1;
    }
    free(line);
    return rc;
}

int ae_console_client_main(int argc, char **argv) {
    const char *opt_socket = NULL, *config = NULL, *cmd = NULL;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "--socket") == 0 || strcmp(argv[i], "-s") == 0) && i + 1 < argc)
            opt_socket = argv[++i];
        else if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            config = argv[++i];
        else if (strcmp(argv[i], "-e") == 0 && i + 1 < argc)
            cmd = argv[++i];
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "aengine console: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    const char *path = socket_path(opt_socket, config);
    if (attach(path) != 0) return 2;
    int rc;
    if (cmd) {
        int r = command(cmd, 0);
        rc = r > 0 ? 0 : (r == 0 ? 1 : 2);
    } else if (isatty(STDIN_FILENO)) {
        rc = interactive(path);
    } else {
        rc = from_stdin();
    }
    close(sock);
    return rc;
}

/* aengine reload [--socket PATH | -c CONFIG | --pid PID] [-f] [UNIT] */
int ae_console_reload_main(int argc, char **argv) {
    const char *opt_socket = NULL, *config = NULL, *unit = NULL;
    int force = 0;
    long pid = 0;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "--socket") == 0 || strcmp(argv[i], "-s") == 0) && i + 1 < argc)
            opt_socket = argv[++i];
        else if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            config = argv[++i];
        else if (strcmp(argv[i], "--pid") == 0 && i + 1 < argc)
            pid = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--force") == 0)
            force = 1;
        else if (argv[i][0] != '-' && !unit)
            unit = argv[i];
        else {
            fprintf(stderr, "usage: aengine reload [--socket PATH | -c CONFIG | --pid PID] [-f] [UNIT]\n");
            return 2;
        }
    }
    if (pid > 0) {
        if (unit || force) {
            fprintf(stderr, "aengine reload: --pid sends SIGHUP (reload everything): no UNIT or -f\n");
            return 2;
        }
        if (kill((pid_t)pid, SIGHUP) != 0) {
            fprintf(stderr, "aengine reload: cannot signal pid %ld: %s\n", pid, strerror(errno));
            return 1;
        }
        printf("SIGHUP sent to %ld (see the engine's log for the outcome)\n", pid);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (attach(socket_path(opt_socket, config)) != 0) return 2;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "reload%s%s%s", force ? " -f" : "", unit ? " " : "", unit ? unit : "");
    int r = command(cmd, 0);
    close(sock);
    return r > 0 ? 0 : (r == 0 ? 1 : 2);
}
