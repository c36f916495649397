// Package helm_test proves the Helm chart in deploy/helm/portcullis with
// the real tools: the pinned Helm lints and renders it, a real
// kube-apiserver admits what it renders into a namespace that enforces the
// restricted Pod Security Standard, Portcullis's container image accepts
// the configuration file it writes, and the plain manifests in
// deploy/kubernetes are what it renders and deploy/grafana holds its
// dashboard (go test ./deploy/helm -update, or make manifests, rewrites
// them). The dashboard and the alerts read only metrics Portcullis has.
package helm_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the manifests in deploy/kubernetes from the chart")

const (
	chartDir   = "portcullis"
	fullValues = "testdata/full-values.yaml"
	// The values deploy/kubernetes is rendered from.
	manifestValues = "kubernetes-values.yaml"
)

// helm runs the pinned Helm with homes of its own, so that neither the
// user's repositories and plugins nor a kubeconfig reach the tests.
type helm struct {
	bin string
	env []string
}

func newHelm(t *testing.T) *helm {
	t.Helper()
	home := t.TempDir()
	return &helm{
		bin: testenv.ToolPath(t, testenv.Helm),
		env: append(os.Environ(),
			"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
			"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
			"HELM_DATA_HOME="+filepath.Join(home, "data"),
			"KUBECONFIG="+filepath.Join(home, "no-kubeconfig")),
	}
}

func (h *helm) run(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, h.bin, args...)
	cmd.Env = h.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), errb.String(), err
}

// template renders the chart as release in namespace, failing the test if
// Helm refuses.
func (h *helm) template(t *testing.T, release, namespace string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _, err := h.run(ctx, append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// objects splits rendered YAML into its objects.
func objects(t *testing.T, rendered string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	dec := yaml.NewDecoder(strings.NewReader(rendered))
	for {
		var o map[string]any
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("parsing rendered YAML: %v", err)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
}

// object returns the one object of kind in objs.
func object(t *testing.T, objs []map[string]any, kind string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, o := range objs {
		if o["kind"] == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("rendered objects: got %d of kind %s, want 1", len(found), kind)
	}
	return found[0]
}

func kinds(objs []map[string]any) []string {
	var ks []string
	for _, o := range objs {
		ks = append(ks, fmt.Sprint(o["kind"]))
	}
	slices.Sort(ks)
	return ks
}

// path walks nested maps: path(o, "spec", "template").
func path(o map[string]any, keys ...string) any {
	var v any = o
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// configMap returns the rendered ConfigMap that holds the Portcullis
// configuration file (the dashboard's is another).
func configMap(t *testing.T, objs []map[string]any) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, o := range objs {
		if _, ok := path(o, "data", "portcullis.yaml").(string); ok && o["kind"] == "ConfigMap" {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("rendered objects: got %d ConfigMaps with data.portcullis.yaml, want 1", len(found))
	}
	return found[0]
}

// configFile returns the Portcullis configuration file in the rendered
// ConfigMap.
func configFile(t *testing.T, objs []map[string]any) string {
	t.Helper()
	return path(configMap(t, objs), "data", "portcullis.yaml").(string)
}

// secretFile is a file of the pod's projected secrets volume: the key of
// the Secret it comes from, and its path in the volume.
type secretFile struct {
	Secret, Key, Path string
}

// secretFiles lists the files of the Deployment's projected secrets
// volume, mounted at /etc/portcullis/secrets.
func secretFiles(t *testing.T, objs []map[string]any) []secretFile {
	t.Helper()
	vols, _ := path(object(t, objs, "Deployment"), "spec", "template", "spec", "volumes").([]any)
	var files []secretFile
	for _, v := range vols {
		if path(v.(map[string]any), "name") != "secrets" {
			continue
		}
		sources, _ := path(v.(map[string]any), "projected", "sources").([]any)
		for _, src := range sources {
			items, _ := path(src.(map[string]any), "secret", "items").([]any)
			for _, it := range items {
				files = append(files, secretFile{
					Secret: fmt.Sprint(path(src.(map[string]any), "secret", "name")),
					Key:    fmt.Sprint(path(it.(map[string]any), "key")),
					Path:   fmt.Sprint(path(it.(map[string]any), "path")),
				})
			}
		}
	}
	if len(files) == 0 {
		t.Fatal("Deployment: no files in the projected volume secrets")
	}
	return files
}

func TestLint(t *testing.T) {
	h := newHelm(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, values := range [][]string{nil, {"-f", fullValues}, {"-f", manifestValues}} {
		out, _, err := h.run(ctx, append([]string{"lint", "--strict", chartDir}, values...)...)
		if err != nil {
			t.Errorf("%v\n%s", err, out)
		} else if !strings.Contains(out, "0 chart(s) failed") {
			t.Errorf("helm lint --strict %v: got %q, want 0 chart(s) failed", values, out)
		}
	}
}

// TestRefused: values the chart must refuse, each with a message that
// says what to change. Unknown keys are the schema's, at every level.
func TestRefused(t *testing.T) {
	h := newHelm(t)
	for _, tc := range []struct {
		name, values, want string
	}{
		{"top-level typo", "replicas: 1", `at '': additional properties 'replicas' not allowed`},
		{"nested typo", "image:\n  repositry: portcullis", `at '/image': additional properties 'repositry' not allowed`},
		{"typo in a secret reference", "idp:\n  clientSecret:\n    existingSecrets: x", `at '/idp/clientSecret': additional properties 'existingSecrets' not allowed`},
		{"unknown setting", "config:\n  log_levle: debug", `at '/config': additional properties 'log_levle' not allowed`},
		{"a setting the chart sets", "config:\n  address: ':443'", `at '/config': additional properties 'address' not allowed`},
		{"a secret in the ConfigMap", "config:\n  signing_key: c2VjcmV0", `at '/config': additional properties 'signing_key' not allowed`},
		{"the cluster's address", "kubernetesRoute:\n  settings:\n    to: https://10.0.0.1", `at '/kubernetesRoute/settings': additional properties 'to' not allowed`},
		{"unknown route key", "routes:\n  - from: https://a.example.com\n    to: http://a\n    polcy: []", `at '/routes/0': additional properties 'polcy' not allowed`},
		{"unknown provider", "idp:\n  provider: odic", `at '/idp/provider': value must be one of`},
		{"unknown session store", "sessionStore:\n  type: redis", `at '/sessionStore/type': value must be one of`},
		{"grace not a duration", "sessionStore:\n  type: postgres\n  grace: 5 minutes", `at '/sessionStore/grace': '5 minutes' does not match pattern`},
		{"two replicas in memory", "replicaCount: 2", "replicaCount: several replicas must share their sessions, and sessionStore.type: memory keeps them in each pod; set sessionStore.type: postgres (see docs/postgres.md), or replicaCount: 1"},
		{"postgres without a connection string", "replicaCount: 3\nsessionStore:\n  type: postgres",
			"sessionStore.connectionString.existingSecret: name the Secret that holds the PostgreSQL connection string, which sessionStore.type: postgres needs"},
		{"a connection string in memory", "sessionStore:\n  connectionString:\n    existingSecret: db", "sessionStore.connectionString.existingSecret: is set, but sessionStore.type is memory"},
		{"a grace in memory", "sessionStore:\n  grace: 2m", "sessionStore.grace: is set, but sessionStore.type is memory"},
		{"cert-manager without an issuer", "tls:\n  certManager:\n    enabled: true", "tls.certManager.issuerRef.name: name the cert-manager Issuer or ClusterIssuer that signs the certificate"},
		{"no certificate", "tls:\n  existingSecret: ''", "tls: set tls.existingSecret to the kubernetes.io/tls Secret with the certificate, or enable tls.certManager"},
		{"one host for both", "hosts:\n  kubernetes: k8s.example.com\n  authenticate: k8s.example.com", "hosts: the sign-in service needs a host of its own"},
		{"a ServiceMonitor without metrics", "metrics:\n  enabled: false\n  serviceMonitor:\n    enabled: true", "metrics.serviceMonitor.enabled: a ServiceMonitor needs the metrics listener"},
		{"alerts without metrics", "metrics:\n  enabled: false\n  prometheusRule:\n    enabled: true", "metrics.prometheusRule.enabled: its alerts read the metrics listener's metrics; set metrics.enabled: true"},
		{"dashboard label not a string", "metrics:\n  grafanaDashboard:\n    labels:\n      grafana_dashboard: 1", `at '/metrics/grafanaDashboard/labels/grafana_dashboard': got number, want string`},
		{"audit settings in config", "config:\n  audit_log_path: '-'", `at '/config': additional properties 'audit_log_path' not allowed`},
		{"a relative audit log", "audit:\n  logPath: audit.log", `at '/audit/logPath': 'audit.log' does not match pattern`},
		{"an audit log over the pod's files", "audit:\n  logPath: /etc/portcullis/secrets/audit.log",
			"audit.logPath: the chart mounts an emptyDir at its directory, /etc/portcullis/secrets, which must not be / or hold the pod's own files"},
		{"an audit log at the root", "audit:\n  logPath: /audit.log", "audit.logPath: the chart mounts an emptyDir at its directory, /,"},
		{"an audit policy without a sink", "audit:\n  policy:\n    rules:\n      - level: Metadata",
			`audit.policy: is set, but no audit event would be written; set audit.logPath ("-" for the pod's standard output) or audit.webhook.existingSecret`},
		{"a typo in the audit policy", "audit:\n  logPath: '-'\n  policy:\n    rule: []", `at '/audit/policy': additional properties 'rule' not allowed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(f, []byte(tc.values+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, stderr, err := h.run(ctx, "template", "portcullis", chartDir, "-f", f)
			if err == nil {
				t.Fatalf("helm template with %q: succeeded, want it refused with %q", tc.values, tc.want)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("helm template with %q: got %q, want it to contain %q", tc.values, stderr, tc.want)
			}
		})
	}
}

// TestRendered checks what the values turn into, beyond what the API
// server checks: the objects rendered, the route to the cluster, the
// session store and the replicas, and the probes.
func TestRendered(t *testing.T) {
	h := newHelm(t)
	defaults := objects(t, h.template(t, "portcullis", "default"))
	if got, want := kinds(defaults), []string{"ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment",
		"PodDisruptionBudget", "Secret", "Service", "Service", "ServiceAccount"}; !slices.Equal(got, want) {
		t.Errorf("default values: rendered %v, want %v", got, want)
	}
	full := objects(t, h.template(t, "portcullis", "edge", "-f", fullValues))
	if got, want := kinds(full), []string{"Certificate", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "ConfigMap", "Deployment",
		"NetworkPolicy", "PodDisruptionBudget", "PrometheusRule", "Secret", "Service", "Service", "ServiceAccount", "ServiceMonitor"}; !slices.Equal(got, want) {
		t.Errorf("full values: rendered %v, want %v", got, want)
	}

	// The impersonation rules are exactly those deploy/kubernetes grants,
	// which TestManifestsUpToDate keeps equal to the chart's, and which the
	// e2e tests apply and exercise.
	wantRules := []any{
		map[string]any{"apiGroups": []any{""}, "resources": []any{"users", "groups"}, "verbs": []any{"impersonate"}},
		map[string]any{"apiGroups": []any{"authentication.k8s.io"}, "resources": []any{"userextras/portcullis.io/impersonator"}, "verbs": []any{"impersonate"}},
		map[string]any{"apiGroups": []any{"authorization.k8s.io"}, "resources": []any{"selfsubjectaccessreviews"}, "verbs": []any{"create"}},
	}
	if diff := cmp.Diff(wantRules, object(t, defaults, "ClusterRole")["rules"]); diff != "" {
		t.Errorf("ClusterRole rules (-want +got):\n%s", diff)
	}

	// The route reaches the cluster the pod runs in, as the pod's own
	// service account.
	var cfg struct {
		Routes []map[string]any `yaml:"routes"`
	}
	if err := yaml.Unmarshal([]byte(configFile(t, defaults)), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes) != 1 {
		t.Fatalf("default values: %d routes, want 1", len(cfg.Routes))
	}
	wantRoute := map[string]any{
		"from":                  "https://k8s.example.com",
		"kubernetes_in_cluster": true,
	}
	if diff := cmp.Diff(wantRoute, cfg.Routes[0]); diff != "" {
		t.Errorf("default values: the Kubernetes route (-want +got):\n%s", diff)
	}

	// The session store: memory and one replica by default; the full
	// values share sessions through PostgreSQL, whose connection string is
	// a file from its Secret, like every other secret.
	for _, tc := range []struct {
		name         string
		objs         []map[string]any
		wantReplicas int
		wantStore    map[string]any
		wantDBFile   []secretFile
	}{
		{"default values", defaults, 1, map[string]any{}, nil},
		{"full values", full, 3, map[string]any{
			"databroker_storage_type":                   "postgres",
			"databroker_storage_connection_string_file": "/etc/portcullis/secrets/database-url",
			"databroker_storage_grace":                  "2m",
		}, []secretFile{{Secret: "session-db", Key: "url", Path: "database-url"}}},
	} {
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(configFile(t, tc.objs)), &cfg); err != nil {
			t.Fatal(err)
		}
		store := map[string]any{}
		for k, v := range cfg {
			if strings.HasPrefix(k, "databroker_") {
				store[k] = v
			}
		}
		if diff := cmp.Diff(tc.wantStore, store); diff != "" {
			t.Errorf("%s: the session store's settings (-want +got):\n%s", tc.name, diff)
		}
		if got := path(object(t, tc.objs, "Deployment"), "spec", "replicas"); got != tc.wantReplicas {
			t.Errorf("%s: Deployment replicas: got %v, want %d", tc.name, got, tc.wantReplicas)
		}
		var db []secretFile
		for _, f := range secretFiles(t, tc.objs) {
			if f.Path == "database-url" {
				db = append(db, f)
			}
		}
		if diff := cmp.Diff(tc.wantDBFile, db); diff != "" {
			t.Errorf("%s: database-url in the secrets volume (-want +got):\n%s", tc.name, diff)
		}
	}
	// Several pods may be disrupted one at a time: a drain never takes
	// them all.
	if got := path(object(t, full, "PodDisruptionBudget"), "spec", "maxUnavailable"); got != 1 {
		t.Errorf("full values: PodDisruptionBudget maxUnavailable: got %v, want 1", got)
	}

	// Probes on the main port, over TLS unless insecureServer.
	container := func(objs []map[string]any) map[string]any {
		cs, _ := path(object(t, objs, "Deployment"), "spec", "template", "spec", "containers").([]any)
		if len(cs) != 1 {
			t.Fatalf("Deployment: %d containers, want 1", len(cs))
		}
		return cs[0].(map[string]any)
	}
	insecure := objects(t, h.template(t, "portcullis", "default", "--set", "insecureServer=true"))
	for _, tc := range []struct {
		name   string
		objs   []map[string]any
		scheme string
	}{{"default", defaults, "HTTPS"}, {"insecureServer", insecure, "HTTP"}} {
		c := container(tc.objs)
		for probe, want := range map[string]string{"livenessProbe": "/ping", "readinessProbe": "/.pomerium/healthz"} {
			get := path(c, probe, "httpGet")
			wantGet := map[string]any{"path": want, "port": strings.ToLower(tc.scheme), "scheme": tc.scheme}
			if diff := cmp.Diff(wantGet, get); diff != "" {
				t.Errorf("%s: %s (-want +got):\n%s", tc.name, probe, diff)
			}
		}
	}
	if strings.Contains(configFile(t, insecure), "certificate") || !strings.Contains(configFile(t, insecure), "insecure_server: true") {
		t.Errorf("insecureServer: the configuration file names a certificate, or does not say insecure_server:\n%s", configFile(t, insecure))
	}

	// No secret in the ConfigMap: the full values name secrets only by file.
	for _, o := range full {
		if o["kind"] != "Secret" {
			continue
		}
		for _, v := range path(o, "data").(map[string]any) {
			if s, _ := base64.StdEncoding.DecodeString(fmt.Sprint(v)); strings.Contains(configFile(t, full), string(s)) {
				t.Errorf("full values: a generated secret is in the ConfigMap")
			}
		}
	}
}

// TestAuditRendered checks the audit values: the settings they write, the
// policy file in the ConfigMap, the webhook's kubeconfig among the secrets,
// an emptyDir for a log file on the read-only root, and the pods rolled by
// a change of any of them, since Portcullis reads them only at start.
func TestAuditRendered(t *testing.T) {
	h := newHelm(t)
	auditSettings := func(objs []map[string]any) map[string]any {
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(configFile(t, objs)), &cfg); err != nil {
			t.Fatal(err)
		}
		got := map[string]any{}
		for k, v := range cfg {
			if strings.HasPrefix(k, "audit_") {
				got[k] = v
			}
		}
		return got
	}
	podSpec := func(objs []map[string]any) map[string]any {
		return path(object(t, objs, "Deployment"), "spec", "template", "spec").(map[string]any)
	}
	// The volume audit-log and where the container mounts it; nil without.
	logVolume := func(objs []map[string]any) map[string]any {
		spec := podSpec(objs)
		var vol, mount any
		for _, v := range spec["volumes"].([]any) {
			if path(v.(map[string]any), "name") == "audit-log" {
				vol = v
			}
		}
		for _, m := range path(spec["containers"].([]any)[0].(map[string]any), "volumeMounts").([]any) {
			if path(m.(map[string]any), "name") == "audit-log" {
				mount = m
			}
		}
		if vol == nil && mount == nil {
			return nil
		}
		return map[string]any{"volume": vol, "mount": mount}
	}
	webhookFiles := func(objs []map[string]any) []secretFile {
		var fs []secretFile
		for _, f := range secretFiles(t, objs) {
			if strings.HasPrefix(f.Path, "audit") {
				fs = append(fs, f)
			}
		}
		return fs
	}

	defaults := objects(t, h.template(t, "portcullis", "default"))
	if got := auditSettings(defaults); len(got) != 0 {
		t.Errorf("default values: audit settings %v, want none", got)
	}
	if _, ok := path(configMap(t, defaults), "data", "audit-policy.yaml").(string); ok {
		t.Error("default values: the ConfigMap holds an audit policy")
	}
	if v := logVolume(defaults); v != nil || webhookFiles(defaults) != nil {
		t.Errorf("default values: audit volumes %v, webhook files %v; want none", v, webhookFiles(defaults))
	}

	full := objects(t, h.template(t, "portcullis", "edge", "-f", fullValues))
	if diff := cmp.Diff(map[string]any{
		"audit_log_path":            "/var/log/portcullis/audit.log",
		"audit_log_maxsize":         50,
		"audit_log_maxbackup":       3,
		"audit_policy_file":         "/etc/portcullis/config/audit-policy.yaml",
		"audit_webhook_config_file": "/etc/portcullis/secrets/audit-webhook.kubeconfig",
	}, auditSettings(full)); diff != "" {
		t.Errorf("full values: audit settings (-want +got):\n%s", diff)
	}
	var policy map[string]any
	if err := yaml.Unmarshal([]byte(fmt.Sprint(path(configMap(t, full), "data", "audit-policy.yaml"))), &policy); err != nil {
		t.Fatal(err)
	}
	if policy["apiVersion"] != "audit.k8s.io/v1" || policy["kind"] != "Policy" || len(policy["rules"].([]any)) != 3 {
		t.Errorf("full values: the ConfigMap's audit-policy.yaml is %v, want the values' policy as an audit.k8s.io/v1 Policy", policy)
	}
	if diff := cmp.Diff(map[string]any{
		"volume": map[string]any{"name": "audit-log", "emptyDir": map[string]any{}},
		"mount":  map[string]any{"name": "audit-log", "mountPath": "/var/log/portcullis"},
	}, logVolume(full)); diff != "" {
		t.Errorf("full values: the audit log's volume (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]secretFile{{Secret: "audit-webhook", Key: "webhook.kubeconfig", Path: "audit-webhook.kubeconfig"}}, webhookFiles(full)); diff != "" {
		t.Errorf("full values: the webhook's kubeconfig in the secrets volume (-want +got):\n%s", diff)
	}

	// On standard output: no file, so nothing to rotate and no volume.
	stdout := objects(t, h.template(t, "portcullis", "default", "--set", "audit.logPath=-"))
	if diff := cmp.Diff(map[string]any{"audit_log_path": "-"}, auditSettings(stdout)); diff != "" {
		t.Errorf("audit.logPath -: audit settings (-want +got):\n%s", diff)
	}
	if v := logVolume(stdout); v != nil {
		t.Errorf("audit.logPath -: an audit log volume %v", v)
	}

	// A change of the policy rolls the pods; the dashboard and the alerts
	// do not.
	checksum := func(args ...string) any {
		objs := objects(t, h.template(t, "portcullis", "edge", append([]string{"-f", fullValues}, args...)...))
		return path(object(t, objs, "Deployment"), "spec", "template", "metadata", "annotations", "checksum/restart")
	}
	other := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(other, []byte("audit:\n  policy:\n    rules:\n      - level: None\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := checksum()
	for _, tc := range []struct {
		name  string
		args  []string
		rolls bool
	}{
		{"another audit policy", []string{"-f", other}, true},
		{"another webhook Secret", []string{"--set", "audit.webhook.existingSecret=other"}, true},
		{"another log rotation", []string{"--set", "audit.logMaxBackup=4"}, true},
		{"no dashboard", []string{"--set", "metrics.grafanaDashboard.enabled=false"}, false},
		{"no alerts", []string{"--set", "metrics.prometheusRule.enabled=false"}, false},
	} {
		if got := checksum(tc.args...); (got != base) != tc.rolls {
			t.Errorf("%s: checksum/restart %v, was %v: want the pods rolled %v", tc.name, got, base, tc.rolls)
		}
	}
}

// TestConfigAccepted runs portcullis --check-config in Portcullis's
// container image, as the chart's pod runs it: the configuration file the
// chart writes, and the files the pod would have, mounted where the chart
// mounts them, with the service-account directory and the environment
// Kubernetes gives every pod. What Portcullis accepts here it starts with
// in the pod.
func TestConfigAccepted(t *testing.T) {
	h := newHelm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	layout, ref := testenv.BuildImage(t, ctx)
	ca, err := testenv.NewCA("portcullis-chart-test")
	if err != nil {
		t.Fatal(err)
	}
	const dbPassword = "pw-not-to-be-printed"
	const (
		memory = "sessions:      memory: this process only"
		// check-config checks the connection string without connecting,
		// and never prints it.
		postgres = "sessions:      postgres, shared by replicas (connection string set); cached sessions keep working for "
	)
	for _, tc := range []struct {
		name         string
		args         []string
		wantSessions string
	}{
		{"default values", nil, memory},
		{"full values", []string{"-f", fullValues}, postgres + "2m0s while it is down"},
		{"insecureServer", []string{"--set", "insecureServer=true"}, memory},
		{"audit on standard output, with a policy", []string{"--set", "audit.logPath=-", "--set", "audit.policy.rules[0].level=Metadata"}, memory},
		{"postgres, three replicas", []string{"--set", "replicaCount=3", "--set", "sessionStore.type=postgres",
			"--set", "sessionStore.connectionString.existingSecret=portcullis-database"}, postgres + "5m0s while it is down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := objects(t, h.template(t, "portcullis", "default", tc.args...))
			cfg := configFile(t, objs)
			// The certificate for the hosts cert-manager would be asked
			// for, or, with a Secret of one's own, the two host names.
			hosts := []string{"k8s.example.com", "authenticate.example.com"}
			for _, o := range objs {
				if o["kind"] == "Certificate" {
					hosts = nil
					for _, h := range path(o, "spec", "dnsNames").([]any) {
						hosts = append(hosts, h.(string))
					}
				}
			}
			certPEM, keyPEM, err := ca.Issue("portcullis", hosts...)
			if err != nil {
				t.Fatal(err)
			}
			secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
			// What each file of the secrets volume holds, by its path
			// there; the volume has the files the chart projects into it,
			// so that a new one cannot go unchecked.
			contents := map[string]string{
				"cookie-secret": secret, "shared-secret": secret, "idp-client-secret": "client-secret",
				"database-url": "postgres://portcullis:" + dbPassword + "@db.example.com:5432/portcullis?sslmode=verify-full",
				"admin-token":  "an-admin-token-of-at-least-32-characters",
				"audit-webhook.kubeconfig": "apiVersion: v1\nkind: Config\nclusters:\n- name: audit\n  cluster:\n    server: https://audit.example.com/events\n" +
					"    certificate-authority-data: " + base64.StdEncoding.EncodeToString(ca.CertPEM) + "\n" +
					"users:\n- name: portcullis\n  user:\n    token: an-audit-webhook-token\n" +
					"contexts:\n- name: audit\n  context:\n    cluster: audit\n    user: portcullis\ncurrent-context: audit\n",
			}
			secrets := map[string]string{}
			for _, f := range secretFiles(t, objs) {
				c, ok := contents[f.Path]
				if !ok {
					t.Fatalf("the chart projects %s into the secrets volume, and this test does not know what it holds", f.Path)
				}
				secrets[f.Path] = c
			}
			// The ConfigMap's files: the configuration, and an audit policy.
			configFiles := map[string]string{}
			for k, v := range path(configMap(t, objs), "data").(map[string]any) {
				configFiles[k] = v.(string)
			}
			// The pod's volumes, by where the chart mounts them.
			volumes := map[string]map[string]string{
				"/etc/portcullis/config":                        configFiles,
				"/etc/portcullis/tls":                           {"tls.crt": string(certPEM), "tls.key": string(keyPEM)},
				"/etc/portcullis/secrets":                       secrets,
				"/var/run/secrets/kubernetes.io/serviceaccount": {"ca.crt": string(ca.CertPEM), "token": "a-service-account-token", "namespace": "default"},
			}
			spec := testenv.ContainerSpec{
				Layout: layout, Ref: ref,
				Args: []string{"--config", "/etc/portcullis/config/portcullis.yaml", "--check-config"},
				// What the kubelet sets in every container.
				Env: []string{"KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443"},
			}
			for dst, files := range volumes {
				spec.Mounts = append(spec.Mounts, testenv.Mount{Source: testenv.PodVolume(t, files), Destination: dst})
			}
			// And the pod's emptyDirs, such as the audit log's, which
			// --check-config only looks for.
			podSpec, _ := path(object(t, objs, "Deployment"), "spec", "template", "spec").(map[string]any)
			for _, v := range podSpec["volumes"].([]any) {
				if path(v.(map[string]any), "emptyDir") == nil {
					continue
				}
				for _, m := range path(podSpec["containers"].([]any)[0].(map[string]any), "volumeMounts").([]any) {
					if path(m.(map[string]any), "name") == path(v.(map[string]any), "name") {
						spec.Mounts = append(spec.Mounts, testenv.Mount{Source: testenv.PodVolume(t, nil),
							Destination: fmt.Sprint(path(m.(map[string]any), "mountPath"))})
					}
				}
			}
			out, err := testenv.RunContainerCommand(t, ctx, spec)
			if err != nil {
				t.Fatalf("portcullis --check-config in the container: %v\n%s\nconfiguration file:\n%s", err, out, cfg)
			}
			// The first route is the Kubernetes one, in the pod's cluster.
			if want := " → https://10.96.0.1:443\n      kubernetes in-cluster (the pod's cluster; "; !strings.Contains(out, want) {
				t.Errorf("portcullis --check-config: the Kubernetes route does not reach the pod's cluster (%q):\n%s", want, out)
			}
			if !strings.Contains(out, tc.wantSessions) {
				t.Errorf("portcullis --check-config: got\n%s\nwant a line %q", out, tc.wantSessions)
			}
			if strings.Contains(out, dbPassword) {
				t.Errorf("portcullis --check-config prints the database's password:\n%s", out)
			}
			// A warning, such as a host the certificate does not name,
			// is something the chart should have got right.
			if strings.Contains(out, "warning:") {
				t.Errorf("portcullis --check-config warns:\n%s", out)
			}
			t.Logf("portcullis --check-config:\n%s", out)
		})
	}
}

// TestAPIServer has a real kube-apiserver admit what the chart renders,
// into a namespace that enforces the restricted Pod Security Standard, and
// installs and upgrades the chart with Helm against it to see the
// generated secrets kept.
func TestAPIServer(t *testing.T) {
	h := newHelm(t)
	cluster := testenv.NewCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	kubectl := func(stdin string, args ...string) (string, string) {
		t.Helper()
		out, errOut, err := cluster.Kubectl(ctx, strings.NewReader(stdin), args...)
		if err != nil {
			t.Fatal(err)
		}
		return out, errOut
	}

	// The CustomResourceDefinitions of the kinds the chart renders beyond
	// Kubernetes's own, from the operators' pinned releases, so that the
	// API server checks a Certificate and a ServiceMonitor against their
	// real schemas. create, not apply: the Prometheus Operator's CRDs are
	// too large for apply's last-applied annotation.
	for _, crd := range []struct{ tool, file string }{
		{testenv.CertManagerCRDs, "cert-manager.io_certificates.yaml"},
		{testenv.PrometheusOperatorCRDs, "monitoring.coreos.com_servicemonitors.yaml"},
		{testenv.PrometheusOperatorCRDs, "monitoring.coreos.com_prometheusrules.yaml"},
	} {
		kubectl("", "create", "-f", filepath.Join(testenv.ToolPath(t, crd.tool), crd.file))
	}
	kubectl("", "wait", "--for=condition=Established", "--timeout=60s", "crd/certificates.cert-manager.io",
		"crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")
	// Where the full values put the Grafana dashboard's ConfigMap, for a
	// sidecar that searches only its own namespace.
	kubectl(`{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}}`, "create", "-f", "-")

	for _, tc := range []struct {
		name, namespace, deployment string
		args                        []string
	}{
		{"default values", "portcullis", "portcullis", nil},
		{"full values", "edge", "edge-proxy", []string{"-f", fullValues}},
	} {
		t.Run(tc.name+" admitted in a restricted namespace", func(t *testing.T) {
			// warn as well as enforce: Pod Security admission enforces on
			// pods only, and tells of a workload's pod template in a warning.
			kubectl(fmt.Sprintf(`{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": %q, "labels": {
				"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}}}`,
				tc.namespace), "create", "-f", "-")
			rendered := h.template(t, "portcullis", tc.namespace, tc.args...)
			if _, errOut := kubectl(rendered, "apply", "--dry-run=server", "-f", "-"); strings.Contains(errOut, "Warning") {
				t.Errorf("kubectl apply --dry-run=server: warnings:\n%s", errOut)
			}
			// Then for real, so that the ServiceAccount a pod names exists.
			// Nothing runs: this cluster has no controllers and no nodes.
			kubectl(rendered, "apply", "-f", "-")

			// A pod of the Deployment's template, which enforcement checks.
			objs := objects(t, rendered)
			tmpl, _ := path(object(t, objs, "Deployment"), "spec", "template").(map[string]any)
			pod := func(mutate func(spec map[string]any)) string {
				b, err := json.Marshal(tmpl)
				if err != nil {
					t.Fatal(err)
				}
				var p map[string]any
				json.Unmarshal(b, &p) // a deep copy
				p["apiVersion"], p["kind"] = "v1", "Pod"
				p["metadata"].(map[string]any)["name"] = tc.deployment + "-pod"
				mutate(p["spec"].(map[string]any))
				b, _ = json.Marshal(p)
				return string(b)
			}
			if _, errOut := kubectl(pod(func(map[string]any) {}), "create", "--dry-run=server", "-n", tc.namespace, "-f", "-"); strings.Contains(errOut, "Warning") {
				t.Errorf("a pod of the Deployment's template: warnings:\n%s", errOut)
			}
			// Without the chart's security context the same pod is refused:
			// the namespace does enforce.
			loose := pod(func(spec map[string]any) {
				delete(spec["containers"].([]any)[0].(map[string]any), "securityContext")
			})
			_, errOut, err := cluster.Kubectl(ctx, strings.NewReader(loose), "create", "--dry-run=server", "-n", tc.namespace, "-f", "-")
			if err == nil || !strings.Contains(errOut, `violates PodSecurity "restricted`) {
				t.Errorf("a pod without the container's securityContext: got %v (%s), want it refused by PodSecurity", err, errOut)
			}
		})
	}

	t.Run("generated secrets kept across upgrades", func(t *testing.T) {
		// A release of its own: the cluster-scoped role of the release
		// above is not this one's to take over.
		const ns, release = "generated", "sessions"
		helmCluster := func(args ...string) {
			t.Helper()
			if out, _, err := h.run(ctx, append(args, "--kubeconfig", cluster.Kubeconfig)...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		secrets := func() string {
			t.Helper()
			out, _ := kubectl("", "get", "secret", "-n", ns, release+"-portcullis-generated", "-o", "jsonpath={.data}")
			return out
		}
		helmCluster("install", release, chartDir, "--namespace", ns, "--create-namespace")
		installed := secrets()
		if !strings.Contains(installed, "cookie-secret") || !strings.Contains(installed, "shared-secret") {
			t.Fatalf("after helm install: the generated Secret holds %s, want cookie-secret and shared-secret", installed)
		}
		helmCluster("upgrade", release, chartDir, "--namespace", ns, "--set", "config.log_level=debug")
		if got := secrets(); got != installed {
			t.Errorf("after helm upgrade: the generated secrets changed from %s to %s", installed, got)
		}
		// helm template cannot look them up: each rendering makes new ones,
		// as the README says.
		a := object(t, objects(t, h.template(t, release, ns)), "Secret")
		b := object(t, objects(t, h.template(t, release, ns)), "Secret")
		if cmp.Equal(a["data"], b["data"]) {
			t.Errorf("two helm template runs rendered the same generated secrets %v", a["data"])
		}
	})
}

// manifests are the files of deploy/kubernetes rendered from the chart,
// each with the templates it holds and a header for people who apply it
// without Helm. deploy/kubernetes/user-binding.yaml is not among them: it
// is an example of granting a person rights, which is the cluster admin's
// decision about people, not part of installing Portcullis.
var manifests = []struct {
	file      string
	templates []string
	header    string
}{
	{"service-account.yaml", []string{"templates/serviceaccount.yaml"}, ""},
	{"portcullis.yaml", []string{"templates/configmap.yaml", "templates/deployment.yaml", "templates/service.yaml",
		"templates/poddisruptionbudget.yaml"}, `# Portcullis inside the cluster it protects, in the default namespace.
# Apply service-account.yaml first. Create the secrets it reads, e.g.:
#
#   kubectl -n default create secret tls portcullis-tls --cert=tls.crt --key=tls.key
#   kubectl -n default create secret generic portcullis-secrets \
#     --from-literal=cookie-secret=$(head -c32 /dev/urandom | base64) \
#     --from-literal=shared-secret=$(head -c32 /dev/urandom | base64) \
#     --from-literal=idp-client-secret=REPLACE_ME
#
# and edit the ConfigMap below for your host names and identity provider,
# or install the Helm chart, which takes them as values.
`},
}

// TestManifestsUpToDate fails when deploy/kubernetes differs from what the
// chart renders, or deploy/grafana from the chart's dashboard; go test
// ./deploy/helm -run TestManifestsUpToDate -update (make manifests)
// rewrites them.
func TestManifestsUpToDate(t *testing.T) {
	h := newHelm(t)
	for _, m := range manifests {
		args := []string{"-f", manifestValues}
		for _, tmpl := range m.templates {
			args = append(args, "--show-only", tmpl)
		}
		// helm template --show-only ends each object with two blank lines.
		rendered := strings.TrimSpace(regexp.MustCompile(`\n{3,}`).ReplaceAllString(
			h.template(t, "portcullis", "default", args...), "\n\n"))
		want := "# Rendered from the Helm chart in deploy/helm/portcullis with the values in\n" +
			"# deploy/helm/kubernetes-values.yaml by `make manifests`: change those and\n" +
			"# run it, not this file.\n" + m.header + rendered + "\n"
		file := filepath.Join("..", "kubernetes", m.file)
		if *update {
			if err := os.WriteFile(file, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(strings.Split(want, "\n"), strings.Split(string(got), "\n")); diff != "" {
			t.Errorf("deploy/kubernetes/%s is not what the chart renders: run make manifests (-rendered +file):\n%s", m.file, diff)
		}
	}

	// deploy/grafana holds a copy of the chart's dashboard, for importing
	// into Grafana by hand: the chart can only read its own files, so the
	// chart's is the one to edit.
	want, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(dashboardCopy, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got, err := os.ReadFile(dashboardCopy); err != nil {
		t.Fatal(err)
	} else if !bytes.Equal(got, want) {
		t.Errorf("deploy/grafana/portcullis.json is not a copy of deploy/helm/portcullis/dashboards/portcullis.json: edit the chart's and run make manifests")
	}
}

// TestSettingsCovered checks the chart against every setting and route
// key of the configuration reference: each is set by the chart, open to
// the values (values.schema.json lists it), or deliberately left out, for
// the reason given here. A new setting fails this test until the chart
// decides which.
func TestSettingsCovered(t *testing.T) {
	h := newHelm(t)
	ref, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	section := func(title string) string {
		s := string(ref)
		i := strings.Index(s, "\n## "+title+"\n")
		if i < 0 {
			t.Fatalf("docs/configuration.md: no section %q", title)
		}
		s = s[i+1:]
		if j := strings.Index(s[1:], "\n## "); j >= 0 {
			s = s[:j+1]
		}
		return s
	}
	keysIn := func(re string, s string) []string {
		var keys []string
		for _, m := range regexp.MustCompile(`(?m)`+re).FindAllStringSubmatch(s, -1) {
			keys = append(keys, m[1])
		}
		slices.Sort(keys)
		return keys
	}
	// | [`ADDRESS`](#address) | `address` | `:443` |
	topLevel := keysIn("^\\| \\[`[A-Z_]+`\\]\\(#[a-z_0-9-]+\\) \\| `([a-z_]+)` \\|", section("Top-level settings"))
	// | [`from`](#from) | none: required |
	routeKeys := keysIn("^\\| \\[`([a-z_]+)`\\]\\(#[a-z_0-9-]+\\) \\|", section("Route keys"))
	if len(topLevel) < 20 || len(routeKeys) < 20 {
		t.Fatalf("docs/configuration.md: found %d settings and %d route keys; has the table format changed?", len(topLevel), len(routeKeys))
	}

	var schema struct {
		Properties map[string]struct {
			Properties map[string]struct {
				Properties map[string]any
			}
			Items struct{ Properties map[string]any }
		}
	}
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	// What the chart writes itself, read from what it renders: the
	// top-level keys (a _file key is its setting's file form), and the
	// Kubernetes route's.
	set := map[string]any{}
	route := map[string]any{}
	for _, args := range [][]string{{"-f", fullValues}, {"--set", "insecureServer=true"}} {
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(configFile(t, objects(t, h.template(t, "portcullis", "default", args...)))), &cfg); err != nil {
			t.Fatal(err)
		}
		for k := range cfg {
			if !slices.Contains(topLevel, k) {
				k = strings.TrimSuffix(k, "_file")
			}
			set[k] = true
		}
		for k := range cfg["routes"].([]any)[0].(map[string]any) {
			route[k] = true
		}
	}
	for k := range schema.Properties["config"].Properties {
		delete(set, k) // given in the full values' config
	}
	for k := range schema.Properties["kubernetesRoute"].Properties["settings"].Properties {
		delete(route, k)
	}

	check := func(what string, reference []string, groups map[string][]string) {
		t.Helper()
		seen := map[string]string{}
		for group, keys := range groups {
			for _, k := range keys {
				if g, ok := seen[k]; ok {
					t.Errorf("%s: %s is both %s and %s", what, k, g, group)
				}
				seen[k] = group
				if !slices.Contains(reference, k) {
					t.Errorf("%s: %s (%s) is not in docs/configuration.md", what, k, group)
				}
			}
		}
		for _, k := range reference {
			if _, ok := seen[k]; !ok {
				t.Errorf("%s: %s, in docs/configuration.md, is neither set by the chart, in values.schema.json, nor left out in this test with a reason", what, k)
			}
		}
	}
	check("top-level settings", topLevel, map[string][]string{
		"set by the chart":            mapKeys(set),
		"in values.config":            mapKeys(schema.Properties["config"].Properties),
		"left out: a secret":          {"signing_key"},                             // derived from SHARED_SECRET; a ConfigMap is no place for it
		"left out: built-in provider": {"idp_users_file", "idp_builtin_token_ttl"}, // its users file would have to be mounted
		"left out: legacy":            {"policy"},                                  // the chart writes routes
	})
	check("the Kubernetes route's keys", routeKeys, map[string][]string{
		"set by the chart":                   mapKeys(route),
		"in values.kubernetesRoute.settings": mapKeys(schema.Properties["kubernetesRoute"].Properties["settings"].Properties),
		// How the route reaches the cluster is portcullis.kubernetesUpstream's:
		// in-cluster mode, which sets the address, CA and token itself.
		"left out: the upstream is the chart's": {"to", "tls_skip_verify", "tls_server_name", "tls_custom_ca", "tls_custom_ca_file",
			"tls_client_cert", "tls_client_cert_file", "tls_client_key", "tls_client_key_file",
			"kubernetes_service_account_token", "kubernetes_service_account_token_file"},
	})
	check("further routes' keys", routeKeys, map[string][]string{
		"in values.routes":   mapKeys(schema.Properties["routes"].Items.Properties),
		"left out: a secret": {"tls_client_key", "kubernetes_service_account_token"}, // a ConfigMap is no place for one
	})
}

func mapKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
