#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/resource.h>
/* Lazy mode: make the core's dlopen fail (no descriptor left), then reach libc's own
   connect through dlsym on libc's handle, which the fail-closed front hands to libc. */
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct rlimit old, lim; getrlimit(RLIMIT_NOFILE, &old); lim = old; lim.rlim_cur = s + 1;
    setrlimit(RLIMIT_NOFILE, &lim);
    void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    setrlimit(RLIMIT_NOFILE, &old);
    int (*c)(int, const struct sockaddr *, socklen_t) = dlsym(h, "connect");
    struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(9);
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    int r = c(s, (void *)&a, sizeof a);
    printf(r ? "error %s\n" : "connected\n", strerrorname_np(errno));
    return 0;
}
