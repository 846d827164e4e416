package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/keyalert/keyalert/backend/lease"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/config"
	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/logbuf"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/plugin/chunk"
	"github.com/keyalert/keyalert/replay"
	"github.com/redis/go-redis/v9"
)

// The scenario runner: one row of scenario_test.go is rules, a timeline of
// steps on an injected clock, and the exact PagerDuty events expected. The
// row runs through the real plugin (flbhost, Hostname_Key "host" so that one
// instance speaks for several hosts), a real redis-server, keyalertd
// in-process and pdreceiver; then the same log lines, with their event
// times, run through package replay with the same rules, and its pages are
// compared with what pdreceiver received.

// scenarioTick is the evaluation interval of scenario servers: the lowest
// KEYALERT_EVAL_INTERVAL allows, so that waiting for ticks stays short.
const scenarioTick = "100ms"

// rec is one log line as a host sends it: its event time (an offset from the
// row's start) and its text. The text starts with the event time in RFC 3339,
// so that replay, which reads times from the lines, sees the same times.
type rec struct {
	at   time.Duration
	host string
	tag  string
	text string
}

// page is one expected (or received, or replayed) PagerDuty event.
type page struct {
	action string // trigger, resolve
	rule   int    // index in the row's rules
	group  string // host or tag, "" for group_by none
	count  int64  // custom_details.count of a trigger
	// at is payload.timestamp (triggers) as an offset from the row's start;
	// for resolves, which carry no payload, the clock when the engine
	// decided it is not visible and at is not compared.
	at      time.Duration
	samples []string // custom_details.sample_lines, in order
	late    bool     // custom_details.late
	// window is custom_details.event_window {from, to} of a late page, as
	// offsets (compared only when the expected page is late).
	window [2]time.Duration
}

func (p page) String() string {
	s := fmt.Sprintf("%s rule %d group %q", p.action, p.rule, p.group)
	if p.action != "resolve" {
		s += fmt.Sprintf(" count %d at %s", p.count, off(p.at))
		if p.late {
			s += fmt.Sprintf(" late window %s–%s", off(p.window[0]), off(p.window[1]))
		}
		if p.samples != nil {
			s += fmt.Sprintf(" samples %q", p.samples)
		}
	}
	return s
}

// off writes an offset from a row's start as m:ss (negative: before it).
func off(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	return fmt.Sprintf("%s%d:%02d", sign, int(d/time.Minute), int(d%time.Minute/time.Second))
}

// scenarioRun is the state of a row while it runs.
type scenarioRun struct {
	t       *testing.T
	base    time.Time // the row's start: offset 0
	clk     *clock
	rs      *redistest.Server
	recv    *pdreceiver.Server
	env     map[string]string
	h       *flbhost.Host
	srv     *inproc
	stopSrv func()
	ruleIDs []string
	recs    []rec    // every record accepted by the plugin, for replay
	parked  [][]byte // chunks answered with retry while Redis is down
	parkedM []rec    // their records
	tags    []string // the tag of each parked chunk
	redisUp bool
	rdb     *redis.Client
	nowOff  time.Duration
}

// step is one thing a row does.
type step struct {
	what string
	do   func(r *scenarioRun)
}

// at sets the clock to offset d and waits for two evaluation ticks, so that
// everything the engine decides at d is decided with the clock at d.
func at(d time.Duration) step {
	return step{"clock " + off(d) + " + ticks", func(r *scenarioRun) { r.setClock(d); r.ticks(2) }}
}

// clockTo sets the clock without waiting.
func clockTo(d time.Duration) step {
	return step{"clock " + off(d), func(r *scenarioRun) { r.setClock(d) }}
}

// lines flushes one chunk of n lines of host under tag, event times from
// offset ev one second apart, then waits until keyalertd applied them and
// ticked twice. text is the line after its timestamp; %d is the line's index.
func lines(ev time.Duration, host, tag string, n int, text string) step {
	return step{fmt.Sprintf("%d lines %s %s at %s", n, host, tag, off(ev)), func(r *scenarioRun) {
		var rs []rec
		for i := 0; i < n; i++ {
			t := text
			if strings.Contains(t, "%d") {
				t = fmt.Sprintf(text, i)
			}
			rs = append(rs, rec{at: ev + time.Duration(i)*time.Second, host: host, tag: tag, text: t})
		}
		r.flush(tag, rs)
	}}
}

// chunkOf flushes the given records as one chunk (they share the tag of the
// first), then waits as lines does.
func chunkOf(rs ...rec) step {
	return step{fmt.Sprintf("chunk of %d records", len(rs)), func(r *scenarioRun) { r.flush(rs[0].tag, rs) }}
}

// beat is a heartbeat source for beats: a host whose clock runs skew
// behind (its event times are the clock minus skew), sending from offset
// from to offset to (inclusive; to 0: for ever).
type beat struct {
	host     string
	skew     time.Duration
	from, to time.Duration
	gaps     []span // no heartbeat while the clock is in one
	tag      string // default hb.main
}

// span is [from, to) in offsets.
type span struct{ from, to time.Duration }

// beats moves the clock from offset from to offset to in 10 s steps; at
// each step every source due sends one heartbeat line, all of them in one
// chunk (one Fluent Bit instance, several hosts). At each whole minute the
// engine ticks twice before that minute's heartbeats arrive: the moment a
// judge of the partial minute would see it empty.
func beats(from, to time.Duration, srcs ...beat) step {
	return step{fmt.Sprintf("heartbeats %s..%s", off(from), off(to)), func(r *scenarioRun) {
		for now := from; now <= to; now += 10 * time.Second {
			r.setClock(now)
			if now%time.Minute == 0 {
				r.ticks(2)
			}
			byTag := map[string][]rec{}
			var order []string
			for _, s := range srcs {
				tag := cmpOr(s.tag, "hb.main")
				if now < s.from || (s.to != 0 && now > s.to) {
					continue
				}
				if slices.ContainsFunc(s.gaps, func(g span) bool { return now >= g.from && now < g.to }) {
					continue
				}
				if _, ok := byTag[tag]; !ok {
					order = append(order, tag)
				}
				byTag[tag] = append(byTag[tag], rec{at: now - s.skew, host: s.host, tag: tag, text: "heartbeat from " + s.host})
			}
			for _, tag := range order {
				r.flushNoWait(tag, byTag[tag])
			}
		}
		r.settle()
	}}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// stopKeyalertd stops the server (as a deploy or crash would; the stream
// keeps what the plugin writes meanwhile).
func stopKeyalertd() step {
	return step{"stop keyalertd", func(r *scenarioRun) { r.stopSrv(); r.srv = nil }}
}

// startKeyalertd starts a new server on the same Redis and clock and waits
// for its first ticks.
func startKeyalertd() step {
	return step{"start keyalertd", func(r *scenarioRun) { r.start(); r.settle() }}
}

// redisDown stops Redis (SIGTERM; its AOF keeps the data).
func redisDown() step {
	return step{"redis down", func(r *scenarioRun) { r.rs.Stop(); r.redisUp = false }}
}

// redisUp restarts Redis and flushes again the chunks the plugin answered
// with retry meanwhile, as Fluent Bit's scheduler would.
func redisUp() step {
	return step{"redis up + retried chunks", func(r *scenarioRun) {
		r.rs.Restart()
		r.redisUp = true
		eventually(r.t, 20*time.Second, "keyalertd did not become ready after Redis came back", func() bool {
			code, _ := call(r.t, r.srv.addr, "", http.MethodGet, "/readyz", nil)
			return code == http.StatusOK
		})
		parked, recs, tags := r.parked, r.parkedM, r.tags
		r.parked, r.parkedM, r.tags = nil, nil, nil
		for i, c := range parked {
			deadline := time.Now().Add(20 * time.Second)
			for {
				rc, err := r.h.Flush("app", tags[i], c)
				if err == nil && rc == flbhost.OK {
					break
				}
				if time.Now().After(deadline) {
					r.t.Fatalf("retried chunk: rc %d, %v", rc, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		r.recs = append(r.recs, recs...)
		r.settle()
	}}
}

// silenceStep creates a silence (body: the API's JSON; start defaults to
// the clock).
func silenceStep(body string) step {
	return step{"silence " + body, func(r *scenarioRun) {
		apiJSON(r.t, r.srv.addr, http.MethodPost, "/api/v1/silences", body, http.StatusCreated, nil)
		r.ticks(2)
	}}
}

// editRule replaces rule i with body (a rule JSON with %q for the routing
// key) and waits for ticks (the rows edit rules without changing keywords).
func editRule(i int, body string) step {
	return step{fmt.Sprintf("edit rule %d", i), func(r *scenarioRun) {
		apiJSON(r.t, r.srv.addr, http.MethodPut, "/api/v1/rules/"+r.ruleIDs[i], fmt.Sprintf(body, routingKey), http.StatusOK, nil)
		r.ticks(3)
	}}
}

func (r *scenarioRun) setClock(d time.Duration) {
	r.nowOff = d
	r.clk.Set(r.base.Add(d))
}

// ticks waits until the engine finished n more full evaluations.
func (r *scenarioRun) ticks(n int) {
	r.t.Helper()
	if r.srv == nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	// A tick judges only the rules of the shards this replica holds: a
	// fresh keyalertd may tick before it took its leases (on a busy
	// machine), and a rule it never judged takes a later backlog as on time.
	for r.redisUp {
		if v, _ := metricValue(r.t, r.srv.addr, "keyalert_eval_shards_owned"); v >= lease.DefaultShards {
			break
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("at %s: keyalertd did not hold its evaluation shards in 10s", off(r.nowOff))
		}
		time.Sleep(10 * time.Millisecond)
	}
	v0, _ := metricValue(r.t, r.srv.addr, "keyalert_alert_evaluations_total")
	for {
		v, _ := metricValue(r.t, r.srv.addr, "keyalert_alert_evaluations_total")
		if v >= v0+float64(n) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("at %s: keyalertd did not tick %d times in 10s", off(r.nowOff), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle waits until keyalertd applied the stream (when it runs and Redis is
// up), then for two ticks.
func (r *scenarioRun) settle() {
	r.t.Helper()
	if r.srv == nil || !r.redisUp {
		return
	}
	drained(r.t, r.rdb, 15*time.Second)
	r.ticks(2)
}

func (r *scenarioRun) encode(rs []rec) []byte {
	r.t.Helper()
	var c []byte
	for _, x := range rs {
		var err error
		c, err = chunk.AppendEvent(c, chunk.FormatV2, r.base.Add(x.at), chunk.EventTime,
			map[string]any{"log": r.line(x), "host": x.host})
		if err != nil {
			r.t.Fatal(err)
		}
	}
	return c
}

// line is a record's log line: its event time, then its text.
func (r *scenarioRun) line(x rec) string {
	return r.base.Add(x.at).UTC().Format(time.RFC3339) + " " + x.text
}

func (r *scenarioRun) flushNoWait(tag string, rs []rec) {
	r.t.Helper()
	c := r.encode(rs)
	rc, err := r.h.Flush("app", tag, c)
	switch {
	case err == nil && rc == flbhost.OK:
		r.recs = append(r.recs, rs...)
	case err == nil && rc == flbhost.Retry && !r.redisUp:
		r.parked = append(r.parked, c)
		r.parkedM = append(r.parkedM, rs...)
		r.tags = append(r.tags, tag)
	default:
		r.t.Fatalf("at %s: flush %s (%d records): rc %d, %v", off(r.nowOff), tag, len(rs), rc, err)
	}
}

func (r *scenarioRun) flush(tag string, rs []rec) {
	r.t.Helper()
	r.flushNoWait(tag, rs)
	r.settle()
}

// start starts a keyalertd server in-process on the row's Redis and clock;
// r.stopSrv stops it (the test's cleanup too, if still running).
func (r *scenarioRun) start() {
	t := r.t
	t.Helper()
	cfg, err := config.Load(nil, func(k string) string { return r.env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &logbuf.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := newServer(cfg, serverOptions{Now: r.clk.Now, Log: log})
	if err != nil {
		t.Fatalf("newServer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	r.srv = &inproc{server: s, addr: s.Addr(), logs: logs}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("keyalertd: Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("keyalertd did not stop 20s after its context ended")
		}
		if t.Failed() {
			out := logs.String()
			if len(out) > 20000 {
				out = "...\n" + out[len(out)-20000:]
			}
			t.Logf("keyalertd log:\n%s", out)
		}
	}
	r.stopSrv = stop
	t.Cleanup(stop)
}

// pagesFrom turns what pdreceiver received into pages of the row's rules.
func (r *scenarioRun) pagesFrom(evs []pdreceiver.Event, groups map[string]struct {
	rule  int
	group string
}) []page {
	t := r.t
	var out []page
	for _, e := range evs {
		g, ok := groups[e.DedupKey]
		if !ok {
			t.Errorf("event %s for dedup key %s of no rule and group of the row", e.Action, e.DedupKey)
			continue
		}
		p := page{action: e.Action, rule: g.rule, group: g.group}
		if e.Payload != nil {
			ts, err := time.Parse(time.RFC3339Nano, e.Payload.Timestamp)
			if err != nil {
				t.Errorf("payload.timestamp %q: %v", e.Payload.Timestamp, err)
			}
			p.at = ts.Sub(r.base)
			var cd struct {
				Count       int64    `json:"count"`
				SampleLines []string `json:"sample_lines"`
				Late        bool     `json:"late"`
				EventWindow struct {
					From time.Time `json:"from"`
					To   time.Time `json:"to"`
				} `json:"event_window"`
			}
			if err := json.Unmarshal(e.Payload.CustomDetails, &cd); err != nil {
				t.Errorf("custom_details: %v", err)
			}
			p.count, p.samples, p.late = cd.Count, cd.SampleLines, cd.Late
			if p.late {
				p.window = [2]time.Duration{cd.EventWindow.From.Sub(r.base), cd.EventWindow.To.Sub(r.base)}
			}
			if p.samples == nil {
				p.samples = []string{}
			}
		}
		out = append(out, p)
	}
	return out
}

// replayPages runs the row's records through package replay with the row's
// rules, one replay per (host, tag) source: replay reads one host and tag
// per run, and every row that compares with replay groups by host (or has a
// single source), so the sources' alerts are independent. Events after the
// timeline's end are left out (replay runs on while alerts are open).
func (r *scenarioRun) replayPages(ruleBodies []string, end time.Duration) []page {
	t := r.t
	dir := t.TempDir()
	var docs []json.RawMessage
	for _, b := range ruleBodies {
		docs = append(docs, json.RawMessage(fmt.Sprintf(b, routingKey)))
	}
	rulesJSON, _ := json.Marshal(docs)
	rulesPath := filepath.Join(dir, "rules.json")
	if err := os.WriteFile(rulesPath, rulesJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	type source struct{ host, tag string }
	bySrc := map[source][]rec{}
	var srcs []source
	for _, x := range r.recs {
		s := source{x.host, x.tag}
		if _, ok := bySrc[s]; !ok {
			srcs = append(srcs, s)
		}
		bySrc[s] = append(bySrc[s], x)
	}
	var out []page
	for i, s := range srcs {
		list := slices.Clone(bySrc[s])
		slices.SortStableFunc(list, func(a, b rec) int { return int(a.at - b.at) })
		var buf bytes.Buffer
		for _, x := range list {
			buf.WriteString(r.line(x) + "\n")
		}
		logPath := filepath.Join(dir, fmt.Sprintf("src%d.log", i))
		if err := os.WriteFile(logPath, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		err := replay.Run(context.Background(), replay.Config{RulesPath: rulesPath, Files: []string{logPath},
			Location: time.UTC, Start: r.base, Host: s.host, Tag: s.tag, JSON: true, Samples: alert.DefaultSampleLines},
			nil, &stdout, &stderr)
		if err != nil {
			t.Fatalf("replay %s %s: %v\n%s", s.host, s.tag, err, stderr.String())
		}
		var rep struct {
			Events []struct {
				At      time.Time `json:"at"`
				Kind    string    `json:"kind"`
				Rule    int       `json:"rule"`
				Group   string    `json:"group"`
				Count   int64     `json:"count"`
				Samples []string  `json:"samples"`
			} `json:"events"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("replay report: %v\n%s", err, stdout.String())
		}
		for _, e := range rep.Events {
			at := e.At.Sub(r.base)
			if at > end {
				continue
			}
			p := page{action: "trigger", rule: e.Rule, group: e.Group, count: e.Count, at: at, samples: e.Samples}
			if e.Kind == alert.ReplayResolve {
				p = page{action: "resolve", rule: e.Rule, group: e.Group}
			}
			if p.action == "trigger" && p.samples == nil {
				p.samples = []string{}
			}
			out = append(out, p)
		}
	}
	return out
}

// byAlert sorts pages by rule and group, keeping the order of each alert's
// pages: pages of different alerts may interleave
// differently in the engine (ticks, batches) and in replay (per source).
func byAlert(ps []page) []page {
	out := slices.Clone(ps)
	slices.SortStableFunc(out, func(a, b page) int {
		if a.rule != b.rule {
			return a.rule - b.rule
		}
		return strings.Compare(a.group, b.group)
	})
	return out
}
