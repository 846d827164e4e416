// Package client talks to keyalertd's REST API (/api/v1) for the keyalert
// command: one method per call, answers as raw JSON (what -o json prints)
// or decoded into the caller's type, and the API's error body as an *Error.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds one call when Client.HTTP is nil.
const DefaultTimeout = 10 * time.Second

// MaxAnswerBytes bounds an answer read into memory (a list of 10,000 rules
// is a few MB).
const MaxAnswerBytes = 64 << 20

// Client calls one keyalertd.
type Client struct {
	Base  string // "http://127.0.0.1:8080", no /api/v1
	Token string // bearer token; empty: none sent
	HTTP  *http.Client
}

// New returns a client of base with token and DefaultTimeout.
func New(base, token string) *Client {
	return &Client{Base: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Timeout: DefaultTimeout}}
}

// FieldError is one bad input the API named.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is a 4xx or 5xx answer, in the API's one error shape.
type Error struct {
	Method, Path string
	Status       int
	Message      string       `json:"error"`
	Fields       []FieldError `json:"fields,omitempty"`
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, msg)
}

// IsStatus reports whether err is an API answer of status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// Do calls method path (under the base URL) with body (nil: none; []byte or
// json.RawMessage: sent as is; else JSON-encoded) and returns the answer's
// body. A 4xx or 5xx answer is an *Error.
func (c *Client) Do(ctx context.Context, method, path string, body any) (json.RawMessage, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case json.RawMessage:
		r = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, r)
	if err != nil {
		return nil, err
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if len(raw) > MaxAnswerBytes {
		return nil, fmt.Errorf("%s %s: the answer is over %d MB, more than this client reads", method, path, MaxAnswerBytes>>20)
	}
	if resp.StatusCode >= 400 {
		e := &Error{Method: method, Path: path, Status: resp.StatusCode}
		if json.Unmarshal(raw, e) != nil {
			e.Message = strings.TrimSpace(string(raw))
		}
		return nil, e
	}
	return raw, nil
}

// Get calls GET path and decodes the answer into v (nil: not decoded); it
// returns the raw answer too.
func (c *Client) Get(ctx context.Context, path string, v any) (json.RawMessage, error) {
	raw, err := c.Do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			return raw, fmt.Errorf("GET %s: decode the answer: %w", path, err)
		}
	}
	return raw, nil
}

// Rules lists the rules, as the API shows them (routing keys redacted).
func (c *Client) Rules(ctx context.Context) ([]json.RawMessage, error) {
	var res struct {
		Rules []json.RawMessage `json:"rules"`
	}
	_, err := c.Get(ctx, "/api/v1/rules", &res)
	return res.Rules, err
}

// CreateRule posts a rule document and returns the stored rule.
func (c *Client) CreateRule(ctx context.Context, doc []byte) (json.RawMessage, error) {
	return c.Do(ctx, http.MethodPost, "/api/v1/rules", doc)
}

// UpdateRule replaces rule id with doc.
func (c *Client) UpdateRule(ctx context.Context, id string, doc []byte) (json.RawMessage, error) {
	return c.Do(ctx, http.MethodPut, "/api/v1/rules/"+url.PathEscape(id), doc)
}

// DeleteRule deletes rule id.
func (c *Client) DeleteRule(ctx context.Context, id string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/api/v1/rules/"+url.PathEscape(id), nil)
	return err
}

// Alerts lists alerts, of one state unless state is empty.
func (c *Client) Alerts(ctx context.Context, state string) (json.RawMessage, error) {
	path := "/api/v1/alerts"
	if state != "" {
		path += "?state=" + url.QueryEscape(state)
	}
	return c.Get(ctx, path, nil)
}

// Ack acknowledges alert id; Resolve resolves it. by may be empty.
func (c *Client) Ack(ctx context.Context, id, by string) (json.RawMessage, error) {
	return c.transition(ctx, id, "ack", by)
}

// Resolve resolves alert id.
func (c *Client) Resolve(ctx context.Context, id, by string) (json.RawMessage, error) {
	return c.transition(ctx, id, "resolve", by)
}

func (c *Client) transition(ctx context.Context, id, what, by string) (json.RawMessage, error) {
	var body any
	if by != "" {
		body = map[string]string{"by": by}
	}
	return c.Do(ctx, http.MethodPost, "/api/v1/alerts/"+url.PathEscape(id)+"/"+what, body)
}

// Silences lists silences, only the active ones when active.
func (c *Client) Silences(ctx context.Context, active bool) (json.RawMessage, error) {
	path := "/api/v1/silences"
	if active {
		path += "?active=true"
	}
	return c.Get(ctx, path, nil)
}

// CreateSilence posts a silence.
func (c *Client) CreateSilence(ctx context.Context, s any) (json.RawMessage, error) {
	return c.Do(ctx, http.MethodPost, "/api/v1/silences", s)
}

// Counts reads GET /api/v1/counts with q (keyword, from, to, …).
func (c *Client) Counts(ctx context.Context, q url.Values) (json.RawMessage, error) {
	return c.Get(ctx, "/api/v1/counts?"+q.Encode(), nil)
}

// Top reads GET /api/v1/counts/top with q.
func (c *Client) Top(ctx context.Context, q url.Values) (json.RawMessage, error) {
	return c.Get(ctx, "/api/v1/counts/top?"+q.Encode(), nil)
}
