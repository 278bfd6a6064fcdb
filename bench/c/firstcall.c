/* firstcall: one IP socket call, then exit — a started program that does use the
 * network, so the preload's work at the first IP call (compiling big set files) is
 * part of what it costs.
 *
 * usage: firstcall [--rss]
 * Connects a TCP socket to 127.0.0.1 port 1 (nothing listens there: ECONNREFUSED,
 * which is fine; the bench policies allow loopback). Exits 3 if the connect was
 * refused with EACCES (the policy did not allow it: the measurement would be wrong).
 * --rss: then print the same fields as rssprobe, measured after the call. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include "procmem.h"
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("firstcall: socket");
        return 2;
    }
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(1);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0 && errno == EACCES) {
        fprintf(stderr, "firstcall: connect refused by the policy (EACCES)\n");
        return 3;
    }
    close(fd);
    if (argc > 1 && strcmp(argv[1], "--rss") == 0) {
        return procmem_report("firstcall");
    }
    return 0;
}
