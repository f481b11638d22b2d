//go:build xtime

// R1, R2, R3 and K1 with golang.org/x/time/rate, as a Go programmer writes them.
// bench/run.sh builds this file (tag xtime) when Debian's golang-golang-x-time-dev is
// installed, through a go.mod of its own that replaces the module by
// /usr/share/gocode/src/golang.org/x/time, so GOPROXY stays off.
package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// xtimeInfo prints where golang.org/x/time came from, as the build recorded it.
func xtimeInfo() {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "golang.org/x/time" {
				from := d.Version
				if d.Replace != nil {
					from = d.Replace.Path
				}
				fmt.Printf("INFO golang.org/x/time from %s\n", from)
			}
		}
	}
}

// R1: Allow() on a limiter that always allows: limit 1e12/s, burst 1e9, so the bucket
// never empties but Allow still goes through the refill arithmetic (rate.Inf would take a
// shortcut). ns per call.
func r1() {
	xtimeInfo()
	n := nOf(1e7)
	lim := rate.NewLimiter(1e12, 1e9)
	allowed := 0
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if lim.Allow() {
			allowed++
		}
	}
	result("ns", perOp(t0, n))
	if allowed != n {
		panic("R1: a call was refused")
	}
}

// R2: Reserve() then Cancel() on a limiter of 10/s, burst 1, whose token was taken first:
// every reservation is booked about 0.1 s ahead and its Cancel gives the token back (the
// whole restore path). ns per pair.
func r2() {
	xtimeInfo()
	n := nOf(1e6)
	lim := rate.NewLimiter(10, 1)
	if !lim.Allow() {
		panic("R2: the first token was refused")
	}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		r := lim.Reserve()
		r.Cancel()
	}
	result("ns", perOp(t0, n))
	if tk := lim.Tokens(); tk < -1.5 {
		panic(fmt.Sprintf("R2: Cancel gave nothing back (tokens %g)", tk))
	}
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// R3: 100 goroutines share a limiter of 1e5/s, burst 1, and Wait until N waits (in all)
// have returned. waits per second achieved, that over the 1e5 ideal, and CPU time
// (user+system, whole process) per wait.
func r3() {
	xtimeInfo()
	const tasks, limit = 100, 1e5
	n := int64(nOf(2e5))
	lim := rate.NewLimiter(limit, 1)
	ctx := context.Background()
	var claimed, finished int64
	done := make(chan bool, 1)
	task := func() {
		for atomic.AddInt64(&claimed, 1) <= n {
			if err := lim.Wait(ctx); err != nil {
				panic(err)
			}
			if atomic.AddInt64(&finished, 1) == n {
				done <- true
			}
		}
	}
	c0, t0 := cpuSeconds(), time.Now()
	for i := 0; i < tasks; i++ {
		go task()
	}
	<-done
	el, cpu := time.Since(t0).Seconds(), cpuSeconds()-c0
	result("waits_per_s", float64(n)/el)
	result("of_ideal", float64(n)/el/limit)
	result("cpu_ns", cpu/float64(n)*1e9)
}

// K1: a map of 1e5 limiters keyed "client-<i>", each made on first use and used once with
// Allow(), as rate.keyed does (limit 0.01/s, burst 10: no bucket refills during the run).
// Bytes per key: HeapAlloc after a full collection, before and after.
func k1() {
	xtimeInfo()
	n := nOf(1e5)
	heap := func() float64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc)
	}
	keyed := map[string]*rate.Limiter{}
	allow := func(key string) bool {
		lim, ok := keyed[key]
		if !ok {
			lim = rate.NewLimiter(0.01, 10)
			keyed[key] = lim
		}
		return lim.Allow()
	}
	h0 := heap()
	for i := 1; i <= n; i++ {
		if !allow("client-" + strconv.Itoa(i)) {
			panic("K1: refused")
		}
	}
	h1 := heap()
	if len(keyed) != n {
		panic("K1: keys lost")
	}
	result("bytes", (h1-h0)/float64(n))
	runtime.KeepAlive(keyed)
}
