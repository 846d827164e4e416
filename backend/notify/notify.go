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
	"maps"
	"slices"
	"strings"
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
	// Receivers are the named receivers (package receiver) the rule routes
	// to; empty: the default receivers, else the PagerDuty integration with
	// Target. An acknowledge or resolve goes to every receiver that got the
	// alert's trigger, whatever this says.
	Receivers []string `json:"receivers,omitempty"`
	// Labels are the group's labels beyond Host and Tag (group_by names
	// other than host and tag); see GroupLabels.
	Labels map[string]string `json:"labels,omitempty"`
	// SeriesHost is the only host of the series the alert counted, when the
	// group names no host; empty when several or none.
	SeriesHost string `json:"series_host,omitempty"`
}

// GroupLabels are the labels that tell the alert's group apart: host and
// tag when known, plus Labels. Receivers that identify alerts by labels
// (Alertmanager) use them, so a new group label needs no change there.
func (n Notification) GroupLabels() map[string]string {
	out := make(map[string]string, len(n.Labels)+2)
	for k, v := range n.Labels {
		out[k] = v
	}
	if n.Host != "" {
		out["host"] = n.Host
	}
	if n.Tag != "" {
		out["tag"] = n.Tag
	}
	return out
}

// LabelsText is labels as "name=value, …" sorted by name, for chat
// messages; "" for none.
func LabelsText(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ", ")
}

// WithTrigger returns n (an acknowledge or resolve, which only identifies
// the alert) completed with the details of the alert's trigger t, so a
// receiver can render the same labels and summary; action and time stay n's.
func (n Notification) WithTrigger(t Notification) Notification {
	out := t
	out.Action, out.At = n.Action, n.At
	if n.Target != "" {
		out.Target = n.Target
	}
	return out
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

// ErrNoReceiver is wrapped by a receiver lookup for a name that does not
// exist (deleted since the notification was stored).
var ErrNoReceiver = errors.New("no such receiver")

// ErrSkip, returned by an Encoder, says the receiver has nothing to do with
// this notification (an acknowledge to Alertmanager, a severity the receiver
// does not take): the outbox drops it as done, without sending.
var ErrSkip = errors.New("not for this receiver")

// Pacer is implemented by notifiers whose service limits the rate per
// destination: the outbox sends at most one message per every to each key
// (PagerDuty: the routing key; Slack: the webhook), so a storm is paced
// rather than rejected. every <= 0: not paced.
type Pacer interface {
	Pace(n Notification) (key string, every time.Duration)
}

// Refresher is implemented by notifiers whose service forgets an alert not
// re-sent (Alertmanager's resolve_timeout): the outbox sends an active
// alert's trigger again every RefreshEvery until its resolve is delivered.
type Refresher interface {
	RefreshEvery() time.Duration
}

// Messenger is implemented by notifiers that may post messages rather than set a state
// (chat): the outbox does not send their final event again after an attempt
// whose outcome was unknown, since that would post a duplicate.
type Messenger interface {
	Messages() bool
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
