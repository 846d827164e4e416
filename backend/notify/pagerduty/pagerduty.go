// Package pagerduty is the PagerDuty integration: it renders notifications
// as Events API v2 events and sends them.
//
// The few wire types are the project's own (the go-pagerduty module was used
// for three structs only). The client posts to the configured full endpoint
// and classifies the answer for the outbox: 202 delivered, 400 rejected for
// good, 429/5xx/network retried.
package pagerduty

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/rules"
)

// Name is the integration's name in the notify registry and in stored
// outbox records; never change it.
const Name = "pagerduty"

// Defaults of a zero Options.
const (
	// DefaultURL is PagerDuty's Events API v2 endpoint.
	DefaultURL = "https://events.pagerduty.com/v2/enqueue"
	// DefaultTimeout bounds one request.
	DefaultTimeout = 10 * time.Second
	// DefaultEventsPerMinute paces events per routing key: PagerDuty
	// accepts about 120 per minute and answers 429 beyond.
	DefaultEventsPerMinute = 120
)

// Limits of the Events API v2.
const (
	MaxSummaryChars = 1024
	MaxEventBytes   = 512 * 1024
)

// Options of the PagerDuty client. The zero value is usable.
type Options struct {
	// URL is the full enqueue endpoint; "": DefaultURL.
	URL string
	// Timeout bounds one request; 0: DefaultTimeout.
	Timeout time.Duration
	// EventsPerMinute paces the events of one routing key; 0:
	// DefaultEventsPerMinute.
	EventsPerMinute int
}

// Client posts events to the configured endpoint.
type Client struct {
	url   string
	hc    *http.Client
	every time.Duration
	// key, when set, is the routing key of every event (a named receiver's),
	// instead of the notification's Target.
	key string
}

// NewClient returns a client; hc may be nil for one with the options'
// timeout.
func NewClient(o Options, hc *http.Client) *Client {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.EventsPerMinute <= 0 {
		o.EventsPerMinute = DefaultEventsPerMinute
	}
	if hc == nil {
		hc = &http.Client{Timeout: o.Timeout}
	}
	return &Client{url: o.URL, hc: hc, every: time.Minute / time.Duration(o.EventsPerMinute)}
}

// WithRoutingKey returns a client that sends every event with key (a named
// receiver's routing key), sharing c's connections.
func (c *Client) WithRoutingKey(key string) *Client {
	cp := *c
	cp.key = key
	return &cp
}

var (
	_ notify.Notifier = (*Client)(nil)
	_ notify.Pacer    = (*Client)(nil)
)

// Pace paces events per routing key; the key is hashed, so it never
// appears in memory beyond the client.
func (c *Client) Pace(n notify.Notification) (string, time.Duration) {
	k := c.key
	if k == "" {
		k = n.Target.Reveal()
	}
	sum := sha256.Sum256([]byte(k))
	return hex.EncodeToString(sum[:8]), c.every
}

// Send posts one encoded event and classifies the answer. The body is never
// logged or echoed: it carries the routing key.
func (c *Client) Send(ctx context.Context, body []byte) notify.Delivery {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return notify.Delivery{Outcome: notify.Reject, Reason: fmt.Sprintf("build request: %v", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "keyalert")
	resp, err := c.hc.Do(req)
	if err != nil {
		return notify.Delivery{Outcome: notify.Retry, Reason: fmt.Sprintf("post event: %v", err)}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	d := notify.Delivery{Status: resp.StatusCode}
	switch {
	case resp.StatusCode == http.StatusAccepted:
		d.Outcome = notify.Delivered
		return d
	case resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusRequestEntityTooLarge,
		resp.StatusCode == http.StatusUnprocessableEntity:
		// The same event will never be accepted: do not retry.
		d.Outcome = notify.Reject
	default:
		// 429, 5xx and anything unexpected (a proxy's 404 or 403 is fixable
		// configuration): keep the event and retry with backoff.
		d.Outcome = notify.Retry
		if s := resp.Header.Get("Retry-After"); s != "" {
			if secs, err := strconv.Atoi(s); err == nil && secs > 0 {
				d.RetryAfter = time.Duration(secs) * time.Second
			}
		}
	}
	d.Reason = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, errorText(raw))
	return d
}

// errorText extracts PagerDuty's error message and errors from a response.
func errorText(raw []byte) string {
	var r eventResponse
	if json.Unmarshal(raw, &r) == nil && (r.Message != "" || len(r.Errors) > 0) {
		s := r.Message
		if len(r.Errors) > 0 {
			s += ": " + strings.Join(r.Errors, "; ")
		}
		return Truncate(s, 1000)
	}
	return Truncate(strings.TrimSpace(string(raw)), 200)
}

// event and payload are the Events API v2 wire format. Field order and
// omitempty match what keyalert has always sent (go-pagerduty's V2Event and
// V2Payload), so encoded events stay byte-for-byte the same.
type event struct {
	RoutingKey string        `json:"routing_key"`
	Action     notify.Action `json:"event_action"`
	DedupKey   string        `json:"dedup_key,omitempty"`
	Links      []notify.Link `json:"links,omitempty"`
	Client     string        `json:"client,omitempty"`
	ClientURL  string        `json:"client_url,omitempty"`
	Payload    *payload      `json:"payload,omitempty"`
}

type payload struct {
	Summary   string `json:"summary"`
	Source    string `json:"source"`
	Severity  string `json:"severity"`
	Timestamp string `json:"timestamp,omitempty"`
	Component string `json:"component,omitempty"`
	Group     string `json:"group,omitempty"`
	Class     string `json:"class,omitempty"`
	Details   any    `json:"custom_details,omitempty"`
}

// eventResponse is PagerDuty's answer to an event.
type eventResponse struct {
	Status   string   `json:"status,omitempty"`
	DedupKey string   `json:"dedup_key,omitempty"`
	Message  string   `json:"message,omitempty"`
	Errors   []string `json:"errors,omitempty"`
}

// ErrNoRoutingKey: the notification has no target to page.
var ErrNoRoutingKey = errors.New("no routing key")

// Encode renders n as an Events API v2 event; its Target is the routing key.
// A trigger's summary is cut to PagerDuty's 1024 characters; if the event
// would exceed 512 KB, custom details are dropped down to the rule alone.
func (c *Client) Encode(n notify.Notification) ([]byte, error) {
	if c.key != "" {
		n.Target = rules.Secret(c.key)
	}
	return Encode(n)
}

// Encode is Client.Encode, usable without a client.
func Encode(n notify.Notification) ([]byte, error) {
	if n.Target == "" {
		return nil, fmt.Errorf("encode %s %s: %w", n.Action, n.DedupKey, ErrNoRoutingKey)
	}
	ev := event{RoutingKey: n.Target.Reveal(), Action: n.Action, DedupKey: n.DedupKey, Client: "keyalert"}
	switch n.Action {
	case notify.Acknowledge, notify.Resolve:
		return marshal(ev)
	case notify.Trigger:
	default:
		return nil, fmt.Errorf("encode %s: unknown action %q", n.DedupKey, n.Action)
	}
	labels := n.GroupLabels()
	ev.Links, ev.ClientURL = n.Links, n.AlertURL
	ev.Payload = &payload{
		Summary:   Truncate(n.Summary, MaxSummaryChars),
		Source:    Source(n),
		Severity:  string(n.Rule.Severity),
		Timestamp: n.At.UTC().Format(time.RFC3339Nano),
		Component: firstLabel(labels, ComponentLabels, n.Tag),
		Group:     firstLabel(labels, GroupLabels, ""),
		Class:     strings.Join(n.Keywords, ", "),
	}
	rule := map[string]any{"id": n.Rule.ID, "name": n.Rule.Name, "condition": n.Rule.Condition,
		"group_by": n.Rule.GroupBy, "filters": n.Rule.Filters}
	details := map[string]any{"rule": rule, "count": n.Count, "window": n.Window, "counts_per_minute": n.CountsPerMinute, "labels": labels}
	if n.Late && n.EventWindow != nil {
		// A late page is dated at the event time the condition held, so
		// the incident shows when it happened, not when the data came.
		ev.Payload.Timestamp = n.EventWindow.To.UTC().Format(time.RFC3339Nano)
		details["late"] = true
		details["event_window"] = map[string]string{"from": n.EventWindow.From.UTC().Format(time.RFC3339),
			"to": n.EventWindow.To.UTC().Format(time.RFC3339)}
	}
	if n.CountsPerMinute == nil {
		details["counts_per_minute"] = map[string]int64{}
	}
	if len(n.Samples) > 0 {
		details["sample_lines"] = n.Samples
	}
	ev.Payload.Details = details
	b, err := marshal(ev)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxEventBytes {
		ev.Payload.Details = map[string]any{"rule": rule, "note": "details dropped: event over 512 KB"}
		if b, err = marshal(ev); err != nil {
			return nil, err
		}
		if len(b) > MaxEventBytes {
			return nil, fmt.Errorf("encode trigger %s: over 512 KB even without details", n.DedupKey)
		}
	}
	return b, nil
}

// ComponentLabels are the labels a trigger's component is taken from, the
// first the group has; without any, the group's tag or the only tag seen.
var ComponentLabels = []string{"app", "app_kubernetes_io_name", "container", "container_name"}

// GroupLabels are the labels a trigger's group is taken from, the first
// the group has; without any the event has no group.
var GroupLabels = []string{"namespace", "namespace_name"}

// Source is a trigger's source: the group's host, else the only host of
// the series counted, else the group, else "keyalert".
func Source(n notify.Notification) string {
	for _, s := range []string{n.Host, n.SeriesHost, n.Group} {
		if s != "" {
			return s
		}
	}
	return "keyalert"
}

func firstLabel(labels map[string]string, names []string, otherwise string) string {
	for _, name := range names {
		if v, ok := labels[name]; ok && v != "" {
			return v
		}
	}
	return otherwise
}

func marshal(ev event) ([]byte, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode %s %s: %w", ev.Action, ev.DedupKey, err)
	}
	return b, nil
}

// Truncate cuts s to at most n characters (runes), ending with "…" when cut.
func Truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	runes := []rune(s)
	return string(runes[:n-1]) + "…"
}
