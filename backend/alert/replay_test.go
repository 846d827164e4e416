package alert

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/keyword"
)

var replayBase = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// replayPut is n records of kw on host at replayBase + min minutes.
type replayPut struct {
	kw   string
	min  int
	host string
	n    int64
}

// replayEvery is n records of kw on host in each minute of [from, to].
func replayEvery(kw, host string, from, to int, n int64) []replayPut {
	var out []replayPut
	for m := from; m <= to; m++ {
		out = append(out, replayPut{kw, m, host, n})
	}
	return out
}

func replayCells(puts []replayPut) map[string][]window.Cell {
	cells := map[string][]window.Cell{}
	for _, p := range puts {
		id := keyword.Spec{Text: p.kw}.ID()
		cells[id] = append(cells[id], window.Cell{Minute: replayBase.Unix() + int64(p.min)*60, Host: p.host, Tag: "app", Count: p.n})
	}
	return cells
}

func replayRule(t testing.TB, body string) rules.Rule {
	t.Helper()
	r, errs := rules.Decode([]byte(body), rules.DecodeOptions{DefaultRoutingKey: true})
	if errs.Err() != nil {
		t.Fatalf("rule %s: %v", body, errs)
	}
	return r
}

// replayClock writes an event time as minutes after replayBase, "+11".
func replayClock(at time.Time) string { return fmt.Sprintf("+%d", int(at.Sub(replayBase)/time.Minute)) }

func replayLines(evs []ReplayEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = fmt.Sprintf("%s %s %s %d", replayClock(e.At), e.Kind, e.Group, e.Count)
	}
	return out
}

// replayScenarios are shared by the replay tests and the check against the
// engine: rules, recorded counts and the data's last minute.
var replayScenarios = []struct {
	name  string
	rules []string
	puts  []replayPut
	to    int // last minute of the data
	want  []string
}{
	{
		name:  "threshold burst fires once and resolves after resolve_after",
		rules: []string{`{"name":"burst","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},"resolve_after":"5m"}`},
		puts:  append(replayEvery("INFO", "h", 0, 20, 10), replayPut{"Exception", 3, "h", 3}, replayPut{"Exception", 4, "h", 3}),
		to:    20,
		// +4: 6 in [0,4]; the window [4,8] (3) is settled false at +10 (a
		// complete minute and the 1m eval_delay later); resolved 5m later.
		want: []string{"+4 trigger  6", "+15 resolve  0"},
	},
	{
		name:  "resolve shows after the data ends",
		rules: []string{`{"name":"burst","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},"resolve_after":"5m"}`},
		puts:  []replayPut{{"Exception", 3, "h", 3}, {"Exception", 4, "h", 3}},
		to:    4,
		want:  []string{"+4 trigger  6", "+15 resolve  0"},
	},
	{
		name: "repeat_interval renotifies while firing",
		rules: []string{`{"name":"steady","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"1m"},
			"repeat_interval":"2m","resolve_after":"1m"}`},
		puts: replayEvery("Exception", "h", 0, 5, 6),
		to:   5,
		// Minute 5 holds until settled at +7; false from +8, resolved at +9.
		want: []string{"+0 trigger  6", "+2 renotify  6", "+4 renotify  6", "+6 renotify  6", "+9 resolve  0"},
	},
	{
		name:  "absence fires when heartbeats stop and resolves when they resume",
		rules: []string{`{"name":"heartbeat","keywords":["heartbeat ok"],"condition":{"type":"absence","window":"5m"},"resolve_after":"2m"}`},
		puts:  append(replayEvery("heartbeat ok", "h", 0, 9, 1), replayEvery("heartbeat ok", "h", 20, 29, 1)...),
		to:    29,
		// Judged on the window ending 2 minutes back (complete minute, 1m
		// eval_delay): [10,14] is empty at +16; [16,20] holds one at +22.
		want: []string{"+16 trigger  0", "+24 resolve  3"},
	},
	{
		name:  "absence waits its first window",
		rules: []string{`{"name":"heartbeat","keywords":["heartbeat ok"],"condition":{"type":"absence","window":"5m"}}`},
		puts:  replayEvery("INFO", "h", 0, 8, 1),
		to:    8,
		// The first settled window after the rule's minute, [1,5], at +7.
		want: []string{"+7 trigger  0"},
	},
	{
		name:  "absence does not fire because the data ended",
		rules: []string{`{"name":"heartbeat","keywords":["heartbeat ok"],"condition":{"type":"absence","window":"5m"}}`},
		puts:  replayEvery("heartbeat ok", "h", 0, 9, 1),
		to:    9,
		want:  nil,
	},
	{
		name: "spike against the baseline",
		rules: []string{`{"name":"spike","keywords":["WARN"],"condition":{"type":"spike","window":"1m","factor":3,"min_count":5,"baseline":"10m"},
			"resolve_after":"1m"}`},
		puts: append(replayEvery("WARN", "h", 0, 14, 2), append([]replayPut{{"WARN", 15, "h", 20}}, replayEvery("WARN", "h", 16, 29, 2)...)...),
		to:   29,
		want: []string{"+15 trigger  20", "+19 resolve  2"},
	},
	{
		// Without coverage the first minute, with nothing before it, would page.
		name: "spike at the start of a replay has no baseline",
		rules: []string{`{"name":"spike","keywords":["WARN"],"condition":{"type":"spike","window":"1m","factor":3,"min_count":5,"baseline":"10m"},
			"resolve_after":"1m"}`},
		puts: append([]replayPut{{"WARN", 0, "h", 50}}, append(replayEvery("WARN", "h", 1, 14, 2), append([]replayPut{{"WARN", 15, "h", 20}}, replayEvery("WARN", "h", 16, 20, 2)...)...)...),
		to:   20,
		want: []string{"+15 trigger  20", "+19 resolve  2"},
	},
	{
		name: "group_by host alerts per host and filters apply",
		rules: []string{`{"name":"per host","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},
			"group_by":"host","filters":{"host":"web-*"},"resolve_after":"0s"}`},
		puts: []replayPut{{"Exception", 0, "web-1", 6}, {"Exception", 0, "web-2", 2}, {"Exception", 0, "db-1", 50}, {"Exception", 2, "web-2", 3}},
		to:   6,
		want: []string{"+0 trigger web-1 6", "+2 trigger web-2 5", "+7 resolve web-1 0", "+7 resolve web-2 0"},
	},
	{
		name: "for: pages once the condition held for 2m",
		rules: []string{`{"name":"held","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"1m"},
			"for":"2m","resolve_after":"1m"}`},
		puts: replayEvery("Exception", "h", 0, 5, 6),
		to:   5,
		// Pending at +0 and +1; false once minute 5 is settled (+8),
		// resolved a minute later.
		want: []string{"+2 trigger  6", "+9 resolve  0"},
	},
	{
		name: "for: a condition that stops at 1m never pages",
		rules: []string{`{"name":"blip","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"1m"},
			"for":"2m","resolve_after":"1m"}`},
		puts: replayEvery("Exception", "h", 0, 1, 6),
		to:   5,
		want: nil,
	},
	{
		name: "for: a host going silent drops its pending alert; it starts over when it is back",
		rules: []string{`{"name":"per host","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"1m"},
			"group_by":"host","for":"2m","resolve_after":"1m"}`},
		puts: append([]replayPut{{"Exception", 0, "web-1", 6}}, replayEvery("Exception", "web-1", 3, 6, 6)...),
		to:   6,
		want: []string{"+5 trigger web-1 6", "+10 resolve web-1 0"},
	},
	{
		name: "absence 1m: a heartbeat every minute never pages",
		rules: []string{`{"name":"hb","keywords":["heartbeat ok"],"condition":{"type":"absence","count":1,"window":"1m"},
			"group_by":"host","resolve_after":"1m"}`},
		puts: append(replayEvery("heartbeat ok", "h1", 0, 12, 6), replayEvery("heartbeat ok", "h2", 0, 12, 6)...),
		to:   12,
		want: nil,
	},
	{
		name: "absence 1m: a heartbeat that stops pages once and resolves once when it resumes",
		rules: []string{`{"name":"hb","keywords":["heartbeat ok"],"condition":{"type":"absence","count":1,"window":"1m"},
			"group_by":"host","resolve_after":"1m"}`},
		puts: append(append(replayEvery("heartbeat ok", "h1", 0, 4, 6), replayEvery("heartbeat ok", "h1", 10, 15, 6)...),
			replayEvery("heartbeat ok", "h2", 0, 15, 6)...),
		to: 15,
		// Judged on the minute two back (complete, then the 1m eval_delay):
		// minute 5 is empty at +7; minute 10 counts at +12, resolved 1m later.
		want: []string{"+7 trigger h1 0", "+13 resolve h1 6"},
	},
	{
		name: "absence: a host first seen after the rule started is not missed for the minutes before",
		rules: []string{`{"name":"hb","keywords":["heartbeat ok"],"condition":{"type":"absence","count":1,"window":"1m"},
			"group_by":"host"}`},
		puts: append(replayEvery("heartbeat ok", "h1", 0, 12, 6), replayEvery("heartbeat ok", "h2", 5, 12, 6)...),
		to:   12,
		want: nil,
	},
	{
		name: "absence: forget_after resolves the firing alert of a group silent that long",
		rules: []string{`{"name":"hb","keywords":["heartbeat ok"],"condition":{"type":"absence","count":1,"window":"1m"},
			"group_by":"host","forget_after":"1h"}`},
		puts: append([]replayPut{{"heartbeat ok", 0, "h1", 6}}, replayEvery("heartbeat ok", "h2", 0, 62, 6)...),
		to:   62,
		// Last seen at +0: remembered through +60, forgotten at +61.
		want: []string{"+3 trigger h1 0", "+61 resolve h1 0"},
	},
	{
		name:  "a disabled rule is not evaluated",
		rules: []string{`{"name":"off","keywords":["Exception"],"condition":{"type":"threshold","count":1,"window":"1m"},"enabled":false}`},
		puts:  []replayPut{{"Exception", 0, "h", 9}},
		to:    3,
		want:  nil,
	},
}

func TestReplayEmitsWhatTheRulesWouldHaveSent(t *testing.T) {
	for _, sc := range replayScenarios {
		t.Run(sc.name, func(t *testing.T) {
			var rs []rules.Rule
			for _, b := range sc.rules {
				rs = append(rs, replayRule(t, b))
			}
			evs, err := Replay(rs, replayCells(sc.puts), replayBase, replayBase.Add(time.Duration(sc.to)*time.Minute+59*time.Second), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if got := replayLines(evs); !slices.Equal(got, sc.want) {
				t.Fatalf("events\n got %q\nwant %q", got, sc.want)
			}
		})
	}
}

// Replay reads a seasonal spike's past days from the recording as the engine
// reads them from Redis: a rhythm that doubles every day at 22:00 pages
// against the hour before (flat) but not against the same hour on the days
// before (seasonal), which pages on the third day's real anomaly.
func TestReplaySeasonalSpike(t *testing.T) {
	const day = 24 * 60
	var puts []replayPut
	for d := 0; d < 3; d++ {
		puts = append(puts, replayEvery("Timeout", "h", d*day, d*day+599, 10)...)
		busy := int64(20)
		if d == 2 {
			busy = 60
		}
		puts = append(puts, replayEvery("Timeout", "h", d*day+600, d*day+659, busy)...) // 22:00-22:59
		puts = append(puts, replayEvery("Timeout", "h", d*day+660, d*day+day-1, 10)...)
	}
	rs := []rules.Rule{
		replayRule(t, `{"name":"flat","keywords":["Timeout"],"condition":{"type":"spike","window":"5m","factor":2,"min_count":10,"baseline":"1h"},"resolve_after":"0s"}`),
		replayRule(t, `{"name":"daily","keywords":["Timeout"],"condition":{"type":"spike","window":"5m","factor":2,"min_count":10,"seasonal":{"period":"1d","n":2}},"resolve_after":"0s"}`),
	}
	evs, err := Replay(rs, replayCells(puts), replayBase, replayBase.Add(3*24*time.Hour-time.Minute), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		if e.Kind == ReplayTrigger {
			got = append(got, fmt.Sprintf("%s %s", e.RuleName, replayClock(e.At)))
		}
	}
	// Flat: each day at 22:04, when the window is all busy minutes (100 >= 2 x
	// 50), on day 2 at once (4 x 10 + 60). Daily: days 0 and 1 have too few
	// past days (more than half of n=2 must hold counts); on day 2 the window
	// 3 x 10 + 2 x 60 is 2x the 70 of the same window on days 0 and 1.
	want := []string{"flat +604", "flat +2044", "flat +3480", "daily +3481"}
	if !slices.Equal(got, want) {
		t.Fatalf("triggers %q, want %q", got, want)
	}
}

func TestReplayEventCarriesTheEnginesSummaryAndDetails(t *testing.T) {
	r := replayRule(t, `{"name":"java exceptions","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},"group_by":"host"}`)
	r.ID = "from-the-export"
	cells := replayCells([]replayPut{{"Exception", 3, "web-1", 2}, {"Exception", 4, "web-1", 5}})
	evs, err := Replay([]rules.Rule{r}, cells, replayBase, replayBase.Add(4*time.Minute), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("events %q", replayLines(evs))
	}
	tr, res := evs[0], evs[1]
	if tr.Summary != "Exception seen 7 times in 5m on web-1 (rule java exceptions)" || tr.Condition != "count >= 5 over 5m" ||
		tr.RuleID != "from-the-export" || tr.RuleName != "java exceptions" || tr.GroupBy != rules.GroupHost || tr.Rule != 0 {
		t.Fatalf("trigger %+v", tr)
	}
	if tr.CountsPerMinute["2025-03-01T12:03:00Z"] != 2 || tr.CountsPerMinute["2025-03-01T12:04:00Z"] != 5 || len(tr.CountsPerMinute) != 5 {
		t.Fatalf("counts per minute %v", tr.CountsPerMinute)
	}
	// False from +11 (the window [5,9] is empty and settled), resolved after the default 5m.
	if res.Kind != ReplayResolve || replayClock(res.At) != "+16" || !res.StartedAt.Equal(tr.At) ||
		res.Summary != "condition false for 5m, after firing for 12m (rule java exceptions)" || res.CountsPerMinute != nil {
		t.Fatalf("resolve %+v", res)
	}
}

func TestReplayStepFinerThanAMinute(t *testing.T) {
	r := replayRule(t, `{"name":"burst","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},"resolve_after":"90s"}`)
	evs, err := Replay([]rules.Rule{r}, replayCells([]replayPut{{"Exception", 0, "h", 5}}), replayBase, replayBase, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(evs))
	for i, e := range evs {
		got[i] = e.Kind + " " + e.At.Sub(replayBase).String()
	}
	// The window ending +4m is settled at +6m, so false from +7m; resolve_after 90s is honoured to the step, not the minute.
	if want := []string{"trigger 0s", "resolve 8m30s"}; !slices.Equal(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestReplayRejectsABadClock(t *testing.T) {
	r := replayRule(t, `{"name":"x","keywords":["x"],"condition":{"type":"threshold","count":1,"window":"1m"}}`)
	tests := []struct {
		name     string
		from, to time.Time
		step     time.Duration
		want     string
	}{
		{"zero step", replayBase, replayBase, 0, "step 0s"},
		{"step over a minute", replayBase, replayBase, 2 * time.Minute, "step 2m0s"},
		{"end before start", replayBase, replayBase.Add(-time.Hour), time.Minute, "before start"},
		{"too many steps", replayBase, replayBase.Add(100 * 365 * 24 * time.Hour), time.Second, "over the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Replay([]rules.Rule{r}, nil, tt.from, tt.to, tt.step)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// TestReplayAgreesWithTheEngine runs each scenario through the real engine
// on a real Redis, one tick per minute (30s into it), and checks that the
// alert histories it writes match the replay's events minute for minute.
func TestReplayAgreesWithTheEngine(t *testing.T) {
	for _, sc := range replayScenarios {
		t.Run(sc.name, func(t *testing.T) {
			v := newEnv(t) // clock at 12:00:30, i.e. replayBase + 30s
			var rs []rules.Rule
			for _, b := range sc.rules {
				b = strings.Replace(b, `"name"`, `"pagerduty":{"routing_key":"`+testKey+`"},"name"`, 1)
				rs = append(rs, v.rule(b))
			}
			for _, p := range sc.puts {
				id := keyword.Spec{Text: p.kw}.ID()
				minute := replayBase.Unix() + int64(p.min)*60
				if err := v.rdb.HIncrBy(v.ctx, v.win.Keys().Window(id, minute), window.Field(p.host, "app"), p.n).Err(); err != nil {
					t.Fatal(err)
				}
				v.marker(id, minute)
			}
			evs, err := Replay(rs, replayCells(sc.puts), replayBase, replayBase.Add(time.Duration(sc.to)*time.Minute), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			// The engine does not know when the data ends, so it runs to the
			// replay's last event, or the data's end for an absence rule.
			last := sc.to
			for _, e := range evs {
				last = max(last, int(e.At.Sub(replayBase)/time.Minute))
			}
			for m := 0; m <= last; m++ {
				v.tick()
				v.clk.Add(time.Minute)
			}
			groups := map[string]bool{}
			for _, e := range evs {
				groups[e.Group] = true
			}
			for _, p := range sc.puts {
				groups[p.host] = true
			}
			groups[""] = true
			var engine []string
			for _, r := range rs {
				for g := range groups {
					a := v.alert(r.ID, g)
					if a == nil {
						continue
					}
					for _, h := range a.History {
						kind := map[string]string{"firing": ReplayTrigger, "renotified": ReplayRenotify, "resolved": ReplayResolve}[h.Event]
						if kind != "" {
							engine = append(engine, fmt.Sprintf("%s %s %s", replayClock(h.At.Truncate(time.Minute)), kind, g))
						}
					}
				}
			}
			var replayed []string
			for _, e := range evs {
				replayed = append(replayed, fmt.Sprintf("%s %s %s", replayClock(e.At), e.Kind, e.Group))
			}
			slices.Sort(engine)
			slices.Sort(replayed)
			if !slices.Equal(engine, replayed) {
				t.Fatalf("engine %q\nreplay %q", engine, replayed)
			}
		})
	}
}

// latePut is a replayPut the engine receives only at minute arrive (its
// ingest applies it then); replay, which has no arrival times, has it
// from the start.
type latePut struct {
	replayPut
	arrive int
}

// TestReplayAgreesWithTheEngineOnLateData: a burst the engine learns of
// after its minutes were judged pages late, at arrival, dated at its event
// time; replay pages it on time. The triggers' event times and windows are
// equal; late is the one field that differs.
func TestReplayAgreesWithTheEngineOnLateData(t *testing.T) {
	scenarios := []struct {
		name  string
		rule  string
		puts  []latePut
		to    int
		want  []string // replay's triggers: minute, group, event time
		late  int      // how many of the engine's triggers are late
		runTo int
		win   time.Duration
	}{
		{
			name: "a backlog burst three minutes late",
			rule: `{"name":"burst","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},"group_by":"host"}`,
			puts: []latePut{{replayPut{"Exception", 2, "web-1", 6}, 5}, {replayPut{"Exception", 4, "web-2", 6}, 4}},
			to:   8, runTo: 8, win: 5 * time.Minute,
			want: []string{"+2 web-1 event +3 window +-2..+3", "+4 web-2 event +5 window +0..+5"},
			late: 1,
		},
		{
			name: "for: 2m, every window of the spell settled when it arrives",
			rule: `{"name":"held","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"1m"},"group_by":"host","for":"2m"}`,
			puts: []latePut{{replayPut{"Exception", 2, "web-1", 6}, 9}, {replayPut{"Exception", 3, "web-1", 6}, 9}, {replayPut{"Exception", 4, "web-1", 6}, 9}},
			to:   10, runTo: 10, win: time.Minute,
			want: []string{"+4 web-1 event +5 window +4..+5"},
			late: 1,
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			var all []replayPut
			for _, p := range sc.puts {
				all = append(all, p.replayPut)
			}
			evs, err := Replay([]rules.Rule{replayRule(t, sc.rule)}, replayCells(all), replayBase, replayBase.Add(time.Duration(sc.to)*time.Minute), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			var replayed []string
			for _, e := range evs {
				if e.Kind == ReplayTrigger {
					replayed = append(replayed, fmt.Sprintf("%s %s event %s window %s..%s", replayClock(e.At), e.Group,
						replayClock(e.EventTime), replayClock(e.EventWindow.From), replayClock(e.EventWindow.To)))
				}
			}
			if !slices.Equal(replayed, sc.want) {
				t.Fatalf("replay %q, want %q", replayed, sc.want)
			}

			v := newEnv(t) // 12:00:30
			v.startSender()
			body := strings.Replace(sc.rule, `"name"`, `"pagerduty":{"routing_key":"`+testKey+`"},"name"`, 1)
			v.rule(body)
			for m := 0; m <= sc.runTo; m++ {
				for _, p := range sc.puts {
					if p.arrive == m {
						v.deliver(p.kw, p.host, replayBase.Unix()+int64(p.min)*60, p.n)
					}
				}
				v.tick()
				v.clk.Add(time.Minute)
			}
			var engine []string
			late := 0
			for _, n := range v.events(len(sc.want)) {
				if n.Action != notify.Trigger {
					continue
				}
				ew := n.EventWindow
				if n.Late {
					late++
				} else {
					// On time: the window ends with the minute it fired in.
					m := n.At.Truncate(time.Minute)
					ew = &notify.EventWindow{From: m.Add(-(sc.win - time.Minute)), To: m.Add(time.Minute)}
				}
				// The engine's trigger minute is its arrival; replay's is
				// the event minute: compare the event times.
				engine = append(engine, fmt.Sprintf("%s %s event %s window %s..%s", replayClock(ew.To.Add(-time.Minute)), n.Group,
					replayClock(ew.To), replayClock(ew.From), replayClock(ew.To)))
			}
			slices.Sort(engine)
			if !slices.Equal(engine, sc.want) || late != sc.late {
				t.Fatalf("engine %q (%d late)\nreplay %q (%d late)", engine, late, sc.want, sc.late)
			}
		})
	}
}

// BenchmarkReplayDay replays a day of per-minute counts on 20 hosts against
// a threshold, an absence and a spike rule grouped by host.
func BenchmarkReplayDay(b *testing.B) {
	var puts []replayPut
	for h := 0; h < 20; h++ {
		host := fmt.Sprintf("web-%d", h)
		puts = append(puts, replayEvery("Exception", host, 0, 24*60-1, int64(1+h%3))...)
		puts = append(puts, replayEvery("heartbeat ok", host, 0, 24*60-1, 1)...)
	}
	cells := replayCells(puts)
	rs := []rules.Rule{
		replayRule(b, `{"name":"t","keywords":["Exception"],"condition":{"type":"threshold","count":12,"window":"5m"},"group_by":"host"}`),
		replayRule(b, `{"name":"a","keywords":["heartbeat ok"],"condition":{"type":"absence","window":"5m"},"group_by":"host"}`),
		replayRule(b, `{"name":"s","keywords":["Exception"],"condition":{"type":"spike","window":"5m","factor":3,"baseline":"1h"},"group_by":"host"}`),
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Replay(rs, cells, replayBase, replayBase.Add(24*time.Hour-time.Minute), time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}
