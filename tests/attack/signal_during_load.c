/* Repro (not run by cargo): a signal handler making an allowed IP call while the same
   thread is inside the deferred first load (hook::Loading) is refused silently with
   EACCES, no log, no audit line. Build: cc -O1 -o sig signal_during_load.c; run under
   /etc/ld.so.preload with a policy that allows 127.0.0.1 and denies 127.0.0.3; prints
   "refused N" > 0 in most runs (e.g. 56 of 98). */
#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>
#include <signal.h>
#include <errno.h>
#include <string.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
static volatile int eacces, other, n;
static int conn(const char *ip) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(9) };
    inet_pton(AF_INET, ip, &a.sin_addr);
    int r = connect(s, (void *)&a, sizeof a); int e = errno; close(s); errno = e; return r;
}
static volatile int inmain; static void h(int sig) { int e = errno; if (!inmain) return; n++; if (conn("127.0.0.1") < 0 && errno == EACCES) eacces++; else other++; errno = e; }
int main(void) {
    struct sigaction sa = { .sa_handler = h }; sigaction(SIGALRM, &sa, 0);
    struct itimerval it = { {0, 50}, {0, 50} }; setitimer(ITIMER_REAL, &it, 0);
    inmain = 1; conn("127.0.0.3"); inmain = 0;
    struct itimerval z = {0}; setitimer(ITIMER_REAL, &z, 0);
    printf("handler calls %d: refused %d, not refused %d\n", n, eacces, other);
}
