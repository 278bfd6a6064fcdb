#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <sys/socket.h>
/* No hooked call (connect, dlopen, dlsym, prctl, chroot, unshare, ...) before the
   confinement: in system-wide mode the core is not loaded yet. */
static const char *jail, *host; static int port;
static int try_connect(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(port);
    inet_pton(AF_INET, host, &a.sin_addr);
    int r = connect(s, (void *)&a, sizeof a);
    if (r == 0) printf("connected\n"); else printf("error %s %d\n", strerrorname_np(errno), errno);
    fflush(stdout);
    return 0;
}
static void must(int r, const char *w) { if (r) { printf("fail %s %d\n", w, errno); fflush(stdout); _exit(1); } }
static int child(void *_) {
    char p[4096];
    must(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "private");
    must(mount("sx-none", "/run/sockexit", "tmpfs", 0, NULL), "tmpfs");
    snprintf(p, sizeof p, "%s/etc/sockexit", jail);
    must(mount(p, "/etc/sockexit", NULL, MS_BIND, NULL), "bind");
    return try_connect();
}
int main(int argc, char **argv) {
    jail = argv[2]; char *c = strrchr(argv[3], ':'); *c = 0; host = argv[3]; port = atoi(c + 1);
    if (!strcmp(argv[1], "clone-mount")) {
        static char stack[1 << 22]; char *top = stack + sizeof stack;
        pid_t pid = clone(child, top, CLONE_NEWNS | SIGCHLD, NULL);
        if (pid < 0) { printf("fail clone %d\n", errno); return 1; }
        int st; waitpid(pid, &st, 0); if (st) printf("child status 0x%x\n", st);
        return 0;
    }
    if (!strcmp(argv[1], "setuid")) must(setresuid(65534, 65534, 65534), "setresuid");
    return try_connect();
}
