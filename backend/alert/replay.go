package alert

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/window"
)

// Kinds of ReplayEvent.
const (
	// ReplayTrigger is a new episode: the engine would page.
	ReplayTrigger = "trigger"
	// ReplayRenotify is a repeat page of a firing alert after the rule's
	// repeat_interval.
	ReplayRenotify = "renotify"
	// ReplayResolve is an alert resolving after its condition stayed false
	// for the rule's resolve_after.
	ReplayResolve = "resolve"
)

// ReplayEvent is one notification the engine would have sent during a replay.
type ReplayEvent struct {
	// At is the simulated clock when the engine would have sent it: the start
	// of the minute whose counts (taken whole) made the decision.
	At time.Time `json:"at"`
	// Kind is ReplayTrigger, ReplayRenotify or ReplayResolve.
	Kind string `json:"kind"`
	// Rule is the rule's index in the list given to Replay.
	Rule int `json:"rule"`
	// RuleID is the rule's id as given (often empty in a replay).
	RuleID   string `json:"rule_id,omitempty"`
	RuleName string `json:"rule_name"`
	// GroupBy and Group say which alert of the rule this is: Group is the
	// host or tag, empty for group_by none.
	GroupBy rules.GroupBy `json:"group_by"`
	Group   string        `json:"group"`
	// Count is the rule's count over its window at At.
	Count int64 `json:"count"`
	// Condition is the rule's condition in words, e.g. "count >= 5 over 5m".
	Condition string `json:"condition"`
	// Summary is the page's one-line summary, the engine's own text, for a
	// trigger or renotify; for a resolve it says why and how long it fired.
	Summary string `json:"summary"`
	// StartedAt is when the alert's episode began.
	StartedAt time.Time `json:"started_at"`
	// EventTime (triggers and renotifies) is the end of the window whose
	// condition held: the end of the minute it ends with. EventWindow is
	// that window. The engine's late trigger for the same burst carries
	// the same event time (payload.timestamp) and window (replay has no
	// arrival times, so nothing in it is late).
	EventTime   time.Time    `json:"event_time,omitzero"`
	EventWindow *EventWindow `json:"event_window,omitempty"`
	// CountsPerMinute are the group's counts per minute over the rule's
	// lookback, keyed by RFC 3339 minute, as a page's details carry them;
	// nil for a resolve.
	CountsPerMinute map[string]int64 `json:"counts_per_minute,omitempty"`
}

// EventWindow is a span of event time, [From, To).
type EventWindow struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// maxReplaySteps bounds a replay's simulated clock (a year of minutes is
// about half a million steps).
const maxReplaySteps = 5_000_000

// Replay runs rs over recorded per-minute counts (cells, keyed by keyword ID
// as window.Store returns them) the way the engine would have while the data
// arrived, and returns the notifications it would have sent, in time order.
//
// The clock starts at the minute of from and steps by step (at most a
// minute); each step evaluates every enabled rule with the engine's own
// evalRule, summarize and decide, counting each minute whole. The rules are
// taken as created at from, so an absence rule waits its first window as it
// would after creation. After the minute of to (the end of the data) the
// clock runs on only while alerts are open, for up to the longest window plus
// resolve_after, so that resolves show; there no new alert starts and absence
// rules are not evaluated, since the data ending is not an absence. Nothing is
// silenced, acknowledged or resolved by hand, and no routing key is needed.
func Replay(rs []rules.Rule, cells map[string][]window.Cell, from, to time.Time, step time.Duration) ([]ReplayEvent, error) {
	return ReplayWith(rs, cells, from, to, step, Options{})
}

// ReplayWith is Replay with the engine options that decide (EvalDelay,
// NoEvalDelay, MaxGroups; the others are ignored), as keyalertd would run
// with them. Absence rules remember their groups as the engine does, in
// memory, from the start of the replay.
func ReplayWith(rs []rules.Rule, cells map[string][]window.Cell, from, to time.Time, step time.Duration, opt Options) ([]ReplayEvent, error) {
	opt = opt.withDefaults()
	if step <= 0 || step > time.Minute {
		return nil, fmt.Errorf("replay step %s: want more than 0 and at most 1m", step)
	}
	if to.Before(from) {
		return nil, fmt.Errorf("replay: end %s is before start %s", to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	start := from.UTC().Truncate(time.Minute)
	dataEnd := to.UTC().Truncate(time.Minute)

	// The engine keys alerts by rule id; the index stands in for it so that
	// ids in a replayed file may be empty or repeated.
	snap := rules.Snapshot{Rules: make([]rules.Rule, len(rs))}
	enabled := 0
	for i, r := range rs {
		r.ID, r.UpdatedAt = strconv.Itoa(i), start
		snap.Rules[i] = r
		if r.Enabled {
			enabled++
		}
	}
	set := compile(snap, 1, opt.EvalDelay)
	if len(set.rules) != enabled {
		for i, r := range snap.Rules {
			if _, ok := set.byID[r.ID]; r.Enabled && !ok {
				return nil, fmt.Errorf("replay rule %d (%q): window %s is not a whole number of minutes of at least 1m", i, r.Name, r.Condition.Window)
			}
		}
	}
	var tail time.Duration
	for _, cr := range set.rules {
		// A threshold holds until its window is settled: delay and a minute more.
		tail = max(tail, cr.rule.Condition.Window.D()+cr.rule.ResolveAfter.D()+cr.delay+time.Minute)
	}
	end := dataEnd.Add(tail + time.Minute)
	if n := end.Sub(start) / step; n > maxReplaySteps {
		return nil, fmt.Errorf("replay from %s to %s by %s is %d steps, over the limit of %d", start.Format(time.RFC3339), end.Format(time.RFC3339), step, n, maxReplaySteps)
	}

	// Cells sorted by minute, so each step takes the slice its rules read
	// instead of scanning the whole recording.
	sorted := make(map[string][]window.Cell, len(set.kwIDs))
	for _, kw := range set.kwIDs {
		c := slices.Clone(cells[kw])
		slices.SortStableFunc(c, func(a, b window.Cell) int { return cmp.Compare(a.Minute, b.Minute) })
		sorted[kw] = c
	}
	view := make(map[string][]window.Cell, len(sorted))

	type key struct {
		rule  int
		group string
	}
	alerts := map[key]*Alert{}
	tracked := make([]map[string]bool, len(rs)) // groups with a pending or active alert, per rule
	for i := range tracked {
		tracked[i] = map[string]bool{}
	}
	mem := make([]map[string]seen, len(rs)) // absence rules' remembered groups
	for i := range mem {
		mem[i] = map[string]seen{}
	}
	open := 0
	var out []ReplayEvent
	for now := start; !now.After(end); now = now.Add(step) {
		after := now.Truncate(time.Minute).After(dataEnd)
		if after && open == 0 {
			break
		}
		nowMin := floorMinute(now.Unix())
		for kw, c := range sorted {
			lo := sort.Search(len(c), func(j int) bool { return c[j].Minute >= nowMin-(set.kwLook[kw]-1)*60 })
			hi := sort.Search(len(c), func(j int) bool { return c[j].Minute > nowMin })
			view[kw] = c[lo:hi:hi]
		}
		replaySeasonal(set, sorted, view, nowMin)
		for _, cr := range set.rules {
			i, _ := strconv.Atoi(cr.rule.ID)
			absence := cr.rule.Condition.Type == rules.Absence
			withMem := absence && !cr.rule.GroupBy.None()
			if withMem {
				// As the engine: tracked groups are remembered, then
				// groups without a count for forget_after are forgotten.
				seenNow := seenGroups(cr, view, nowMin)
				for g := range tracked[i] {
					if _, ok := mem[i][g]; !ok {
						if _, ok := seenNow[g]; !ok {
							m := seedMinute(alerts[key{i, g}])
							mem[i][g] = seen{m, m}
						}
					}
				}
				forgotten, _ := rememberLocal(mem[i], seenNow, nowMin-int64(cr.forget/time.Second), opt.MaxGroups)
				slices.Sort(forgotten)
				for _, g := range forgotten {
					k := key{i, g}
					cur := alerts[k]
					next, acts := forgetGroup(cur, now, forgetReason(cr.forget))
					if next == nil {
						continue
					}
					alerts[k] = next
					delete(tracked[i], g)
					if cur.Active() {
						open--
					}
					for range acts {
						out = append(out, ReplayEvent{At: now, Kind: ReplayResolve, Rule: i, RuleID: rs[i].ID, RuleName: cr.rule.Name,
							GroupBy: cr.rule.GroupBy, Group: g, Condition: conditionText(cr.rule.Condition), StartedAt: next.StartedAt,
							Summary: fmt.Sprintf("%s, after firing for %s (rule %s)", lastDetail(next),
								rules.Duration(now.Sub(next.StartedAt).Round(time.Second)), cr.rule.Name)})
					}
				}
			}
			if absence && (after || absenceTooNew(cr, now)) {
				continue // as the engine: too new to tell absence from not-yet-counted
			}
			known := make([]string, 0, len(tracked[i]))
			for g := range tracked[i] {
				known = append(known, g)
			}
			if withMem {
				for g := range mem[i] {
					if !tracked[i][g] {
						known = append(known, g)
					}
				}
			}
			obs := judge(cr, view, now, known)
			if withMem {
				obs = remembered(cr, obs, now, mem[i])
			}
			sort.Slice(obs, func(a, b int) bool { return obs[a].group < obs[b].group })
			for _, o := range obs {
				k := key{i, o.group}
				cur := alerts[k]
				// After the data no alert starts, and a pending one cannot
				// have held on data that is not there.
				if after && (cur == nil || !cur.Active()) {
					continue
				}
				in := input{rule: &cr.rule, o: o, now: now}
				if o.cond {
					in.summary = summarize(cr, o)
				}
				next, acts := decide(cur, in)
				if next == nil {
					continue
				}
				alerts[k] = next
				// Pending alerts are known groups too, as in the engine, so
				// that a group going silent drops its pending alert.
				if next.tracked() {
					tracked[i][o.group] = true
				} else {
					delete(tracked[i], o.group)
				}
				wasActive := cur != nil && cur.Active()
				switch {
				case next.Active() && !wasActive:
					open++
				case !next.Active() && wasActive:
					open--
				}
				for _, act := range acts {
					ev := ReplayEvent{At: now, Rule: i, RuleID: rs[i].ID, RuleName: cr.rule.Name, GroupBy: cr.rule.GroupBy,
						Group: o.group, Count: o.count, Condition: conditionText(cr.rule.Condition), StartedAt: next.StartedAt}
					switch act {
					case actTrigger:
						ev.Kind, ev.Summary = ReplayTrigger, in.summary
						if wasActive {
							ev.Kind = ReplayRenotify
						}
						ev.CountsPerMinute = minuteCounts(cr, view, nowMin, o.group)
						ev.EventTime = time.Unix(o.end+60, 0).UTC()
						ev.EventWindow = &EventWindow{From: time.Unix(o.end-(cr.winMin-1)*60, 0).UTC(), To: ev.EventTime}
					case actResolve:
						ev.Kind = ReplayResolve
						ev.Summary = fmt.Sprintf("%s, after firing for %s (rule %s)", lastDetail(next),
							rules.Duration(now.Sub(next.StartedAt).Round(time.Second)), cr.rule.Name)
					default:
						return nil, errors.New("replay: unknown notification " + act)
					}
					out = append(out, ev)
				}
			}
		}
	}
	return out, nil
}

// lastDetail is the detail of the alert's newest history entry, which
// decide wrote for the change just made.
func lastDetail(a *Alert) string {
	if len(a.History) == 0 {
		return ""
	}
	return a.History[len(a.History)-1].Detail
}

// floorMinute is the start of the minute of Unix time s, also before 1970.
func floorMinute(s int64) int64 {
	return s - ((s%60)+60)%60
}
