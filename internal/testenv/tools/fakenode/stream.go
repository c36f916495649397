package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// AttachContainer attaches to the container's main process, which a fake
// node does not have: it behaves as if that process were `cat`, echoing
// stdin to stdout until stdin ends. Without stdin there is nothing to
// attach to and it returns at once.
func (n *node) AttachContainer(ctx context.Context, pod, uid, container string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	n.log.Info("attach", "pod", pod, "container", container, "tty", tty, "stdin", in != nil)
	if in == nil {
		return nil
	}
	if out == nil {
		out = nopWriteCloser{io.Discard}
	}
	_, err := io.Copy(out, in)
	return err
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// PortForward connects a forwarded pod port to a local address: with
// --portforward-target, that address; otherwise 127.0.0.1 and the same
// port, as if the pod shared the host's network. The streaming code calls
// it once per connection the client opens.
func (n *node) PortForward(ctx context.Context, pod, uid string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	addr := n.forwardTarget
	if addr == "" {
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	}
	log := n.log.With("pod", pod, "port", port, "target", addr)
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		log.Warn("port-forward failed", "err", err)
		return fmt.Errorf("connecting to %s: %w", addr, err)
	}
	defer conn.Close()
	log.Info("port-forward connected")
	go func() {
		io.Copy(conn, stream)
		// The client has finished sending; the target may still answer.
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	// The connection lasts until the target has finished answering.
	_, err = io.Copy(stream, conn)
	log.Info("port-forward ended")
	return err
}
