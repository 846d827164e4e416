package alert

import (
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/silence"
)

func TestDecide(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	rule := &rules.Rule{ID: "r1", Name: "n", Keywords: []string{"x"}, RepeatInterval: rules.Duration(time.Hour), ResolveAfter: rules.Duration(5 * time.Minute)}
	firing := &Alert{ID: "a", State: Firing, Notified: true, LastNotifiedAt: now.Add(-10 * time.Minute)}
	sil := &silence.Silence{ID: "s1"}
	with := func(a *Alert, fn func(*Alert)) *Alert { c := a.clone(); fn(c); return c }
	tests := []struct {
		name      string
		cur       *Alert
		cond      bool
		sil       *silence.Silence
		at        time.Time
		wantState State // "" means no change
		wantActs  string
	}{
		{"new episode pages", nil, true, nil, now, Firing, "trigger"},
		{"new episode silenced", nil, true, sil, now, Firing, ""},
		{"resolved fires again", with(firing, func(a *Alert) { a.State, a.Notified = Resolved, false }), true, nil, now, Firing, "trigger"},
		{"manual resolve waits", with(firing, func(a *Alert) { a.State, a.Rearm = Resolved, true }), true, nil, now, "", ""},
		{"manual resolve re-arms when false", with(firing, func(a *Alert) { a.State, a.Rearm = Resolved, true }), false, nil, now, Resolved, ""},
		{"still firing: nothing", firing, true, nil, now, "", ""},
		{"repeat after the interval", firing, true, nil, now.Add(50 * time.Minute), Firing, "trigger"},
		{"no repeat while silenced", with(firing, func(a *Alert) { a.SilencedBy = "s1" }), true, sil, now.Add(50 * time.Minute), "", ""},
		{"no repeat when acknowledged", with(firing, func(a *Alert) { a.State = Acknowledged }), true, nil, now.Add(50 * time.Minute), "", ""},
		{"silence ends before paging: page now", with(firing, func(a *Alert) { a.SilencedBy, a.Notified = "s1", false }), true, nil, now, Firing, "trigger"},
		{"turns false: remember since when", firing, false, nil, now, Firing, ""},
		{"false long enough: resolve", with(firing, func(a *Alert) { a.FalseSince = now.Add(-5 * time.Minute) }), false, nil, now, Resolved, "resolve"},
		{"false, not long enough", with(firing, func(a *Alert) { a.FalseSince = now.Add(-4 * time.Minute) }), false, nil, now, "", ""},
		{"silenced resolve sends nothing", with(firing, func(a *Alert) { a.Notified, a.FalseSince = false, now.Add(-time.Hour) }), false, nil, now, Resolved, ""},
		{"true again clears false_since", with(firing, func(a *Alert) { a.FalseSince = now.Add(-time.Minute) }), true, nil, now, Firing, ""},
		{"nothing and false: nothing", nil, false, nil, now, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, acts := decide(tt.cur, input{rule: rule, o: obs{cond: tt.cond, count: 7}, silence: tt.sil, now: tt.at, summary: "s"})
			if tt.wantState == "" {
				if next != nil {
					t.Fatalf("want no change, got %+v %v", next, acts)
				}
				return
			}
			if next == nil || next.State != tt.wantState || strings.Join(acts, ",") != tt.wantActs {
				t.Fatalf("got %+v acts %v", next, acts)
			}
			if next.UpdatedAt != tt.at.UTC() {
				t.Fatalf("updated_at %v", next.UpdatedAt)
			}
		})
	}
}

func TestHistoryIsBounded(t *testing.T) {
	a := &Alert{}
	for i := 0; i < 3*MaxHistory; i++ {
		a.record(time.Unix(int64(i), 0), "e", "")
	}
	if len(a.History) != MaxHistory || a.History[0].At.Unix() != 2*MaxHistory {
		t.Fatalf("history of %d starting at %v", len(a.History), a.History[0].At)
	}
}

func TestIDIsStablePerRuleAndGroup(t *testing.T) {
	if ID("r", "web-1") != ID("r", "web-1") || ID("r", "web-1") == ID("r", "web-2") || ID("r1", "") == ID("r", "1") {
		t.Fatal("ids must be stable and distinct")
	}
}

func TestDecideWithFor(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 30, 0, time.UTC)
	nowMin := floorMinute(now.Unix())
	rule := &rules.Rule{ID: "r1", Name: "n", Keywords: []string{"x"}, For: rules.Duration(2 * time.Minute), ResolveAfter: rules.Duration(5 * time.Minute)}
	pendingSince := func(at time.Time) *Alert { return &Alert{ID: "a", State: Pending, PendingSince: at} }
	resolved := &Alert{ID: "a", State: Resolved}
	// holds: bit k is the window ending k minutes before 12:00 (the
	// current, partial minute); the settled minute is 11:58 (bit 2).
	tests := []struct {
		name      string
		cur       *Alert
		early     bool
		holds     uint64
		sil       *silence.Silence
		wantState State // "" means no change
		wantActs  string
		wantEvent string
	}{
		{"first match: pending, not paged", nil, true, 0b001, nil, Pending, "", "pending"},
		{"match after a resolved episode: pending", resolved, true, 0b001, nil, Pending, "", "pending"},
		{"holding only on an older window does not start a spell", nil, false, 0b110, nil, "", "", ""},
		{"held under for: still pending", pendingSince(now.Add(-time.Minute)), true, 0b111, nil, "", "", ""},
		{"held 2m in whole minutes: pages", pendingSince(now.Add(-2 * time.Minute)), true, 0b111, nil, Firing, "trigger", "firing"},
		// 11:58:59 to 12:00:30 is two minute boundaries: the minutes count, not the seconds.
		{"held since late in the minute: pages on the minute", pendingSince(now.Add(-91 * time.Second)), true, 0b111, nil, Firing, "trigger", "firing"},
		{"held 2m but silenced: fires unpaged", pendingSince(now.Add(-2 * time.Minute)), true, 0b111, &silence.Silence{ID: "s1"}, Firing, "", "silenced"},
		{"partial minute below the threshold at a boundary: still pending", pendingSince(now.Add(-2 * time.Minute)), false, 0b110, nil, "", "", ""},
		{"a false window not yet settled: still pending", pendingSince(now.Add(-2 * time.Minute)), true, 0b101, nil, "", "", ""},
		{"settled false since the spell began: dropped without a resolve", pendingSince(now.Add(-2 * time.Minute)), false, 0b010, nil, Resolved, "", "dropped"},
		{"settled false, the current window holds: a new spell", pendingSince(now.Add(-2 * time.Minute)), true, 0b011, nil, Pending, "", "pending"},
		{"nothing holds any more, settled false: dropped", pendingSince(now.Add(-2 * time.Minute)), false, 0, nil, Resolved, "", "dropped"},
		{"a settled false window before the spell began: still pending", pendingSince(now.Add(-time.Minute)), true, 0b011, nil, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := obs{cond: tt.holds != 0, early: tt.early, holds: tt.holds, at: nowMin, settled: nowMin - 120, count: 7}
			next, acts := decide(tt.cur, input{rule: rule, o: o, silence: tt.sil, now: now, summary: "s"})
			if tt.wantState == "" {
				if next != nil {
					t.Fatalf("want no change, got %+v %v", next, acts)
				}
				return
			}
			if next == nil || next.State != tt.wantState || strings.Join(acts, ",") != tt.wantActs || lastEvent(next).Event != tt.wantEvent {
				t.Fatalf("got %+v acts %v", next, acts)
			}
			if next.Notified != (tt.wantActs == "trigger") {
				t.Fatalf("notified %v", next.Notified)
			}
		})
	}
}
