// Package notify is the seam between the alert engine and the integrations
// that page people. The engine describes what happened as a Notification, a
// plain value independent of any receiver; the outbox stores it durably and,
// at send time, an integration found by name in a Registry encodes it into
// its wire format and delivers it. A new integration is a package beside
// notify/pagerduty implementing Notifier; neither the engine nor its
// transaction code changes.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keyalert/keyalert/backend/rules"
)

// Action is what a notification asks of the receiver.
type Action string

// Actions.
const (
	Trigger     Action = "trigger"     // an alert fired (or re-notifies)
	Acknowledge Action = "acknowledge" // someone is on it
	Resolve     Action = "resolve"     // it is over
)

// Rule is what a notification says about the rule that raised it.
type Rule struct {
	ID       string         `json:"id"`
	Name     string         `json:"name"`
	Severity rules.Severity `json:"severity,omitempty"`
	Runbook  string         `json:"runbook_url,omitempty"`
	// Condition is the condition in words, e.g. "count >= 5 over 5m".
	Condition string        `json:"condition,omitempty"`
	GroupBy   rules.GroupBy `json:"group_by,omitempty"`
	Filters   rules.Filters `json:"filters"`
}

// EventWindow is a span of event time, [From, To).
type EventWindow struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Link is a link shown with a notification.
type Link struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

// Notification is one event of an alert's life. A trigger carries
// everything; an acknowledge or resolve only identifies the alert.
type Notification struct {
	Action  Action `json:"action"`
	AlertID string `json:"alert_id"`
	// DedupKey is the alert's stable incident key: every episode's trigger,
	// acknowledge and resolve carry the same one.
	DedupKey string `json:"dedup_key"`
	Rule     Rule   `json:"rule"`
	// Group is the host or tag the alert is for; empty for the whole fleet.
	Group string `json:"group,omitempty"`
	// Host is the group's host (group_by host), Tag the group's tag
	// (group_by tag) or the only tag seen; empty when not known.
	Host     string   `json:"host,omitempty"`
	Tag      string   `json:"tag,omitempty"`
	Keywords []string `json:"keywords,omitempty"`
	// Summary is one line for people.
	Summary string `json:"summary,omitempty"`
	// Count is the rule's count over Window when it fired.
	Count  int64  `json:"count,omitempty"`
	Window string `json:"window,omitempty"`
	// CountsPerMinute covers the rule's lookback, keyed by RFC 3339 minute.
	CountsPerMinute map[string]int64 `json:"counts_per_minute,omitempty"`
	Samples         []string         `json:"samples,omitempty"`
	Links           []Link           `json:"links,omitempty"`
	// AlertURL is the alert in keyalert's API; empty without a public URL.
	AlertURL string    `json:"alert_url,omitempty"`
	At       time.Time `json:"at"`
	// Late marks a trigger for a window judged after its minutes had
	// settled (entries arrived after eval_delay); EventWindow is the
	// event-time window whose condition held, its end the event time.
	Late        bool         `json:"late,omitempty"`
	EventWindow *EventWindow `json:"event_window,omitempty"`
	// Target is where the rule routes its notifications (for PagerDuty the
	// routing key: the rule's own, else the default). A Secret: it prints and
	// logs redacted, and Marshal is the only encoding that keeps it.
	Target rules.Secret `json:"-"`
}

// Version is the version of Marshal's JSON. Bump it when a field changes
// meaning, and teach Unmarshal to read the old one: records outlive a deploy.
const Version = 1

// record is the stored form: the version, the target in full (Secret
// marshals redacted) and the notification.
type record struct {
	V      int    `json:"v"`
	Target string `json:"target,omitempty"`
	Notification
}

// Marshal encodes n as versioned JSON for storage, target included.
func Marshal(n Notification) ([]byte, error) {
	b, err := json.Marshal(record{V: Version, Target: n.Target.Reveal(), Notification: n})
	if err != nil {
		return nil, fmt.Errorf("encode %s notification of %s: %w", n.Action, n.AlertID, err)
	}
	return b, nil
}

// ErrVersion is returned for a record of a version this build cannot read.
var ErrVersion = errors.New("unknown notification version")

// Unmarshal decodes what Marshal stored.
func Unmarshal(b []byte) (Notification, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return Notification{}, fmt.Errorf("decode notification: %w", err)
	}
	if r.V != Version {
		return Notification{}, fmt.Errorf("%w %d", ErrVersion, r.V)
	}
	n := r.Notification
	n.Target = rules.Secret(r.Target)
	return n, nil
}

// Outcome of one delivery attempt.
type Outcome int

// Outcomes.
const (
	// Delivered: the receiver accepted it.
	Delivered Outcome = iota
	// Retry: rate limited, server or network error; tried again later.
	Retry
	// Reject: the receiver will never accept it; set aside.
	Reject
)

// Delivery is the result of one attempt.
type Delivery struct {
	Outcome Outcome
	Status  int    // HTTP status, 0 for a network error
	Reason  string // why it was not delivered; never the body
	// RetryAfter is the receiver's requested delay, if any.
	RetryAfter time.Duration
}

// Encoder renders a notification in a receiver's wire format.
type Encoder interface {
	Encode(n Notification) ([]byte, error)
}

// Notifier is one integration: it encodes notifications and delivers what
// it encoded. Send must never log or echo the body: it carries the target.
type Notifier interface {
	Encoder
	Send(ctx context.Context, body []byte) Delivery
}

// Registry holds the integrations by name. The outbox stores each
// notification with an integration's name and looks the notifier up when it
// sends, so the name is part of the stored format: never rename one.
type Registry struct {
	mu sync.RWMutex
	m  map[string]Notifier
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{m: map[string]Notifier{}} }

// Register adds n under name; a name is registered once.
func (r *Registry) Register(name string, n Notifier) error {
	if name == "" || n == nil {
		return errors.New("register notifier: want a name and a notifier")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.m[name]; dup {
		return fmt.Errorf("register notifier %q: already registered", name)
	}
	r.m[name] = n
	return nil
}

// Lookup returns the notifier registered under name.
func (r *Registry) Lookup(name string) (Notifier, bool) {
	if r == nil {
		return nil, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	n, ok := r.m[name]
	return n, ok
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for name := range r.m {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
