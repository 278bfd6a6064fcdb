// Go client: net.Dial (non-blocking connect + EINPROGRESS + epoll, raw syscalls).
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"errors"
)

func main() {
	c, err := net.Dial("tcp", os.Args[1])
	if err != nil {
		var e syscall.Errno
		if errors.As(err, &e) {
			fmt.Printf("refused:%d\n", int(e))
		} else {
			fmt.Printf("refused:%v\n", err)
		}
		os.Exit(1)
	}
	b, _ := io.ReadAll(c)
	fmt.Printf("got:%s\n", strings.ReplaceAll(string(b), "\n", "|"))
}
