/* Attacks on the lazy front (system-wide mode: the core loads at the first IP call).
 * Each mode ends in a connect to HOST:PORT, printed as "connect HOST -> R ERR", or
 * runs CHILD... (prog.c of tests/front_attack: a connect, printed) first.
 *   onerror HOST PORT       setenv SOCKEXIT_ON_ERROR=allow, then the core's dlopen fails
 *   envchg POLICY HOST PORT setenv/putenv SOCKEXIT_POLICY, SOCKEXIT_ON_ERROR, LD_PRELOAD
 *   connect HOST PORT       a connect only
 *   clearenv HOST PORT      clearenv() first
 *   unshare HOST PORT       raw unshare(CLONE_NEWNS), an allow-all policy mounted over
 *   chrootback HOST PORT    the same, then back to the start's root (fchdir, chroot .)
 *   bindroot HOST PORT      a bind mount of / with an allow-all policy, raw chroot into it
 *   userns HOST PORT        as nobody: raw unshare(CLONE_NEWUSER|CLONE_NEWNS), allow-all
 *   setns HOST PORT         raw setns into a child's namespace with an allow-all policy
 *   first KIND CHILD...     the first hooked call: KIND of the exec family
 *   race CHILD...           a thread's posix_spawn against the main thread's connect
 *   forkdl SLOW CHILD...    a thread dlopens SLOW (a 3 s constructor); fork, execve
 *   vfork CHILD...          vfork, execve; then whether the core is mapped here */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static char *noenv[] = {0};
static const char ALLOW[] = "version: 1\ndefault: allow\naudit: { log: off }\n";

static int say_connect_fd(int s, const char *host, int port) {
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, host, &a.sin_addr);
    int r = connect(s, (void *)&a, sizeof a);
    printf("connect %s -> %d %s\n", host, r, r ? strerror(errno) : "ok");
    fflush(stdout);
    return r;
}

static int say_connect(const char *host, int port) {
    return say_connect_fd(socket(AF_INET, SOCK_STREAM, 0), host, port);
}

static void core_mapped(const char *when) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    int core = 0;
    while (f && fgets(line, sizeof line, f))
        core |= strstr(line, "libsockexit_core.so") != NULL;
    if (f) fclose(f);
    printf("core mapped %s: %s\n", when, core ? "yes" : "no");
    fflush(stdout);
}

static void die(const char *what) {
    printf("%s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(3);
}

/* An allow-all policy over /etc/sockexit of the current view (`root`: a prefix). */
static void allow_all(const char *root) {
    char dir[256], file[300];
    snprintf(dir, sizeof dir, "%s/etc/sockexit", root);
    if (syscall(SYS_mount, "sx-allow", dir, "tmpfs", 0, "mode=0755")) die("mount tmpfs");
    snprintf(file, sizeof file, "%s/policy.yaml", dir);
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, ALLOW, sizeof ALLOW - 1) != (ssize_t)(sizeof ALLOW - 1))
        die("write policy");
    close(fd);
}

static void new_ns(void) {
    if (syscall(SYS_unshare, CLONE_NEWNS)) die("unshare");
    if (syscall(SYS_mount, "none", "/", 0, MS_REC | MS_PRIVATE, 0)) die("private");
}

static void wait_child(pid_t p) {
    int st;
    if (waitpid(p, &st, 0) != p) die("waitpid");
    if (WIFSIGNALED(st))
        printf("child killed by signal %d\n", WTERMSIG(st));
    else
        printf("child exit %d\n", WEXITSTATUS(st));
    fflush(stdout);
}

static char **kid;
static void *spawner(void *arg) {
    (void)arg;
    pid_t p;
    int r = posix_spawn(&p, kid[0], NULL, NULL, kid, noenv);
    if (r == 0) waitpid(p, NULL, 0);
    return NULL;
}
static void *opener(void *arg) {
    if (!dlopen(arg, RTLD_NOW)) printf("dlopen %s\n", dlerror());
    return NULL;
}

static int first(const char *kind, char **c) {
    pid_t p;
    if (!strcmp(kind, "posix_spawnp")) {
        int r = posix_spawnp(&p, c[0], NULL, NULL, c, noenv);
        if (r) { printf("posix_spawnp %s\n", strerror(r)); return 1; }
        wait_child(p);
        return 0;
    }
    if (!strcmp(kind, "posix_spawn")) {
        int r = posix_spawn(&p, c[0], NULL, NULL, c, noenv);
        if (r) { printf("posix_spawn %s\n", strerror(r)); return 1; }
        wait_child(p);
        return 0;
    }
    /* The rest replace this process: c is PROG HOST PORT. */
    if (!strcmp(kind, "execve")) execve(c[0], c, noenv);
    else if (!strcmp(kind, "execv")) execv(c[0], c);
    else if (!strcmp(kind, "execvp")) execvp(c[0], c);
    else if (!strcmp(kind, "execvpe")) execvpe(c[0], c, noenv);
    else if (!strcmp(kind, "execl")) execl(c[0], c[0], c[1], c[2], (char *)0);
    else if (!strcmp(kind, "execle")) execle(c[0], c[0], c[1], c[2], (char *)0, noenv);
    else if (!strcmp(kind, "execlp")) execlp(c[0], c[0], c[1], c[2], (char *)0);
    else if (!strcmp(kind, "execveat")) {
        int d = open(c[0], O_PATH);
        execveat(d, "", c, noenv, AT_EMPTY_PATH);
    } else if (!strcmp(kind, "fexecve")) {
        int d = open(c[0], O_RDONLY);
        fexecve(d, c, noenv);
    } else {
        printf("unknown %s\n", kind);
        return 2;
    }
    printf("%s: %s\n", kind, strerror(errno));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *m = argv[1];
    if (!strcmp(m, "onerror")) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        setenv("SOCKEXIT_ON_ERROR", "allow", 1);
        /* No descriptor left for the core's dlopen. */
        struct rlimit lim;
        getrlimit(RLIMIT_NOFILE, &lim);
        lim.rlim_cur = s + 1;
        setrlimit(RLIMIT_NOFILE, &lim);
        say_connect_fd(s, argv[2], atoi(argv[3]));
        return 0;
    }
    if (!strcmp(m, "envchg")) {
        setenv("SOCKEXIT_POLICY", argv[2], 1);
        putenv("SOCKEXIT_ON_ERROR=allow");
        setenv("LD_PRELOAD", "", 1);
        say_connect(argv[3], atoi(argv[4]));
        return 0;
    }
    if (!strcmp(m, "connect")) {
        say_connect(argv[2], atoi(argv[3]));
        return 0;
    }
    if (!strcmp(m, "clearenv")) {
        clearenv();
        say_connect(argv[2], atoi(argv[3]));
        return 0;
    }
    if (!strcmp(m, "unshare")) {
        new_ns();
        allow_all("");
        say_connect(argv[2], atoi(argv[3]));
        return 0;
    }
    if (!strcmp(m, "chrootback")) {
        int old = open("/", O_PATH | O_DIRECTORY);
        new_ns();
        allow_all("");
        if (fchdir(old) || syscall(SYS_chroot, ".")) die("chroot back");
        say_connect(argv[2], atoi(argv[3]));
        return 0;
    }
    if (!strcmp(m, "bindroot")) {
        mkdir("/run/sx/b", 0755);
        if (syscall(SYS_mount, "/", "/run/sx/b", 0, MS_BIND | MS_REC, 0)) die("bind /");
        allow_all("/run/sx/b");
        if (syscall(SYS_chroot, "/run/sx/b") || chdir("/")) die("chroot");
        say_connect(argv[2], atoi(argv[3]));
        return 0;
    }
    if (!strcmp(m, "userns")) {
        if (syscall(SYS_setresgid, 65534, 65534, 65534) ||
            syscall(SYS_setresuid, 65534, 65534, 65534))
            die("setresuid");
        /* Dumpable again (a uid change clears it), or /proc/self/uid_map is root's. */
        syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0);
        if (syscall(SYS_unshare, CLONE_NEWUSER | CLONE_NEWNS)) die("unshare user");
        const char *maps[][2] = {{"/proc/self/uid_map", "0 65534 1"},
                                 {"/proc/self/setgroups", "deny"},
                                 {"/proc/self/gid_map", "0 65534 1"}};
        for (int i = 0; i < 3; i++) {
            int fd = open(maps[i][0], O_WRONLY);
            size_t n = strlen(maps[i][1]);
            if (fd < 0 || write(fd, maps[i][1], n) != (ssize_t)n) die(maps[i][0]);
            close(fd);
        }
        allow_all("");
        say_connect(argv[2], atoi(argv[3]));
        return 0;
    }
    if (!strcmp(m, "setns")) {
        int ready[2], hold[2];
        if (pipe(ready) || pipe(hold)) die("pipe");
        pid_t p = fork();
        if (p == 0) {
            close(hold[1]);
            new_ns();
            allow_all("");
            (void)!write(ready[1], "x", 1);
            char c;
            (void)!read(hold[0], &c, 1);
            _exit(0);
        }
        char c;
        if (read(ready[0], &c, 1) != 1) die("ready");
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/mnt", p);
        int ns = open(path, O_RDONLY);
        if (ns < 0 || syscall(SYS_setns, ns, CLONE_NEWNS)) die("setns");
        say_connect(argv[2], atoi(argv[3]));
        close(hold[1]);
        waitpid(p, NULL, 0);
        return 0;
    }
    if (!strcmp(m, "first")) return first(argv[2], argv + 3);
    if (!strcmp(m, "race")) {
        kid = argv + 2;
        pthread_t t;
        pthread_create(&t, NULL, spawner, NULL);
        say_connect(kid[1], atoi(kid[2]));
        pthread_join(t, NULL);
        return 0;
    }
    if (!strcmp(m, "forkdl")) {
        pthread_t t;
        pthread_create(&t, NULL, opener, argv[2]);
        usleep(300 * 1000);
        pid_t p = fork();
        if (p == 0) {
            alarm(6);
            execve(argv[3], argv + 3, noenv);
            _exit(127);
        }
        wait_child(p);
        pthread_join(t, NULL);
        return 0;
    }
    if (!strcmp(m, "vfork")) {
        pid_t p = vfork();
        if (p == 0) {
            execve(argv[2], argv + 2, noenv);
            _exit(127);
        }
        wait_child(p);
        core_mapped("after vfork");
        return 0;
    }
    return 2;
}
