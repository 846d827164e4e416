// Package silence keeps silences: time-bounded matchers on rule id, host, tag,
// labels or keyword under which an alert is still recorded but not paged.
package silence

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/timeinterval"
	"github.com/keyalert/keyalert/backend/validate"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// Silence mutes the alerts it matches between Start and End. Every matcher
// that is set must match; host and tag are glob patterns as in rule filters,
// keyword is compared with each of the alert's keyword texts.
type Silence struct {
	ID      string `json:"id"`
	RuleID  string `json:"rule_id,omitempty"`
	Host    string `json:"host,omitempty"`
	Tag     string `json:"tag,omitempty"`
	Keyword string `json:"keyword,omitempty"`
	// Labels are label name -> glob; each must match, as host and tag do.
	Labels map[string]string `json:"labels,omitempty"`
	// TimeIntervals, when set, narrow the silence to the times inside any
	// of these named intervals (package timeinterval): "nights" mutes the
	// matched alerts only at night between Start and End.
	TimeIntervals []string  `json:"time_intervals,omitempty"`
	Start         time.Time `json:"start"`
	End           time.Time `json:"end"`
	Author        string    `json:"author"`
	Comment       string    `json:"comment,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
}

// Target is what a silence is matched against: one alert's labels and the
// series behind its current count.
type Target struct {
	RuleID   string
	Host     string // the group's host; empty unless the rule groups by host
	Tag      string // the group's tag; empty unless the rule groups by tag
	Keywords []string
	// Hosts and Tags are the distinct hosts and tags of the series that
	// contributed to the alert's current count (its window). They stand in
	// for Host and Tag when the group does not name one.
	Hosts []string
	Tags  []string
	// Labels are the group's labels (group_by names other than host and
	// tag), name -> value.
	Labels map[string]string
	// LabelValues are, per label name, the distinct values of the
	// contributing series (a series lacking the label: ""); they stand in
	// for a label the group does not name.
	LabelValues map[string][]string
	// SilencedBy is the silence muting the alert now, if any. With no
	// contributing series (a host whose heartbeat has long stopped), its
	// host or tag matcher keeps matching: nothing it does not name is being
	// counted, so there is no reason to end it.
	SilencedBy string
}

// Active reports whether the silence is in force at now.
func (s *Silence) Active(now time.Time) bool {
	return !now.Before(s.Start) && now.Before(s.End)
}

// Matches reports whether the silence is active at now and mutes t.
func (s *Silence) Matches(t Target, now time.Time) bool {
	if !s.Active(now) {
		return false
	}
	if s.RuleID != "" && s.RuleID != t.RuleID {
		return false
	}
	keep := t.SilencedBy != "" && t.SilencedBy == s.ID
	if s.Host != "" && !matchAll(s.Host, t.Host, t.Hosts, keep) {
		return false
	}
	if s.Tag != "" && !matchAll(s.Tag, t.Tag, t.Tags, keep) {
		return false
	}
	for name, glob := range s.Labels {
		if v, ok := t.Labels[name]; ok {
			if !rules.MatchGlob(glob, v) {
				return false
			}
			continue
		}
		vals, ok := t.LabelValues[name]
		if !ok && (len(t.Hosts) > 0 || len(t.Tags) > 0) {
			vals = []string{""} // series lacking the label have it empty
		}
		if !matchAll(glob, "", vals, keep) {
			return false
		}
	}
	if s.Keyword != "" {
		found := false
		for _, k := range t.Keywords {
			if k == s.Keyword {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// matchAll reports whether glob matches the group's value, or, when the group
// has none (the rule does not group by that dimension), every contributing
// value: a silence speaks for the alert only while everything the alert
// counts is something the silence names. An alert nothing contributes to is
// covered only by the silence already muting it (keep).
func matchAll(glob, label string, contributing []string, keep bool) bool {
	if label != "" {
		return rules.MatchGlob(glob, label)
	}
	if len(contributing) == 0 {
		return keep
	}
	for _, v := range contributing {
		if !rules.MatchGlob(glob, v) {
			return false
		}
	}
	return true
}

// Limits of a silence's fields.
const (
	MaxFieldLen   = 256
	MaxCommentLen = 2048
	MaxDuration   = 366 * 24 * time.Hour
	// MaxTimeIntervals bounds the intervals one silence (or rule) names.
	MaxTimeIntervals = 20
)

// Decode parses and validates a silence from a JSON body, listing every bad
// field. A missing start means now.
func Decode(body []byte, now time.Time) (Silence, validate.Errors) {
	var (
		errs                      validate.Errors
		s                         Silence
		start, end                string
		ignoredID, ignoredCreated json.RawMessage
	)
	present := validate.Object(body, "", map[string]any{
		"rule_id": &s.RuleID, "host": &s.Host, "tag": &s.Tag, "keyword": &s.Keyword, "labels": &s.Labels,
		"start": &start, "end": &end, "author": &s.Author, "comment": &s.Comment,
		"time_intervals": &s.TimeIntervals, "id": &ignoredID, "created_at": &ignoredCreated,
	}, &errs)
	if present == nil && len(errs) > 0 {
		return s, errs
	}
	if s.RuleID == "" && s.Host == "" && s.Tag == "" && s.Keyword == "" && len(s.Labels) == 0 &&
		!errs.Has("rule_id") && !errs.Has("host") && !errs.Has("tag") && !errs.Has("keyword") && !errs.Has("labels") {
		errs.Add("matchers", "set at least one of rule_id, host, tag, labels or keyword")
	}
	if len(s.Labels) > stream.MaxLabels {
		errs.Add("labels", "%d matchers, over the limit of %d", len(s.Labels), stream.MaxLabels)
	}
	for _, name := range slices.Sorted(maps.Keys(s.Labels)) {
		f := "labels." + name
		switch v := s.Labels[name]; {
		case name == stream.LabelHost || name == stream.LabelTag:
			errs.Add(f, "%s has its own matcher: set %q instead", name, name)
		case stream.ValidLabelName(name) != nil:
			errs.Add(f, "%q is not a label name (letters, digits and _, not starting with a digit)", name)
		case v == "":
			errs.Add(f, "empty glob: want a pattern like shop-*")
		case len(v) > MaxFieldLen:
			errs.Add(f, "%d bytes, over the limit of %d", len(v), MaxFieldLen)
		}
	}
	for _, f := range []struct{ name, v string }{{"rule_id", s.RuleID}, {"host", s.Host}, {"tag", s.Tag}, {"keyword", s.Keyword}, {"author", s.Author}} {
		if len(f.v) > MaxFieldLen {
			errs.Add(f.name, "%d bytes, over the limit of %d", len(f.v), MaxFieldLen)
		}
	}
	if len(s.TimeIntervals) > MaxTimeIntervals {
		errs.Add("time_intervals", "%d names, over the limit of %d", len(s.TimeIntervals), MaxTimeIntervals)
	}
	for i, n := range s.TimeIntervals {
		if !timeinterval.ValidName(n) {
			errs.Add(fmt.Sprintf("time_intervals[%d]", i), "%q is not a time interval name", n)
		}
	}
	if len(s.Comment) > MaxCommentLen {
		errs.Add("comment", "%d bytes, over the limit of %d", len(s.Comment), MaxCommentLen)
	}
	if s.Author == "" && !errs.Has("author") {
		errs.Add("author", "required")
	}
	s.Start = now
	if start != "" {
		t, err := time.Parse(time.RFC3339Nano, start)
		if err != nil {
			errs.Add("start", "%q: want an RFC 3339 time like 2025-01-02T15:04:05Z", start)
		}
		s.Start = t
	}
	switch {
	case errs.Has("end"):
	case end == "":
		errs.Add("end", "required")
	default:
		t, err := time.Parse(time.RFC3339Nano, end)
		switch {
		case err != nil:
			errs.Add("end", "%q: want an RFC 3339 time like 2025-01-02T15:04:05Z", end)
		case errs.Has("start"):
		case !t.After(s.Start):
			errs.Add("end", "must be after start")
		case !t.After(now):
			errs.Add("end", "is in the past")
		case t.Sub(s.Start) > MaxDuration:
			errs.Add("end", "silence spans %s, over the limit of %s", t.Sub(s.Start).Round(time.Hour), MaxDuration)
		}
		s.End = t
	}
	s.Start, s.End = s.Start.UTC(), s.End.UTC()
	return s, errs
}

// Redis keys, in the {silences} slot.
const (
	KeySilences = "ka:{silences}:all"     // hash id -> silence JSON
	KeyVersion  = "ka:{silences}:version" // bumped on every change
)

// ErrNotFound is returned for an unknown silence id.
var ErrNotFound = errors.New("silence not found")

// Store keeps silences in Redis.
type Store struct {
	rdb redis.UniversalClient
	now func() time.Time
	log *slog.Logger

	// The time intervals silences and rules name, refreshed by Version
	// (once per engine round) and read by Matching.
	intervals *timeinterval.Store
	ivMu      sync.RWMutex
	ivs       map[string]*timeinterval.TimeInterval
}

// UseIntervals makes the store resolve the time intervals silences and
// rules name from ti; without it a silence naming intervals never mutes
// and rules' mute_time_intervals are ignored.
func (st *Store) UseIntervals(ti *timeinterval.Store) { st.intervals = ti }

// Matching returns what mutes an alert of rule r with target t at now: the
// first silence of list that matches it (inside one of its time intervals,
// if it names any), else, when now is inside one of the rule's
// mute_time_intervals, a silence standing for that interval, with the ID
// "interval:<name>". The engine treats both alike: the alert is recorded,
// not paged, and pages when they end while it still fires.
func (st *Store) Matching(list []Silence, r *rules.Rule, t Target, now time.Time) *Silence {
	st.ivMu.RLock()
	ivs := st.ivs
	st.ivMu.RUnlock()
	for i := range list {
		s := &list[i]
		if s.Matches(t, now) && (len(s.TimeIntervals) == 0 || timeinterval.AnyContains(ivs, s.TimeIntervals, now)) {
			return s
		}
	}
	if r == nil {
		return nil
	}
	for _, name := range r.MuteTimeIntervals {
		if ti, ok := ivs[name]; ok && ti.Contains(now) {
			return &Silence{ID: IntervalID(name), RuleID: r.ID, Author: "rule " + r.Name,
				Comment: "inside the rule's mute time interval " + name}
		}
	}
	return nil
}

// IntervalID is the silence ID Matching gives a rule's mute time interval.
func IntervalID(name string) string { return "interval:" + name }

// NewStore returns a store; now may be nil for time.Now.
func NewStore(rdb redis.UniversalClient, now func() time.Time, log *slog.Logger) *Store {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Store{rdb: rdb, now: now, log: log}
}

// Create stores s under a fresh id.
func (st *Store) Create(ctx context.Context, s Silence) (Silence, error) {
	s.ID = newID()
	s.CreatedAt = st.now().UTC().Truncate(time.Millisecond)
	doc, err := json.Marshal(s)
	if err != nil {
		return Silence{}, fmt.Errorf("encode silence: %w", err)
	}
	_, err = st.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, KeySilences, s.ID, doc)
		p.Incr(ctx, KeyVersion)
		return nil
	})
	if err != nil {
		return Silence{}, fmt.Errorf("create silence: %w", err)
	}
	return s, nil
}

var deleteScript = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('INCR', KEYS[2])
return 1`)

// Delete removes silence id, ending it at once.
func (st *Store) Delete(ctx context.Context, id string) error {
	n, err := deleteScript.Run(ctx, st.rdb, []string{KeySilences, KeyVersion}, id).Int()
	if err != nil {
		return fmt.Errorf("delete silence %s: %w", id, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Get returns silence id.
func (st *Store) Get(ctx context.Context, id string) (Silence, error) {
	doc, err := st.rdb.HGet(ctx, KeySilences, id).Bytes()
	if errors.Is(err, redis.Nil) {
		return Silence{}, ErrNotFound
	}
	if err != nil {
		return Silence{}, fmt.Errorf("get silence %s: %w", id, err)
	}
	var s Silence
	if err := json.Unmarshal(doc, &s); err != nil {
		return Silence{}, fmt.Errorf("decode silence %s: %w", id, err)
	}
	return s, nil
}

// List returns every silence, the ones ending first first.
func (st *Store) List(ctx context.Context) ([]Silence, error) {
	m, err := st.rdb.HGetAll(ctx, KeySilences).Result()
	if err != nil {
		return nil, fmt.Errorf("list silences: %w", err)
	}
	out := make([]Silence, 0, len(m))
	for id, doc := range m {
		var s Silence
		if err := json.NewDecoder(bytes.NewReader([]byte(doc))).Decode(&s); err != nil {
			st.log.Error("skipping undecodable silence", "silence_id", id, "err", err)
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].End.Equal(out[j].End) {
			return out[i].End.Before(out[j].End)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Version returns the change counter (0 before any change). It also
// refreshes the time intervals Matching reads: the engine asks for the
// version every round, so an interval edit takes effect within a round.
func (st *Store) Version(ctx context.Context) (int64, error) {
	if st.intervals != nil {
		m, err := st.intervals.Map(ctx)
		if err != nil {
			return 0, err
		}
		st.ivMu.Lock()
		st.ivs = m
		st.ivMu.Unlock()
	}
	v, err := st.rdb.Get(ctx, KeyVersion).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", KeyVersion, err)
	}
	return v, nil
}

// Prune deletes silences that ended before cutoff, so the list does not grow
// forever; it returns how many it removed.
func (st *Store) Prune(ctx context.Context, cutoff time.Time) (int, error) {
	all, err := st.List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range all {
		if s.End.Before(cutoff) {
			if err := st.Delete(ctx, s.ID); err != nil && !errors.Is(err, ErrNotFound) {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// Matching returns the first silence of list that mutes t at now, or nil.
func Matching(list []Silence, t Target, now time.Time) *Silence {
	for i := range list {
		if list[i].Matches(t, now) {
			return &list[i]
		}
	}
	return nil
}

func newID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return "s" + hex.EncodeToString(b[:])
}
