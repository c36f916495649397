package harness

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/portcullis-proxy/portcullis/bench/internal/contender"
	"github.com/portcullis-proxy/portcullis/bench/internal/procstat"
)

// streamScenarios push bytes through `kubectl exec` (the pod's stdout)
// and `kubectl port-forward` (from a TCP source behind the pod's port)
// through each contender, with kubectl's default transport (WebSocket),
// and report MB/s from the first byte to the last.
func (r *run) streamScenarios(ctx context.Context, insts map[string]*contender.Instance) {
	kubeconfigs := map[string]string{}
	for name, inst := range insts {
		k, err := r.kubeconfig(inst)
		if err != nil {
			r.problems = append(r.problems, err)
			return
		}
		kubeconfigs[name] = k
	}
	for _, sc := range []struct {
		name string
		f    func(context.Context, string) (int64, time.Duration, error)
	}{{ExecMBps, r.execOnce}, {PortForwardMBps, r.portForwardOnce}} {
		if !r.want(sc.name) {
			continue
		}
		res := map[string][]float64{}
		cpu := map[string][]float64{}
		errs := map[string]error{}
		for i := range r.sz.rounds {
			for _, name := range order(sc.name, i) {
				r.logf("%s %s round %d/%d", sc.name, name, i+1, r.sz.rounds)
				proxy := procstat.Group{Leader: insts[name].PID()}
				c0 := proxy.CPU()
				n, d, err := sc.f(ctx, kubeconfigs[name])
				if err != nil {
					if errs[name] == nil {
						errs[name] = err
					}
					continue
				}
				res[name] = append(res[name], round1(float64(n)/1e6/d.Seconds()))
				cpu[name] = append(cpu[name], pct((proxy.CPU()-c0).Seconds(), d.Seconds()))
			}
		}
		for _, name := range contendersOf(sc.name) {
			row := Row{Scenario: sc.name, Contender: name, Extra: map[string]any{
				"bytes": r.sz.streamBytes, "rounds_mb_per_s": res[name], "transport": "websocket (kubectl default)",
			}}
			if len(res[name]) > 0 {
				row.Extra["mb_per_s"] = median(res[name])
				if name != contender.Direct {
					row.Extra["proxy_cpu_pct"] = median(cpu[name])
				}
			}
			if errs[name] != nil {
				r.fail(&row, "%v", errs[name])
			}
			r.add(row)
		}
	}
}

// kubeconfig writes a kubeconfig that reaches the cluster through inst
// the way a user of it would: its URL and CA, its credential, and for
// direct the impersonation kubectl's --as would send.
func (r *run) kubeconfig(inst *contender.Instance) (string, error) {
	caPEM := r.ca.CertPEM
	if inst.Name == contender.Direct {
		caPEM = r.cluster.upstream.CAPEM
	}
	user := &clientcmdapi.AuthInfo{Token: strings.TrimPrefix(inst.Header.Get("Authorization"), "Bearer ")}
	if u := inst.Header.Get("Impersonate-User"); u != "" {
		user.Impersonate = u
		user.ImpersonateGroups = inst.Header.Values("Impersonate-Group")
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: inst.URL, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["u"] = user
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u", Namespace: podNamespace}
	cfg.CurrentContext = "c"
	path := filepath.Join(r.dir, "kubeconfig-"+inst.Name)
	return path, clientcmd.WriteToFile(*cfg, path)
}

// execOnce runs `head -c N /dev/zero` in the pod and times its output.
func (r *run) execOnce(ctx context.Context, kubeconfig string) (int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd, stdout, stderr, err := r.startKubectl(ctx, kubeconfig, "exec", podName, "--", "head", "-c", strconv.FormatInt(r.sz.streamBytes, 10), "/dev/zero")
	if err != nil {
		return 0, 0, err
	}
	n, d, rerr := timedRead(stdout, r.sz.streamBytes)
	werr := cmd.Wait()
	if rerr == nil && n != r.sz.streamBytes {
		rerr = fmt.Errorf("got %d bytes, want %d", n, r.sz.streamBytes)
	}
	if rerr == nil {
		rerr = werr
	}
	if rerr != nil {
		return 0, 0, fmt.Errorf("kubectl exec: %v; stderr: %s", rerr, strings.TrimSpace(stderr.String()))
	}
	return n, d, nil
}

// portForwardOnce forwards a local port to the pod's 8080, which kwok
// connects to the byte source, asks it for N bytes and times them.
func (r *run) portForwardOnce(ctx context.Context, kubeconfig string) (int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd, stdout, stderr, err := r.startKubectl(ctx, kubeconfig, "port-forward", "pod/"+podName, ":8080")
	if err != nil {
		return 0, 0, err
	}
	defer func() { cancel(); cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	m := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`).FindStringSubmatch(line)
	if m == nil {
		return 0, 0, fmt.Errorf("kubectl port-forward: got %q (%v); stderr: %s", line, err, strings.TrimSpace(stderr.String()))
	}
	conn, err := net.Dial("tcp", "127.0.0.1:"+m[1])
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(4 * time.Minute))
	if err := binary.Write(conn, binary.BigEndian, r.sz.streamBytes); err != nil {
		return 0, 0, err
	}
	n, d, err := timedRead(conn, r.sz.streamBytes)
	if err != nil || n != r.sz.streamBytes {
		return 0, 0, fmt.Errorf("port-forward: read %d of %d bytes (%v); kubectl stderr: %s", n, r.sz.streamBytes, err, strings.TrimSpace(stderr.String()))
	}
	return n, d, nil
}

// startKubectl starts kubectl with kubeconfig and args, its stdout piped
// and its stderr kept for error messages.
func (r *run) startKubectl(ctx context.Context, kubeconfig string, args ...string) (*exec.Cmd, io.Reader, *strings.Builder, error) {
	cmd := r.cluster.cluster.KubectlCmd(ctx, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("starting kubectl: %w", err)
	}
	return cmd, stdout, stderr, nil
}

// timedRead reads up to want bytes and returns the time from the first
// byte to the last, so that kubectl's own start-up is not counted.
func timedRead(rd io.Reader, want int64) (int64, time.Duration, error) {
	buf := make([]byte, 256<<10)
	var n int64
	var first time.Time
	for n < want {
		k, err := rd.Read(buf)
		if k > 0 && first.IsZero() {
			first = time.Now()
		}
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, 0, err
		}
	}
	return n, time.Since(first), nil
}

// startSource listens on loopback; each connection sends an 8-byte
// big-endian count and gets that many bytes back.
func startSource() (int, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, err
	}
	chunk := make([]byte, 256<<10)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var n int64
				if err := binary.Read(c, binary.BigEndian, &n); err != nil {
					return
				}
				for n > 0 {
					k := min(n, int64(len(chunk)))
					if _, err := c.Write(chunk[:k]); err != nil {
						return
					}
					n -= k
				}
				io.Copy(io.Discard, c) // until the client closes
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, func() { ln.Close() }, nil
}

// startupScenario starts each proxy afresh in front of the stub and
// reports the time to its first served request, its memory when idle and
// its binary's size.
func (r *run) startupScenario(ctx context.Context) {
	ready := map[string][]float64{}
	mem := map[string][]float64{}
	bins := map[string]int64{}
	errs := map[string]error{}
	for i := range r.sz.startupRounds {
		for _, name := range order(Startup, i) {
			if name == contender.Direct {
				continue
			}
			env, err := r.env(name, fmt.Sprintf("startup%d", i), r.stub.upstream)
			if err != nil {
				errs[name] = err
				continue
			}
			inst, err := r.contenders[name].Start(ctx, env)
			if err != nil {
				errs[name] = err
				continue
			}
			time.Sleep(time.Second) // idle: past its start-up work
			ready[name] = append(ready[name], round1(inst.Ready.Seconds()*1000))
			mem[name] = append(mem[name], round1(float64(procstat.Group{Leader: inst.PID()}.Memory())/(1<<20)))
			if fi, err := os.Stat(inst.Binary); err == nil {
				bins[name] = fi.Size()
			}
			inst.Stop()
		}
	}
	for _, name := range contendersOf(Startup) {
		row := Row{Scenario: Startup, Contender: name, Extra: map[string]any{}}
		if name == contender.Direct {
			row.Extra["note"] = "no proxy to start"
			r.add(row)
			continue
		}
		row.P50 = median(ready[name]) * 1000
		row.Extra["rounds_ready_ms"] = ready[name]
		row.Extra["ready_ms"] = median(ready[name])
		row.Extra["idle_mem_mib"] = median(mem[name])
		row.Extra["binary_mib"] = round1(float64(bins[name]) / (1 << 20))
		if name == contender.Nginx {
			row.Extra["binary_note"] = "dynamically linked: shared libraries (OpenSSL, libc, PCRE) not counted"
		}
		if errs[name] != nil {
			r.fail(&row, "%v", errs[name])
		}
		r.add(row)
	}
}
