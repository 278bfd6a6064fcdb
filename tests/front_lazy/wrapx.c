/* An interposer whose connect is an indirect function (STT_GNU_IFUNC): its symbol's
 * value is the resolver, which returns the implementation. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/socket.h>
#include <unistd.h>
static int impl(int fd, const struct sockaddr *a, socklen_t l) {
    write(2, "WRAP-connect\n", 13);
    int (*n)(int, const struct sockaddr *, socklen_t) = dlsym(RTLD_NEXT, "connect");
    return n(fd, a, l);
}
static void *resolve_connect(void) { return (void *)impl; }
int connect(int, const struct sockaddr *, socklen_t) __attribute__((ifunc("resolve_connect")));
