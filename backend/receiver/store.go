package receiver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/notify/alertmanager"
	"github.com/keyalert/keyalert/backend/notify/msteams"
	"github.com/keyalert/keyalert/backend/notify/pagerduty"
	"github.com/keyalert/keyalert/backend/notify/slack"
	"github.com/keyalert/keyalert/backend/notify/template"
	"github.com/keyalert/keyalert/backend/notify/webhook"
	"github.com/redis/go-redis/v9"
)

// Key is the hash of receivers (name -> stored JSON, secrets in full); it
// shares the outbox's {alerts} slot.
const Key = "ka:{alerts}:receivers"

// Defaults of a zero Options.
const (
	DefaultMaxReceivers = 100
)

// Options of the store and of the notifiers it builds. The zero value is
// usable.
type Options struct {
	// MaxReceivers bounds the receivers stored; 0: DefaultMaxReceivers.
	MaxReceivers int
	// TemplateMaxBytes bounds each template; 0: template.DefaultMaxBytes.
	TemplateMaxBytes int
	// PagerDuty is the client pagerduty receivers send through (its URL,
	// timeout and pace), with their own routing key; nil: a default client.
	PagerDuty    *pagerduty.Client
	Alertmanager alertmanager.Options
	Slack        slack.Options
	Teams        msteams.Options
	Webhook      webhook.Options
}

// Errors of the store.
var (
	ErrNotFound = errors.New("receiver not found")
	ErrExists   = errors.New("receiver exists")
	ErrFull     = errors.New("too many receivers")
)

// Store keeps receivers in Redis.
type Store struct {
	rdb redis.UniversalClient
	o   Options
	now func() time.Time

	mu    sync.Mutex
	cache map[string]built
}

type built struct {
	doc string
	n   notify.Notifier
	typ string
}

// NewStore returns a store.
func NewStore(rdb redis.UniversalClient, o Options, now func() time.Time) *Store {
	if o.MaxReceivers <= 0 {
		o.MaxReceivers = DefaultMaxReceivers
	}
	if o.TemplateMaxBytes <= 0 {
		o.TemplateMaxBytes = template.DefaultMaxBytes
	}
	if o.PagerDuty == nil {
		o.PagerDuty = pagerduty.NewClient(pagerduty.Options{}, nil)
	}
	if now == nil {
		now = time.Now
	}
	return &Store{rdb: rdb, o: o, now: now, cache: map[string]built{}}
}

// Options returns the store's options with defaults.
func (s *Store) Options() Options { return s.o }

// createScript adds a receiver unless it exists or the cap is reached.
// KEYS: hash. ARGV: name, doc, max.
var createScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return -1 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`)

// Create stores a new receiver.
func (s *Store) Create(ctx context.Context, r Receiver) (Receiver, error) {
	r.CreatedAt = s.now().UTC()
	r.UpdatedAt = r.CreatedAt
	doc, err := r.store()
	if err != nil {
		return r, err
	}
	res, err := createScript.Run(ctx, s.rdb, []string{Key}, r.Name, doc, s.o.MaxReceivers).Int()
	switch {
	case err != nil:
		return r, fmt.Errorf("create receiver %s: %w", r.Name, err)
	case res == -1:
		return r, fmt.Errorf("%w: %s", ErrExists, r.Name)
	case res == -2:
		return r, fmt.Errorf("%w: KEYALERT_MAX_RECEIVERS is %d", ErrFull, s.o.MaxReceivers)
	}
	return r, nil
}

// Get returns the named receiver.
func (s *Store) Get(ctx context.Context, name string) (Receiver, error) {
	doc, err := s.rdb.HGet(ctx, Key, name).Bytes()
	if errors.Is(err, redis.Nil) {
		return Receiver{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return Receiver{}, fmt.Errorf("hget %s %s: %w", Key, name, err)
	}
	r, err := load(doc)
	if err != nil {
		return Receiver{}, fmt.Errorf("decode receiver %s: %w", name, err)
	}
	return r, nil
}

// Exists reports whether the named receiver exists (false on errors).
func (s *Store) Exists(ctx context.Context, name string) bool {
	ok, err := s.rdb.HExists(ctx, Key, name).Result()
	return err == nil && ok
}

// List returns every receiver, by name.
func (s *Store) List(ctx context.Context) ([]Receiver, error) {
	m, err := s.rdb.HGetAll(ctx, Key).Result()
	if err != nil {
		return nil, fmt.Errorf("hgetall %s: %w", Key, err)
	}
	out := make([]Receiver, 0, len(m))
	for name, doc := range m {
		r, err := load([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("decode receiver %s: %w", name, err)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// replaceScript replaces an existing receiver. KEYS: hash. ARGV: name, doc.
var replaceScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`)

// Replace stores r over the receiver of its name, keeping its creation time.
func (s *Store) Replace(ctx context.Context, r Receiver, createdAt time.Time) (Receiver, error) {
	r.CreatedAt, r.UpdatedAt = createdAt, s.now().UTC()
	doc, err := r.store()
	if err != nil {
		return r, err
	}
	res, err := replaceScript.Run(ctx, s.rdb, []string{Key}, r.Name, doc).Int()
	if err != nil {
		return r, fmt.Errorf("replace receiver %s: %w", r.Name, err)
	}
	if res == -1 {
		return r, fmt.Errorf("%w: %s", ErrNotFound, r.Name)
	}
	return r, nil
}

// Delete removes the named receiver.
func (s *Store) Delete(ctx context.Context, name string) error {
	n, err := s.rdb.HDel(ctx, Key, name).Result()
	if err != nil {
		return fmt.Errorf("hdel %s %s: %w", Key, name, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return nil
}

// Notifier implements outbox.Receivers: the named receiver's notifier,
// rebuilt only when the receiver changed.
func (s *Store) Notifier(ctx context.Context, name string) (notify.Notifier, string, error) {
	doc, err := s.rdb.HGet(ctx, Key, name).Result()
	if errors.Is(err, redis.Nil) {
		return nil, "", fmt.Errorf("receiver %q: %w", name, notify.ErrNoReceiver)
	}
	if err != nil {
		return nil, "", fmt.Errorf("hget %s %s: %w", Key, name, err)
	}
	s.mu.Lock()
	b, ok := s.cache[name]
	s.mu.Unlock()
	if ok && b.doc == doc {
		return b.n, b.typ, nil
	}
	r, err := load([]byte(doc))
	if err != nil {
		return nil, "", fmt.Errorf("decode receiver %s: %w: %v", name, notify.ErrNoReceiver, err)
	}
	n, err := s.build(r)
	if err != nil {
		return nil, "", fmt.Errorf("receiver %s: %w: %v", name, notify.ErrNoReceiver, err)
	}
	s.mu.Lock()
	s.cache[name] = built{doc: doc, n: n, typ: r.Type}
	s.mu.Unlock()
	return n, r.Type, nil
}

func (s *Store) build(r Receiver) (notify.Notifier, error) {
	var t template.Templates
	if r.Template != nil {
		t = *r.Template
	}
	tpl, err := template.Compile(t, s.o.TemplateMaxBytes)
	if err != nil {
		return nil, err
	}
	var n notify.Notifier
	switch r.Type {
	case pagerduty.Name:
		n = s.o.PagerDuty.WithRoutingKey(r.RoutingKey.Reveal())
		if r.Template != nil && r.Template.Title != "" {
			n = titled{n, tpl}
		}
	case alertmanager.Type:
		n = alertmanager.New(r.URL.Reveal(), tpl, s.o.Alertmanager)
	case slack.Type:
		n = slack.New(r.URL.Reveal(), tpl, s.o.Slack)
	case msteams.Type:
		n = msteams.New(r.URL.Reveal(), tpl, s.o.Teams)
	case webhook.Type:
		n = webhook.New(r.URL.Reveal(), r.Secret.Reveal(), tpl, s.o.Webhook)
	default:
		return nil, fmt.Errorf("unknown type %q", r.Type)
	}
	return filtered{n, r}, nil
}

// filtered skips severities the receiver does not take; it passes the
// optional interfaces of the notifier through.
type filtered struct {
	notify.Notifier
	r Receiver
}

func (f filtered) Encode(n notify.Notification) ([]byte, error) {
	if !f.r.Takes(n.Rule.Severity) {
		return nil, notify.ErrSkip
	}
	return f.Notifier.Encode(n)
}

func (f filtered) Pace(n notify.Notification) (string, time.Duration) {
	if p, ok := f.Notifier.(notify.Pacer); ok {
		return p.Pace(n)
	}
	return "", 0
}

func (f filtered) RefreshEvery() time.Duration {
	if r, ok := f.Notifier.(notify.Refresher); ok {
		return r.RefreshEvery()
	}
	return 0
}

func (f filtered) Messages() bool {
	m, ok := f.Notifier.(notify.Messenger)
	return ok && m.Messages()
}

// titled renders a PagerDuty receiver's title template as the summary.
type titled struct {
	notify.Notifier
	tpl *template.Set
}

func (t titled) Encode(n notify.Notification) ([]byte, error) {
	if n.Action == notify.Trigger {
		title, _, err := t.tpl.Render(n)
		if err != nil {
			return nil, err
		}
		n.Summary = title
	}
	return t.Notifier.Encode(n)
}

func (t titled) Pace(n notify.Notification) (string, time.Duration) {
	return t.Notifier.(notify.Pacer).Pace(n)
}
