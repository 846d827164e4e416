package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/loghub"
)

var replayLogBase = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

// replayLog writes a log of timestamped lines in time order, in the
// log4j form "2025-03-01 10:05:10,000 LEVEL message".
type replayLog struct {
	lines []replayLine
}

type replayLine struct {
	at   time.Time
	text string
}

// at adds a line min:sec after replayLogBase.
func (b *replayLog) at(min, sec int, msg string) *replayLog {
	b.lines = append(b.lines, replayLine{replayLogBase.Add(time.Duration(min)*time.Minute + time.Duration(sec)*time.Second), msg})
	return b
}

// every adds msg n times in each minute from..to (inclusive), at seconds 5, 10, ...
func (b *replayLog) every(from, to, n int, msg string) *replayLog {
	for m := from; m <= to; m++ {
		for i := 0; i < n; i++ {
			b.at(m, 5+5*i, msg)
		}
	}
	return b
}

func (b *replayLog) String() string {
	sort.SliceStable(b.lines, func(i, j int) bool { return b.lines[i].at.Before(b.lines[j].at) })
	var s strings.Builder
	for _, l := range b.lines {
		s.WriteString(l.at.Format("2006-01-02 15:04:05,000"))
		s.WriteByte(' ')
		s.WriteString(l.text)
		s.WriteByte('\n')
	}
	return s.String()
}

func replayBurstLog() *replayLog {
	b := (&replayLog{}).every(0, 20, 2, "INFO [main] request served")
	for _, t := range [][2]int{{5, 10}, {5, 30}, {5, 50}, {6, 10}, {6, 30}, {6, 50}} {
		b.at(t[0], t[1], "ERROR [main] java.lang.IllegalStateException: stock went negative")
	}
	return b
}

func replayTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// testConfig is the command's defaults with rulesPath and files.
func testConfig(rulesPath string, files ...string) Config {
	return Config{RulesPath: rulesPath, Files: files, Host: "replay", Tag: "replay", Location: time.Local}
}

func runReplay(t *testing.T, stdin string, cfg Config) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = Run(context.Background(), cfg, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

// replayJSONReport is the part of the --json output the tests read.
type replayJSONReport struct {
	Records      int `json:"records"`
	TimedRecords int `json:"timed_records"`
	Events       []struct {
		At      time.Time `json:"at"`
		Kind    string    `json:"kind"`
		Group   string    `json:"group"`
		Count   int64     `json:"count"`
		Summary string    `json:"summary"`
		Samples []string  `json:"samples"`
	} `json:"events"`
	Open []struct {
		RuleName string `json:"rule_name"`
	} `json:"open"`
	Totals []struct {
		ID      string `json:"id"`
		Records int64  `json:"records"`
	} `json:"totals"`
}

func (r *replayJSONReport) eventLines() []string {
	var out []string
	for _, e := range r.Events {
		out = append(out, fmt.Sprintf("%s %s %s %d", e.At.UTC().Format("15:04"), e.Kind, e.Group, e.Count))
	}
	return out
}

func (r *replayJSONReport) totals() map[string]int64 {
	out := map[string]int64{}
	for _, t := range r.Totals {
		out[t.ID] = t.Records
	}
	return out
}

// replayJSON runs cfg with JSON output in UTC.
func replayJSON(t *testing.T, stdin string, cfg Config) (*replayJSONReport, string) {
	t.Helper()
	cfg.JSON, cfg.Location = true, time.UTC
	out, errOut, err := runReplay(t, stdin, cfg)
	if err != nil {
		t.Fatalf("replay %+v: %v\n%s", cfg, err, errOut)
	}
	var rep replayJSONReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("decode output: %v\n%s", err, out)
	}
	return &rep, errOut
}

const burstRule = `[{"name":"burst","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},"resolve_after":"5m"}]`

func TestReplayReportsWhatWouldHaveFiredAndWhen(t *testing.T) {
	trace := func(min, sec int) string {
		return replayLogBase.Add(time.Duration(min)*time.Minute+time.Duration(sec)*time.Second).Format("2006-01-02 15:04:05,000") +
			" ERROR [main] order failed\njava.lang.IllegalStateException: stock went negative\n" +
			"\tat com.example.Orders.reserve(Orders.java:88)\nCaused by: java.io.IOException: disk full on /dev/sda1 (Exception)\n" +
			"    ... 12 more\n"
	}
	traces := trace(5, 1) + trace(5, 20) + trace(5, 40)
	tests := []struct {
		name   string
		rules  string
		log    string
		cfg    func(*Config)
		want   []string
		totals map[string]int64
	}{
		{
			name:  "a burst of 6 in 2 minutes fires once and resolves after resolve_after",
			rules: burstRule,
			log:   replayBurstLog().String(),
			// 10:06: 6 in [10:02,10:06]; 10:10: 3 in [10:06,10:10], false once settled (10:12: a complete minute and the 1m eval_delay); resolved 5m later.
			want:   []string{"10:06 trigger  6", "10:17 resolve  0"},
			totals: map[string]int64{"substring:Exception": 6},
		},
		{
			name: "absence fires when heartbeats stop and resolves when they resume",
			rules: `[{"name":"heartbeat","keywords":["heartbeat ok"],"condition":{"type":"absence","window":"5m"},
				"resolve_after":"2m"}]`,
			log: (&replayLog{}).every(0, 29, 2, "INFO [main] request served").
				every(0, 9, 1, "INFO [hb] heartbeat ok").every(20, 29, 1, "INFO [hb] heartbeat ok").String(),
			want:   []string{"10:16 trigger  0", "10:24 resolve  3"},
			totals: map[string]int64{"substring:heartbeat ok": 20},
		},
		{
			name: "spike over the baseline",
			rules: `[{"name":"slow","keywords":["WARN"],"condition":{"type":"spike","window":"1m","factor":3,
				"min_count":5,"baseline":"10m"},"resolve_after":"1m"}]`,
			log:    (&replayLog{}).every(0, 14, 2, "WARN slow request").every(15, 15, 10, "WARN slow request").every(15, 15, 10, "WARN slow request").every(16, 29, 2, "WARN slow request").String(),
			want:   []string{"10:15 trigger  20", "10:19 resolve  2"},
			totals: map[string]int64{"substring:WARN": 78},
		},
		{
			name: "group_by host takes the Host",
			rules: `[{"name":"per host","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},
				"group_by":"host"}]`,
			log:    replayBurstLog().String(),
			cfg:    func(c *Config) { c.Host = "web-7" },
			want:   []string{"10:06 trigger web-7 6", "10:17 resolve web-7 0"},
			totals: map[string]int64{"substring:Exception": 6},
		},
		{
			name:   "Multiline counts a stack trace once",
			rules:  `[{"name":"traces","keywords":["Exception"],"condition":{"type":"threshold","count":3,"window":"1m"},"resolve_after":"0s"}]`,
			log:    traces,
			cfg:    func(c *Config) { c.Multiline = true },
			want:   []string{"10:05 trigger  3", "10:08 resolve  0"},
			totals: map[string]int64{"substring:Exception": 3},
		},
		{
			name:   "without Multiline each line is a record",
			rules:  `[{"name":"traces","keywords":["Exception"],"condition":{"type":"threshold","count":3,"window":"1m"},"resolve_after":"0s"}]`,
			log:    traces,
			want:   []string{"10:05 trigger  6", "10:08 resolve  0"},
			totals: map[string]int64{"substring:Exception": 6},
		},
		{
			name:  "TimeRegex and TimeLayout find the time inside the line",
			rules: burstRule,
			log: "web-1 - [01/Mar/2025:10:05:10 +0000] GET /a Exception\nweb-1 - [01/Mar/2025:10:05:30 +0000] GET /b Exception\n" +
				"web-1 - [01/Mar/2025:10:05:50 +0000] GET /c Exception\nweb-1 - [01/Mar/2025:10:06:10 +0000] GET /d Exception\n" +
				"web-1 - [01/Mar/2025:10:06:30 +0000] GET /e Exception\nweb-1 - [01/Mar/2025:10:06:50 +0000] GET /f Exception",
			cfg: func(c *Config) {
				c.TimeRegex, c.TimeLayout = regexp.MustCompile(`\[([^\]]+)\]`), "02/Jan/2006:15:04:05 -0700"
			},
			want:   []string{"10:06 trigger  6", "10:17 resolve  0"},
			totals: map[string]int64{"substring:Exception": 6},
		},
		{
			name:   "lines without a timestamp are at the Start",
			rules:  burstRule,
			log:    strings.Repeat("something threw an Exception\n", 6),
			cfg:    func(c *Config) { c.Start = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC) },
			want:   []string{"10:00 trigger  6", "10:12 resolve  0"},
			totals: map[string]int64{"substring:Exception": 6},
		},
		{
			name: "a disabled rule is counted but not evaluated",
			rules: `[{"name":"off","keywords":["Exception"],"condition":{"type":"threshold","count":1,"window":"1m"},"enabled":false},
				{"name":"on","keywords":["request served"],"condition":{"type":"threshold","count":1000,"window":"1m"}}]`,
			log:    replayBurstLog().String(),
			want:   nil,
			totals: map[string]int64{"substring:Exception": 6, "substring:request served": 42},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rulesPath := replayTemp(t, "rules.json", tt.rules)
			logPath := replayTemp(t, "app.log", tt.log)
			cfg := testConfig(rulesPath, logPath)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			rep, _ := replayJSON(t, "", cfg)
			if got := rep.eventLines(); !slices.Equal(got, tt.want) {
				t.Errorf("events\n got %q\nwant %q", got, tt.want)
			}
			for id, n := range tt.totals {
				if got := rep.totals()[id]; got != n {
					t.Errorf("total of %s: %d records, want %d", id, got, n)
				}
			}
		})
	}
}

// TestReplayHadoopLoghub replays the real Hadoop sample: totals must equal
// the loghub README's count, and the triggers must be where the file's own
// timestamps put a 5-minute window at 5 or more.
func TestReplayHadoopLoghub(t *testing.T) {
	lines := loghub.Read(t, "Hadoop_2k.log")
	dir, _ := loghub.Dir()
	rulesPath := replayTemp(t, "rules.json", `[{"name":"java exceptions","keywords":["Exception"],
		"condition":{"type":"threshold","count":5,"window":"5m"}}]`)
	rep, _ := replayJSON(t, "", testConfig(rulesPath, filepath.Join(dir, "Hadoop_2k.log")))
	if got := rep.totals()["substring:Exception"]; got != 8 {
		t.Fatalf("Exception: %d records, want 8 (loghub README)", got)
	}
	if rep.Records != 2000 || rep.TimedRecords != 2000 {
		t.Fatalf("records %d, timed %d; want 2000 each", rep.Records, rep.TimedRecords)
	}

	// The oracle: per-minute counts from the lines' "2015-10-18 18:01" prefix,
	// and the minutes where the 5-minute window reaches 5 after being below.
	perMin := map[time.Time]int64{}
	var first, last time.Time
	for _, l := range lines {
		m, err := time.Parse("2006-01-02 15:04", l[:16])
		if err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if first.IsZero() {
			first = m
		}
		last = m
		if strings.Contains(l, "Exception") {
			perMin[m]++
		}
	}
	window := func(m time.Time) int64 {
		var n int64
		for k := 0; k < 5; k++ {
			n += perMin[m.Add(-time.Duration(k)*time.Minute)]
		}
		return n
	}
	var want []string
	for m := first; !m.After(last); m = m.Add(time.Minute) {
		if window(m) >= 5 && window(m.Add(-time.Minute)) < 5 {
			want = append(want, fmt.Sprintf("%s trigger  %d", m.Format("15:04"), window(m)))
		}
	}
	var triggers []string
	for _, e := range rep.eventLines() {
		if strings.Contains(e, "trigger") {
			triggers = append(triggers, e)
		}
	}
	if len(want) == 0 || !slices.Equal(triggers, want) {
		t.Fatalf("triggers %q, want %q (from the file's timestamps)", triggers, want)
	}
	if got := rep.eventLines(); len(got) != 2 || got[1] != "18:18 resolve  0" {
		t.Fatalf("events %q: want the trigger and its resolve 5m after the empty window is settled", got)
	}
}

func TestReplayStopsReadingWhenTheContextIsDone(t *testing.T) {
	rulesPath := replayTemp(t, "rules.json", burstRule)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	err := Run(ctx, testConfig(rulesPath, "-"), strings.NewReader(replayBurstLog().String()), &out, &out)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrBadInput) || out.Len() > 0 {
		t.Fatalf("err %v, output %q; want context.Canceled, not bad input, and no report", err, out.String())
	}
}
