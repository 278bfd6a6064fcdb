// Go server: net.Listen + Accept (accept4 SOCK_NONBLOCK|SOCK_CLOEXEC on a
// non-blocking listener, EAGAIN + epoll), a goroutine per connection.
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
)

func main() {
	l, err := net.Listen("tcp4", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Printf("listen-error:%v\n", err)
		os.Exit(1)
	}
	fmt.Println("listening")
	n, _ := strconv.Atoi(os.Args[2])
	for i := 1; i <= n; i++ {
		c, err := l.Accept()
		if err != nil {
			fmt.Printf("accept-error:%v\n", err)
			i--
			continue
		}
		fmt.Fprintf(c, "hello %d\n", i)
		c.Close()
		a := c.RemoteAddr().(*net.TCPAddr)
		fmt.Printf("accepted:%s:%d:16\n", a.IP, a.Port)
	}
}
