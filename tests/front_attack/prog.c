#include <stdlib.h>
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    int r = connect(s, (void*)&a, sizeof a);
    printf("connect %s -> %d %s\n", argv[1], r, r ? strerror(errno) : "ok");
    fflush(stdout);
    if (argc > 3) { char *e[] = {0}; execve(argv[3], argv+3, e); perror("execve"); }
    return 0;
}
