package alert

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/harness/logbuf"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// perHostRule fires per web host at 5 in 5m; resolve_after is long so that
// only a retirement can resolve within the test.
const perHostRule = `{"name":"per host","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},
	"group_by":"host","filters":{"host":"web-*"},"pagerduty":{"routing_key":"` + testKey + `"},"resolve_after":"1h"}`

// notesByGroup lists each alert's notifications in order: the outbox keeps
// the order per dedup key only.
func notesByGroup(evs []notify.Notification) map[string]string {
	out := map[string]string{}
	for _, e := range evs {
		if out[e.Group] != "" {
			out[e.Group] += ","
		}
		out[e.Group] += string(e.Action)
	}
	return out
}

func lastEvent(a *Alert) Event {
	if a == nil || len(a.History) == 0 {
		return Event{}
	}
	return a.History[len(a.History)-1]
}

func TestRuleEditRetiresAlertsItNoLongerJudges(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(r *rules.Rule)
		notes map[string]string // per group, after the edit's tick
		// retired groups and the reason their history gives.
		retired map[string]string
		firing  []string // groups firing after the edit
	}{
		{
			name:    "group_by host to none resolves each host's alert, then the fleet-wide one fires",
			edit:    func(r *rules.Rule) { r.GroupBy = rules.GroupNone },
			notes:   map[string]string{"web-1": "trigger,resolve", "web-2": "trigger,resolve", "": "trigger"},
			retired: map[string]string{"web-1": "rule changed: group_by host → none", "web-2": "rule changed: group_by host → none"},
			firing:  []string{""},
		},
		{
			name:    "group_by host to tag resolves each host's alert, then each tag's fires",
			edit:    func(r *rules.Rule) { r.GroupBy = rules.GroupTag },
			notes:   map[string]string{"web-1": "trigger,resolve", "web-2": "trigger,resolve", "app": "trigger"},
			retired: map[string]string{"web-1": "rule changed: group_by host → tag", "web-2": "rule changed: group_by host → tag"},
			firing:  []string{"app"},
		},
		{
			name:    "a filter that excludes a firing host resolves it",
			edit:    func(r *rules.Rule) { r.Filters.Host = "web-2*" },
			notes:   map[string]string{"web-1": "trigger,resolve", "web-2": "trigger,resolve,trigger"},
			retired: map[string]string{"web-1": "rule changed: filters host=web-* → host=web-2*"},
			firing:  []string{"web-2"},
		},
		{
			name:    "a keyword change resolves alerts the new keywords do not hold for",
			edit:    func(r *rules.Rule) { r.Keywords = []string{"Error"} },
			notes:   map[string]string{"web-1": "trigger,resolve", "web-2": "trigger,resolve"},
			retired: map[string]string{"web-1": "rule changed: keywords Exception → Error", "web-2": "rule changed: keywords Exception → Error"},
		},
		{
			name:  "a condition change starts a new episode where the new condition holds",
			edit:  func(r *rules.Rule) { r.Condition.Count = 8 },
			notes: map[string]string{"web-1": "trigger,resolve,trigger", "web-2": "trigger,resolve,trigger"},
			retired: map[string]string{"web-1": "rule changed: condition count >= 5 over 5m → count >= 8 over 5m",
				"web-2": "rule changed: condition count >= 5 over 5m → count >= 8 over 5m"},
			firing: []string{"web-1", "web-2"},
		},
		{
			name: "a name, severity or resolve_after change keeps the alerts",
			edit: func(r *rules.Rule) {
				r.Name, r.Severity, r.ResolveAfter = "renamed", rules.Warning, rules.Duration(time.Minute)
			},
			notes:  map[string]string{"web-1": "trigger", "web-2": "trigger"},
			firing: []string{"web-1", "web-2"},
		},
		{
			name:    "disabling resolves every alert",
			edit:    func(r *rules.Rule) { r.Enabled = false },
			notes:   map[string]string{"web-1": "trigger,resolve", "web-2": "trigger,resolve"},
			retired: map[string]string{"web-1": "rule deleted or disabled", "web-2": "rule deleted or disabled"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newEnv(t)
			v.startSender()
			var logs logbuf.Buffer
			v.eng.c.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			r := v.rule(perHostRule)
			v.count("Exception", "web-1", "app", 0, 10)
			v.count("Exception", "web-2", "app", 0, 10)
			v.tick()
			v.events(2)

			tt.edit(&r)
			if _, err := v.rules.Update(v.ctx, r.ID, r); err != nil {
				t.Fatal(err)
			}
			v.clk.Add(10 * time.Second)
			v.tick()
			want := 0
			for _, n := range tt.notes {
				want += strings.Count(n, ",") + 1
			}
			evs := v.events(want)
			v.noMoreEvents(want)
			if got := notesByGroup(evs); len(got) != len(tt.notes) || !mapsEqual(got, tt.notes) {
				t.Fatalf("notifications per group %v, want %v", got, tt.notes)
			}
			for g, reason := range tt.retired {
				a := v.alert(r.ID, g)
				// A group that fires again under the new rule has the reason
				// just before its new episode.
				h := a.History
				i := slices.IndexFunc(h, func(e Event) bool { return e.Event == "resolved" })
				if i < 0 || h[i].Detail != reason {
					t.Errorf("%s: history %+v, want a resolve for %q", g, h, reason)
				}
				if line := fmt.Sprintf("level=INFO msg=\"alert resolved\" alert_id=%s rule_id=%s group=%s reason=%q", a.ID, r.ID, g, reason); !strings.Contains(logs.String(), line) {
					t.Errorf("no log line %s in\n%s", line, logs.String())
				}
			}
			var firing []string
			for _, a := range v.listAlerts(Firing) {
				firing = append(firing, a.Group)
			}
			slices.Sort(firing)
			if !slices.Equal(firing, tt.firing) {
				t.Fatalf("firing groups %q, want %q", firing, tt.firing)
			}
			// Nothing is left tracked that no evaluation would look at.
			v.clk.Add(time.Minute)
			v.tick()
			v.noMoreEvents(want)
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return len(a) == len(b)
}

func (v *env) listAlerts(st State) []*Alert {
	v.t.Helper()
	list, err := v.store.List(v.ctx, st, 0)
	if err != nil {
		v.t.Fatal(err)
	}
	return list
}

// An absence rule fires for a host that stopped reporting; a filter that no
// longer covers the host used to leave that alert firing for good, since the
// host's absence is all the new rule sees of it.
func TestFilterEditRetiresAnAbsenceAlert(t *testing.T) {
	v := newEnv(t)
	v.startSender()
	r := v.rule(`{"name":"heartbeat","keywords":["heartbeat ok"],"condition":{"type":"absence","window":"2m"},
		"group_by":"host","pagerduty":{"routing_key":"` + testKey + `"},"resolve_after":"1m"}`)
	v.count("heartbeat ok", "web-1", "", 0, 1)
	v.clk.Add(4 * time.Minute) // past the first settled window (12:01–12:02); web-1 reported before it
	v.tick()
	if a := v.alert(r.ID, "web-1"); a == nil || a.State != Firing {
		t.Fatalf("absence alert %+v", a)
	}
	r.Filters.Host = "db-*"
	if _, err := v.rules.Update(v.ctx, r.ID, r); err != nil {
		t.Fatal(err)
	}
	v.clk.Add(10 * time.Second)
	v.tick()
	if a := v.alert(r.ID, "web-1"); a.State != Resolved || lastEvent(a).Detail != "rule changed: filters none → host=db-*" {
		t.Fatalf("alert %s, last event %+v", a.State, lastEvent(a))
	}
	if evs := v.events(2); evs[1].Action != notify.Resolve || evs[1].Target != testKey {
		t.Fatalf("%s", actions(evs))
	}
}

// Alerts stored before shapes were recorded have no condition on them; they
// are judged on group_by and keywords, which they always had.
func TestAlertWithoutARecordedShapeIsJudgedOnGroupByAndKeywords(t *testing.T) {
	r := &rules.Rule{Keywords: []string{"Exception"}, GroupBy: rules.GroupHost, Filters: rules.Filters{Host: "web-*"},
		Condition: rules.Condition{Type: rules.Threshold, Count: 5}}
	legacy := &Alert{GroupBy: rules.GroupHost, Keywords: r.Keywords, KeywordIDs: r.KeywordIDs()}
	if d := shapeChange(legacy, r, r.KeywordIDs()); d != "" {
		t.Fatalf("legacy alert judged changed: %s", d)
	}
	r.GroupBy = rules.GroupNone
	if d := shapeChange(legacy, r, r.KeywordIDs()); d != "group_by host → none" {
		t.Fatalf("change %q", d)
	}
}

func TestForKeepsTheAlertPendingUntilTheConditionHeld(t *testing.T) {
	tests := []struct {
		name string
		held int // minutes the condition holds from the first match
		// state after the tick of each minute 0, 1, 2, 3, 4 (at :30)
		states []State
		pages  int
		last   string // the last history event
	}{
		{"held 2m: pages at the third minute", 5, []State{Pending, Pending, Firing, Firing, Firing}, 1, "firing"},
		// Dropped only once a window since the spell began is settled
		// false: minute 2's window settles at 12:04 (1m eval_delay).
		{"stops after 2 minutes: dropped once that is settled, never paged", 2, []State{Pending, Pending, Pending, Pending, Resolved}, 0, "dropped"},
		{"stops at once: dropped once that is settled", 1, []State{Pending, Pending, Pending, Resolved, Resolved}, 0, "dropped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newEnv(t)
			v.startSender()
			r := v.rule(`{"name":"held","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"1m"},
				"group_by":"host","for":"2m","pagerduty":{"routing_key":"` + testKey + `"},"resolve_after":"1h"}`)
			for m, want := range tt.states {
				if m < tt.held {
					v.count("Exception", "web-1", "", 0, 6)
				}
				v.tick()
				a := v.alert(r.ID, "web-1")
				if a == nil || a.State != want {
					t.Fatalf("minute %d: alert %+v, want %s", m, a, want)
				}
				if m == 0 {
					if l := v.listAlerts(Pending); len(l) != 1 || l[0].ID != a.ID || a.PendingSince.IsZero() {
						t.Fatalf("pending list %+v", l)
					}
					if g := testutil.ToFloat64(v.eng.met.alerts.WithLabelValues(string(Pending))); g != 1 {
						t.Fatalf("pending gauge %v", g)
					}
					if _, err := v.store.Ack(v.ctx, a.ID, "ana"); err == nil {
						t.Fatal("acknowledged an alert that never paged")
					}
				}
				v.clk.Add(time.Minute)
			}
			a := v.alert(r.ID, "web-1")
			if lastEvent(a).Event != tt.last || a.History[0].Event != "pending" {
				t.Fatalf("history %+v", a.History)
			}
			v.noMoreEvents(tt.pages)
			if tt.pages > 0 && v.recv.Events()[0].Action != notify.Trigger {
				t.Fatalf("%s", actions(v.recv.Events()))
			}
			if g := testutil.ToFloat64(v.eng.met.alerts.WithLabelValues(string(Pending))); g != 0 {
				t.Fatalf("pending gauge %v at the end", g)
			}
		})
	}
}

// TestForHoldsAcrossAMinuteBoundary: a tick just after a minute boundary
// sees a partial minute without matches yet; that must neither drop the
// pending spell nor delay the page past the minute the condition held for.
func TestForHoldsAcrossAMinuteBoundary(t *testing.T) {
	v := newEnv(t) // 12:00:30
	v.startSender()
	r := v.rule(`{"name":"held","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"1m"},
		"group_by":"host","for":"2m","pagerduty":{"routing_key":"` + testKey + `"},"resolve_after":"1h"}`)
	v.clk.Add(10 * time.Second) // 12:00:40
	steps := []struct {
		count bool // 6 matches in the current minute before the tick
		next  time.Duration
		want  State
	}{
		{true, 20 * time.Second, Pending},  // 12:00:40: pending
		{false, 50 * time.Second, Pending}, // 12:01:00: the partial minute has none yet (before: dropped)
		{true, 10 * time.Second, Pending},  // 12:01:50
		{false, 50 * time.Second, Pending}, // 12:02:00
		{true, 0, Firing},                  // 12:02:50: windows 12:00 (settled), 12:01, 12:02 held
	}
	for i, st := range steps {
		if st.count {
			v.count("Exception", "web-1", "app", 0, 6)
		}
		v.tick()
		if a := v.alert(r.ID, "web-1"); a == nil || a.State != st.want {
			t.Fatalf("step %d at %s: alert %+v, want %s", i, v.clk.Now().Format("15:04:05"), a, st.want)
		}
		v.clk.Add(st.next)
	}
	v.noMoreEvents(1)
}

func TestEditingAPendingAlertsRuleDropsItSilently(t *testing.T) {
	v := newEnv(t)
	v.startSender()
	r := v.rule(`{"name":"held","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"1m"},
		"group_by":"host","for":"2m","pagerduty":{"routing_key":"` + testKey + `"}}`)
	v.count("Exception", "web-1", "", 0, 6)
	v.tick()
	r.GroupBy = rules.GroupNone
	if _, err := v.rules.Update(v.ctx, r.ID, r); err != nil {
		t.Fatal(err)
	}
	v.clk.Add(10 * time.Second)
	v.tick()
	if a := v.alert(r.ID, "web-1"); a.State != Resolved || lastEvent(a).Event != "dropped" {
		t.Fatalf("per-host alert %s %+v", a.State, lastEvent(a))
	}
	if a := v.alert(r.ID, ""); a == nil || a.State != Pending {
		t.Fatalf("fleet-wide alert %+v", a)
	}
	v.noMoreEvents(0)
}
