package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"time"
)

// echo (E1): one process, a server goroutine that echoes what it reads and a client
// goroutine (main) that writes 64 bytes and reads the 64 back, over 127.0.0.1; ns per round
// trip over N = 5e4 round trips after 1000 unmeasured ones. bench/conc_echo.lua is the
// same with two conc tasks.
func echo(scale float64) error {
	n := int(math.Max(100, math.Floor(5e4*scale)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 65536)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:k]); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("0123456789abcdef"), 4) // 64 bytes
	got := make([]byte, len(msg))
	trip := func() error {
		if _, err := c.Write(msg); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return err
		}
		if !bytes.Equal(got, msg) {
			return fmt.Errorf("echo returned %q", got)
		}
		return nil
	}
	for i := 0; i < 1000; i++ {
		if err := trip(); err != nil {
			return err
		}
	}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if err := trip(); err != nil {
			return err
		}
	}
	fmt.Printf("RESULT ns %.17g\n", float64(time.Since(t0).Nanoseconds())/float64(n))
	return nil
}
