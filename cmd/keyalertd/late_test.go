package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// A Fluent Bit backlog through the plugin: entries of a minute keyalertd
// already judged page once, marked late and dated at their event time;
// more of the same burst pages nothing; entries past the lateness horizon
// are counted in the metric (backend/alerting.md § Semantics, late data).
func TestLateBacklogPagesOnceInEventTime(t *testing.T) {
	rs := redistest.Start(t)
	recv := pdreceiver.Start(t)
	clk := &clock{t: time.Date(2025, 3, 1, 12, 5, 30, 0, time.UTC)}
	env := alertEnv(rs.URL(), recv.URL)
	env["KEYALERT_RETENTION"] = "1000000h" // windows of 2025 on Redis's real clock
	srv := startInProc(t, env, clk.Now)
	h := flbhost.StartForTest(t)
	mark := h.LogLen()
	pluginInstance(t, h, "app", rs.URL(), map[string]string{"Hostname_Key": "host"})
	createRule(t, srv.addr, `{"name": "backlog", "keywords": ["OutOfMemoryError"],
		"condition": {"type": "threshold", "count": 5, "window": "5m"}, "group_by": "host",
		"pagerduty": {"routing_key": "`+routingKey+`"}}`)
	waitKeywords(t, h, mark, 1)
	// Two full ticks after the keywords were published: the rule has been
	// judged with minute 12:03 settled, so what comes for 12:01 is late.
	ticks, _ := metricValue(t, srv.addr, "keyalert_alert_evaluations_total")
	eventually(t, 5*time.Second, "no evaluation ticks", func() bool {
		v, _ := metricValue(t, srv.addr, "keyalert_alert_evaluations_total")
		return v >= ticks+2
	})

	records := func(at time.Time, n int) []byte {
		var c []byte
		var err error
		for i := 0; i < n; i++ {
			c, err = chunk.AppendEvent(c, chunk.FormatV2, at.Add(time.Duration(i)*time.Second), chunk.EventTime,
				map[string]any{"log": "java.lang.OutOfMemoryError: heap", "host": "web-1"})
			if err != nil {
				t.Fatal(err)
			}
		}
		return c
	}
	// Minute 12:01 ended 3.5 minutes ago: past the 1m eval_delay.
	flushOK(t, h, "app", "app.log", records(time.Date(2025, 3, 1, 12, 1, 10, 0, time.UTC), 6))
	trig := waitEvents(t, recv, 1, 10*time.Second)[0]
	p := trig.Payload
	if trig.Action != "trigger" || p == nil || !strings.HasPrefix(p.Summary, "[late] OutOfMemoryError seen 6 times in 5m on web-1") {
		t.Fatalf("want a late trigger, got %s %+v", trig.Action, p)
	}
	if p.Timestamp != "2025-03-01T12:02:00Z" {
		t.Errorf("payload.timestamp %q, want the end of the window that held, 2025-03-01T12:02:00Z", p.Timestamp)
	}
	var cd struct {
		Late        bool              `json:"late"`
		EventWindow map[string]string `json:"event_window"`
		Count       int64             `json:"count"`
	}
	if err := json.Unmarshal(p.CustomDetails, &cd); err != nil {
		t.Fatal(err)
	}
	if !cd.Late || cd.Count != 6 || cd.EventWindow["from"] != "2025-03-01T11:57:00Z" || cd.EventWindow["to"] != "2025-03-01T12:02:00Z" {
		t.Errorf("custom_details late %v count %d event_window %v", cd.Late, cd.Count, cd.EventWindow)
	}

	// More of the same burst: it fires already, nothing more is sent.
	flushOK(t, h, "app", "app.log", records(time.Date(2025, 3, 1, 12, 1, 40, 0, time.UTC), 3))
	// Past the 1h horizon: counted, not judged.
	flushOK(t, h, "app", "app.log", records(time.Date(2025, 3, 1, 10, 30, 0, 0, time.UTC), 6))
	eventually(t, 5*time.Second, "keyalert_late_entries_past_horizon_total did not count the old entry", func() bool {
		v, _ := metricValue(t, srv.addr, "keyalert_late_entries_past_horizon_total")
		return v >= 1
	})
	time.Sleep(600 * time.Millisecond)
	if evs := recv.Events(); len(evs) != 1 {
		t.Fatalf("want the one late trigger, got%s", describe(evs))
	}
}
