package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/api"
	"github.com/keyalert/keyalert/backend/config"
	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/logbuf"
	"github.com/keyalert/keyalert/harness/openapitest"
	"github.com/keyalert/keyalert/harness/pdreceiver"
)

// The end-to-end tests run the real plugin (.so) in flbhost, real
// redis-servers, keyalertd in-process (so a test can move its clock) or as
// the built binary, and pdreceiver validating every PagerDuty event.

// routingKey is a well-formed PagerDuty integration key for the tests.
const routingKey = "R0123456789abcdef0123456789ABCDE"

// clock is a settable clock for in-process servers.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// alertEnv is baseEnv plus fast alerting: 200ms evaluation ticks, 1s leases,
// retries from 50ms, pages to pdURL.
func alertEnv(redisURL, pdURL string) map[string]string {
	env := baseEnv(redisURL)
	for k, v := range map[string]string{
		"KEYALERT_PAGERDUTY_URL":      pdURL,
		"KEYALERT_PAGERDUTY_TIMEOUT":  "2s",
		"KEYALERT_EVAL_INTERVAL":      "200ms",
		"KEYALERT_LEASE_TTL":          "1s",
		"KEYALERT_OUTBOX_BACKOFF_MIN": "50ms",
		"KEYALERT_OUTBOX_BACKOFF_MAX": "400ms",
	} {
		env[k] = v
	}
	return env
}

// inproc is a whole keyalertd server running in the test process.
type inproc struct {
	*server
	addr string
	logs *logbuf.Buffer
}

// startInProc builds a server from env (as the binary reads its
// environment) with clock now (nil: the real one), runs it, and stops it
// when the test ends, checking that Run returns cleanly.
func startInProc(t testing.TB, env map[string]string, now func() time.Time) *inproc {
	t.Helper()
	cfg, err := config.Load(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &logbuf.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := newServer(cfg, serverOptions{Now: now, Log: log, WrapAPI: func(h http.Handler) http.Handler {
		return openapitest.MustLoad(t, api.OpenAPI()).Handler(t, h) // the browser's calls too
	}})
	if err != nil {
		t.Fatalf("newServer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	p := &inproc{server: s, addr: s.Addr(), logs: logs}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server %s: Run: %v", cfg.Ingest.Consumer, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("server %s did not stop 20s after its context ended", cfg.Ingest.Consumer)
		}
		if t.Failed() {
			out := logs.String()
			if len(out) > 30000 {
				out = "...\n" + out[len(out)-30000:]
			}
			t.Logf("keyalertd %s log:\n%s", cfg.Ingest.Consumer, out)
		}
	})
	return p
}

// apiClient is an HTTP client whose every exchange is checked against the
// API's OpenAPI description (harness/openapitest): a mismatch fails t,
// naming the operation.
func apiClient(t testing.TB) *http.Client {
	return openapitest.MustLoad(t, api.OpenAPI()).Client(t, &http.Client{Timeout: 10 * time.Second})
}

// call makes one API request; body is JSON-encoded unless it is a string.
func call(t testing.TB, addr, tok, method, path string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, "http://"+addr+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := apiClient(t).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return resp.StatusCode, out
}

// apiJSON makes a request with the test token, wants status and decodes the
// answer into out (if not nil).
func apiJSON(t testing.TB, addr, method, path string, body any, status int, out any) {
	t.Helper()
	got, raw := call(t, addr, token, method, path, body)
	if got != status {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, status, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
}

// ruleDoc is the part of a rule the tests read back.
type ruleDoc struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	PagerDuty struct {
		RoutingKey string `json:"routing_key"`
	} `json:"pagerduty"`
}

func createRule(t testing.TB, addr, body string) ruleDoc {
	t.Helper()
	var r ruleDoc
	apiJSON(t, addr, http.MethodPost, "/api/v1/rules", body, http.StatusCreated, &r)
	return r
}

// alertDoc is the part of an alert the tests read back.
type alertDoc struct {
	ID         string    `json:"id"`
	DedupKey   string    `json:"dedup_key"`
	State      string    `json:"state"`
	Group      string    `json:"group"`
	Count      int64     `json:"count"`
	FalseSince time.Time `json:"false_since"`
}

// metricValue reads one unlabelled sample from /metrics; ok is false when
// it is absent.
func metricValue(t testing.TB, addr, name string) (float64, bool) {
	t.Helper()
	status, raw := call(t, addr, "", http.MethodGet, "/metrics", nil)
	if status != http.StatusOK {
		t.Fatalf("/metrics: status %d", status)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s = %q", name, v)
			}
			return f, true
		}
	}
	return 0, false
}

// metricSum sums the series of metric family name whose labels include
// every one of labels (each written k="v"), and reports whether the family
// is exposed at all.
func metricSum(t testing.TB, addr, name string, labels ...string) (float64, bool) {
	t.Helper()
	status, raw := call(t, addr, "", http.MethodGet, "/metrics", nil)
	if status != http.StatusOK {
		t.Fatalf("/metrics: status %d", status)
	}
	var sum float64
	found := false
next:
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "# TYPE "+name+" ") {
			found = true
			continue
		}
		series, v, ok := strings.Cut(line, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(series, l) {
				continue next
			}
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("metric %s = %q", series, v)
		}
		sum += f
	}
	return sum, found
}

// eventually polls cond every 20ms until it holds, failing after d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEvents waits until the receiver accepted at least n events.
func waitEvents(t testing.TB, recv *pdreceiver.Server, n int, d time.Duration) []pdreceiver.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	evs, err := recv.WaitForN(ctx, n)
	if err != nil {
		t.Fatalf("pdreceiver: %v; events: %s", err, describe(evs))
	}
	return evs
}

func describe(evs []pdreceiver.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "\n  %s %s %s", e.Received.Format("15:04:05.000"), e.Action, e.DedupKey)
		if e.Payload != nil {
			fmt.Fprintf(&b, " %q", e.Payload.Summary)
		}
	}
	return b.String()
}

// noRejections fails if the receiver answered any event with 400: every
// event keyalertd sends must be a valid Events API v2 event.
func noRejections(t testing.TB, recv *pdreceiver.Server) {
	t.Helper()
	for _, r := range recv.Rejections() {
		t.Errorf("pdreceiver rejected an event: %v\n%s", r.Errors, r.Body)
	}
}

// pluginInstance starts an instance of the real plugin in h writing to
// redisURL, with cfg on top of a fixed hostname and a 1s Rules_Interval.
func pluginInstance(t testing.TB, h *flbhost.Host, inst, redisURL string, cfg map[string]string) {
	t.Helper()
	all := map[string]string{"Redis_URL": redisURL, "Hostname": "e2e-host", "Rules_Interval": "1s"}
	for k, v := range cfg {
		all[k] = v
	}
	if rc, err := h.Init(inst, all); err != nil || rc != flbhost.OK {
		t.Fatalf("init plugin instance %s: rc %d, %v", inst, rc, err)
	}
}

func flushOK(t testing.TB, h *flbhost.Host, inst, tag string, chunk []byte) {
	t.Helper()
	if rc, err := h.Flush(inst, tag, chunk); err != nil || rc != flbhost.OK {
		t.Fatalf("flush %s %s (%d bytes): rc %d, %v", inst, tag, len(chunk), rc, err)
	}
}

// waitKeywords waits until the plugin's log since mark says it follows
// n published keywords.
func waitKeywords(t testing.TB, h *flbhost.Host, mark, n int) {
	t.Helper()
	if !h.WaitLog(mark, "published="+strconv.Itoa(n)+" ", 15*time.Second) {
		t.Fatalf("the plugin did not pick up %d published keywords in 15s:\n%s", n, h.LogSince(mark))
	}
}

// customDetails is what keyalertd puts in a trigger's custom_details.
type customDetails struct {
	Count           int64            `json:"count"`
	Window          string           `json:"window"`
	CountsPerMinute map[string]int64 `json:"counts_per_minute"`
	SampleLines     []string         `json:"sample_lines"`
	Rule            struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"rule"`
}
