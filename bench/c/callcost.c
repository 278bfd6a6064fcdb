/* callcost: what one connect and one accept cost, each timed on its own, in one
 * process on loopback (bench/supervise_calls.sh runs it plain and under
 * `sockexit run --supervise`; the difference is what the supervisor adds).
 *
 * usage: callcost block|nonblock COUNT
 *   block     a blocking listener: the supervisor accepts on a thread of its own
 *   nonblock  a non-blocking listener (as nginx, redis): accepted inline
 * The client's connect is blocking in both (loopback: the handshake completes in the
 * call, so the connection is pending when accept is called).
 *
 * Prints: mode=M count=N connect_ns_median=X connect_ns_mean=Y accept_ns_median=Z
 * accept_ns_mean=W (wall clock around each call). Client sockets are closed with
 * SO_LINGER {1,0} so no TIME_WAIT builds up. Exits non-zero on any failed call. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(2);
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *name, double *v, int n) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += v[i];
    qsort(v, n, sizeof *v, cmp);
    printf(" %s_ns_median=%.0f %s_ns_mean=%.0f", name, v[n / 2], name, sum / n);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: callcost block|nonblock COUNT\n");
        return 2;
    }
    int nonblock = strcmp(argv[1], "nonblock") == 0;
    int n = atoi(argv[2]);
    if (n <= 0 || (!nonblock && strcmp(argv[1], "block"))) return 2;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0) die("socket");
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(l, (void *)&a, sizeof a) || listen(l, 128) || getsockname(l, (void *)&a, &al))
        die("listen");
    if (nonblock) fcntl(l, F_SETFL, O_NONBLOCK);
    double *tc = calloc(n, sizeof *tc), *ta = calloc(n, sizeof *ta);
    struct linger rst = {1, 0};
    for (int i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0) die("socket");
        double t0 = now_ns();
        if (connect(c, (void *)&a, sizeof a)) die("connect");
        double t1 = now_ns();
        struct sockaddr_in p;
        socklen_t pl = sizeof p;
        int s = accept(l, (void *)&p, &pl);
        double t2 = now_ns();
        if (s < 0) die("accept");
        tc[i] = t1 - t0;
        ta[i] = t2 - t1;
        setsockopt(c, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
        close(c);
        close(s);
    }
    printf("mode=%s count=%d", argv[1], n);
    report("connect", tc, n);
    report("accept", ta, n);
    printf("\n");
    return 0;
}
