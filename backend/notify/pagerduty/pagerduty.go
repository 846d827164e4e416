// Package pagerduty builds PagerDuty Events API v2 events and sends them.
//
// The event types are go-pagerduty's own (V2Event, V2Payload). Its client is
// not used for sending: v1.8's Client.ManageEventWithContext appends
// "/v2/enqueue" to a base URL set with WithV2EventsAPIEndpoint, so the full
// endpoint (KEYALERT_PAGERDUTY_URL) cannot be configured as given, and the
// package-level ManageEventWithContext always posts to events.pagerduty.com.
// The small client here posts to the configured URL and classifies the answer
// for the outbox: 202 delivered, 400 rejected for good, 429/5xx/network retried.
package pagerduty

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	pd "github.com/PagerDuty/go-pagerduty"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/rules"
)

// DefaultURL is PagerDuty's Events API v2 endpoint.
const DefaultURL = "https://events.pagerduty.com/v2/enqueue"

// Limits of the Events API v2.
const (
	MaxSummaryChars = 1024
	MaxEventBytes   = 512 * 1024
)

// Settings of the PagerDuty client.
type Settings struct {
	// URL is the full enqueue endpoint (KEYALERT_PAGERDUTY_URL).
	URL string
	// Timeout bounds one request (KEYALERT_PAGERDUTY_TIMEOUT).
	Timeout time.Duration
	// DefaultRoutingKey is used by rules without their own
	// (KEYALERT_PAGERDUTY_ROUTING_KEY); empty means every rule needs one.
	DefaultRoutingKey rules.Secret
}

// DefaultSettings returns the defaults.
func DefaultSettings() Settings { return Settings{URL: DefaultURL, Timeout: 10 * time.Second} }

// Validate names the bad setting; it never echoes the routing key.
func (s Settings) Validate() error {
	u, err := url.Parse(s.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("KEYALERT_PAGERDUTY_URL=%q: want an absolute http or https URL", s.URL)
	}
	if s.Timeout < 100*time.Millisecond || s.Timeout > 2*time.Minute {
		return fmt.Errorf("KEYALERT_PAGERDUTY_TIMEOUT=%s: want between 100ms and 2m", s.Timeout)
	}
	if k := s.DefaultRoutingKey.Reveal(); k != "" {
		if !rules.ValidRoutingKey(k) {
			return fmt.Errorf("KEYALERT_PAGERDUTY_ROUTING_KEY: want %d letters or digits", rules.RoutingKeyLen)
		}
	}
	return nil
}

// Client posts events to the configured endpoint.
type Client struct {
	url string
	hc  *http.Client
}

// NewClient returns a client; hc may be nil for one with the settings'
// timeout.
func NewClient(set Settings, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: set.Timeout}
	}
	return &Client{url: set.URL, hc: hc}
}

var _ outbox.Sender = (*Client)(nil)

// Send posts one encoded event and classifies the answer. The body is never
// logged or echoed: it carries the routing key.
func (c *Client) Send(ctx context.Context, body []byte) outbox.Delivery {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return outbox.Delivery{Outcome: outbox.Reject, Reason: fmt.Sprintf("build request: %v", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "keyalert")
	resp, err := c.hc.Do(req)
	if err != nil {
		return outbox.Delivery{Outcome: outbox.Retry, Reason: fmt.Sprintf("post event: %v", err)}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	d := outbox.Delivery{Status: resp.StatusCode}
	switch {
	case resp.StatusCode == http.StatusAccepted:
		d.Outcome = outbox.Delivered
		return d
	case resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusRequestEntityTooLarge,
		resp.StatusCode == http.StatusUnprocessableEntity:
		// The same event will never be accepted: do not retry.
		d.Outcome = outbox.Reject
	default:
		// 429, 5xx and anything unexpected (a proxy's 404 or 403 is fixable
		// configuration): keep the event and retry with backoff.
		d.Outcome = outbox.Retry
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
	var r pd.V2EventResponse
	if json.Unmarshal(raw, &r) == nil && (r.Message != "" || len(r.Errors) > 0) {
		s := r.Message
		if len(r.Errors) > 0 {
			s += ": " + strings.Join(r.Errors, "; ")
		}
		return Truncate(s, 1000)
	}
	return Truncate(strings.TrimSpace(string(raw)), 200)
}

// Link is a link shown with an incident.
type Link struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

// Trigger is what an alert tells PagerDuty when it fires.
type Trigger struct {
	RoutingKey rules.Secret
	DedupKey   string
	Summary    string
	Source     string
	Severity   string
	Timestamp  time.Time
	Component  string
	Group      string
	Class      string
	Details    map[string]any
	Links      []Link
	ClientURL  string
}

// Encode renders the trigger event. The summary is cut to PagerDuty's 1024
// characters; if the event would exceed 512 KB, custom details are dropped
// down to the rule alone.
func (t Trigger) Encode() ([]byte, error) {
	links := make([]any, len(t.Links))
	for i, l := range t.Links {
		links[i] = l
	}
	ev := pd.V2Event{
		RoutingKey: t.RoutingKey.Reveal(),
		Action:     "trigger",
		DedupKey:   t.DedupKey,
		Links:      links,
		Client:     "keyalert",
		ClientURL:  t.ClientURL,
		Payload: &pd.V2Payload{
			Summary:   Truncate(t.Summary, MaxSummaryChars),
			Source:    t.Source,
			Severity:  t.Severity,
			Timestamp: t.Timestamp.UTC().Format(time.RFC3339Nano),
			Component: t.Component,
			Group:     t.Group,
			Class:     t.Class,
		},
	}
	if len(t.Details) > 0 {
		ev.Payload.Details = t.Details
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode trigger %s: %w", t.DedupKey, err)
	}
	if len(b) > MaxEventBytes {
		ev.Payload.Details = map[string]any{"rule": t.Details["rule"], "note": "details dropped: event over 512 KB"}
		if b, err = json.Marshal(ev); err != nil {
			return nil, fmt.Errorf("encode trigger %s: %w", t.DedupKey, err)
		}
		if len(b) > MaxEventBytes {
			return nil, errors.New("trigger over 512 KB even without details")
		}
	}
	return b, nil
}

// Acknowledge renders an acknowledge event for dedupKey.
func Acknowledge(routingKey rules.Secret, dedupKey string) ([]byte, error) {
	return action("acknowledge", routingKey, dedupKey)
}

// Resolve renders a resolve event for dedupKey.
func Resolve(routingKey rules.Secret, dedupKey string) ([]byte, error) {
	return action("resolve", routingKey, dedupKey)
}

func action(act string, routingKey rules.Secret, dedupKey string) ([]byte, error) {
	b, err := json.Marshal(pd.V2Event{RoutingKey: routingKey.Reveal(), Action: act, DedupKey: dedupKey, Client: "keyalert"})
	if err != nil {
		return nil, fmt.Errorf("encode %s %s: %w", act, dedupKey, err)
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
