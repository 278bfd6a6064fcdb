// Banner/echo server for tests/daemons/, compiled with javac at test time.
// On each connection: send "hello from java\n" at once, read one line, answer
// "echo: <line>\n", close. A peer refused by the preload must never see the banner.
// Usage: java BannerServer blocking|nio PORT
//   blocking: java.net.ServerSocket, a thread per connection
//   nio:      one Selector thread, non-blocking ServerSocketChannel

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.Iterator;

public class BannerServer {
    static final byte[] BANNER = "hello from java\n".getBytes(StandardCharsets.US_ASCII);

    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[1]);
        if (args[0].equals("blocking")) {
            blocking(port);
        } else {
            nio(port);
        }
    }

    static void blocking(int port) throws Exception {
        ServerSocket ss = new ServerSocket(port, 1024, InetAddress.getByName("127.0.0.1"));
        System.out.println("listening on " + port);
        System.out.flush();
        while (true) {
            Socket s = ss.accept();
            Thread t = new Thread(() -> serve(s));
            t.setDaemon(true);
            t.start();
        }
    }

    static void serve(Socket s) {
        try (Socket sock = s) {
            OutputStream out = sock.getOutputStream();
            out.write(BANNER);
            out.flush();
            BufferedReader in = new BufferedReader(
                    new InputStreamReader(sock.getInputStream(), StandardCharsets.US_ASCII));
            String line = in.readLine();
            if (line != null) {
                out.write(("echo: " + line + "\n").getBytes(StandardCharsets.US_ASCII));
                out.flush();
            }
        } catch (Exception e) {
            // a peer that went away: nothing to do
        }
    }

    static final class Conn {
        ByteBuffer out;
        final ByteBuffer in = ByteBuffer.allocate(4096);
        boolean closing;
    }

    static void nio(int port) throws Exception {
        Selector sel = Selector.open();
        ServerSocketChannel ssc = ServerSocketChannel.open();
        ssc.bind(new InetSocketAddress(InetAddress.getByName("127.0.0.1"), port), 1024);
        ssc.configureBlocking(false);
        ssc.register(sel, SelectionKey.OP_ACCEPT);
        System.out.println("listening on " + port);
        System.out.flush();
        while (true) {
            sel.select();
            Iterator<SelectionKey> it = sel.selectedKeys().iterator();
            while (it.hasNext()) {
                SelectionKey k = it.next();
                it.remove();
                try {
                    if (k.isAcceptable()) {
                        SocketChannel c;
                        // drain the backlog: null means the real accept said EAGAIN
                        while ((c = ssc.accept()) != null) {
                            c.configureBlocking(false);
                            Conn conn = new Conn();
                            conn.out = ByteBuffer.wrap(BANNER);
                            c.register(sel, SelectionKey.OP_READ | SelectionKey.OP_WRITE, conn);
                        }
                    } else {
                        step(k);
                    }
                } catch (Exception e) {
                    k.cancel();
                    try {
                        k.channel().close();
                    } catch (Exception ignored) {
                        // already closed
                    }
                }
            }
        }
    }

    static void step(SelectionKey k) throws Exception {
        SocketChannel c = (SocketChannel) k.channel();
        Conn conn = (Conn) k.attachment();
        if (k.isWritable() && conn.out != null) {
            c.write(conn.out);
            if (!conn.out.hasRemaining()) {
                conn.out = null;
                if (conn.closing) {
                    c.close();
                    return;
                }
            }
        }
        if (k.isValid() && k.isReadable() && !conn.closing) {
            int n = c.read(conn.in);
            if (n < 0) {
                c.close();
                return;
            }
            for (int i = 0; i < conn.in.position(); i++) {
                if (conn.in.get(i) == '\n') {
                    byte[] line = new byte[i];
                    conn.in.flip();
                    conn.in.get(line);
                    byte[] reply = ("echo: " + new String(line, StandardCharsets.US_ASCII) + "\n")
                            .getBytes(StandardCharsets.US_ASCII);
                    ByteBuffer b = ByteBuffer.allocate((conn.out == null ? 0 : conn.out.remaining()) + reply.length);
                    if (conn.out != null) {
                        b.put(conn.out);
                    }
                    b.put(reply);
                    b.flip();
                    conn.out = b;
                    conn.closing = true;
                    break;
                }
            }
        }
        if (k.isValid()) {
            k.interestOps(conn.out != null ? SelectionKey.OP_WRITE : SelectionKey.OP_READ);
        }
    }
}
