/* nullhook.so: the cheapest possible LD_PRELOAD interposer of accept, accept4, connect
 * and listen. It decides nothing: each hook calls the real function (resolved once, in
 * the constructor) and returns its result. Like sockexit, accept and accept4 always
 * ask the kernel for the peer address (sockexit needs it to decide, and must accept
 * into its own buffer when the caller passes NULL), then copy it back.
 *
 * The benchmark runs it as a third variant of item 1 to split sockexit's cost per
 * connection into "being an interposer at all" and "deciding".
 *
 * Build: gcc -O2 -shared -fPIC -o nullhook.so nullhook.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*accept_fn)(int, struct sockaddr *, socklen_t *);
typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);
typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);
typedef int (*listen_fn)(int, int);

static accept_fn real_accept;
static accept4_fn real_accept4;
static connect_fn real_connect;
static listen_fn real_listen;

__attribute__((constructor)) static void init(void) {
    real_accept = (accept_fn)dlsym(RTLD_NEXT, "accept");
    real_accept4 = (accept4_fn)dlsym(RTLD_NEXT, "accept4");
    real_connect = (connect_fn)dlsym(RTLD_NEXT, "connect");
    real_listen = (listen_fn)dlsym(RTLD_NEXT, "listen");
}

static int copy_back(int fd, struct sockaddr_storage *ss, socklen_t len, struct sockaddr *addr,
                     socklen_t *alen) {
    if (fd >= 0 && addr && alen) {
        socklen_t n = *alen < len ? *alen : len;
        memcpy(addr, ss, n);
        *alen = len;
    }
    return fd;
}

int accept(int fd, struct sockaddr *addr, socklen_t *alen) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int r = real_accept(fd, (struct sockaddr *)&ss, &len);
    return copy_back(r, &ss, len, addr, alen);
}

int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int r = real_accept4(fd, (struct sockaddr *)&ss, &len, flags);
    return copy_back(r, &ss, len, addr, alen);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    return real_connect(fd, addr, len);
}

int listen(int fd, int backlog) {
    return real_listen(fd, backlog);
}
