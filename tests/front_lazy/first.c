/* The first hooked call a program makes, in system-wide mode, is an exec: the front
 * resolves it itself (the core waits for the first IP call). Modes:
 *   exec PROG ARGS...    execve first
 *   spawn PROG ARGS...   posix_spawn first, then the parent's own maps and a connect
 *   vfork PROG ARGS...   vfork, then execve in the child
 *   signal PROG ARGS...  fork and execve inside a SIGUSR1 handler
 *   connect HOST PORT    a connect only (for LD_PRELOAD with two fronts)
 * Each child is PROG ARGS... (prog.c: a connect, printed). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static char **child;
static char *noenv[] = {0};

static void say_connect(const char *host, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, host, &a.sin_addr);
    int r = connect(s, (void *)&a, sizeof a);
    printf("parent connect %s -> %d %s\n", host, r, r ? strerror(errno) : "ok");
    fflush(stdout);
}

static void core_mapped(const char *when) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    int core = 0;
    while (f && fgets(line, sizeof line, f))
        core |= strstr(line, "libsockexit_core.so") != NULL;
    if (f) fclose(f);
    printf("parent core mapped %s: %s\n", when, core ? "yes" : "no");
    fflush(stdout);
}

static void on_usr1(int sig) {
    (void)sig;
    pid_t p = fork();
    if (p == 0) {
        execve(child[0], child, noenv);
        _exit(127);
    }
    int st;
    waitpid(p, &st, 0);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    child = argv + 2;
    int st;
    if (!strcmp(argv[1], "exec")) {
        execve(child[0], child, noenv);
        perror("execve");
        return 1;
    }
    if (!strcmp(argv[1], "spawn")) {
        pid_t p;
        int r = posix_spawn(&p, child[0], NULL, NULL, child, noenv);
        if (r) { printf("posix_spawn %s\n", strerror(r)); return 1; }
        waitpid(p, &st, 0);
        core_mapped("after spawn");
        say_connect(child[1], atoi(child[2]));
        core_mapped("after connect");
        r = posix_spawn(&p, child[0], NULL, NULL, child, noenv);
        if (r) { printf("posix_spawn %s\n", strerror(r)); return 1; }
        waitpid(p, &st, 0);
        return 0;
    }
    if (!strcmp(argv[1], "vfork")) {
        pid_t p = vfork();
        if (p == 0) {
            execve(child[0], child, noenv);
            _exit(127);
        }
        waitpid(p, &st, 0);
        return 0;
    }
    if (!strcmp(argv[1], "signal")) {
        signal(SIGUSR1, on_usr1);
        raise(SIGUSR1);
        return 0;
    }
    if (!strcmp(argv[1], "connect")) {
        say_connect(argv[2], atoi(argv[3]));
        return 0;
    }
    return 2;
}
