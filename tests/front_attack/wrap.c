#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/socket.h>
#include <unistd.h>
#include <string.h>
int connect(int fd, const struct sockaddr *a, socklen_t l) {
    write(2, "WRAP-connect\n", 13);
    int (*n)(int, const struct sockaddr *, socklen_t) = dlsym(RTLD_NEXT, "connect");
    return n(fd, a, l);
}
int execve(const char *p, char *const a[], char *const e[]) {
    write(2, "WRAP-execve\n", 12);
    int (*n)(const char*, char *const[], char *const[]) = dlsym(RTLD_NEXT, "execve");
    return n(p, a, e);
}
