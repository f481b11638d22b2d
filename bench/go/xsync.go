//go:build xsync

// M1, M2 and G1 with golang.org/x/sync's semaphore.Weighted and errgroup.Group, as a Go
// programmer writes them. bench/run.sh builds this file (tag xsync) when Debian's
// golang-golang-x-sync-dev is installed, through a go.mod of its own that replaces the
// module by /usr/share/gocode/src/golang.org/x/sync, so GOPROXY stays off.
package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
)

// xsyncInfo prints where golang.org/x/sync came from, as the build recorded it.
func xsyncInfo() {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "golang.org/x/sync" {
				from := d.Version
				if d.Replace != nil {
					from = d.Replace.Path
				}
				fmt.Printf("INFO golang.org/x/sync from %s\n", from)
			}
		}
	}
}

// M1: acquire and release a semaphore of weight 1 that nobody else wants; ns per pair.
func m1() {
	xsyncInfo()
	n := nOf(1e6)
	s, ctx := semaphore.NewWeighted(1), context.Background()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if err := s.Acquire(ctx, 1); err != nil {
			panic(err)
		}
		s.Release(1)
	}
	result("ns", perOp(t0, n))
}

// M2: two goroutines share a semaphore of weight 1; each does N/2 times acquire, yield
// while holding it (so the other one queues), release. ns per acquire+release, over both.
func m2() {
	xsyncInfo()
	half := nOf(1e6) / 2
	s, ctx, done := semaphore.NewWeighted(1), context.Background(), make(chan bool, 2)
	task := func() {
		for i := 0; i < half; i++ {
			if err := s.Acquire(ctx, 1); err != nil {
				panic(err)
			}
			runtime.Gosched()
			s.Release(1)
		}
		done <- true
	}
	t0 := time.Now()
	go task()
	go task()
	<-done
	<-done
	result("ns", perOp(t0, 2*half))
}

// G1: a group starts 1000 goroutines that return nil at once and waits for them,
// N/1000 times; ns per goroutine. A zero Group, as conc.group() without a ctx makes no
// gctx.
func g1() {
	xsyncInfo()
	rounds := nOf(1e6) / 1000
	if rounds < 1 {
		rounds = 1
	}
	fn := func() error { return nil }
	t0 := time.Now()
	for r := 0; r < rounds; r++ {
		var g errgroup.Group
		for i := 0; i < 1000; i++ {
			g.Go(fn)
		}
		if err := g.Wait(); err != nil {
			panic(err)
		}
	}
	result("ns", perOp(t0, rounds*1000))
}
