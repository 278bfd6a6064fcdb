/* execloop: start a program COUNT times (posix_spawn + waitpid), one after another.
 *
 * usage: execloop COUNT PROGRAM [ARGS...]
 * The children get this process's environment plus, when set here,
 * BENCH_CHILD_LD_PRELOAD -> LD_PRELOAD and BENCH_CHILD_POLICY -> SOCKEXIT_POLICY,
 * so only the children are preloaded, never the timing loop itself.
 *
 * Prints: count=N ns_per_exec=X cpu_ns_per_exec=C minflt_per_exec=F. X is wall clock;
 * C is the CPU time (user + system) of the children, from getrusage(RUSAGE_CHILDREN):
 * what each started program itself spent, whatever else the shared machine was doing;
 * F their minor page faults, the same on any load (each is kernel time no instruction
 * count shows: every mapped segment and page an object touches).
 * Exits non-zero if any child fails. */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: execloop COUNT PROGRAM [ARGS...]\n");
        return 2;
    }
    long count = atol(argv[1]);
    if (count <= 0 || count > 1000000) {
        fprintf(stderr, "execloop: COUNT out of range\n");
        return 2;
    }
    const char *pre = getenv("BENCH_CHILD_LD_PRELOAD");
    const char *pol = getenv("BENCH_CHILD_POLICY");
    size_t n = 0;
    while (environ[n]) n++;
    char **envp = calloc(n + 3, sizeof *envp);
    if (!envp) return 2;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "BENCH_CHILD_", 12) == 0 ||
            strncmp(environ[i], "LD_PRELOAD=", 11) == 0 ||
            strncmp(environ[i], "SOCKEXIT_POLICY=", 16) == 0)
            continue;
        envp[k++] = environ[i];
    }
    static char b1[4096], b2[4096];
    if (pre && *pre) {
        snprintf(b1, sizeof b1, "LD_PRELOAD=%s", pre);
        envp[k++] = b1;
    }
    if (pol && *pol) {
        snprintf(b2, sizeof b2, "SOCKEXIT_POLICY=%s", pol);
        envp[k++] = b2;
    }
    envp[k] = NULL;

    struct timespec t0, t1;
    struct rusage r0, r1;
    getrusage(RUSAGE_CHILDREN, &r0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < count; i++) {
        pid_t pid;
        int rc = posix_spawn(&pid, argv[2], NULL, NULL, argv + 2, envp);
        if (rc != 0) {
            fprintf(stderr, "execloop: posix_spawn %s: %s\n", argv[2], strerror(rc));
            return 2;
        }
        int st;
        if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "execloop: child %s failed (status 0x%x)\n", argv[2], st);
            return 2;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    getrusage(RUSAGE_CHILDREN, &r1);
    double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
#define TV_NS(tv) ((tv).tv_sec * 1e9 + (tv).tv_usec * 1e3)
    double cpu = TV_NS(r1.ru_utime) + TV_NS(r1.ru_stime) - TV_NS(r0.ru_utime) - TV_NS(r0.ru_stime);
    double flt = (double)(r1.ru_minflt - r0.ru_minflt);
    printf("count=%ld ns_per_exec=%.1f cpu_ns_per_exec=%.1f minflt_per_exec=%.2f\n", count,
           ns / count, cpu / count, flt / count);
    return 0;
}
