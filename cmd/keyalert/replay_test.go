package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/plugin/loghub"
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

func runReplayArgs(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = runReplay(args, strings.NewReader(stdin), &out, &errb)
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

func replayJSON(t *testing.T, stdin string, args ...string) (*replayJSONReport, string) {
	t.Helper()
	out, errOut, err := runReplayArgs(t, stdin, append([]string{"--json", "--tz", "UTC"}, args...)...)
	if err != nil {
		t.Fatalf("replay %q: %v\n%s", args, err, errOut)
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
		args   []string
		want   []string
		totals map[string]int64
	}{
		{
			name:  "a burst of 6 in 2 minutes fires once and resolves after resolve_after",
			rules: burstRule,
			log:   replayBurstLog().String(),
			// 10:06: 6 in [10:02,10:06]; 10:10: 3 in [10:06,10:10], false; resolved 5m later.
			want:   []string{"10:06 trigger  6", "10:15 resolve  0"},
			totals: map[string]int64{"substring:Exception": 6},
		},
		{
			name: "absence fires when heartbeats stop and resolves when they resume",
			rules: `[{"name":"heartbeat","keywords":["heartbeat ok"],"condition":{"type":"absence","window":"5m"},
				"resolve_after":"2m"}]`,
			log: (&replayLog{}).every(0, 29, 2, "INFO [main] request served").
				every(0, 9, 1, "INFO [hb] heartbeat ok").every(20, 29, 1, "INFO [hb] heartbeat ok").String(),
			want:   []string{"10:14 trigger  0", "10:22 resolve  3"},
			totals: map[string]int64{"substring:heartbeat ok": 20},
		},
		{
			name: "spike over the baseline",
			rules: `[{"name":"slow","keywords":["WARN"],"condition":{"type":"spike","window":"1m","factor":3,
				"min_count":5,"baseline":"10m"},"resolve_after":"1m"}]`,
			log:    (&replayLog{}).every(0, 14, 2, "WARN slow request").every(15, 15, 10, "WARN slow request").every(15, 15, 10, "WARN slow request").every(16, 29, 2, "WARN slow request").String(),
			want:   []string{"10:15 trigger  20", "10:17 resolve  2"},
			totals: map[string]int64{"substring:WARN": 78},
		},
		{
			name: "group_by host takes --host",
			rules: `[{"name":"per host","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},
				"group_by":"host"}]`,
			log:    replayBurstLog().String(),
			args:   []string{"--host", "web-7"},
			want:   []string{"10:06 trigger web-7 6", "10:15 resolve web-7 0"},
			totals: map[string]int64{"substring:Exception": 6},
		},
		{
			name:   "--multiline counts a stack trace once",
			rules:  `[{"name":"traces","keywords":["Exception"],"condition":{"type":"threshold","count":3,"window":"1m"},"resolve_after":"0s"}]`,
			log:    traces,
			args:   []string{"--multiline"},
			want:   []string{"10:05 trigger  3", "10:06 resolve  0"},
			totals: map[string]int64{"substring:Exception": 3},
		},
		{
			name:   "without --multiline each line is a record",
			rules:  `[{"name":"traces","keywords":["Exception"],"condition":{"type":"threshold","count":3,"window":"1m"},"resolve_after":"0s"}]`,
			log:    traces,
			want:   []string{"10:05 trigger  6", "10:06 resolve  0"},
			totals: map[string]int64{"substring:Exception": 6},
		},
		{
			name:  "--time-regex and --time-layout find the time inside the line",
			rules: burstRule,
			log: "web-1 - [01/Mar/2025:10:05:10 +0000] GET /a Exception\nweb-1 - [01/Mar/2025:10:05:30 +0000] GET /b Exception\n" +
				"web-1 - [01/Mar/2025:10:05:50 +0000] GET /c Exception\nweb-1 - [01/Mar/2025:10:06:10 +0000] GET /d Exception\n" +
				"web-1 - [01/Mar/2025:10:06:30 +0000] GET /e Exception\nweb-1 - [01/Mar/2025:10:06:50 +0000] GET /f Exception",
			args:   []string{"--time-regex", `\[([^\]]+)\]`, "--time-layout", "02/Jan/2006:15:04:05 -0700"},
			want:   []string{"10:06 trigger  6", "10:15 resolve  0"},
			totals: map[string]int64{"substring:Exception": 6},
		},
		{
			name:   "lines without a timestamp are at --start",
			rules:  burstRule,
			log:    strings.Repeat("something threw an Exception\n", 6),
			args:   []string{"--start", "2025-03-01T10:00:00Z"},
			want:   []string{"10:00 trigger  6", "10:10 resolve  0"},
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
			rep, _ := replayJSON(t, "", append([]string{"--rules", rulesPath, logPath}, tt.args...)...)
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

func TestReplayTablePrintsOneLinePerEventThenTotals(t *testing.T) {
	rulesPath := replayTemp(t, "rules.json", burstRule)
	// The log on stdin, and a flag after the file name.
	out, _, err := runReplayArgs(t, replayBurstLog().String(), "--rules", rulesPath, "-", "--tz", "UTC")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		"2025-03-01 10:06  TRIGGER  burst  fleet  Exception seen 6 times in 5m across the fleet (rule burst)",
		"2025-03-01 10:15  RESOLVE  burst  fleet  condition false for 5m, after firing for 9m (rule burst)",
		"",
		"Exception: 6 records",
		"",
		"48 records from 48 lines, 2025-03-01 10:00:05 to 2025-03-01 10:20:10; 1 rule, 2 events.",
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("output\n%s\nwant\n%s", out, strings.Join(want, "\n"))
	}
}

func TestReplayShowsSampleLinesOfTheAlertsGroup(t *testing.T) {
	rulesPath := replayTemp(t, "rules.json", burstRule)
	logPath := replayTemp(t, "app.log", replayBurstLog().String())
	rep, _ := replayJSON(t, "", "--rules", rulesPath, "--samples", "2", logPath)
	if len(rep.Events) != 2 || len(rep.Events[0].Samples) != 2 ||
		!strings.HasSuffix(rep.Events[0].Samples[0], "java.lang.IllegalStateException: stock went negative") || rep.Events[1].Samples != nil {
		t.Fatalf("events %+v", rep.Events)
	}
}

func TestReplayAcceptsTheLiveRulesExport(t *testing.T) {
	exported := `{"rules":[{"id":"r_7","name":"burst","keywords":["Exception"],"ignore_case":false,"match":"substring",
		"condition":{"type":"threshold","count":5,"window":"5m"},"group_by":"none","filters":{},"severity":"critical",
		"pagerduty":{"routing_key":"****************************ABCD"},"repeat_interval":"0s","resolve_after":"5m","enabled":true,
		"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-02T00:00:00Z"}]}`
	single := `{"name":"burst","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},
		"pagerduty":{"routing_key":"R0123456789abcdef0123456789ABCDE"}}`
	for name, doc := range map[string]string{"GET /api/v1/rules answer": exported, "one rule object": single} {
		t.Run(name, func(t *testing.T) {
			rulesPath := replayTemp(t, "rules.json", doc)
			logPath := replayTemp(t, "app.log", replayBurstLog().String())
			out, _, err := runReplayArgs(t, "", "--rules", rulesPath, "--json", logPath)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, "ABCDE") || strings.Contains(out, "routing") {
				t.Fatalf("output mentions the routing key:\n%s", out)
			}
			var rep replayJSONReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Events) != 2 {
				t.Fatalf("events %+v (%v)", rep.Events, err)
			}
		})
	}
}

func TestReplayBadInputNamesTheFileRuleAndField(t *testing.T) {
	logPath := replayTemp(t, "app.log", replayBurstLog().String())
	badRules := `[
		{"name":"ok","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"}},
		{"name":"bad window","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5x"}},
		{"name":"bad key","keywords":["x"],"condition":{"type":"absence","window":"5m"},"pagerduty":{"routing_key":"secret-typo-key"}}
	]`
	tests := []struct {
		name    string
		rules   string // "" for no --rules flag
		args    []string
		want    []string
		notWant string
	}{
		{"invalid field", badRules, nil, []string{`rules.json: rules[1] "bad window": condition.window: "5x" is not a duration`,
			`rules[2] "bad key": pagerduty.routing_key: want 32 letters or digits`}, "secret-typo-key"},
		{"unknown field", `[{"name":"x","keywords":["x"],"colour":"red","condition":{"type":"absence","window":"5m"}}]`, nil,
			[]string{`rules[0] "x": colour: unknown field`}, ""},
		{"JSON syntax", "[\n  {\"name\": \"x\",,}\n]", nil, []string{"rules.json: line 2, column", "invalid JSON"}, ""},
		{"not rules", `"hello"`, nil, []string{"want a JSON array of rules"}, ""},
		{"empty array", `[]`, nil, []string{"no rules in the file"}, ""},
		{"missing --rules", "", nil, []string{"--rules is required"}, ""},
		{"missing log file", burstRule, []string{"nope.log"}, []string{"log file: open nope.log"}, ""},
		{"bad --tz", burstRule, []string{"--tz", "Mars/Olympus"}, []string{`--tz "Mars/Olympus"`}, ""},
		{"bad --time-regex", burstRule, []string{"--time-regex", "("}, []string{`--time-regex "("`}, ""},
		{"bad --time-layout", burstRule, []string{"--time-layout", "yesterday"}, []string{`--time-layout "yesterday"`}, ""},
		{"bad --start", burstRule, []string{"--start", "soon"}, []string{`--start "soon"`}, ""},
		{"bad --samples", burstRule, []string{"--samples", "99"}, []string{"--samples 99"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var args []string
			if tt.rules != "" {
				args = append(args, "--rules", replayTemp(t, "rules.json", tt.rules))
			}
			args = append(args, tt.args...)
			if len(tt.args) == 0 || tt.args[0] != "nope.log" {
				args = append(args, logPath)
			}
			_, _, err := runReplayArgs(t, "", args...)
			var ie *inputError
			if !errors.As(err, &ie) {
				t.Fatalf("err %v (%T), want bad input", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not mention %q", err, w)
				}
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("error %q echoes %q", err, tt.notWant)
			}
		})
	}
}

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

// TestReplayHadoopLoghub replays the real Hadoop sample: totals must equal
// the loghub README's count, and the triggers must be where the file's own
// timestamps put a 5-minute window at 5 or more.
func TestReplayHadoopLoghub(t *testing.T) {
	lines := loghub.Read(t, "Hadoop_2k.log")
	dir, _ := loghub.Dir()
	rulesPath := replayTemp(t, "rules.json", `[{"name":"java exceptions","keywords":["Exception"],
		"condition":{"type":"threshold","count":5,"window":"5m"}}]`)
	rep, _ := replayJSON(t, "", "--rules", rulesPath, filepath.Join(dir, "Hadoop_2k.log"))
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
	if got := rep.eventLines(); len(got) != 2 || got[1] != "18:16 resolve  0" {
		t.Fatalf("events %q: want the trigger and its resolve 5m after the window empties", got)
	}
}

// TestReplayCommandExitCodes runs the command itself (this test binary
// re-executed as keyalert): 0 whether or not anything fired, 2 on bad input.
func TestReplayCommandExitCodes(t *testing.T) {
	if args := os.Getenv("KEYALERT_TEST_REPLAY_ARGS"); args != "" {
		os.Args = append([]string{"keyalert", "replay"}, strings.Split(args, "\x1f")...)
		main()
		os.Exit(0)
	}
	logPath := replayTemp(t, "app.log", replayBurstLog().String())
	good := replayTemp(t, "good.json", burstRule)
	quiet := replayTemp(t, "quiet.json", `[{"name":"never","keywords":["nothing like this"],"condition":{"type":"threshold","count":1,"window":"1m"}}]`)
	bad := replayTemp(t, "bad.json", `[{"name":"x","keywords":[],"condition":{"type":"threshold","count":5,"window":"5m"}}]`)
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderrRe string
	}{
		{"fires", []string{"--rules", good, "--tz", "UTC", logPath}, 0, "2025-03-01 10:06  TRIGGER  burst", ""},
		{"nothing fires", []string{"--rules", quiet, logPath}, 0, "no alert would have fired", ""},
		{"invalid rule", []string{"--rules", bad, logPath}, 2, "", `rules[0] "x": keywords: at least one keyword is required`},
		{"unknown flag", []string{"--rulez", good, logPath}, 2, "", "flag provided but not defined: -rulez"},
		{"help", []string{"-h"}, 0, "", "usage: keyalert replay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestReplayCommandExitCodes$")
			cmd.Env = append(os.Environ(), "KEYALERT_TEST_REPLAY_ARGS="+strings.Join(tt.args, "\x1f"))
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errb.String(), tt.stderrRe) {
				t.Fatalf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tt.code, out.String(), errb.String())
			}
		})
	}
}

func FuzzReplayRulesFile(f *testing.F) {
	f.Add([]byte(burstRule))
	f.Add([]byte(`{"rules":[{"name":"x","keywords":["a"],"condition":{"type":"spike","window":"1m","factor":2},"pagerduty":{"routing_key":"****x"}}]}`))
	f.Add([]byte(`{"name":"x"}`))
	f.Add([]byte("[\n{,}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		items, err := splitRulesDoc(b)
		if err != nil {
			return
		}
		for _, raw := range items {
			r, errs := decodeReplayRule(raw)
			if len(errs) == 0 && (r.Name == "" || len(r.Keywords) == 0 || r.PagerDuty.RoutingKey != "") {
				t.Fatalf("accepted rule %+v", r)
			}
		}
	})
}

func FuzzReplayTimestamp(f *testing.F) {
	for _, s := range []string{"2015-10-18 18:01:47,978 INFO", "[Sun Dec 04 04:47:44 2005] x", "Dec 10 06:55:46 x",
		"081109 203615 148", "03-17 16:13:38.811 x", "20171223-22:16:0:119|x", "2024-05-01T14:00:00.5+02:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		p := &stampParser{loc: time.UTC, year: 2024}
		if ts, ok := p.parse(line); ok && (ts.Unix() < 0 || ts.Unix() > 1<<32-1) {
			t.Fatalf("parse(%q) = %v, outside the chunk format's range", line, ts)
		}
	})
}
