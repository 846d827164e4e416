package outbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/notify/pagerduty"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const routingKey = rules.Secret("R0123456789abcdef0123456789ABCDE")

func fastSettings() outbox.Settings {
	s := outbox.DefaultSettings()
	s.BackoffMin, s.BackoffMax = 10*time.Millisecond, 80*time.Millisecond
	return s
}

func triggerMsg(t *testing.T, key string) outbox.Message {
	b, err := pagerduty.Trigger{RoutingKey: routingKey, DedupKey: key, Summary: "s " + key, Source: "fleet",
		Severity: "critical", Timestamp: time.Now()}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return outbox.Message{Key: key, Kind: "trigger", Body: b}
}

func actionMsg(t *testing.T, kind, key string) outbox.Message {
	enc := pagerduty.Resolve
	if kind == "acknowledge" {
		enc = pagerduty.Acknowledge
	}
	b, err := enc(routingKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return outbox.Message{Key: key, Kind: kind, Body: b}
}

func runSender(t *testing.T, ob *outbox.Outbox, url string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ob.Run(ctx, pagerduty.NewClient(pagerduty.Settings{URL: url, Timeout: 2 * time.Second}, nil))
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
			ob := outbox.New(srv.Client(), fastSettings(), quiet)
			ctx := context.Background()
			keys := []string{"ka-a", "ka-b", "ka-c"}
			for _, k := range keys {
				for _, m := range []outbox.Message{triggerMsg(t, k), actionMsg(t, "acknowledge", k), actionMsg(t, "resolve", k)} {
					if _, err := ob.Enqueue(ctx, m); err != nil {
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
			if st := ob.Stats(); st.Retries != 7 || st.Delivered != 9 {
				t.Fatalf("stats %+v, want 7 retries and 9 delivered", st)
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
	first := outbox.New(srv.Client(), fastSettings(), quiet)
	stop := runSender(t, first, recv.URL)
	for _, m := range []outbox.Message{triggerMsg(t, "k1"), actionMsg(t, "resolve", "k1"), triggerMsg(t, "k2")} {
		if _, err := first.Enqueue(ctx, m); err != nil {
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
	second := outbox.New(srv.Client(), fastSettings(), quiet)
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
	ob := outbox.New(srv.Client(), fastSettings(), quiet)
	ctx := context.Background()
	bad := outbox.Message{Key: "k", Kind: "trigger", Body: []byte(`{"routing_key":"short","event_action":"trigger","dedup_key":"k"}`)}
	for _, m := range []outbox.Message{bad, actionMsg(t, "resolve", "k")} {
		if _, err := ob.Enqueue(ctx, m); err != nil {
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
	if f.Status != 400 || f.Kind != "trigger" || f.Key != "k" || f.Attempts != 1 || f.Reason == "" {
		t.Fatalf("failure record %+v", f)
	}
	if recv.Attempts() != 2 {
		t.Fatalf("%d attempts: a 400 must not be retried", recv.Attempts())
	}
	if st := ob.Stats(); st.Rejected != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNewMessageWakesAnIdleSender(t *testing.T) {
	srv := redistest.Start(t)
	recv := pdreceiver.Start(t)
	ob := outbox.New(srv.Client(), outbox.DefaultSettings(), quiet)
	runSender(t, ob, recv.URL)
	time.Sleep(100 * time.Millisecond) // let the sender block on the empty stream
	start := time.Now()
	if _, err := ob.Enqueue(context.Background(), triggerMsg(t, "wake")); err != nil {
		t.Fatal(err)
	}
	if _, err := recv.WaitForN(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	t.Logf("enqueue to receiver: %s", time.Since(start))
}

func TestSettingsValidateNamesTheSetting(t *testing.T) {
	bad := []outbox.Settings{
		{Key: "k", BackoffMin: 0, BackoffMax: time.Second, Concurrency: 1},
		{Key: "k", BackoffMin: time.Second, BackoffMax: time.Millisecond, Concurrency: 1},
		{Key: "k", BackoffMin: time.Second, BackoffMax: time.Second, Concurrency: 0},
	}
	for _, s := range bad {
		if err := s.Validate(); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
	if err := outbox.DefaultSettings().Validate(); err != nil {
		t.Fatal(err)
	}
}
