// bench/go/main.go: the Go peer of `make bench` (run with GOMAXPROCS=1).
//
//	go build -o /tmp/concbench . && GOMAXPROCS=1 /tmp/concbench -w W1
//
// Workloads W1 W2 W3 W4 W4mem W5 X1 X2 X2ref M1 M2 G1 R1 R2 R3 K1 P1 P2 P4 (pipeline.go),
// defined as in bench/conc_w.lua; env BENCH_SCALE shrinks N. Prints `RESULT <key> <number>`
// and `NOTE <text>` lines for bench/run.lua. M1, M2 and G1 use golang.org/x/sync (xsync.go, build tag
// xsync); bench/run.sh builds with it when Debian's golang-golang-x-sync-dev is installed,
// else they print NA (noxsync.go). R1, R2, R3 and K1 use golang.org/x/time/rate the same
// way (xtime.go, tag xtime, Debian's golang-golang-x-time-dev; else noxtime.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
)

var scale = 1.0

func nOf(n float64) int { return int(math.Max(4, math.Floor(n*scale))) }

func result(k string, v float64) { fmt.Printf("RESULT %s %.17g\n", k, v) }

func perOp(t0 time.Time, n int) float64 { return float64(time.Since(t0).Nanoseconds()) / float64(n) }

// W1: ping-pong over two unbuffered channels; ns per round trip.
func w1() {
	n := nOf(1e6)
	ping, pong := make(chan int), make(chan int)
	t0 := time.Now()
	go func() {
		for i := 0; i < n; i++ {
			pong <- <-ping
		}
	}()
	for i := 0; i < n; i++ {
		ping <- i
		<-pong
	}
	result("ns", perOp(t0, n))
}

// W2: one producer, one consumer, buffered channel of cap 128; ns per item.
func w2() {
	n := nOf(1e7)
	ch := make(chan int, 128)
	t0 := time.Now()
	go func() {
		for i := 0; i < n; i++ {
			ch <- i
		}
	}()
	for i := 0; i < n; i++ {
		<-ch
	}
	result("ns", perOp(t0, n))
}

// W3: select over 4 unbuffered channels, each fed by its own producer; ns per select.
func w3() {
	per := nOf(1e6) / 4
	c1, c2, c3, c4 := make(chan int), make(chan int), make(chan int), make(chan int)
	t0 := time.Now()
	for _, ch := range []chan int{c1, c2, c3, c4} {
		go func(ch chan int) {
			for i := 1; i <= per; i++ {
				ch <- i
			}
		}(ch)
	}
	sum := 0
	for i := 0; i < 4*per; i++ {
		var v int
		select {
		case v = <-c1:
		case v = <-c2:
		case v = <-c3:
		case v = <-c4:
		}
		sum += v
	}
	if sum != 4*per*(per+1)/2 {
		panic("W3: wrong sum")
	}
	result("ns", perOp(t0, 4*per))
}

// W4: spawn 1e6 goroutines that do nothing but count down; the last one signals.
func w4() {
	n := nOf(1e6)
	left, done := int64(n), make(chan bool, 1)
	task := func() {
		if atomic.AddInt64(&left, -1) == 0 {
			done <- true
		}
	}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		go task()
	}
	<-done
	result("ns", perOp(t0, n))
}

var vmRSS = regexp.MustCompile(`VmRSS:\s*(\d+)`)

func rssBytes() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return math.NaN()
	}
	kb, _ := strconv.ParseFloat(string(vmRSS.FindSubmatch(b)[1]), 64)
	return kb * 1024
}

// heapBytes is what the runtime holds for goroutines: heap spans in use (g structs,
// closures, sudogs) plus goroutine stacks, after a full collection.
func heapBytes() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse + m.StackInuse)
}

// W4mem: bytes per goroutine while 100k goroutines are parked on a channel receive.
func w4mem() {
	n := nOf(1e5)
	ch, ready, parked := make(chan int), make(chan bool, 1), int64(0)
	task := func() {
		if atomic.AddInt64(&parked, 1) == int64(n) {
			ready <- true
		}
		<-ch
	}
	h0, r0 := heapBytes(), rssBytes()
	for i := 0; i < n; i++ {
		go task()
	}
	<-ready
	runtime.Gosched() // let the last one reach its receive
	h1, r1 := heapBytes(), rssBytes()
	result("heap_bytes", (h1-h0)/float64(n))
	result("rss_bytes", (r1-r0)/float64(n))
	runtime.KeepAlive(ch)
}

// durations: Park-Miller "minstd", seed 42, identical in every peer (uniform 0-0.1 s).
func durations(n int) ([]time.Duration, time.Duration) {
	x, d, max := int64(42), make([]time.Duration, n), time.Duration(0)
	for i := range d {
		x = x * 48271 % 2147483647
		d[i] = time.Duration(float64(x) / 2147483647 * 0.1 * 1e9)
		if d[i] > max {
			max = d[i]
		}
	}
	return d, max
}

// W5: 100k goroutines each sleep a random 0-100 ms; overhead = wall time until the
// last one woke minus the longest requested sleep; early = sleeps shorter than asked;
// late = mean of (measured sleep - requested sleep).
func w5() {
	n := nOf(1e5)
	d, max := durations(n)
	left, early, late, done := int64(n), int64(0), int64(0), make(chan bool, 1)
	task := func(dt time.Duration) {
		s := time.Now()
		time.Sleep(dt)
		slept := time.Since(s)
		if slept < dt {
			atomic.AddInt64(&early, 1)
		}
		atomic.AddInt64(&late, int64(slept-dt))
		if atomic.AddInt64(&left, -1) == 0 {
			done <- true
		}
	}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		go task(d[i])
	}
	<-done
	result("overhead_ms", float64((time.Since(t0)-max).Nanoseconds())/1e6)
	result("early", float64(atomic.LoadInt64(&early)))
	result("late_ms", float64(atomic.LoadInt64(&late))/float64(n)/1e6)
}

// X1: create a child of a long-lived cancellable context and cancel it; ns per pair.
func x1() {
	n := nOf(1e6)
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		_, c := context.WithCancel(parent)
		c()
	}
	result("ns", perOp(t0, n))
}

// X2: a producer sends N values on an unbuffered channel; the main goroutine receives
// each through a select whose other case is ctx.Done() of a live context, called each
// time round; ns per select.
func x2() {
	n := nOf(1e6)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan int)
	t0 := time.Now()
	go func() {
		for i := 1; i <= n; i++ {
			ch <- i
		}
	}()
	sum := 0
	for i := 0; i < n; i++ {
		select {
		case <-ctx.Done():
			panic("X2: ctx done")
		case v := <-ch:
			sum += v
		}
	}
	if sum != n*(n+1)/2 {
		panic("X2: wrong sum")
	}
	result("ns", perOp(t0, n))
}

// X2ref: X2 with an ordinary channel that never becomes ready in place of ctx.Done().
func x2ref() {
	n := nOf(1e6)
	other, ch := make(chan struct{}), make(chan int)
	t0 := time.Now()
	go func() {
		for i := 1; i <= n; i++ {
			ch <- i
		}
	}()
	sum := 0
	for i := 0; i < n; i++ {
		select {
		case <-other:
			panic("X2ref: other ready")
		case v := <-ch:
			sum += v
		}
	}
	if sum != n*(n+1)/2 {
		panic("X2ref: wrong sum")
	}
	result("ns", perOp(t0, n))
}

func main() {
	w := flag.String("w", "", "workload: W1 W2 W3 W4 W4mem W5 X1 X2 X2ref M1 M2 G1 R1 R2 R3 K1 P1 P2 P4")
	flag.Parse()
	if s, err := strconv.ParseFloat(os.Getenv("BENCH_SCALE"), 64); err == nil {
		scale = s
	}
	fns := map[string]func(){"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W4mem": w4mem, "W5": w5,
		"X1": x1, "X2": x2, "X2ref": x2ref, "M1": m1, "M2": m2, "G1": g1,
		"R1": r1, "R2": r2, "R3": r3, "K1": k1,
		"P1": pipeline(1), "P2": pipeline(2), "P4": pipeline(4)}
	f, ok := fns[*w]
	if !ok {
		fmt.Fprintln(os.Stderr, "usage: concbench -w W1|W2|W3|W4|W4mem|W5|X1|X2|X2ref|M1|M2|G1|R1|R2|R3|K1|P1|P2|P4")
		os.Exit(2)
	}
	fmt.Printf("INFO %s GOMAXPROCS=%d\n", runtime.Version(), runtime.GOMAXPROCS(0))
	f()
}
