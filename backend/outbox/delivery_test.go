package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/notify/pagerduty"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/redis/go-redis/v9"
)

// runWith runs the sender with reg until the test ends or stop is called.
func runWith(t *testing.T, ob *outbox.Outbox, reg *notify.Registry) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ob.Run(ctx, reg)
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
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

func pdRegistry(t *testing.T, o pagerduty.Options, names ...string) *notify.Registry {
	reg := notify.NewRegistry()
	if len(names) == 0 {
		names = []string{pagerduty.Name}
	}
	for _, name := range names {
		if err := reg.Register(name, pagerduty.NewClient(o, nil)); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

func enqueueAll(t *testing.T, rdb redis.UniversalClient, ob *outbox.Outbox, notes []notify.Notification) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < len(notes); i += 200 {
		_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, n := range notes[i:min(i+200, len(notes))] {
				if err := ob.AddTo(ctx, p, n); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// finalActions is each key's last action at the receiver.
func finalActions(evs []pdreceiver.Event) map[string]string {
	out := map[string]string{}
	for _, ev := range evs {
		out[ev.DedupKey] = ev.Action
	}
	return out
}

// A storm of alerts to one routing key is paced under PagerDuty's rate
// limit (compressed here: 400 per second at the receiver, 360 per second
// paced), so none is refused for rate and each alert keeps its order.
func TestStormToOneRoutingKeyIsPacedNotRejectedAndKeepsOrder(t *testing.T) {
	srv := redistest.Start(t)
	recv := pdreceiver.Start(t)
	recv.RateLimit(400, time.Second)
	ob := outbox.New(srv.Client(), fastOptions(nil), quiet)
	const alerts = 1000
	var notes []notify.Notification
	for i := range alerts {
		notes = append(notes, triggerMsg(fmt.Sprintf("ka-%04d", i)))
	}
	for i := range alerts {
		notes = append(notes, actionMsg(notify.Resolve, fmt.Sprintf("ka-%04d", i)))
	}
	enqueueAll(t, srv.Client(), ob, notes)
	runWith(t, ob, pdRegistry(t, pagerduty.Options{URL: recv.URL, Timeout: 2 * time.Second, EventsPerMinute: 360 * 60}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	evs, err := recv.WaitForN(ctx, 2*alerts)
	if err != nil {
		t.Fatal(err)
	}
	if n := recv.Throttled(); n != 0 {
		t.Errorf("%d events refused for rate (429)", n)
	}
	for k, acts := range actionsByKey(t, evs) {
		if fmt.Sprint(acts) != "[trigger resolve]" {
			t.Errorf("key %s: actions %v", k, acts)
		}
	}
}

// When PagerDuty answers after the client's timeout and processes the
// abandoned request late, after the alert's later events, the final event
// is sent once more after ResendAfter, so the receiver ends in the alert's
// final state. Without the re-send, some alerts end triggered (the bug).
func TestTimedOutSendProcessedLateEndsInTheAlertsFinalState(t *testing.T) {
	cases := []struct {
		name        string
		resendAfter time.Duration
		restart     bool // stop the sender during the hang and start a new one
		wantAll     bool
	}{
		{"without re-send some end triggered", -1, false, false},
		{"re-send after the timeout", 700 * time.Millisecond, false, true},
		{"re-send after a restart during the hang", 700 * time.Millisecond, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			recv := pdreceiver.Start(t)
			const alerts = 20
			recv.ProcessLate(alerts, 400*time.Millisecond)
			opt := fastOptions(nil)
			opt.ResendAfter, opt.Concurrency = tc.resendAfter, alerts
			ob := outbox.New(srv.Client(), opt, quiet)
			var notes []notify.Notification
			for i := range alerts {
				k := fmt.Sprintf("ka-%02d", i)
				notes = append(notes, triggerMsg(k), actionMsg(notify.Resolve, k))
			}
			enqueueAll(t, srv.Client(), ob, notes)
			timeout := 100 * time.Millisecond
			if tc.restart {
				timeout = 5 * time.Second // the hang ends by the stop, not the timeout
			}
			reg := pdRegistry(t, pagerduty.Options{URL: recv.URL, Timeout: timeout, EventsPerMinute: 1 << 20})
			stop := runWith(t, ob, reg)
			if tc.restart {
				time.Sleep(150 * time.Millisecond)
				stop()
				runWith(t, outbox.New(srv.Client(), opt, quiet), reg)
			}
			// Late requests land at 400 ms, the re-sends at 700 ms after the
			// timeout or restart; wait past both.
			time.Sleep(2 * time.Second)
			final := finalActions(recv.Events())
			resolved := 0
			for _, a := range final {
				if a == string(notify.Resolve) {
					resolved++
				}
			}
			if len(final) != alerts {
				t.Fatalf("%d alerts at the receiver, want %d", len(final), alerts)
			}
			if tc.wantAll && resolved != alerts {
				t.Errorf("%d of %d alerts resolved at the receiver, want all: %v", resolved, alerts, final)
			}
			if !tc.wantAll && resolved == alerts {
				t.Errorf("every alert resolved without the re-send: the stand-in did not reorder")
			}
			t.Logf("%d of %d alerts end resolved at the receiver", resolved, alerts)
		})
	}
}

// One receiver failing (500) or hanging does not hold back another: the
// healthy one gets every event while the other still fails.
func TestFailingOrHangingReceiverDoesNotDelayAHealthyOne(t *testing.T) {
	for _, mode := range []string{"500", "hang"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			bad, good := pdreceiver.Start(t), pdreceiver.Start(t)
			switch mode {
			case "500":
				bad.FailNext(1<<30, http.StatusInternalServerError)
			case "hang":
				bad.ProcessLate(1<<30, 3*time.Second)
			}
			opt := fastOptions(nil)
			opt.Integrations = []string{"bad", "good"}
			ob := outbox.New(srv.Client(), opt, quiet)
			reg := notify.NewRegistry()
			reg.Register("bad", pagerduty.NewClient(pagerduty.Options{URL: bad.URL, Timeout: 10 * time.Second, EventsPerMinute: 1 << 20}, nil))
			reg.Register("good", pagerduty.NewClient(pagerduty.Options{URL: good.URL, Timeout: 10 * time.Second, EventsPerMinute: 1 << 20}, nil))
			runWith(t, ob, reg)
			const alerts = 30
			start := time.Now()
			for i := range alerts {
				k := fmt.Sprintf("ka-%02d", i)
				enqueueAll(t, srv.Client(), ob, []notify.Notification{triggerMsg(k), actionMsg(notify.Resolve, k)})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
			defer cancel()
			if _, err := good.WaitForN(ctx, 2*alerts); err != nil {
				t.Fatalf("healthy receiver, while the other fails: %v", err)
			}
			if n := len(bad.Events()); n != 0 {
				t.Fatalf("the failing receiver accepted %d events", n)
			}
			t.Logf("healthy receiver got %d events in %v", 2*alerts, time.Since(start).Round(time.Millisecond))
		})
	}
}

// Alerts paced on one routing key share its slots in the order they fell
// due: one alert retrying against a receiver that fails everything does
// not keep alerts that came later from ever being tried.
func TestRetryingAlertDoesNotStarveOthersOfItsPace(t *testing.T) {
	srv := redistest.Start(t)
	var mu sync.Mutex
	tries := map[string]int{}
	pd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			DedupKey string `json:"dedup_key"`
		}
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			t.Errorf("undecodable event: %v", err)
		}
		mu.Lock()
		tries[ev.DedupKey]++
		mu.Unlock()
		http.Error(w, "failing", http.StatusInternalServerError)
	}))
	t.Cleanup(pd.Close)
	triesOf := func(k string) int {
		mu.Lock()
		defer mu.Unlock()
		return tries[k]
	}
	ob := outbox.New(srv.Client(), fastOptions(nil), quiet)
	// 10 events a second on the routing key; retries come back sooner.
	runWith(t, ob, pdRegistry(t, pagerduty.Options{URL: pd.URL, Timeout: 2 * time.Second, EventsPerMinute: 600}))
	enqueueAll(t, srv.Client(), ob, []notify.Notification{triggerMsg("ka-first")})
	for deadline := time.Now().Add(5 * time.Second); triesOf("ka-first") < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the first alert was tried %d times in 5 s", triesOf("ka-first"))
		}
	}
	later := []string{"ka-b", "ka-c", "ka-d", "ka-e"}
	var notes []notify.Notification
	for _, k := range later {
		notes = append(notes, triggerMsg(k))
	}
	enqueueAll(t, srv.Client(), ob, notes)
	// 20 slots: each of the five alerts is due for several.
	time.Sleep(2 * time.Second)
	for _, k := range later {
		if n := triesOf(k); n < 2 {
			mu.Lock()
			t.Errorf("%s tried %d times in 2 s while the first alert retried (tries: %v)", k, n, tries)
			mu.Unlock()
		}
	}
}
