//go:build pprof

package main

// Built only with `go build -tags pprof`, for profiling (the benchmark
// harness's -profile mode): serves Go's runtime profiles on
// PORTCULLIS_PPROF_ADDRESS. Release builds have no such listener, so no
// configuration can expose one.

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"
)

func init() {
	addr := os.Getenv("PORTCULLIS_PPROF_ADDRESS")
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "portcullis: pprof: listening on %s (PORTCULLIS_PPROF_ADDRESS): %v\n", addr, err)
		os.Exit(exitFailure)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	go (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
}
