// Package notifyreceiver is a local stand-in for Slack incoming webhooks,
// Teams Workflows webhooks and keyalert's signed webhooks: it checks every
// payload against the documented format (Block Kit blocks and text; an
// Adaptive Card's schema version and body; the webhook schema and a valid,
// fresh signature), answers 200 or 400 with the problems, and records what
// it got. It can fail or hang the next requests. Also an Alertmanager
// webhook target (/alertmanager) that records Alertmanager's posts.
package notifyreceiver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/notify/msteams"
	"github.com/keyalert/keyalert/backend/notify/webhook"
)

// Message is one request received.
type Message struct {
	Kind     string // slack, msteams, webhook, alertmanager
	Body     []byte
	Header   http.Header
	Received time.Time
	Errors   []string // empty: valid and accepted
}

// Server is a running receiver.
type Server struct {
	URL    string // base, e.g. http://127.0.0.1:4242
	Secret []byte // the webhook secret it verifies with

	srv      *http.Server
	mu       sync.Mutex
	msgs     []Message
	failLeft int
	failCode int
	hangLeft int
	hangFor  time.Duration
	changed  chan struct{}
}

// Start serves a receiver on a free loopback port for the test's lifetime;
// secret is the webhook signing secret.
func Start(tb testing.TB, secret string) *Server {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("notifyreceiver: %v", err)
	}
	s := &Server{URL: "http://" + l.Addr().String(), Secret: []byte(secret), changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /slack/{token...}", s.handle("slack", CheckSlack))
	mux.HandleFunc("POST /msteams/{token...}", s.handle("msteams", CheckTeams))
	mux.HandleFunc("POST /webhook", s.handle("webhook", s.checkWebhook))
	mux.HandleFunc("POST /alertmanager", s.handle("alertmanager", checkAMWebhook))
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(l)
	tb.Cleanup(func() { s.srv.Close() })
	return s
}

// FailNext answers the next n requests with status.
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	s.failLeft, s.failCode = n, status
	s.mu.Unlock()
}

// HangNext holds the next n requests for d before answering.
func (s *Server) HangNext(n int, d time.Duration) {
	s.mu.Lock()
	s.hangLeft, s.hangFor = n, d
	s.mu.Unlock()
}

// Messages returns what was received, valid or not, oldest first.
func (s *Server) Messages(kind string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.msgs {
		if kind == "" || m.Kind == kind {
			out = append(out, m)
		}
	}
	return out
}

// WaitFor waits until cond holds for the messages of kind.
func (s *Server) WaitFor(ctx context.Context, kind string, cond func([]Message) bool) ([]Message, error) {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		msgs := s.Messages(kind)
		if cond(msgs) {
			return msgs, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return msgs, fmt.Errorf("waiting for %s messages (have %d): %w", kind, len(msgs), ctx.Err())
		}
	}
}

func (s *Server) handle(kind string, check func(*http.Request, []byte) []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		s.mu.Lock()
		fail, hang := 0, time.Duration(0)
		if s.failLeft > 0 {
			s.failLeft--
			fail = s.failCode
		} else if s.hangLeft > 0 {
			s.hangLeft--
			hang = s.hangFor
		}
		s.mu.Unlock()
		if fail != 0 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "programmed failure", fail)
			return
		}
		if hang > 0 {
			time.Sleep(hang)
		}
		m := Message{Kind: kind, Body: body, Header: r.Header.Clone(), Received: time.Now(), Errors: check(r, body)}
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		if len(m.Errors) > 0 {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]any{"errors": m.Errors})
			return
		}
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "ok")
	}
}

func strict(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

type slackText struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Emoji *bool  `json:"emoji,omitempty"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

// CheckSlack checks a Block Kit webhook message: a `text` fallback and at
// most 50 blocks of the kinds and sizes Slack accepts.
func CheckSlack(_ *http.Request, body []byte) []string {
	var m struct {
		Text   string       `json:"text"`
		Blocks []slackBlock `json:"blocks"`
	}
	if err := strict(body, &m); err != nil {
		return []string{"not a Slack message: " + err.Error()}
	}
	var errs []string
	add := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if m.Text == "" {
		add("text: required (the notification fallback)")
	}
	if len(m.Blocks) == 0 || len(m.Blocks) > 50 {
		add("blocks: %d, want 1 to 50", len(m.Blocks))
	}
	textOK := func(where string, t slackText, maxLen int, types ...string) {
		if !slices.Contains(types, t.Type) {
			add("%s.type %q: want %v", where, t.Type, types)
		}
		if t.Text == "" || len([]rune(t.Text)) > maxLen {
			add("%s.text: %d characters, want 1 to %d", where, len([]rune(t.Text)), maxLen)
		}
	}
	for i, b := range m.Blocks {
		w := fmt.Sprintf("blocks[%d]", i)
		switch b.Type {
		case "header":
			if b.Text == nil {
				add("%s: header without text", w)
			} else {
				textOK(w, *b.Text, 150, "plain_text")
			}
		case "section":
			if b.Text == nil && len(b.Fields) == 0 {
				add("%s: section without text or fields", w)
			}
			if b.Text != nil {
				textOK(w, *b.Text, 3000, "plain_text", "mrkdwn")
			}
			if len(b.Fields) > 10 {
				add("%s: %d fields, want at most 10", w, len(b.Fields))
			}
			for j, f := range b.Fields {
				textOK(fmt.Sprintf("%s.fields[%d]", w, j), f, 2000, "plain_text", "mrkdwn")
			}
		case "context":
			if len(b.Elements) == 0 || len(b.Elements) > 10 {
				add("%s: %d elements, want 1 to 10", w, len(b.Elements))
			}
			for j, e := range b.Elements {
				textOK(fmt.Sprintf("%s.elements[%d]", w, j), e, 3000, "plain_text", "mrkdwn")
			}
		case "divider":
		default:
			add("%s.type %q: not a block this receiver expects", w, b.Type)
		}
	}
	return errs
}

// CheckTeams checks a Workflows message with one Adaptive Card of schema
// version 1.4 and a non-empty body.
func CheckTeams(_ *http.Request, body []byte) []string {
	var m struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string `json:"contentType"`
			Content     struct {
				Type    string            `json:"type"`
				Schema  string            `json:"$schema"`
				Version string            `json:"version"`
				Body    []json.RawMessage `json:"body"`
				Actions []struct {
					Type  string `json:"type"`
					Title string `json:"title"`
					URL   string `json:"url"`
				} `json:"actions"`
			} `json:"content"`
		} `json:"attachments"`
	}
	if err := strict(body, &m); err != nil {
		return []string{"not a Teams message: " + err.Error()}
	}
	var errs []string
	add := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if m.Type != "message" {
		add("type %q: want message", m.Type)
	}
	if len(m.Attachments) != 1 {
		add("%d attachments, want 1", len(m.Attachments))
		return errs
	}
	a := m.Attachments[0]
	if a.ContentType != msteams.ContentType {
		add("contentType %q", a.ContentType)
	}
	c := a.Content
	if c.Type != "AdaptiveCard" || c.Schema != msteams.CardSchema || c.Version != "1.4" {
		add("card type/$schema/version %q/%q/%q: want AdaptiveCard, the schema URL, 1.4", c.Type, c.Schema, c.Version)
	}
	if len(c.Body) == 0 {
		add("card body: empty")
	}
	for i, raw := range c.Body {
		var el struct {
			Type  string `json:"type"`
			Text  string `json:"text"`
			Facts []struct {
				Title string `json:"title"`
				Value string `json:"value"`
			} `json:"facts"`
		}
		if err := json.Unmarshal(raw, &el); err != nil {
			add("body[%d]: %v", i, err)
			continue
		}
		switch el.Type {
		case "TextBlock":
			if el.Text == "" {
				add("body[%d]: TextBlock without text", i)
			}
		case "FactSet":
			if len(el.Facts) == 0 {
				add("body[%d]: FactSet without facts", i)
			}
		default:
			add("body[%d].type %q: not an element this receiver expects", i, el.Type)
		}
	}
	for i, ac := range c.Actions {
		if ac.Type != "Action.OpenUrl" || ac.URL == "" || ac.Title == "" {
			add("actions[%d]: want Action.OpenUrl with title and url", i)
		}
	}
	return errs
}

// checkWebhook verifies the signature (5 minutes tolerance) and the
// schema.
func (s *Server) checkWebhook(r *http.Request, body []byte) []string {
	if err := webhook.Verify(s.Secret, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature),
		body, time.Now(), 5*time.Minute); err != nil {
		return []string{"signature: " + err.Error()}
	}
	var p webhook.Payload
	if err := strict(body, &p); err != nil {
		return []string{"not a " + webhook.Schema + " payload: " + err.Error()}
	}
	var errs []string
	add := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if p.Schema != webhook.Schema {
		add("schema %q: want %q", p.Schema, webhook.Schema)
	}
	if !slices.Contains([]string{"trigger", "acknowledge", "resolve"}, p.Action) {
		add("action %q", p.Action)
	}
	if p.AlertID == "" || p.DedupKey == "" || p.Title == "" || p.Rule.ID == "" || p.Rule.Name == "" || p.At.IsZero() {
		add("alert_id, dedup_key, title, rule.id, rule.name and at are required")
	}
	if p.Labels == nil || p.Keywords == nil || p.Minutes == nil || p.Samples == nil || p.Links == nil {
		add("labels, keywords, counts_per_minute, samples and links must be present (maybe empty)")
	}
	return errs
}

// AMPost is Alertmanager's webhook payload (version 4).
type AMPost struct {
	Version  string `json:"version"`
	Status   string `json:"status"`
	Receiver string `json:"receiver"`
	Alerts   []struct {
		Status       string            `json:"status"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		StartsAt     time.Time         `json:"startsAt"`
		EndsAt       time.Time         `json:"endsAt"`
		GeneratorURL string            `json:"generatorURL"`
		Fingerprint  string            `json:"fingerprint"`
	} `json:"alerts"`
}

func checkAMWebhook(_ *http.Request, body []byte) []string {
	var p AMPost
	if err := json.Unmarshal(body, &p); err != nil {
		return []string{"not an Alertmanager webhook post: " + err.Error()}
	}
	if p.Version != "4" {
		return []string{fmt.Sprintf("version %q: want 4", p.Version)}
	}
	return nil
}
