package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
)

// Issue #10, "Pages on-call can trust": each row is a timeline on an
// injected clock through the real plugin, Redis, keyalertd and the
// PagerDuty stand-in, with the exact pages expected (backend/alerting.md,
// § Semantics and § Cases, is the spec). Offsets are from the row's start,
// a whole hour in the recent past (counts expire on Redis's real clock).
// Then the row's records run through package replay with the same rules,
// and replay's pages must be the ones pdreceiver received.

// scenario is one row.
type scenario struct {
	name  string
	rules []string // rule JSON bodies, %q for the routing key; created at offset 0
	env   map[string]string
	steps []step
	want  []page
	// replay, when not empty, says why replay is not compared for this row.
	replay string
	// replayWant, when not nil, is what replay finds where it differs by
	// design from the engine (see the row's comment); nil: the engine's pages.
	replayWant []page
	// alt are other outcomes the row accepts, for a race the row's comment
	// explains.
	alt [][]page
	// replayRules and replayEnd, when set, replay other rules (a row that
	// edits its rule replays the rule as it was before) up to another end.
	replayRules []string
	replayEnd   time.Duration
	// pending, when not empty, skips the row with that reason when its pages
	// differ: the engine lacks what the row is written against.
	pending string
	// end is the timeline's last offset; replay's pages after it are left out.
	end time.Duration
}

const m = time.Minute

const (
	// hbRule: absence, 1m window, count 1, by host, resolve after 1m.
	hbRule = `{"name": "heartbeat", "keywords": ["heartbeat"], "condition": {"type": "absence", "window": "1m", "count": 1},
		"group_by": "host", "resolve_after": "1m", "pagerduty": {"routing_key": %q}}`
	// errRule: threshold, 10 in 5m, by host.
	errRule = `{"name": "errors", "keywords": ["ERROR"], "condition": {"type": "threshold", "count": 10, "window": "5m"},
		"group_by": "host", "resolve_after": "1m", "pagerduty": {"routing_key": %q}}`
)

const (
	// fleetRule: threshold, 1 in 5m, group_by none.
	fleetRule = `{"name": "fleet errors", "keywords": ["ERROR"], "condition": {"type": "threshold", "count": 1, "window": "5m"},
		"resolve_after": "1m", "pagerduty": {"routing_key": %q}}`
	// spikeRule: 3 × the trailing 10m baseline, at least 5, in 1m, by host.
	spikeRule = `{"name": "error spike", "keywords": ["ERROR"], "condition": {"type": "spike", "factor": 3, "min_count": 5,
		"window": "1m", "baseline": "10m"}, "group_by": "host", "pagerduty": {"routing_key": %q}}`
	// seasonalRule: 2 × the same 5m window yesterday, at least 5, by host.
	seasonalRule = `{"name": "error spike vs yesterday", "keywords": ["ERROR"], "condition": {"type": "spike", "factor": 2,
		"min_count": 5, "window": "5m", "seasonal": {"period": "1d", "n": 1}}, "group_by": "host", "pagerduty": {"routing_key": %q}}`
)

// silenceBody is a silence matching what, from the clock to an hour after
// the rows' start.
func silenceBody(what string) string {
	return fmt.Sprintf(`{%s, "author": "ops", "comment": "scenario", "end": %q}`, what, scenarioBase.Add(time.Hour).Format(time.RFC3339))
}

// forRule is a threshold of 1 over window on keyword kw, by host, for 2m.
func forRule(kw, window string) string {
	return `{"name": "` + kw + ` for 2m", "keywords": ["` + kw + `"], "condition": {"type": "threshold", "count": 1, "window": "` +
		window + `"}, "for": "2m", "group_by": "host", "pagerduty": {"routing_key": %q}}`
}

// forRecs: Alpha on web-1 and Beta on web-2 at offset ev.
func forRecs(ev time.Duration) []rec {
	return []rec{{at: ev, host: "web-1", tag: "app.log", text: "Alpha on web-1"}, {at: ev, host: "web-2", tag: "app.log", text: "Beta on web-2"}}
}

// scenarioBase is offset 0 of every row: a whole hour in the recent past,
// since counts expire on Redis's real clock. A package variable so that rows
// can spell their lines (which start with their event time).
var scenarioBase = time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)

// line is the log line of text at offset ev.
func line(ev time.Duration, text string) string {
	return scenarioBase.Add(ev).Format(time.RFC3339) + " " + text
}

// errRecs are n ERROR lines of host under app.log, one a second from ev.
func errRecs(ev time.Duration, host string, n int) []rec {
	var out []rec
	for i := 0; i < n; i++ {
		out = append(out, rec{at: ev + time.Duration(i)*time.Second, host: host, tag: "app.log", text: fmt.Sprintf("ERROR request %d failed on %s", i, host)})
	}
	return out
}

// errSamples are the sample lines of errRecs(ev, host, n), flushed in one
// chunk, in a page: the plugin keeps the first lines of a flush (Samples 5),
// the page shows them newest first.
func errSamples(ev time.Duration, host string, n int) []string {
	var out []string
	for i := min(n, alert.DefaultSampleLines) - 1; i >= 0; i-- {
		out = append(out, line(ev+time.Duration(i)*time.Second, fmt.Sprintf("ERROR request %d failed on %s", i, host)))
	}
	return out
}

// perMinute: one ERROR line of host at each whole minute from..to, the
// clock at each.
func perMinute(from, to int, host string) []step {
	var out []step
	for k := from; k <= to; k++ {
		out = append(out, at(time.Duration(k)*m), chunkOf(errRecs(time.Duration(k)*m, host, 1)...))
	}
	return out
}

func hbRuleWith(extra string) string {
	return strings.Replace(hbRule, `"resolve_after": "1m"`, `"resolve_after": "1m", `+extra, 1)
}

func scenarios() []scenario {
	web1, web2 := beat{host: "web-1"}, beat{host: "web-2"}
	errLines := func(ev time.Duration, host string, n int) step {
		return lines(ev, host, "app.log", n, "ERROR request %d failed on "+host)
	}
	return []scenario{
		{
			name:  "heartbeats every 10s across 10 minute boundaries page nobody",
			rules: []string{hbRule},
			steps: []step{beats(0, 10*m, web1, web2)},
			end:   10 * m,
		},
		{
			// alerting.md § Cases: with resolve_after 0s (before eval_delay:
			// a page and a resolve every minute) and 1m, nothing.
			name:  "heartbeats with resolve_after 0s and 1m page nobody",
			rules: []string{hbRule, strings.Replace(hbRule, `"resolve_after": "1m"`, `"resolve_after": "0s"`, 1)},
			steps: []step{beats(0, 6*m, web1)},
			end:   6 * m,
		},
		{
			// web-1's last heartbeat is at 4:50: minute 5:00 is its first
			// empty one, settled (eval_delay 1m) at 7:00. It resumes at 10:00,
			// settled at 12:00, resolved resolve_after (1m) later.
			name:  "a heartbeat stops: one page; it resumes: one resolve",
			rules: []string{hbRule},
			steps: []step{beats(0, 14*m, beat{host: "web-1", gaps: []span{{5 * m, 10 * m}}}, web2)},
			want: []page{
				{action: "trigger", rule: 0, group: "web-1", count: 0, at: 7 * m, samples: []string{}},
				{action: "resolve", rule: 0, group: "web-1"},
			},
			end: 14 * m,
		},
		{
			// keyalertd is down from 3:05 to 8:00 while web-1 stops after
			// 3:50: the group is remembered in Redis, so the first evaluation
			// after the restart pages. Replay has no restart: it pages when the
			// engine would have had it been running, at 6:00.
			name:  "keyalertd down for 5 minutes while a heartbeat stops: a page after the restart",
			rules: []string{hbRule},
			steps: []step{
				beats(0, 3*m, web1, web2), clockTo(3*m + 5*time.Second), stopKeyalertd(),
				beats(3*m+10*time.Second, 8*m-10*time.Second, beat{host: "web-1", to: 3*m + 50*time.Second}, web2),
				clockTo(8 * m), startKeyalertd(),
				beats(8*m, 14*m, beat{host: "web-1", from: 10 * m}, web2),
			},
			want: []page{
				{action: "trigger", rule: 0, group: "web-1", count: 0, at: 8 * m, samples: []string{}},
				{action: "resolve", rule: 0, group: "web-1"},
			},
			replayWant: []page{
				{action: "trigger", rule: 0, group: "web-1", count: 0, at: 6 * m, samples: []string{}},
				{action: "resolve", rule: 0, group: "web-1"},
			},
			end: 14 * m,
		},
		{
			// A 1m absence window needs eval_delay ≥ the skew: with 5m, a host
			// 3 minutes behind (and one whose first heartbeat comes late)
			// never looks absent.
			name:  "a host clock 3 minutes behind with eval_delay 5m pages nobody",
			rules: []string{hbRuleWith(`"eval_delay": "5m"`)},
			steps: []step{beats(0, 12*m, beat{host: "web-1", skew: 3 * m}, beat{host: "web-2", skew: 3 * m, from: 6 * m}, web2)},
			end:   12 * m,
		},
		{
			// The same skew with the default 1m delay: the settled minute is
			// always two minutes ahead of the host's newest heartbeat, so the
			// rule pages as soon as it is evaluated (3:00). Replay sees event
			// times only, so no skew: nothing.
			name:       "a host clock 3 minutes behind with the default eval_delay pages",
			rules:      []string{hbRule},
			steps:      []step{beats(0, 6*m, beat{host: "web-1", skew: 3 * m})},
			want:       []page{{action: "trigger", rule: 0, group: "web-1", count: 0, at: 3 * m, samples: []string{}}},
			replayWant: []page{},
			end:        6 * m,
		},
		{
			// 20 lines of 2:00 arrive at 12:30 (the spec of late-data paging):
			// one page when they arrive, stamped with the end of the event-time
			// window where the condition held (minute 2's 5m window ends at
			// 3:00), late, event_window -2:00 to 3:00; then the normal lifecycle: the current windows are
			// false, so it resolves resolve_after (1m) later.
			name:  "20 lines 10 minutes late: one late page at their event time",
			rules: []string{errRule},
			steps: []step{
				at(12*m + 30*time.Second), errLines(2*m, "web-1", 20),
				at(13*m + 30*time.Second), at(14*m + 30*time.Second), at(15*m + 30*time.Second),
			},
			want: []page{
				{action: "trigger", rule: 0, group: "web-1", count: 20, at: 3 * m, late: true, window: [2]time.Duration{-2 * m, 3 * m}, samples: errSamples(2*m, "web-1", 20)},
				{action: "resolve", rule: 0, group: "web-1"},
			},
			end: 15*m + 30*time.Second,
		},
		{
			// A burst of 5:00 while Redis is down from 5:00 to 8:00: the plugin
			// answers retry, Fluent Bit flushes the chunk again once Redis is
			// back. Minute 5 was judged (empty) before the retry brings it, so
			// the entries are late: one page, marked late, dated at the end of
			// the first 5m window that holds (1:00–6:00). Replay has no arrival
			// time: it pages at the burst's minute.
			// One page. Late, in event time, when the change marker of the
			// replayed batch is read with its counts; but a tick whose cache
			// was reset by the outage may read the counts between their
			// apply and their marker, and then the live 5m window at 8:00
			// (which still holds minute 5) pages on time, at 8:00 or, when
			// the replay lands after that minute's ticks, at 8:30: also one
			// page.
			name:  "a burst during a 3-minute Redis outage, replayed afterwards: one page",
			rules: []string{errRule},
			steps: []step{at(5 * m), redisDown(), errLines(5*m, "web-1", 30), clockTo(8 * m), redisUp(), at(8*m + 30*time.Second)},
			want: []page{
				{action: "trigger", rule: 0, group: "web-1", count: 30, at: 6 * m, late: true, window: [2]time.Duration{1 * m, 6 * m}, samples: errSamples(5*m, "web-1", 30)},
			},
			alt: [][]page{
				{{action: "trigger", rule: 0, group: "web-1", count: 30, at: 8 * m, samples: errSamples(5*m, "web-1", 30)}},
				{{action: "trigger", rule: 0, group: "web-1", count: 30, at: 8*m + 30*time.Second, samples: errSamples(5*m, "web-1", 30)}},
			},
			replayWant: []page{
				{action: "trigger", rule: 0, group: "web-1", count: 30, at: 5 * m, samples: errSamples(5*m, "web-1", 30)},
			},
			end: 8*m + 30*time.Second,
		},
		{
			// The same with a 1m window: by 8:00 the burst's window is long
			// past, so only late-data paging pages: once, at the end of minute
			// 5, late.
			name:  "a burst during a 3-minute Redis outage against a 1m window: one late page",
			rules: []string{strings.Replace(errRule, `"window": "5m"`, `"window": "1m"`, 1)},
			steps: []step{at(5 * m), redisDown(), errLines(5*m, "web-1", 30), clockTo(8 * m), redisUp(), at(8*m + 30*time.Second)},
			want: []page{
				{action: "trigger", rule: 0, group: "web-1", count: 30, at: 6 * m, late: true, window: [2]time.Duration{5 * m, 6 * m}, samples: errSamples(5*m, "web-1", 30)},
			},
			replayWant: []page{
				{action: "trigger", rule: 0, group: "web-1", count: 30, at: 5 * m, samples: errSamples(5*m, "web-1", 30)},
			},
			end: 8*m + 30*time.Second,
		},
		{
			name:  "one chunk from three hosts: three pages, each with its own samples",
			rules: []string{strings.Replace(errRule, `"count": 10`, `"count": 3`, 1)},
			steps: []step{at(1 * m), chunkOf(slices.Concat(errRecs(1*m, "web-1", 3), errRecs(1*m, "web-2", 4), errRecs(1*m, "web-3", 5))...)},
			want: []page{
				{action: "trigger", rule: 0, group: "web-1", count: 3, at: 1 * m, samples: errSamples(1*m, "web-1", 3)},
				{action: "trigger", rule: 0, group: "web-2", count: 4, at: 1 * m, samples: errSamples(1*m, "web-2", 4)},
				{action: "trigger", rule: 0, group: "web-3", count: 5, at: 1 * m, samples: errSamples(1*m, "web-3", 5)},
			},
			end: 1 * m,
		},
		{
			// alerting.md § Cases: group_by host → none while web-1 and web-2
			// fire, the fleet-wide count still over the threshold.
			name:  "group_by host to none on a firing rule: a resolve per old group, then the fleet-wide page",
			rules: []string{strings.Replace(errRule, `"count": 10`, `"count": 2`, 1)},
			steps: []step{
				at(1 * m), chunkOf(slices.Concat(errRecs(1*m, "web-1", 3), errRecs(1*m+10*time.Second, "web-2", 3))...),
				at(2 * m), editRule(0, strings.Replace(strings.Replace(errRule, `"count": 10`, `"count": 2`, 1), `"group_by": "host"`, `"group_by": "none"`, 1)),
			},
			want: []page{
				{action: "trigger", rule: 0, group: "web-1", count: 3, at: 1 * m, samples: errSamples(1*m, "web-1", 3)},
				{action: "resolve", rule: 0, group: "web-1"},
				{action: "trigger", rule: 0, group: "web-2", count: 3, at: 1 * m, samples: errSamples(1*m+10*time.Second, "web-2", 3)},
				{action: "resolve", rule: 0, group: "web-2"},
				{action: "trigger", rule: 0, group: "", count: 6, at: 2 * m,
					// Newest minute first; within the minute the series take turns.
					samples: []string{
						line(1*m+2*time.Second, "ERROR request 2 failed on web-1"), line(1*m+12*time.Second, "ERROR request 2 failed on web-2"),
						line(1*m+1*time.Second, "ERROR request 1 failed on web-1"), line(1*m+11*time.Second, "ERROR request 1 failed on web-2"),
						line(1*m, "ERROR request 0 failed on web-1")}},
			},
			// Replay knows no edits: it replays the rule as it was, up to the
			// edit, and finds the two host pages.
			replayRules: []string{strings.Replace(errRule, `"count": 10`, `"count": 2`, 1)},
			replayEnd:   2*m - time.Second,
			replayWant: []page{
				{action: "trigger", rule: 0, group: "web-1", count: 3, at: 1 * m, samples: errSamples(1*m, "web-1", 3)},
				{action: "trigger", rule: 0, group: "web-2", count: 3, at: 1 * m, samples: errSamples(1*m+10*time.Second, "web-2", 3)},
			},
			end: 2 * m,
		},
		{
			name:  "host silence, group_by none: silenced while web-1 alone matches, a page once web-2 adds a match",
			rules: []string{fleetRule},
			steps: []step{
				silenceStep(silenceBody(`"host": "web-1"`)),
				at(1 * m), errLines(1*m, "web-1", 2), at(2 * m), errLines(2*m, "web-2", 1),
			},
			want: []page{{action: "trigger", rule: 0, group: "", count: 3, at: 2 * m,
				samples: slices.Concat(errSamples(2*m, "web-2", 1), errSamples(1*m, "web-1", 2))}},
			replay: "replay has no silences",
			end:    2 * m,
		},
		{
			name:  "host silence, group_by none, matches from web-1 and db-1: a page",
			rules: []string{fleetRule},
			steps: []step{
				silenceStep(silenceBody(`"host": "web-1"`)),
				at(1 * m), chunkOf(slices.Concat(errRecs(1*m, "web-1", 1), errRecs(1*m+5*time.Second, "db-1", 1))...),
			},
			want: []page{{action: "trigger", rule: 0, group: "", count: 2, at: 1 * m,
				samples: slices.Concat(errSamples(1*m+5*time.Second, "db-1", 1), errSamples(1*m, "web-1", 1))}},
			replay: "replay has no silences",
			end:    1 * m,
		},
		{
			name:  "tag silence app.*, group_by host: silenced under app.x and app.y, a page once the host logs under db.z",
			rules: []string{strings.Replace(errRule, `"count": 10`, `"count": 1`, 1)},
			steps: []step{
				silenceStep(silenceBody(`"tag": "app.*"`)),
				at(1 * m), lines(1*m, "web-1", "app.x", 1, "ERROR x"), at(2 * m), lines(2*m, "web-1", "app.y", 1, "ERROR y"),
				at(3 * m), lines(3*m, "web-1", "db.z", 1, "ERROR z"),
			},
			want: []page{{action: "trigger", rule: 0, group: "web-1", count: 3, at: 3 * m, samples: []string{
				line(3*m, "ERROR z"), line(2*m, "ERROR y"), line(1*m, "ERROR x")}}},
			replay: "replay has no silences",
			end:    3 * m,
		},
		{
			// web-1's last heartbeat is at 4:00; its absence is judged at 7:00 on
			// the settled minute 5:00. The silence sees hb.main in "the window
			// and the one before" (4:00–5:00), read around the settled minute
			// (backend/alert/target.go), and keeps the alert silenced after.
			name:   "tag silence hb.*, absence by host: the heartbeats stop, nothing pages, also once long gone",
			rules:  []string{hbRule},
			steps:  []step{silenceStep(silenceBody(`"tag": "hb.*"`)), beats(0, 12*m, beat{host: "web-1", to: 4 * m}, web2)},
			replay: "replay has no silences",
			end:    12 * m,
		},
		{
			name:  "a silence ends while its alert fires: it pages then",
			rules: []string{strings.Replace(errRule, `"count": 10`, `"count": 1`, 1)},
			steps: []step{
				silenceStep(fmt.Sprintf(`{"host": "web-1", "author": "ops", "end": %q}`, scenarioBase.Add(3*m).Format(time.RFC3339))),
				at(1 * m), errLines(1*m, "web-1", 2), at(2 * m), at(3 * m),
			},
			want:   []page{{action: "trigger", rule: 0, group: "web-1", count: 2, at: 3 * m, samples: errSamples(1*m, "web-1", 2)}},
			replay: "replay has no silences",
			end:    3 * m,
		},
		{
			// alerting.md § Cases: for 2m, pending while a silence matches, the
			// condition held 2m: it fires silenced at 2:00 (no page); the
			// silence ends at 3:00 while it still fires (window 1:00–3:59
			// holds the lines of 1:00 and 1:30): the page comes then.
			name:  "for 2m under a silence: fires silenced, pages when the silence ends",
			rules: []string{forRule("Alpha", "3m")},
			steps: []step{
				silenceStep(fmt.Sprintf(`{"host": "web-1", "author": "ops", "end": %q}`, scenarioBase.Add(3*m).Format(time.RFC3339))),
				at(0), chunkOf(forRecs(0)[0]), clockTo(30 * time.Second), chunkOf(forRecs(30 * time.Second)[0]),
				at(1 * m), chunkOf(forRecs(1 * m)[0]), clockTo(90 * time.Second), chunkOf(forRecs(90 * time.Second)[0]),
				at(2 * m), at(3 * m),
			},
			// The samples come from every minute the evaluation read (from the
			// window ending at the settled minute, 1:00, on), so they include
			// the lines of 0:00 and 0:30, which the count of 3:00's window does
			// not.
			want: []page{{action: "trigger", rule: 0, group: "web-1", count: 2, at: 3 * m, samples: []string{
				line(90*time.Second, "Alpha on web-1"), line(1*m, "Alpha on web-1"),
				line(30*time.Second, "Alpha on web-1"), line(0, "Alpha on web-1")}}},
			replay: "replay has no silences",
			end:    3 * m,
		},
		{
			// web-1's keyword is new: its baseline is empty, so its burst is
			// not judged. web-2 logs one line a minute, then 20 in minute 12:
			// 20 ≥ 3 × 1 expected, a page.
			name:  "spike with an empty baseline: none; with a covered trailing baseline: a page",
			rules: []string{spikeRule},
			steps: slices.Concat([]step{at(1 * m), errLines(1*m, "web-1", 20)}, perMinute(2, 11, "web-2"),
				[]step{at(12 * m), errLines(12*m, "web-2", 20)}),
			want: []page{{action: "trigger", rule: 0, group: "web-2", count: 20, at: 12 * m, samples: errSamples(12*m, "web-2", 20)}},
			end:  12 * m,
		},
		{
			// Yesterday's window [-1d+0:00, -1d+4:59] held 10: 15 today is
			// under 2 × 10, 25 is not.
			name:  "spike against a seasonal baseline: none at 1.5 times yesterday, a page at 2.5 times",
			rules: []string{seasonalRule},
			steps: []step{
				errLines(2*m-24*time.Hour, "web-1", 10),
				at(3 * m), errLines(3*m, "web-1", 15), at(4 * m), errLines(4*m, "web-1", 10),
			},
			want: []page{{action: "trigger", rule: 0, group: "web-1", count: 25, at: 4 * m,
				samples: errSamples(4*m, "web-1", 10)[:5]}},
			end: 4 * m,
		},
		{
			// alerting.md § Cases, for: 2m. Alpha (window 3m) holds from 0:00
			// on: pending at 0:00 and 1:00, a page at the first evaluation in
			// 2:00. Beta (window 1m) holds at 0:00 and 1:00 but its current
			// window is empty at 2:00: dropped, never paged.
			name:  "for 2m: a page after two minutes of holding; a condition false at 2:00 never pages",
			rules: []string{forRule("Alpha", "3m"), forRule("Beta", "1m")},
			steps: []step{
				at(0), chunkOf(forRecs(0)...), clockTo(30 * time.Second), chunkOf(forRecs(30 * time.Second)...),
				at(1 * m), chunkOf(forRecs(1 * m)...), clockTo(90 * time.Second), chunkOf(forRecs(90 * time.Second)...),
				at(2 * m), at(3 * m), lines(3*m, "web-1", "app.log", 1, "Alpha again"),
			},
			want: []page{{action: "trigger", rule: 0, group: "web-1", count: 4, at: 2 * m, samples: []string{
				line(90*time.Second, "Alpha on web-1"), line(1*m, "Alpha on web-1"), line(30*time.Second, "Alpha on web-1"), line(0, "Alpha on web-1")}}},
			end: 3 * m,
		},
	}
}

// TestScenarios runs every row through the engine, then through replay.
func TestScenarios(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			runScenario(t, sc)
		})
	}
}

func runScenario(t *testing.T, sc scenario) {
	rs := redistest.Start(t)
	recv := pdreceiver.Start(t)
	base := scenarioBase
	r := &scenarioRun{t: t, base: base, clk: &clock{t: base}, rs: rs, recv: recv, redisUp: true, rdb: rs.Client()}
	r.env = alertEnv(rs.URL(), recv.URL)
	r.env["KEYALERT_EVAL_INTERVAL"] = scenarioTick
	for k, v := range sc.env {
		r.env[k] = v
	}
	r.start()
	r.h = flbhost.StartForTest(t)
	mark := r.h.LogLen()
	pluginInstance(t, r.h, "app", rs.URL(), map[string]string{"Hostname_Key": "host", "Samples": "5"})
	keywords := map[string]bool{}
	groups := map[string]struct {
		rule  int
		group string
	}{}
	for i, body := range sc.rules {
		if len(sc.rules) > 1 { // rule names are unique (409 otherwise)
			body = strings.Replace(body, `"name": "`, fmt.Sprintf(`"name": "%d-`, i), 1)
		}
		rule := createRule(t, r.srv.addr, fmt.Sprintf(body, routingKey))
		r.ruleIDs = append(r.ruleIDs, rule.ID)
		for _, kw := range ruleKeywords(t, body) {
			keywords[kw] = true
		}
	}
	waitKeywords(t, r.h, mark, len(keywords))
	r.ticks(2)
	for _, st := range sc.steps {
		st.do(r)
		if t.Failed() {
			t.Fatalf("failed in step %q", st.what)
		}
	}
	// Every event queued must reach pdreceiver: wait for an empty outbox.
	if r.srv != nil {
		eventually(t, 10*time.Second, "the outbox did not empty", func() bool {
			var d struct{ Pending []any }
			apiJSON(t, r.srv.addr, "GET", "/api/v1/outbox", nil, 200, &d)
			return len(d.Pending) == 0
		})
	}
	noRejections(t, recv)
	// Groups the pages can name: the hosts and tags of the records, and none.
	for i, id := range r.ruleIDs {
		groups[alert.DedupKey(alert.ID(id, ""))] = struct {
			rule  int
			group string
		}{i, ""}
		for _, x := range r.recs {
			for _, g := range []string{x.host, x.tag} {
				groups[alert.DedupKey(alert.ID(id, g))] = struct {
					rule  int
					group string
				}{i, g}
			}
		}
	}
	got := r.pagesFrom(recv.Events(), groups)
	want := sc.want
	if want == nil {
		want = []page{}
	}
	if i := slices.IndexFunc(sc.alt, func(alt []page) bool { return pagesDiff(byAlert(got), byAlert(alt), false) == "" }); i >= 0 &&
		pagesDiff(byAlert(got), byAlert(want), false) != "" {
		t.Logf("the row's other outcome: %v", sc.alt[i])
	} else if diff := pagesDiff(byAlert(got), byAlert(want), false); diff != "" {
		if sc.pending != "" {
			t.Skipf("pending (%s): pages differ:%s", sc.pending, diff)
		}
		t.Errorf("PagerDuty events differ from the expected pages:%s", diff)
	} else if sc.pending != "" {
		t.Logf("marked pending (%s) but passes: the marker can go", sc.pending)
	}
	if sc.replay != "" {
		t.Logf("not compared with replay: %s", sc.replay)
		return
	}
	rrules, rend := sc.rules, sc.end
	if sc.replayRules != nil {
		rrules = sc.replayRules
	}
	if sc.replayEnd != 0 {
		rend = sc.replayEnd
	}
	rp := r.replayPages(rrules, rend)
	rwant := got
	if sc.replayWant != nil {
		rwant = sc.replayWant
	}
	if diff := pagesDiff(byAlert(rp), byAlert(rwant), true); diff != "" {
		if sc.pending != "" {
			t.Skipf("pending (%s): replay differs:%s", sc.pending, diff)
		}
		t.Errorf("replay's pages differ from the engine's:%s", diff)
	}
}

// pagesDiff lists the differences between got and want, "" if none. With
// fromReplay, got comes from replay: its times are the start of the minute
// whose counts decided (a late page's is the last minute of its event
// window, the engine's timestamp being the window's end), and late is not
// compared (replay has no arrival time).
func pagesDiff(got, want []page, fromReplay bool) string {
	var b strings.Builder
	n := max(len(got), len(want))
	for i := 0; i < n; i++ {
		var g, w *page
		if i < len(got) {
			g = &got[i]
		}
		if i < len(want) {
			w = &want[i]
		}
		if g == nil || w == nil || !samePage(*g, *w, fromReplay) {
			fmt.Fprintf(&b, "\n  #%d got  %v\n     want %v", i, pageOrNone(g), pageOrNone(w))
		}
	}
	return b.String()
}

func pageOrNone(p *page) string {
	if p == nil {
		return "(none)"
	}
	return p.String()
}

func samePage(g, w page, fromReplay bool) bool {
	if g.action != w.action || g.rule != w.rule || g.group != w.group {
		return false
	}
	if g.action == "resolve" {
		return true
	}
	wantAt := w.at
	if fromReplay {
		if w.late {
			wantAt -= time.Minute
		}
		wantAt = wantAt.Truncate(time.Minute)
	} else if g.late != w.late || (w.late && g.window != w.window) {
		return false
	}
	return g.count == w.count && g.at == wantAt && slices.Equal(g.samples, w.samples)
}

// ruleKeywords reads the keywords of a rule body.
func ruleKeywords(t *testing.T, body string) []string {
	t.Helper()
	i := strings.Index(body, `"keywords": [`)
	if i < 0 {
		t.Fatalf("rule without keywords: %s", body)
	}
	rest := body[i+len(`"keywords": [`):]
	rest = rest[:strings.IndexByte(rest, ']')]
	var out []string
	for _, k := range strings.Split(rest, ",") {
		out = append(out, strings.Trim(strings.TrimSpace(k), `"`))
	}
	return out
}
