package gateway

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/fedgate/fedgate/cluster"
)

// The Grafana dashboard and the Prometheus alert rules in packaging/ are
// written against fedgate's metric names; these tests keep them true when
// a metric is renamed or removed.

const (
	dashboardFile  = "../packaging/grafana/fedgate.json"
	alertsFile     = "../packaging/prometheus/alerts.yml"
	alertTestsFile = "../packaging/prometheus/alerts_test.yml"
)

// exportedMetrics returns every metric name /metrics can serve:
// fedgate's own (with _bucket, _sum and _count for histograms), cluster
// mode's and the Go runtime and process collectors'; and the labels of
// each fedgate_ metric. A vector with no series yet is absent from a
// scrape, so the names and labels come from the registrations, not from
// one scrape.
func exportedMetrics(t *testing.T) (names map[string]bool, labels map[string][]string) {
	t.Helper()
	m := newMetrics(newStateCollector(&Gateway{}), "test")
	// Cluster mode's metrics are registered only with [cluster]. A client
	// for an address nobody listens on (New does not connect) serves
	// them all, histograms with their series.
	cl, err := cluster.New(cluster.Options{URL: "redis://127.0.0.1:1/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	names, labels = map[string]bool{}, map[string][]string{}
	desc := regexp.MustCompile(`^Desc\{fqName: "([^"]+)".*, variableLabels: \{([^}]*)\}\}$`)
	for _, c := range append(m.own, cl.Collector()) {
		ch := make(chan *prometheus.Desc, 256)
		c.Describe(ch)
		close(ch)
		_, histogram := c.(*prometheus.HistogramVec)
		for d := range ch {
			fields := desc.FindStringSubmatch(d.String())
			if fields == nil {
				t.Fatalf("cannot read %s", d)
			}
			name := fields[1]
			names[name] = true
			labels[name] = strings.FieldsFunc(fields[2], func(r rune) bool { return r == ',' })
			if histogram {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					names[name+suffix] = true
				}
			}
		}
	}
	families, err := m.registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "fedgate_") {
			names[f.GetName()] = true
		}
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(cl.Collector())
	if families, err = reg.Gather(); err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+suffix] = true
			}
		}
	}
	if !names["fedgate_cluster_redis_up"] || !names["fedgate_cluster_rate_limit_round_trip_seconds_bucket"] ||
		len(labels["fedgate_upstream_member_errors_total"]) == 0 || len(labels["fedgate_cluster_redis_calls_total"]) == 0 {
		t.Fatal("the registrations lack fedgate_cluster_* metrics or labels")
	}
	return names, labels
}

// metricRef finds metric names in PromQL: fedgate's, the process
// collector's and the Go runtime's.
var metricRef = regexp.MustCompile(`\b(?:fedgate|process|go)_[a-z0-9_]+\b`)

// promSelector finds a fedgate metric with its label matchers, and
// promGrouping a by, without, on or ignoring clause.
var (
	promSelector = regexp.MustCompile(`\b(fedgate_[a-z0-9_]+)\s*(?:\{([^}]*)\})?`)
	promMatcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring)\s*\(([^)]*)\)`)
)

// unknownLabels lists the labels expr selects or groups by that its
// fedgate metrics do not have: a selector's matchers must be labels of
// its metric, a grouping's labels of one of the expression's metrics.
// Prometheus's own job and instance, and le of a histogram's buckets,
// are always there.
func unknownLabels(expr string, labels map[string][]string) []string {
	var bad []string
	all := map[string]bool{"job": true, "instance": true, "le": true}
	for _, sel := range promSelector.FindAllStringSubmatch(expr, -1) {
		name := sel[1]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && labels[base] != nil {
				name = base
			}
		}
		have := map[string]bool{"job": true, "instance": true, "le": name != sel[1]}
		for _, l := range labels[name] {
			have[l], all[l] = true, true
		}
		for _, m := range promMatcher.FindAllStringSubmatch(sel[2], -1) {
			if !have[m[1]] {
				bad = append(bad, sel[1]+"{"+m[1]+"}")
			}
		}
	}
	for _, g := range promGrouping.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !all[l] {
				bad = append(bad, "("+l+")")
			}
		}
	}
	return bad
}

// dashboardExprs returns the PromQL of every panel target and template
// variable of the dashboard, by where it is.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out["dashboard panel "+strconv.Quote(p.Title)+" query "+tg.RefID] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		out["dashboard variable "+v.Name] = v.Definition
	}
	return out
}

// alertRules reads the alert rules file.
func alertRules(t *testing.T) []struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	Annotations map[string]string `yaml:"annotations"`
} {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var out []struct {
		Alert       string            `yaml:"alert"`
		Expr        string            `yaml:"expr"`
		Annotations map[string]string `yaml:"annotations"`
	}
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// TestDashboardAndAlertsUseExportedMetrics: every metric the dashboard's
// and the alert rules' PromQL names is one /metrics serves, and every
// label they select or group by is one of its labels.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	t.Parallel()
	exported, labels := exportedMetrics(t)
	check := func(where, expr string) int {
		refs := metricRef.FindAllString(expr, -1)
		for _, name := range refs {
			if !exported[name] {
				t.Errorf("%s uses %s, which fedgate does not export", where, name)
			}
		}
		for _, l := range unknownLabels(expr, labels) {
			t.Errorf("%s uses the label %s, which its metrics do not have", where, l)
		}
		return len(refs)
	}
	n := 0
	for where, e := range dashboardExprs(t) {
		n += check(where, e)
	}
	rules := alertRules(t)
	for _, r := range rules {
		if check("alert "+r.Alert, r.Expr) == 0 {
			t.Errorf("alert %s names no fedgate metric", r.Alert)
		}
		n++
	}
	if n < 40 || len(rules) < 6 {
		t.Fatalf("found only %d metric references and %d rules", n, len(rules))
	}
}

// TestAlertsCoverTheIssue: the rules include the alerts operators were
// promised, and each says what it means.
func TestAlertsCoverTheIssue(t *testing.T) {
	t.Parallel()
	have := map[string]bool{}
	for _, r := range alertRules(t) {
		have[r.Alert] = true
		if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("alert %s lacks a summary or description", r.Alert)
		}
	}
	for _, want := range []string{"FedgateCertificateExpiresSoon", "FedgateKeyFetchFailing", "FedgateHomeserverDown",
		"FedgateNotReady", "FedgateDenialSpike", "FedgateEgressBackoffGrowing",
		"FedgateRedisDown", "FedgatePolicyRoomNotSyncing", "FedgatePolicyRoomStale", "FedgatePolicyListSignerExpiresSoon"} {
		if !have[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

// TestDashboardImportable: the dashboard imports as it is: a datasource
// variable that every panel uses (no __inputs to map), unique panel ids,
// and a position for every panel.
func TestDashboardImportable(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	if _, ok := d["__inputs"]; ok {
		t.Error("the dashboard has __inputs: it would need mapping on import")
	}
	if d["uid"] == "" || d["title"] == "" {
		t.Error("no uid or title")
	}
	vars := map[string]map[string]any{}
	for _, v := range d["templating"].(map[string]any)["list"].([]any) {
		v := v.(map[string]any)
		vars[v["name"].(string)] = v
	}
	if ds := vars["datasource"]; ds == nil || ds["type"] != "datasource" || ds["query"] != "prometheus" {
		t.Fatalf("no prometheus datasource variable: %v", vars["datasource"])
	}
	ids := map[float64]bool{}
	var titles []string
	for _, p := range d["panels"].([]any) {
		p := p.(map[string]any)
		id := p["id"].(float64)
		if ids[id] {
			t.Errorf("panel id %v used twice", id)
		}
		ids[id] = true
		if _, ok := p["gridPos"].(map[string]any); !ok {
			t.Errorf("panel %v has no gridPos", p["title"])
		}
		if p["type"] == "row" {
			continue
		}
		titles = append(titles, p["title"].(string))
		uses := func(ds any) bool {
			m, ok := ds.(map[string]any)
			return ok && m["uid"] == "${datasource}"
		}
		if !uses(p["datasource"]) {
			t.Errorf("panel %q does not use the datasource variable", p["title"])
		}
		for _, tg := range p["targets"].([]any) {
			if !uses(tg.(map[string]any)["datasource"]) {
				t.Errorf("a query of panel %q does not use the datasource variable", p["title"])
			}
		}
	}
	sort.Strings(titles)
	all := strings.Join(titles, "\n")
	// What the issue asks the dashboard to show.
	for _, want := range []string{"endpoint class", "Denials by reason", "duration", "Homeserver", "Pool members", "Key", "Certificate", "Egress", "Rate limiting",
		"Policy rooms up", "Policy room ban rules", "Policy room last sync", "Federation list version", "List signer", "Federation list stale",
		"Redis up", "Redis errors", "fallbacks", "Redis round trip"} {
		if !strings.Contains(all, want) {
			t.Errorf("no panel about %q among:\n%s", want, all)
		}
	}
}

// TestAlertRulesPromtool checks the rules and runs their unit tests with
// promtool (Debian's prometheus package). CI sets
// FEDGATE_REQUIRE_PROMTOOL=1; elsewhere the test skips without promtool.
func TestAlertRulesPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("FEDGATE_REQUIRE_PROMTOOL") == "1" {
			t.Fatal("FEDGATE_REQUIRE_PROMTOOL=1 but promtool is not installed (apt-get install prometheus)")
		}
		t.Skip("promtool not installed (apt-get install prometheus); set FEDGATE_REQUIRE_PROMTOOL=1 to require it")
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../packaging/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
