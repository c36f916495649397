package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/portcullis-proxy/portcullis/bench/internal/contender"
	"github.com/portcullis-proxy/portcullis/bench/internal/procstat"
	"github.com/portcullis-proxy/portcullis/bench/internal/stub"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// stubUpstream is the stub, run as a process of its own so that its CPU
// time is not the load generator's.
type stubUpstream struct {
	upstream contender.Upstream
	proc     *testenv.Process
	admin    string // http://127.0.0.1:P
	client   *http.Client
}

func (r *run) startStub(ctx context.Context) (*stubUpstream, error) {
	ports, err := testenv.FreePorts(2)
	if err != nil {
		return nil, err
	}
	tok := make([]byte, 24)
	rand.Read(tok)
	s := &stubUpstream{
		upstream: contender.Upstream{
			URL:    "https://127.0.0.1:" + strconv.Itoa(ports[0]),
			CAFile: filepath.Join(r.dir, "ca.crt"),
			CAPEM:  r.ca.CertPEM,
			Token:  "stub-sa-" + hex.EncodeToString(tok),
		},
		admin:  "http://127.0.0.1:" + strconv.Itoa(ports[1]),
		client: &http.Client{Timeout: 30 * time.Second},
	}
	args := append(r.opts.StubBin[1:], "-addr", "127.0.0.1:"+strconv.Itoa(ports[0]), "-admin", "127.0.0.1:"+strconv.Itoa(ports[1]),
		"-cert", r.certFile, "-key", r.keyFile, "-user", benchUser)
	// The token goes through the environment, not the command line, which
	// every process on the machine can read.
	p, err := testenv.StartProcess("stub", r.dir, r.opts.StubBin[0], args, []string{"BENCH_STUB_TOKEN=" + s.upstream.Token})
	if err != nil {
		return nil, err
	}
	s.proc = p
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := s.stats(); err == nil {
			break
		} else if exited, _ := p.Exited(); exited || time.Now().After(deadline) {
			p.Stop(time.Second)
			return nil, fmt.Errorf("starting the stub upstream: %v; its log ends:\n%s", err, p.LogTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.logf("stub upstream at %s", s.upstream.URL)
	return s, nil
}

func (s *stubUpstream) stats() (stub.Stats, error) {
	var st stub.Stats
	resp, err := s.client.Get(s.admin + "/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// broadcast sends one event to every open watch.
func (s *stubUpstream) broadcast() (int64, error) {
	resp, err := s.client.Post(s.admin+"/broadcast", "text/plain", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var n int64
	_, err = fmt.Fscan(resp.Body, &n)
	return n, err
}

func (s *stubUpstream) group() procstat.Group { return procstat.Group{Leader: s.proc.PID()} }

func (s *stubUpstream) stop() { s.proc.Stop(5 * time.Second) }

// clusterUpstream is a real kube-apiserver (and etcd) with a kwok node and
// one pod whose exec and port-forward work, and the objects the scenarios
// read.
type clusterUpstream struct {
	cluster    *testenv.Cluster
	kwok       *testenv.KwokNode
	upstream   contender.Upstream
	sourcePort int // the TCP source port-forward reaches
	execDir    string
	stopSource func()
}

const (
	listNamespace = "bench-list"
	podNamespace  = "bench"
	podName       = "stream"
)

func (r *run) startCluster(ctx context.Context) (*clusterUpstream, error) {
	r.logf("starting kube-apiserver, etcd and a kwok node")
	c, err := testenv.StartCluster(ctx, testenv.ClusterOptions{Progress: r.log})
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver: %w", err)
	}
	u := &clusterUpstream{cluster: c}
	ok := false
	defer func() {
		if !ok {
			u.stop()
		}
	}()
	if u.kwok, err = c.StartKwok(ctx); err != nil {
		return nil, fmt.Errorf("starting kwok: %w", err)
	}
	root, err := contender.RepoRoot()
	if err != nil {
		return nil, err
	}
	if _, _, err := c.Kubectl(ctx, nil, "apply", "-f", filepath.Join(root, "deploy/kubernetes/service-account.yaml")); err != nil {
		return nil, err
	}
	// What the bench person may do, through any contender.
	if err := c.ApplyYAML(ctx, `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: bench}
rules:
- apiGroups: [""]
  resources: [configmaps, pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods/exec, pods/portforward]
  verbs: [get, create]`, `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bench}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: bench}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: `+benchUser+`}`); err != nil {
		return nil, err
	}
	tok, err := c.CreateToken(ctx, "default", "portcullis", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(r.dir, "apiserver-ca.crt")
	if err := os.WriteFile(caFile, c.CA.CertPEM, 0o600); err != nil {
		return nil, err
	}
	u.upstream = contender.Upstream{URL: c.URL, CAFile: caFile, CAPEM: c.CA.CertPEM, Token: tok}

	// The ConfigMap of the small GET, and the 1,000 of the LIST.
	// client-go's default limit of 5 requests a second would make the
	// 1,000 creates take minutes.
	fast, err := kubernetes.NewForConfig(&rest.Config{
		Host: c.URL, BearerToken: c.AdminToken, QPS: -1,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CA.CertPEM},
	})
	if err != nil {
		return nil, err
	}
	cms := fast.CoreV1().ConfigMaps
	if _, err := cms("default").Create(ctx, benchConfigMap("bench"), metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating configmap default/bench: %w", err)
	}
	if err := c.EnsureNamespace(ctx, listNamespace); err != nil {
		return nil, err
	}
	if err := parallel(8, r.sz.listObjects, func(i int) error {
		_, err := cms(listNamespace).Create(ctx, benchConfigMap(fmt.Sprintf("cm-%04d", i)), metav1.CreateOptions{})
		return err
	}); err != nil {
		return nil, fmt.Errorf("creating %d configmaps: %w", r.sz.listObjects, err)
	}

	// A pod whose exec runs here and whose port 8080 reaches a source of
	// bytes.
	if u.sourcePort, u.stopSource, err = startSource(); err != nil {
		return nil, err
	}
	u.execDir = filepath.Join(r.dir, "exec")
	if err := os.MkdirAll(u.execDir, 0o755); err != nil {
		return nil, err
	}
	if _, err := c.RunPod(ctx, u.kwok, podNamespace, podName); err != nil {
		return nil, err
	}
	if err := c.ApplyYAML(ctx,
		fmt.Sprintf("apiVersion: kwok.x-k8s.io/v1alpha1\nkind: ClusterExec\nmetadata: {name: bench}\nspec:\n  execs:\n  - local: {workDir: %q}", u.execDir),
		fmt.Sprintf("apiVersion: kwok.x-k8s.io/v1alpha1\nkind: ClusterPortForward\nmetadata: {name: bench}\nspec:\n  forwards:\n  - ports: [8080]\n    target: {address: 127.0.0.1, port: %d}", u.sourcePort),
	); err != nil {
		return nil, err
	}
	if err := c.WaitExec(ctx, podNamespace, podName); err != nil {
		return nil, err
	}
	ok = true
	return u, nil
}

func (u *clusterUpstream) stop() {
	if u.stopSource != nil {
		u.stopSource()
	}
	u.cluster.Stop()
}

// benchConfigMap is about 1 KB, like the stub's.
func benchConfigMap(name string) *corev1.ConfigMap {
	data := map[string]string{}
	for i := range 8 {
		data[fmt.Sprintf("key-%d", i)] = strings.Repeat(string(rune('a'+i)), 64)
	}
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(workers, n int, f func(int) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
		errs error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := errs != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					errs = err
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return errs
}
