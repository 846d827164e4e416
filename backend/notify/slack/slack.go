// Package slack is the Slack integration: an incoming webhook gets one
// Block Kit message per trigger, acknowledge and resolve (header, the
// rendered body, facts, counts per minute, sample lines, links) with a
// plain `text` fallback for notifications. Messages are paced per webhook
// (Slack allows about one per second) and 429's Retry-After is honoured.
package slack

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/notify/template"
)

// Type is the receiver type and the integration label.
const Type = "slack"

// Defaults of a zero Options.
const (
	DefaultTimeout = 10 * time.Second
	// DefaultMessagesPerMinute: Slack's incoming webhooks take about one
	// message per second.
	DefaultMessagesPerMinute = 60
)

// Block Kit limits.
const (
	maxHeader  = 150
	maxSection = 3000
)

// Options of every Slack receiver.
type Options struct {
	Timeout           time.Duration
	MessagesPerMinute int
}

// Client posts to one webhook.
type Client struct {
	*notify.ChatWebhook
	tpl *template.Set
}

// New returns a client for the webhook url with the receiver's templates.
func New(url string, tpl *template.Set, o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MessagesPerMinute <= 0 {
		o.MessagesPerMinute = DefaultMessagesPerMinute
	}
	return &Client{ChatWebhook: notify.NewChatWebhook(url, o.Timeout, o.MessagesPerMinute), tpl: tpl}
}

var (
	_ notify.Notifier  = (*Client)(nil)
	_ notify.Pacer     = (*Client)(nil)
	_ notify.Messenger = (*Client)(nil)
)

// Message is the webhook payload.
type Message struct {
	Text   string  `json:"text"`
	Blocks []Block `json:"blocks"`
}

// Block is a Block Kit block (header, section, context).
type Block struct {
	Type     string `json:"type"`
	Text     *Text  `json:"text,omitempty"`
	Fields   []Text `json:"fields,omitempty"`
	Elements []Text `json:"elements,omitempty"`
}

// Text is a Block Kit text object.
type Text struct {
	Type string `json:"type"` // plain_text or mrkdwn
	Text string `json:"text"`
}

// Encode renders n as a Block Kit message.
func (c *Client) Encode(n notify.Notification) ([]byte, error) {
	title, body, err := c.tpl.Render(n)
	if err != nil {
		return nil, fmt.Errorf("render %s of %s: %w", n.Action, n.DedupKey, err)
	}
	m := Message{Text: cut(title, maxSection)}
	m.Blocks = append(m.Blocks, Block{Type: "header", Text: &Text{"plain_text", cut(title, maxHeader)}})
	if body != "" {
		m.Blocks = append(m.Blocks, Block{Type: "section", Text: &Text{"mrkdwn", cut(body, maxSection)}})
	}
	if n.Action == notify.Trigger {
		fields := []Text{{"mrkdwn", "*Severity*\n" + string(n.Rule.Severity)}, {"mrkdwn", fmt.Sprintf("*Count*\n%d in %s", n.Count, n.Window)}}
		if n.Group != "" {
			fields = append(fields, Text{"mrkdwn", "*Group*\n" + n.Group})
		}
		if l := notify.LabelsText(n.GroupLabels()); l != "" {
			fields = append(fields, Text{"mrkdwn", "*Labels*\n" + cut(l, 1900)})
		}
		if len(n.Keywords) > 0 {
			fields = append(fields, Text{"mrkdwn", "*Keywords*\n" + cut(strings.Join(n.Keywords, ", "), 1900)})
		}
		m.Blocks = append(m.Blocks, Block{Type: "section", Fields: fields})
		if d := template.NewData(n); len(d.Minutes) > 0 {
			var b strings.Builder
			for _, mi := range d.Minutes {
				fmt.Fprintf(&b, "%s  %d\n", mi.Minute, mi.Count)
			}
			m.Blocks = append(m.Blocks, Block{Type: "section", Text: &Text{"mrkdwn", "*Counts per minute*\n```" + cut(b.String(), maxSection-40) + "```"}})
		}
		if len(n.Samples) > 0 {
			m.Blocks = append(m.Blocks, Block{Type: "section", Text: &Text{"mrkdwn", "*Sample lines*\n```" +
				cut(strings.ReplaceAll(strings.Join(n.Samples, "\n"), "```", "'''"), maxSection-40) + "```"}})
		}
	}
	var links []string
	for _, l := range n.Links {
		text := l.Text
		if text == "" {
			text = l.Href
		}
		links = append(links, fmt.Sprintf("<%s|%s>", l.Href, text))
	}
	if len(links) > 0 {
		m.Blocks = append(m.Blocks, Block{Type: "context", Elements: []Text{{"mrkdwn", cut(strings.Join(links, " · "), maxSection)}}})
	}
	return json.Marshal(m)
}

// cut shortens s to at most n characters.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
