// Package template renders a receiver's title and body from a notification
// with Go text/template: the fields are Data's, documented in
// backend/alerting.md § Receivers. Templates are bounded in size, checked
// on save by executing them on a sample alert, and their output is bounded
// too, so a template cannot make a message a receiver refuses.
package template

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/rules"
)

// Limits.
const (
	// DefaultMaxBytes bounds one template's source.
	DefaultMaxBytes = 4096
	// MaxTitleBytes and MaxBodyBytes bound the rendered output; longer
	// output is an error on save and cut at send time.
	MaxTitleBytes = 512
	MaxBodyBytes  = 16 << 10
)

// Defaults: the title is the summary, prefixed when acknowledged or
// resolved; the body names the rule, the count and the group.
const (
	DefaultTitle = `{{if eq .Action "resolve"}}Resolved: {{else if eq .Action "acknowledge"}}Acknowledged: {{end}}{{.Summary}}`
	DefaultBody  = `{{.Rule.Name}} ({{.Rule.Severity}}): {{.Rule.Condition}}{{if .Count}}, {{.Count}} in {{.Window}}{{end}}{{if .Group}} on {{.Group}}{{end}}.`
)

// Templates are a receiver's optional title and body templates; empty:
// the defaults.
type Templates struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

// Minute is one minute's count.
type Minute struct {
	Minute string `json:"minute"` // RFC 3339
	Count  int64  `json:"count"`
}

// Data is what a template sees. Every field is documented in
// backend/alerting.md § Receivers; add fields, never rename them.
type Data struct {
	Action   string // trigger, acknowledge, resolve
	AlertID  string
	DedupKey string
	Rule     RuleData
	Group    string            // host or tag of the alert, "" for the fleet
	Host     string            // the group's host, if known
	Tag      string            // the group's tag, or the only tag seen
	Labels   map[string]string // the group's labels (host, tag, ...)
	Keywords []string
	Summary  string // one line, e.g. "Exception seen 37 times in 5m on web-12 (rule java)"
	Count    int64
	Window   string
	Minutes  []Minute // counts per minute, oldest first
	Samples  []string
	AlertURL string
	Runbook  string
	At       time.Time
}

// RuleData is the rule part of Data.
type RuleData struct {
	ID, Name, Severity, Condition string
}

// NewData builds a template's data from a notification.
func NewData(n notify.Notification) Data {
	d := Data{Action: string(n.Action), AlertID: n.AlertID, DedupKey: n.DedupKey,
		Rule:  RuleData{ID: n.Rule.ID, Name: n.Rule.Name, Severity: string(n.Rule.Severity), Condition: n.Rule.Condition},
		Group: n.Group, Host: n.Host, Tag: n.Tag, Labels: n.GroupLabels(), Keywords: n.Keywords, Summary: n.Summary,
		Count: n.Count, Window: n.Window, Samples: n.Samples, AlertURL: n.AlertURL, Runbook: n.Rule.Runbook, At: n.At.UTC()}
	for _, m := range slices.Sorted(maps.Keys(n.CountsPerMinute)) {
		d.Minutes = append(d.Minutes, Minute{Minute: m, Count: n.CountsPerMinute[m]})
	}
	if d.Summary == "" {
		d.Summary = fmt.Sprintf("%s: %s", n.Rule.Name, strings.Join(n.Keywords, ", "))
	}
	return d
}

// Sample is the alert templates are checked against on save.
func Sample() notify.Notification {
	at := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	return notify.Notification{Action: notify.Trigger, AlertID: "a-sample", DedupKey: "keyalert-a-sample",
		Rule: notify.Rule{ID: "r-sample", Name: "java exceptions", Severity: rules.Error, Runbook: "https://runbooks.example/java",
			Condition: "count >= 5 over 5m"},
		Group: "web-12", Host: "web-12", Tag: "app.web", Keywords: []string{"Exception"},
		Summary: "Exception seen 37 times in 5m on web-12 (rule java exceptions)", Count: 37, Window: "5m",
		CountsPerMinute: map[string]int64{"2026-01-02T03:03:00Z": 30, "2026-01-02T03:04:00Z": 7},
		Samples:         []string{"java.lang.NullPointerException at Foo.bar(Foo.java:42)"},
		AlertURL:        "https://keyalert.example/api/v1/alerts/a-sample", At: at}
}

var funcs = texttemplate.FuncMap{
	"join":  strings.Join,
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
}

// Set is a receiver's compiled templates.
type Set struct {
	title, body *texttemplate.Template
}

// ErrTooLarge: a template or its output is over its bound.
var ErrTooLarge = errors.New("too large")

// Compile parses t (empty fields: the defaults), each at most maxBytes
// (0: DefaultMaxBytes), and executes both on Sample, so an error surfaces
// on save rather than at the first page. Errors name "title" or "body".
func Compile(t Templates, maxBytes int) (*Set, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	parse := func(name, src, def string) (*texttemplate.Template, error) {
		if src == "" {
			src = def
		} else if len(src) > maxBytes {
			return nil, fmt.Errorf("%s: %d bytes, over the limit of %d: %w", name, len(src), maxBytes, ErrTooLarge)
		}
		tpl, err := texttemplate.New(name).Option("missingkey=error").Funcs(funcs).Parse(src)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return tpl, nil
	}
	var s Set
	var err error
	if s.title, err = parse("title", t.Title, DefaultTitle); err != nil {
		return nil, err
	}
	if s.body, err = parse("body", t.Body, DefaultBody); err != nil {
		return nil, err
	}
	for _, a := range []notify.Action{notify.Trigger, notify.Acknowledge, notify.Resolve} {
		n := Sample()
		n.Action = a
		if _, _, err := s.render(n, true); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

// Render renders the title and body of n; output over its bound is cut.
func (s *Set) Render(n notify.Notification) (title, body string, err error) {
	return s.render(n, false)
}

func (s *Set) render(n notify.Notification, strict bool) (string, string, error) {
	d := NewData(n)
	exec := func(t *texttemplate.Template, limit int) (string, error) {
		w := &limited{max: limit}
		if err := t.Execute(w, d); err != nil && !(errors.Is(err, ErrTooLarge) && !strict) {
			return "", fmt.Errorf("%s: %w", t.Name(), err)
		}
		return strings.TrimSpace(strings.ToValidUTF8(w.buf.String(), "")), nil
	}
	title, err := exec(s.title, MaxTitleBytes)
	if err != nil {
		return "", "", err
	}
	body, err := exec(s.body, MaxBodyBytes)
	if err != nil {
		return "", "", err
	}
	return title, body, nil
}

// limited keeps the first max bytes and then fails the execution.
type limited struct {
	buf bytes.Buffer
	max int
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); len(p) > room {
		l.buf.Write(p[:max(room, 0)])
		return 0, fmt.Errorf("output over %d bytes: %w", l.max, ErrTooLarge)
	}
	return l.buf.Write(p)
}
