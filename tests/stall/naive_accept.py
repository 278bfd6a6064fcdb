"""The naive Python accept loop (issue 13, item 6): a blocking listening socket and
`while True: conn, _ = s.accept()`, with no handling of any accept error — an
ECONNABORTED from accept() ends it with ConnectionAbortedError.

Stdout: `listening ADDR`, then `accepted PEER` per connection, each greeted with
`220 sockexit naive\r\n` and closed.
"""
import socket

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
s.listen(16)
print("listening %s:%d" % s.getsockname(), flush=True)
while True:
    conn, peer = s.accept()
    print("accepted %s:%d" % peer, flush=True)
    conn.sendall(b"220 sockexit naive\r\n")
    conn.close()
