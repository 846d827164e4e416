package alert

import (
	"fmt"
	"time"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/silence"
)

// Notification kinds a decision asks for.
const (
	actTrigger = "trigger"
	actResolve = "resolve"
)

// input is one observation of one (rule, group) to decide on.
type input struct {
	rule    *rules.Rule
	o       obs
	silence *silence.Silence // matching now, nil if none
	now     time.Time
	summary string
}

// decide is the alert state machine. cur is the stored alert (nil if none);
// it returns the new alert, or nil when nothing changes, and the
// notifications to send. It is pure, so a transaction can run it again on a
// fresher alert.
func decide(cur *Alert, in input) (*Alert, []string) {
	now := in.now.UTC()
	r := in.rule
	cond := in.o.cond
	if r.For > 0 && cur != nil && cur.State == Pending {
		// By complete minutes: a partial minute at a boundary, or a window
		// not yet settled, neither drops nor fires the spell.
		switch pendingStep(in.o, floorMinute(cur.PendingSince.Unix()), int64(r.For.D()/time.Minute)) {
		case "fire":
			return fire(cur, in)
		case "drop":
			dropped := drop(cur, r, now)
			if in.o.early {
				// The current window holds again: a new spell starts now.
				return pend(dropped, in)
			}
			return dropped, nil
		default:
			return nil, nil
		}
	} else if r.For > 0 && (cur == nil || !cur.Active()) {
		// A pending spell starts on the current window alone, as a new
		// firing alert does.
		cond = in.o.early
	}
	if cond {
		switch {
		case cur == nil || (cur.State == Resolved && !cur.Rearm):
			if r.For > 0 {
				return pend(cur, in)
			}
			return fire(cur, in)
		case cur.State == Resolved:
			return nil, nil // manually resolved: waits for the condition to clear
		}
		next := cur.clone()
		changed := false
		if !next.FalseSince.IsZero() {
			next.FalseSince = time.Time{}
			changed = true
		}
		var acts []string
		if next.State == Firing {
			switch {
			case in.silence != nil && next.SilencedBy != in.silence.ID:
				next.SilencedBy = in.silence.ID
				next.record(now, "silenced", "by silence "+in.silence.ID)
				changed = true
			case in.silence == nil && next.SilencedBy != "":
				next.record(now, "unsilenced", "silence "+next.SilencedBy+" no longer applies")
				next.SilencedBy = ""
				changed = true
				if !next.Notified {
					acts = append(acts, actTrigger)
					next.Notified, next.LastNotifiedAt, next.Count = true, now, in.o.count
					next.record(now, "notified", in.summary)
				}
			case in.silence == nil && next.Notified && r.RepeatInterval > 0 && now.Sub(next.LastNotifiedAt) >= r.RepeatInterval.D():
				acts = append(acts, actTrigger)
				next.LastNotifiedAt, next.Count = now, in.o.count
				next.record(now, "renotified", in.summary)
				changed = true
			}
		}
		if !changed {
			return nil, nil
		}
		next.UpdatedAt = now
		return next, acts
	}

	// The condition is false.
	if cur == nil {
		return nil, nil
	}
	if cur.State == Pending {
		return drop(cur, r, now), nil
	}
	if cur.State == Resolved {
		if !cur.Rearm {
			return nil, nil
		}
		next := cur.clone()
		next.Rearm, next.UpdatedAt = false, now
		next.record(now, "rearmed", "condition cleared after the manual resolve")
		return next, nil
	}
	next := cur.clone()
	changed := false
	if next.FalseSince.IsZero() {
		next.FalseSince = now
		changed = true
	}
	var acts []string
	if now.Sub(next.FalseSince) >= r.ResolveAfter.D() {
		next.State, next.ResolvedAt = Resolved, now
		next.record(now, "resolved", fmt.Sprintf("condition false for %s", rules.Duration(now.Sub(next.FalseSince).Round(time.Second))))
		if next.Notified {
			acts = append(acts, actResolve)
		}
		next.Notified, next.SilencedBy, next.FalseSince = false, "", time.Time{}
		changed = true
	}
	if !changed {
		return nil, nil
	}
	next.UpdatedAt = now
	return next, acts
}

// drop ends a pending spell: never paged, so nothing to tell PagerDuty.
func drop(cur *Alert, r *rules.Rule, now time.Time) *Alert {
	next := cur.clone()
	next.State, next.ResolvedAt, next.UpdatedAt = Resolved, now, now
	next.record(now, "dropped", fmt.Sprintf("condition stopped holding after %s pending (for %s); not paged",
		rules.Duration(now.Sub(cur.PendingSince).Round(time.Second)), r.For))
	return next
}

// startSpell returns the stored alert to start an episode or a pending spell on,
// reusing its id and history, or a new one, with the rule's shape and every
// per-episode field cleared.
func startSpell(cur *Alert, in input) *Alert {
	r := in.rule
	var next *Alert
	if cur != nil {
		next = cur.clone()
	} else {
		id := ID(r.ID, in.o.group)
		next = &Alert{ID: id, DedupKey: DedupKey(id), RuleID: r.ID, Group: in.o.group}
	}
	next.stampShape(r)
	next.Labels = in.o.groupLabels(r.GroupBy)
	if next.Labels == nil {
		next.Labels = map[string]string{}
	}
	next.FalseSince, next.AckedAt, next.AckedBy, next.ResolvedAt = time.Time{}, time.Time{}, "", time.Time{}
	next.Notified, next.SilencedBy, next.Rearm, next.LastNotifiedAt = false, "", false, time.Time{}
	return next
}

// pend starts a pending spell: the condition holds, the rule wants it to
// hold for a while before paging.
func pend(cur *Alert, in input) (*Alert, []string) {
	now := in.now.UTC()
	next := startSpell(cur, in)
	next.State, next.Count, next.PendingSince, next.UpdatedAt = Pending, in.o.count, now, now
	next.record(now, "pending", fmt.Sprintf("pages if the condition holds for %s: %s", in.rule.For, in.summary))
	return next, nil
}

// fire starts a new episode, reusing the stored alert's id and history; a
// pending alert keeps its pending_since.
func fire(cur *Alert, in input) (*Alert, []string) {
	now := in.now.UTC()
	wasPending := cur != nil && cur.State == Pending
	next := startSpell(cur, in)
	if !wasPending {
		next.PendingSince = time.Time{}
	}
	next.State, next.Count, next.StartedAt, next.UpdatedAt = Firing, in.o.count, now, now
	next.record(now, "firing", in.summary)
	if in.silence != nil {
		next.SilencedBy = in.silence.ID
		next.record(now, "silenced", "by silence "+in.silence.ID+"; not paged")
		return next, nil
	}
	next.Notified, next.LastNotifiedAt = true, now
	return next, []string{actTrigger}
}

// forgetGroup ends a tracked alert whose group the rule forgot (not seen for
// forget_after): a firing or acknowledged one resolves, with a resolve
// notification if it paged; a pending one is dropped; a re-arming one is
// released. Nothing else is left to resolve it: the group is no longer
// observed. nil: nothing to change.
func forgetGroup(cur *Alert, now time.Time, reason string) (*Alert, []string) {
	if cur == nil || !cur.tracked() {
		return nil, nil
	}
	now = now.UTC()
	next := cur.clone()
	next.Rearm, next.UpdatedAt = false, now
	var acts []string
	switch {
	case next.Active():
		next.State, next.ResolvedAt = Resolved, now
		next.record(now, "resolved", reason)
		if next.Notified {
			acts = append(acts, actResolve)
		}
		next.Notified, next.SilencedBy, next.FalseSince = false, "", time.Time{}
	case next.State == Pending:
		next.State, next.ResolvedAt = Resolved, now
		next.record(now, "dropped", reason+"; not paged")
	default:
		next.record(now, "rearmed", reason)
	}
	return next, acts
}

// forgetReason is the history detail of a forgotten group.
func forgetReason(forget time.Duration) string {
	return fmt.Sprintf("group forgotten: no count for forget_after (%s)", rules.Duration(forget))
}
