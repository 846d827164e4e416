// Package receiver is the named receivers of notifications: their model
// and validation, their store in Redis (under the {alerts} hash tag, like
// the outbox, capped by Options.MaxReceivers) and Notifiers, which builds
// each receiver's notifier at send time for the outbox. Secrets (routing
// keys, webhook URLs, HMAC secrets) marshal and log redacted.
package receiver

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/keyalert/keyalert/backend/notify/alertmanager"
	"github.com/keyalert/keyalert/backend/notify/msteams"
	"github.com/keyalert/keyalert/backend/notify/pagerduty"
	"github.com/keyalert/keyalert/backend/notify/slack"
	"github.com/keyalert/keyalert/backend/notify/template"
	"github.com/keyalert/keyalert/backend/notify/webhook"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/validate"
)

// Types of receivers.
var Types = []string{pagerduty.Name, alertmanager.Type, slack.Type, msteams.Type, webhook.Type}

// Receiver is one named receiver.
type Receiver struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// RoutingKey: pagerduty.
	RoutingKey rules.Secret `json:"routing_key,omitempty"`
	// URL: alertmanager (its root URL, shown with any password redacted),
	// slack, msteams and webhook (secret: the URL is the credential).
	URL rules.Secret `json:"url,omitempty"`
	// Secret: webhook's HMAC key.
	Secret rules.Secret `json:"secret,omitempty"`
	// Severities, if any, are the only severities the receiver takes.
	Severities []rules.Severity    `json:"severities,omitempty"`
	Template   *template.Templates `json:"template,omitempty"`
	CreatedAt  time.Time           `json:"created_at"`
	UpdatedAt  time.Time           `json:"updated_at"`
}

// MarshalJSON is the API's view: secrets redacted, an Alertmanager URL in
// full but for its password.
func (r Receiver) MarshalJSON() ([]byte, error) {
	type plain Receiver
	v := struct {
		plain
		URL string `json:"url,omitempty"`
	}{plain: plain(r), URL: r.URL.Redacted()}
	if r.Type == alertmanager.Type {
		if u, err := url.Parse(r.URL.Reveal()); err == nil {
			v.URL = u.Redacted()
		}
	}
	return json.Marshal(v)
}

// stored is the Redis form, secrets in full.
type stored struct {
	Name       string              `json:"name"`
	Type       string              `json:"type"`
	RoutingKey string              `json:"routing_key,omitempty"`
	URL        string              `json:"url,omitempty"`
	Secret     string              `json:"secret,omitempty"`
	Severities []rules.Severity    `json:"severities,omitempty"`
	Template   *template.Templates `json:"template,omitempty"`
	CreatedAt  time.Time           `json:"created_at"`
	UpdatedAt  time.Time           `json:"updated_at"`
}

func (r Receiver) store() ([]byte, error) {
	return json.Marshal(stored{Name: r.Name, Type: r.Type, RoutingKey: r.RoutingKey.Reveal(), URL: r.URL.Reveal(),
		Secret: r.Secret.Reveal(), Severities: r.Severities, Template: r.Template, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt})
}

func load(doc []byte) (Receiver, error) {
	var s stored
	if err := json.Unmarshal(doc, &s); err != nil {
		return Receiver{}, err
	}
	return Receiver{Name: s.Name, Type: s.Type, RoutingKey: rules.Secret(s.RoutingKey), URL: rules.Secret(s.URL),
		Secret: rules.Secret(s.Secret), Severities: s.Severities, Template: s.Template, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}, nil
}

// Takes reports whether the receiver takes alerts of severity s.
func (r Receiver) Takes(s rules.Severity) bool {
	return len(r.Severities) == 0 || s == "" || slices.Contains(r.Severities, s)
}

// Limits of a receiver's fields.
const (
	MinSecretLen = 16
	MaxSecretLen = 256
	MaxURLLen    = 2048
)

// Decode parses and validates a receiver from a JSON body; existing is the
// receiver a PUT replaces (a secret sent back redacted keeps its value).
// Templates are compiled and executed on a sample alert, each at most
// maxTemplate bytes.
func Decode(body []byte, existing *Receiver, maxTemplate int) (Receiver, validate.Errors) {
	var (
		errs                      validate.Errors
		r                         Receiver
		name, typ, key, u, secret string
		sevs                      []string
		tpl                       json.RawMessage
		ignoredC, ignoredU        json.RawMessage
	)
	present := validate.Object(body, "", map[string]any{"name": &name, "type": &typ, "routing_key": &key, "url": &u,
		"secret": &secret, "severities": &sevs, "template": &tpl, "created_at": &ignoredC, "updated_at": &ignoredU}, &errs)
	if present == nil && len(errs) > 0 {
		return r, errs
	}
	switch {
	case errs.Has("name"):
	case existing != nil && (name == "" || name == existing.Name):
		name = existing.Name
	case existing != nil:
		errs.Add("name", "%q: a receiver cannot be renamed (create one, point the rules at it, delete this)", name)
	case name == "":
		errs.Add("name", "required")
	case !rules.ReceiverName.MatchString(name):
		errs.Add("name", "%q: want 1 to 63 letters, digits, '.', '_' or '-'", name)
	}
	r.Name = name
	switch {
	case errs.Has("type"):
	case typ == "":
		errs.Add("type", "required: one of %v", Types)
	case !slices.Contains(Types, typ):
		errs.Add("type", "%q: want one of %v", typ, Types)
	}
	r.Type = typ
	keep := func(field, v string, old rules.Secret) (string, bool) {
		if v != "" && old != "" && v == old.Redacted() && existing != nil && existing.Type == typ {
			return old.Reveal(), true
		}
		return v, false
	}
	var old Receiver
	if existing != nil {
		old = *existing
	}
	needs := map[string]bool{}
	switch typ {
	case pagerduty.Name:
		needs["routing_key"] = true
	case alertmanager.Type, slack.Type, msteams.Type:
		needs["url"] = true
	case webhook.Type:
		needs["url"], needs["secret"] = true, true
	}
	for _, f := range []string{"routing_key", "url", "secret"} {
		if present[f] && !needs[f] && typ != "" && !errs.Has(f) {
			errs.Add(f, "not a field of a %s receiver", typ)
		}
	}
	if needs["routing_key"] && !errs.Has("routing_key") {
		k, kept := keep("routing_key", key, old.RoutingKey)
		switch {
		case k == "":
			errs.Add("routing_key", "required for a pagerduty receiver")
		case !kept && !rules.ValidRoutingKey(k):
			errs.Add("routing_key", "want %d letters or digits (a PagerDuty integration key)", rules.RoutingKeyLen)
		default:
			r.RoutingKey = rules.Secret(k)
		}
	}
	if needs["url"] && !errs.Has("url") {
		v := u
		kept := false
		if typ != alertmanager.Type {
			v, kept = keep("url", u, old.URL)
		} else if existing != nil && u != "" {
			if pu, err := url.Parse(old.URL.Reveal()); err == nil && pu.Redacted() == u {
				v = old.URL.Reveal()
			}
		}
		pu, err := url.Parse(v)
		switch {
		case v == "":
			errs.Add("url", "required for a %s receiver", typ)
		case len(v) > MaxURLLen:
			errs.Add("url", "%d bytes, over the limit of %d", len(v), MaxURLLen)
		case kept:
			r.URL = rules.Secret(v)
		case err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "":
			// Not echoed: a webhook URL is a credential.
			errs.Add("url", "want an absolute http or https URL")
		default:
			r.URL = rules.Secret(v)
		}
	}
	if needs["secret"] && !errs.Has("secret") {
		s, _ := keep("secret", secret, old.Secret)
		switch {
		case s == "":
			errs.Add("secret", "required for a webhook receiver (the HMAC-SHA256 key of X-Keyalert-Signature)")
		case len(s) < MinSecretLen || len(s) > MaxSecretLen:
			errs.Add("secret", "want %d to %d bytes", MinSecretLen, MaxSecretLen)
		default:
			r.Secret = rules.Secret(s)
		}
	}
	for i, s := range sevs {
		switch sv := rules.Severity(s); sv {
		case rules.Critical, rules.Error, rules.Warning, rules.Info:
			if !slices.Contains(r.Severities, sv) {
				r.Severities = append(r.Severities, sv)
			}
		default:
			errs.Add(fmt.Sprintf("severities[%d]", i), "%q: want critical, error, warning or info", s)
		}
	}
	if present["template"] && !errs.Has("template") {
		var t template.Templates
		validate.Object(tpl, "template", map[string]any{"title": &t.Title, "body": &t.Body}, &errs)
		if !errs.Has("template.title") && !errs.Has("template.body") {
			if _, err := template.Compile(t, maxTemplate); err != nil {
				field := "template.body"
				if strings.HasPrefix(err.Error(), "title") {
					field = "template.title"
				}
				errs.Add(field, "%v", err)
			} else if t != (template.Templates{}) {
				r.Template = &t
			}
		}
	}
	return r, errs
}
