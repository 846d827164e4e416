package alert

import (
	"strings"
	"testing"
)

const spikeKey = `,"pagerduty":{"routing_key":"` + testKey + `"}}`

// A spike is judged only when the group's counts span at least half the
// baseline (MinBaselineCoverage): a new keyword, a re-enabled rule or a new
// host has nothing to spike against.
func TestSpikeNeedsACoveredBaseline(t *testing.T) {
	tests := []struct {
		name      string
		baseFrom  int // oldest minute back with baseline counts; 0: none
		wantPaged bool
	}{
		{"empty baseline: no page on min_count alone", 0, false},
		{"baseline counts only in its last 40%: no page", 5, false},
		{"baseline counts over half of it: page", 7, true},
		{"baseline fully covered: page", 11, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newEnv(t)
			// Window: minutes back 0-1; baseline: back 2-11.
			r := v.rule(`{"name":"spike","keywords":["Timeout"],"condition":{"type":"spike","window":"2m","factor":3,"min_count":10,"baseline":"10m"}` + spikeKey)
			for back := 2; back <= tt.baseFrom; back++ {
				v.count("Timeout", "h", "", back, 1)
			}
			v.count("Timeout", "h", "", 0, 50)
			v.tick()
			a := v.alert(r.ID, "")
			if got := a != nil && a.State == Firing; got != tt.wantPaged {
				t.Fatalf("fired = %v, want %v (%+v)", got, tt.wantPaged, a)
			}
		})
	}
}

// The same window a day earlier (or the median of the last n days) is the
// baseline of a seasonal spike: the usual busy hour does not page, a real
// anomaly does.
func TestSeasonalSpikeComparesWithTheSameWindowOnPastDays(t *testing.T) {
	const (
		flat     = `{"name":"flat","keywords":["Timeout"],"condition":{"type":"spike","window":"5m","factor":2,"min_count":10,"baseline":"1h"}` + spikeKey
		seasonal = `{"name":"daily","keywords":["Timeout"],"condition":{"type":"spike","window":"5m","factor":2,"min_count":10,"seasonal":{"period":"1d","n":3}}` + spikeKey
		day      = 24 * 60
	)
	tests := []struct {
		name         string
		pastDays     int   // days back whose same window holds the busy-hour rate
		now          int64 // per minute in the window today
		flat, daily  bool  // paged
		dailySummary string
	}{
		{"daily rhythm doubling at its usual hour", 3, 20, true, false, ""},
		{"real anomaly at the usual hour", 3, 60, true, true, "3.0x the usual 100 (median of the last 3 × 1d)"},
		{"one past day of three: not judged", 1, 60, true, false, ""},
		{"two past days of three: judged", 2, 60, true, true, "3.0x the usual 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newEnv(t)
			rf, rd := v.rule(flat), v.rule(seasonal)
			// The quiet rate, 10/min, in the hour before the window.
			for back := 5; back < 65; back++ {
				v.count("Timeout", "h", "", back, 10)
			}
			// The busy hour, 20/min, in the same window on past days.
			for d := 1; d <= tt.pastDays; d++ {
				for back := 0; back < 5; back++ {
					v.count("Timeout", "h", "", d*day+back, 20)
				}
			}
			for back := 0; back < 5; back++ {
				v.count("Timeout", "h", "", back, tt.now)
			}
			v.tick()
			for _, c := range []struct {
				id   string
				want bool
			}{{rf.ID, tt.flat}, {rd.ID, tt.daily}} {
				a := v.alert(c.id, "")
				if got := a != nil && a.State == Firing; got != c.want {
					t.Errorf("rule %s fired = %v, want %v (%+v)", c.id, got, c.want, a)
				}
			}
			if tt.dailySummary != "" {
				if a := v.alert(rd.ID, ""); a == nil || !strings.Contains(a.History[0].Detail, tt.dailySummary) {
					t.Fatalf("summary of %+v, want %q", a, tt.dailySummary)
				}
			}
			// A second tick in the same minute reads the past days from the cache.
			v.tick()
		})
	}
}
