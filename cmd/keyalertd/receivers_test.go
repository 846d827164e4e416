package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/notifyreceiver"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// A rule naming receivers pages each of them through keyalertd — a Slack
// webhook, a signed webhook and a named PagerDuty receiver — and an ack
// over the API reaches each; secrets show neither in the API nor the log.
func TestRuleWithReceiversNotifiesEachReceiverAndAnAckFollows(t *testing.T) {
	rs := redistest.Start(t)
	pd := pdreceiver.Start(t)
	nr := notifyreceiver.Start(t, "whsec-e2e-0123456789abcdef")
	start := time.Now().UTC().Truncate(time.Minute).Add(10 * time.Second)
	clk := &clock{t: start}
	env := alertEnv(rs.URL(), pd.URL)
	env["KEYALERT_SLACK_MESSAGES_PER_MINUTE"] = "6000"
	srv := startInProc(t, env, clk.Now)
	for _, body := range []string{
		`{"name":"team-slack","type":"slack","url":"` + nr.URL + `/slack/T0/B0/SLACKSECRETTOKEN"}`,
		`{"name":"hook","type":"webhook","url":"` + nr.URL + `/webhook","secret":"whsec-e2e-0123456789abcdef"}`,
		`{"name":"oncall-pd","type":"pagerduty","routing_key":"` + routingKey + `"}`,
	} {
		if code, b := call(t, srv.addr, token, http.MethodPost, "/api/v1/receivers", body); code != http.StatusCreated {
			t.Fatalf("create receiver: %d %s", code, b)
		}
	}
	h := flbhost.StartForTest(t)
	mark := h.LogLen()
	pluginInstance(t, h, "app", rs.URL(), nil)
	createRule(t, srv.addr, `{"name": "state errors", "keywords": ["IllegalStateException"],
		"condition": {"type": "threshold", "count": 1, "window": "1m"}, "receivers": ["team-slack", "hook", "oncall-pd"]}`)
	waitKeywords(t, h, mark, 1)
	c, err := chunk.AppendEvent(nil, chunk.FormatV2, start, chunk.EventTime, map[string]any{"log": "java.lang.IllegalStateException: pool closed"})
	if err != nil {
		t.Fatal(err)
	}
	flushOK(t, h, "app", "app.log", c)
	waitEvents(t, pd, 1, 10*time.Second)
	eventually(t, 10*time.Second, "slack and webhook triggers", func() bool {
		return len(nr.Messages("slack")) == 1 && len(nr.Messages("webhook")) == 1
	})
	var alerts struct {
		Alerts []struct{ ID string } `json:"alerts"`
	}
	apiJSON(t, srv.addr, http.MethodGet, "/api/v1/alerts", nil, http.StatusOK, &alerts)
	if len(alerts.Alerts) != 1 {
		t.Fatalf("%d alerts", len(alerts.Alerts))
	}
	apiJSON(t, srv.addr, http.MethodPost, "/api/v1/alerts/"+alerts.Alerts[0].ID+"/ack", map[string]string{"by": "ana"}, http.StatusOK, nil)
	evs := waitEvents(t, pd, 2, 10*time.Second)
	if evs[1].Action != "acknowledge" || evs[1].RoutingKey != routingKey {
		t.Errorf("pagerduty: %s", describe(evs))
	}
	eventually(t, 10*time.Second, "slack and webhook acks", func() bool {
		return len(nr.Messages("slack")) == 2 && len(nr.Messages("webhook")) == 2
	})
	for _, m := range nr.Messages("") {
		if len(m.Errors) > 0 {
			t.Errorf("%s payload invalid: %v\n%s", m.Kind, m.Errors, m.Body)
		}
	}
	var p struct{ Action, Title string }
	json.Unmarshal(nr.Messages("webhook")[1].Body, &p)
	if p.Action != "acknowledge" || !strings.HasPrefix(p.Title, "Acknowledged: IllegalStateException seen 1 time") {
		t.Errorf("webhook ack: %+v", p)
	}
	_, list := call(t, srv.addr, token, http.MethodGet, "/api/v1/receivers", nil)
	for _, secret := range []string{"SLACKSECRETTOKEN", "whsec-e2e-0123456789abcdef", routingKey} {
		if strings.Contains(string(list), secret) || strings.Contains(srv.logs.String(), secret) {
			t.Errorf("secret %q in the API answer or the log", secret)
		}
	}
}
