package alert

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

// restart replaces the engine with a new one on the same Redis and clock,
// as a keyalertd restart does: nothing but Redis carries over.
func (v *env) restart() {
	v.eng = v.newEngine(Options{PublicURL: "http://keyalert.example"})
}

// historyCount counts the alert's history entries of event.
func historyCount(a *Alert, event string) int {
	if a == nil {
		return 0
	}
	n := 0
	for _, h := range a.History {
		if h.Event == event {
			n++
		}
	}
	return n
}

// TestAbsenceOnCompleteMinutesAndRememberedGroups drives an absence rule
// (window 1m, count 1, group_by host) in 10-second steps, each host logging a
// heartbeat every step while beat says so, at its clock's minute (skew back),
// the engine ticking every step unless down says it is stopped.
func TestAbsenceOnCompleteMinutesAndRememberedGroups(t *testing.T) {
	type host struct {
		name string
		beat func(sec int) bool // seconds since the rule was created
		skew int                // minutes the host's clock runs behind
	}
	always := func(int) bool { return true }
	tests := []struct {
		name    string
		extra   string // rule fields
		hosts   []host
		down    func(sec int) bool // the engine is stopped
		seconds int
		// firing and resolved count the history entries per host.
		firing, resolved map[string]int
	}{
		{
			name:    "heartbeat every 10s across 10 minute boundaries: no page",
			hosts:   []host{{"h1", always, 0}, {"h2", always, 0}},
			seconds: 12 * 60,
			firing:  map[string]int{"h1": 0, "h2": 0}, resolved: map[string]int{"h1": 0, "h2": 0},
		},
		{
			name:    "heartbeat every 10s, resolve_after 0s: no page (it used to page and resolve every minute)",
			extra:   `"resolve_after":"0s",`,
			hosts:   []host{{"h1", always, 0}, {"h2", always, 0}},
			seconds: 12 * 60,
			firing:  map[string]int{"h1": 0, "h2": 0}, resolved: map[string]int{"h1": 0, "h2": 0},
		},
		{
			name: "heartbeat stops: one page; resumes: one resolve",
			hosts: []host{{"h1", func(s int) bool { return s < 5*60 || s >= 10*60 }, 0},
				{"h2", always, 0}},
			seconds: 16 * 60,
			firing:  map[string]int{"h1": 1, "h2": 0}, resolved: map[string]int{"h1": 1, "h2": 0},
		},
		{
			name:    "keyalertd stopped for 5 minutes while a heartbeat stops: page after the restart",
			hosts:   []host{{"h1", func(s int) bool { return s < 5*60 }, 0}, {"h2", always, 0}},
			down:    func(s int) bool { return s >= 4*60 && s < 9*60 },
			seconds: 12 * 60,
			firing:  map[string]int{"h1": 1, "h2": 0}, resolved: map[string]int{"h1": 0, "h2": 0},
		},
		{
			name:    "host clock 3 minutes behind, eval_delay 5m: no false page, also not for its first heartbeat",
			extra:   `"eval_delay":"5m",`,
			hosts:   []host{{"h1", always, 3}, {"h2", func(s int) bool { return s >= 9*60 }, 3}},
			seconds: 20 * 60,
			firing:  map[string]int{"h1": 0, "h2": 0}, resolved: map[string]int{"h1": 0, "h2": 0},
		},
		{
			// The control: the delay must cover the skew (or the window must).
			name:    "host clock 3 minutes behind, default eval_delay 1m: pages",
			hosts:   []host{{"h1", always, 3}},
			seconds: 12 * 60,
			firing:  map[string]int{"h1": 1}, resolved: map[string]int{"h1": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			extra := tt.extra
			if !strings.Contains(extra, "resolve_after") {
				extra += `"resolve_after":"1m",`
			}
			v := newEnv(t) // 12:00:30
			r := v.rule(`{"name":"heartbeat","keywords":["heartbeat ok"],"condition":{"type":"absence","count":1,"window":"1m"},` + extra +
				`"group_by":"host","pagerduty":{"routing_key":"` + testKey + `"}}`)

			wasDown := false
			for s := 0; s < tt.seconds; s += 10 {
				for _, h := range tt.hosts {
					if h.beat(s) {
						v.count("heartbeat ok", h.name, "", h.skew, 1)
					}
				}
				switch {
				case tt.down != nil && tt.down(s):
					wasDown = true
				case wasDown:
					v.restart()
					wasDown = false
					v.tick()
				default:
					v.tick()
				}
				v.clk.Add(10 * time.Second)
			}
			for h, want := range tt.firing {
				a := v.alert(r.ID, h)
				if got := historyCount(a, "firing"); got != want {
					t.Errorf("%s: %d pages, want %d; alert %+v", h, got, want, a)
				}
				if got := historyCount(a, "resolved"); got != tt.resolved[h] {
					t.Errorf("%s: %d resolves, want %d; alert %+v", h, got, tt.resolved[h], a)
				}
			}
		})
	}
}

// A group silent for forget_after is forgotten; its firing alert resolves,
// with a resolve notification, and the group is not paged for again.
func TestForgottenGroupResolvesItsFiringAlert(t *testing.T) {
	v := newEnv(t)
	v.startSender()
	r := v.rule(`{"name":"heartbeat","keywords":["heartbeat ok"],"condition":{"type":"absence","window":"1m"},
		"group_by":"host","forget_after":"1h","pagerduty":{"routing_key":"` + testKey + `"}}`)
	v.count("heartbeat ok", "h1", "", 0, 1) // 12:00, then silent
	for i := 0; i < 4; i++ {
		v.clk.Add(time.Minute)
		v.tick()
	}
	if a := v.alert(r.ID, "h1"); a == nil || a.State != Firing {
		t.Fatalf("h1 silent: %+v", a)
	}
	v.clk.Add(50 * time.Minute) // 12:54:30: remembered (last seen 12:00)
	v.tick()
	if a := v.alert(r.ID, "h1"); a.State != Firing {
		t.Fatalf("before forget_after: %s", a.State)
	}
	v.clk.Add(7 * time.Minute) // 13:01:30: last seen over an hour ago
	v.tick()
	a := v.alert(r.ID, "h1")
	if a.State != Resolved || !strings.HasPrefix(lastEvent(a).Detail, "group forgotten") {
		t.Fatalf("after forget_after: %s, last event %+v", a.State, lastEvent(a))
	}
	if evs := v.events(2); evs[0].Action != notify.Trigger || evs[1].Action != notify.Resolve {
		t.Fatalf("%s", actions(evs))
	}
	v.clk.Add(10 * time.Minute)
	v.tick()
	v.noMoreEvents(2)
	if n, _ := v.rdb.ZCard(v.ctx, groupKeys(r.ID)[0]).Result(); n != 0 {
		t.Fatalf("%d groups remembered after forgetting h1", n)
	}
}

// A rule remembers at most MaxGroups groups; the overflow is counted, not
// silent.
func TestGroupMemoryIsBounded(t *testing.T) {
	v := newEnv(t)
	v.eng.c.Options.MaxGroups = 2
	r := v.rule(`{"name":"heartbeat","keywords":["heartbeat ok"],"condition":{"type":"absence","window":"1m"},"group_by":"host",
		"pagerduty":{"routing_key":"` + testKey + `"}}`)
	for _, h := range []string{"h1", "h2", "h3"} {
		v.count("heartbeat ok", h, "", 0, 1)
	}
	v.tick()
	if n, _ := v.rdb.ZCard(v.ctx, groupKeys(r.ID)[0]).Result(); n != 2 {
		t.Fatalf("%d groups remembered, want 2", n)
	}
	if got := testutil.ToFloat64(v.eng.met.groupsDropped); got != 1 {
		t.Fatalf("dropped %v, want 1", got)
	}
}

// Every state change the engine makes is logged at info with rule, group,
// from, to and reason.
func TestStateChangesAreLoggedAtInfo(t *testing.T) {
	v := newEnv(t)
	var buf bytes.Buffer // written by Tick, on this goroutine only
	v.eng = New(Config{Redis: v.rdb, Rules: v.rules, Silences: v.sils, Counts: v.win, Store: v.store,
		Shards: v.shards, Now: v.clk.Now, Log: slog.New(slog.NewTextHandler(&buf, nil))})
	r := v.rule(javaRule)
	v.count("Exception", "web-1", "", 0, 10)
	v.tick()
	v.clk.Add(8 * time.Minute) // the counts leave the settled window
	v.tick()
	v.clk.Add(2 * time.Minute) // resolve_after
	v.tick()
	for _, want := range []string{
		`msg="alert state changed" rule_id=` + r.ID + ` rule="java exceptions" group=web-1`,
		`from=none to=firing reason="Exception seen 10 times in 5m on web-1 (rule java exceptions)"`,
		`from=firing to=resolved reason="condition false for 2m"`,
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
}

// A replica that keeps owning an absence rule writes its group memory when
// something changed for Redis — new groups, last minutes moved by the
// rule's slack, a group about to be forgotten — not every minute a
// heartbeat moves it, and reads back only its own update; a write by
// another replica (the version moved) makes it read the whole memory.
func TestGroupMemoryWritesWhatChanged(t *testing.T) {
	v := newEnv(t)
	r := v.rule(`{"name":"heartbeat","keywords":["heartbeat ok"],"condition":{"type":"absence","window":"1m"},"group_by":"host",
		"forget_after":"1h","pagerduty":{"routing_key":"` + testKey + `"}}`)
	keys := groupKeys(r.ID)
	version := func() int64 {
		n, _ := v.rdb.Get(v.ctx, keys[2]).Int64()
		return n
	}
	hosts := []string{"h1", "h2", "h3"}
	const minutes = 45
	for m := 0; m < minutes; m++ {
		for _, h := range hosts {
			if h != "h3" || m < 5 { // h3 stops after 5 minutes
				v.count("heartbeat ok", h, "", 0, 1)
			}
		}
		v.tick()
		v.clk.Add(time.Minute)
	}
	// One write a minute before; now one per slack (8–15 minutes) plus the
	// first and the rule's creation minute.
	if n := version(); n > minutes/8+3 {
		t.Fatalf("%d memory writes in %d minutes of heartbeats", n, minutes)
	}
	cr := v.eng.rs.byID[r.ID]
	slack := memSlack(cr)
	now := v.clk.Now().Unix() - v.clk.Now().Unix()%60
	for _, h := range hosts[:2] {
		last, err := v.rdb.ZScore(v.ctx, keys[0], h).Result()
		if err != nil || now-int64(last) > slack+60 {
			t.Fatalf("%s: last seen %v in Redis (%v), now %d, slack %ds", h, last, err, now, slack)
		}
	}
	// Another replica adds a group: the version moves; this replica's next
	// write reads the whole memory back and watches the group.
	v.rdb.ZAdd(v.ctx, keys[0], redis.Z{Score: float64(now - 60), Member: "h9"})
	v.rdb.ZAdd(v.ctx, keys[1], redis.Z{Score: float64(now - 60), Member: "h9"})
	v.rdb.Incr(v.ctx, keys[2])
	v.count("heartbeat ok", "h4", "", 0, 1) // a new group makes this replica write
	v.tick()
	if _, ok := v.eng.mem[r.ID].groups["h9"]; !ok {
		t.Fatalf("h9, added by another replica, not in the copy: %v", v.eng.mem[r.ID].groups)
	}
	// h1 stops; an hour after its last heartbeat it is forgotten, to the
	// minute, although Redis held an older last minute for it.
	lastH1 := v.eng.mem[r.ID].groups["h1"].last
	for v.clk.Now().Unix() < lastH1+3600+180 {
		v.count("heartbeat ok", "h2", "", 0, 1)
		v.tick()
		if _, ok := v.eng.mem[r.ID].groups["h1"]; !ok {
			break
		}
		v.clk.Add(time.Minute)
	}
	// Forgotten in the first minute more than forget_after after its last.
	if at := v.clk.Now().Unix() / 60 * 60; at != lastH1+3660 {
		t.Fatalf("h1 (last seen %d) forgotten in minute %d, want %d", lastH1, at, lastH1+3660)
	}
	if _, ok := v.eng.mem[r.ID].groups["h2"]; !ok {
		t.Fatal("h2, heartbeating, was forgotten")
	}
}

// Until ingest has applied the backlog it found at start, absence is not
// judged: the counts of a restart's backlog are not in the windows yet.
func TestAbsenceWaitsForIngestToCatchUp(t *testing.T) {
	v := newEnv(t)
	caughtUp := false
	v.eng.c.IngestCaughtUp = func() bool { return caughtUp }
	r := v.rule(`{"name":"heartbeat","keywords":["heartbeat ok"],"condition":{"type":"absence","window":"1m"},"group_by":"host",
		"pagerduty":{"routing_key":"` + testKey + `"}}`)
	v.count("heartbeat ok", "h1", "", 0, 1) // then silent
	for i := 0; i < 5; i++ {
		v.clk.Add(time.Minute)
		v.tick()
	}
	if a := v.alert(r.ID, "h1"); a != nil {
		t.Fatalf("absence judged before ingest caught up: %+v", a)
	}
	caughtUp = true
	v.tick()
	if a := v.alert(r.ID, "h1"); a == nil || a.State != Firing {
		t.Fatalf("after ingest caught up: %+v", a)
	}
}
