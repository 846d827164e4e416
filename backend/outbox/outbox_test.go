package outbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/notify/pagerduty"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/harness/metrictest"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const routingKey = rules.Secret("R0123456789abcdef0123456789ABCDE")

func fastOptions(reg prometheus.Registerer) outbox.Options {
	return outbox.Options{BackoffMin: 10 * time.Millisecond, BackoffMax: 80 * time.Millisecond, Registerer: reg}
}

func triggerMsg(key string) notify.Notification {
	return notify.Notification{Action: notify.Trigger, AlertID: key, DedupKey: key, Target: routingKey, Summary: "s " + key,
		Rule: notify.Rule{ID: "r", Name: "r", Severity: rules.Critical}, At: time.Now()}
}

func actionMsg(action notify.Action, key string) notify.Notification {
	return notify.Notification{Action: action, AlertID: key, DedupKey: key, Target: routingKey, At: time.Now()}
}

func runSender(t *testing.T, ob *outbox.Outbox, url string) (stop func()) {
	reg := notify.NewRegistry()
	if err := reg.Register(pagerduty.Name, pagerduty.NewClient(pagerduty.Options{URL: url, Timeout: 2 * time.Second, EventsPerMinute: 1 << 20}, nil)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ob.Run(ctx, reg)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("sender did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

// counter sums the samples of a counter family whose labels include want.
func counter(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// actionsByKey checks that every (key, action) arrived once and returns each
// key's actions in arrival order.
func actionsByKey(t *testing.T, evs []pdreceiver.Event) map[string][]string {
	t.Helper()
	seen := map[string]bool{}
	out := map[string][]string{}
	for _, ev := range evs {
		id := ev.DedupKey + "/" + ev.Action
		if seen[id] {
			t.Errorf("event %s arrived twice", id)
		}
		seen[id] = true
		out[ev.DedupKey] = append(out[ev.DedupKey], ev.Action)
	}
	return out
}

func TestReceiverFailingThenAcceptingGetsEveryEventOnceInOrder(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusTooManyRequests} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			srv := redistest.Start(t)
			recv := pdreceiver.Start(t)
			recv.FailNext(7, status)
			reg := prometheus.NewRegistry()
			ob := outbox.New(srv.Client(), fastOptions(reg), quiet)
			ctx := context.Background()
			keys := []string{"ka-a", "ka-b", "ka-c"}
			for _, k := range keys {
				for _, m := range []notify.Notification{triggerMsg(k), actionMsg(notify.Acknowledge, k), actionMsg(notify.Resolve, k)} {
					if err := ob.Enqueue(ctx, m); err != nil {
						t.Fatal(err)
					}
				}
			}
			runSender(t, ob, recv.URL)
			evs, err := recv.WaitForN(waitCtx(t), 9)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if got := fmt.Sprint(actionsByKey(t, evs)[k]); got != "[trigger acknowledge resolve]" {
					t.Errorf("key %s: actions %s", k, got)
				}
			}
			if len(recv.Rejections()) != 0 {
				t.Fatalf("receiver rejected: %+v", recv.Rejections())
			}
			waitEmpty(t, ob)
			retries := counter(t, reg, "keyalert_notifications_total", map[string]string{"result": "retry"})
			sent := counter(t, reg, "keyalert_notifications_total", map[string]string{"result": "sent", "integration": "pagerduty"})
			if retries != 7 || sent != 9 {
				t.Fatalf("%v retries and %v sent, want 7 retries and 9 sent", retries, sent)
			}
		})
	}
}

func waitEmpty(t *testing.T, ob *outbox.Outbox) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
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
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMessagesSurviveASenderRestart(t *testing.T) {
	srv := redistest.Start(t)
	recv := pdreceiver.Start(t)
	recv.FailNext(1000, http.StatusServiceUnavailable)
	ctx := context.Background()
	first := outbox.New(srv.Client(), fastOptions(nil), quiet)
	stop := runSender(t, first, recv.URL)
	for _, m := range []notify.Notification{triggerMsg("k1"), actionMsg(notify.Resolve, "k1"), triggerMsg("k2")} {
		if err := first.Enqueue(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for recv.Attempts() < 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	pending, err := first.ListPending(ctx)
	if err != nil || len(pending) != 3 {
		t.Fatalf("pending after a failing run: %+v %v", pending, err)
	}
	if pending[0].Attempts == 0 || pending[0].LastError == "" {
		t.Fatalf("retry state not kept: %+v", pending[0])
	}

	// A new process (new Outbox, new Redis client) delivers what is left.
	recv.FailNext(0, 0)
	second := outbox.New(srv.Client(), fastOptions(nil), quiet)
	runSender(t, second, recv.URL)
	evs, err := recv.WaitForN(waitCtx(t), 3)
	if err != nil {
		t.Fatal(err)
	}
	byKey := actionsByKey(t, evs)
	if fmt.Sprint(byKey["k1"]) != "[trigger resolve]" || fmt.Sprint(byKey["k2"]) != "[trigger]" {
		t.Fatalf("delivered %v", byKey)
	}
	waitEmpty(t, second)
}

func TestRejectedEventIsKeptWithItsReasonAndNotRetried(t *testing.T) {
	srv := redistest.Start(t)
	recv := pdreceiver.Start(t)
	reg := prometheus.NewRegistry()
	ob := outbox.New(srv.Client(), fastOptions(reg), quiet)
	ctx := context.Background()
	bad := triggerMsg("k")
	bad.Target = "short" // the receiver answers 400
	for _, m := range []notify.Notification{bad, actionMsg(notify.Resolve, "k")} {
		if err := ob.Enqueue(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	runSender(t, ob, recv.URL)
	evs, err := recv.WaitForN(waitCtx(t), 1)
	if err != nil || evs[0].Action != "resolve" {
		t.Fatalf("the next event for the key must still go out: %+v %v", evs, err)
	}
	failed, err := ob.Failed(ctx)
	if err != nil || len(failed) != 1 {
		t.Fatalf("failed: %+v %v", failed, err)
	}
	f := failed[0]
	if f.Status != 400 || f.Kind != "trigger" || f.Key != "k" || f.Attempts != 1 || f.Reason == "" || f.Integration != "pagerduty" {
		t.Fatalf("failure record %+v", f)
	}
	if recv.Attempts() != 2 {
		t.Fatalf("%d attempts: a 400 must not be retried", recv.Attempts())
	}
	if n := counter(t, reg, "keyalert_notifications_total", map[string]string{"result": "rejected", "event": "trigger"}); n != 1 {
		t.Fatalf("%v rejected, want 1", n)
	}
}

func TestNewMessageWakesAnIdleSender(t *testing.T) {
	srv := redistest.Start(t)
	recv := pdreceiver.Start(t)
	ob := outbox.New(srv.Client(), outbox.Options{}, quiet)
	runSender(t, ob, recv.URL)
	time.Sleep(100 * time.Millisecond) // let the sender block on the empty stream
	start := time.Now()
	if err := ob.Enqueue(context.Background(), triggerMsg("wake")); err != nil {
		t.Fatal(err)
	}
	if _, err := recv.WaitForN(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	t.Logf("enqueue to receiver: %s", time.Since(start))
}

// An outbox written before notification values held PagerDuty wire bytes;
// after an upgrade those entries are still delivered, as they are, and in
// order with the new entries of the same key.
func TestEntriesOfTheOldFormatAreStillDelivered(t *testing.T) {
	srv := redistest.Start(t)
	recv := pdreceiver.Start(t)
	ctx := context.Background()
	rdb := srv.Client()
	oldTrigger := `{"routing_key":"` + routingKey.Reveal() + `","event_action":"trigger","dedup_key":"old-1","client":"keyalert",` +
		`"payload":{"summary":"written by the old version","source":"fleet","severity":"critical","timestamp":"2025-03-01T12:00:00Z"}}`
	oldAck := `{"routing_key":"` + routingKey.Reveal() + `","event_action":"acknowledge","dedup_key":"old-1","client":"keyalert"}`
	for _, e := range [][2]string{{"trigger", oldTrigger}, {"acknowledge", oldAck}} {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: outbox.DefaultKey, Values: []any{
			"key", "old-1", "kind", e[0], "body", e[1], "at", strconv.FormatInt(time.Now().UnixMilli(), 10)}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	ob := outbox.New(rdb, fastOptions(nil), quiet)
	if err := ob.Enqueue(ctx, actionMsg(notify.Resolve, "old-1")); err != nil {
		t.Fatal(err)
	}
	pending, err := ob.ListPending(ctx)
	if err != nil || len(pending) != 3 || pending[0].Integration != "pagerduty" || pending[0].Kind != "trigger" {
		t.Fatalf("pending %+v %v", pending, err)
	}
	runSender(t, ob, recv.URL)
	evs, err := recv.WaitForN(waitCtx(t), 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(actionsByKey(t, evs)["old-1"]); got != "[trigger acknowledge resolve]" {
		t.Fatalf("actions %s", got)
	}
	if evs[0].Payload == nil || evs[0].Payload.Summary != "written by the old version" || string(evs[0].Raw) != oldTrigger {
		t.Fatalf("old trigger not sent as stored: %s", evs[0].Raw)
	}
	if len(recv.Rejections()) != 0 {
		t.Fatalf("receiver rejected: %+v", recv.Rejections())
	}
	waitEmpty(t, ob)
}

// A notification is stored once per integration and encoded by each one's
// notifier when sent.
func TestEachIntegrationGetsItsOwnEncoding(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	ob := outbox.New(srv.Client(), outbox.Options{Integrations: []string{"a", "b"}}, quiet)
	if err := ob.Enqueue(ctx, triggerMsg("k")); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 2)
	reg := notify.NewRegistry()
	for _, name := range []string{"a", "b"} {
		reg.Register(name, recorder{name: name, got: got})
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); ob.Run(rctx, reg) }()
	t.Cleanup(func() { cancel(); <-done })
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case s := <-got:
			seen[s] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("delivered only %v", seen)
		}
	}
	if !seen["a:trigger k "+routingKey.Reveal()] || !seen["b:trigger k "+routingKey.Reveal()] {
		t.Fatalf("delivered %v", seen)
	}
	waitEmpty(t, ob)
}

// recorder is a notifier whose wire format is a line of text.
type recorder struct {
	name string
	got  chan<- string
}

func (r recorder) Encode(n notify.Notification) ([]byte, error) {
	return []byte(fmt.Sprintf("%s:%s %s %s", r.name, n.Action, n.DedupKey, n.Target.Reveal())), nil
}

func (r recorder) Send(_ context.Context, body []byte) notify.Delivery {
	r.got <- string(body)
	return notify.Delivery{Outcome: notify.Delivered, Status: 200}
}

func TestMetricNamesAndLabels(t *testing.T) {
	srv := redistest.Start(t)
	reg := prometheus.NewRegistry()
	outbox.New(srv.Client(), outbox.Options{Registerer: reg}, quiet)
	got := metrictest.Shapes(t, reg)
	want := map[string]string{
		"keyalert_notifications_total":          "COUNTER event,integration,result",
		"keyalert_notification_latency_seconds": "HISTOGRAM integration",
		"keyalert_outbox_pending":               "GAUGE ",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("metrics %v, want %v", got, want)
	}
}
