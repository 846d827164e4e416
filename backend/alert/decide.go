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
	if in.o.cond {
		switch {
		case cur == nil || (cur.State == Resolved && !cur.Rearm):
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

// fire starts a new episode, reusing the stored alert's id and history.
func fire(cur *Alert, in input) (*Alert, []string) {
	now := in.now.UTC()
	r := in.rule
	var next *Alert
	if cur != nil {
		next = cur.clone()
	} else {
		id := ID(r.ID, in.o.group)
		next = &Alert{ID: id, DedupKey: DedupKey(id), RuleID: r.ID, GroupBy: r.GroupBy, Group: in.o.group}
	}
	next.RuleName, next.Keywords, next.KeywordIDs, next.Severity = r.Name, append([]string(nil), r.Keywords...), r.KeywordIDs(), r.Severity
	next.State, next.Count, next.StartedAt, next.UpdatedAt = Firing, in.o.count, now, now
	next.FalseSince, next.AckedAt, next.AckedBy, next.ResolvedAt = time.Time{}, time.Time{}, "", time.Time{}
	next.Notified, next.SilencedBy, next.Rearm, next.LastNotifiedAt = false, "", false, time.Time{}
	next.record(now, "firing", in.summary)
	if in.silence != nil {
		next.SilencedBy = in.silence.ID
		next.record(now, "silenced", "by silence "+in.silence.ID+"; not paged")
		return next, nil
	}
	next.Notified, next.LastNotifiedAt = true, now
	return next, []string{actTrigger}
}
