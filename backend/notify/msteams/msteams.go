// Package msteams is the Microsoft Teams integration: a Workflows webhook
// (Office 365 connectors are retired) gets a message with one Adaptive Card
// (schema 1.4) per trigger, acknowledge and resolve: title, body, facts,
// counts per minute, sample lines and links as Action.OpenUrl.
package msteams

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/notify/template"
)

// Type is the receiver type and the integration label.
const Type = "msteams"

// Defaults of a zero Options.
const (
	DefaultTimeout = 10 * time.Second
	// DefaultMessagesPerMinute paces posts per webhook like Slack's: Teams
	// throttles bursts to one channel.
	DefaultMessagesPerMinute = 60
	// CardVersion is the Adaptive Card schema version sent.
	CardVersion = "1.4"
	// CardSchema is the Adaptive Card schema URL.
	CardSchema = "http://adaptivecards.io/schemas/adaptive-card.json"
	// ContentType is the attachment's content type.
	ContentType = "application/vnd.microsoft.card.adaptive"
)

// Options of every Teams receiver.
type Options struct {
	Timeout           time.Duration
	MessagesPerMinute int
}

// Client posts to one Workflows webhook.
type Client struct {
	*notify.ChatWebhook
	tpl *template.Set
}

// New returns a client for the webhook url.
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

// Message is the Workflows payload.
type Message struct {
	Type        string       `json:"type"` // "message"
	Attachments []Attachment `json:"attachments"`
}

// Attachment holds the card.
type Attachment struct {
	ContentType string `json:"contentType"`
	Content     Card   `json:"content"`
}

// Card is an Adaptive Card.
type Card struct {
	Type    string   `json:"type"` // "AdaptiveCard"
	Schema  string   `json:"$schema"`
	Version string   `json:"version"`
	Body    []any    `json:"body"`
	Actions []Action `json:"actions,omitempty"`
}

// TextBlock is an Adaptive Card text block.
type TextBlock struct {
	Type     string `json:"type"` // "TextBlock"
	Text     string `json:"text"`
	Wrap     bool   `json:"wrap"`
	Size     string `json:"size,omitempty"`
	Weight   string `json:"weight,omitempty"`
	FontType string `json:"fontType,omitempty"`
	Color    string `json:"color,omitempty"`
}

// FactSet is an Adaptive Card fact set.
type FactSet struct {
	Type  string `json:"type"` // "FactSet"
	Facts []Fact `json:"facts"`
}

// Fact is one title/value pair.
type Fact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

// Action opens a link.
type Action struct {
	Type  string `json:"type"` // "Action.OpenUrl"
	Title string `json:"title"`
	URL   string `json:"url"`
}

// Encode renders n as a message with one Adaptive Card.
func (c *Client) Encode(n notify.Notification) ([]byte, error) {
	title, body, err := c.tpl.Render(n)
	if err != nil {
		return nil, fmt.Errorf("render %s of %s: %w", n.Action, n.DedupKey, err)
	}
	color := "Attention"
	switch n.Action {
	case notify.Resolve:
		color = "Good"
	case notify.Acknowledge:
		color = "Warning"
	}
	card := Card{Type: "AdaptiveCard", Schema: CardSchema, Version: CardVersion}
	card.Body = append(card.Body, TextBlock{Type: "TextBlock", Text: title, Wrap: true, Size: "Large", Weight: "Bolder", Color: color})
	if body != "" {
		card.Body = append(card.Body, TextBlock{Type: "TextBlock", Text: body, Wrap: true})
	}
	if n.Action == notify.Trigger {
		facts := []Fact{{"Severity", string(n.Rule.Severity)}, {"Count", fmt.Sprintf("%d in %s", n.Count, n.Window)}}
		if n.Group != "" {
			facts = append(facts, Fact{"Group", n.Group})
		}
		if l := notify.LabelsText(n.GroupLabels()); l != "" {
			facts = append(facts, Fact{"Labels", l})
		}
		if len(n.Keywords) > 0 {
			facts = append(facts, Fact{"Keywords", strings.Join(n.Keywords, ", ")})
		}
		card.Body = append(card.Body, FactSet{Type: "FactSet", Facts: facts})
		if d := template.NewData(n); len(d.Minutes) > 0 {
			var b strings.Builder
			for _, m := range d.Minutes {
				fmt.Fprintf(&b, "%s  %d\n\n", m.Minute, m.Count)
			}
			card.Body = append(card.Body, TextBlock{Type: "TextBlock", Text: "Counts per minute", Wrap: true, Weight: "Bolder"},
				TextBlock{Type: "TextBlock", Text: b.String(), Wrap: true, FontType: "Monospace"})
		}
		if len(n.Samples) > 0 {
			card.Body = append(card.Body, TextBlock{Type: "TextBlock", Text: "Sample lines", Wrap: true, Weight: "Bolder"},
				TextBlock{Type: "TextBlock", Text: strings.Join(n.Samples, "\n\n"), Wrap: true, FontType: "Monospace"})
		}
	}
	for _, l := range n.Links {
		t := l.Text
		if t == "" {
			t = "Open"
		}
		card.Actions = append(card.Actions, Action{Type: "Action.OpenUrl", Title: t, URL: l.Href})
	}
	return json.Marshal(Message{Type: "message", Attachments: []Attachment{{ContentType: ContentType, Content: card}}})
}
