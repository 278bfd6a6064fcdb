/* connrate: one process, loopback loop of socket/connect/accept/close.
 *
 * usage: connrate allow|refuse COUNT [peer|nopeer]
 *   allow   every accept must return a connection (the policy allows 127.0.0.1)
 *   refuse  the listening socket is non-blocking and every accept must return
 *           EAGAIN: the preloaded hook took the connection, refused it (reset) and
 *           found nothing else pending. Plain (no preload) the same loop accepts.
 *   peer    (default) accept(fd, &addr, &len): the server asks for the peer's
 *           address, as nginx, vsftpd, sshd, redis and Python's socket.accept do
 *   nopeer  accept(fd, NULL, NULL), as libuv (Node.js) does; sockexit still needs
 *           the peer, so with the library the kernel writes an address the plain
 *           program never asked for
 *
 * Client sockets are closed with SO_LINGER {1,0} (RST) in both modes so no TIME_WAIT
 * state builds up over tens of thousands of connections to one port; the extra
 * setsockopt is the same with and without the library.
 *
 * Prints one line: mode=... count=N accepted=A refused=R ns_per_conn=X cpu_ns_per_conn=C
 * (X: wall clock; C: this process's CPU time, user + kernel, which includes the
 * loopback TCP work done in its context but not the time other processes on a shared
 * machine held the CPU).
 * Exits non-zero when a call fails unexpectedly, so a broken run is never timed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(2);
}

static double clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: connrate allow|refuse COUNT [peer|nopeer]\n");
        return 2;
    }
    int nopeer = argc == 4 && strcmp(argv[3], "nopeer") == 0;
    if (argc == 4 && !nopeer && strcmp(argv[3], "peer") != 0) {
        fprintf(stderr, "connrate: third argument must be peer or nopeer\n");
        return 2;
    }
    int refuse = strcmp(argv[1], "refuse") == 0;
    if (!refuse && strcmp(argv[1], "allow") != 0) {
        fprintf(stderr, "connrate: mode must be allow or refuse\n");
        return 2;
    }
    long count = atol(argv[2]);
    if (count <= 0 || count > 10000000) {
        fprintf(stderr, "connrate: COUNT out of range\n");
        return 2;
    }

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(lfd, 128) < 0) die("listen");
    socklen_t sl = sizeof sa;
    if (getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) die("getsockname");
    if (refuse && fcntl(lfd, F_SETFL, O_NONBLOCK) < 0) die("fcntl");
    /* Bounded even when broken: a library that swallowed a connection it should have
     * allowed would leave a blocking accept waiting forever; accept honours
     * SO_RCVTIMEO, so that run fails with EAGAIN after 5 s instead. */
    struct timeval tmo = {5, 0};
    if (setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof tmo) < 0) die("SO_RCVTIMEO");

    struct linger lg = {1, 0};
    long accepted = 0, refused = 0;
    long warm = count / 20 + 10;
    double t0 = 0, c0 = 0;
    for (long i = 0; i < warm + count; i++) {
        if (i == warm) {
            accepted = refused = 0;
            t0 = clock_ns(CLOCK_MONOTONIC);
            c0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        }
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0) die("socket (client)");
        if (connect(c, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int a = nopeer ? accept(lfd, NULL, NULL) : accept(lfd, (struct sockaddr *)&peer, &plen);
        if (a >= 0) {
            if (!nopeer && (peer.ss_family != AF_INET || plen != sizeof(struct sockaddr_in))) {
                fprintf(stderr, "connrate: accept returned no IPv4 peer address\n");
                return 2;
            }
            accepted++;
            close(a);
        } else if (refuse && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            refused++;
        } else {
            die("accept");
        }
        setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(c);
    }
    double t1 = clock_ns(CLOCK_MONOTONIC);
    double c1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    printf("mode=%s%s count=%ld accepted=%ld refused=%ld ns_per_conn=%.1f cpu_ns_per_conn=%.1f\n",
           argv[1], nopeer ? "-nopeer" : "", count, accepted, refused, (t1 - t0) / count, (c1 - c0) / count);
    return 0;
}
