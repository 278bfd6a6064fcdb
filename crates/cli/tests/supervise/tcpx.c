/* tcpx: the socket calls LD_PRELOAD cannot see, for tests/supervise.rs.
 *   tcpx client MODE ADDR PORT   MODE: libc syscall asm __connect dlsym tfo nonblock
 *     prints "got:BYTES" (what the server sent) or "refused:ERRNO"
 *     with TCPX_SRC_PORT=P the socket is first bound to 127.0.0.1:P ("bind-error:ERRNO")
 *   tcpx server MODE PORT N      MODE: block alarm storm nonblock epollet threads fork
 *     (storm: a blocking accept interrupted every millisecond by a timer signal,
 *     EINTR retried silently: the caller stops waiting at any moment)
 *     prints "listening", then "accepted:ADDR:PORT:LEN" per connection it serves
 *     ("hello N\n" written to each), "accept-error:ERRNO" for failed accepts */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

extern int __connect(int, const struct sockaddr *, socklen_t);

static long asm_connect(long fd, const void *a, long l) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "0"(42L), "D"(fd), "S"(a), "d"(l) : "rcx", "r11", "memory");
    return r;
}

static struct sockaddr_in g_addr;
static unsigned int g_args[3];

static int client(const char *mode, const char *host, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, host, &a.sin_addr);
    const char *src = getenv("TCPX_SRC_PORT");
    if (src) {
        int on = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        struct sockaddr_in b = {0};
        b.sin_family = AF_INET;
        b.sin_port = htons(atoi(src));
        b.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(s, (void *)&b, sizeof b) < 0) { printf("bind-error:%d\n", errno); return 1; }
    }
    int r;
    if (!strcmp(mode, "libc")) r = connect(s, (void *)&a, sizeof a);
    else if (!strcmp(mode, "syscall")) r = syscall(SYS_connect, s, &a, sizeof a);
    else if (!strcmp(mode, "asm")) {
        long x = asm_connect(s, &a, sizeof a);
        if (x < 0) { errno = -x; r = -1; } else r = 0;
    } else if (!strcmp(mode, "int80")) {
        /* i386 socketcall(SYS_CONNECT) through int 0x80 from this 64-bit process
         * (arguments in static, low memory of a non-PIE binary). */
        g_addr = a;
        g_args[0] = s; g_args[1] = (unsigned)(unsigned long)&g_addr; g_args[2] = sizeof g_addr;
        long x;
        __asm__ volatile("int $0x80" : "=a"(x) : "0"(102L), "b"(3L), "c"((long)(unsigned long)g_args) : "memory");
        if (x < 0) { errno = -x; r = -1; } else r = 0;
    } else if (!strcmp(mode, "x32")) {
        long x;
        __asm__ volatile("syscall" : "=a"(x) : "0"(42L | 0x40000000L), "D"((long)s), "S"(&a), "d"((long)sizeof a) : "rcx", "r11", "memory");
        if (x < 0) { errno = -x; r = -1; } else r = 0;
    } else if (!strcmp(mode, "__connect")) r = __connect(s, (void *)&a, sizeof a);
    else if (!strcmp(mode, "dlsym")) {
        int (*f)(int, const struct sockaddr *, socklen_t) = dlsym(RTLD_DEFAULT, "connect");
        if (!f) { puts("no-dlsym"); return 2; }
        r = f(s, (void *)&a, sizeof a);
    } else if (!strcmp(mode, "tfo")) {
        r = sendto(s, "ping", 4, MSG_FASTOPEN, (void *)&a, sizeof a);
        if (r == 4) r = 0; else if (r >= 0) { errno = EIO; r = -1; }
    } else if (!strcmp(mode, "nonblock")) {
        fcntl(s, F_SETFL, O_NONBLOCK);
        r = connect(s, (void *)&a, sizeof a);
        if (r < 0 && errno == EINPROGRESS) {
            struct pollfd p = {s, POLLOUT, 0};
            poll(&p, 1, 5000);
            int e = 0; socklen_t el = sizeof e;
            getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &el);
            if (e) { errno = e; r = -1; } else r = 0;
            fcntl(s, F_SETFL, 0);
            printf("einprogress\n");
        }
    } else { puts("bad mode"); return 2; }
    if (r < 0) { printf("refused:%d\n", errno); return 1; }
    char b[256];
    int n = 0, k;
    while ((k = read(s, b + n, sizeof b - 1 - n)) > 0) n += k;
    b[n] = 0;
    for (int i = 0; i < n; i++) if (b[i] == '\n') b[i] = '|';
    printf("got:%s\n", b);
    return 0;
}

static int lfd, want;
static atomic_int served;

static void serve(int c, struct sockaddr_in *p, socklen_t len) {
    char ip[64];
    inet_ntop(AF_INET, &p->sin_addr, ip, sizeof ip);
    int n = atomic_fetch_add(&served, 1) + 1;
    char msg[64];
    int m = snprintf(msg, sizeof msg, "hello %d\n", n);
    if (write(c, msg, m) != m) perror("write");
    close(c);
    printf("accepted:%s:%d:%d\n", ip, ntohs(p->sin_port), (int)len);
    fflush(stdout);
}

static int quiet_eintr;

static int one(int flags) {
    struct sockaddr_in p = {0};
    socklen_t len = sizeof p;
    int c = accept4(lfd, (void *)&p, &len, flags);
    if (c < 0) {
        if (errno != EAGAIN && !(quiet_eintr && errno == EINTR)) { printf("accept-error:%d\n", errno); fflush(stdout); }
        return -1;
    }
    if (flags & SOCK_NONBLOCK) {
        if (!(fcntl(c, F_GETFL) & O_NONBLOCK)) { puts("flag-lost:nonblock"); exit(3); }
        fcntl(c, F_SETFL, 0);
    }
    if ((flags & SOCK_CLOEXEC) && !(fcntl(c, F_GETFD) & FD_CLOEXEC)) { puts("flag-lost:cloexec"); exit(3); }
    serve(c, &p, len);
    return 0;
}

static void on_alarm(int sig) { (void)sig; }

static void *worker(void *x) {
    (void)x;
    for (;;) one(0);
    return 0;
}

static int server(const char *mode, int port) {
    signal(SIGPIPE, SIG_IGN);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one_ = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one_, sizeof one_);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (port && bind(lfd, (void *)&a, sizeof a) < 0) { perror("bind"); return 1; }
    if (syscall(SYS_listen, lfd, 64) < 0) { printf("listen-error:%d\n", errno); return 1; }
    socklen_t al = sizeof a;
    getsockname(lfd, (void *)&a, &al);
    if (!port) printf("port:%d\n", ntohs(a.sin_port));
    puts("listening");
    fflush(stdout);
    if (!strcmp(mode, "block")) {
        while (served < want) one(SOCK_CLOEXEC);
    } else if (!strcmp(mode, "alarm")) {
        /* A blocking accept interrupted by a signal (no SA_RESTART): EINTR, then
         * the next accept gets the next connection. */
        struct sigaction sa = {0};
        sa.sa_handler = on_alarm;
        sigaction(SIGALRM, &sa, 0);
        alarm(1);
        while (served < want) one(0);
    } else if (!strcmp(mode, "storm")) {
        struct sigaction sa = {0};
        sa.sa_handler = on_alarm;
        sigaction(SIGALRM, &sa, 0);
        struct itimerval it = {{0, 100}, {0, 100}};
        setitimer(ITIMER_REAL, &it, 0);
        quiet_eintr = 1;
        while (served < want) one(0);
    } else if (!strcmp(mode, "storm")) {
        struct sigaction sa = {0};
        sa.sa_handler = on_alarm;
        sigaction(SIGALRM, &sa, 0);
        struct itimerval it = {{0, 100}, {0, 100}};
        setitimer(ITIMER_REAL, &it, 0);
        quiet_eintr = 1;
        while (served < want) one(0);
    } else if (!strcmp(mode, "nonblock")) {
        fcntl(lfd, F_SETFL, O_NONBLOCK);
        while (served < want) {
            struct pollfd p = {lfd, POLLIN, 0};
            poll(&p, 1, -1);
            while (one(SOCK_NONBLOCK | SOCK_CLOEXEC) == 0) {}
        }
    } else if (!strcmp(mode, "epollet")) {
        fcntl(lfd, F_SETFL, O_NONBLOCK);
        int ep = epoll_create1(0);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
        epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
        while (served < want) {
            if (epoll_wait(ep, &ev, 1, -1) < 1) continue;
            /* Edge-triggered: drain until EAGAIN, or the next edge never comes. */
            while (one(SOCK_NONBLOCK) == 0) {}
        }
    } else if (!strcmp(mode, "threads")) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, worker, 0);
        while (served < want) usleep(10000);
    } else if (!strcmp(mode, "fork")) {
        while (served < want) {
            struct sockaddr_in p = {0};
            socklen_t len = sizeof p;
            int c = accept(lfd, (void *)&p, &len);
            if (c < 0) { printf("accept-error:%d\n", errno); fflush(stdout); continue; }
            if (fork() == 0) { serve(c, &p, len); _exit(0); }
            close(c);
            served++;
            wait(0);
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, 0, _IOLBF, 0);
    if (argc >= 5 && !strcmp(argv[1], "client")) return client(argv[2], argv[3], atoi(argv[4]));
    if (argc >= 5 && !strcmp(argv[1], "server")) { want = atoi(argv[4]); return server(argv[2], atoi(argv[3])); }
    fprintf(stderr, "usage\n");
    return 2;
}
