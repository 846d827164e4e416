package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/api"
	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/receiver"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/backend/timeinterval"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/openapitest"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/pkg/subcommand"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// The CLI's tests run it against keyalertd's real API router and alert
// engine on a real redis-server, over loopback HTTP, on the wall clock (the
// CLI reads "the last hour" from it).

const testToken = "cli-test-token"

// testKey is a well-formed PagerDuty routing key.
const testKey = "R0123456789abcdef0123456789ABCDE"

type testServer struct {
	t   *testing.T
	url string
	rdb *redis.Client
	win *window.Store
	eng *alert.Engine
}

// startServer runs the API on a fresh Redis and points KEYALERT_URL and
// KEYALERT_TOKEN at it for the test.
func startServer(t *testing.T) *testServer {
	t.Helper()
	rdb := redistest.Start(t).Client()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rs := rules.NewStore(rdb, rules.Options{}, nil, log)
	ob := outbox.New(rdb, outbox.Options{}, log)
	reg := prometheus.NewRegistry()
	o := api.Options{
		Counts: window.NewStore(rdb, stream.DefaultStream), Rules: rs, Silences: silence.NewStore(rdb, nil, log),
		Alerts: alert.NewStore(rdb, ob, alert.RuleKeys{Rules: rs}, nil, log), Outbox: ob,
		Tokens: []string{testToken}, Gatherer: reg, Registerer: reg, Logger: log,
	}
	o.TimeIntervals = timeinterval.NewStore(rdb, timeinterval.Options{}, nil)
	o.Receivers = receiver.NewStore(rdb, receiver.Options{}, nil)
	o.Silences.UseIntervals(o.TimeIntervals)
	h, err := api.NewRouter(o)
	if err != nil {
		t.Fatal(err)
	}
	// Every exchange of the CLI is checked against the API's OpenAPI
	// description, so the client and the description agree.
	srv := httptest.NewServer(openapitest.MustLoad(t, api.OpenAPI()).Handler(t, h))
	t.Cleanup(srv.Close)
	shards := lease.NewShards(rdb, alert.LeasePrefix, "cli-test", lease.Options{TTL: 5 * time.Second, Shards: 1}, log)
	if err := shards.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	eng := alert.New(alert.Config{Redis: rdb, Rules: rs, Silences: o.Silences, Counts: o.Counts, Store: o.Alerts, Shards: shards, Log: log})
	t.Setenv("KEYALERT_URL", srv.URL)
	t.Setenv("KEYALERT_TOKEN", testToken)
	return &testServer{t: t, url: srv.URL, rdb: rdb, win: o.Counts, eng: eng}
}

// count adds n matches of a keyword series in the current minute.
func (s *testServer) count(spec keyword.Spec, host, tag string, n int64) {
	s.t.Helper()
	minute := time.Now().Unix() - time.Now().Unix()%60
	if err := s.rdb.HIncrBy(context.Background(), s.win.Keys().Window(spec.Canonical().ID(), minute), window.Field(host, tag), n).Err(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *testServer) tick() {
	s.t.Helper()
	if err := s.eng.Tick(context.Background()); err != nil {
		s.t.Fatal(err)
	}
}

// run runs the keyalert command line and returns its exit status and output.
func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := subcommand.Run("keyalert", commands(&out, &errOut), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// mustRun runs args and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := run(args...)
	if code != 0 {
		t.Fatalf("keyalert %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}
