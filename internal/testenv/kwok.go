package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kwokAssets are the kwok files a Kwok needs: the CRDs that configure exec,
// logs, attach and port-forward per pod, and the stages that move nodes
// and pods through their life (the kwok binary has no default stages).
var kwokAssets = append(kwokCRDs, kwokStages...)

var kwokCRDs = []string{
	"kustomize/crd/bases/kwok.x-k8s.io_execs.yaml",
	"kustomize/crd/bases/kwok.x-k8s.io_clusterexecs.yaml",
	"kustomize/crd/bases/kwok.x-k8s.io_logs.yaml",
	"kustomize/crd/bases/kwok.x-k8s.io_clusterlogs.yaml",
	"kustomize/crd/bases/kwok.x-k8s.io_attaches.yaml",
	"kustomize/crd/bases/kwok.x-k8s.io_clusterattaches.yaml",
	"kustomize/crd/bases/kwok.x-k8s.io_portforwards.yaml",
	"kustomize/crd/bases/kwok.x-k8s.io_clusterportforwards.yaml",
}

var kwokStages = []string{
	"kustomize/stage/node/fast/node-initialize.yaml",
	"kustomize/stage/node/heartbeat/node-heartbeat.yaml",
	"kustomize/stage/pod/fast/pod-ready.yaml",
	"kustomize/stage/pod/fast/pod-complete.yaml",
	"kustomize/stage/pod/fast/pod-delete.yaml",
}

// kwokNodeAnnotation marks the nodes kwok manages (kwok's own convention,
// kwok.x-k8s.io/node: fake).
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// KwokNode is a simulated node (sigs.k8s.io/kwok) registered with a Cluster:
// pods scheduled on it run, and exec, logs, attach and port-forward reach
// it through the real kube-apiserver, configured per pod with kwok's CRs.
type KwokNode struct {
	// NodeName is the node pods must name in spec.nodeName.
	NodeName string
	proc     *Process
}

// StartKwok builds kwok (once), installs its CRDs, starts it and registers
// one Ready node. It is stopped with the cluster.
func (c *Cluster) StartKwok(ctx context.Context) (*KwokNode, error) {
	bin, err := Tool(ctx, Kwok, nil)
	if err != nil {
		return nil, err
	}
	assets := filepath.Join(filepath.Dir(bin), "assets")
	for _, crd := range kwokCRDs {
		if _, _, err := c.Kubectl(ctx, nil, "apply", "--server-side", "-f", filepath.Join(assets, crd)); err != nil {
			return nil, fmt.Errorf("installing kwok CRDs: %w", err)
		}
	}
	if _, _, err := c.Kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		return nil, fmt.Errorf("waiting for kwok CRDs: %w", err)
	}
	var stages bytes.Buffer
	for _, s := range kwokStages {
		b, err := os.ReadFile(filepath.Join(assets, s))
		if err != nil {
			return nil, fmt.Errorf("reading kwok stage: %w", err)
		}
		stages.WriteString("---\n")
		stages.Write(b)
		stages.WriteString("\n")
	}
	stagesFile := filepath.Join(c.Dir, "kwok-stages.yaml")
	if err := os.WriteFile(stagesFile, stages.Bytes(), 0o600); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	// --node-name is left out on purpose: it adds a Hostname address the
	// apiserver cannot resolve here.
	proc, err := StartProcess("kwok", c.Dir, bin, []string{
		"--kubeconfig", c.Kubeconfig,
		"--config", stagesFile,
		// Only the node registered below: other nodes of the cluster (a
		// FakeNode) keep the status their owner gives them.
		"--manage-nodes-with-annotation-selector", kwokNodeAnnotation + "=fake",
		"--node-ip", "127.0.0.1",
		"--node-port", strconv.Itoa(port),
		"--server-address", hostPort(port),
		"--enable-crds=Exec,ClusterExec,Logs,ClusterLogs,Attach,ClusterAttach,PortForward,ClusterPortForward",
	}, nil)
	if err != nil {
		return nil, err
	}
	c.extra = append(c.extra, proc)
	k := &KwokNode{NodeName: "kwok-node", proc: proc}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        k.NodeName,
			Labels:      map[string]string{"type": "kwok"},
			Annotations: map[string]string{kwokNodeAnnotation: "fake"},
		},
		Status: corev1.NodeStatus{Allocatable: resources(), Capacity: resources()},
	}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("registering the kwok node: %w", err)
	}
	if err := proc.waitFor(ctx, 60*time.Second, "the kwok node is Ready", func(ctx context.Context) error {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, k.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("node %s not Ready yet", k.NodeName)
	}); err != nil {
		return nil, err
	}
	return k, nil
}

func resources() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
}

// EnsureNamespace creates a namespace and its default service account:
// with no kube-controller-manager, nothing else creates the account, and
// pods cannot be admitted without it.
func (c *Cluster) EnsureNamespace(ctx context.Context, name string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	_, err = c.Client.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating service account %s/default: %w", name, err)
	}
	return nil
}

// RunPod creates a pod on the kwok node and waits until it is Running.
func (c *Cluster) RunPod(ctx context.Context, k *KwokNode, namespace, name string, containers ...string) (*corev1.Pod, error) {
	if err := c.EnsureNamespace(ctx, namespace); err != nil {
		return nil, err
	}
	if len(containers) == 0 {
		containers = []string{"app"}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}, Spec: corev1.PodSpec{NodeName: k.NodeName}}
	for _, n := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: n, Image: "fake.example/" + n})
	}
	if _, err := c.Client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating pod %s/%s: %w", namespace, name, err)
	}
	var last *corev1.Pod
	err := k.proc.waitFor(ctx, 60*time.Second, "pod "+namespace+"/"+name+" is Running", func(ctx context.Context) error {
		p, err := c.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		last = p
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("pod phase %s", p.Status.Phase)
		}
		return nil
	})
	return last, err
}

// ApplyYAML applies manifests with kubectl as admin.
func (c *Cluster) ApplyYAML(ctx context.Context, manifests ...string) error {
	_, _, err := c.Kubectl(ctx, strings.NewReader(strings.Join(manifests, "\n---\n")), "apply", "-f", "-")
	return err
}

// WaitExec waits until kwok serves exec for a pod: kwok learns of Exec and
// ClusterExec objects through a watch, a moment after they are created.
func (c *Cluster) WaitExec(ctx context.Context, namespace, pod string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, _, err := c.Kubectl(ctx, nil, "-n", namespace, "exec", pod, "--", "true")
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for kwok to serve exec in %s/%s: %w", namespace, pod, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
