package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/api"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// A Redis Cluster works by configuration alone: the URL lists the nodes,
// and keyalertd counts, evaluates a rule and pages as on one server.
func TestRedisClusterByConfigurationAlone(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	recv := pdreceiver.Start(t)
	srv := startInProc(t, alertEnv(cl.URL(), recv.URL), nil)
	rule := createRule(t, srv.addr, `{"name": "exceptions", "keywords": ["Exception"],
		"condition": {"type": "threshold", "count": 5, "window": "5m"}, "group_by": "host",
		"severity": "error", "pagerduty": {"routing_key": "`+routingKey+`"}}`)

	rdb := cl.Client()
	ctx := context.Background()
	now := time.Now().Truncate(time.Minute)
	var want int64
	for b := 0; b < 30; b++ {
		e := stream.Entry{Batch: fmt.Sprintf("%032x", b), Keyword: keyword.Spec{Text: "Exception"},
			Tag: "app", Host: fmt.Sprintf("web-%d", b%3), Minute: now.Unix() - int64(b%3)*60, Count: int64(1 + b%4),
			Samples: []string{fmt.Sprintf("line %d: Exception", b)}, SentMs: time.Now().UnixMilli()}
		want += e.Count
		for copies := 0; copies < 1+b%2; copies++ { // every other batch retried: counted once
			if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream.DefaultStream, Values: e.AppendValues(nil)}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	var r api.CountsResponse
	q := url.Values{"keyword": {"Exception"}, "from": {now.Add(-5 * time.Minute).Format(time.RFC3339)},
		"to": {now.Add(time.Minute).Format(time.RFC3339)}}
	eventually(t, 15*time.Second, "counts never reached the total", func() bool {
		apiJSON(t, srv.addr, http.MethodGet, "/api/v1/counts?"+q.Encode(), nil, http.StatusOK, &r)
		return r.Total >= want
	})
	time.Sleep(300 * time.Millisecond) // anything counted twice would show by now
	apiJSON(t, srv.addr, http.MethodGet, "/api/v1/counts?"+q.Encode(), nil, http.StatusOK, &r)
	if r.Total != want {
		t.Fatalf("total %d, want %d", r.Total, want)
	}
	evs := waitEvents(t, recv, 3, 15*time.Second) // one alert per host
	for _, ev := range evs {
		if ev.Action != "trigger" || ev.RoutingKey != routingKey {
			t.Errorf("event %s %s, want a trigger", ev.Action, ev.DedupKey)
		}
	}
	if ev := evs[0]; ev.DedupKey != alert.DedupKey(alert.ID(rule.ID, ev.Payload.Source)) {
		t.Errorf("dedup key %s is not the alert's", ev.DedupKey)
	}
	noRejections(t, recv)
	for _, l := range strings.Split(srv.logs.String(), "\n") {
		if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
			t.Errorf("keyalertd logged: %s", l)
		}
	}
}
