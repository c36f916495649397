package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FakeNode is a node whose kubelet endpoint is our own fake kubelet
// (tools/fakenode), built on Kubernetes' streaming server code. kube-apiserver
// sends it exec, attach and port-forward for the pods bound to it, like to
// a real kubelet. Unlike a kwok node it keeps what tests of those need:
//
//   - exec runs the command as a local process in WorkDir; its exit code
//     reaches kubectl, and the end of kubectl's stdin reaches the command
//     (so `kubectl cp` into a pod works; give it a relative destination:
//     an absolute one is a path on this machine);
//   - with a terminal (exec -t), the built-in command fakenode-report-size
//     prints "ROWSxCOLS" for the initial size and each resize, until stdin
//     ends or Ctrl-C or Ctrl-D arrives;
//   - attach echoes stdin to stdout, like a container whose process is cat;
//   - port-forward to pod port N connects to 127.0.0.1:N, as if the pod
//     shared this machine's network.
//
// Pods are not run: RunFakePod only records them as Running. There are no
// logs (use kwok for `kubectl logs`).
type FakeNode struct {
	// NodeName is the node pods must name in spec.nodeName.
	NodeName string
	// WorkDir is the working directory of every exec'd command: tests put
	// files there and read what `kubectl cp` wrote. It is removed with
	// the cluster.
	WorkDir string
	// Addr is the fake kubelet's HTTPS address, 127.0.0.1:PORT.
	Addr string
	proc *Process
}

// StartFakeNode builds the fake kubelet (once), starts it and registers a
// Ready node for it. It is stopped with the cluster. Nothing keeps the
// node's status up to date, and with no kube-controller-manager nothing
// needs to: the node stays Ready.
func (c *Cluster) StartFakeNode(ctx context.Context) (*FakeNode, error) {
	bin, err := Tool(ctx, FakeNodeTool, nil)
	if err != nil {
		return nil, err
	}
	// A directory per node keeps several fake nodes apart; its name is
	// the node's name.
	dir, err := os.MkdirTemp(c.Dir, "fakenode-")
	if err != nil {
		return nil, fmt.Errorf("starting a fake node: %w", err)
	}
	n := &FakeNode{NodeName: filepath.Base(dir), WorkDir: filepath.Join(dir, "work")}
	if err := os.Mkdir(n.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("starting a fake node: %w", err)
	}
	// fakenode picks its own port and reports it, which leaves no window
	// for another process to take a port picked for it.
	addrFile := filepath.Join(dir, "address")
	n.proc, err = StartProcess("fakenode", dir, bin, []string{
		"--listen", "127.0.0.1:0",
		"--address-file", addrFile,
		"--workdir", n.WorkDir,
	}, nil)
	if err != nil {
		return nil, err
	}
	c.extra = append(c.extra, n.proc)
	// Its certificate is self-signed; the harness only asks it whether it
	// is up, on loopback.
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		Timeout:   2 * time.Second,
	}
	defer client.CloseIdleConnections()
	if err := n.proc.waitFor(ctx, 30*time.Second, "fakenode serves", func(ctx context.Context) error {
		b, err := os.ReadFile(addrFile)
		if err != nil {
			return err
		}
		n.Addr = strings.TrimSpace(string(b))
		return httpOK(ctx, client, "https://"+n.Addr+"/healthz", "", "ok")
	}); err != nil {
		return nil, err
	}
	_, portStr, err := net.SplitHostPort(n.Addr)
	if err != nil {
		return nil, fmt.Errorf("fakenode reported address %q: %w", n.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("fakenode reported address %q: %w", n.Addr, err)
	}
	if err := c.registerFakeNode(ctx, n.NodeName, port); err != nil {
		return nil, err
	}
	return n, nil
}

// registerFakeNode creates the Node object. kube-apiserver finds a node's
// kubelet at an address of status.addresses (testenv's apiserver prefers
// InternalIP) and status.daemonEndpoints.kubeletEndpoint.port.
func (c *Cluster) registerFakeNode(ctx context.Context, name string, port int) error {
	now := metav1.Now()
	status := corev1.NodeStatus{
		Capacity:    resources(),
		Allocatable: resources(),
		Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{
			KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)},
		},
		Conditions: []corev1.NodeCondition{{
			Type:               corev1.NodeReady,
			Status:             corev1.ConditionTrue,
			Reason:             "FakeNodeReady",
			Message:            "fakenode is serving on " + hostPort(port),
			LastHeartbeatTime:  now,
			LastTransitionTime: now,
		}},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion:  KubernetesVersion,
			OperatingSystem: "linux",
			Architecture:    runtime.GOARCH,
		},
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{"type": "fakenode", corev1.LabelHostname: name},
		},
		Status: status,
	}
	created, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("registering fake node %s: %w", name, err)
	}
	// Status is set again through its subresource: what create keeps of
	// it is the apiserver's choice, what the status subresource keeps is
	// not.
	created.Status = status
	if _, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("setting the status of fake node %s: %w", name, err)
	}
	return nil
}

// RunFakePod creates a pod with one container, "app", bound to a fake node,
// and records it as Running with the container started and ready: kubectl
// exec, attach and port-forward refuse a pod that is not running. The
// namespace and its default service account are created if needed. No
// kubelet confirms a deletion: delete such a pod with grace period 0
// (kubectl delete --force --grace-period=0), or it stays Terminating.
func (c *Cluster) RunFakePod(ctx context.Context, n *FakeNode, namespace, name string) error {
	if err := c.EnsureNamespace(ctx, namespace); err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.PodSpec{
			NodeName:   n.NodeName,
			Containers: []corev1.Container{{Name: "app", Image: "fake.example/app"}},
		},
	}
	created, err := c.Client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating pod %s/%s: %w", namespace, name, err)
	}
	now := metav1.Now()
	started := true
	ready := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
	}
	created.Status = corev1.PodStatus{
		Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{
			ready(corev1.PodScheduled), ready(corev1.PodInitialized),
			ready(corev1.ContainersReady), ready(corev1.PodReady),
		},
		// The pod shares the node's loopback network (see FakeNode).
		HostIP:    "127.0.0.1",
		HostIPs:   []corev1.HostIP{{IP: "127.0.0.1"}},
		PodIP:     "127.0.0.1",
		PodIPs:    []corev1.PodIP{{IP: "127.0.0.1"}},
		StartTime: &now,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name:        "app",
			Image:       "fake.example/app",
			ImageID:     "fake.example/app@sha256:" + strings.Repeat("0", 64),
			ContainerID: "fakenode://" + namespace + "/" + name + "/app",
			Ready:       true,
			Started:     &started,
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
	if _, err := c.Client.CoreV1().Pods(namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("marking pod %s/%s Running: %w", namespace, name, err)
	}
	return nil
}
