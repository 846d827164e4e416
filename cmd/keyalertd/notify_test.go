package main

import (
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// PagerDuty hangs on every trigger longer than the client waits and
// processes it late; keyalertd is SIGKILLed during the hang and restarted,
// and the alerts are resolved meanwhile. The abandoned triggers land after
// the resolves, yet every alert ends resolved at PagerDuty: the final event
// is sent again KEYALERT_OUTBOX_RESEND_AFTER after the restart.
func TestNotifyFinalStateSurvivesLateProcessingAndSIGKILL(t *testing.T) {
	const alerts = 20
	rs := redistest.Start(t)
	recv := pdreceiver.Start(t)
	recv.ProcessLate(alerts, 2500*time.Millisecond)
	env := alertEnv(rs.URL(), recv.URL)
	env["KEYALERT_PAGERDUTY_TIMEOUT"] = "10s" // the hang ends by the kill
	env["KEYALERT_OUTBOX_RESEND_AFTER"] = "4s"
	env["KEYALERT_OUTBOX_CONCURRENCY"] = "32"
	env["KEYALERT_PAGERDUTY_EVENTS_PER_MINUTE"] = "1000000"
	p := start(t, env)
	h := flbhost.StartForTest(t)
	mark := h.LogLen()
	pluginInstance(t, h, "app", rs.URL(), map[string]string{"Hostname_Key": "host"})
	createRule(t, p.addr, `{"name": "late", "keywords": ["LATE-FAULT"], "group_by": "host",
		"condition": {"type": "threshold", "count": 1, "window": "5m"}, "pagerduty": {"routing_key": "`+routingKey+`"}}`)
	waitKeywords(t, h, mark, 1)
	var c []byte
	for i := range alerts {
		var err error
		c, err = chunk.AppendEvent(c, chunk.FormatV2, time.Now(), chunk.EventTime,
			map[string]any{"log": "LATE-FAULT on host", "host": fmt.Sprintf("web-%02d", i)})
		if err != nil {
			t.Fatal(err)
		}
	}
	flushOK(t, h, "app", "app.log", c)
	eventually(t, 10*time.Second, "every trigger hanging at PagerDuty", func() bool { return recv.Attempts() >= alerts })
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p2 := start(t, env)
	restarted := time.Now()
	waitEvents(t, recv, alerts, 10*time.Second) // the re-sent triggers
	var list struct {
		Alerts []struct{ ID string } `json:"alerts"`
	}
	apiJSON(t, p2.addr, http.MethodGet, "/api/v1/alerts?state=firing", nil, http.StatusOK, &list)
	if len(list.Alerts) != alerts {
		t.Fatalf("%d firing alerts, want %d", len(list.Alerts), alerts)
	}
	for _, a := range list.Alerts {
		apiJSON(t, p2.addr, http.MethodPost, "/api/v1/alerts/"+a.ID+"/resolve", map[string]string{"by": "test"}, http.StatusOK, nil)
	}
	final := func() (resolved, flipped int) {
		last := map[string]string{}
		seenResolve := map[string]bool{}
		for _, e := range recv.Events() {
			if e.Action == "trigger" && seenResolve[e.DedupKey] && last[e.DedupKey] == "resolve" {
				flipped++
			}
			if e.Action == "resolve" {
				seenResolve[e.DedupKey] = true
			}
			last[e.DedupKey] = e.Action
		}
		for _, a := range last {
			if a == "resolve" {
				resolved++
			}
		}
		return resolved, flipped
	}
	// The late triggers land 2.5s after they were sent; the re-sends 4s
	// after the restart.
	eventually(t, 15*time.Second, "every alert resolved at PagerDuty", func() bool {
		r, _ := final()
		return r == alerts && time.Since(restarted) > 5*time.Second
	})
	_, flipped := final()
	t.Logf("%d of %d alerts were flipped back to triggered by a late request before the re-send", flipped, alerts)
	noRejections(t, recv)
}
