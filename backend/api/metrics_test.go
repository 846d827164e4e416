package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func labels(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

func TestRequestMetricsAreLabelledWithTheRoutePattern(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newAlertFixture(t, func(o *Options) { o.Registerer, o.Gatherer = reg, reg })
	for _, c := range []struct{ method, path, token string }{
		{"GET", "/rules", "tok-a"},
		{"GET", "/rules", "tok-a"},
		{"GET", "/rules/r0000000000000001", "tok-a"},
		{"GET", "/rules/r0000000000000002", "tok-a"},
		{"GET", "/outbox", ""},
		{"GET", "/no/such/path/1", "tok-a"},
		{"GET", "/no/such/path/2", "tok-a"},
		{"DELETE", "/outbox", "tok-a"},
	} {
		send(t, c.method, f.url+c.path, c.token, "")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}

	reqs := byName["keyalert_http_requests_total"]
	if reqs == nil || reqs.GetType() != dto.MetricType_COUNTER {
		t.Fatalf("no counter keyalert_http_requests_total in %v", mfs)
	}
	got := map[string]float64{}
	for _, m := range reqs.GetMetric() {
		l := labels(m)
		if len(l) != 3 {
			t.Errorf("labels %v, want route, method and code", l)
		}
		got[l["route"]+" "+l["method"]+" "+l["code"]] = m.GetCounter().GetValue()
	}
	want := map[string]float64{
		"/api/v1/rules GET 200":      2,
		"/api/v1/rules/{id} GET 404": 2,
		"/api/v1/outbox GET 401":     1,
		"other GET 404":              2,
		"other DELETE 405":           1,
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("requests %q = %v, want %v (all: %v)", k, got[k], n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("series %v, want exactly %v", got, want)
	}

	dur := byName["keyalert_http_request_duration_seconds"]
	if dur == nil || dur.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("no histogram keyalert_http_request_duration_seconds in %v", mfs)
	}
	var total uint64
	for _, m := range dur.GetMetric() {
		l := labels(m)
		if _, hasCode := l["code"]; len(l) != 2 || hasCode || l["route"] == "" || l["method"] == "" {
			t.Errorf("duration labels %v, want route and method", l)
		}
		total += m.GetHistogram().GetSampleCount()
	}
	if total != 8 {
		t.Errorf("duration samples %d, want 8", total)
	}
}

func TestTwoRoutersOnOneRegistryShareTheRequestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	newAlertFixture(t, func(o *Options) { o.Registerer = reg })
	newAlertFixture(t, func(o *Options) { o.Registerer = reg })
}

func TestMetricsServesTheGatherer(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newAlertFixture(t, func(o *Options) { o.Registerer, o.Gatherer = reg, reg })
	send(t, http.MethodGet, f.url+"/rules", "tok-a", "")
	resp, body := send(t, http.MethodGet, strings.TrimSuffix(f.url, "/api/v1")+"/metrics", "", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `keyalert_http_requests_total{code="200",method="GET",route="/api/v1/rules"} 1`) {
		t.Fatalf("/metrics: %d\n%s", resp.StatusCode, body)
	}
}
