package alert

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/metrictest"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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
	recv   *recorder
	reg    *prometheus.Registry
}

func newEnv(t *testing.T) *env {
	srv := redistest.Start(t)
	return newReplica(t, srv, &clock{t: time.Date(2025, 3, 1, 12, 0, 30, 0, time.UTC)}, 4, true)
}

func newReplica(t *testing.T, srv *redistest.Server, clk *clock, nShards int, takeShards bool) *env {
	v := &env{t: t, ctx: context.Background(), srv: srv, rdb: srv.Client(), clk: clk}
	v.rules = rules.NewStore(v.rdb, rules.Options{}, clk.Now, quiet)
	v.sils = silence.NewStore(v.rdb, clk.Now, quiet)
	v.win = window.NewStore(v.rdb, stream.DefaultStream)
	v.ob = outbox.New(v.rdb, outbox.Options{BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Integrations: []string{"recorder"}}, quiet)
	v.store = NewStore(v.rdb, v.ob, RuleKeys{Rules: v.rules}, clk.Now, quiet)
	v.shards = lease.NewShards(v.rdb, LeasePrefix, lease.NewOwner(), lease.Options{TTL: 5 * time.Second, Shards: nShards}, quiet)
	if takeShards {
		if err := v.shards.Step(v.ctx); err != nil {
			t.Fatal(err)
		}
	}
	v.reg = prometheus.NewRegistry()
	v.eng = v.newEngine(Options{PublicURL: "http://keyalert.example", Registerer: v.reg})
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
	v.marker(spec.ID(), minute)
	line := window.EncodeSample(window.Sample{Minute: minute, Host: host, Tag: tag, Line: fmt.Sprintf("%s on %s", kw, host)})
	v.rdb.LPush(v.ctx, v.win.Keys().Samples(spec.ID(), host, tag), line)
}

// marker writes the change marker the ingest's engine writes after
// applying a batch: counts written behind the engine's back are not seen
// until its cache's periodic full re-read.
func (v *env) marker(kwID string, minute int64) {
	v.t.Helper()
	if err := writeChanges(v.ctx, v.rdb, marker{kwID: {minute}}); err != nil {
		v.t.Fatal(err)
	}
}

// newEngine builds an engine as keyalertd does, and takes its place in the
// change-marker stream as a running engine would have.
func (v *env) newEngine(opt Options) *Engine {
	e := New(Config{Redis: v.rdb, Rules: v.rules, Silences: v.sils, Counts: v.win, Store: v.store,
		Shards: v.shards, Options: opt, Now: v.clk.Now, Log: quiet})
	if _, _, err := e.feed.read(v.ctx, v.rdb); err != nil {
		v.t.Fatal(err)
	}
	return e
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

// recorder is a notifier that keeps the notifications it is sent: the
// engine's output, whatever an integration makes of it.
type recorder struct {
	mu   sync.Mutex
	evs  []notify.Notification
	more chan struct{}
}

func (r *recorder) Encode(n notify.Notification) ([]byte, error) { return notify.Marshal(n) }

func (r *recorder) Send(_ context.Context, body []byte) notify.Delivery {
	n, err := notify.Unmarshal(body)
	if err != nil {
		return notify.Delivery{Outcome: notify.Reject, Reason: err.Error()}
	}
	r.mu.Lock()
	r.evs = append(r.evs, n)
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
	return notify.Delivery{Outcome: notify.Delivered, Status: 202}
}

func (r *recorder) Events() []notify.Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notify.Notification(nil), r.evs...)
}

func (v *env) startSender() {
	v.recv = &recorder{more: make(chan struct{}, 1)}
	reg := notify.NewRegistry()
	if err := reg.Register("recorder", v.recv); err != nil {
		v.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.ob.Run(ctx, reg)
	}()
	v.t.Cleanup(func() { cancel(); <-done })
}

// events waits until the recorder holds n notifications and returns them.
func (v *env) events(n int) []notify.Notification {
	v.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		evs := v.recv.Events()
		if len(evs) >= n {
			return evs
		}
		select {
		case <-v.recv.more:
		case <-deadline:
			v.t.Fatalf("want %d notifications, got %s", n, actions(evs))
		}
	}
}

func actions(evs []notify.Notification) string {
	var s []string
	for _, e := range evs {
		s = append(s, string(e.Action))
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
	if ev.Action != notify.Trigger || ev.DedupKey != DedupKey(a.ID) || ev.AlertID != a.ID || ev.Target != testKey ||
		ev.Summary != "Exception seen 37 times in 5m on web-12 (rule java exceptions)" ||
		ev.Group != "web-12" || ev.Host != "web-12" || ev.Rule.Severity != rules.Critical || ev.Tag != "app.web" ||
		strings.Join(ev.Keywords, ",") != "Exception" || ev.Count != 37 || ev.Window != "5m" || !ev.At.Equal(v.clk.Now()) {
		t.Fatalf("trigger %+v", ev)
	}
	if ev.Rule.ID != r.ID || ev.Rule.Name != "java exceptions" || ev.Rule.Runbook != "https://runbooks.example/java" ||
		ev.Rule.Condition != "count >= 5 over 5m" || ev.Rule.GroupBy != rules.GroupHost || ev.Rule.Filters.Host != "web-*" {
		t.Fatalf("rule %+v", ev.Rule)
	}
	if ev.CountsPerMinute["2025-03-01T12:00:00Z"] != 17 || ev.CountsPerMinute["2025-03-01T11:59:00Z"] != 20 ||
		len(ev.Samples) == 0 || ev.Samples[0] != "Exception on web-12" {
		t.Fatalf("counts %v samples %q", ev.CountsPerMinute, ev.Samples)
	}
	if len(ev.Links) != 2 || ev.Links[0].Href != "https://runbooks.example/java" || ev.Links[1].Href != "http://keyalert.example/api/v1/alerts/"+a.ID ||
		ev.AlertURL != ev.Links[1].Href {
		t.Fatalf("links %+v alert URL %q", ev.Links, ev.AlertURL)
	}

	// Still true on the next tick: nothing new.
	v.clk.Add(10 * time.Second)
	v.tick()
	v.noMoreEvents(1)

	// The counts leave the window: false (once the window without them is
	// settled: a complete minute plus the 1m eval_delay) for 2m, then resolved.
	v.clk.Add(7 * time.Minute)
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
	if evs[1].Action != notify.Resolve || evs[1].DedupKey != ev.DedupKey || evs[1].Target != testKey {
		t.Fatalf("events %s", actions(evs))
	}

	// It fires again with the same id and dedup key: a new PagerDuty incident.
	v.count("Exception", "web-12", "app.web", 0, 5)
	v.tick()
	evs = v.events(3)
	if evs[2].Action != notify.Trigger || evs[2].DedupKey != ev.DedupKey {
		t.Fatalf("refire: %s", actions(evs))
	}
	if ep, res := testutil.ToFloat64(v.eng.met.episodes), testutil.ToFloat64(v.eng.met.resolutions); ep != 2 || res != 1 {
		t.Fatalf("%v episodes and %v resolutions, want 2 and 1", ep, res)
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
	if evs := v.events(2); evs[1].Action != notify.Trigger {
		t.Fatalf("repeat: %s", actions(evs))
	}
	a, err := v.store.Ack(v.ctx, ID(r.ID, "web-1"), "ana")
	if err != nil || a.State != Acknowledged || a.AckedBy != "ana" {
		t.Fatalf("ack: %+v %v", a, err)
	}
	if evs := v.events(3); evs[2].Action != notify.Acknowledge {
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
	// Acknowledged alerts still auto-resolve (judged on settled minutes).
	v.clk.Add(8 * time.Minute)
	v.tick()
	v.clk.Add(2 * time.Minute)
	v.tick()
	if evs := v.events(4); evs[3].Action != notify.Resolve {
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
	if evs[0].Host != "web-2" {
		t.Fatalf("only web-2 pages: %+v", evs[0])
	}
	// The silence ends while the alert still fires: it pages then.
	if err := v.sils.Delete(v.ctx, sil.ID); err != nil {
		t.Fatal(err)
	}
	v.clk.Add(10 * time.Second)
	v.tick()
	evs = v.events(2)
	if evs[1].Host != "web-1" {
		t.Fatalf("after the silence: %+v", evs[1])
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
	// h2 stops; absence is judged on the window ending at the settled
	// minute (a complete minute and the 1m eval_delay back): 5 ticks.
	for i := 0; i < 5; i++ {
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
	if ev.Summary != "heartbeat ok seen 0 times in 3m on h2, expected at least 1 (rule heartbeat)" {
		t.Fatalf("summary %q", ev.Summary)
	}
	// Long gone: it stays firing (the heartbeat is still missing).
	v.clk.Add(30 * time.Minute)
	v.tick()
	if a := v.alert(r.ID, "h2"); a.State != Firing {
		t.Fatalf("h2: %s", a.State)
	}
	v.count("heartbeat ok", "h2", "", 0, 1)
	v.tick()
	if a := v.alert(r.ID, "h2"); a.State != Firing {
		t.Fatalf("h2 beats again, in a minute not settled yet: %s", a.State)
	}
	v.clk.Add(2 * time.Minute)
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
	if evs := v.events(2); evs[1].Action != notify.Resolve {
		t.Fatalf("%s", actions(evs))
	}
	v.clk.Add(10 * time.Second)
	v.tick()
	if a := v.alert(r.ID, "web-1"); a.State != Resolved {
		t.Fatal("re-fired right after a manual resolve")
	}
	v.clk.Add(8 * time.Minute) // condition clears on settled minutes
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
	if evs := v.events(2); evs[1].Action != notify.Resolve || evs[1].Target != testKey {
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
		v.eng.c.Options.EvalInterval = time.Hour // only the first tick runs
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func(v *env) { defer close(done); v.eng.Run(ctx) }(v)
		t.Cleanup(func() { cancel(); <-done })
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(owner.eng.met.evaluations) == 0 || testutil.ToFloat64(ingester.eng.met.evaluations) == 0 {
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

// Each replica reports the alerts of the shards it owns, so the sum over
// replicas counts every alert once; the gauge follows acknowledgements.
func TestAlertsGaugeCountsTheOwnedShardsOnce(t *testing.T) {
	srv := redistest.Start(t)
	clk := &clock{t: time.Date(2025, 3, 1, 12, 0, 30, 0, time.UTC)}
	owner := newReplica(t, srv, clk, 1, true)
	other := newReplica(t, srv, clk, 1, true) // holds no shard
	r := owner.rule(javaRule)
	owner.count("Exception", "web-1", "", 0, 10)
	owner.count("Exception", "web-2", "", 0, 10)
	owner.tick()
	other.tick()
	gauge := func(v *env, state State) float64 {
		return testutil.ToFloat64(v.eng.met.alerts.WithLabelValues(string(state)))
	}
	if f, o := gauge(owner, Firing), gauge(other, Firing); f != 2 || o != 0 {
		t.Fatalf("firing: owner %v, other %v; want 2 and 0", f, o)
	}
	if _, err := owner.store.Ack(owner.ctx, ID(r.ID, "web-1"), "ana"); err != nil {
		t.Fatal(err)
	}
	owner.clk.Add(10 * time.Second)
	owner.tick()
	if f, a := gauge(owner, Firing), gauge(owner, Acknowledged); f != 1 || a != 1 {
		t.Fatalf("after an ack: firing %v, acknowledged %v; want 1 and 1", f, a)
	}
	// Redis gone: a scrape still answers with the last evaluation's figures.
	srv.Stop()
	if f := gauge(owner, Firing); f != 1 {
		t.Fatalf("firing %v with Redis down", f)
	}
}

func TestMetricNamesAndLabels(t *testing.T) {
	v := newEnv(t)
	got := metrictest.Shapes(t, v.reg)
	want := map[string]string{
		"keyalert_alerts":                                 "GAUGE state",
		"keyalert_alert_evaluations_total":                "COUNTER ",
		"keyalert_alert_evaluation_failures_total":        "COUNTER ",
		"keyalert_alert_last_evaluation_duration_seconds": "GAUGE ",
		"keyalert_alert_episodes_total":                   "COUNTER ",
		"keyalert_alert_resolutions_total":                "COUNTER ",
		"keyalert_alert_rules_deferred":                   "GAUGE ",
		"keyalert_alert_groups_dropped_total":             "COUNTER ",
		"keyalert_alert_groups_forgotten_total":           "COUNTER ",
		"keyalert_alert_late_triggers_total":              "COUNTER ",
		"keyalert_late_entries_past_horizon_total":        "COUNTER ",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("metrics %v, want %v", got, want)
	}
}

// countLines adds one record per line of kw to the window back minutes ago,
// and pushes the lines to the series' sample list in order, as the ingest
// would (the last pushed is the newest).
func (v *env) countLines(kw, host, tag string, back int, lines ...string) {
	v.t.Helper()
	spec := keyword.Spec{Text: kw}
	minute := v.clk.Now().Unix() - v.clk.Now().Unix()%60 - int64(back)*60
	if err := v.rdb.HIncrBy(v.ctx, v.win.Keys().Window(spec.ID(), minute), window.Field(host, tag), int64(len(lines))).Err(); err != nil {
		v.t.Fatal(err)
	}
	v.marker(spec.ID(), minute)
	for _, l := range lines {
		enc := window.EncodeSample(window.Sample{Minute: minute, Host: host, Tag: tag, Line: l})
		if err := v.rdb.LPush(v.ctx, v.win.Keys().Samples(spec.ID(), host, tag), enc).Err(); err != nil {
			v.t.Fatal(err)
		}
	}
}

func TestPagesCarryTheirOwnGroupsSamplesNewestFirst(t *testing.T) {
	var busy []string
	for i := range 30 {
		busy = append(busy, fmt.Sprintf("busy %d", i))
	}
	tests := []struct {
		name    string
		groupBy rules.GroupBy
		want    map[string][]string // group -> samples of its page
	}{
		{"group by host: each host its own lines; a busy host crowds out no one", rules.GroupHost, map[string][]string{
			"web-1": {"web-1 app m0", "web-1 worker m-1", "web-1 app m-2"},
			"web-2": {"web-2 app m-1"},
			"busy":  {"busy 29", "busy 28", "busy 27", "busy 26", "busy 25"},
		}},
		{"group by tag: the tag's series across hosts", rules.GroupTag, map[string][]string{
			"app":    {"busy 29", "web-1 app m0", "busy 28", "busy 27", "busy 26"},
			"worker": {"web-1 worker m-1"},
		}},
		{"no grouping: newest across series", rules.GroupNone, map[string][]string{
			"": {"busy 29", "web-1 app m0", "busy 28", "busy 27", "busy 26"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newEnv(t)
			v.startSender()
			v.rule(`{"name":"errors","keywords":["ERROR"],"condition":{"type":"threshold","count":1,"window":"5m"},
				"group_by":"` + string(tt.groupBy) + `","pagerduty":{"routing_key":"` + testKey + `"}}`)
			v.countLines("ERROR", "web-1", "app", 2, "web-1 app m-2")
			v.countLines("ERROR", "web-1", "worker", 1, "web-1 worker m-1")
			v.countLines("ERROR", "web-1", "app", 0, "web-1 app m0")
			v.countLines("ERROR", "web-2", "app", 1, "web-2 app m-1")
			v.countLines("ERROR", "busy", "app", 0, busy...)
			v.tick()
			got := map[string][]string{}
			for _, ev := range v.events(len(tt.want)) {
				got[ev.Group] = ev.Samples
			}
			if !maps.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("samples per page %q, want %q", got, tt.want)
			}
		})
	}
}
