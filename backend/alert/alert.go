// Package alert evaluates rules against the per-minute keyword counts and
// keeps one alert per (rule, group) with a stable id, moving it through
// firing -> acknowledged -> resolved and paging PagerDuty through the outbox.
//
// Alert state lives in Redis under the {alerts} hash tag, together with the
// shard leases and the outbox, so that a state change, the check that this
// replica still holds the rule's shard lease and the notification commit in
// one WATCH/MULTI transaction.
package alert

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/zeebo/xxh3"
)

// State of an alert.
type State string

// States. Pending is an alert whose condition holds but not yet for the
// rule's "for": tracked, never notified.
const (
	Pending      State = "pending"
	Firing       State = "firing"
	Acknowledged State = "acknowledged"
	Resolved     State = "resolved"
)

// ParseState accepts a state name.
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case Pending, Firing, Acknowledged, Resolved:
		return st, nil
	}
	return "", fmt.Errorf("unknown alert state %q (want pending, firing, acknowledged or resolved)", s)
}

// MaxHistory bounds the history an alert can keep in memory; the store
// keeps StoreOptions.History of it (DefaultHistory).
const MaxHistory = 1000

// Alert is one (rule, group) alert.
type Alert struct {
	ID       string        `json:"id"`
	DedupKey string        `json:"dedup_key"`
	RuleID   string        `json:"rule_id"`
	RuleName string        `json:"rule_name"`
	GroupBy  rules.GroupBy `json:"group_by"`
	// Group is the group the alert is for: the one dimension's value (a
	// host, a tag, a label value), name=value pairs joined by ',' for
	// several; empty for group_by none.
	Group string `json:"group"`
	// Labels are the group's dimensions, name -> value (host and tag
	// included when grouped by); empty for group_by none.
	Labels   map[string]string `json:"labels"`
	Keywords []string          `json:"keywords"`
	// KeywordIDs are the counted series (keyword.Spec IDs).
	KeywordIDs []string `json:"keyword_ids"`
	// Filters and Condition are, with GroupBy and KeywordIDs, the rule's
	// shape when the episode started: an alert whose rule no longer has that
	// shape is retired, since its group may no longer exist. Condition is nil
	// for alerts stored before shapes were recorded.
	Filters   rules.Filters    `json:"filters,omitzero"`
	Condition *rules.Condition `json:"condition,omitempty"`
	Severity  rules.Severity   `json:"severity"`
	State     State            `json:"state"`
	// Count is the rule's count when the alert last fired or re-notified.
	Count     int64     `json:"count"`
	StartedAt time.Time `json:"started_at"`
	// PendingSince is when the condition started holding, for a rule with
	// "for": set while pending and kept through the episode it led to.
	PendingSince time.Time `json:"pending_since,omitzero"`
	// FalseSince is when the condition last turned false while active; the
	// alert resolves once it stays false for the rule's resolve_after.
	FalseSince     time.Time `json:"false_since,omitzero"`
	LastNotifiedAt time.Time `json:"last_notified_at,omitzero"`
	AckedAt        time.Time `json:"acked_at,omitzero"`
	AckedBy        string    `json:"acked_by,omitempty"`
	ResolvedAt     time.Time `json:"resolved_at,omitzero"`
	// Notified says PagerDuty has an open incident for this episode, so an
	// acknowledge or resolve must be sent.
	Notified bool `json:"notified"`
	// SilencedBy is the silence muting the alert, if any.
	SilencedBy string `json:"silenced_by,omitempty"`
	// Rearm is set by a manual resolve while the condition still holds: the
	// alert fires again only after the condition has been false once.
	Rearm     bool      `json:"rearm,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	History   []Event   `json:"history"`
	// HistoryDropped counts the oldest history entries dropped to keep the
	// history bounded: a non-zero value says History does not start at the
	// beginning.
	HistoryDropped int `json:"history_dropped,omitempty"`
}

// Event is one line of an alert's history.
type Event struct {
	At     time.Time `json:"at"`
	Event  string    `json:"event"`
	Detail string    `json:"detail,omitempty"`
}

// Active reports whether the alert is firing or acknowledged.
func (a *Alert) Active() bool { return a.State == Firing || a.State == Acknowledged }

// tracked reports whether the engine must look at the alert on every tick.
func (a *Alert) tracked() bool { return a.Active() || a.State == Pending || a.Rearm }

// stampShape records r's shape on the alert, at the start of an episode or
// of a pending spell.
func (a *Alert) stampShape(r *rules.Rule) {
	a.RuleName, a.Keywords, a.KeywordIDs, a.Severity = r.Name, append([]string(nil), r.Keywords...), r.KeywordIDs(), r.Severity
	c := r.Condition
	a.GroupBy, a.Filters, a.Condition = r.GroupBy, r.Filters, &c
}

// shapeChange describes how r differs from the rule shape the alert was
// judged by, e.g. "group_by host → none"; "" if it does not. Name, severity,
// routing, repeat_interval, resolve_after and for are not part of the shape.
// kwIDs are r.KeywordIDs(), which the engine has at hand.
func shapeChange(a *Alert, r *rules.Rule, kwIDs []string) string {
	var d []string
	if a.GroupBy != r.GroupBy {
		d = append(d, fmt.Sprintf("group_by %s → %s", a.GroupBy, r.GroupBy))
	}
	if !slices.Equal(a.KeywordIDs, kwIDs) {
		if slices.Equal(a.Keywords, r.Keywords) {
			d = append(d, "keyword match or ignore_case changed")
		} else {
			d = append(d, fmt.Sprintf("keywords %s → %s", strings.Join(a.Keywords, ", "), strings.Join(r.Keywords, ", ")))
		}
	}
	// Alerts from before shapes were recorded can be judged on the above only.
	if a.Condition != nil {
		if !a.Filters.Equal(r.Filters) {
			d = append(d, fmt.Sprintf("filters %s → %s", filtersText(a.Filters), filtersText(r.Filters)))
		}
		if *a.Condition != r.Condition {
			d = append(d, fmt.Sprintf("condition %s → %s", conditionText(*a.Condition), conditionText(r.Condition)))
		}
	}
	return strings.Join(d, "; ")
}

func filtersText(f rules.Filters) string {
	all := f.All()
	var s []string
	for _, name := range []string{"host", "tag"} {
		if g, ok := all[name]; ok {
			s = append(s, name+"="+g)
			delete(all, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(all)) {
		s = append(s, name+"="+all[name])
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

func (a *Alert) record(at time.Time, event, detail string) {
	a.History = append(a.History, Event{At: at.UTC(), Event: event, Detail: detail})
	a.trimHistory(MaxHistory)
}

// trimHistory keeps the newest max entries, counting those dropped.
func (a *Alert) trimHistory(max int) {
	if n := len(a.History); n > max {
		a.HistoryDropped += n - max
		a.History = append(a.History[:0:0], a.History[n-max:]...)
	}
}

func (a *Alert) clone() *Alert {
	c := *a
	c.Keywords = append([]string(nil), a.Keywords...)
	c.KeywordIDs = append([]string(nil), a.KeywordIDs...)
	if a.Condition != nil {
		cond := *a.Condition
		c.Condition = &cond
	}
	c.History = append([]Event(nil), a.History...)
	return &c
}

// ID is the stable id of the alert for (ruleID, group).
func ID(ruleID, group string) string {
	h := xxh3.HashString128(ruleID + "\x00" + group).Bytes()
	return "a" + hex.EncodeToString(h[:8])
}

// DedupKey is the PagerDuty dedup key of alert id: stable, so trigger,
// acknowledge and resolve of every episode address the same incident key.
func DedupKey(id string) string { return "keyalert-" + id }

// ErrNotFound is returned for an unknown alert id.
var ErrNotFound = errors.New("alert not found")

// ErrConflict is returned for a transition the alert's state does not allow.
var ErrConflict = errors.New("alert state does not allow this")

func decodeAlert(b []byte) (*Alert, error) {
	var a Alert
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, err
	}
	if a.Labels == nil { // stored before labels, or group_by none
		a.Labels = a.GroupBy.Labels(a.Group)
		if a.Labels == nil {
			a.Labels = map[string]string{}
		}
	}
	return &a, nil
}
