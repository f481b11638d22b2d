// bench/chatgo: the Go side of the network rows of `make bench` (standard library only).
//
//	chatgo serve --port P [--host H] [--rate R] [--burst B] [--idle S] [--queue N]
//	    the chat server of bench/chat_load/PROTOCOL.md, the Go twin of examples/chat/server.lua
//	    (workload C1, driven by bench/chat_load);
//	chatgo -w E1
//	    the 64-byte echo ping-pong over loopback (workload E1), the Go twin of
//	    bench/conc_echo.lua; prints `RESULT ns <ns per round trip>` for bench/run.lua.
//
// bench/run.sh builds it with GOPROXY=off: go build -o /tmp/chatgo . (in bench/chatgo).
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
)

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "serve" {
		os.Exit(serve(os.Args[2:]))
	}
	if len(os.Args) >= 3 && os.Args[1] == "-w" && os.Args[2] == "E1" {
		scale := 1.0
		if s, err := strconv.ParseFloat(os.Getenv("BENCH_SCALE"), 64); err == nil {
			scale = s
		}
		fmt.Printf("INFO %s GOMAXPROCS=%d\n", runtime.Version(), runtime.GOMAXPROCS(0))
		if err := echo(scale); err != nil {
			fmt.Fprintln(os.Stderr, "chatgo: E1:", err)
			os.Exit(1)
		}
		return
	}
	fmt.Fprintln(os.Stderr, "usage: chatgo serve --port P [--host H] [--rate R] [--burst B] [--idle S] [--queue N]\n"+
		"       chatgo -w E1")
	os.Exit(2)
}
