// Package webhook is the generic signed webhook: a JSON body of a
// documented, versioned schema (Payload, "schema":"keyalert.notification/v1")
// posted with X-Keyalert-Timestamp (Unix seconds, set per attempt) and
// X-Keyalert-Signature: "v1=" + hex HMAC-SHA256 of "<timestamp>.<body>"
// under the receiver's secret. Verify is what a receiver runs: it checks
// the signature and rejects timestamps outside a tolerance (replays).
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/notify/template"
)

// Type is the receiver type and the integration label.
const Type = "webhook"

// Schema is the payload's schema name and version.
const Schema = "keyalert.notification/v1"

// Headers.
const (
	HeaderTimestamp = "X-Keyalert-Timestamp"
	HeaderSignature = "X-Keyalert-Signature"
)

// DefaultTimeout bounds one request.
const DefaultTimeout = 10 * time.Second

// Options of every webhook receiver.
type Options struct {
	Timeout time.Duration
	// Now is the clock of the timestamp (nil: time.Now).
	Now func() time.Time
}

// Payload is the body, schema keyalert.notification/v1. Fields are only
// added within a version.
type Payload struct {
	Schema   string            `json:"schema"`
	Action   string            `json:"action"`
	AlertID  string            `json:"alert_id"`
	DedupKey string            `json:"dedup_key"`
	Title    string            `json:"title"`
	Body     string            `json:"body"`
	Summary  string            `json:"summary"`
	Rule     RulePayload       `json:"rule"`
	Group    string            `json:"group"`
	Labels   map[string]string `json:"labels"`
	Keywords []string          `json:"keywords"`
	Count    int64             `json:"count"`
	Window   string            `json:"window"`
	Minutes  []template.Minute `json:"counts_per_minute"`
	Samples  []string          `json:"samples"`
	Links    []notify.Link     `json:"links"`
	AlertURL string            `json:"alert_url"`
	At       time.Time         `json:"at"`
}

// RulePayload is the rule part of Payload.
type RulePayload struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Severity  string `json:"severity"`
	Condition string `json:"condition"`
	Runbook   string `json:"runbook_url"`
}

// Client posts to one webhook.
type Client struct {
	url    string
	secret []byte
	tpl    *template.Set
	hc     *http.Client
	now    func() time.Time
}

// New returns a client for url signing with secret.
func New(url, secret string, tpl *template.Set, o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Client{url: url, secret: []byte(secret), tpl: tpl, hc: &http.Client{Timeout: o.Timeout}, now: o.Now}
}

var _ notify.Notifier = (*Client)(nil)

// Encode renders n as a Payload.
func (c *Client) Encode(n notify.Notification) ([]byte, error) {
	title, body, err := c.tpl.Render(n)
	if err != nil {
		return nil, fmt.Errorf("render %s of %s: %w", n.Action, n.DedupKey, err)
	}
	d := template.NewData(n)
	p := Payload{Schema: Schema, Action: string(n.Action), AlertID: n.AlertID, DedupKey: n.DedupKey, Title: title, Body: body,
		Summary: d.Summary, Rule: RulePayload{ID: n.Rule.ID, Name: n.Rule.Name, Severity: string(n.Rule.Severity),
			Condition: n.Rule.Condition, Runbook: n.Rule.Runbook},
		Group: n.Group, Labels: d.Labels, Keywords: n.Keywords, Count: n.Count, Window: n.Window, Minutes: d.Minutes,
		Samples: n.Samples, Links: n.Links, AlertURL: n.AlertURL, At: n.At.UTC()}
	if p.Keywords == nil {
		p.Keywords = []string{}
	}
	if p.Minutes == nil {
		p.Minutes = []template.Minute{}
	}
	if p.Samples == nil {
		p.Samples = []string{}
	}
	if p.Links == nil {
		p.Links = []notify.Link{}
	}
	return json.Marshal(p)
}

// Sign returns the signature header value of body at ts.
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Send signs body with the current time and posts it.
func (c *Client) Send(ctx context.Context, body []byte) notify.Delivery {
	ts := strconv.FormatInt(c.now().Unix(), 10)
	h := http.Header{}
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, Sign(c.secret, ts, body))
	return notify.Post(ctx, c.hc, c.url, h, body)
}

// Errors of Verify.
var (
	ErrSignature = errors.New("bad signature")
	ErrStale     = errors.New("timestamp outside the tolerance")
)

// Verify checks a request's timestamp and signature headers against body:
// the signature must match and the timestamp be within tolerance of now,
// so a captured request cannot be replayed later.
func Verify(secret []byte, ts, sig string, body []byte, now time.Time, tolerance time.Duration) error {
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%s %q: %w", HeaderTimestamp, ts, ErrStale)
	}
	if d := now.Sub(time.Unix(secs, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("timestamp %d is %v from now: %w", secs, d, ErrStale)
	}
	want := Sign(secret, ts, body)
	if !strings.HasPrefix(sig, "v1=") || !hmac.Equal([]byte(sig), []byte(want)) {
		return ErrSignature
	}
	return nil
}
