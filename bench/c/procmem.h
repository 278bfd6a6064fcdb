/* Memory of the calling process, as rssprobe and firstcall --rss report it. */
#include <stdio.h>
#include <string.h>

static long procmem_field(const char *path, const char *name) {
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

/* Prints `vmrss_kb=A private_kb=B pss_kb=C anon_kb=D` (from /proc/self/status and
 * /proc/self/smaps_rollup; private = Private_Clean + Private_Dirty). Returns 0, or 2
 * (after a message naming `who`) if /proc/self cannot be read. */
static int procmem_report(const char *who) {
    long rss = procmem_field("/proc/self/status", "VmRSS");
    long pc = procmem_field("/proc/self/smaps_rollup", "Private_Clean");
    long pd = procmem_field("/proc/self/smaps_rollup", "Private_Dirty");
    long pss = procmem_field("/proc/self/smaps_rollup", "Pss");
    long anon = procmem_field("/proc/self/smaps_rollup", "Anonymous");
    if (rss < 0 || pc < 0 || pd < 0 || pss < 0 || anon < 0) {
        fprintf(stderr, "%s: cannot read /proc/self\n", who);
        return 2;
    }
    printf("vmrss_kb=%ld private_kb=%ld pss_kb=%ld anon_kb=%ld\n", rss, pc + pd, pss, anon);
    return 0;
}
