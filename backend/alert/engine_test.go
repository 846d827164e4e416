package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/notify/pagerduty"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

const testKey = "R0123456789abcdef0123456789ABCDE"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is one keyalertd replica's alerting half on a real Redis.
type env struct {
	t      *testing.T
	ctx    context.Context
	srv    *redistest.Server
	rdb    *redis.Client
	clk    *clock
	rules  *rules.Store
	sils   *silence.Store
	win    *window.Store
	ob     *outbox.Outbox
	store  *Store
	shards *lease.Shards
	eng    *Engine
	recv   *pdreceiver.Server
}

func newEnv(t *testing.T) *env {
	srv := redistest.Start(t)
	return newReplica(t, srv, &clock{t: time.Date(2025, 3, 1, 12, 0, 30, 0, time.UTC)}, 4, true)
}

func newReplica(t *testing.T, srv *redistest.Server, clk *clock, nShards int, takeShards bool) *env {
	v := &env{t: t, ctx: context.Background(), srv: srv, rdb: srv.Client(), clk: clk}
	v.rules = rules.NewStore(v.rdb, rules.DefaultSettings(), clk.Now, quiet)
	v.sils = silence.NewStore(v.rdb, clk.Now, quiet)
	v.win = window.NewStore(v.rdb, stream.DefaultStream)
	obs := outbox.DefaultSettings()
	obs.BackoffMin, obs.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	v.ob = outbox.New(v.rdb, obs, quiet)
	v.store = NewStore(v.rdb, v.ob, RuleKeys{Rules: v.rules}, clk.Now, quiet)
	v.shards = lease.NewShards(v.rdb, LeasePrefix, lease.NewOwner(), lease.Settings{TTL: 5 * time.Second, Shards: nShards}, quiet)
	if takeShards {
		if err := v.shards.Step(v.ctx); err != nil {
			t.Fatal(err)
		}
	}
	set := DefaultSettings()
	set.PublicURL = "http://keyalert.example"
	v.eng = New(Config{Redis: v.rdb, Rules: v.rules, Silences: v.sils, Counts: v.win, Store: v.store,
		Shards: v.shards, Settings: set, Now: clk.Now, Log: quiet})
	return v
}

func (v *env) rule(body string) rules.Rule {
	v.t.Helper()
	r, errs := rules.Decode([]byte(body), rules.DecodeOptions{})
	if errs.Err() != nil {
		v.t.Fatal(errs)
	}
	r, err := v.rules.Create(v.ctx, r)
	if err != nil {
		v.t.Fatal(err)
	}
	return r
}

// count adds n records of kw to the window of the clock's current minute
// (minus back minutes), as the ingest would.
func (v *env) count(kw, host, tag string, back int, n int64) {
	v.t.Helper()
	spec := keyword.Spec{Text: kw}
	minute := v.clk.Now().Unix() - v.clk.Now().Unix()%60 - int64(back)*60
	if err := v.rdb.HIncrBy(v.ctx, v.win.Keys().Window(spec.ID(), minute), window.Field(host, tag), n).Err(); err != nil {
		v.t.Fatal(err)
	}
	line := window.EncodeSample(window.Sample{Minute: minute, Host: host, Tag: tag, Line: fmt.Sprintf("%s on %s", kw, host)})
	v.rdb.LPush(v.ctx, v.win.Keys().Samples(spec.ID()), line)
}

func (v *env) tick() {
	v.t.Helper()
	if err := v.eng.Tick(v.ctx); err != nil {
		v.t.Fatal(err)
	}
}

func (v *env) alert(ruleID, group string) *Alert {
	a, err := v.store.Get(v.ctx, ID(ruleID, group))
	if err != nil {
		return nil
	}
	return a
}

func (v *env) startSender() {
	v.recv = pdreceiver.Start(v.t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.ob.Run(ctx, pagerduty.NewClient(pagerduty.Settings{URL: v.recv.URL, Timeout: 2 * time.Second}, nil))
	}()
	v.t.Cleanup(func() { cancel(); <-done })
}

// events waits until the receiver holds n events and returns them as
// "action dedup" strings; the receiver has validated each.
func (v *env) events(n int) []pdreceiver.Event {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(v.ctx, 10*time.Second)
	defer cancel()
	evs, err := v.recv.WaitForN(ctx, n)
	if err != nil {
		v.t.Fatalf("%v: %s", err, actions(evs))
	}
	if rej := v.recv.Rejections(); len(rej) > 0 {
		v.t.Fatalf("receiver rejected events: %+v", rej)
	}
	return evs
}

func actions(evs []pdreceiver.Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, e.Action)
	}
	return strings.Join(s, ",")
}

func (v *env) noMoreEvents(n int) {
	v.t.Helper()
	time.Sleep(150 * time.Millisecond) // the sender wakes at once; give it a moment
	if evs := v.recv.Events(); len(evs) != n {
		v.t.Fatalf("want %d events, got %d: %s", n, len(evs), actions(evs))
	}
}

const javaRule = `{"name":"java exceptions","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},
	"group_by":"host","filters":{"host":"web-*"},"severity":"critical","pagerduty":{"routing_key":"` + testKey + `"},
	"repeat_interval":"1h","resolve_after":"2m","runbook_url":"https://runbooks.example/java"}`

func TestThresholdFiresPerGroupPagesAndAutoResolves(t *testing.T) {
	v := newEnv(t)
	v.startSender()
	r := v.rule(javaRule)
	v.count("Exception", "web-12", "app.web", 1, 20)
	v.count("Exception", "web-12", "app.web", 0, 17)
	v.count("Exception", "web-3", "app.web", 0, 4)   // below the threshold
	v.count("Exception", "db-1", "app.db", 0, 50)    // filtered out
	v.count("Exception", "web-12", "app.web", 6, 99) // outside the window
	v.tick()

	a := v.alert(r.ID, "web-12")
	if a == nil || a.State != Firing || a.Count != 37 || !a.Notified {
		t.Fatalf("alert for web-12: %+v", a)
	}
	if v.alert(r.ID, "web-3") != nil || v.alert(r.ID, "db-1") != nil {
		t.Fatal("alerts for groups below the threshold or filtered out")
	}
	ev := v.events(1)[0]
	p := ev.Payload
	if ev.Action != "trigger" || ev.DedupKey != DedupKey(a.ID) || ev.RoutingKey != testKey ||
		p.Summary != "Exception seen 37 times in 5m on web-12 (rule java exceptions)" ||
		p.Source != "web-12" || p.Severity != "critical" || p.Component != "app.web" || p.Class != "Exception" {
		t.Fatalf("trigger %+v payload %+v", ev, p)
	}
	var details struct {
		Rule            map[string]any   `json:"rule"`
		CountsPerMinute map[string]int64 `json:"counts_per_minute"`
		SampleLines     []string         `json:"sample_lines"`
	}
	if err := json.Unmarshal(p.CustomDetails, &details); err != nil {
		t.Fatal(err)
	}
	if details.Rule["name"] != "java exceptions" || details.CountsPerMinute["2025-03-01T12:00:00Z"] != 17 ||
		details.CountsPerMinute["2025-03-01T11:59:00Z"] != 20 || len(details.SampleLines) == 0 || details.SampleLines[0] != "Exception on web-12" {
		t.Fatalf("custom details %s", p.CustomDetails)
	}
	if len(ev.Links) != 2 || ev.Links[0].Href != "https://runbooks.example/java" || ev.Links[1].Href != "http://keyalert.example/api/v1/alerts/"+a.ID {
		t.Fatalf("links %+v", ev.Links)
	}

	// Still true on the next tick: nothing new.
	v.clk.Add(10 * time.Second)
	v.tick()
	v.noMoreEvents(1)

	// The counts leave the window: false for 2m, then resolved.
	v.clk.Add(5 * time.Minute)
	v.tick()
	if a := v.alert(r.ID, "web-12"); a.State != Firing || a.FalseSince.IsZero() {
		t.Fatalf("just turned false: %+v", a)
	}
	v.clk.Add(2 * time.Minute)
	v.tick()
	if a := v.alert(r.ID, "web-12"); a.State != Resolved || a.Notified {
		t.Fatalf("after resolve_after: %+v", a)
	}
	evs := v.events(2)
	if evs[1].Action != "resolve" || evs[1].DedupKey != ev.DedupKey {
		t.Fatalf("events %s", actions(evs))
	}

	// It fires again with the same id and dedup key: a new PagerDuty incident.
	v.count("Exception", "web-12", "app.web", 0, 5)
	v.tick()
	evs = v.events(3)
	if evs[2].Action != "trigger" || evs[2].DedupKey != ev.DedupKey {
		t.Fatalf("refire: %s", actions(evs))
	}
	if st := v.eng.Stats(); st.Fired != 2 || st.Resolved != 1 || st.Notifications != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRepeatIntervalRenotifiesUntilAcknowledged(t *testing.T) {
	v := newEnv(t)
	v.startSender()
	r := v.rule(javaRule)
	keep := func() { v.count("Exception", "web-1", "", 0, 10) }
	keep()
	v.tick()
	v.events(1)
	v.clk.Add(59 * time.Minute)
	keep()
	v.tick()
	v.noMoreEvents(1)
	v.clk.Add(time.Minute)
	keep()
	v.tick()
	if evs := v.events(2); evs[1].Action != "trigger" {
		t.Fatalf("repeat: %s", actions(evs))
	}
	a, err := v.store.Ack(v.ctx, ID(r.ID, "web-1"), "ana")
	if err != nil || a.State != Acknowledged || a.AckedBy != "ana" {
		t.Fatalf("ack: %+v %v", a, err)
	}
	if evs := v.events(3); evs[2].Action != "acknowledge" {
		t.Fatalf("ack event: %s", actions(evs))
	}
	v.clk.Add(2 * time.Hour)
	keep()
	v.tick()
	v.noMoreEvents(3) // acknowledged alerts do not repeat
	if a := v.alert(r.ID, "web-1"); a.State != Acknowledged {
		t.Fatalf("state %s", a.State)
	}
	if _, err := v.store.Ack(v.ctx, ID(r.ID, "web-1"), "bo"); err != nil {
		t.Fatalf("acking twice is a no-op: %v", err)
	}
	// Acknowledged alerts still auto-resolve.
	v.clk.Add(6 * time.Minute)
	v.tick()
	v.clk.Add(2 * time.Minute)
	v.tick()
	if evs := v.events(4); evs[3].Action != "resolve" {
		t.Fatalf("resolve: %s", actions(evs))
	}
	if _, err := v.store.Ack(v.ctx, ID(r.ID, "web-1"), "bo"); err != ErrConflict {
		t.Fatalf("ack of a resolved alert: %v", err)
	}
}

func TestSilencedAlertIsRecordedButNotPaged(t *testing.T) {
	v := newEnv(t)
	v.startSender()
	r := v.rule(javaRule)
	sil, err := v.sils.Create(v.ctx, silence.Silence{Host: "web-1*", Start: v.clk.Now(), End: v.clk.Now().Add(30 * time.Minute), Author: "ana"})
	if err != nil {
		t.Fatal(err)
	}
	v.count("Exception", "web-1", "", 0, 10)
	v.count("Exception", "web-2", "", 0, 10)
	v.tick()
	a := v.alert(r.ID, "web-1")
	if a == nil || a.State != Firing || a.SilencedBy != sil.ID || a.Notified {
		t.Fatalf("silenced alert: %+v", a)
	}
	evs := v.events(1)
	v.noMoreEvents(1)
	if evs[0].Payload.Source != "web-2" {
		t.Fatalf("only web-2 pages: %+v", evs[0].Payload)
	}
	// The silence ends while the alert still fires: it pages then.
	if err := v.sils.Delete(v.ctx, sil.ID); err != nil {
		t.Fatal(err)
	}
	v.clk.Add(10 * time.Second)
	v.tick()
	evs = v.events(2)
	if evs[1].Payload.Source != "web-1" {
		t.Fatalf("after the silence: %+v", evs[1].Payload)
	}
	if a := v.alert(r.ID, "web-1"); a.SilencedBy != "" || !a.Notified {
		t.Fatalf("unsilenced: %+v", a)
	}
}

func TestAbsenceFiresWhenHeartbeatsStop(t *testing.T) {
	v := newEnv(t)
	v.startSender()
	r := v.rule(`{"name":"heartbeat","keywords":["heartbeat ok"],"condition":{"type":"absence","count":1,"window":"3m"},
		"group_by":"host","resolve_after":"0s","pagerduty":{"routing_key":"` + testKey + `"}}`)
	v.count("heartbeat ok", "h1", "", 0, 1)
	v.count("heartbeat ok", "h2", "", 0, 1)
	v.tick()
	if v.alert(r.ID, "h1") != nil {
		t.Fatal("fired during the grace period")
	}
	for i := 0; i < 4; i++ { // both beat every minute for 4 minutes
		v.clk.Add(time.Minute)
		v.count("heartbeat ok", "h1", "", 0, 1)
		v.count("heartbeat ok", "h2", "", 0, 1)
		v.tick()
	}
	for i := 0; i < 3; i++ { // h2 stops
		v.clk.Add(time.Minute)
		v.count("heartbeat ok", "h1", "", 0, 1)
		v.tick()
	}
	if a := v.alert(r.ID, "h2"); a == nil || a.State != Firing {
		t.Fatalf("h2 stopped for 3m: %+v", a)
	}
	if v.alert(r.ID, "h1") != nil {
		t.Fatal("h1 still beats")
	}
	ev := v.events(1)[0]
	if ev.Payload.Summary != "heartbeat ok seen 0 times in 3m on h2, expected at least 1 (rule heartbeat)" {
		t.Fatalf("summary %q", ev.Payload.Summary)
	}
	// Long gone: it stays firing (the heartbeat is still missing).
	v.clk.Add(30 * time.Minute)
	v.tick()
	if a := v.alert(r.ID, "h2"); a.State != Firing {
		t.Fatalf("h2: %s", a.State)
	}
	v.count("heartbeat ok", "h2", "", 0, 1)
	v.tick()
	if a := v.alert(r.ID, "h2"); a.State != Resolved {
		t.Fatalf("h2 beats again: %s", a.State)
	}
}

func TestSpikeComparesTheWindowWithTheBaseline(t *testing.T) {
	v := newEnv(t)
	r := v.rule(`{"name":"spike","keywords":["Timeout"],"condition":{"type":"spike","window":"2m","factor":3,"min_count":10,"baseline":"10m"},
		"pagerduty":{"routing_key":"` + testKey + `"}}`)
	for back := 2; back < 12; back++ {
		v.count("Timeout", "h", "", back, 4) // 4/min baseline: 8 expected per 2m window
	}
	v.count("Timeout", "h", "", 0, 20) // 20 < 3*8
	v.tick()
	if v.alert(r.ID, "") != nil {
		t.Fatal("fired below factor x baseline")
	}
	v.count("Timeout", "h", "", 1, 4) // 24 >= 24
	v.tick()
	a := v.alert(r.ID, "")
	if a == nil || a.State != Firing || a.Count != 24 {
		t.Fatalf("spike alert %+v", a)
	}
	if !strings.Contains(a.History[0].Detail, "3.0x the usual 8") {
		t.Fatalf("summary %q", a.History[0].Detail)
	}
}

func TestManualResolveWaitsForTheConditionToClear(t *testing.T) {
	v := newEnv(t)
	v.startSender()
	r := v.rule(javaRule)
	v.count("Exception", "web-1", "", 0, 10)
	v.tick()
	id := ID(r.ID, "web-1")
	a, err := v.store.Resolve(v.ctx, id, "ana")
	if err != nil || a.State != Resolved || !a.Rearm {
		t.Fatalf("resolve: %+v %v", a, err)
	}
	if evs := v.events(2); evs[1].Action != "resolve" {
		t.Fatalf("%s", actions(evs))
	}
	v.clk.Add(10 * time.Second)
	v.tick()
	if a := v.alert(r.ID, "web-1"); a.State != Resolved {
		t.Fatal("re-fired right after a manual resolve")
	}
	v.clk.Add(6 * time.Minute) // condition clears
	v.tick()
	if a := v.alert(r.ID, "web-1"); a.Rearm {
		t.Fatal("not re-armed after the condition cleared")
	}
	v.count("Exception", "web-1", "", 0, 10)
	v.tick()
	if a := v.alert(r.ID, "web-1"); a.State != Firing {
		t.Fatalf("re-armed alert does not fire: %s", a.State)
	}
	v.events(3)
}

func TestDeletedRuleResolvesItsAlerts(t *testing.T) {
	v := newEnv(t)
	v.startSender()
	r := v.rule(javaRule)
	v.count("Exception", "web-1", "", 0, 10)
	v.tick()
	if err := v.rules.Delete(v.ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	v.tick()
	if a := v.alert(r.ID, "web-1"); a.State != Resolved {
		t.Fatalf("state %s", a.State)
	}
	if evs := v.events(2); evs[1].Action != "resolve" || evs[1].RoutingKey != testKey {
		t.Fatalf("%s", actions(evs))
	}
}

func TestOnlyTheShardOwnerEvaluatesARule(t *testing.T) {
	srv := redistest.Start(t)
	clk := &clock{t: time.Date(2025, 3, 1, 12, 0, 30, 0, time.UTC)}
	owner := newReplica(t, srv, clk, 1, true)
	other := newReplica(t, srv, clk, 1, true) // cannot take the held shard
	if len(other.shards.Owned()) != 0 {
		t.Fatal("two replicas hold one shard")
	}
	r := owner.rule(javaRule)
	owner.count("Exception", "web-1", "", 0, 10)
	other.tick()
	if owner.alert(r.ID, "web-1") != nil {
		t.Fatal("a replica without the shard evaluated the rule")
	}
	owner.tick()
	if owner.alert(r.ID, "web-1") == nil {
		t.Fatal("the owner did not evaluate")
	}
}

func TestTransitionIsFencedByTheShardLease(t *testing.T) {
	v := newEnv(t)
	r := v.rule(javaRule)
	v.count("Exception", "web-1", "", 0, 10)
	// Another replica took the shard (say after a long pause of ours) while
	// we still believe we hold it: the transaction must not commit.
	shard := lease.ShardOf(r.ID, v.shards.N())
	if err := v.rdb.Set(v.ctx, v.shards.Lease(shard).Key(), "someone-else", 0).Err(); err != nil {
		t.Fatal(err)
	}
	v.tick()
	if v.alert(r.ID, "web-1") != nil {
		t.Fatal("committed a transition without the lease")
	}
	if p, _ := v.ob.ListPending(v.ctx); len(p) != 0 {
		t.Fatalf("queued %d notifications without the lease", len(p))
	}
}

func TestAppliedBatchFiresWithoutWaitingForTheTick(t *testing.T) {
	srv := redistest.Start(t)
	clk := &clock{t: time.Date(2025, 3, 1, 12, 0, 30, 0, time.UTC)}
	// The ingesting replica owns no shard; the owner learns of the batch
	// over pub/sub.
	ingester := newReplica(t, srv, clk, 1, false)
	owner := newReplica(t, srv, clk, 1, true)
	r := owner.rule(javaRule)
	for _, v := range []*env{ingester, owner} {
		v.eng.c.Settings.EvalInterval = time.Hour // only the first tick runs
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func(v *env) { defer close(done); v.eng.Run(ctx) }(v)
		t.Cleanup(func() { cancel(); <-done })
	}
	deadline := time.Now().Add(5 * time.Second)
	for owner.eng.Stats().Ticks == 0 || ingester.eng.Stats().Ticks == 0 {
		if time.Now().After(deadline) {
			t.Fatal("engines did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // subscriptions settle
	ingester.count("Exception", "web-1", "", 0, 10)
	ingester.eng.OnApplied(context.Background(), []stream.Entry{{Keyword: keyword.Spec{Text: "Exception"}, Host: "web-1", Count: 10}})
	for owner.alert(r.ID, "web-1") == nil {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatal("the applied batch did not fire the rule")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBuildDetail(t *testing.T) {
	v := newEnv(t)
	r := v.rule(javaRule)
	v.count("Exception", "web-1", "a", 0, 10)
	v.count("Exception", "web-1", "a", 3, 2)
	v.count("Exception", "web-2", "a", 0, 7)
	v.tick()
	a := v.alert(r.ID, "web-1")
	d, err := BuildDetail(v.ctx, v.win, &r, a, v.clk.Now(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.CountsPerMinute) != 60 || d.CountsPerMinute["2025-03-01T12:00:00Z"] != 10 || d.CountsPerMinute["2025-03-01T11:57:00Z"] != 2 {
		t.Fatalf("counts %v", d.CountsPerMinute)
	}
	if len(d.SampleLines) != 2 || d.SampleLines[0].Host != "web-1" {
		t.Fatalf("samples %+v", d.SampleLines)
	}
}

func TestSettingsValidateNamesTheSetting(t *testing.T) {
	for _, s := range []Settings{
		{EvalInterval: time.Millisecond, SampleLines: 5},
		{EvalInterval: time.Second, PublicURL: "keyalert.example", SampleLines: 5},
		{EvalInterval: time.Second, SampleLines: -1},
	} {
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "KEYALERT_") {
			t.Errorf("%+v: %v", s, err)
		}
	}
	if err := DefaultSettings().Validate(); err != nil {
		t.Fatal(err)
	}
}
