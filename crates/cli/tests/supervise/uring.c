/* io_uring connect: under the supervisor io_uring_setup fails (ENOSYS) and the
 * program falls back to connect(2), which is judged. Prints "uring:ERRNO" then
 * "got:"/"refused:" as tcpx. */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    int s = socket(AF_INET, SOCK_STREAM, 0), r;
    struct io_uring ring;
    int e = io_uring_queue_init(4, &ring, 0);
    printf("uring:%d\n", e < 0 ? -e : 0);
    if (e == 0) {
        struct io_uring_sqe *q = io_uring_get_sqe(&ring);
        io_uring_prep_connect(q, s, (void *)&a, sizeof a);
        io_uring_submit(&ring);
        struct io_uring_cqe *c;
        io_uring_wait_cqe(&ring, &c);
        r = c->res;
        if (r < 0) { errno = -r; r = -1; }
    } else {
        r = connect(s, (void *)&a, sizeof a);
    }
    if (r < 0) { printf("refused:%d\n", errno); return 1; }
    char b[64] = {0};
    int n = read(s, b, sizeof b - 1);
    if (n > 0 && b[n - 1] == '\n') b[n - 1] = '|';
    printf("got:%s\n", b);
    return 0;
}
