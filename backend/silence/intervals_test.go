package silence

import (
	"context"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/timeinterval"
	"github.com/keyalert/keyalert/harness/redistest"
)

// TestTimeIntervalsNarrowSilencesAndMuteRules: a silence naming "nights"
// (22:00–06:00 Berlin) mutes only at night, on Berlin's wall clock across
// the spring and autumn changes; a rule's mute_time_intervals mutes it the
// same way, as the pseudo-silence "interval:nights".
func TestTimeIntervalsNarrowSilencesAndMuteRules(t *testing.T) {
	if _, err := time.LoadLocation("Europe/Berlin"); err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	ivs := timeinterval.NewStore(rdb, timeinterval.Options{}, nil)
	nights := timeinterval.TimeInterval{Name: "nights", Intervals: []timeinterval.Interval{{
		Times:    []timeinterval.TimeRange{{Start: "22:00", End: "24:00"}, {Start: "00:00", End: "06:00"}},
		Location: "Europe/Berlin"}}}
	if _, _, err := ivs.Put(ctx, nights); err != nil {
		t.Fatal(err)
	}
	st := NewStore(rdb, nil, nil)
	st.UseIntervals(ivs)
	if _, err := st.Version(ctx); err != nil { // loads the intervals, as the engine's round does
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	sil := Silence{ID: "s1", Host: "web-12", TimeIntervals: []string{"nights"}, Start: start, End: start.AddDate(1, 0, 0)}
	muted := &rules.Rule{ID: "r1", Name: "batch errors", MuteTimeIntervals: []string{"nights"}}
	plain := &rules.Rule{ID: "r2", Name: "other"}
	web12, web13 := Target{RuleID: "r2", Host: "web-12"}, Target{RuleID: "r2", Host: "web-13"}

	tests := []struct {
		name   string
		rule   *rules.Rule
		target Target
		at     time.Time
		want   string // silence id, "" none
	}{
		{"night before the spring change (01:30 CET)", plain, web12, time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC), "s1"},
		{"05:30 CEST, the night after the jump", plain, web12, time.Date(2026, 3, 29, 3, 30, 0, 0, time.UTC), "s1"},
		{"06:30 CEST is day: the silence does not mute", plain, web12, time.Date(2026, 3, 29, 4, 30, 0, 0, time.UTC), ""},
		{"05:30 CET after the autumn change", plain, web12, time.Date(2026, 10, 25, 4, 30, 0, 0, time.UTC), "s1"},
		{"06:30 CET is day", plain, web12, time.Date(2026, 10, 25, 5, 30, 0, 0, time.UTC), ""},
		{"a host the silence does not name", plain, web13, time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC), ""},
		{"the rule's mute interval at night", muted, Target{RuleID: "r1", Host: "web-13"}, time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC), "interval:nights"},
		{"the rule pages by day", muted, Target{RuleID: "r1", Host: "web-13"}, time.Date(2026, 10, 25, 12, 0, 0, 0, time.UTC), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := st.Matching([]Silence{sil}, tt.rule, tt.target, tt.at)
			id := ""
			if got != nil {
				id = got.ID
			}
			if id != tt.want {
				t.Errorf("Matching at %s: %q, want %q", tt.at.Format(time.RFC3339), id, tt.want)
			}
		})
	}

	// An interval deleted since mutes nothing (rather than everything).
	if err := ivs.Delete(ctx, "nights"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Version(ctx); err != nil {
		t.Fatal(err)
	}
	night := time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC)
	if got := st.Matching([]Silence{sil}, muted, Target{RuleID: "r1", Host: "web-12"}, night); got != nil {
		t.Errorf("after the interval's deletion: muted by %q", got.ID)
	}
}

func TestDecodeChecksTimeIntervalNames(t *testing.T) {
	_, errs := Decode([]byte(`{"host":"h","time_intervals":["nights","bad/name"],"end":"2025-03-01T14:00:00Z","author":"a"}`), t0)
	if !errs.Has("time_intervals[1]") || errs.Has("time_intervals[0]") {
		t.Errorf("errors %v: want time_intervals[1] only", errs)
	}
}
