package timeinterval

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
)

func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	return loc
}

// nights is 22:00–06:00 Berlin wall clock, in two ranges as Alertmanager writes it.
var nights = Interval{Times: []TimeRange{{"22:00", "24:00"}, {"00:00", "06:00"}}, Location: "Europe/Berlin"}

func TestContainsFollowsTheWallClockAcrossDSTChanges(t *testing.T) {
	loc := berlin(t)
	weekendNights := nights
	weekendNights.Weekdays = []string{"saturday:sunday"}
	cases := []struct {
		name string
		iv   Interval
		at   time.Time
		want bool
	}{
		// 2026-03-29: clocks jump from 02:00 CET to 03:00 CEST.
		{"before the spring change, 01:59 CET", nights, time.Date(2026, 3, 29, 0, 59, 0, 0, time.UTC), true},
		{"just after the spring change, 03:00 CEST", nights, time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC), true},
		{"05:59 CEST is 03:59 UTC", nights, time.Date(2026, 3, 29, 3, 59, 0, 0, time.UTC), true},
		{"06:00 CEST is 04:00 UTC, past the end", nights, time.Date(2026, 3, 29, 4, 0, 0, 0, time.UTC), false},
		{"05:59 CET the day before is inside", nights, time.Date(2026, 3, 28, 4, 59, 0, 0, time.UTC), true},
		{"22:00 CEST the evening after is 20:00 UTC", nights, time.Date(2026, 3, 29, 20, 0, 0, 0, time.UTC), true},
		{"21:59 CEST is outside", nights, time.Date(2026, 3, 29, 19, 59, 0, 0, time.UTC), false},
		// 2026-10-25: clocks fall back from 03:00 CEST to 02:00 CET.
		{"02:30 CEST, first pass", nights, time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), true},
		{"02:30 CET, second pass", nights, time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC), true},
		{"05:59 CET is 04:59 UTC", nights, time.Date(2026, 10, 25, 4, 59, 0, 0, time.UTC), true},
		{"06:00 CET is 05:00 UTC, past the end", nights, time.Date(2026, 10, 25, 5, 0, 0, 0, time.UTC), false},
		{"the day before, 05:00 UTC was 07:00 CEST", nights, time.Date(2026, 10, 24, 5, 0, 0, 0, time.UTC), false},
		{"weekday of the local date: Sunday 00:30 CEST is Saturday 22:30 UTC", weekendNights, time.Date(2026, 3, 28, 22, 30, 0, 0, time.UTC), true},
		{"Monday 00:30 CEST is Sunday in UTC but Monday in Berlin", weekendNights, time.Date(2026, 3, 29, 22, 30, 0, 0, time.UTC), false},
		{"last day of the month, local", Interval{DaysOfMonth: []string{"-1"}, Location: "Europe/Berlin"}, time.Date(2026, 10, 30, 23, 30, 0, 0, time.UTC), true},
		{"the first of the month in Berlin is still the 31st in UTC", Interval{DaysOfMonth: []string{"1"}, Location: "Europe/Berlin"}, time.Date(2026, 10, 31, 23, 30, 0, 0, time.UTC), true},
		{"months by name", Interval{Months: []string{"march:april"}, Location: "Europe/Berlin"}, time.Date(2026, 3, 31, 22, 30, 0, 0, time.UTC), true},
		{"month of the local date", Interval{Months: []string{"march"}, Location: "Europe/Berlin"}, time.Date(2026, 3, 31, 22, 30, 0, 0, time.UTC), false},
		{"UTC without a location", Interval{Times: []TimeRange{{"09:00", "17:00"}}}, time.Date(2026, 3, 29, 16, 59, 0, 0, loc), true},
		{"whole month 1:-1", Interval{DaysOfMonth: []string{"1:-1"}}, time.Date(2026, 2, 28, 12, 0, 0, 0, time.UTC), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.iv.Contains(c.at)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("Contains(%s = %s Berlin) = %v, want %v", c.at.UTC().Format(time.RFC3339), c.at.In(loc).Format("Mon 2006-01-02 15:04 MST"), got, c.want)
			}
		})
	}
}

func TestDecodeNamesTheBadField(t *testing.T) {
	cases := []struct {
		name, body, field, msg string
	}{
		{"missing name", `{"time_intervals":[{"weekdays":["monday"]}]}`, "name", "required"},
		{"name with a slash", `{"name":"a/b","time_intervals":[{"weekdays":["monday"]}]}`, "name", "want letters"},
		{"no intervals", `{"name":"n","time_intervals":[]}`, "time_intervals", "at least one"},
		{"bad clock", `{"name":"n","time_intervals":[{"times":[{"start_time":"25:00","end_time":"26:00"}]}]}`, "time_intervals[0].times[0].start_time", "HH:MM"},
		{"end before start", `{"name":"n","time_intervals":[{"times":[{"start_time":"22:00","end_time":"06:00"}]}]}`, "time_intervals[0].times[0]", "not after"},
		{"bad weekday", `{"name":"n","time_intervals":[{"weekdays":["funday"]}]}`, "time_intervals[0].weekdays[0]", "funday"},
		{"backwards range", `{"name":"n","time_intervals":[{"months":["may:march"]}]}`, "time_intervals[0].months[0]", "ends before"},
		{"bad day", `{"name":"n","time_intervals":[{"days_of_month":["32"]}]}`, "time_intervals[0].days_of_month[0]", "from 1 to 31"},
		{"bad zone", `{"name":"n","time_intervals":[{"location":"Mars/Olympus"}]}`, "time_intervals[0].location", "time zone"},
		{"unknown field", `{"name":"n","time_intervals":[{"weekdays":["monday"]}],"colour":"red"}`, "colour", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errs := Decode([]byte(c.body), "")
			if !errs.Has(c.field) {
				t.Fatalf("errors %v: want one for field %q", errs, c.field)
			}
			if !strings.Contains(errs.Error(), c.msg) {
				t.Errorf("errors %v: want %q in the message", errs, c.msg)
			}
		})
	}
	ti, errs := Decode([]byte(`{"time_intervals":[{"times":[{"start_time":"22:00","end_time":"24:00"}],"weekdays":["Monday:friday"],"location":"Europe/Berlin"}]}`), "nights")
	if errs.Err() != nil || ti.Name != "nights" || len(ti.Intervals) != 1 {
		t.Fatalf("valid body: %+v, %v", ti, errs)
	}
}

func TestStoreKeepsIntervalsUpToTheLimit(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, Options{Max: 2}, nil)
	mk := func(name string) TimeInterval {
		return TimeInterval{Name: name, Intervals: []Interval{nights}}
	}
	if _, created, err := s.Put(ctx, mk("a")); err != nil || !created {
		t.Fatalf("put a: created %v, %v", created, err)
	}
	if _, _, err := s.Put(ctx, mk("b")); err != nil {
		t.Fatal(err)
	}
	if _, created, err := s.Put(ctx, mk("a")); err != nil || created {
		t.Fatalf("replace a: created %v, %v", created, err)
	}
	var le *LimitError
	if _, _, err := s.Put(ctx, mk("c")); !errors.As(err, &le) {
		t.Fatalf("third interval past a limit of 2: %v, want a LimitError", err)
	}
	m, err := s.Map(ctx)
	if err != nil || len(m) != 2 {
		t.Fatalf("map: %v, %v", m, err)
	}
	at := time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC)
	if !AnyContains(m, []string{"gone", "a"}, at) || AnyContains(m, []string{"gone"}, at) {
		t.Error("AnyContains: want inside for a, outside for a deleted name")
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

// BenchmarkContains is the engine's question per muted alert and round.
func BenchmarkContains(b *testing.B) {
	ti := TimeInterval{Name: "nights", Intervals: []Interval{nights, {Weekdays: []string{"saturday:sunday"}, Location: "Europe/Berlin"}}}
	ti.Prepare()
	at := time.Date(2026, 3, 29, 12, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		ti.Contains(at)
	}
}

func TestACorruptIntervalDoesNotHideTheOthers(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
	if _, _, err := s.Put(ctx, TimeInterval{Name: "ok", Intervals: []Interval{nights}}); err != nil {
		t.Fatal(err)
	}
	rdb.HSet(ctx, Key, "broken", "{not json")
	m, err := s.Map(ctx)
	if err != nil || len(m) != 1 || m["ok"] == nil {
		t.Errorf("map with a corrupt entry: %v, %v; want ok alone", m, err)
	}
}
