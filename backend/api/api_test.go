package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// now is the fixed clock of these tests: 10:30:20 on 2024-05-01.
var now = time.Date(2024, 5, 1, 10, 30, 20, 0, time.UTC)

type fixture struct {
	srv *httptest.Server
	rdb *redis.Client
	kw  window.Keys
}

// storeOptions are Options with every store on rdb, the clock now and the
// logger log, and fresh metric registries.
func storeOptions(rdb redis.UniversalClient, now func() time.Time, log *slog.Logger) Options {
	rs := rules.NewStore(rdb, rules.Options{}, now, log)
	ob := outbox.New(rdb, outbox.Options{}, log)
	reg := prometheus.NewRegistry()
	return Options{
		Counts:     window.NewStore(rdb, stream.DefaultStream),
		Rules:      rs,
		Silences:   silence.NewStore(rdb, now, log),
		Alerts:     alert.NewStore(rdb, ob, alert.RuleKeys{Rules: rs}, now, log),
		Outbox:     ob,
		Gatherer:   reg,
		Registerer: reg,
		Logger:     log,
		Now:        now,
	}
}

func newFixture(t *testing.T, mutate func(o *Options)) *fixture {
	t.Helper()
	rdb := redistest.Start(t).Client()
	o := storeOptions(rdb, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	o.Tokens = []string{"tok-a", "tok-b"}
	o.Retention = 7 * 24 * time.Hour
	if mutate != nil {
		mutate(&o)
	}
	h, err := NewRouter(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(checked(t, h))
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, rdb: rdb, kw: window.NewKeys(stream.DefaultStream)}
}

func (f *fixture) count(t *testing.T, kwID string, minute time.Time, host, tag string, n int64) {
	t.Helper()
	if err := f.rdb.HIncrBy(context.Background(), f.kw.Window(kwID, minute.Unix()), window.Field(host, tag), n).Err(); err != nil {
		t.Fatal(err)
	}
}

// get calls path with token (none if "") and decodes the JSON answer.
func (f *fixture) get(t *testing.T, path, token string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%s: %v in %s", path, err, body)
		}
	}
	return resp.StatusCode
}

func minute(hh, mm int) time.Time { return time.Date(2024, 5, 1, hh, mm, 0, 0, time.UTC) }

func TestAuth(t *testing.T) {
	f := newFixture(t, nil)
	q := "/api/v1/counts?keyword=x&from=2024-05-01T10:00:00Z&to=2024-05-01T11:00:00Z"
	tests := []struct {
		name   string
		header string
		want   int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"wrong token", "Bearer nope", http.StatusUnauthorized},
		{"prefix of a token", "Bearer tok-", http.StatusUnauthorized},
		{"wrong scheme", "Basic tok-a", http.StatusUnauthorized},
		{"empty bearer", "Bearer ", http.StatusUnauthorized},
		{"first token", "Bearer tok-a", http.StatusOK},
		{"second token, scheme in lower case", "bearer tok-b", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, f.srv.URL+q, nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code := f.get(t, p, "", nil); code != http.StatusOK {
			t.Errorf("%s without a token: %d, want 200", p, code)
		}
	}
}

func TestNoTokensNeedsInsecureNoAuth(t *testing.T) {
	if _, err := NewRouter(storeOptions(nil, nil, nil)); err == nil {
		t.Fatal("NewRouter without tokens: want an error")
	}
	f := newFixture(t, func(o *Options) { o.Tokens, o.InsecureNoAuth = nil, true })
	if code := f.get(t, "/api/v1/counts?keyword=x&from=2024-05-01T10:00:00Z&to=2024-05-01T11:00:00Z", "", nil); code != http.StatusOK {
		t.Errorf("insecure: status %d, want 200", code)
	}
}

func TestCounts(t *testing.T) {
	f := newFixture(t, nil)
	f.count(t, "substring:Error", minute(10, 0), "web-1", "app", 2)
	f.count(t, "substring:Error", minute(10, 0), "web-2", "nginx", 3)
	f.count(t, "substring:Error", minute(10, 5), "web-1", "nginx", 4)
	f.count(t, "substring:Error", minute(11, 0), "web-1", "app", 100) // at "to": excluded
	f.count(t, "substring/i:error", minute(10, 0), "web-1", "app", 50)
	f.count(t, "word:Error", minute(10, 0), "web-1", "app", 60)

	tests := []struct {
		name  string
		query string
		want  []Point
		total int64
	}{
		{"all hosts and tags", "", []Point{{Minute: minute(10, 0), Count: 5}, {Minute: minute(10, 5), Count: 4}}, 9},
		{"one host", "&host=web-1", []Point{{Minute: minute(10, 0), Count: 2}, {Minute: minute(10, 5), Count: 4}}, 6},
		{"one tag", "&tag=nginx", []Point{{Minute: minute(10, 0), Count: 3}, {Minute: minute(10, 5), Count: 4}}, 7},
		{"host and tag", "&host=web-1&tag=app", []Point{{Minute: minute(10, 0), Count: 2}}, 2},
		{"unknown host", "&host=nope", []Point{}, 0},
		{"ignore case selects its own series", "&ignore_case=true", []Point{{Minute: minute(10, 0), Count: 50}}, 50},
		{"word match", "&match=word", []Point{{Minute: minute(10, 0), Count: 60}}, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got CountsResponse
			code := f.get(t, "/api/v1/counts?keyword=Error&from=2024-05-01T10:00:30Z&to=2024-05-01T11:00:00Z"+tt.query, "tok-a", &got)
			if code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			if got.Keyword != "Error" || got.Total != tt.total || !reflect.DeepEqual(got.Points, tt.want) {
				t.Errorf("got %+v, want points %v total %d", got, tt.want, tt.total)
			}
		})
	}
}

// TestCountsJSONShape pins the body; counted is false: no rule counts the
// series (its counts outlived the rule).
func TestCountsJSONShape(t *testing.T) {
	f := newFixture(t, nil)
	f.count(t, "substring:Error", minute(10, 0), "web-1", "app", 2)
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/api/v1/counts?keyword=Error&from=2024-05-01T10:00:00Z&to=2024-05-01T10:01:00Z", nil)
	req.Header.Set("Authorization", "Bearer tok-a")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := `{"keyword":"Error","id":"substring:Error","from":"2024-05-01T10:00:00Z","to":"2024-05-01T10:01:00Z","points":[{"minute":"2024-05-01T10:00:00Z","count":2}],"total":2,"counted":false}` + "\n"
	if string(body) != want {
		t.Errorf("body\n%s\nwant\n%s", body, want)
	}
}

func TestBadQueryParametersAre400NamingTheParameter(t *testing.T) {
	f := newFixture(t, nil)
	const ok = "keyword=x&from=2024-05-01T10:00:00Z&to=2024-05-01T11:00:00Z"
	tests := []struct {
		path  string
		param string
	}{
		{"/api/v1/counts?from=2024-05-01T10:00:00Z&to=2024-05-01T11:00:00Z", "keyword"},
		{"/api/v1/counts?keyword=x&to=2024-05-01T11:00:00Z", "from"},
		{"/api/v1/counts?keyword=x&from=yesterday&to=2024-05-01T11:00:00Z", "from"},
		{"/api/v1/counts?keyword=x&from=2024-05-01T10:00:00Z&to=2024-05-01", "to"},
		{"/api/v1/counts?keyword=x&from=2024-05-01T11:00:00Z&to=2024-05-01T10:00:00Z", "to"},
		{"/api/v1/counts?keyword=x&from=2024-01-01T00:00:00Z&to=2024-05-01T10:00:00Z", "to"},
		{"/api/v1/counts?" + ok + "&match=fuzzy", "match"},
		{"/api/v1/counts?" + ok + "&ignore_case=perhaps", "ignore_case"},
		{"/api/v1/counts?keyword=" + url.QueryEscape("((") + "&match=regex&from=2024-05-01T10:00:00Z&to=2024-05-01T11:00:00Z", "keyword"},
		{"/api/v1/counts?keyword=" + strings.Repeat("k", keyword.MaxTextLen+1) + "&from=2024-05-01T10:00:00Z&to=2024-05-01T11:00:00Z", "keyword"},
		{"/api/v1/counts/top", "keyword"},
		{"/api/v1/counts/top?keyword=x&window=soon", "window"},
		{"/api/v1/counts/top?keyword=x&window=30s", "window"},
		{"/api/v1/counts/top?keyword=x&window=4000h", "window"},
		{"/api/v1/counts/top?keyword=x&by=app.kubernetes.io%2Fname", "by"},
		{"/api/v1/counts/top?keyword=x&limit=0", "limit"},
		{"/api/v1/counts/top?keyword=x&limit=ten", "limit"},
		{"/api/v1/counts/top?keyword=x&match=exact", "match"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			var e Error
			if code := f.get(t, tt.path, "tok-a", &e); code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", code)
			}
			if len(e.Fields) != 1 || e.Fields[0].Field != tt.param || !strings.Contains(e.Error, tt.param) {
				t.Errorf("error %+v, want it to name %q", e, tt.param)
			}
		})
	}
}

func TestTop(t *testing.T) {
	f := newFixture(t, nil)
	f.count(t, "substring:Error", minute(10, 30), "web-1", "app", 5) // current minute
	f.count(t, "substring:Error", minute(10, 16), "web-2", "app", 7) // first minute of 15m
	f.count(t, "substring:Error", minute(10, 16), "web-3", "nginx", 7)
	f.count(t, "substring:Error", minute(10, 15), "web-4", "app", 99) // just outside 15m
	tests := []struct {
		query string
		items []TopItem
		total int64
	}{
		{"", []TopItem{{"web-2", 7}, {"web-3", 7}, {"web-1", 5}}, 19},
		{"&limit=1", []TopItem{{"web-2", 7}}, 19},
		{"&by=tag", []TopItem{{"app", 12}, {"nginx", 7}}, 19},
		{"&window=1m", []TopItem{{"web-1", 5}}, 5},
		{"&window=16m&by=tag", []TopItem{{"app", 111}, {"nginx", 7}}, 118},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			var got TopResponse
			if code := f.get(t, "/api/v1/counts/top?keyword=Error"+tt.query, "tok-b", &got); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			if !reflect.DeepEqual(got.Items, tt.items) || got.Total != tt.total {
				t.Errorf("items %v total %d, want %v total %d", got.Items, got.Total, tt.items, tt.total)
			}
			if !got.To.Equal(minute(10, 31)) {
				t.Errorf("to = %v, want the end of the current minute", got.To)
			}
		})
	}
}

func TestAlertingRoutesShareAuth(t *testing.T) {
	f := newFixture(t, nil)
	if code := f.get(t, "/api/v1/rules", "", nil); code != http.StatusUnauthorized {
		t.Errorf("rules without token: %d, want 401", code)
	}
	var got struct{ Rules []any }
	if code := f.get(t, "/api/v1/rules", "tok-a", &got); code != http.StatusOK || len(got.Rules) != 0 {
		t.Errorf("rules: %d %v", code, got)
	}
}

func TestReadyzReportsTheReason(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Ready = func(context.Context) error { return errors.New("consumer not running") }
	})
	var body map[string]string
	if code := f.get(t, "/readyz", "", &body); code != http.StatusServiceUnavailable || body["error"] != "consumer not running" {
		t.Errorf("readyz: %d %v", code, body)
	}
	if code := f.get(t, "/healthz", "", nil); code != http.StatusOK {
		t.Errorf("healthz: %d", code)
	}
}

func TestUnknownPathIsJSON404(t *testing.T) {
	f := newFixture(t, nil)
	var e Error
	if code := f.get(t, "/api/v1/nothing", "tok-a", &e); code != http.StatusNotFound || e.Error == "" {
		t.Errorf("got %d %+v", code, e)
	}
}

func TestTopWindowReadsDaysAndWeeks(t *testing.T) {
	f := newFixture(t, nil)
	f.count(t, "substring:Error", minute(10, 30), "web-1", "app", 5)
	for _, w := range []string{"1d", "1w", "1d12h", "2w", "90d"} {
		var got TopResponse
		if code := f.get(t, "/api/v1/counts/top?keyword=Error&window="+w, "tok-a", &got); code != http.StatusOK || got.Window != w || got.Total != 5 {
			t.Errorf("window=%s: %d %+v", w, code, got)
		}
	}
	var e Error
	if code := f.get(t, "/api/v1/counts/top?keyword=Error&window=91d", "tok-a", &e); code != http.StatusBadRequest || e.Fields[0].Field != "window" {
		t.Errorf("window=91d, over the hourly retention: %d %+v", code, e)
	}
}
