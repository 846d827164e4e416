package alert

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/zeebo/xxh3"
)

// Defaults of a zero Options.
const (
	// DefaultEvalInterval is the tick re-evaluating every owned rule.
	DefaultEvalInterval = 3 * time.Second
	// DefaultTickBudget is how long one evaluation judges rules before it
	// leaves the rest to the next ticks.
	DefaultTickBudget = 50 * time.Millisecond
	// DefaultSampleLines is how many sample lines a trigger carries.
	DefaultSampleLines = 5
	// DefaultEvalDelay is how long after a minute ends its counts are taken
	// as complete: entries a flush or a retry delays, or a clock this much
	// behind, cause no false absence. An absence window of W minutes also
	// absorbs a clock up to about W behind (the heartbeat still lands in it).
	DefaultEvalDelay = time.Minute
	// DefaultMaxGroups bounds the groups an absence rule remembers.
	DefaultMaxGroups = 10000
	// DefaultLatenessHorizon is how old a minute may be (since it ended)
	// for late entries of it to be re-judged: a Fluent Bit backlog after an
	// outage of up to about this long still pages, marked late.
	DefaultLatenessHorizon = time.Hour
)

// Options of the engine. The zero value is usable: a zero field means the
// default above.
type Options struct {
	// EvalInterval is the tick that re-evaluates every owned rule, for
	// resolution and absence. Thresholds fire on applied batches without
	// waiting for it.
	EvalInterval time.Duration
	// TickBudget bounds the time one evaluation spends judging rules; the
	// rules left over are judged by the next evaluations (every rule at
	// least once per few ticks). 0: DefaultTickBudget.
	TickBudget time.Duration
	// PublicURL is the API's external base URL for links in notifications,
	// e.g. https://keyalert.example.com; empty: no link.
	PublicURL string
	// SampleLines is how many sample lines a trigger carries; 0:
	// DefaultSampleLines. NoSampleLines sends none, whatever SampleLines says
	// (the same convention as ingest.Options.NoSamples).
	SampleLines   int
	NoSampleLines bool
	// EvalDelay is the eval_delay of rules without their own; 0:
	// DefaultEvalDelay. NoEvalDelay makes it 0.
	EvalDelay   time.Duration
	NoEvalDelay bool
	// MaxGroups bounds the groups each absence rule remembers; a new group
	// beyond it is not remembered, logged and counted
	// (keyalert_alert_groups_dropped_total). 0: DefaultMaxGroups.
	MaxGroups int
	// LatenessHorizon bounds how long after a minute ended late entries of
	// it re-judge its windows; older ones are counted in
	// keyalert_late_entries_past_horizon_total and logged. 0:
	// DefaultLatenessHorizon.
	LatenessHorizon time.Duration
	// Registerer takes the engine's metrics; nil: not registered.
	Registerer prometheus.Registerer
}

func (o Options) withDefaults() Options {
	if o.EvalInterval <= 0 {
		o.EvalInterval = DefaultEvalInterval
	}
	if o.TickBudget <= 0 {
		o.TickBudget = DefaultTickBudget
	}
	switch {
	case o.NoSampleLines:
		o.SampleLines = 0
	case o.SampleLines <= 0:
		o.SampleLines = DefaultSampleLines
	}
	switch {
	case o.NoEvalDelay:
		o.EvalDelay = 0
	case o.EvalDelay <= 0:
		o.EvalDelay = DefaultEvalDelay
	}
	if o.MaxGroups <= 0 {
		o.MaxGroups = DefaultMaxGroups
	}
	if o.LatenessHorizon <= 0 {
		o.LatenessHorizon = DefaultLatenessHorizon
	}
	return o
}

// Shards is the engine's view of the shard leases (*lease.Shards).
type Shards interface {
	N() int
	Owns(shard int) bool
	Lease(shard int) *lease.Lease
}

// Config wires an engine.
type Config struct {
	Redis    redis.UniversalClient
	Rules    *rules.Store
	Silences *silence.Store
	Counts   Counts
	Store    *Store
	Shards   Shards
	Options  Options
	// DefaultRoutingKey is the target of rules without their own
	// pagerduty.routing_key.
	DefaultRoutingKey rules.Secret
	Now               func() time.Time // nil: time.Now
	// IngestCaughtUp, if set, says this process's ingest has applied the
	// backlog it found at start; until then absence is not judged (the
	// entries written while keyalertd was down are not counted yet).
	IngestCaughtUp func() bool
	Log            *slog.Logger

	// DefaultReceivers says KEYALERT_DEFAULT_RECEIVERS is set: a rule with
	// neither receivers nor a routing key pages them.
	DefaultReceivers bool
}

// Engine evaluates the rules of the shards this replica holds.
type Engine struct {
	c     Config
	owner string // tells our own applied-keyword broadcasts apart

	// Used by the run goroutine only (Tick and the batch path).
	rs        *ruleSet
	sils      []silence.Silence
	silVer    int64
	lastPrune time.Time
	seasonal  seasonalCache

	mu       sync.Mutex
	localKW  map[string]struct{} // from our ingest: broadcast, then evaluate
	remoteKW map[string]struct{} // from other replicas: evaluate
	localMin marker              // minutes per keyword from our ingest: the change marker to write
	past     pastHorizon         // entries past the lateness horizon, for the rate-limited log
	wake     chan struct{}

	met *metrics
	// active is the state of each pending or active alert of the owned shards, as of
	// this replica's evaluation: the source of the keyalert_alerts gauge.
	// Used by the run goroutine only.
	active map[string]State
	// mem caches each owned absence rule's remembered groups as Redis last
	// returned them, so that a tick writes to Redis only when a group's
	// minutes advance (about once a minute), not on every tick. Used by the
	// run goroutine only.
	mem map[string]*memEntry
	// feed is this replica's position in the change-marker stream, cache
	// the counts it has read, clean the minute each rule was last judged
	// in with nothing changed since (as of cleanVer, the rules' and
	// silences' versions). Used by the run goroutine only.
	feed     changeFeed
	cache    countCache
	clean    map[string]int64
	cleanVer [2]int64
	// judged holds the rules this replica has judged since it started:
	// entries of their settled minutes are late; a rule it never judged
	// (it just started) takes what it finds as on time.
	judged map[string]int64
	// lateHeld are change markers of rules judged here whose lease is
	// lapsed, kept until lateHeldUntil (lateWork).
	lateHeld      map[string]map[int64]bool
	lateHeldUntil map[string]time.Time
	// noCache reads every count on every evaluation and judges every rule
	// (the engine before incremental evaluation; benchmarks compare).
	noCache bool
}

// memEntry is a rule's remembered groups as of at.
type memEntry struct {
	// groups has each group's first and last minute as this replica saw
	// them (last may be ahead of Redis by less than the rule's slack);
	// stored is the last minute Redis holds.
	groups   map[string]seen
	stored   map[string]int64
	version  int64     // of the memory in Redis these reflect
	warnedAt time.Time // last warning that the rule is at the group bound
}

// memSlackMax bounds how far a group's last-seen minute in Redis may lag
// the minute this replica saw it: a heartbeat every minute rewrites a
// rule's memory every slack, not every minute. Only forget_after reads
// last (it is ≥ 1h, so the lag never forgets a live group: groups about
// to be forgotten are written exactly first), and a replica taking the
// rule over may forget a group up to the slack early.
const memSlackMax = 15 * time.Minute

// memSlack is cr's slack in seconds: forget_after/4, at most memSlackMax,
// less up to half of it by the rule's id so that rules created together
// do not write their memories in the same minute.
func memSlack(cr *crule) int64 {
	slack := min(cr.forget/4, memSlackMax)
	sec := int64(slack/time.Minute) * 60
	if sec < 120 {
		return sec
	}
	return sec - int64(xxh3.HashString(cr.rule.ID)%uint64(sec/120))*60
}

// New returns an engine; call Run, or Tick in tests.
func New(c Config) *Engine {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	c.Options = c.Options.withDefaults()
	return &Engine{c: c, owner: lease.NewOwner(), rs: &ruleSet{byKW: map[string][]int{}, byID: map[string]*crule{}},
		silVer: -1, localKW: map[string]struct{}{}, remoteKW: map[string]struct{}{}, localMin: marker{}, wake: make(chan struct{}, 1),
		met: newMetrics(c.Options.Registerer), active: map[string]State{}, mem: map[string]*memEntry{}, judged: map[string]int64{}}
}

// OnApplied is the ingest hook: it notes the batch's keywords and wakes the
// engine, without doing any I/O on the ingest path.
func (e *Engine) OnApplied(_ context.Context, entries []stream.Entry) {
	now := e.c.Now()
	horizon := now.Add(-e.c.Options.LatenessHorizon).Unix()
	e.mu.Lock()
	past := 0
	// A batch holds few keywords and minutes (a chunk's keywords, repeated
	// by each chunk): each keyword is looked up by its text alone, its id
	// made and its minutes noted once.
	type noted struct {
		spec    keyword.Spec
		id      string
		minutes []int64
	}
	byText := make(map[string]*noted, 16)
	for i := range entries {
		m, spec := entries[i].Minute, entries[i].Keyword
		n := byText[spec.Text]
		if n == nil || n.spec != spec {
			other := n != nil // the same text in another mode: rare, not cached
			n = &noted{spec: spec, id: spec.ID()}
			if !other {
				byText[spec.Text] = n
			}
			e.localKW[n.id] = struct{}{}
		}
		if !slices.Contains(n.minutes, m) {
			n.minutes = append(n.minutes, m)
			if mins := e.localMin[n.id]; !slices.Contains(mins, m) {
				e.localMin[n.id] = append(mins, m)
			}
		}
		if m+60 < horizon {
			past++
			if e.past.n == 0 || m < e.past.oldest {
				e.past.oldest = m
			}
			e.past.n++
		}
	}
	var logN int
	var oldest int64
	if e.past.n > 0 && now.Sub(e.past.loggedAt) >= time.Minute {
		logN, oldest = e.past.n, e.past.oldest
		e.past = pastHorizon{loggedAt: now}
	}
	e.mu.Unlock()
	if past > 0 {
		e.met.latePastHorizon.Add(float64(past))
	}
	if logN > 0 {
		e.c.Log.Warn("late entries past the lateness horizon: counted, never judged",
			"entries", logN, "oldest_minute", time.Unix(oldest, 0).UTC().Format(time.RFC3339),
			"horizon", e.c.Options.LatenessHorizon.String())
	}
	e.signal()
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

type appliedMsg struct {
	From     string   `json:"from"`
	Keywords []string `json:"kw"`
}

// Run evaluates on every tick and on every applied batch until ctx ends. The
// shard leases are kept by the caller (lease.Shards.Run).
func (e *Engine) Run(ctx context.Context) error {
	sub := e.c.Redis.Subscribe(ctx, AppliedChannel)
	defer sub.Close()
	go e.listen(ctx, sub)
	t := time.NewTicker(e.c.Options.EvalInterval)
	defer t.Stop()
	e.logErr(e.Tick(ctx))
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			e.logErr(e.Tick(ctx))
		case <-e.wake:
			e.logErr(e.onBatches(ctx))
		}
	}
}

func (e *Engine) logErr(err error) {
	if err != nil && !errors.Is(err, context.Canceled) {
		e.met.failures.Inc()
		e.c.Log.Error("alert evaluation", "err", err)
	}
}

// listen takes keyword ids applied by other replicas' ingest.
func (e *Engine) listen(ctx context.Context, sub *redis.PubSub) {
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			var am appliedMsg
			if json.Unmarshal([]byte(m.Payload), &am) != nil || am.From == e.owner {
				continue
			}
			e.mu.Lock()
			for _, kw := range am.Keywords {
				e.remoteKW[kw] = struct{}{}
			}
			e.mu.Unlock()
			e.signal()
		}
	}
}

// onBatches broadcasts our ingest's keywords to the other replicas (which
// may own the rules) and evaluates the owned rules counting any of them.
func (e *Engine) onBatches(ctx context.Context) error {
	e.mu.Lock()
	local, remote, mins := e.localKW, e.remoteKW, e.localMin
	e.localKW, e.remoteKW, e.localMin = map[string]struct{}{}, map[string]struct{}{}, marker{}
	e.mu.Unlock()
	if len(mins) > 0 {
		// Before the broadcast, so that a woken owner finds the marker.
		if err := writeChanges(ctx, e.c.Redis, mins); err != nil {
			e.c.Log.Warn("write change marker", "err", err) // owners miss lateness of this batch
		}
	}
	if len(local) > 0 {
		am := appliedMsg{From: e.owner, Keywords: make([]string, 0, len(local))}
		for kw := range local {
			am.Keywords = append(am.Keywords, kw)
		}
		b, _ := json.Marshal(am)
		if err := e.c.Redis.Publish(ctx, AppliedChannel, b).Err(); err != nil {
			e.c.Log.Warn("broadcast applied keywords", "err", err) // the owners' tick catches up
		}
	}
	rs := e.rs
	seen := map[int]bool{}
	var idxs []int
	for _, set := range []map[string]struct{}{local, remote} {
		for kw := range set {
			for _, i := range rs.byKW[kw] {
				if !seen[i] {
					seen[i] = true
					idxs = append(idxs, i)
				}
			}
		}
	}
	if len(idxs) == 0 {
		return nil
	}
	sort.Ints(idxs)
	return e.evaluate(ctx, rs, idxs, e.c.Now(), false)
}

// Tick reloads changed rules and silences and evaluates every owned rule.
func (e *Engine) Tick(ctx context.Context) error {
	start := time.Now()
	now := e.c.Now()
	if err := e.reload(ctx); err != nil {
		return err
	}
	rs := e.rs
	if e.c.Shards.Owns(0) {
		// One replica keeps the published keyword set in line with the rules.
		err := rs.kwErr
		if err == nil {
			_, err = e.c.Rules.Publish(ctx, rs.kwDoc)
		}
		if err != nil {
			e.c.Log.Warn("sync keyword set", "err", err)
		}
		if now.Sub(e.lastPrune) > time.Hour {
			if _, err := e.c.Silences.Prune(ctx, now.Add(-7*24*time.Hour)); err != nil {
				e.c.Log.Warn("prune silences", "err", err)
			}
			e.lastPrune = now
		}
	}
	idxs := make([]int, len(rs.rules))
	for i := range idxs {
		idxs[i] = i
	}
	err := e.evaluate(ctx, rs, idxs, now, true)
	e.met.evaluations.Inc()
	e.met.lastDuration.Set(time.Since(start).Seconds())
	return err
}

func (e *Engine) reload(ctx context.Context) error {
	ver, err := e.c.Rules.Version(ctx)
	if err != nil {
		return err
	}
	if ver != e.rs.version || (ver == 0 && e.rs.rules == nil) {
		snap, err := e.c.Rules.Snapshot(ctx)
		if err != nil {
			return err
		}
		e.rs = compile(snap, e.c.Shards.N(), e.c.Options.EvalDelay)
	}
	sv, err := e.c.Silences.Version(ctx)
	if err != nil {
		return err
	}
	if sv != e.silVer {
		list, err := e.c.Silences.List(ctx)
		if err != nil {
			return err
		}
		e.sils, e.silVer = list, sv
	}
	return nil
}

// evaluate runs the rules idxs of rs that this replica owns: one pipelined
// read of every keyword's cells, one read of the tracked alerts, then
// in-memory evaluation; Redis is written only where an alert changes.
func (e *Engine) evaluate(ctx context.Context, rs *ruleSet, idxs []int, now time.Time, full bool) error {
	owned := idxs[:0:0]
	for _, i := range idxs {
		if e.c.Shards.Owns(rs.rules[i].shard) {
			owned = append(owned, i)
		}
	}
	changed, lost, err := e.feed.read(ctx, e.c.Redis)
	if err != nil {
		// Lateness of these batches goes unnoticed; evaluation goes on,
		// reading the counts whole since what changed is unknown.
		e.c.Log.Warn("read change markers", "err", err)
	}
	if lost || err != nil {
		e.cache.reset()
	}
	late := e.lateWork(rs, changed, now)
	var tracked map[string]*Alert
	if len(owned) > 0 || full || len(late) > 0 {
		var err error
		if tracked, err = e.c.Store.Tracked(ctx); err != nil {
			return err
		}
	}
	if full {
		// Rebuilt from Redis on every full tick, so the gauge follows shards
		// moving between replicas and changes made through the API.
		e.active = map[string]State{}
		for _, a := range tracked {
			if e.c.Shards.Owns(lease.ShardOf(a.RuleID, e.c.Shards.N())) {
				e.track(a)
			}
		}
		e.retireOrphans(ctx, rs, tracked, now)
		// A rule owned again later must read its memory afresh.
		for id := range e.mem {
			if cr, ok := rs.byID[id]; !ok || !e.c.Shards.Owns(cr.shard) {
				delete(e.mem, id)
			}
		}
		// ... and be judged afresh; cached keywords no owned rule reads go.
		for id := range e.clean {
			if cr, ok := rs.byID[id]; !ok || !e.c.Shards.Owns(cr.shard) {
				delete(e.clean, id)
			}
		}
		// Kept while the rule exists, also when its shard's lease lapsed:
		// after a Redis outage this replica takes its own shards back, and
		// the backlog Fluent Bit replays then is late, not on time.
		for id := range e.judged {
			if _, ok := rs.byID[id]; !ok {
				delete(e.judged, id)
			}
		}
		read := map[string]bool{}
		for _, i := range owned {
			for _, kw := range rs.rules[i].kwIDs {
				read[kw] = true
			}
		}
		for kw := range e.cache.kws {
			if !read[kw] {
				delete(e.cache.kws, kw)
			}
		}
	}
	defer e.publishActive()
	var lateErr error
	for _, i := range slices.Sorted(maps.Keys(lateIdx(rs, late))) {
		cr := rs.rules[i]
		if err := e.judgeLate(ctx, cr, late[cr], tracked, now); err != nil && lateErr == nil {
			lateErr = err
		}
	}
	if len(owned) == 0 {
		// The markers are read once: keep them for the cache's next read.
		e.cache.keep(changed)
		return lateErr
	}
	kwIDs := rs.kwIDs
	if len(owned) != len(rs.rules) {
		set := map[string]struct{}{}
		kwIDs = nil
		for _, i := range owned {
			for _, kw := range rs.rules[i].kwIDs {
				if _, ok := set[kw]; !ok {
					set[kw] = struct{}{}
					kwIDs = append(kwIDs, kw)
				}
			}
		}
	}
	nowMin := now.Unix() - now.Unix()%60
	dirty := map[string]bool{}
	var cells map[string][]window.Cell
	if e.noCache {
		cells, err = e.readCells(ctx, rs, kwIDs, nowMin)
	} else {
		cells, err = e.cachedCells(ctx, rs, kwIDs, nowMin, now, changed, dirty)
	}
	if err != nil {
		return err
	}
	byRule := map[string][]string{}
	stale := map[string]bool{}
	for id, a := range tracked {
		if retireReason(rs, a) != "" {
			// Left to retireOrphans on the next full tick: judging it by a
			// rule of another shape could keep it open for good.
			stale[id] = true
			continue
		}
		byRule[a.RuleID] = append(byRule[a.RuleID], a.Group)
	}
	// A changed keyword makes every rule counting it judged again, also
	// rules this round does not judge (a batch round judges the batch's).
	for kw := range dirty {
		for _, i := range rs.byKW[kw] {
			delete(e.clean, rs.rules[i].rule.ID)
		}
	}
	owned = e.needed(rs, owned, byRule, nowMin)
	e.urgentFirst(rs, owned, dirty, byRule)
	// The rules are judged in slices until the tick's budget is spent; the
	// rest stay unclean and are judged by the next ticks (urgent ones and
	// the longest waiting first). A tick then costs about the budget, not
	// every rule's cells, when a new minute moves every window at once.
	began := time.Now()
	var firstErr error
	deferred := 0
	for len(owned) > 0 {
		// The engine before incremental evaluation (noCache, kept for the
		// benchmarks' comparison) had no budget.
		if !e.noCache && time.Since(began) >= e.c.Options.TickBudget {
			deferred = len(owned)
			break
		}
		n := sliceLen(rs, owned, cells)
		part := owned[:n]
		owned = owned[n:]
		if err := e.addSeasonal(ctx, rs, part, nowMin, cells); err != nil {
			// Seasonal spikes then lack their baseline and are not judged.
			e.c.Log.Warn("seasonal baselines", "err", err)
		}
		// Without its memory a grouped absence rule cannot tell who is
		// missing: it skips this round, the other rules do not.
		mem, err := e.groupMemory(ctx, rs, part, tracked, cells, byRule, nowMin, now)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		for _, i := range part {
			cr := rs.rules[i]
			var ruleErr error
			judged := e.judgeRule(ctx, cr, cells, byRule, mem, tracked, stale, nowMin, now, &ruleErr)
			if ruleErr != nil && firstErr == nil {
				firstErr = ruleErr
			}
			if judged && ruleErr == nil {
				e.clean[cr.rule.ID] = nowMin
			}
			if judged {
				e.judged[cr.rule.ID] = cr.settledMinute(now)
			}
		}
	}
	e.met.deferred.Set(float64(deferred))
	return cmp.Or(firstErr, lateErr)
}

// sliceCells is about how many cells one slice of a tick's rules reads:
// small enough that the budget is overshot by little, large enough that
// the group memory's pipeline is shared by many rules.
const sliceCells = 50_000

// sliceLen is how many of owned to judge next: rules until their keywords'
// cells reach sliceCells, at least one.
func sliceLen(rs *ruleSet, owned []int, cells map[string][]window.Cell) int {
	total := 0
	for n, i := range owned {
		for _, kw := range rs.rules[i].kwIDs {
			total += len(cells[kw])
		}
		if total >= sliceCells {
			return n + 1
		}
	}
	return len(owned)
}

// urgentFirst orders owned (in place): rules whose counts changed or that
// have tracked alerts (their timers), then those that waited longest since
// they were last judged clean, so that a deferred rule is not deferred
// again behind newer work.
func (e *Engine) urgentFirst(rs *ruleSet, owned []int, dirty map[string]bool, byRule map[string][]string) {
	urgent := func(i int) int {
		cr := rs.rules[i]
		if len(byRule[cr.rule.ID]) > 0 {
			return 0
		}
		for _, kw := range cr.kwIDs {
			if dirty[kw] {
				return 0
			}
		}
		return 1
	}
	slices.SortStableFunc(owned, func(a, b int) int {
		return cmp.Or(cmp.Compare(urgent(a), urgent(b)),
			cmp.Compare(e.clean[rs.rules[a].rule.ID], e.clean[rs.rules[b].rule.ID]))
	})
}

// needed keeps the rules of owned whose evaluation may differ from their
// last one: a new minute (windows and the settled minute move), a keyword
// whose cells changed, tracked alerts (their timers: resolve_after,
// repeat_interval, for), or a rule or silence change since. The others
// would decide nothing: an untracked group whose condition held was
// opened by the evaluation that saw it hold.
func (e *Engine) needed(rs *ruleSet, owned []int, byRule map[string][]string, nowMin int64) []int {
	ver := [2]int64{rs.version, e.silVer}
	if e.clean == nil || e.cleanVer != ver || e.noCache {
		e.clean, e.cleanVer = map[string]int64{}, ver
	}
	out := owned[:0:0]
	for _, i := range owned {
		cr := rs.rules[i]
		if e.clean[cr.rule.ID] != nowMin || len(byRule[cr.rule.ID]) > 0 {
			out = append(out, i)
		}
	}
	return out
}

// judgeRule evaluates one rule and applies its observations; false if it
// could not be judged this round (its group memory is missing).
func (e *Engine) judgeRule(ctx context.Context, cr *crule, cells map[string][]window.Cell, byRule map[string][]string,
	mem map[string]map[string]seen, tracked map[string]*Alert, stale map[string]bool, nowMin int64, now time.Time, errp *error) bool {
	known := byRule[cr.rule.ID]
	m, hasMem := mem[cr.rule.ID]
	if cr.rule.Condition.Type == rules.Absence {
		if absenceTooNew(cr, now) {
			return true // too new to tell absence from not-yet-counted
		}
		if f := e.c.IngestCaughtUp; f != nil && !f() {
			return false // the backlog of a restart may hold the counts
		}
		if !hasMem && !cr.rule.GroupBy.None() {
			return false // its memory could not be read (firstErr)
		}
		// A set, not slices.Contains: thousands of remembered groups.
		have := make(map[string]bool, len(known))
		for _, g := range known {
			have[g] = true
		}
		known = slices.Clone(known)
		for g := range m {
			if !have[g] {
				known = append(known, g)
			}
		}
	}
	obs := judge(cr, cells, now, known)
	if hasMem {
		obs = remembered(cr, obs, now, m)
	}
	for _, o := range obs {
		id := ID(cr.rule.ID, o.group)
		if stale[id] {
			continue
		}
		if err := e.apply(ctx, cr, o, tracked[id], cells, nowMin, now); err != nil && *errp == nil {
			*errp = err
		}
	}
	return true
}

// lateIdx maps the rules of late work to their index in rs, so that they
// are judged in a stable order.
func lateIdx(rs *ruleSet, late map[*crule][]int64) map[int]bool {
	out := map[int]bool{}
	for i, cr := range rs.rules {
		if _, ok := late[cr]; ok {
			out[i] = true
		}
	}
	return out
}

// groupMemory updates the remembered groups of the owned absence rules
// grouped by host or tag with the groups their cells show, resolves the
// tracked alerts of groups forgotten (dropping them from byRule and tracked)
// and returns each such rule's remembered groups.
func (e *Engine) groupMemory(ctx context.Context, rs *ruleSet, owned []int, tracked map[string]*Alert,
	cells map[string][]window.Cell, byRule map[string][]string, nowMin int64, now time.Time) (map[string]map[string]seen, error) {
	var reqs []memReq
	var crs []*crule
	var seens []map[string]seen
	out := map[string]map[string]seen{}
	for _, i := range owned {
		cr := rs.rules[i]
		if cr.rule.Condition.Type != rules.Absence || cr.rule.GroupBy.None() {
			continue
		}
		seenNow := seenGroups(cr, cells, nowMin)
		req := memReq{ruleID: cr.rule.ID, seen: seenNow, seeds: map[string]int64{},
			forgetBefore: nowMin - int64(cr.forget/time.Second),
			ttl:          cr.forget + time.Duration(cr.readMin)*time.Minute + time.Hour, version: -1}
		// A tracked alert's group missing from memory (memory older than
		// this code, or a forget whose resolve was not committed) is
		// remembered from when its episode started.
		for _, g := range byRule[cr.rule.ID] {
			if a := tracked[ID(cr.rule.ID, g)]; a != nil {
				req.seeds[g] = seedMinute(a)
			}
		}
		if c := e.mem[cr.rule.ID]; c != nil {
			req.version = c.version
			if !c.delta(&req, memSlack(cr)) {
				c.see(seenNow)
				out[cr.rule.ID] = c.groups // nothing Redis needs to learn or forget
				continue
			}
		}
		reqs = append(reqs, req)
		crs = append(crs, cr)
		seens = append(seens, seenNow)
	}
	res, err := remember(ctx, e.c.Redis, reqs, e.c.Options.MaxGroups)
	if err != nil {
		return nil, err
	}
	for j, r := range res {
		cr := crs[j]
		c := e.mem[cr.rule.ID]
		if c == nil {
			c = &memEntry{}
			e.mem[cr.rule.ID] = c
		}
		c.update(&reqs[j], r)
		c.see(seens[j])
		out[cr.rule.ID] = c.groups
		if n := len(r.dropped); n > 0 {
			e.met.groupsDropped.Add(float64(n))
			// Counted every time; logged every 10 minutes per rule, so the
			// log stays readable.
			if now.Sub(c.warnedAt) >= 10*time.Minute {
				c.warnedAt = now
				e.c.Log.Warn("absence rule remembers too many groups; new ones are not watched",
					"rule_id", cr.rule.ID, "rule", cr.rule.Name, "not_remembered", n, "max_groups", e.c.Options.MaxGroups)
			}
		}
		for _, g := range r.forgotten {
			e.met.groupsForgotten.Inc()
			id := ID(cr.rule.ID, g)
			byRule[cr.rule.ID] = slices.DeleteFunc(byRule[cr.rule.ID], func(x string) bool { return x == g })
			cur := tracked[id]
			if cur == nil {
				continue
			}
			delete(tracked, id)
			if err := e.forget(ctx, cr, id, cur, now); err != nil {
				e.c.Log.Warn("resolve alert of a forgotten group", "alert_id", id, "rule_id", cr.rule.ID, "group", g, "err", err)
			}
		}
	}
	return out, nil
}

// delta narrows req.seen to what Redis must learn — new groups, earlier
// first minutes, last minutes that moved by the slack or more, and the
// exact last minute of groups Redis would otherwise forget too early —
// and reports whether req must go to Redis at all (also: a tracked group
// is missing, or a group is due to be forgotten).
func (c *memEntry) delta(req *memReq, slack int64) bool {
	send := map[string]seen{}
	for g, s := range req.seen {
		m, ok := c.groups[g]
		st := c.stored[g]
		if !ok || s.first < m.first || (s.last > st && s.last-st >= slack) {
			send[g] = seen{min(s.first, m.first), max(s.last, m.last)}
			if !ok {
				send[g] = s
			}
		}
	}
	due := len(send) > 0
	for g, m := range c.groups {
		last := max(m.last, req.seen[g].last)
		switch {
		case last < req.forgetBefore:
			due = true // Redis forgets it
		case c.stored[g] < req.forgetBefore:
			if _, ok := send[g]; !ok {
				send[g] = seen{m.first, last}
			}
			due = true
		}
	}
	for g := range req.seeds {
		if _, ok := c.groups[g]; !ok {
			due = true
		}
	}
	req.seen = send
	return due
}

// update brings the copy to Redis's state after req: the whole memory when
// the script sent it back, else req applied as the script did.
func (c *memEntry) update(req *memReq, r memResult) {
	c.version = r.version
	if r.full {
		c.groups = r.groups
		c.stored = make(map[string]int64, len(r.groups))
		for g, s := range r.groups {
			c.stored[g] = s.last
		}
		return
	}
	dropped := map[string]bool{}
	for _, g := range r.dropped {
		dropped[g] = true
	}
	for g, s := range req.seen {
		if dropped[g] {
			continue
		}
		if m, ok := c.groups[g]; ok {
			c.groups[g] = seen{min(m.first, s.first), max(m.last, s.last)}
		} else {
			c.groups[g] = s
		}
		c.stored[g] = max(c.stored[g], s.last)
	}
	for g, m := range req.seeds {
		if _, ok := c.groups[g]; !ok {
			if _, sent := req.seen[g]; !sent {
				c.groups[g] = seen{m, m}
				c.stored[g] = m
			}
		}
	}
	for _, g := range r.forgotten {
		delete(c.groups, g)
		delete(c.stored, g)
	}
}

// see moves the copy's last minutes to what this replica saw (Redis may
// lag by less than the slack).
func (c *memEntry) see(seenNow map[string]seen) {
	for g, s := range seenNow {
		if m, ok := c.groups[g]; ok && s.last > m.last {
			m.last = s.last
			c.groups[g] = m
		}
	}
}

// forget resolves (or drops) the tracked alert of a forgotten group.
func (e *Engine) forget(ctx context.Context, cr *crule, id string, cur *Alert, now time.Time) error {
	reason := forgetReason(cr.forget)
	committed, err := e.c.Store.change(ctx, id, e.c.Shards.Lease(cr.shard), func(fresh *Alert) (*Alert, write, error) {
		var w write
		next, acts := forgetGroup(fresh, now, reason)
		for _, act := range acts {
			if act == actResolve {
				w.notes = append(w.notes, e.c.Store.actionNote(ctx, next, notify.Resolve, now)...)
			}
		}
		return next, w, nil
	})
	if err != nil {
		if errors.Is(err, ErrLeaseLost) {
			return nil
		}
		return err
	}
	e.track(committed)
	e.logChange(cr, cur, committed)
	if cur.Active() && committed != nil && !committed.Active() {
		e.met.resolutions.Inc()
	}
	return nil
}

// logChange logs an alert's state change at info: rule, group, from → to
// and the reason its history gives.
func (e *Engine) logChange(cr *crule, cur, next *Alert) {
	if next == nil {
		return
	}
	from := State("none")
	if cur != nil {
		from = cur.State
	}
	if from == next.State && (cur == nil || cur.Rearm == next.Rearm) {
		return
	}
	e.c.Log.Info("alert state changed", "rule_id", cr.rule.ID, "rule", cr.rule.Name, "group", next.Group,
		"alert_id", next.ID, "from", string(from), "to", string(next.State), "reason", lastDetail(next))
}

// readCells reads the keywords' cells, each only as far back as its rules
// need: one pipelined CellsMany per distinct lookback (a handful), run in
// parallel, instead of the longest lookback for every keyword.
func (e *Engine) readCells(ctx context.Context, rs *ruleSet, kwIDs []string, nowMin int64) (map[string][]window.Cell, error) {
	byLook := map[int64][]string{}
	for _, kw := range kwIDs {
		byLook[rs.kwLook[kw]] = append(byLook[rs.kwLook[kw]], kw)
	}
	type part struct {
		cells map[string][]window.Cell
		err   error
	}
	parts := make(chan part, len(byLook))
	for look, kws := range byLook {
		go func() {
			c, err := e.c.Counts.CellsMany(ctx, kws, nowMin-(look-1)*60, nowMin+60)
			parts <- part{c, err}
		}()
	}
	var out map[string][]window.Cell
	var firstErr error
	for range byLook {
		p := <-parts
		switch {
		case p.err != nil:
			if firstErr == nil {
				firstErr = fmt.Errorf("read counts: %w", p.err)
			}
		case out == nil:
			out = p.cells
		default:
			for kw, c := range p.cells {
				out[kw] = c
			}
		}
	}
	if out == nil {
		out = map[string][]window.Cell{}
	}
	return out, firstErr
}

// apply decides on one observation and, when the alert changes, commits the
// change with its notifications, fenced by the rule's shard lease.
func (e *Engine) apply(ctx context.Context, cr *crule, o obs, cur *Alert, cells map[string][]window.Cell, nowMin int64, now time.Time) error {
	in := input{rule: &cr.rule, o: o, now: now}
	if o.cond {
		// The store adds time intervals: a silence's own, the rule's mute_time_intervals.
		in.silence = e.c.Silences.Matching(e.sils, &cr.rule, silenceTarget(cr, o, cur, cells, nowMin), now)
		in.summary = summarize(cr, o)
	}
	if next, _ := decide(cur, in); next == nil {
		return nil // the common case: nothing changes, nothing is written
	}
	var built *notify.Notification
	id := ID(cr.rule.ID, o.group)
	committed, err := e.c.Store.change(ctx, id, e.c.Shards.Lease(cr.shard), func(fresh *Alert) (*Alert, write, error) {
		next, acts := decide(fresh, in)
		var w write
		if next == nil {
			return nil, w, nil
		}
		for _, act := range acts {
			switch act {
			case actTrigger:
				if built == nil {
					n, err := e.trigger(ctx, cr, o, next, cells, nowMin, in.summary)
					if err != nil {
						next.Notified = false
						next.record(now, "not_paged", err.Error())
						continue
					}
					built = &n
				}
				w.notes = append(w.notes, *built)
				w.routingKey = built.Target
			case actResolve:
				w.notes = append(w.notes, e.c.Store.actionNote(ctx, next, notify.Resolve, now)...)
			}
		}
		return next, w, nil
	})
	if err != nil {
		if errors.Is(err, ErrLeaseLost) {
			return nil // the new owner evaluates it
		}
		return fmt.Errorf("alert %s of rule %s: %w", id, cr.rule.ID, err)
	}
	e.track(committed)
	e.logChange(cr, cur, committed)
	e.count(cur, in)
	return nil
}

// count updates the counters for a committed change (approximately: from the
// decision on the cached alert).
func (e *Engine) count(cur *Alert, in input) {
	next, _ := decide(cur, in)
	if next == nil {
		return
	}
	if next.State == Firing && (cur == nil || !cur.Active()) {
		e.met.episodes.Inc()
	}
	if next.State == Resolved && cur != nil && cur.Active() {
		e.met.resolutions.Inc()
	}
}

// track notes the committed state of an alert of an owned shard for the
// keyalert_alerts gauge.
func (e *Engine) track(a *Alert) {
	if a == nil {
		return
	}
	if a.Active() || a.State == Pending {
		e.active[a.ID] = a.State
	} else {
		delete(e.active, a.ID)
	}
}

// publishActive sets the keyalert_alerts gauge from e.active.
func (e *Engine) publishActive() {
	var pending, firing, acked int
	for _, st := range e.active {
		switch st {
		case Pending:
			pending++
		case Firing:
			firing++
		default:
			acked++
		}
	}
	e.met.alerts.WithLabelValues(string(Pending)).Set(float64(pending))
	e.met.alerts.WithLabelValues(string(Firing)).Set(float64(firing))
	e.met.alerts.WithLabelValues(string(Acknowledged)).Set(float64(acked))
}

// retireReason says why a tracked alert no longer belongs to the rules of
// rs, "" if it does. An alert belongs to the rule only while the rule has the
// shape (group_by, filters, keywords, condition) the alert was judged by:
// after a change its group may not exist any more — group_by host → none
// never observes the per-host groups again — so nothing would ever resolve it.
func retireReason(rs *ruleSet, a *Alert) string {
	cr, ok := rs.byID[a.RuleID]
	if !ok {
		return "rule deleted or disabled"
	}
	if d := shapeChange(a, &cr.rule, cr.kwIDs); d != "" {
		return "rule changed: " + d
	}
	return ""
}

// retireOrphans resolves, with a resolve notification if it paged, every
// tracked alert whose rule was deleted, disabled or changed shape, and drops
// such pending alerts, for the rules whose shard this replica owns. tracked
// is updated with the outcome, so that the evaluation that follows starts
// the changed rule's alerts afresh.
func (e *Engine) retireOrphans(ctx context.Context, rs *ruleSet, tracked map[string]*Alert, now time.Time) {
	for id, a := range tracked {
		reason := retireReason(rs, a)
		if reason == "" {
			continue
		}
		shard := lease.ShardOf(a.RuleID, e.c.Shards.N())
		if !e.c.Shards.Owns(shard) {
			continue
		}
		var event string
		committed, err := e.c.Store.change(ctx, id, e.c.Shards.Lease(shard), func(fresh *Alert) (*Alert, write, error) {
			var w write
			event = ""
			if fresh == nil || !fresh.tracked() {
				return nil, w, nil
			}
			if reason = retireReason(rs, fresh); reason == "" {
				return nil, w, nil
			}
			next := fresh.clone()
			next.Rearm, next.UpdatedAt = false, now.UTC()
			switch {
			case next.Active():
				event = "resolved"
				next.State, next.ResolvedAt = Resolved, now.UTC()
				next.record(now, "resolved", reason)
				if next.Notified {
					w.notes = e.c.Store.actionNote(ctx, next, notify.Resolve, now)
				}
				next.Notified, next.SilencedBy, next.FalseSince = false, "", time.Time{}
			case next.State == Pending:
				event = "dropped"
				next.State, next.ResolvedAt = Resolved, now.UTC()
				next.record(now, "dropped", reason+"; not paged")
			}
			return next, w, nil
		})
		if err != nil {
			if !errors.Is(err, ErrLeaseLost) {
				e.c.Log.Warn("retire alert of a removed or changed rule", "alert_id", id, "rule_id", a.RuleID, "err", err)
			}
			continue
		}
		e.track(committed)
		if committed == nil || !committed.tracked() {
			delete(tracked, id)
		} else {
			tracked[id] = committed
		}
		if event != "" {
			e.c.Log.Info("alert "+event, "alert_id", id, "rule_id", a.RuleID, "group", a.Group, "reason", reason)
			if event == "resolved" {
				e.met.resolutions.Inc()
			}
		}
	}
}

func (e *Engine) routingKey(cr *crule) rules.Secret {
	if k := cr.rule.PagerDuty.RoutingKey; k != "" {
		return k
	}
	return e.c.DefaultRoutingKey
}

// trigger builds the trigger notification of an alert.
func (e *Engine) trigger(ctx context.Context, cr *crule, o obs, a *Alert, cells map[string][]window.Cell, nowMin int64, summary string) (notify.Notification, error) {
	r := &cr.rule
	key := e.routingKey(cr)
	if key == "" && len(r.Receivers) == 0 && !e.c.DefaultReceivers {
		return notify.Notification{}, errors.New("trigger not sent: no routing key")
	}
	n := notify.Notification{
		Action: notify.Trigger, AlertID: a.ID, DedupKey: a.DedupKey,
		Rule: notify.Rule{ID: r.ID, Name: r.Name, Severity: r.Severity, Runbook: r.RunbookURL,
			Condition: conditionText(r.Condition), GroupBy: r.GroupBy, Filters: r.Filters},
		Group: o.group, Keywords: r.Keywords, Summary: summary,
		Count: o.count, Window: r.Condition.Window.String(),
		CountsPerMinute: minuteCounts(cr, cells, nowMin, o.group),
		Samples:         e.samples(ctx, cr, o.group, cells, nowMin),
		At:              e.c.Now(), Target: key, Receivers: r.Receivers,
	}
	for name, v := range o.groupLabels(r.GroupBy) {
		switch name {
		case "host":
			n.Host = v
		case "tag":
			n.Tag = v
		default:
			if n.Labels == nil {
				n.Labels = map[string]string{}
			}
			n.Labels[name] = v
		}
	}
	if !r.GroupBy.Has("tag") && o.tags == 1 {
		n.Tag = o.tag // the only tag seen
	}
	if !r.GroupBy.Has("host") && o.hosts == 1 {
		n.SeriesHost = o.host // the only host seen
	}
	if r.RunbookURL != "" {
		n.Links = append(n.Links, notify.Link{Href: r.RunbookURL, Text: "Runbook"})
	}
	if e.c.Options.PublicURL != "" {
		n.AlertURL = strings.TrimRight(e.c.Options.PublicURL, "/") + "/api/v1/alerts/" + a.ID
		n.Links = append(n.Links, notify.Link{Href: n.AlertURL, Text: "Alert in keyalert"})
	}
	return n, nil
}

// samples picks the newest sample lines of the group's own series (see
// sampleSeries) over the rule's lookback.
func (e *Engine) samples(ctx context.Context, cr *crule, group string, cells map[string][]window.Cell, nowMin int64) []string {
	n := e.c.Options.SampleLines
	if n <= 0 {
		return nil
	}
	lookStart := nowMin - (cr.lookMin-1)*60
	series := sampleSeries(cr.kwIDs, cells, cr.rule.Filters, cr.rule.GroupBy, group, lookStart, nowMin, n)
	list, err := e.c.Counts.Samples(ctx, series, n)
	if err != nil {
		e.c.Log.Warn("read sample lines", "rule_id", cr.rule.ID, "group", group, "err", err)
		return nil
	}
	out := make([]string, 0, len(list))
	for _, s := range list {
		out = append(out, s.Line)
	}
	return out
}

// summarize writes the one-line summary PagerDuty shows, e.g. "Exception
// seen 37 times in 5m on web-12 (rule java exceptions)".
func summarize(cr *crule, o obs) string {
	r := &cr.rule
	kws := r.Keywords
	kw := strings.Join(kws, ", ")
	if len(kws) > 3 {
		kw = strings.Join(kws[:3], ", ") + fmt.Sprintf(" (+%d more)", len(kws)-3)
	}
	where := "across the fleet"
	if o.group != "" {
		where = "on " + o.group
	}
	times := "times"
	if o.count == 1 {
		times = "time"
	}
	c := r.Condition
	s := fmt.Sprintf("%s seen %d %s in %s %s", kw, o.count, times, c.Window, where)
	switch c.Type {
	case rules.Absence:
		s += fmt.Sprintf(", expected at least %d", c.Count)
	case rules.Spike:
		s += spikeSummary(c, o)
	}
	return truncate(s+" (rule "+r.Name+")", MaxSummaryChars)
}

func conditionText(c rules.Condition) string {
	switch c.Type {
	case rules.Threshold:
		return fmt.Sprintf("count >= %d over %s", c.Count, c.Window)
	case rules.Absence:
		return fmt.Sprintf("count < %d over %s", c.Count, c.Window)
	case rules.Spike:
		return spikeText(c)
	}
	return string(c.Type)
}
