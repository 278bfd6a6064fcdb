/* wrapbench: time TCP Wrappers' hosts_ctl() for one client against the rule files
 * in DIR (DIR/hosts.allow, DIR/hosts.deny), the way a tcpd-style server asks for
 * every connection. libwrap re-reads both files on every call.
 *
 * usage: wrapbench DIR CLIENT_ADDR EXPECT(allow|deny) MIN_CALLS MIN_MS
 * Calls hosts_ctl at least MIN_CALLS times and for at least MIN_MS milliseconds.
 * Prints: calls=N ns_per_call=X verdict=allow|deny. Exits non-zero when the verdict
 * is not EXPECT (a wrong rule file must not produce a number). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <tcpd.h>
#include <time.h>

int allow_severity = LOG_INFO;
int deny_severity = LOG_WARNING;

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: wrapbench DIR CLIENT_ADDR allow|deny MIN_CALLS MIN_MS\n");
        return 2;
    }
    static char allow_path[4096], deny_path[4096];
    snprintf(allow_path, sizeof allow_path, "%s/hosts.allow", argv[1]);
    snprintf(deny_path, sizeof deny_path, "%s/hosts.deny", argv[1]);
    hosts_allow_table = allow_path;
    hosts_deny_table = deny_path;
    int want = strcmp(argv[3], "allow") == 0;
    long min_calls = atol(argv[4]);
    double min_ns = atof(argv[5]) * 1e6;

    /* STRING_UNKNOWN as the client name: the rules are addresses, no DNS is needed
     * (and none may happen in a benchmark). */
    int v = hosts_ctl("benchd", STRING_UNKNOWN, argv[2], STRING_UNKNOWN);
    if (v != want) {
        fprintf(stderr, "wrapbench: hosts_ctl said %s, expected %s\n", v ? "allow" : "deny",
                argv[3]);
        return 3;
    }
    long n = 0;
    double t0 = now_ns(), t = t0;
    while (n < min_calls || t - t0 < min_ns) {
        v = hosts_ctl("benchd", STRING_UNKNOWN, argv[2], STRING_UNKNOWN);
        if (v != want) return 3;
        n++;
        if ((n & 15) == 0 || n >= min_calls) t = now_ns();
    }
    t = now_ns();
    printf("calls=%ld ns_per_call=%.1f verdict=%s\n", n, (t - t0) / n, v ? "allow" : "deny");
    return 0;
}
