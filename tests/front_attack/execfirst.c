#include <unistd.h>
#include <stdio.h>
int main(int argc, char **argv) { char *e[] = {0}; execve(argv[1], argv+1, e); perror("execve"); return 1; }
