package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/harness/redistest"
)

// TestRedisOutOfMemoryIsNamed: with Redis at maxmemory (noeviction), API
// writes answer 503 naming the cause, reads still answer, the log names it
// once per interval and the refusals are counted.
func TestRedisOutOfMemoryIsNamed(t *testing.T) {
	rs := redistest.StartMaxMemory(t, 8<<20)
	srv := startInProc(t, alertEnv(rs.URL(), "http://127.0.0.1:9/v2/enqueue"), nil)
	ruleBody := `{"name": "x", "keywords": ["Exception"], "condition": {"type": "threshold", "count": 1, "window": "1m"},
		"pagerduty": {"routing_key": "` + routingKey + `"}}`
	if status, body := call(t, srv.addr, token, http.MethodPost, "/api/v1/rules", ruleBody); status != http.StatusCreated {
		t.Fatalf("create a rule before Redis is full: %d %s", status, body)
	}
	rs.FillMemory()
	for i := range 5 {
		// A name of its own, or the duplicate name would be refused first.
		rule := strings.Replace(ruleBody, `"x"`, fmt.Sprintf(`"x%d"`, i), 1)
		status, body := call(t, srv.addr, token, http.MethodPost, "/api/v1/rules", rule)
		if status != http.StatusServiceUnavailable || !strings.Contains(string(body), "redis out of memory") {
			t.Fatalf("create a rule with Redis full: %d %s, want 503 redis out of memory", status, body)
		}
	}
	for _, path := range []string{"/api/v1/rules", "/api/v1/alerts", "/api/v1/outbox", "/api/v1/silences"} {
		if status, body := call(t, srv.addr, token, http.MethodGet, path, nil); status != http.StatusOK {
			t.Errorf("GET %s with Redis full: %d %s, want 200", path, status, body)
		}
	}
	if n := strings.Count(srv.logs.String(), "Redis is out of memory (maxmemory "); n != 1 {
		t.Errorf("named OOM message logged %d times for 5 refused writes, want once", n)
	}
	if v, ok := metricValue(t, srv.addr, "keyalert_redis_oom_total"); !ok || v < 5 {
		t.Errorf("keyalert_redis_oom_total = %v (present %v), want at least 5", v, ok)
	}
}
