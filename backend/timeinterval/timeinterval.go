// Package timeinterval holds named recurring time intervals ("nights",
// "weekends") like Alertmanager's time_intervals: weekdays, times of day,
// days of the month and months, read on the wall clock of a time zone. A
// silence or a rule that names intervals mutes only inside them.
package timeinterval

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/keyalert/keyalert/backend/validate"
)

// TimeInterval is a named list of intervals; a time is inside it when it is
// inside any of them.
type TimeInterval struct {
	Name      string     `json:"name"`
	Intervals []Interval `json:"time_intervals"`
	CreatedAt time.Time  `json:"created_at,omitzero"`
	UpdatedAt time.Time  `json:"updated_at,omitzero"`

	// compiled holds Intervals ready to match (nil for one that does not
	// compile), filled by Prepare: loading a time zone reads the zone
	// database, which is not done per alert and round.
	compiled []*compiled
}

// Prepare compiles the intervals once, so Contains need not; the store
// prepares what it reads.
func (ti *TimeInterval) Prepare() {
	ti.compiled = make([]*compiled, len(ti.Intervals))
	for i, iv := range ti.Intervals {
		ti.compiled[i], _ = iv.compile()
	}
}

// Interval is inside when every field that is set matches (an empty field
// matches everything), all on the wall clock of Location.
type Interval struct {
	// Times are ranges of the day, "HH:MM" start inclusive, end exclusive
	// ("24:00" ends at midnight).
	Times []TimeRange `json:"times,omitempty"`
	// Weekdays are days or ranges: "monday", "monday:friday",
	// "saturday:sunday" (a range may wrap around the week's end).
	Weekdays []string `json:"weekdays,omitempty"`
	// DaysOfMonth are days or ranges, negative ones counting from the end of
	// the month: "1", "1:5", "-1" (the last day), "-7:-1".
	DaysOfMonth []string `json:"days_of_month,omitempty"`
	// Months are months or ranges by name or number: "january:march", "12".
	Months []string `json:"months,omitempty"`
	// Location is an IANA time zone ("Europe/Berlin"); empty: UTC.
	Location string `json:"location,omitempty"`
}

// TimeRange is one range of the day.
type TimeRange struct {
	Start string `json:"start_time"`
	End   string `json:"end_time"`
}

// Limits of an interval's fields.
const (
	MaxNameLen   = 100
	MaxIntervals = 20
	MaxRanges    = 50
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// ValidName reports whether name can name an interval: letters, digits, '_',
// '.', '-', not starting with a punctuation mark, at most MaxNameLen bytes
// (it is a URL path segment).
func ValidName(name string) bool { return len(name) <= MaxNameLen && nameRE.MatchString(name) }

var weekdays = map[string]int{"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6}

var months = map[string]int{"january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6,
	"july": 7, "august": 8, "september": 9, "october": 10, "november": 11, "december": 12}

// compiled is an Interval ready to match.
type compiled struct {
	times    [][2]int // minutes of the day, [start, end)
	weekdays [][2]int
	mdays    [][2]int // may be negative
	months   [][2]int
	loc      *time.Location
}

// Contains reports whether t is inside any of the intervals. Intervals that
// do not compile (never stored: Decode checks them) are never inside.
func (ti *TimeInterval) Contains(t time.Time) bool {
	if len(ti.compiled) != len(ti.Intervals) {
		ti.Prepare()
	}
	for _, c := range ti.compiled {
		if c != nil && c.contains(t) {
			return true
		}
	}
	return false
}

// Contains reports whether t is inside the interval.
func (iv Interval) Contains(t time.Time) (bool, error) {
	c, err := iv.compile()
	if err != nil {
		return false, err
	}
	return c.contains(t), nil
}

func (c *compiled) contains(t time.Time) bool {
	t = t.In(c.loc)
	if len(c.times) > 0 {
		m := t.Hour()*60 + t.Minute()
		if !inAny(c.times, m, true) {
			return false
		}
	}
	if len(c.weekdays) > 0 && !inAny(c.weekdays, int(t.Weekday()), false) {
		return false
	}
	if len(c.months) > 0 && !inAny(c.months, int(t.Month()), false) {
		return false
	}
	if len(c.mdays) > 0 {
		// Days of a month counted from its end: -1 is the last day.
		last := time.Date(t.Year(), t.Month()+1, 0, 12, 0, 0, 0, c.loc).Day()
		d, ok := t.Day(), false
		for _, r := range c.mdays {
			lo, hi := r[0], r[1]
			if lo < 0 {
				lo = last + 1 + lo
			}
			if hi < 0 {
				hi = last + 1 + hi
			}
			if d >= lo && d <= hi {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// inAny: half-open ranges for minutes of the day, closed ones otherwise.
func inAny(rs [][2]int, v int, halfOpen bool) bool {
	for _, r := range rs {
		if v >= r[0] && (v < r[1] || !halfOpen && v == r[1]) {
			return true
		}
	}
	return false
}

func (iv Interval) compile() (*compiled, error) {
	c := &compiled{loc: time.UTC}
	if iv.Location != "" {
		loc, err := time.LoadLocation(iv.Location)
		if err != nil {
			return nil, fmt.Errorf("location: %q is not a known IANA time zone", iv.Location)
		}
		c.loc = loc
	}
	for i, tr := range iv.Times {
		s, err1 := clock(tr.Start)
		e, err2 := clock(tr.End)
		switch {
		case err1 != nil:
			return nil, fmt.Errorf("times[%d].start_time: %w", i, err1)
		case err2 != nil:
			return nil, fmt.Errorf("times[%d].end_time: %w", i, err2)
		case e <= s:
			return nil, fmt.Errorf("times[%d]: end_time %s is not after start_time %s", i, tr.End, tr.Start)
		}
		c.times = append(c.times, [2]int{s, e})
	}
	var err error
	if c.weekdays, err = ranges("weekdays", iv.Weekdays, weekdays, 0, 6, false); err != nil {
		return nil, err
	}
	if c.months, err = ranges("months", iv.Months, months, 1, 12, false); err != nil {
		return nil, err
	}
	if c.mdays, err = ranges("days_of_month", iv.DaysOfMonth, nil, 1, 31, true); err != nil {
		return nil, err
	}
	return c, nil
}

// clock parses "HH:MM" into minutes of the day; "24:00" is the day's end.
func clock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || len(h) != 2 || len(m) != 2 || err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && mm != 0 {
		return 0, fmt.Errorf("%q: want HH:MM from 00:00 to 24:00", s)
	}
	return hh*60 + mm, nil
}

// ranges parses "a" or "a:b" items by name (names) or number in [lo, hi];
// negative numbers count from the end when negOK.
func ranges(field string, items []string, names map[string]int, lo, hi int, negOK bool) ([][2]int, error) {
	var out [][2]int
	one := func(s string) (int, bool) {
		if v, ok := names[strings.ToLower(strings.TrimSpace(s))]; ok {
			return v, true
		}
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return 0, false
		}
		if v >= lo && v <= hi || negOK && v <= -1 && v >= -hi {
			return v, true
		}
		return 0, false
	}
	for i, it := range items {
		a, b, isRange := strings.Cut(it, ":")
		if !isRange {
			b = a
		}
		x, ok1 := one(a)
		y, ok2 := one(b)
		if !ok1 || !ok2 {
			want := fmt.Sprintf("a number from %d to %d", lo, hi)
			if names != nil {
				want = "a name or " + want
			}
			if negOK {
				want += fmt.Sprintf(" or from -%d to -1", hi)
			}
			return nil, fmt.Errorf("%s[%d]: %q: want %s, or a range a:b of them", field, i, it, want)
		}
		// A week wraps around ("saturday:sunday"); mixed signs of days of
		// the month ("1:-1", the whole month) are resolved per month.
		if field == "weekdays" && y < x {
			out = append(out, [2]int{x, hi}, [2]int{lo, y})
			continue
		}
		if (x < 0) == (y < 0) && y < x {
			return nil, fmt.Errorf("%s[%d]: %q: the range ends before it starts", field, i, it)
		}
		out = append(out, [2]int{x, y})
	}
	return out, nil
}

// Decode parses and validates a time interval from a JSON body, every
// problem naming its field. A name in the URL (PUT) wins over the body's.
func Decode(body []byte, name string) (TimeInterval, validate.Errors) {
	var (
		errs     validate.Errors
		ti       TimeInterval
		raw      json.RawMessage
		ignoredC json.RawMessage
		ignoredU json.RawMessage
	)
	validate.Object(body, "", map[string]any{
		"name": &ti.Name, "time_intervals": &raw, "created_at": &ignoredC, "updated_at": &ignoredU,
	}, &errs)
	if name != "" {
		ti.Name = name
	}
	switch {
	case errs.Has("name"):
	case ti.Name == "":
		errs.Add("name", "required")
	case !ValidName(ti.Name):
		errs.Add("name", "%q: want letters, digits, '_', '.' or '-', starting with a letter or digit, at most %d bytes", ti.Name, MaxNameLen)
	}
	if errs.Has("time_intervals") {
		return ti, errs
	}
	if len(raw) == 0 {
		errs.Add("time_intervals", "required: a list of intervals")
		return ti, errs
	}
	if err := json.Unmarshal(raw, &ti.Intervals); err != nil {
		errs.Add("time_intervals", "want a list of objects with times, weekdays, days_of_month, months, location: %v", err)
		return ti, errs
	}
	switch {
	case len(ti.Intervals) == 0:
		errs.Add("time_intervals", "required: at least one interval")
	case len(ti.Intervals) > MaxIntervals:
		errs.Add("time_intervals", "%d intervals, over the limit of %d", len(ti.Intervals), MaxIntervals)
	}
	for i, iv := range ti.Intervals {
		f := fmt.Sprintf("time_intervals[%d]", i)
		if n := len(iv.Times) + len(iv.Weekdays) + len(iv.DaysOfMonth) + len(iv.Months); n > MaxRanges {
			errs.Add(f, "%d ranges, over the limit of %d", n, MaxRanges)
			continue
		}
		if _, err := iv.compile(); err != nil {
			if field, msg, ok := strings.Cut(err.Error(), ": "); ok {
				errs.Add(f+"."+field, "%s", msg)
			} else {
				errs.Add(f, "%v", err)
			}
		}
	}
	return ti, errs
}
