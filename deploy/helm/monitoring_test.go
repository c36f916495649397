package helm_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	// The dashboard, in the chart so that its ConfigMap can read it.
	dashboardFile = chartDir + "/dashboards/portcullis.json"
	// Its copy for importing by hand, kept equal by TestManifestsUpToDate.
	dashboardCopy = "../grafana/portcullis.json"
)

// declaredMetrics reads the series Portcullis exports from its own source
// in internal/: each portcullis_ name with its label names, from a
// client_golang CounterOpts, GaugeOpts or HistogramOpts (Name, Help,
// perhaps comments and Buckets, then the *Vec's labels) or a NewDesc. A
// histogram is its series, _bucket (with le), _sum and _count.
func declaredMetrics(t *testing.T) map[string][]string {
	t.Helper()
	const help = `(?:"(?:[^"\\]|\\.)*"\s*\+?\s*)+`
	opts := regexp.MustCompile(`(\w+)Opts\{\s*Name:\s*"(portcullis_[a-z_]+)",\s*Help:\s*` + help + `,?(?:\s*//[^\n]*|\s*Buckets:[^\n]*)*\s*\}\s*(?:,\s*\[\]string\{([^}]*)\})?`)
	desc := regexp.MustCompile(`New(Desc)\(\s*"(portcullis_[a-z_]+)",\s*` + help + `,\s*(?:\[\]string\{([^}]*)\}|nil)`)
	metrics := map[string][]string{}
	err := filepath.WalkDir("../../internal", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, re := range []*regexp.Regexp{opts, desc} {
			for _, m := range re.FindAllStringSubmatch(string(src), -1) {
				var labels []string
				for l := range strings.SplitSeq(m[3], ",") {
					if l = strings.Trim(strings.TrimSpace(l), `"`); l != "" {
						labels = append(labels, l)
					}
				}
				switch name := m[2]; m[1] {
				case "Histogram":
					metrics[name+"_bucket"] = append(slices.Clip(labels), "le")
					metrics[name+"_sum"], metrics[name+"_count"] = labels, labels
				case "Summary":
					metrics[name] = append(slices.Clip(labels), "quantile")
					metrics[name+"_sum"], metrics[name+"_count"] = labels, labels
				default:
					metrics[name] = labels
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A few known ones, so that a change of how metrics are declared
	// fails here rather than letting every name through.
	for name, labels := range map[string][]string{
		"portcullis_http_requests_total":                  {"route", "code", "method"},
		"portcullis_http_request_duration_seconds_bucket": {"route", "method", "le"},
		"portcullis_http_request_duration_seconds_count":  {"route", "method"},
		"portcullis_streams_open":                         {"kind"},
		"portcullis_token_cache_hits_total":               nil,
		"portcullis_store_operation_seconds_sum":          {"operation"},
		"portcullis_audit_events_dropped_total":           {"sink", "reason"},
	} {
		got, ok := metrics[name]
		if !ok {
			t.Fatalf("internal/: found no declaration of %s among %d metrics; has the way metrics are declared changed?", name, len(metrics))
		}
		if diff := cmp.Diff(labels, got); diff != "" {
			t.Fatalf("internal/: the labels of %s (-want +got):\n%s", name, diff)
		}
	}
	return metrics
}

// targetLabels are the labels Prometheus adds to every series it scrapes
// through a ServiceMonitor.
var targetLabels = []string{"job", "instance", "namespace", "pod", "service", "endpoint", "container"}

var (
	metricName = regexp.MustCompile(`\bportcullis_[a-z_]+`)
	// Label names in a selector, a by or without clause, or a Go template
	// ({{route}} in a legend, {{ $labels.route }} in an alert).
	selector    = regexp.MustCompile(`\{([^{}]*)\}`)
	matcher     = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	grouping    = regexp.MustCompile(`\b(?:by|without|on|ignoring)\s*\(([^)]*)\)`)
	legendLabel = regexp.MustCompile(`\{\{\s*(?:\$labels\.)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
)

// checkQuery checks that query reads only series internal/ declares, and
// only their labels: every portcullis_ name (a histogram's _bucket, _sum
// or _count, not its bare name) must be declared, and every label it
// selects or groups by, or that legends show, must be one of theirs or a
// target's. Queries of the Go and process collectors' metrics alone are
// the client library's, not checked here.
func checkQuery(errorf func(format string, args ...any), declared map[string][]string, where, query string, legends ...string) {
	names := metricName.FindAllString(query, -1)
	if len(names) == 0 {
		if !regexp.MustCompile(`\b(go|process)_[a-z_]+`).MatchString(query) {
			errorf("%s: %q reads no Portcullis metric", where, query)
		}
		return
	}
	allowed := slices.Clone(targetLabels)
	for _, n := range names {
		labels, ok := declared[n]
		if !ok {
			errorf("%s: %s is not a metric Portcullis declares in internal/", where, n)
			continue
		}
		allowed = append(allowed, labels...)
	}
	var used []string
	for _, m := range selector.FindAllStringSubmatch(query, -1) {
		for _, l := range matcher.FindAllStringSubmatch(m[1], -1) {
			used = append(used, l[1])
		}
	}
	for _, m := range grouping.FindAllStringSubmatch(query, -1) {
		for l := range strings.SplitSeq(m[1], ",") {
			used = append(used, strings.TrimSpace(l))
		}
	}
	for _, legend := range legends {
		for _, m := range legendLabel.FindAllStringSubmatch(legend, -1) {
			used = append(used, m[1])
		}
	}
	for _, l := range used {
		if l != "" && !slices.Contains(allowed, l) {
			errorf("%s: %q uses the label %s, which none of %v has", where, query, l, names)
		}
	}
}

// TestCheckQuery: the check refuses what it is there to refuse.
func TestCheckQuery(t *testing.T) {
	declared := map[string][]string{
		"portcullis_requests_total":          {"route", "code"},
		"portcullis_duration_seconds_bucket": {"route", "le"},
		"portcullis_connections_open":        nil,
		"portcullis_store_errors_total":      {"operation"},
	}
	for _, tc := range []struct {
		query, legend string
		want          []string
	}{
		{`sum by (route, code) (rate(portcullis_requests_total{job=~"$job", route=~"$route"}[5m]))`, "{{code}} {{route}}", nil},
		{`histogram_quantile(0.99, sum by (route, le) (rate(portcullis_duration_seconds_bucket{job=~"$job"}[5m])))`, "p99 {{route}}", nil},
		{`rate(process_cpu_seconds_total{job=~"$job"}[5m])`, "{{instance}}", nil},
		{`rate(portcullis_request_total[5m])`, "", []string{"portcullis_request_total is not a metric"}},
		{`rate(portcullis_connections_open_bucket[5m])`, "", []string{"portcullis_connections_open_bucket is not a metric"}},
		{`sum by (le) (rate(portcullis_requests_total[5m]))`, "", []string{"the label le"}},
		{`sum by (method) (rate(portcullis_requests_total[5m]))`, "", []string{"the label method"}},
		{`portcullis_connections_open{route="a"}`, "", []string{"the label route"}},
		{`sum(rate(portcullis_store_errors_total[5m]))`, "{{ $labels.op }}", []string{"the label op"}},
		{`up`, "", []string{"reads no Portcullis metric"}},
	} {
		var got []string
		checkQuery(func(format string, args ...any) { got = append(got, fmt.Sprintf(format, args...)) }, declared, "q", tc.query, tc.legend)
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %q, want %d errors %q", tc.query, got, len(tc.want), tc.want)
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(got[i], w) {
				t.Errorf("%s: got %q, want it to say %q", tc.query, got[i], w)
			}
		}
	}
}

// TestDashboard checks the Grafana dashboard: Grafana's JSON model, with a
// Prometheus data source variable that every panel and query uses, and
// queries of metrics and labels Portcullis really has.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type datasource struct{ Type, UID string }
	type target struct {
		RefID        string `json:"refId"`
		Expr         string
		LegendFormat string `json:"legendFormat"`
		Datasource   *datasource
	}
	type panel struct {
		ID          int
		Type, Title string
		Datasource  *datasource
		Targets     []target
		Panels      []json.RawMessage // a row's, when collapsed
		GridPos     struct{ H, W, X, Y int }
	}
	var dash struct {
		ID            *int
		UID, Title    string
		SchemaVersion int
		Panels        []panel
		Templating    struct {
			List []struct {
				Name, Type, Definition string
				Query                  any
				Datasource             *datasource
			}
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.UID != "portcullis" || dash.ID != nil || dash.SchemaVersion < 39 {
		t.Errorf("dashboard: uid %q, id %v, schemaVersion %d; want uid portcullis, id null (Grafana assigns it), schemaVersion 39 or later",
			dash.UID, dash.ID, dash.SchemaVersion)
	}

	vars := map[string]string{}
	for _, v := range dash.Templating.List {
		switch v.Type {
		case "datasource":
			vars[v.Name] = "datasource " + v.Query.(string)
		case "query":
			if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
				t.Errorf("dashboard variable %s: data source %v, want ${datasource}", v.Name, v.Datasource)
			}
			vars[v.Name] = v.Definition
		}
	}
	if diff := cmp.Diff(map[string]string{
		"datasource": "datasource prometheus",
		"job":        "label_values(portcullis_http_requests_total, job)",
		"route":      "label_values(portcullis_http_requests_total, route)",
	}, vars); diff != "" {
		t.Errorf("dashboard variables (-want +got):\n%s", diff)
	}

	declared := declaredMetrics(t)
	ids := map[int]string{}
	queries := 0
	for _, p := range dash.Panels {
		if prev, ok := ids[p.ID]; ok || p.ID == 0 {
			t.Errorf("dashboard: panels %q and %q have the id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v is not on Grafana's 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			if len(p.Panels) != 0 {
				t.Errorf("row %q: collapsed, with panels this test does not check", p.Title)
			}
			continue
		}
		if p.Datasource == nil || *p.Datasource != (datasource{"prometheus", "${datasource}"}) {
			t.Errorf("panel %q: data source %v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			if tg.Datasource == nil || *tg.Datasource != (datasource{"prometheus", "${datasource}"}) {
				t.Errorf("panel %q, query %s: data source %v, want the ${datasource} variable", p.Title, tg.RefID, tg.Datasource)
			}
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q, query %s: no expression", p.Title, tg.RefID)
				continue
			}
			checkQuery(t.Errorf, declared, "panel "+p.Title, tg.Expr, tg.LegendFormat)
		}
	}
	if queries < 20 {
		t.Errorf("dashboard: %d queries; has the panels' format changed?", queries)
	}

	// The chart's ConfigMap holds the file as it is, for Grafana's sidecar.
	h := newHelm(t)
	cm := map[string]any{}
	for _, o := range objects(t, h.template(t, "portcullis", "edge", "-f", fullValues)) {
		if o["kind"] == "ConfigMap" && path(o, "metadata", "name") == "edge-proxy-dashboard" {
			cm = o
		}
	}
	if got := path(cm, "data", "portcullis.json"); got != string(b) {
		t.Errorf("full values: the dashboard ConfigMap's portcullis.json is not %s", dashboardFile)
	}
	if got := path(cm, "metadata", "namespace"); got != "monitoring" {
		t.Errorf("full values: the dashboard ConfigMap's namespace is %v, want monitoring", got)
	}
	if got := path(cm, "metadata", "labels", "grafana_dashboard"); got != "1" {
		t.Errorf("full values: the dashboard ConfigMap's grafana_dashboard label is %v, want \"1\"", got)
	}
	if got := path(cm, "metadata", "annotations", "grafana_folder"); got != "Platform" {
		t.Errorf("full values: the dashboard ConfigMap's grafana_folder annotation is %v, want Platform", got)
	}
	// On by the value alone, with the sidecar's label by default.
	for _, o := range objects(t, h.template(t, "portcullis", "default", "--set", "metrics.grafanaDashboard.enabled=true")) {
		if o["kind"] == "ConfigMap" && path(o, "metadata", "name") == "portcullis-dashboard" {
			if path(o, "metadata", "labels", "grafana_dashboard") != "1" || path(o, "metadata", "namespace") != "default" {
				t.Errorf("metrics.grafanaDashboard.enabled: the ConfigMap's metadata is %v, want the label grafana_dashboard: \"1\" in the release's namespace", o["metadata"])
			}
			return
		}
	}
	t.Error("metrics.grafanaDashboard.enabled: no ConfigMap portcullis-dashboard")
}

// TestAlerts checks the PrometheusRule: the alerts the README names, on
// metrics and labels Portcullis has, scoped to the release's metrics
// Service, and the configuration reload alert as docs/reload.md shows it.
func TestAlerts(t *testing.T) {
	h := newHelm(t)
	objs := objects(t, h.template(t, "portcullis", "edge", "-f", fullValues))
	rule := object(t, objs, "PrometheusRule")
	if got := path(rule, "metadata", "labels", "release"); got != "kube-prometheus-stack" {
		t.Errorf("full values: the PrometheusRule's release label is %v, want kube-prometheus-stack", got)
	}
	type alert struct {
		Alert, Expr, For string
		Labels           map[string]string
		Annotations      map[string]string
	}
	var spec struct {
		Groups []struct {
			Name  string
			Rules []alert
		}
	}
	b, _ := json.Marshal(rule["spec"])
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	declared := declaredMetrics(t)
	alerts := map[string]alert{}
	for _, g := range spec.Groups {
		for _, a := range g.Rules {
			alerts[a.Alert] = a
			checkQuery(t.Errorf, declared, "alert "+a.Alert, a.Expr, a.Annotations["summary"], a.Annotations["description"])
			for _, m := range metricName.FindAllStringIndex(a.Expr, -1) {
				if sel := `{namespace="edge", job="edge-proxy-metrics"`; !strings.HasPrefix(a.Expr[m[1]:], sel) {
					t.Errorf("alert %s: %s is not scoped to the release's metrics Service (%s})", a.Alert, a.Expr[m[0]:m[1]], sel)
				}
			}
			if a.Labels["severity"] == "" || a.Annotations["summary"] == "" || a.Annotations["description"] == "" {
				t.Errorf("alert %s: want a severity, a summary and a description", a.Alert)
			}
		}
	}
	var names []string
	for n := range alerts {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"PortcullisAuditEventsDropped", "PortcullisConfigReloadFailed", "PortcullisSessionStoreErrors",
		"PortcullisUpstreamErrorsHigh"}; !slices.Equal(names, want) {
		t.Errorf("alerts: got %v, want %v", names, want)
	}

	// docs/reload.md's example is this alert, less the scoping.
	doc, err := os.ReadFile("../../docs/reload.md")
	if err != nil {
		t.Fatal(err)
	}
	reload := alerts["PortcullisConfigReloadFailed"]
	want := "- alert: PortcullisConfigReloadFailed\n  expr: " +
		strings.Replace(reload.Expr, `{namespace="edge", job="edge-proxy-metrics"}`, "", 1) + "\n  for: " + reload.For + "\n"
	if !strings.Contains(string(doc), want) {
		t.Errorf("docs/reload.md does not show the chart's alert:\n%s", want)
	}
	if reload.For != "5m" {
		t.Errorf("PortcullisConfigReloadFailed: for %q, want 5m", reload.For)
	}

	if slices.Contains(kinds(objects(t, h.template(t, "portcullis", "default"))), "PrometheusRule") {
		t.Error("default values: a PrometheusRule, which needs the Prometheus Operator's CRD")
	}
}
