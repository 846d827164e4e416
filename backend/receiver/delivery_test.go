package receiver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/notify/alertmanager"
	teamspkg "github.com/keyalert/keyalert/backend/notify/msteams"
	"github.com/keyalert/keyalert/backend/notify/pagerduty"
	slackpkg "github.com/keyalert/keyalert/backend/notify/slack"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/receiver"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/harness/amtest"
	"github.com/keyalert/keyalert/harness/logbuf"
	"github.com/keyalert/keyalert/harness/notifyreceiver"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	secret     = "whsec-0123456789abcdef"
	routingKey = "R0123456789abcdef0123456789ABCDE"
	slackToken = "T000/B000/slacksecrettoken"
)

func note(action notify.Action, key string, receivers ...string) notify.Notification {
	n := notify.Notification{Action: action, AlertID: key, DedupKey: "keyalert-" + key, At: time.Now().UTC().Truncate(time.Second),
		Rule: notify.Rule{ID: "r1", Name: "java exceptions", Severity: rules.Critical, Runbook: "https://runbooks.example/java",
			Condition: "count >= 5 over 5m"}}
	if action == notify.Trigger {
		n.Group, n.Host, n.Tag = "web-12", "web-12", "app.web"
		n.Keywords = []string{"Exception"}
		n.Summary = "Exception seen 37 times in 5m on web-12 (rule java exceptions)"
		n.Count, n.Window = 37, "5m"
		n.CountsPerMinute = map[string]int64{"2026-01-02T03:03:00Z": 30, "2026-01-02T03:04:00Z": 7}
		n.Samples = []string{"java.lang.NullPointerException at Foo.bar(Foo.java:42)"}
		n.AlertURL = "https://keyalert.example/api/v1/alerts/" + key
		n.Links = []notify.Link{{Href: n.Rule.Runbook, Text: "Runbook"}, {Href: n.AlertURL, Text: "Alert in keyalert"}}
		n.Receivers = receivers
	}
	return n
}

type world struct {
	rdb   *redistest.Server
	store *receiver.Store
	opt   outbox.Options
	logs  *logbuf.Buffer
	log   *slog.Logger
}

func newWorld(t *testing.T) *world { return newWorldTB(t) }

func newWorldTB(t testing.TB) *world {
	srv := redistest.Start(t)
	pd := pagerduty.NewClient(pagerduty.Options{EventsPerMinute: 1 << 20}, nil)
	w := &world{rdb: srv, logs: &logbuf.Buffer{}}
	w.log = slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.store = receiver.NewStore(srv.Client(), receiver.Options{PagerDuty: pd,
		Alertmanager: alertmanager.Options{Refresh: 500 * time.Millisecond}}, nil)
	w.opt = outbox.Options{BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, Receivers: w.store,
		ResendAfter: -1}
	return w
}

func (w *world) create(t *testing.T, doc string) { w.createTB(t, doc) }

func (w *world) createTB(t testing.TB, doc string) {
	t.Helper()
	r, errs := receiver.Decode([]byte(doc), nil, 0)
	if errs.Err() != nil {
		t.Fatalf("decode %s: %v", doc, errs)
	}
	if _, err := w.store.Create(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func (w *world) run(t *testing.T) (stop func()) { return w.runTB(t) }

func (w *world) runTB(t testing.TB) (stop func()) {
	ob := outbox.New(w.rdb.Client(), w.opt, w.log)
	w.opt.Registerer = nil // registered once, by this run
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ob.Run(ctx, notify.NewRegistry()) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func (w *world) enqueue(t *testing.T, notes ...notify.Notification) { w.enqueueTB(t, notes...) }

func (w *world) enqueueTB(t testing.TB, notes ...notify.Notification) {
	t.Helper()
	ob := outbox.New(w.rdb.Client(), w.opt, w.log)
	for _, n := range notes {
		if err := ob.Enqueue(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
}

func waitCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Every receiver type gets trigger, acknowledge and resolve of an alert in
// order, each payload valid for its service, also across a sender restart
// with messages pending; no secret reaches the logs.
func TestEveryReceiverTypeGetsValidPayloadsInOrderAcrossARestart(t *testing.T) {
	w := newWorld(t)
	nr := notifyreceiver.Start(t, secret)
	pd := pdreceiver.Start(t)
	w.store = receiver.NewStore(w.rdb.Client(), receiver.Options{PagerDuty: pagerduty.NewClient(pagerduty.Options{URL: pd.URL, EventsPerMinute: 1 << 20}, nil),
		Slack: slackOpts(), Teams: teamsOpts()}, nil)
	w.opt.Receivers = w.store
	w.create(t, `{"name":"team-slack","type":"slack","url":"`+nr.URL+`/slack/`+slackToken+`"}`)
	w.create(t, `{"name":"team-teams","type":"msteams","url":"`+nr.URL+`/msteams/teamssecret"}`)
	w.create(t, `{"name":"hook","type":"webhook","url":"`+nr.URL+`/webhook","secret":"`+secret+`",
		"template":{"title":"[{{.Rule.Severity}}] {{.Summary}}","body":"{{range .Samples}}{{.}}\n{{end}}"}}`)
	w.create(t, `{"name":"oncall-pd","type":"pagerduty","routing_key":"`+routingKey+`"}`)
	all := []string{"team-slack", "team-teams", "hook", "oncall-pd"}

	// Stored with no sender running, then delivered by two senders in turn.
	w.enqueue(t, note(notify.Trigger, "a1", all...), note(notify.Acknowledge, "a1"))
	stop := w.run(t)
	ctx := waitCtx(t, 15*time.Second)
	if _, err := nr.WaitFor(ctx, "", func(m []notify2) bool { return len(m) >= 6 }); err != nil {
		t.Log(w.logs.String())
		t.Fatal(err)
	}
	// Stopped between messages (a stop during a send may repeat that one
	// message: delivery is at least once).
	waitEmpty(t, w)
	stop()
	w.enqueue(t, note(notify.Resolve, "a1"))
	reg := prometheus.NewRegistry()
	w.opt.Registerer = reg
	w.run(t)
	if _, err := nr.WaitFor(ctx, "", func(m []notify2) bool { return len(m) >= 9 }); err != nil {
		t.Fatal(err)
	}
	if _, err := pd.WaitForN(ctx, 3); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"slack", "msteams", "webhook"} {
		msgs := nr.Messages(kind)
		if len(msgs) != 3 {
			t.Fatalf("%s: %d messages, want 3", kind, len(msgs))
		}
		for i, m := range msgs {
			if len(m.Errors) > 0 {
				t.Errorf("%s message %d invalid: %v\n%s", kind, i, m.Errors, m.Body)
			}
		}
	}
	var titles []string
	for _, m := range nr.Messages("webhook") {
		var p struct{ Action, Title string }
		json.Unmarshal(m.Body, &p)
		titles = append(titles, p.Action+": "+p.Title)
	}
	want := "[trigger: [critical] Exception seen 37 times in 5m on web-12 (rule java exceptions) acknowledge: [critical] Exception seen 37 times in 5m on web-12 (rule java exceptions) resolve: [critical] Exception seen 37 times in 5m on web-12 (rule java exceptions)]"
	if fmt.Sprint(titles) != want {
		t.Errorf("webhook titles %v", titles)
	}
	var acts []string
	for _, ev := range pd.Events() {
		acts = append(acts, ev.Action)
		if ev.RoutingKey != routingKey {
			t.Errorf("pagerduty receiver's event has routing key %q", ev.RoutingKey)
		}
	}
	if fmt.Sprint(acts) != "[trigger acknowledge resolve]" {
		t.Errorf("pagerduty actions %v", acts)
	}
	waitEmpty(t, w)
	// A receiver sees an event before the sender has read the answer and
	// counted it: the counts may trail the events by a moment.
	var metrics strings.Builder
	missing := func() []string {
		metrics.Reset()
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if m.GetCounter().GetValue() > 0 {
					for _, l := range m.GetLabel() {
						fmt.Fprintf(&metrics, "%s=%s ", l.GetName(), l.GetValue())
					}
					fmt.Fprintln(&metrics, mf.GetName())
				}
			}
		}
		var out []string
		for _, typ := range []string{"slack", "msteams", "webhook", "pagerduty"} {
			if !strings.Contains(metrics.String(), "event=resolve integration="+typ+" result=sent") {
				out = append(out, typ)
			}
		}
		return out
	}
	for deadline := time.Now().Add(5 * time.Second); len(missing()) > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		t.Errorf("no resolve sent counted for %v:\n%s", m, metrics.String())
	}
	for _, s := range []string{secret, routingKey, slackToken, "teamssecret"} {
		if strings.Contains(w.logs.String(), s) || strings.Contains(metrics.String(), s) {
			t.Errorf("a secret is in the logs or metrics: %s", s)
		}
	}
}

type notify2 = notifyreceiver.Message

// The real Alertmanager: a keyalert page shows in its GET /api/v2/alerts
// with the labels and annotations, reaches its webhook, is refreshed while
// firing and resolves there when keyalert resolves.
func TestAlertmanagerReceivesRefreshesAndResolvesTheAlert(t *testing.T) {
	w := newWorld(t)
	nr := notifyreceiver.Start(t, secret)
	am := amtest.Start(t, nr.URL+"/alertmanager")
	w.create(t, `{"name":"am","type":"alertmanager","url":"`+am.URL+`"}`)
	w.enqueue(t, note(notify.Trigger, "a1", "am"), note(notify.Acknowledge, "a1"))
	stop := w.run(t)
	ctx := waitCtx(t, 20*time.Second)
	var got []struct {
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		Status       struct{ State string }
		GeneratorURL string `json:"generatorURL"`
	}
	for {
		resp, err := http.Get(am.URL + "/api/v2/alerts")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		json.Unmarshal(b, &got)
		if len(got) > 0 || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(got) != 1 {
		t.Fatalf("alertmanager has %d alerts, want 1", len(got))
	}
	a := got[0]
	wantLabels := map[string]string{"alertname": "java exceptions", "severity": "critical", "keyword": "Exception", "rule_id": "r1",
		"host": "web-12", "tag": "app.web"}
	if fmt.Sprint(a.Labels) != fmt.Sprint(wantLabels) {
		t.Errorf("labels %v, want %v", a.Labels, wantLabels)
	}
	if a.Annotations["summary"] != "Exception seen 37 times in 5m on web-12 (rule java exceptions)" ||
		a.Annotations["runbook_url"] != "https://runbooks.example/java" || !strings.Contains(a.Annotations["sample_lines"], "NullPointerException") ||
		!strings.Contains(a.Annotations["description"], "java exceptions") {
		t.Errorf("annotations %v", a.Annotations)
	}
	if a.GeneratorURL != "https://keyalert.example/api/v1/alerts/a1" || a.Status.State != "active" {
		t.Errorf("generatorURL %q, state %q", a.GeneratorURL, a.Status.State)
	}
	firing := func(status string) func([]notify2) bool {
		return func(ms []notify2) bool {
			for _, m := range ms {
				var p notifyreceiver.AMPost
				json.Unmarshal(m.Body, &p)
				if p.Status == status && len(p.Alerts) == 1 && p.Alerts[0].Labels["rule_id"] == "r1" {
					return true
				}
			}
			return false
		}
	}
	if _, err := nr.WaitFor(ctx, "alertmanager", firing("firing")); err != nil {
		t.Fatal(err)
	}
	// Refreshed while firing (every 500ms here), also by the sender after
	// a restart: the refresh state is in Redis.
	stop()
	w.run(t)
	before := time.Now()
	time.Sleep(1200 * time.Millisecond)
	if !strings.Contains(w.logs.String(), "kind=trigger integration=alertmanager receiver=am status=200") {
		t.Fatal("no delivery logged")
	}
	if n := strings.Count(w.logs.String(), "id=resend key=keyalert-a1 kind=trigger integration=alertmanager"); n < 1 {
		t.Errorf("firing alert not re-sent within %v\n%s", time.Since(before), w.logs.String())
	}
	w.enqueue(t, note(notify.Resolve, "a1"))
	if _, err := nr.WaitFor(ctx, "alertmanager", firing("resolved")); err != nil {
		t.Fatal(err)
	}
	for _, m := range nr.Messages("alertmanager") {
		if len(m.Errors) > 0 {
			t.Errorf("alertmanager webhook post: %v", m.Errors)
		}
	}
}

func slackOpts() (o slackOptions) { o.MessagesPerMinute = 1 << 20; return }
func teamsOpts() (o teamsOptions) { o.MessagesPerMinute = 1 << 20; return }

type (
	slackOptions = slackpkg.Options
	teamsOptions = teamspkg.Options
)

func waitEmpty(t *testing.T, w *world) {
	t.Helper()
	ob := outbox.New(w.rdb.Client(), w.opt, w.log)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		p, err := ob.ListPending(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(p) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still pending: %+v", p)
		}
	}
}

// waitDeliveredTB waits until the log shows n deliveries.
func (w *world) waitDeliveredTB(t testing.TB, n int) {
	for deadline := time.Now().Add(10 * time.Second); strings.Count(w.logs.String(), "outbox: message delivered") < n; {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d deliveries", n)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// A rule naming no receivers goes to the default receivers; its resolve
// follows it there, and a receiver not taking the severity skips it.
func TestDefaultReceiversTakeRulesNamingNoneAndSeveritiesFilter(t *testing.T) {
	w := newWorld(t)
	nr := notifyreceiver.Start(t, secret)
	w.create(t, `{"name":"hook","type":"webhook","url":"`+nr.URL+`/webhook","secret":"`+secret+`"}`)
	w.create(t, `{"name":"info-only","type":"msteams","url":"`+nr.URL+`/msteams/x","severities":["info"]}`)
	w.opt.DefaultReceivers = []string{"hook", "info-only"}
	w.enqueue(t, note(notify.Trigger, "a1"), note(notify.Resolve, "a1"))
	w.run(t)
	msgs, err := nr.WaitFor(waitCtx(t, 10*time.Second), "webhook", func(m []notify2) bool { return len(m) >= 2 })
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if len(m.Errors) > 0 {
			t.Errorf("invalid: %v", m.Errors)
		}
	}
	waitEmpty(t, w)
	if n := len(nr.Messages("msteams")); n != 0 {
		t.Errorf("a receiver for info alerts got %d messages of a critical one", n)
	}
}

// The re-send after a restart (a crash may have abandoned a request) goes
// to receivers that hold a state, not to chat receivers, where it would
// post a duplicate message.
func TestRestartResendsTheFinalEventExceptToChats(t *testing.T) {
	w := newWorld(t)
	nr := notifyreceiver.Start(t, secret)
	w.store = receiver.NewStore(w.rdb.Client(), receiver.Options{Slack: slackOpts()}, nil)
	w.opt.Receivers, w.opt.ResendAfter = w.store, 300*time.Millisecond
	w.create(t, `{"name":"team-slack","type":"slack","url":"`+nr.URL+`/slack/x"}`)
	w.create(t, `{"name":"hook","type":"webhook","url":"`+nr.URL+`/webhook","secret":"`+secret+`"}`)
	w.enqueue(t, note(notify.Trigger, "a1", "team-slack", "hook"), note(notify.Resolve, "a1"))
	w.run(t) // a sender that starts with messages pending
	time.Sleep(800 * time.Millisecond)
	kinds := func(kind string) (out []string) {
		for _, m := range nr.Messages(kind) {
			var p struct{ Action string }
			json.Unmarshal(m.Body, &p)
			out = append(out, p.Action)
		}
		return out
	}
	if got := kinds("webhook"); fmt.Sprint(got) != "[trigger resolve resolve]" {
		t.Errorf("webhook got %v, want the resolve again", got)
	}
	if n := len(nr.Messages("slack")); n != 2 {
		t.Errorf("slack got %d messages, want 2 (no duplicate)", n)
	}
}

// A 429 with Retry-After pauses every message to that webhook, not only
// the one refused: the service asked for a pause.
func TestRetryAfterPausesTheWholeDestination(t *testing.T) {
	w := newWorld(t)
	nr := notifyreceiver.Start(t, secret)
	w.store = receiver.NewStore(w.rdb.Client(), receiver.Options{Slack: slackOpts()}, nil)
	w.opt.Receivers = w.store
	w.create(t, `{"name":"team-slack","type":"slack","url":"`+nr.URL+`/slack/x"}`)
	nr.FailNext(1, http.StatusTooManyRequests) // with Retry-After: 1
	start := time.Now()
	w.enqueue(t, note(notify.Trigger, "a1", "team-slack"))
	w.run(t)
	time.Sleep(100 * time.Millisecond) // the first one is refused
	w.enqueue(t, note(notify.Trigger, "a2", "team-slack"), note(notify.Trigger, "a3", "team-slack"))
	msgs, err := nr.WaitFor(waitCtx(t, 10*time.Second), "slack", func(m []notify2) bool { return len(m) >= 3 })
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if d := m.Received.Sub(start); d < time.Second {
			t.Errorf("a message went %v after the 429 asked for a pause of 1s", d.Round(time.Millisecond))
		}
	}
}
