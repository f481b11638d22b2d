//go:build !xtime

// Built without golang.org/x/time (bench/run.sh found no Debian golang-golang-x-time-dev,
// and GOPROXY is off): R1, R2, R3 and K1 report NA rather than time a stand-in.
package main

import "fmt"

func noXtime() { fmt.Println("NA golang.org/x/time not installed") }

func r1() { noXtime() }
func r2() { noXtime() }
func r3() { noXtime() }
func k1() { noXtime() }
