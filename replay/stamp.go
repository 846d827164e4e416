package replay

import (
	"math"
	"regexp"
	"time"
)

// stampFormat is a timestamp form recognised at the start of a line: group 1
// of re is parsed with layout.
type stampFormat struct {
	re     *regexp.Regexp
	layout string
}

// stampFormats are tried in order; the one that matched last is tried first.
// The fractional seconds are parsed by time.Parse without being in the
// layout (with '.' or ',').
var stampFormats = []stampFormat{
	{regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:\d{2}))`), time.RFC3339},
	{regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?[+-]\d{4})`), "2006-01-02T15:04:05Z0700"},
	{regexp.MustCompile(`^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:[.,]\d+)?)`), "2006-01-02 15:04:05"}, // Hadoop, ZooKeeper, log4j
	{regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)`), "2006-01-02T15:04:05"},
	{regexp.MustCompile(`^(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:[.,]\d+)?)`), "2006/01/02 15:04:05"},                                  // Go log, nginx error log
	{regexp.MustCompile(`^\[?([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}(?:\.\d+)? \d{4})\]?`), "Mon Jan _2 15:04:05 2006"}, // Apache error log
	{regexp.MustCompile(`^([A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2})`), "Jan _2 15:04:05"},                                              // syslog
	{regexp.MustCompile(`^(\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?)`), "01-02 15:04:05"},                                               // Android logcat
	{regexp.MustCompile(`^(\d{6} \d{6})\b`), "060102 150405"},                                                                          // HDFS
	{regexp.MustCompile(`^(\d{8}-\d{1,2}:\d{1,2}:\d{1,2})`), "20060102-15:4:5"},                                                        // HealthApp
}

// stampParser finds a record's event time in its first line.
type stampParser struct {
	layout string         // --time-layout; empty: stampFormats
	re     *regexp.Regexp // --time-regex; nil: the start of the line
	loc    *time.Location
	year   int       // for forms without a year
	last   time.Time // the last time parsed, to notice a year rolling over
	hint   int
}

func (p *stampParser) parse(line string) (time.Time, bool) {
	text := line
	if p.re != nil {
		m := p.re.FindStringSubmatch(line)
		if m == nil {
			return time.Time{}, false
		}
		text = m[0]
		if len(m) > 1 && m[1] != "" {
			text = m[1]
		}
	}
	var t time.Time
	var ok bool
	switch {
	case p.layout != "" && p.re != nil:
		var err error
		t, err = time.ParseInLocation(p.layout, text, p.loc)
		ok = err == nil
	case p.layout != "":
		t, ok = p.prefix(text)
	default:
		t, ok = p.auto(text)
	}
	if !ok {
		return time.Time{}, false
	}
	if t.Year() == 0 {
		t = p.withYear(t)
	}
	// The chunk format holds seconds as uint32.
	if t.Unix() < 0 || t.Unix() > math.MaxUint32 {
		return time.Time{}, false
	}
	p.last = t
	return t, true
}

// withYear gives a time parsed without a year the year of --start, moving
// to the next year when the log runs over New Year.
func (p *stampParser) withYear(t time.Time) time.Time {
	at := func(y int) time.Time {
		return time.Date(y, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
	}
	out := at(p.year)
	if !p.last.IsZero() && out.Before(p.last.AddDate(0, -6, 0)) {
		p.year++
		out = at(p.year)
	}
	return out
}

// prefix parses the line's start with --time-layout: the timestamp is about
// as long as the layout (names and padding may differ by a few bytes).
func (p *stampParser) prefix(line string) (time.Time, bool) {
	n := len(p.layout)
	try := func(k int) (time.Time, bool) {
		if k < 1 || k > len(line) {
			return time.Time{}, false
		}
		t, err := time.ParseInLocation(p.layout, line[:k], p.loc)
		return t, err == nil
	}
	if t, ok := try(n); ok {
		return t, true
	}
	for d := 1; d <= 12; d++ {
		if t, ok := try(n + d); ok {
			return t, true
		}
		if d <= 4 {
			if t, ok := try(n - d); ok {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

func (p *stampParser) auto(text string) (time.Time, bool) {
	if text == "" {
		return time.Time{}, false
	}
	// Every form starts with a digit, a capital or '['; continuation lines
	// and most messages are turned away here.
	if c := text[0]; !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || c == '[') {
		return time.Time{}, false
	}
	if t, ok := p.try(p.hint, text); ok {
		return t, true
	}
	for i := range stampFormats {
		if i == p.hint {
			continue
		}
		if t, ok := p.try(i, text); ok {
			p.hint = i
			return t, true
		}
	}
	return time.Time{}, false
}

func (p *stampParser) try(i int, text string) (time.Time, bool) {
	f := &stampFormats[i]
	m := f.re.FindStringSubmatch(text)
	if m == nil {
		return time.Time{}, false
	}
	t, err := time.ParseInLocation(f.layout, m[1], p.loc)
	return t, err == nil
}
