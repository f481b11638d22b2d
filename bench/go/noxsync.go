//go:build !xsync

// Built without golang.org/x/sync (bench/run.sh found no Debian golang-golang-x-sync-dev,
// and GOPROXY is off): M1, M2 and G1 report NA rather than time a stand-in.
package main

import "fmt"

func noXsync() { fmt.Println("NA golang.org/x/sync not installed") }

func m1() { noXsync() }
func m2() { noXsync() }
func g1() { noXsync() }
