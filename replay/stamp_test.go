package replay

import (
	"regexp"
	"slices"
	"testing"
	"time"
)

func TestReplayRecognisesCommonTimestamps(t *testing.T) {
	utc := time.UTC
	tests := []struct {
		line string
		want time.Time
	}{
		{"2015-10-18 18:01:47,978 INFO [main] x", time.Date(2015, 10, 18, 18, 1, 47, 978e6, utc)},
		{"2015-07-29 17:41:44.747 - INFO  [QuorumPeer]", time.Date(2015, 7, 29, 17, 41, 44, 747e6, utc)},
		{"2024-05-01T12:00:00Z level=info", time.Date(2024, 5, 1, 12, 0, 0, 0, utc)},
		{"2024-05-01T14:00:00.5+02:00 x", time.Date(2024, 5, 1, 12, 0, 0, 5e8, utc)},
		{"2024-05-01T14:00:00+0200 x", time.Date(2024, 5, 1, 12, 0, 0, 0, utc)},
		{"2024-05-01T12:00:00 x", time.Date(2024, 5, 1, 12, 0, 0, 0, utc)},
		{"2024/05/01 12:00:00 x", time.Date(2024, 5, 1, 12, 0, 0, 0, utc)},
		{"[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok", time.Date(2005, 12, 4, 4, 47, 44, 0, utc)},
		{"Dec 10 06:55:46 LabSZ sshd[24200]: x", time.Date(2017, 12, 10, 6, 55, 46, 0, utc)},
		{"Jan  2 06:55:46 host x", time.Date(2017, 1, 2, 6, 55, 46, 0, utc)},
		{"03-17 16:13:38.811  1702  2395 D WindowManager: x", time.Date(2017, 3, 17, 16, 13, 38, 811e6, utc)},
		{"081109 203615 148 INFO dfs.DataNode", time.Date(2008, 11, 9, 20, 36, 15, 0, utc)},
		{"20171223-22:16:0:119|Step_LSC|30002312|x", time.Date(2017, 12, 23, 22, 16, 0, 0, utc)},
		{"\tat com.example.Orders.reserve(Orders.java:88)", time.Time{}},
		{"java.lang.IllegalStateException: x", time.Time{}},
		{"2015-13-45 99:99:99 not a time", time.Time{}},
		{"", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			p := &stampParser{loc: utc, year: 2017}
			got, ok := p.parse(tt.line)
			if ok != !tt.want.IsZero() || !got.Equal(tt.want) {
				t.Fatalf("parse = %v, %v; want %v", got, ok, tt.want)
			}
		})
	}
}

func TestReplayYearlessTimestampsRollOverNewYear(t *testing.T) {
	p := &stampParser{loc: time.UTC, year: 2024}
	var got []int
	for _, l := range []string{"Dec 31 23:59:00 a", "Jan  1 00:00:10 b", "Jan  1 00:01:00 c"} {
		ts, ok := p.parse(l)
		if !ok {
			t.Fatalf("%q not parsed", l)
		}
		got = append(got, ts.Year())
	}
	if !slices.Equal(got, []int{2024, 2025, 2025}) {
		t.Fatalf("years %v", got)
	}
}

// bracketed finds a timestamp in brackets, as a --time-regex would.
var bracketed = regexp.MustCompile(`\[([^\]]+)\]`)

// FuzzReplayTimestamp sniffs a line automatically (layout ""), or with a
// layout at the start of the line or inside brackets.
func FuzzReplayTimestamp(f *testing.F) {
	for _, s := range []string{"2015-10-18 18:01:47,978 INFO", "[Sun Dec 04 04:47:44 2005] x", "Dec 10 06:55:46 x",
		"081109 203615 148", "03-17 16:13:38.811 x", "20171223-22:16:0:119|x", "2024-05-01T14:00:00.5+02:00"} {
		f.Add(s, "", false)
	}
	f.Add("2015-10-18 18:01:47,978 INFO", "2006-01-02 15:04:05,000", false)
	f.Add("Jan  2 06:55:46 host x", "Jan _2 15:04:05", false)
	f.Add("10:05", "2006-01-02 15:04:05 MST", false)
	f.Add("web-1 - [01/Mar/2025:10:05:10 +0000] GET", "02/Jan/2006:15:04:05 -0700", true)
	f.Add("[x] [Mon Jan  2 15:04:05 2006]", "", true)
	f.Fuzz(func(t *testing.T, line, layout string, inBrackets bool) {
		p := &stampParser{layout: layout, loc: time.UTC, year: 2024}
		if inBrackets {
			p.re = bracketed
		}
		if ts, ok := p.parse(line); ok && (ts.Unix() < 0 || ts.Unix() > 1<<32-1) {
			t.Fatalf("parse(%q) = %v, outside the chunk format's range", line, ts)
		}
	})
}
