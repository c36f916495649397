package server

import "net/http"

// handlerStack is the goroutine stack a request's handler is given before
// it starts: what the proxy path reaches (the middleware, authentication,
// authorization, httputil.ReverseProxy and Go's HTTP/2 client), at the
// size the runtime doubles stacks to.
//
// Go's HTTP/2 server runs every request in a new goroutine with a small
// stack, and the runtime grows a stack by copying it whole, adjusting
// every pointer into it frame by frame. Left alone, a request's stack was
// copied several times on its way down, each time deep in the pipeline,
// where the copy is dearest: runtime.copystack was 13% to 16% of
// Portcullis's CPU in the benchmark's small GET at concurrency 16, 17%
// with the audit trail on. Growing the stack once, at the top of the
// pipeline, copies a few frames instead of forty: 8% and 6%, and about
// 10 µs less CPU per request (bench/ANALYSIS.md). 16 KiB was not enough:
// the path still grew to 32 KiB, deep down. An idle watch parks on the
// grown stack: 32 KiB of stack in use, but pages never written are never
// resident, and its memory per watch moved by about 1 KiB.
const handlerStack = 32 << 10

// growStackFrame is the frame growStack needs for the runtime to give the
// goroutine a handlerStack stack: more than half of it, less than all.
const growStackFrame = handlerStack * 5 / 8

// growStack makes the runtime grow the calling goroutine's stack to
// handlerStack now, while little of it is in use. The frame is handed to a
// function the compiler may not inline, so it can neither drop the array
// nor fold the function away; the array does not escape.
//
//go:noinline
func growStack() byte {
	var frame [growStackFrame]byte
	return lastByte(frame[:])
}

//go:noinline
func lastByte(b []byte) byte { return b[len(b)-1] }

// presizeStack runs next on a stack grown to handlerStack first.
func presizeStack(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		growStack()
		next.ServeHTTP(w, r)
	})
}
