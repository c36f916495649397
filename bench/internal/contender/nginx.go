package contender

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
)

// NginxContender is nginx as a TLS reverse proxy that replaces the client's
// credential with the service-account token and adds fixed impersonation
// headers: the practical ceiling for a proxy that does no identity work.
type NginxContender struct {
	// Bin is the nginx executable; Prepare finds it when empty.
	Bin string
	// without lists the temp-path modules this build lacks (slim builds
	// drop uwsgi and scgi): naming their *_temp_path is a config error,
	// and leaving the others out makes nginx mkdir under /var/lib/nginx.
	without map[string]bool
}

func (*NginxContender) Name() string { return Nginx }

// errNoNginx says how to get nginx; the bench does not install system
// packages itself.
var errNoNginx = errors.New("nginx is not installed: run bench/install-nginx.sh (apt-get install nginx-light as root)")

// Prepare finds nginx on PATH or at /usr/sbin/nginx (where Debian puts it,
// often outside a non-root PATH) and checks that it can do TLS and HTTP/2.
func (c *NginxContender) Prepare(ctx context.Context, progress io.Writer) error {
	if c.Bin == "" {
		if p, err := exec.LookPath("nginx"); err == nil {
			c.Bin = p
		} else if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
			c.Bin = "/usr/sbin/nginx"
		} else {
			return errNoNginx
		}
	} else if _, err := os.Stat(c.Bin); err != nil {
		return fmt.Errorf("preparing nginx: %w; %w", err, errNoNginx)
	}
	// nginx -V prints the version and configure arguments to stderr.
	out, err := exec.CommandContext(ctx, c.Bin, "-V").CombinedOutput()
	if err != nil {
		return fmt.Errorf("running %s -V: %w\n%s", c.Bin, err, out)
	}
	v := string(out)
	for _, m := range []string{"http_ssl_module", "http_v2_module"} {
		if !strings.Contains(v, "--with-"+m) {
			return fmt.Errorf("preparing nginx: %s is built without %s; install Debian's nginx-light or nginx", c.Bin, m)
		}
	}
	c.without = map[string]bool{}
	for _, m := range []string{"fastcgi", "uwsgi", "scgi"} {
		c.without[m] = strings.Contains(v, "--without-http_"+m+"_module")
	}
	if progress != nil {
		first, _, _ := strings.Cut(v, "\n")
		fmt.Fprintf(progress, "nginx: %s (%s)\n", c.Bin, first)
	}
	return nil
}

func (c *NginxContender) Start(ctx context.Context, env Env) (*Instance, error) {
	if c.Bin == "" || c.without == nil {
		return nil, errors.New("starting nginx: not prepared")
	}
	up, err := url.Parse(env.Upstream.URL)
	if err != nil || up.Scheme != "https" || up.Port() == "" {
		return nil, fmt.Errorf("starting nginx: upstream url %q is not https://host:port", env.Upstream.URL)
	}
	return startOnFreePorts(1, func(ports []int) (*Instance, error) {
		conf, err := c.config(env, ports[0], up.Host)
		if err != nil {
			return nil, fmt.Errorf("starting nginx: %w", err)
		}
		if err := os.WriteFile(filepath.Join(env.Dir, "nginx.conf"), conf, 0o644); err != nil {
			return nil, fmt.Errorf("starting nginx: %w", err)
		}
		inst := &Instance{
			Name:   Nginx,
			URL:    "https://127.0.0.1:" + strconv.Itoa(ports[0]),
			Header: http.Header{"Authorization": {"Bearer nginx-client"}},
			Binary: c.Bin,
		}
		args := []string{"-p", env.Dir, "-c", "nginx.conf", "-g", "daemon off;"}
		if err := startProcess(ctx, inst, env, args, nil); err != nil {
			return nil, err
		}
		return inst, nil
	})
}

// config renders nginx.conf for one run.
func (c *NginxContender) config(env Env, port int, upstream string) ([]byte, error) {
	host, _, err := net.SplitHostPort(upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", upstream, err)
	}
	sslName := host
	if net.ParseIP(host) != nil {
		sslName = "localhost"
	}
	user, err := quote(env.User)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", env.User, err)
	}
	token, err := quote("Bearer " + env.Upstream.Token)
	if err != nil {
		return nil, fmt.Errorf("upstream token: %w", err)
	}
	var groups []string
	for _, g := range env.Groups {
		q, err := quote(g)
		if err != nil {
			return nil, fmt.Errorf("group %q: %w", g, err)
		}
		groups = append(groups, q)
	}
	// Workers hold a client and an upstream descriptor per watch; ask for
	// 100,000 but no more than the hard limit we can pass on (without
	// CAP_SYS_RESOURCE nginx's setrlimit would fail with an alert).
	nofile := uint64(100000)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Max < nofile {
		nofile = rl.Max
	}
	var temps []string
	for _, m := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if !c.without[m] {
			temps = append(temps, m)
		}
	}
	var b bytes.Buffer
	err = nginxConf.Execute(&b, map[string]any{
		"Dir":      env.Dir,
		"Root":     os.Geteuid() == 0,
		"NoFile":   nofile,
		"Temps":    temps,
		"Port":     port,
		"Cert":     env.CertFile,
		"Key":      env.KeyFile,
		"Upstream": upstream,
		"SSLName":  sslName,
		"CAFile":   env.Upstream.CAFile,
		"Token":    token,
		"User":     user,
		"Groups":   groups,
	})
	return b.Bytes(), err
}

// quote makes s one double-quoted nginx string. nginx has no escape for
// "$" (it always starts a variable), and a control character would split
// the header line, so both are refused rather than passed on.
func quote(s string) (string, error) {
	for _, r := range s {
		if r == '$' || r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%q cannot be written in an nginx header value", r)
		}
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`, nil
}

// nginxConf is the whole configuration. Every path is inside Dir so runs do
// not share state and need no root-owned directories.
//
// Credentials: each proxy_set_header below also stops the client's header
// of that name (any case) from reaching the upstream, and an empty value
// sends nothing. So the client's Authorization, Impersonate-User,
// Impersonate-Group, Impersonate-Uid and X-Remote-User/-Group/-Uid never
// arrive. Impersonate-Extra-* and X-Remote-Extra-* are NOT cleared: nginx
// can only name headers, not match a prefix, and the only complete fix
// (proxy_pass_request_headers off plus an allow list) would drop headers
// kubectl relies on. A real deployment would need njs or Lua here; for this
// benchmark peer the client is the harness.
var nginxConf = template.Must(template.New("nginx.conf").Parse(`# Written by the Portcullis benchmark; see bench/internal/contender/nginx.go.
{{if .Root}}user root;
{{end}}worker_processes auto;
worker_rlimit_nofile {{.NoFile}};
pid {{.Dir}}/nginx.pid;
# To stderr, which is the process log the harness shows when a start fails.
error_log stderr warn;

events {
	# The harness holds 10,000 watches: one client stream and one upstream
	# connection each.
	worker_connections 40000;
}

http {
	access_log {{.Dir}}/access.log;
{{range .Temps}}	{{.}}_temp_path {{$.Dir}}/{{.}}_temp;
{{end}}
	# Kubernetes clients keep connections for hours; the default of 1,000
	# requests per connection (also per HTTP/2 connection since 1.19.7)
	# would make nginx, alone among the contenders, reconnect them.
	keepalive_requests 1000000;
	client_max_body_size 0;
	# Room for the header names below without a start-up warning.
	proxy_headers_hash_bucket_size 128;

	upstream kubernetes {
		server {{.Upstream}};
		# Idle upstream connections kept per worker, so requests reuse them.
		keepalive 128;
		keepalive_requests 1000000;
	}

	# kubectl exec, attach and port-forward upgrade to SPDY/3.1 or
	# WebSocket. For other requests Connection is empty, which nginx does not
	# send: HTTP/1.1 then keeps the upstream connection alive, where the
	# default "close" would not.
	map $http_upgrade $connection_upgrade {
		default upgrade;
		'' '';
	}

	server {
		listen 127.0.0.1:{{.Port}} ssl http2;
		ssl_certificate {{.Cert}};
		ssl_certificate_key {{.Key}};
		ssl_protocols TLSv1.2 TLSv1.3;
		# The harness multiplexes watches over few HTTP/2 connections.
		http2_max_concurrent_streams 1000;

		location / {
			proxy_pass https://kubernetes;
			proxy_http_version 1.1;
			proxy_ssl_verify on;
			proxy_ssl_trusted_certificate {{.CAFile}};
			# nginx checks the name with X509_check_host, which ignores IP
			# SANs: "127.0.0.1" fails against a certificate for 127.0.0.1.
			# The stub's and kube-apiserver's certificates also name localhost.
			proxy_ssl_name {{.SSLName}};
			# 1.22 offers only up to TLS 1.2 upstream by default.
			proxy_ssl_protocols TLSv1.2 TLSv1.3;
			proxy_ssl_session_reuse on;

			# Watches and logs must flow as written; request bodies too.
			proxy_buffering off;
			proxy_request_buffering off;
			proxy_read_timeout 1h;
			proxy_send_timeout 1h;

			proxy_set_header Host {{.Upstream}};
			proxy_set_header Upgrade $http_upgrade;
			proxy_set_header Connection $connection_upgrade;

			proxy_set_header Authorization {{.Token}};
			proxy_set_header Impersonate-User {{.User}};
			# Repeated lines are sent as repeated headers, which Kubernetes
			# needs: it does not split one comma-joined group value.
{{- range .Groups}}
			proxy_set_header Impersonate-Group {{.}};
{{- else}}
			proxy_set_header Impersonate-Group "";
{{- end}}
			proxy_set_header Impersonate-Uid "";
			proxy_set_header X-Remote-User "";
			proxy_set_header X-Remote-Group "";
			proxy_set_header X-Remote-Uid "";
		}
	}
}
`))
