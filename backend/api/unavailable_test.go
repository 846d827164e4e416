package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/redisoom"
	"github.com/keyalert/keyalert/pkg/redisurl"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// client connects to addr the way keyalertd does (pkg/redisurl's options).
func client(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	u, err := redisurl.Parse("redis://" + addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewUniversalClient(u.Options())
	t.Cleanup(func() { c.Close() })
	return c
}

// silentRedis is a TCP listener on loopback that accepts connections and
// never answers, as a hung Redis does.
func silentRedis(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c) // read the commands, answer nothing
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// unavailableServer serves the API on rdb with readiness and a metric that
// both need Redis.
func unavailableServer(t *testing.T, rdb redis.UniversalClient, timeout time.Duration) string {
	t.Helper()
	o := storeOptions(rdb, func() time.Time { return t0 }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	o.Tokens = []string{"tok-a"}
	o.RequestTimeout = timeout
	o.Ready = func(ctx context.Context) error {
		if err := rdb.Ping(ctx).Err(); err != nil {
			return errors.New("redis: " + err.Error())
		}
		return nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(&redisCollector{rdb: rdb, desc: prometheus.NewDesc("test_redis_keys", "Keys in Redis.", nil, nil)})
	o.Gatherer, o.Registerer = reg, reg
	h, err := NewRouter(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(checked(t, h))
	t.Cleanup(srv.Close)
	return srv.URL
}

// redisCollector reads a number from Redis on each scrape, as keyalertd's
// active-alerts gauges do.
type redisCollector struct {
	rdb  redis.UniversalClient
	desc *prometheus.Desc
}

func (c *redisCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *redisCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	n, err := c.rdb.DBSize(ctx).Result()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}

// every503 calls every /api/v1 route and wants 503 "redis unavailable:
// <reason>" within limit.
func every503(t *testing.T, url string, limit time.Duration, reason string) {
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			t0 := time.Now()
			resp, body := send(t, rt.method, url+"/api/v1"+rt.path, "tok-a", rt.body)
			elapsed := time.Since(t0)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503: %s", resp.StatusCode, body)
			}
			e := decodeError(t, resp, body)
			if !strings.HasPrefix(e.Error, "redis unavailable: ") || !strings.Contains(e.Error, reason) || len(e.Fields) != 0 {
				t.Errorf("error %q, want redis unavailable: …%s…", e.Error, reason)
			}
			if elapsed > limit {
				t.Errorf("answered after %v, want within %v", elapsed, limit)
			}
		})
	}
}

func TestRedisThatNeverAnswersIs503WithinTheRequestTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	url := unavailableServer(t, client(t, silentRedis(t)), timeout)
	every503(t, url, timeout+700*time.Millisecond, "no answer within 300ms")
}

func TestRedisStoppedIs503(t *testing.T) {
	rs := redistest.Start(t)
	rdb := client(t, rs.Addr())
	url := unavailableServer(t, rdb, 0)
	if resp, body := send(t, http.MethodGet, url+"/api/v1/rules", "tok-a", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("with Redis up: %d %s", resp.StatusCode, body)
	}
	rs.Stop()
	every503(t, url, DefaultRequestTimeout, "connection refused")
}

func TestMetricsAnswer200AndReadyzNotReadyWhileRedisIsDown(t *testing.T) {
	rs := redistest.Start(t)
	rdb := client(t, rs.Addr())
	url := unavailableServer(t, rdb, 0)
	resp, body := send(t, http.MethodGet, url+"/metrics", "", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "test_redis_keys ") {
		t.Fatalf("metrics with Redis up: %d, want 200 with test_redis_keys:\n%s", resp.StatusCode, body)
	}
	rs.Stop()

	resp, body = send(t, http.MethodGet, url+"/metrics", "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics with Redis down: %d, want 200:\n%s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "test_redis_keys ") || !strings.Contains(string(body), "keyalert_http_requests_total{") {
		t.Errorf("metrics with Redis down: want the Redis gauge left out and the rest served:\n%s", body)
	}
	resp, body = send(t, http.MethodGet, url+"/readyz", "", "")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz with Redis down: %d, want 503: %s", resp.StatusCode, body)
	}
	if e := decodeError(t, resp, body); !strings.Contains(e.Error, "connection refused") {
		t.Errorf("readyz error %q, want the reason", e.Error)
	}
}

func TestReadyzAnswersWithinTheReadyTimeoutWhenRedisNeverAnswers(t *testing.T) {
	url := unavailableServer(t, client(t, silentRedis(t)), 0)
	t0 := time.Now()
	resp, body := send(t, http.MethodGet, url+"/readyz", "", "")
	if resp.StatusCode != http.StatusServiceUnavailable || time.Since(t0) > DefaultReadyTimeout+time.Second {
		t.Fatalf("readyz: %d after %v: %s", resp.StatusCode, time.Since(t0), body)
	}
	decodeError(t, resp, body)
}

// TestRedisOutOfMemoryRefusesWritesWith503AndServesReads: a Redis at
// maxmemory (noeviction) refuses writes, which answer 503 naming the cause;
// reads still answer.
func TestRedisOutOfMemoryRefusesWritesWith503AndServesReads(t *testing.T) {
	rs := redistest.StartMaxMemory(t, 3<<20)
	rdb := client(t, rs.Addr())
	rdb.AddHook(redisoom.Hook{}) // as keyalertd does
	url := unavailableServer(t, rdb, 0)
	rs.FillMemory()
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"creating a rule is refused", http.MethodPost, "/rules", ruleBody, http.StatusServiceUnavailable},
		{"creating a silence is refused", http.MethodPost, "/silences", `{"host":"web-*","end":"2025-03-01T14:00:00Z","author":"ana"}`, http.StatusServiceUnavailable},
		{"rules are listed", http.MethodGet, "/rules", "", http.StatusOK},
		{"a rule is read", http.MethodGet, "/rules/r0000000000000000", "", http.StatusNotFound},
		{"silences are listed", http.MethodGet, "/silences", "", http.StatusOK},
		{"alerts are listed", http.MethodGet, "/alerts", "", http.StatusOK},
		{"the outbox is listed", http.MethodGet, "/outbox", "", http.StatusOK},
		{"counts are read", http.MethodGet, "/counts?keyword=x&from=2025-03-01T11:00:00Z&to=2025-03-01T12:00:00Z", "", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := send(t, tt.method, url+"/api/v1"+tt.path, "tok-a", tt.body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			if tt.want == http.StatusServiceUnavailable {
				if e := decodeError(t, resp, body); !strings.HasPrefix(e.Error, "redis out of memory") {
					t.Errorf("error %q, want redis out of memory…", e.Error)
				}
			}
		})
	}
}
