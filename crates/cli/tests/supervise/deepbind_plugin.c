/* The RTLD_DEEPBIND plugin of deepbind.c: connects with libc's connect (resolved in
 * the plugin's own scope first) and reads what the server sends. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int plugin_fetch(const char *host, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(s, (void *)&a, sizeof a) < 0) { printf("refused:%d\n", errno); return 1; }
    char b[256];
    int n = 0, k;
    while ((k = read(s, b + n, sizeof b - 1 - n)) > 0) n += k;
    b[n] = 0;
    for (int i = 0; i < n; i++) if (b[i] == '\n') b[i] = '|';
    printf("got:%s\n", b);
    return 0;
}
