/* deepbind: a dynamically linked program that loads a plugin with RTLD_DEEPBIND, for
 * tests/supervise.rs. The plugin's connect binds to libc's own before the preload's
 * (the deep-bound lookup scope puts the plugin's dependencies first), so LD_PRELOAD
 * does not see it; the supervisor does.
 *   deepbind PLUGIN ADDR PORT  prints "got:BYTES" or "refused:ERRNO" */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 4) { puts("usage: deepbind PLUGIN ADDR PORT"); return 2; }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_DEEPBIND);
    if (!h) { printf("dlopen:%s\n", dlerror()); return 2; }
    int (*fetch)(const char *, int) = (int (*)(const char *, int))dlsym(h, "plugin_fetch");
    if (!fetch) { puts("no-plugin_fetch"); return 2; }
    return fetch(argv[2], atoi(argv[3]));
}
