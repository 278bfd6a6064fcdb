// Banner/echo server for tests/daemons/: libuv's non-blocking accept4(fd, NULL, NULL).
// On each connection: send "hello from node\n" at once, read one line, answer
// "echo: <line>\n", close. A peer refused by the preload must never see the banner.
// Usage: node banner_server.js PORT
'use strict';
const net = require('net');

const port = Number(process.argv[2]);
const server = net.createServer((sock) => {
  sock.on('error', () => {});
  sock.write('hello from node\n');
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (chunk) => {
    buf += chunk;
    const nl = buf.indexOf('\n');
    if (nl >= 0) {
      sock.end('echo: ' + buf.slice(0, nl) + '\n');
    }
  });
});
server.on('error', (e) => {
  console.error('server error: ' + e.message);
  process.exit(2);
});
server.listen({ host: '127.0.0.1', port: port, backlog: 1024 }, () => {
  console.log('listening on ' + port);
});
