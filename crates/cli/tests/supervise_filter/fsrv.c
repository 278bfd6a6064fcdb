/* Servers for tests/supervise_filter.rs (accept-by-filter mode).
 *   fsrv serve PORT    listen on 0.0.0.0:PORT, try to detach/replace/lock the
 *                      listener's filter and to filter a UDP socket (prints each
 *                      result), then serve "hello N\n" per connection
 *   fsrv fork PORT     listen, fork twice (the grandchild serves), the parent closes
 *                      its listener, prints parent-closed and exits
 *   fsrv inherit FD    serve on an inherited listener
 *   fsrv rebind PORT   per connection: bind, listen, serve one, close the listener
 *   fsrv udpbpf 0      load an eBPF socket filter that drops all (bpf(2), root),
 *                      attach it to a UDP socket with SO_ATTACH_BPF, detach it
 *   fsrv late PORT PATH  serve on PORT; once the file PATH exists, also listen on
 *                      an ephemeral port (prints second:N)
 *   fsrv sctp PORT     bind an SCTP stream socket to 127.0.0.1:PORT and listen
 *   fsrv passout PORT PATH  listen, send the listener over the unix socket PATH
 *                      (SCM_RIGHTS, to a process outside the tree), close it, wait */
#include <errno.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int n;

static int listener(int port, int quiet) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (void *)&a, sizeof a) || listen(s, 64)) {
        printf("bind-error:%d\n", errno);
        exit(1);
    }
    if (!quiet) printf("listening\n");
    return s;
}

static void serve_one(int l) {
    int c = accept(l, NULL, NULL);
    if (c < 0) {
        printf("accept-error:%d\n", errno);
        return;
    }
    dprintf(c, "hello %d\n", ++n);
    close(c);
    printf("accepted\n");
}

static int err_of(int r) { return r ? errno : 0; }

static void tamper(int l) {
    struct sock_filter all = BPF_STMT(BPF_RET | BPF_K, 0xffffffff);
    struct sock_filter none = BPF_STMT(BPF_RET | BPF_K, 0);
    struct sock_fprog pa = {1, &all}, pn = {1, &none};
    int one = 1, zero = 0;
    printf("detach:%d\n", err_of(setsockopt(l, SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof zero)));
    printf("attach:%d\n", err_of(setsockopt(l, SOL_SOCKET, SO_ATTACH_FILTER, &pa, sizeof pa)));
    printf("lock:%d\n", err_of(setsockopt(l, SOL_SOCKET, SO_LOCK_FILTER, &one, sizeof one)));
    /* An MPTCP listener's SYNs would not meet the filter: no MPTCP sockets. */
    printf("mptcp:%d\n", socket(AF_INET, SOCK_STREAM, 262) < 0 ? errno : 0);
    /* Nor listeners taken from other processes (EPERM before EBADF). */
    printf("getfd:%d\n", syscall(SYS_pidfd_getfd, -1, 0, 0) < 0 ? errno : 0);
    /* A UDP socket's filter is the program's business: performed for it. */
    int u = socket(AF_INET, SOCK_DGRAM, 0), v = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t al = sizeof a;
    bind(u, (void *)&a, sizeof a);
    getsockname(u, (void *)&a, &al);
    printf("udp-attach:%d\n", err_of(setsockopt(u, SOL_SOCKET, SO_ATTACH_FILTER, &pn, sizeof pn)));
    struct pollfd p = {u, POLLIN, 0};
    sendto(v, "x", 1, 0, (void *)&a, sizeof a);
    printf("udp-dropped:%d\n", poll(&p, 1, 300) == 0);
    printf("udp-detach:%d\n", err_of(setsockopt(u, SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof zero)));
    sendto(v, "y", 1, 0, (void *)&a, sizeof a);
    printf("udp-received:%d\n", poll(&p, 1, 2000) == 1);
}

/* SO_ATTACH_BPF on a UDP socket: the program's business, performed for it. */
static void udp_bpf(void) {
    struct bpf_insn prog[] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0},
        {.code = BPF_JMP | BPF_EXIT},
    };
    union bpf_attr at;
    memset(&at, 0, sizeof at);
    at.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    at.insns = (unsigned long)prog;
    at.insn_cnt = 2;
    at.license = (unsigned long)"GPL";
    int pf = syscall(SYS_bpf, BPF_PROG_LOAD, &at, sizeof at);
    if (pf < 0) {
        printf("bpf-load-error:%d\n", errno);
        return;
    }
    printf("bpf-loaded\n");
    int u = socket(AF_INET, SOCK_DGRAM, 0), v = socket(AF_INET, SOCK_DGRAM, 0), zero = 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t al = sizeof a;
    bind(u, (void *)&a, sizeof a);
    getsockname(u, (void *)&a, &al);
    printf("udp-bpf-attach:%d\n", err_of(setsockopt(u, SOL_SOCKET, SO_ATTACH_BPF, &pf, sizeof pf)));
    struct pollfd p = {u, POLLIN, 0};
    sendto(v, "x", 1, 0, (void *)&a, sizeof a);
    printf("udp-dropped:%d\n", poll(&p, 1, 300) == 0);
    printf("udp-detach:%d\n", err_of(setsockopt(u, SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof zero)));
    sendto(v, "y", 1, 0, (void *)&a, sizeof a);
    printf("udp-received:%d\n", poll(&p, 1, 2000) == 1);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3) return 2;
    int arg = atoi(argv[2]);
    if (!strcmp(argv[1], "serve")) {
        int l = listener(arg, 1);
        tamper(l);
        printf("listening\n");
        for (;;) serve_one(l);
    }
    if (!strcmp(argv[1], "fork")) {
        int l = listener(arg, 0);
        pid_t a = fork();
        if (a == 0) {
            if (fork() == 0) {
                printf("grandchild-serving\n");
                for (;;) serve_one(l);
            }
            _exit(0);
        }
        waitpid(a, NULL, 0);
        close(l);
        printf("parent-closed\n");
        return 0;
    }
    if (!strcmp(argv[1], "inherit")) {
        printf("listening\n");
        for (;;) serve_one(arg);
    }
    if (!strcmp(argv[1], "late") && argc >= 4) {
        int l = listener(arg, 0), done = 0;
        for (;;) {
            struct pollfd p = {l, POLLIN, 0};
            if (poll(&p, 1, 100) == 1) serve_one(l);
            if (!done && access(argv[3], F_OK) == 0) {
                int s = listener(0, 1);
                struct sockaddr_in a;
                socklen_t al = sizeof a;
                getsockname(s, (void *)&a, &al);
                printf("second:%d\n", ntohs(a.sin_port));
                done = 1;
            }
        }
    }
    if (!strcmp(argv[1], "sctp")) {
        int s = socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP);
        if (s < 0) {
            printf("sctp-socket:%d\n", errno);
            return 1;
        }
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(arg),
                                .sin_addr.s_addr = htonl(0x7f000001)};
        printf("sctp-bind:%d\n", err_of(bind(s, (void *)&a, sizeof a)));
        printf("sctp-listen:%d\n", err_of(listen(s, 8)));
        return 0;
    }
    if (!strcmp(argv[1], "udpbpf")) {
        udp_bpf();
        return 0;
    }
    if (!strcmp(argv[1], "rebind")) {
        for (;;) {
            int l = listener(arg, 0);
            serve_one(l);
            close(l);
        }
    }
    if (!strcmp(argv[1], "passout") && argc >= 4) {
        int l = listener(arg, 0), u = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strncpy(a.sun_path, argv[3], sizeof a.sun_path - 1);
        if (connect(u, (void *)&a, sizeof a)) {
            printf("unix-error:%d\n", errno);
            return 1;
        }
        char byte = 'x', cbuf[CMSG_SPACE(sizeof(int))];
        struct iovec iov = {&byte, 1};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                           .msg_controllen = sizeof cbuf};
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &l, sizeof l);
        if (sendmsg(u, &m, 0) != 1) {
            printf("sendmsg-error:%d\n", errno);
            return 1;
        }
        close(l);
        printf("passed\n");
        for (;;) pause();
    }
    return 2;
}
