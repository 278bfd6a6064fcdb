#!/usr/bin/env python3
"""Attack program for issue 13 item 4: libc's socket calls reached through Python's
ctypes, which resolves them with dlopen("libc.so.6") + dlsym, not through the PLT
the preload interposes on. Run by tests/bypass/ under the preload.

Usage:
  attack_ctypes.py connect HANDLE IP PORT       one connect(); prints `ok` / `error NAME N`
  attack_ctypes.py listen HANDLE IP             bind IP:0 (Python), listen() via ctypes
  attack_ctypes.py accept HANDLE IP MAX         a server: `listening IP:PORT`, then accept()
                                                via ctypes, write a banner, `accepted PEER`,
                                                exit after MAX connections

HANDLE: `libc` = ctypes.CDLL("libc.so.6"), `default` = ctypes.CDLL(None) (the global
scope), `__connect` = CDLL("libc.so.6").__connect (connect only).
"""
import ctypes
import errno
import ipaddress
import socket
import struct
import sys

BANNER = b"220 sockexit attack\r\n"


def handle(name):
    if name in ("libc", "__connect"):
        return ctypes.CDLL("libc.so.6", use_errno=True)
    if name == "default":
        return ctypes.CDLL(None, use_errno=True)
    raise SystemExit("unknown handle " + name)


def sockaddr(ip, port):
    a = ipaddress.ip_address(ip)
    if a.version == 4:
        return socket.AF_INET, struct.pack("=H", socket.AF_INET) + struct.pack(">H", port) + a.packed + b"\0" * 8
    return socket.AF_INET6, (struct.pack("=H", socket.AF_INET6) + struct.pack(">H", port)
                             + b"\0" * 4 + a.packed + b"\0" * 4)


def result(r):
    if r < 0:
        e = ctypes.get_errno()
        return "error %s %d" % (errno.errorcode.get(e, "UNKNOWN"), e)
    return "ok"


def main():
    cmd, hname = sys.argv[1], sys.argv[2]
    lib = handle(hname)
    if cmd == "connect":
        ip, port = sys.argv[3], int(sys.argv[4])
        fam, sa = sockaddr(ip, port)
        s = socket.socket(fam, socket.SOCK_STREAM)
        buf = ctypes.create_string_buffer(sa, len(sa))
        fn = lib.__connect if hname == "__connect" else lib.connect
        r = fn(s.fileno(), buf, len(sa))
        print(result(r), flush=True)
        if r == 0:
            s.sendall(b"hello\n")
        s.close()
    elif cmd == "listen":
        ip = sys.argv[3]
        fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.bind((ip, 0))
        print(result(lib.listen(s.fileno(), 8)), flush=True)
    elif cmd == "accept":
        ip, mx = sys.argv[3], int(sys.argv[4])
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((ip, 0))
        s.listen(8)  # the hooked listen (allowed by the tests' policies)
        print("listening %s:%d" % s.getsockname(), flush=True)
        served = 0
        while served < mx:
            peer = ctypes.create_string_buffer(128)
            plen = ctypes.c_uint32(128)
            c = lib.accept(s.fileno(), peer, ctypes.byref(plen))
            if c < 0:
                e = ctypes.get_errno()
                if e in (errno.EINTR, errno.ECONNABORTED):
                    continue
                print(result(c), flush=True)
                sys.exit(1)
            port = struct.unpack(">H", peer.raw[2:4])[0]
            host = socket.inet_ntoa(peer.raw[4:8])
            import os
            os.write(c, BANNER)
            os.close(c)
            print("accepted %s:%d" % (host, port), flush=True)
            served += 1
        print("served %d" % served, flush=True)
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main()
