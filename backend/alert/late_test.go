package alert

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// deliver counts n records of kw on host into the window of minute (Unix
// s) and hands the entry to the engine as the ingest does after applying it:
// OnApplied, then the batch evaluation it wakes.
func (v *env) deliver(kw, host string, minute int64, n int64) {
	v.t.Helper()
	spec := keyword.Spec{Text: kw}
	if err := v.rdb.HIncrBy(v.ctx, v.win.Keys().Window(spec.ID(), minute), window.Field(host, "app"), n).Err(); err != nil {
		v.t.Fatal(err)
	}
	v.eng.OnApplied(v.ctx, []stream.Entry{{Keyword: spec, Host: host, Tag: "app", Minute: minute, Count: n}})
	if err := v.eng.onBatches(v.ctx); err != nil {
		v.t.Fatal(err)
	}
}

func at(hhmmss string) time.Time {
	t, err := time.Parse("15:04:05", hhmmss)
	if err != nil {
		panic(err)
	}
	return time.Date(2025, 3, 1, t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

// setClock moves the test clock forward to hh:mm:ss, ticking once a minute
// on the way as keyalertd would.
func (v *env) setClock(hhmmss string) {
	v.t.Helper()
	to := at(hhmmss)
	for v.clk.Now().Add(time.Minute).Before(to) {
		v.clk.Add(time.Minute)
		v.tick()
	}
	v.clk.Add(to.Sub(v.clk.Now()))
}

const lateRule = `{"name":"late","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},
	"group_by":"host","pagerduty":{"routing_key":"` + testKey + `"},"resolve_after":"5m"}`

func TestLateBurstPagesOnceInEventTime(t *testing.T) {
	v := newEnv(t) // 12:00:30
	v.startSender()
	r := v.rule(lateRule)
	v.tick()
	v.setClock("12:03:20")
	// A Fluent Bit backlog: minute 12:00's matches arrive 2m20s after it
	// ended, past the 1m eval_delay: its windows ending 12:00 and 12:01 were
	// judged without them.
	v.deliver("Exception", "web-1", at("12:00:00").Unix(), 6)
	evs := v.events(1)
	n := evs[0]
	if n.Action != notify.Trigger || !n.Late || n.EventWindow == nil {
		t.Fatalf("want a late trigger, got %+v", n)
	}
	if !n.EventWindow.From.Equal(at("11:56:00")) || !n.EventWindow.To.Equal(at("12:01:00")) {
		t.Fatalf("event window %v – %v, want 11:56 – 12:01", n.EventWindow.From, n.EventWindow.To)
	}
	if !strings.HasPrefix(n.Summary, "[late] Exception seen 6 times in 5m on web-1") || n.Count != 6 || n.Group != "web-1" {
		t.Fatalf("summary %q count %d", n.Summary, n.Count)
	}
	a := v.alert(r.ID, "web-1")
	if a.State != Firing || !strings.HasPrefix(lastDetail(a), "[late] ") {
		t.Fatalf("alert %+v", a)
	}
	if got := testutil.ToFloat64(v.eng.met.lateTriggers); got != 1 {
		t.Fatalf("late triggers %v", got)
	}

	// More of the same burst while it fires: nothing more.
	v.setClock("12:04:10")
	v.deliver("Exception", "web-1", at("12:00:00").Unix(), 3)
	v.deliver("Exception", "web-1", at("12:01:00").Unix(), 3)
	v.tick()
	v.noMoreEvents(1)

	// The normal lifecycle: the window holding minutes 12:00–12:01 settles
	// false, and resolve_after later it resolves.
	for i := 0; i < 14 && v.alert(r.ID, "web-1").State == Firing; i++ {
		v.clk.Add(time.Minute)
		v.tick()
	}
	if evs := v.events(2); evs[1].Action != notify.Resolve {
		t.Fatalf("%s", actions(evs))
	}
	// Later entries of the same old minutes, within the horizon: the
	// window ended before the alert resolved, so on-call heard of it.
	v.deliver("Exception", "web-1", at("12:00:00").Unix(), 6)
	v.tick()
	v.noMoreEvents(2)
}

func TestOnTimeEntriesAreNotLate(t *testing.T) {
	v := newEnv(t) // 12:00:30
	v.startSender()
	v.rule(lateRule)
	v.tick()
	// Minute 12:00's entries at 12:01:40: within the 1m eval_delay.
	v.setClock("12:01:40")
	v.deliver("Exception", "web-1", at("12:00:00").Unix(), 6)
	if n := v.events(1)[0]; n.Late || n.EventWindow != nil || strings.HasPrefix(n.Summary, "[late]") {
		t.Fatalf("on-time trigger marked late: %+v", n)
	}
	if got := testutil.ToFloat64(v.eng.met.lateTriggers); got != 0 {
		t.Fatalf("late triggers %v", got)
	}
}

func TestLateEntriesPastTheHorizonAreCountedNotJudged(t *testing.T) {
	v := newEnv(t) // 12:00:30
	v.startSender()
	v.rule(lateRule)
	v.tick()
	v.setClock("13:05:00")
	// Minute 12:00 ended 64 minutes ago: past the 1h horizon.
	v.deliver("Exception", "web-1", at("12:00:00").Unix(), 6)
	v.deliver("Exception", "web-1", at("12:00:00").Unix(), 6)
	v.tick()
	v.noMoreEvents(0)
	if got := testutil.ToFloat64(v.eng.met.latePastHorizon); got != 2 {
		t.Fatalf("past-horizon entries %v, want 2", got)
	}
}

func TestBacklogAfterAnOutagePagesOnceForTheOldestBurst(t *testing.T) {
	v := newEnv(t) // 12:00:30
	v.startSender()
	r := v.rule(lateRule)
	v.tick()
	v.setClock("12:40:30")
	// 30 minutes of web-1's entries at once, with bursts at 12:02, 12:15
	// and 12:30 and a trickle between.
	for m := 0; m < 30; m++ {
		n := int64(1)
		if m == 2 || m == 15 || m == 30 {
			n = 6
		}
		v.deliver("Exception", "web-1", at("12:00:00").Unix()+int64(m)*60, n)
	}
	evs := v.events(1)
	if !evs[0].Late || !evs[0].EventWindow.To.Equal(at("12:03:00")) {
		t.Fatalf("want the late trigger of the window ending 12:02, got %+v", evs[0])
	}
	v.tick()
	v.noMoreEvents(1)
	if a := v.alert(r.ID, "web-1"); a.State != Firing {
		t.Fatalf("alert %+v", a)
	}
}

func TestLateDataDoesNotRetractAbsence(t *testing.T) {
	v := newEnv(t) // 12:00:30
	v.startSender()
	r := v.rule(`{"name":"hb","keywords":["heartbeat"],"condition":{"type":"absence","count":1,"window":"1m"},
		"group_by":"host","pagerduty":{"routing_key":"` + testKey + `"},"resolve_after":"0s"}`)
	v.setClock("12:01:30")
	for m := 0; m < 2; m++ {
		v.count("heartbeat", "web-1", "app", m, 1) // 12:00, 12:01
	}
	v.setClock("12:06:30") // minutes 12:02–12:04 empty: absent
	if evs := v.events(1); evs[0].Action != notify.Trigger {
		t.Fatalf("%s", actions(evs))
	}
	// The missing heartbeats of minutes before the judged one (12:04)
	// arrive late: the page stays, nothing more. (Had 12:04's come, the
	// judged window would hold it: resolved as usual.)
	for m := 2; m <= 3; m++ {
		v.deliver("heartbeat", "web-1", at("12:00:00").Unix()+int64(m)*60, 1)
	}
	v.noMoreEvents(1)
	if a := v.alert(r.ID, "web-1"); a.State != Firing {
		t.Fatalf("alert %+v", a)
	}
}

// TestChangeSeenInAnotherRulesBatchRoundIsJudgedOnTheNextTick: a batch
// round judges only the batch's rules, but reads every change marker; a
// rule whose keyword changed meanwhile must not be skipped as unchanged.
func TestChangeSeenInAnotherRulesBatchRoundIsJudgedOnTheNextTick(t *testing.T) {
	v := newEnv(t) // 12:00:30
	v.startSender()
	a := v.rule(`{"name":"a","keywords":["Alpha"],"condition":{"type":"threshold","count":5,"window":"5m"},"pagerduty":{"routing_key":"` + testKey + `"}}`)
	b := v.rule(`{"name":"b","keywords":["Beta"],"condition":{"type":"threshold","count":5,"window":"5m"},"pagerduty":{"routing_key":"` + testKey + `"}}`)
	v.tick()                                              // both judged, nothing changed since
	v.count("Beta", "web-1", "app", 0, 6)                 // its marker is written...
	v.deliver("Alpha", "web-1", at("12:00:00").Unix(), 1) // ...and read by Alpha's batch round
	if al := v.alert(b.ID, ""); al != nil {
		t.Fatalf("rule b judged in rule a's batch round: %+v", al)
	}
	v.tick() // same minute
	if al := v.alert(b.ID, ""); al == nil || al.State != Firing {
		t.Fatalf("rule b after the tick: %+v", al)
	}
	if al := v.alert(a.ID, ""); al != nil {
		t.Fatalf("rule a: %+v", al)
	}
}

// TestIncrementalTicksDecideLikeFullOnes: the same counts, rules and
// clock steps through an engine reading every count on every tick and one
// reading only what the change markers name: the same alerts.
func TestIncrementalTicksDecideLikeFullOnes(t *testing.T) {
	states := map[bool]string{}
	for _, full := range []bool{true, false} {
		v := newEnv(t)
		v.eng.noCache = full
		r := v.rule(javaRule)
		abs := v.rule(`{"name":"hb","keywords":["heartbeat"],"condition":{"type":"absence","count":1,"window":"2m"},"group_by":"host","pagerduty":{"routing_key":"` + testKey + `"}}`)
		var log []string
		for m := 0; m < 12; m++ {
			for s := 0; s < 3; s++ {
				if m < 6 {
					v.count("heartbeat", "db-1", "sys", 0, 1)
				}
				if m == 3 && s == 1 {
					v.count("Exception", "web-1", "app", 0, 7)
				}
				v.tick()
				for _, id := range []string{ID(r.ID, "web-1"), ID(abs.ID, "db-1")} {
					if al, err := v.store.Get(v.ctx, id); err == nil {
						log = append(log, fmt.Sprintf("%d.%d %s", m, s, al.State))
					}
				}
				v.clk.Add(20 * time.Second)
			}
		}
		states[full] = strings.Join(log, " ")
	}
	if states[true] != states[false] {
		t.Fatalf("full:        %s\nincremental: %s", states[true], states[false])
	}
}
