// P1, P2 and P4: the prime finder of Concurrency in Go ch. 4 (fan-out/fan-in), with 1, 2
// and 4 finder goroutines, defined as in bench/conc_w.lua. The stages are the book's,
// with typed channels (chan int, where the book's interface{} channels box every value):
// repeatFn draws integers in [1, 5e7) from Park-Miller minstd (seed 42), take passes the
// first N = 1e5, and the finders each read that one channel (fan-out), test each number
// by trial division by every odd number up to sqrt(n), and send it on if it is prime,
// else 0. They all send on one shared channel that closes when the last one is done
// (fan-in), as conc.map with unordered = true does: the book's fanIn, one forwarding
// goroutine per finder channel, would add a hop per value that conc's pipeline lacks.
// The main goroutine counts the primes until that channel closes. ns per number tested.
//
// The row runs with GOMAXPROCS=1 like every Go cell (conc is single-threaded); the same
// process then runs the pipeline again with GOMAXPROCS=2 and prints it as ns_procs2,
// which bench/run.lua lists below the table, not as a peer.
package main

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"
)

func repeatFn(done <-chan struct{}, fn func() int) <-chan int {
	out := make(chan int)
	go func() {
		defer close(out)
		for {
			select {
			case <-done:
				return
			case out <- fn():
			}
		}
	}()
	return out
}

func take(done <-chan struct{}, in <-chan int, num int) <-chan int {
	out := make(chan int)
	go func() {
		defer close(out)
		for i := 0; i < num; i++ {
			var v int
			select {
			case <-done:
				return
			case x, ok := <-in:
				if !ok {
					return
				}
				v = x
			}
			select {
			case <-done:
				return
			case out <- v:
			}
		}
	}()
	return out
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d, lim := 3, int(math.Sqrt(float64(n))); d <= lim; d += 2 {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// primeFinders: fan-out over `workers` goroutines reading in, fan-in on one channel.
func primeFinders(done <-chan struct{}, in <-chan int, workers int) <-chan int {
	out := make(chan int)
	var wg sync.WaitGroup
	wg.Add(workers)
	for i := 0; i < workers; i++ {
		go func() {
			defer wg.Done()
			for {
				var n int
				select {
				case <-done:
					return
				case x, ok := <-in:
					if !ok {
						return
					}
					n = x
				}
				r := 0
				if isPrime(n) {
					r = n
				}
				select {
				case <-done:
					return
				case out <- r:
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// primeFinder runs the pipeline once; ns per number tested.
func primeFinder(workers int) float64 {
	n := nOf(1e5)
	x := 42
	rand := func() int {
		x = x * 48271 % 2147483647
		return 1 + x%49999999
	}
	done := make(chan struct{})
	t0 := time.Now()
	found := primeFinders(done, take(done, repeatFn(done, rand), n), workers)
	count, sum := 0, 0
	for v := range found {
		if v != 0 {
			count, sum = count+1, sum+v
		}
	}
	ns := perOp(t0, n)
	close(done) // stops repeatFn, blocked on its next send
	if n == 1e5 && (count != 5955 || sum != 142258200187) {
		panic(fmt.Sprintf("P: wrong primes (%d, sum %d)", count, sum))
	}
	return ns
}

func pipeline(workers int) func() {
	return func() {
		result("ns", primeFinder(workers))
		fmt.Println("NOTE GOMAXPROCS=1, like every Go cell; the same pipeline with GOMAXPROCS=2 is listed below the table")
		prev := runtime.GOMAXPROCS(2)
		result("ns_procs2", primeFinder(workers))
		runtime.GOMAXPROCS(prev)
	}
}
