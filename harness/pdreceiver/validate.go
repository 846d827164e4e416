package pdreceiver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"time"
	"unicode/utf8"
)

// Limits of the Events API v2, from PagerDuty's documentation.
const (
	MaxEventBytes   = 512 * 1024
	RoutingKeyLen   = 32
	MaxSummaryChars = 1024
	MaxDedupChars   = 255
)

// Event is one accepted event as the receiver recorded it.
type Event struct {
	Received   time.Time       `json:"received"`
	RoutingKey string          `json:"routing_key"`
	Action     string          `json:"event_action"`
	DedupKey   string          `json:"dedup_key"`
	Payload    *Payload        `json:"payload,omitempty"`
	Links      []Link          `json:"links,omitempty"`
	Images     []Image         `json:"images,omitempty"`
	Client     string          `json:"client,omitempty"`
	ClientURL  string          `json:"client_url,omitempty"`
	Raw        json.RawMessage `json:"raw"`
}

// Payload is a trigger's payload.
type Payload struct {
	Summary       string          `json:"summary"`
	Source        string          `json:"source"`
	Severity      string          `json:"severity"`
	Timestamp     string          `json:"timestamp,omitempty"`
	Component     string          `json:"component,omitempty"`
	Group         string          `json:"group,omitempty"`
	Class         string          `json:"class,omitempty"`
	CustomDetails json.RawMessage `json:"custom_details,omitempty"`
}

// Link is one of an event's links.
type Link struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

// Image is one of an event's images.
type Image struct {
	Src  string `json:"src"`
	Href string `json:"href,omitempty"`
	Alt  string `json:"alt,omitempty"`
}

// Validate checks an event body against the Events API v2 schema and returns
// the decoded event, or every problem found. Unknown fields are problems too:
// the receiver exists to catch sender mistakes, and a misspelt optional field
// would otherwise be dropped silently.
func Validate(body []byte) (Event, []string) {
	var ev Event
	var errs []string
	add := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	if len(body) > MaxEventBytes {
		add("event is %d bytes, over the limit of %d", len(body), MaxEventBytes)
		return ev, errs
	}
	top, ok := object(body, "event", add)
	if !ok {
		return ev, errs
	}
	ev.Raw = append(json.RawMessage(nil), body...)
	for _, k := range unknown(top, "routing_key", "event_action", "dedup_key", "payload", "images", "links", "client", "client_url") {
		add("unknown field %q", k)
	}
	ev.RoutingKey, _ = str(top, "routing_key", true, add)
	if _, present := top["routing_key"]; present && utf8.RuneCountInString(ev.RoutingKey) != RoutingKeyLen {
		add("routing_key must be %d characters, got %d", RoutingKeyLen, utf8.RuneCountInString(ev.RoutingKey))
	}
	ev.Action, _ = str(top, "event_action", true, add)
	switch ev.Action {
	case "trigger", "acknowledge", "resolve":
	case "":
	default:
		add("event_action %q: want trigger, acknowledge or resolve", ev.Action)
	}
	var hasDedup bool
	ev.DedupKey, hasDedup = str(top, "dedup_key", false, add)
	if n := utf8.RuneCountInString(ev.DedupKey); n > MaxDedupChars {
		add("dedup_key is %d characters, over the limit of %d", n, MaxDedupChars)
	}
	if hasDedup && ev.DedupKey == "" {
		add("dedup_key must not be empty when present")
	}
	if (ev.Action == "acknowledge" || ev.Action == "resolve") && !hasDedup {
		add("dedup_key is required for %s", ev.Action)
	}
	ev.Client, _ = str(top, "client", false, add)
	ev.ClientURL, _ = str(top, "client_url", false, add)
	if ev.ClientURL != "" && !absURL(ev.ClientURL) {
		add("client_url %q is not an absolute URL", ev.ClientURL)
	}

	if raw, present := top["payload"]; present {
		ev.Payload = payload(raw, add)
	} else if ev.Action == "trigger" {
		add("payload is required for trigger")
	}
	if raw, present := top["links"]; present {
		each(raw, "links", add, func(i int, m map[string]json.RawMessage) {
			name := fmt.Sprintf("links[%d]", i)
			for _, k := range unknown(m, "href", "text") {
				add("%s: unknown field %q", name, k)
			}
			var l Link
			l.Href, _ = str(m, "href", true, prefixed(name, add))
			l.Text, _ = str(m, "text", false, prefixed(name, add))
			if l.Href != "" && !absURL(l.Href) {
				add("%s.href %q is not an absolute URL", name, l.Href)
			}
			ev.Links = append(ev.Links, l)
		})
	}
	if raw, present := top["images"]; present {
		each(raw, "images", add, func(i int, m map[string]json.RawMessage) {
			name := fmt.Sprintf("images[%d]", i)
			for _, k := range unknown(m, "src", "href", "alt") {
				add("%s: unknown field %q", name, k)
			}
			var im Image
			im.Src, _ = str(m, "src", true, prefixed(name, add))
			im.Href, _ = str(m, "href", false, prefixed(name, add))
			im.Alt, _ = str(m, "alt", false, prefixed(name, add))
			ev.Images = append(ev.Images, im)
		})
	}
	return ev, errs
}

func payload(raw json.RawMessage, add func(string, ...any)) *Payload {
	m, ok := object(raw, "payload", add)
	if !ok {
		return nil
	}
	padd := prefixed("payload", add)
	for _, k := range unknown(m, "summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details") {
		add("payload: unknown field %q", k)
	}
	var p Payload
	p.Summary, _ = str(m, "summary", true, padd)
	if n := utf8.RuneCountInString(p.Summary); n > MaxSummaryChars {
		add("payload.summary is %d characters, over the limit of %d", n, MaxSummaryChars)
	}
	p.Source, _ = str(m, "source", true, padd)
	p.Severity, _ = str(m, "severity", true, padd)
	switch p.Severity {
	case "critical", "error", "warning", "info", "":
	default:
		add("payload.severity %q: want critical, error, warning or info", p.Severity)
	}
	p.Timestamp, _ = str(m, "timestamp", false, padd)
	if p.Timestamp != "" && !iso8601(p.Timestamp) {
		add("payload.timestamp %q is not an ISO 8601 date-time", p.Timestamp)
	}
	p.Component, _ = str(m, "component", false, padd)
	p.Group, _ = str(m, "group", false, padd)
	p.Class, _ = str(m, "class", false, padd)
	if cd, present := m["custom_details"]; present {
		if t := bytes.TrimSpace(cd); len(t) == 0 || t[0] != '{' {
			add("payload.custom_details must be an object")
		} else {
			p.CustomDetails = append(json.RawMessage(nil), t...)
		}
	}
	return &p
}

// iso8601 accepts the extended date-time forms of ISO 8601 with a zone
// designator that PagerDuty documents (e.g. 2015-07-17T08:42:58.315+0000).
func iso8601(s string) bool {
	for _, layout := range []string{
		time.RFC3339Nano,
		"2006-01-02T15:04:05.999999999Z0700",
		"2006-01-02T15:04:05.999999999Z07",
	} {
		if _, err := time.Parse(layout, s); err == nil {
			return true
		}
	}
	return false
}

func object(raw []byte, name string, add func(string, ...any)) (map[string]json.RawMessage, bool) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] != '{' {
		add("%s must be a JSON object", name)
		return nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(t, &m); err != nil {
		add("%s is not valid JSON: %v", name, err)
		return nil, false
	}
	return m, true
}

// str reads a string field; a wrong type or a missing required field is a
// problem. It reports whether the field was present.
func str(m map[string]json.RawMessage, key string, required bool, add func(string, ...any)) (string, bool) {
	raw, ok := m[key]
	if !ok {
		if required {
			add("%s is required", key)
		}
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		add("%s must be a string", key)
		return "", true
	}
	if required && s == "" {
		add("%s must not be empty", key)
	}
	return s, true
}

func each(raw json.RawMessage, name string, add func(string, ...any), fn func(int, map[string]json.RawMessage)) {
	var arr []json.RawMessage
	if err := json.Unmarshal(raw, &arr); err != nil {
		add("%s must be an array", name)
		return
	}
	for i, el := range arr {
		if m, ok := object(el, fmt.Sprintf("%s[%d]", name, i), add); ok {
			fn(i, m)
		}
	}
}

func unknown(m map[string]json.RawMessage, known ...string) []string {
	var out []string
next:
	for k := range m {
		for _, kk := range known {
			if k == kk {
				continue next
			}
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func prefixed(prefix string, add func(string, ...any)) func(string, ...any) {
	return func(format string, args ...any) { add(prefix+"."+format, args...) }
}

func absURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && u.Host != ""
}
