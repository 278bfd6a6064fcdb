"""Python's socketserver.TCPServer with serve_forever() in a thread (issue 13, item 6).

serve_forever() polls the (blocking) listening socket and calls accept() when it is
readable; shutdown() waits for serve_forever() to notice the request. If a refused
peer made accept() wait for the next connection, shutdown() would hang.

Stdout: `listening ADDR`; after a line `shutdown` on stdin: `shutdown returned ms=N`
(exit 0), or `shutdown hung` after LIMIT seconds (argv[1], default 5; exit 3).
"""
import os
import socketserver
import sys
import threading
import time


class Greeter(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(b"220 sockexit socketserver\r\n")


limit = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
srv = socketserver.TCPServer(("127.0.0.1", 0), Greeter)
print("listening %s:%d" % srv.server_address, flush=True)
threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

for line in sys.stdin:
    if line.strip() == "shutdown":
        break

t0 = time.monotonic()
done = threading.Event()


def stop():
    srv.shutdown()
    done.set()


threading.Thread(target=stop, daemon=True).start()
if done.wait(limit):
    print("shutdown returned ms=%d" % ((time.monotonic() - t0) * 1000), flush=True)
    srv.server_close()
    sys.exit(0)
print("shutdown hung", flush=True)
os._exit(3)
