"""Banner/echo server for tests/daemons/ on asyncio (epoll, non-blocking accept).

On each connection: send "hello from python\n" at once, read one line, answer
"echo: <line>\n", close. A peer refused by the preload must never see the banner.
Usage: python3 banner_server.py PORT
"""
import asyncio
import sys


async def handle(reader, writer):
    try:
        writer.write(b"hello from python\n")
        await writer.drain()
        line = await reader.readline()
        writer.write(b"echo: " + line.rstrip(b"\n") + b"\n")
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print("listening on", port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
