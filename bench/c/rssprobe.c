/* rssprobe: report this process's memory right after start-up (the preload's
 * constructor has run by then: the policy is loaded).
 *
 * Prints: vmrss_kb=A private_kb=B pss_kb=C anon_kb=D   (from /proc/self/status and
 * /proc/self/smaps_rollup; private = Private_Clean + Private_Dirty; anon = Anonymous:
 * heap, stacks and written data pages, the part no other process can ever share,
 * unlike the library's code, which is private here only because no other process
 * happens to map it at the same time). */
#include <stdio.h>
#include <string.h>

static long field(const char *path, const char *name) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(name);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, name, n) == 0 && line[n] == ':') {
            sscanf(line + n + 1, "%ld", &v);
            break;
        }
    }
    fclose(f);
    return v;
}

int main(void) {
    long rss = field("/proc/self/status", "VmRSS");
    long pc = field("/proc/self/smaps_rollup", "Private_Clean");
    long pd = field("/proc/self/smaps_rollup", "Private_Dirty");
    long pss = field("/proc/self/smaps_rollup", "Pss");
    long anon = field("/proc/self/smaps_rollup", "Anonymous");
    if (rss < 0 || pc < 0 || pd < 0 || pss < 0 || anon < 0) {
        fprintf(stderr, "rssprobe: cannot read /proc/self\n");
        return 2;
    }
    printf("vmrss_kb=%ld private_kb=%ld pss_kb=%ld anon_kb=%ld\n", rss, pc + pd, pss, anon);
    return 0;
}
