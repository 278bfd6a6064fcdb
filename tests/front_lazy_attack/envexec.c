/* envexec VAR=VALUE... -- PROG ARGS...: exec PROG with exactly those variables, in that
 * order (duplicates kept: `env` cannot make two of a name). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int i = 1;
    while (i < argc && strcmp(argv[i], "--")) i++;
    if (i >= argc - 1) return 2;
    argv[i] = 0;
    execve(argv[i + 1], argv + i + 1, argv + 1);
    perror("execve");
    return 127;
}
