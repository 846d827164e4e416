package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/harness/redistest"
)

func TestVolatileRedisIsRefusedAtStartUnlessAllowed(t *testing.T) {
	srv := redistest.StartPersistence(t, redistest.Volatile)
	for _, tc := range []struct {
		name  string
		allow string
	}{
		{"refused with what to set", ""},
		{"allowed with a warning", "true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := baseEnv(srv.URL())
			if tc.allow == "" {
				cmd := exec.Command(keyalertd(t))
				cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
				for k, v := range env {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
				out, _ := cmd.CombinedOutput()
				if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "appendonly yes") ||
					!strings.Contains(string(out), "KEYALERT_ALLOW_VOLATILE_REDIS") {
					t.Errorf("exit %d, output %q; want exit 2 saying appendonly yes and KEYALERT_ALLOW_VOLATILE_REDIS", code, out)
				}
				return
			}
			env["KEYALERT_ALLOW_VOLATILE_REDIS"] = tc.allow
			p := start(t, env)
			if !strings.Contains(p.log(), `"level":"WARN"`) || !strings.Contains(p.log(), "no persistence") {
				t.Errorf("no warning about the volatile Redis:\n%s", p.log())
			}
		})
	}
}

func TestVolatileRedisFoundAfterStartStopsKeyalertd(t *testing.T) {
	srv := redistest.StartPersistence(t, redistest.Volatile)
	srv.Stop()
	env := baseEnv(srv.URL())
	env["KEYALERT_EVAL_INTERVAL"] = "200ms"
	p := start(t, env) // Redis down: it starts and waits for it
	srv.Restart()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("keyalertd still running 10s after a volatile Redis answered:\n%s", p.log())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(p.log(), "appendonly yes") {
		t.Errorf("exit %d, want 2 with what to set:\n%s", code, p.log())
	}
}

func TestRedisDataLossMakesReadyzFailAndRepublishesKeywords(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	env := baseEnv(srv.URL())
	env["KEYALERT_EVAL_INTERVAL"] = "200ms"
	s := startInProc(t, env, nil)
	readyz := func() (int, string) {
		resp, err := apiClient(t).Get("http://" + s.addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually(t, 10*time.Second, "ready", func() bool { c, _ := readyz(); return c == http.StatusOK })
	createRule(t, s.addr, `{"name":"r","keywords":["Exception"],"condition":{"type":"threshold","count":1,"window":"1m"},
		"pagerduty":{"routing_key":"0123456789abcdef0123456789abcdef"},"enabled":true}`)
	eventually(t, 5*time.Second, "keyword set published", func() bool {
		return strings.Contains(rdb.Get(ctx, rules.DefaultKeywordsKey).Val(), "Exception")
	})

	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var body string
	eventually(t, 5*time.Second, "readyz 503 after FLUSHALL", func() bool {
		var c int
		c, body = readyz()
		return c == http.StatusServiceUnavailable && strings.Contains(body, "redis lost its data")
	})
	if !strings.Contains(body, `"error"`) {
		t.Errorf("readyz body %s is not the API error shape", body)
	}
	eventually(t, 5*time.Second, "keyword set republished", func() bool {
		return strings.Contains(rdb.Get(ctx, rules.DefaultKeywordsKey).Val(), "Exception")
	})
	if v, ok := metricValue(t, s.addr, "keyalert_redis_data_loss_total"); !ok || v != 1 {
		t.Errorf("keyalert_redis_data_loss_total = %v (present %v), want 1", v, ok)
	}
	if !strings.Contains(s.logs.String(), `"level":"ERROR"`) {
		t.Errorf("no error logged for the data loss")
	}
	// The engine's ticks publish the (now empty) rules; the keywords stay.
	time.Sleep(600 * time.Millisecond)
	if !strings.Contains(rdb.Get(ctx, rules.DefaultKeywordsKey).Val(), "Exception") {
		t.Errorf("keyword set lost again after the engine's ticks: %s", rdb.Get(ctx, rules.DefaultKeywordsKey).Val())
	}
}
