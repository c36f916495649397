package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

type config struct {
	listen        string
	addressFile   string
	workDir       string
	forwardTarget string
}

// Streams live as long as the test using them; the kubelet's default idle
// timeout is 4 hours, kwok's 1 hour. A test never idles that long.
const (
	idleTimeout           = time.Hour
	streamCreationTimeout = remotecommand.DefaultStreamCreationTimeout
)

// node serves the kubelet endpoints kube-apiserver calls. It implements the
// streaming packages' Executor, Attacher and PortForwarder.
type node struct {
	workDir       string
	forwardTarget string
	log           *slog.Logger
}

func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	cert, err := selfSignedCert()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.listen, err)
	}
	n := &node{workDir: cfg.workDir, forwardTarget: cfg.forwardTarget, log: log}
	srv := &http.Server{
		Handler:           n.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		// SPDY and WebSocket upgrades need HTTP/1.1: a non-nil empty map
		// turns HTTP/2 off.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	addr := ln.Addr().String()
	if cfg.addressFile != "" {
		// Written after Listen, so a reader that sees the file can connect;
		// renamed into place, so it never sees half an address.
		tmp := cfg.addressFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(addr), 0o644); err != nil {
			ln.Close()
			return fmt.Errorf("writing the address file: %w", err)
		}
		if err := os.Rename(tmp, cfg.addressFile); err != nil {
			ln.Close()
			return fmt.Errorf("writing the address file: %w", err)
		}
	}
	log.Info("fakenode serving", "address", "https://"+addr, "workdir", cfg.workDir, "portforward_target", cfg.forwardTarget)

	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	// Shutdown does not wait for hijacked (streaming) connections. Commands
	// still running die with this process (Pdeathsig, see exec.go).
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutting down: %w", err)
	}
	log.Info("fakenode stopped")
	return nil
}

// routes are the kubelet server's paths that kube-apiserver uses for pod
// subresources (pkg/kubelet/server/server.go), with and without the pod UID.
// Both methods are accepted: the apiserver and kubectl versions differ in
// which one they send.
func (n *node) routes() *http.ServeMux {
	mux := http.NewServeMux()
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		mux.HandleFunc(m+" /exec/{namespace}/{pod}/{container}", n.serveExec)
		mux.HandleFunc(m+" /exec/{namespace}/{pod}/{uid}/{container}", n.serveExec)
		mux.HandleFunc(m+" /attach/{namespace}/{pod}/{container}", n.serveAttach)
		mux.HandleFunc(m+" /attach/{namespace}/{pod}/{uid}/{container}", n.serveAttach)
		mux.HandleFunc(m+" /portForward/{namespace}/{pod}", n.servePortForward)
		mux.HandleFunc(m+" /portForward/{namespace}/{pod}/{uid}", n.servePortForward)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok"))
	})
	return mux
}

// podName is the name handed to the streaming code and back to the
// Executor: namespace/name.
func podName(r *http.Request) string { return r.PathValue("namespace") + "/" + r.PathValue("pod") }

func (n *node) serveExec(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		http.Error(w, "missing command: give one or more command= parameters", http.StatusBadRequest)
		return
	}
	remotecommand.ServeExec(w, r, n, podName(r), r.PathValue("uid"), r.PathValue("container"), cmd, opts,
		idleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (n *node) serveAttach(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	remotecommand.ServeAttach(w, r, n, podName(r), r.PathValue("uid"), r.PathValue("container"), opts,
		idleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (n *node) servePortForward(w http.ResponseWriter, r *http.Request) {
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(w, r, n, podName(r), r.PathValue("uid"), opts,
		idleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
}

// selfSignedCert makes a serving certificate for 127.0.0.1. kube-apiserver
// checks a kubelet's certificate only when --kubelet-certificate-authority
// is set, which testenv does not do.
func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("creating the serving key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "fakenode"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("creating the serving certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
