// Package alertmanager is the Prometheus Alertmanager integration: each
// alert is posted to POST <url>/api/v2/alerts as one Alertmanager alert.
// Labels identify it: alertname (the rule name), severity, keyword, rule_id
// and the group's labels (notify.Notification.GroupLabels: host and/or tag
// today, more later without a change here). Annotations carry the rendered
// summary and description, runbook_url, the sample lines and the alert id.
// A firing alert is re-sent every Refresh (notify.Refresher), well within
// Alertmanager's resolve_timeout (5m by default); a resolve sets endsAt; an
// acknowledge has no Alertmanager equivalent and is skipped.
package alertmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/notify/template"
)

// Type is the receiver type and the integration label.
const Type = "alertmanager"

// Defaults of a zero Options.
const (
	DefaultTimeout = 10 * time.Second
	// DefaultRefresh re-sends firing alerts: a fifth of Alertmanager's
	// default resolve_timeout.
	DefaultRefresh = time.Minute
)

// Options of every Alertmanager receiver.
type Options struct {
	Timeout time.Duration
	Refresh time.Duration
}

// Alert is one alert of the v2 API.
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       *time.Time        `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Client posts to one Alertmanager.
type Client struct {
	url     string
	tpl     *template.Set
	hc      *http.Client
	refresh time.Duration
}

// New returns a client for the Alertmanager at base (its root URL).
func New(base string, tpl *template.Set, o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	return &Client{url: strings.TrimRight(base, "/") + "/api/v2/alerts", tpl: tpl,
		hc: &http.Client{Timeout: o.Timeout}, refresh: o.Refresh}
}

var (
	_ notify.Notifier  = (*Client)(nil)
	_ notify.Refresher = (*Client)(nil)
)

// RefreshEvery implements notify.Refresher.
func (c *Client) RefreshEvery() time.Duration { return c.refresh }

// Send posts one encoded alert list.
func (c *Client) Send(ctx context.Context, body []byte) notify.Delivery {
	return notify.Post(ctx, c.hc, c.url, nil, body)
}

// Labels are the labels of n's alert.
func Labels(n notify.Notification) map[string]string {
	l := n.GroupLabels()
	kws := append([]string(nil), n.Keywords...)
	sort.Strings(kws)
	l["alertname"] = n.Rule.Name
	l["rule_id"] = n.Rule.ID
	l["severity"] = string(n.Rule.Severity)
	l["keyword"] = strings.Join(kws, ",")
	for k, v := range l {
		if v == "" {
			delete(l, k)
		}
	}
	return l
}

// Encode renders n as a one-alert list; an acknowledge is skipped.
func (c *Client) Encode(n notify.Notification) ([]byte, error) {
	if n.Action == notify.Acknowledge {
		return nil, notify.ErrSkip
	}
	title, body, err := c.tpl.Render(n)
	if err != nil {
		return nil, fmt.Errorf("render %s of %s: %w", n.Action, n.DedupKey, err)
	}
	a := Alert{Labels: Labels(n), Annotations: map[string]string{"summary": title, "description": body, "alert_id": n.AlertID},
		StartsAt: n.At.UTC(), GeneratorURL: n.AlertURL}
	if n.Rule.Runbook != "" {
		a.Annotations["runbook_url"] = n.Rule.Runbook
	}
	if len(n.Samples) > 0 {
		a.Annotations["sample_lines"] = strings.Join(n.Samples, "\n")
	}
	if n.Action == notify.Resolve {
		end := n.At.UTC()
		// The resolve's merged details carry the resolve's time; Alertmanager
		// keeps the earlier startsAt of the alert it already has.
		a.StartsAt = end.Add(-time.Second)
		a.EndsAt = &end
	}
	return json.Marshal([]Alert{a})
}
