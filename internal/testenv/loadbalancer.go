package testenv

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"text/template"
	"time"
)

// LoadBalancer is nginx in front of several servers, as a Kubernetes
// Service or a cloud load balancer would be in front of Portcullis's
// replicas: it ends TLS, and sends each request to the next backend in
// turn (round robin) over TLS again, upgrades (exec, port-forward) and
// streams (watch, logs -f) included.
type LoadBalancer struct {
	// Port is where it listens, on 127.0.0.1.
	Port int
	proc *Process
}

// LoadBalancerOptions says what a LoadBalancer serves.
type LoadBalancerOptions struct {
	// Backends are host:port addresses of TLS servers whose certificate
	// CAFile signed, for the name localhost.
	Backends []string
	// CertFile and KeyFile are the load balancer's own certificate, which
	// clients see.
	CertFile, KeyFile, CAFile string
	// Port to listen on; zero picks a free one.
	Port int
}

// errNoNginx says how to get nginx.
var errNoNginx = errors.New("nginx is not installed: `make testenv` installs it as root (bench/install-nginx.sh: apt-get install -y nginx-light)")

// NewLoadBalancer starts nginx for one test and stops it when the test
// ends.
func NewLoadBalancer(t testing.TB, opts LoadBalancerOptions) *LoadBalancer {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			t.Fatalf("testenv: %v", errNoNginx)
		}
		bin = "/usr/sbin/nginx"
	}
	if opts.Port == 0 {
		if opts.Port, err = FreePort(); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	dir := t.TempDir()
	var conf bytes.Buffer
	if err := lbConf.Execute(&conf, map[string]any{"Dir": dir, "Root": os.Geteuid() == 0, "Opts": opts}); err != nil {
		t.Fatalf("testenv: writing nginx.conf: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), conf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	lb := &LoadBalancer{Port: opts.Port}
	lb.proc, err = StartProcess("nginx", dir, bin, []string{"-p", dir, "-c", "nginx.conf", "-g", "daemon off;"}, nil)
	if err != nil {
		t.Fatalf("testenv: starting nginx: %v", err)
	}
	t.Cleanup(func() {
		lb.proc.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("nginx log ends:\n%s", lb.proc.LogTail(30))
		}
	})
	addr := "127.0.0.1:" + strconv.Itoa(opts.Port)
	if err := lb.proc.waitFor(t.Context(), 30*time.Second, "nginx listens on "+addr, func(ctx context.Context) error {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return lb
}

// lbConf is nginx.conf. Every path is inside Dir.
var lbConf = template.Must(template.New("nginx.conf").Parse(`# Written by testenv.NewLoadBalancer.
{{if .Root}}user root;
{{end}}worker_processes 1;
pid {{.Dir}}/nginx.pid;
error_log stderr warn;

events {
	worker_connections 4096;
}

http {
	access_log {{.Dir}}/access.log;
	client_body_temp_path {{.Dir}}/client_body_temp;
	proxy_temp_path {{.Dir}}/proxy_temp;
	fastcgi_temp_path {{.Dir}}/fastcgi_temp;
	client_max_body_size 0;

	upstream replicas {
{{range .Opts.Backends}}		server {{.}} max_fails=1 fail_timeout=5s;
{{end}}	}

	map $http_upgrade $connection_upgrade {
		default upgrade;
		'' '';
	}

	server {
		listen 127.0.0.1:{{.Opts.Port}} ssl http2;
		ssl_certificate {{.Opts.CertFile}};
		ssl_certificate_key {{.Opts.KeyFile}};

		location / {
			proxy_pass https://replicas;
			proxy_http_version 1.1;
			proxy_ssl_verify on;
			proxy_ssl_trusted_certificate {{.Opts.CAFile}};
			# nginx checks names with X509_check_host, which ignores IP SANs.
			proxy_ssl_name localhost;
			proxy_ssl_protocols TLSv1.2 TLSv1.3;
			# The host the client asked for: Portcullis routes by it.
			proxy_set_header Host $http_host;
			proxy_set_header Upgrade $http_upgrade;
			proxy_set_header Connection $connection_upgrade;
			proxy_set_header X-Forwarded-For $remote_addr;
			proxy_buffering off;
			proxy_request_buffering off;
			proxy_read_timeout 1h;
			proxy_send_timeout 1h;
		}
	}
}
`))
