/*
 * mailload: a small epoll + OpenSSL load generator for mail proxies.
 *
 * It drives many connections at once from one thread and reports operations
 * per second, its own CPU use and latency percentiles as one JSON line, so
 * the benchmark driver can tell whether the generator or the server was the
 * bottleneck. It is compiled at benchmark time (bench/run.sh); nothing here
 * is part of Postern itself.
 *
 * Modes (IMAP unless --proto says otherwise):
 *   handshake  implicit TLS: connect, handshake, read the greeting, close
 *   starttls   plaintext greeting, STARTTLS, handshake, CAPABILITY, close
 *   login      greeting, LOGIN, tagged OK, LOGOUT, close (TLS with --tls)
 *   fetch      login, then FETCH repeatedly, counting relayed bytes
 *   hold       open --conns logged-in sessions and keep them until SIGTERM
 *   command    login once per connection, then NOOP round trips (latency)
 *
 * --rate R paces the operations: a new one starts every 1/R s (while a
 * connection is free), so two servers are compared at the same offered load
 * rather than each at its own saturation; CPU per operation is then steadier
 * (a saturated server batches more events per turn, a slower one fewer).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { M_HANDSHAKE, M_STARTTLS, M_LOGIN, M_FETCH, M_HOLD, M_COMMAND };
enum step { S_CONNECT, S_TLS, S_GREETING, S_STARTTLS_REPLY, S_CAPA, S_LOGIN, S_FETCH, S_NOOP, S_LOGOUT, S_HELD };

struct conn {
    int fd;
    SSL *ssl;
    enum step step;
    double started;   /* when the current operation began */
    double cmd_sent;  /* when the last command was sent (command mode) */
    char buf[65536];
    size_t len;
    long long literal; /* bytes of a FETCH literal still expected */
};

static const char *host = "127.0.0.1";
static int port = 993, conns = 50, use_tls = 0, tls_version = 0, resume = 0;
static double duration = 5;
/* --rate: operations started per second (0: each connection starts its next one at once) */
static double rate = 0, next_start = 0;
static struct conn **idle_conns;
static int nidle;
static enum mode mode = M_HANDSHAKE;
static const char *user = "test@example.com", *pass = "secret";
static const char *ciphers, *sigalgs, *curves, *alpn;
static SSL_CTX *ctx;
static SSL_SESSION *saved;
static int ep;
static long long ops, errors, bytes, resumed;
static double *lat;
static size_t nlat, caplat = 1 << 20;
static volatile sig_atomic_t stop;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void record(double ms) {
    if (nlat < caplat) lat[nlat++] = ms;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void start_conn(struct conn *c);

static void finish(struct conn *c, int ok) {
    if (ok) ops++; else errors++;
    if (c->ssl) {
        if (ok && SSL_session_reused(c->ssl)) resumed++;
        if (ok && resume && SSL_session_reused(c->ssl) == 0) {
            SSL_SESSION *s = SSL_get1_session(c->ssl);
            if (s) { if (saved) SSL_SESSION_free(saved); saved = s; }
        }
        /* without this, OpenSSL marks the session not resumable on SSL_free */
        if (ok) SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (stop) return;
    if (rate > 0) idle_conns[nidle++] = c;
    else start_conn(c);
}

/* --rate: starts the operations that are due; returns ms until the next one (or 100). */
static int start_due(void) {
    if (rate <= 0) return 100;
    double t = now();
    /* a server that falls behind does not earn a burst later: at most one period of backlog */
    if (next_start < t - 1.0 / rate) next_start = t - 1.0 / rate;
    while (nidle > 0 && next_start <= t) {
        start_conn(idle_conns[--nidle]);
        next_start += 1.0 / rate;
    }
    if (nidle == 0) return 100;
    int ms = (int)((next_start - t) * 1000.0) + 1;
    return ms < 100 ? ms : 100;
}

static void watch(struct conn *c, uint32_t events) {
    struct epoll_event ev = { .events = events, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void start_conn(struct conn *c) {
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, host, &sa.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->len = 0;
    c->literal = 0;
    c->started = now();
    c->step = S_CONNECT;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        errors++;
        close(c->fd);
        c->fd = -1;
        return;
    }
    watch(c, EPOLLOUT);
}

static int begin_tls(struct conn *c) {
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_connect_state(c->ssl);
    if (resume && saved) SSL_set_session(c->ssl, saved);
    c->step = S_TLS;
    return 0;
}

/* Sends a whole short command; returns -1 on error. */
static int say(struct conn *c, const char *text) {
    size_t n = strlen(text);
    int w = c->ssl ? SSL_write(c->ssl, text, (int)n) : (int)write(c->fd, text, n);
    if (w != (int)n) return -1;
    c->cmd_sent = now();
    return 0;
}

/* Reads what is available; returns 1 if data arrived, 0 to wait, -1 on error/EOF. */
static int fill(struct conn *c) {
    for (;;) {
        size_t room = sizeof c->buf - c->len - 1;
        if (room == 0) { c->len = 0; room = sizeof c->buf - 1; }
        int r;
        if (c->ssl) {
            r = SSL_read(c->ssl, c->buf + c->len, (int)room);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ) return 0;
                if (e == SSL_ERROR_WANT_WRITE) { watch(c, EPOLLOUT); return 0; }
                return -1;
            }
        } else {
            r = (int)read(c->fd, c->buf + c->len, room);
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
            if (r <= 0) return -1;
        }
        bytes += r;
        c->len += (size_t)r;
        c->buf[c->len] = 0;
        if (!c->ssl || SSL_pending(c->ssl) == 0) return 1;
    }
}

/* True when the buffer holds a complete line starting with `prefix` somewhere. */
static int have_line(struct conn *c, const char *prefix) {
    char *p = c->buf;
    size_t plen = strlen(prefix);
    while (p && *p) {
        char *eol = strstr(p, "\r\n");
        if (!eol) return 0;
        if (strncmp(p, prefix, plen) == 0) return 1;
        p = eol + 2;
    }
    return 0;
}

static void consume_all(struct conn *c) { c->len = 0; c->buf[0] = 0; }

static void advance(struct conn *c);

static void on_event(struct conn *c) {
    if (c->step == S_CONNECT) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) { finish(c, 0); return; }
        if (use_tls && mode != M_STARTTLS) begin_tls(c);
        else c->step = S_GREETING;
        watch(c, EPOLLIN);
    }
    advance(c);
}

static void login_cmd(struct conn *c) {
    char line[512];
    snprintf(line, sizeof line, "a LOGIN %s %s\r\n", user, pass);
    if (say(c, line) < 0) { finish(c, 0); return; }
    c->step = S_LOGIN;
}

static void advance(struct conn *c) {
    for (;;) {
        if (c->step == S_TLS) {
            int r = SSL_do_handshake(c->ssl);
            if (r != 1) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ) { watch(c, EPOLLIN); return; }
                if (e == SSL_ERROR_WANT_WRITE) { watch(c, EPOLLOUT); return; }
                finish(c, 0);
                return;
            }
            watch(c, EPOLLIN);
            if (mode == M_STARTTLS) {
                if (say(c, "b CAPABILITY\r\n") < 0) { finish(c, 0); return; }
                c->step = S_CAPA;
            } else c->step = S_GREETING;
            continue;
        }
        int r = fill(c);
        if (r < 0) {
            if (c->step == S_LOGOUT) { record((now() - c->started) * 1000); finish(c, 1); }
            else finish(c, 0);
            return;
        }
        if (r == 0) return;
        switch (c->step) {
        case S_GREETING:
            if (!have_line(c, "* OK")) break;
            if (mode == M_HANDSHAKE) { record((now() - c->started) * 1000); finish(c, 1); return; }
            consume_all(c);
            if (mode == M_STARTTLS) {
                if (say(c, "a STARTTLS\r\n") < 0) { finish(c, 0); return; }
                c->step = S_STARTTLS_REPLY;
            } else login_cmd(c);
            break;
        case S_STARTTLS_REPLY:
            if (!have_line(c, "a OK")) break;
            consume_all(c);
            begin_tls(c);
            continue;
        case S_CAPA:
            if (!have_line(c, "b OK")) break;
            record((now() - c->started) * 1000);
            finish(c, 1);
            return;
        case S_LOGIN:
            if (have_line(c, "a NO") || have_line(c, "a BAD") || have_line(c, "* BAD")) { finish(c, 0); return; }
            if (!have_line(c, "a OK")) break;
            consume_all(c);
            if (mode == M_HOLD) { ops++; c->step = S_HELD; return; }
            if (mode == M_FETCH) {
                if (say(c, "f FETCH 1 BODY[]\r\n") < 0) { finish(c, 0); return; }
                c->step = S_FETCH;
            } else if (mode == M_COMMAND) {
                if (say(c, "n NOOP\r\n") < 0) { finish(c, 0); return; }
                c->step = S_NOOP;
            } else {
                if (say(c, "z LOGOUT\r\n") < 0) { finish(c, 0); return; }
                c->step = S_LOGOUT;
            }
            break;
        case S_FETCH:
            /* the fake backend ends each FETCH answer with "f OK" */
            if (!strstr(c->buf, "f OK")) { c->len = 0; break; }
            ops++;
            consume_all(c);
            if (stop) { finish(c, 1); ops--; return; }
            if (say(c, "f FETCH 1 BODY[]\r\n") < 0) { finish(c, 0); return; }
            break;
        case S_NOOP:
            if (!have_line(c, "n OK")) break;
            record((now() - c->cmd_sent) * 1000);
            ops++;
            consume_all(c);
            if (say(c, "n NOOP\r\n") < 0) { finish(c, 0); return; }
            break;
        case S_LOGOUT:
            break; /* wait for the close */
        case S_HELD:
            consume_all(c);
            break;
        default:
            break;
        }
    }
}

static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--host")) host = v, i++;
        else if (!strcmp(a, "--port")) port = atoi(v), i++;
        else if (!strcmp(a, "--conns")) conns = atoi(v), i++;
        else if (!strcmp(a, "--seconds")) duration = atof(v), i++;
        else if (!strcmp(a, "--rate")) rate = atof(v), i++;
        else if (!strcmp(a, "--tls")) use_tls = 1;
        else if (!strcmp(a, "--tls1.2")) tls_version = TLS1_2_VERSION;
        else if (!strcmp(a, "--tls1.3")) tls_version = TLS1_3_VERSION;
        else if (!strcmp(a, "--resume")) resume = !strcmp(v, "ticket") ? 2 : 1, i++;
        else if (!strcmp(a, "--ciphers")) ciphers = v, i++;
        else if (!strcmp(a, "--sigalgs")) sigalgs = v, i++;
        else if (!strcmp(a, "--curves")) curves = v, i++;
        else if (!strcmp(a, "--alpn")) alpn = v, i++;
        else if (!strcmp(a, "--user")) user = v, i++;
        else if (!strcmp(a, "--pass")) pass = v, i++;
        else if (!strcmp(a, "--mode")) {
            i++;
            mode = !strcmp(v, "starttls") ? M_STARTTLS : !strcmp(v, "login") ? M_LOGIN : !strcmp(v, "fetch") ? M_FETCH
                 : !strcmp(v, "hold") ? M_HOLD : !strcmp(v, "command") ? M_COMMAND : M_HANDSHAKE;
        } else { fprintf(stderr, "mailload: unknown option %s\n", a); return 2; }
    }
    if (mode == M_HANDSHAKE || mode == M_STARTTLS) use_tls = 1;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (tls_version) { SSL_CTX_set_min_proto_version(ctx, tls_version); SSL_CTX_set_max_proto_version(ctx, tls_version); }
    if (resume == 1) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    if (ciphers && !SSL_CTX_set_cipher_list(ctx, ciphers)) { fprintf(stderr, "bad --ciphers\n"); return 2; }
    if (sigalgs && !SSL_CTX_set1_sigalgs_list(ctx, sigalgs)) { fprintf(stderr, "bad --sigalgs\n"); return 2; }
    if (curves && !SSL_CTX_set1_groups_list(ctx, curves)) { fprintf(stderr, "bad --curves\n"); return 2; }
    if (alpn) {
        unsigned char wire[64];
        size_t n = strlen(alpn);
        wire[0] = (unsigned char)n;
        memcpy(wire + 1, alpn, n);
        SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)(n + 1));
    }
    lat = malloc(caplat * sizeof *lat);
    ep = epoll_create1(0);
    struct conn *cs = calloc((size_t)conns, sizeof *cs);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now(), deadline = t0 + duration;
    idle_conns = calloc((size_t)conns, sizeof *idle_conns);
    next_start = t0;
    for (int i = 0; i < conns; i++) {
        if (rate > 0 && mode != M_HOLD) idle_conns[nidle++] = &cs[i];
        else start_conn(&cs[i]);
    }
    struct epoll_event evs[256];
    int announced = 0;
    while (!stop) {
        if (mode != M_HOLD && now() >= deadline) break;
        if (mode == M_HOLD && !announced && ops >= conns) {
            printf("{\"mode\":\"hold\",\"held\":%lld,\"errors\":%lld}\n", ops, errors);
            fflush(stdout);
            announced = 1;
        }
        int n = epoll_wait(ep, evs, 256, start_due());
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr);
    }
    stop = 1;
    double t1 = now();
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6
               + (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    qsort(lat, nlat, sizeof *lat, cmp);
    double p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[(size_t)(nlat * 0.99)] : 0;
    printf("{\"mode\":%d,\"ops\":%lld,\"errors\":%lld,\"resumed\":%lld,\"seconds\":%.3f,\"rate\":%.1f,\"bytes\":%lld,\"client_cpu\":%.3f,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
           mode, ops, errors, resumed, t1 - t0, ops / (t1 - t0), bytes, cpu, p50, p99);
    return 0;
}
