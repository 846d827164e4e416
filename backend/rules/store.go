package rules

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/keyalert/keyalert/backend/validate"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/redis/go-redis/v9"
)

// Redis keys, all in the {rules} slot so each script touches one slot. The
// routing keys live apart from the rule documents so that a rule marshalled
// anywhere (API, logs, storage) carries only the redacted form.
const (
	KeyRules   = "ka:{rules}:rules"   // hash id -> rule JSON (routing key redacted)
	KeySecrets = "ka:{rules}:secrets" // hash id -> routing key
	KeyVersion = "ka:{rules}:version" // counter bumped on every change
	// KeyRuleKeywords and KeyKeywordRefs keep the union of enabled rules'
	// keywords up to date on every write, so publishing it reads a hash of
	// distinct keywords instead of every rule (10,000 rules stay cheap).
	KeyRuleKeywords = "ka:{rules}:rule-keywords" // hash id -> JSON array of keyword ids (enabled rules)
	KeyKeywordRefs  = "ka:{rules}:keyword-refs"  // hash keyword id -> number of enabled rules using it
)

// ErrNotFound is returned for an unknown rule id.
var ErrNotFound = errors.New("rule not found")

// DefaultKeywordsKey is where the keyword set is published when
// Options.KeywordsKey is empty: the key the plugin follows by default.
const DefaultKeywordsKey = keyword.DefaultSetKey

// Options of the rules store. The zero value is usable.
type Options struct {
	// KeywordsKey is the string key where the keyword set is published;
	// empty: DefaultKeywordsKey.
	KeywordsKey string
	// Limits bound rule writes; zero fields take the defaults.
	Limits Limits
	// StreamShards is published in the keyword set for the plugins to spread
	// their entries over (package streamshard); 0 or 1: the field is left
	// out and plugins write the stream itself.
	StreamShards int
}

// Store keeps rules in Redis.
type Store struct {
	rdb redis.UniversalClient
	o   Options
	now func() time.Time
	log *slog.Logger

	// After Redis lost its data the rules are gone too; the keywords
	// published before stay in every set published until restart, so the
	// agents keep counting them while the rules are recreated.
	mu       sync.Mutex
	last     []byte         // last non-empty set read at or written to the keywords key
	retained []keyword.Spec // added to every set published
}

// emptySet is the encoding of no keywords.
var emptySet, _ = keyword.EncodeSet(nil)

// NewStore returns a store; now may be nil for time.Now, log nil for
// slog.Default().
func NewStore(rdb redis.UniversalClient, o Options, now func() time.Time, log *slog.Logger) *Store {
	if o.KeywordsKey == "" {
		o.KeywordsKey = DefaultKeywordsKey
	}
	o.Limits = o.Limits.withDefaults()
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Store{rdb: rdb, o: o, now: now, log: log}
}

// Limits returns the limits in force, defaults filled in, for Decode.
func (s *Store) Limits() Limits { return s.o.Limits }

// unref drops a rule's keyword references (KEYS[4], KEYS[5], ARGV[1] = id).
const unrefLua = `
local old = redis.call('HGET', KEYS[4], ARGV[1])
if old then
  for _, k in ipairs(cjson.decode(old)) do
    if redis.call('HINCRBY', KEYS[5], k, -1) <= 0 then redis.call('HDEL', KEYS[5], k) end
  end
  redis.call('HDEL', KEYS[4], ARGV[1])
end
`

// writeScript stores a rule. ARGV: id, json, routing key, mode ("create"
// fails if the id exists, "update" if it does not), JSON array of the
// keyword ids it references (empty when disabled), the rule limit, the
// published keyword limit. Returns {1, 0} on success, {0, 0} for the id
// conflict, {-1, rules} past the rule limit, {-2, distinct} when the write
// would add keywords to a set already at (or pushed past) the keyword limit.
// The limits are checked here, in the same script as the write, so two
// concurrent writes cannot both slip under them.
var writeScript = redis.NewScript(`
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1])
if (ARGV[4] == 'create' and exists == 1) or (ARGV[4] == 'update' and exists == 0) then return {0, 0} end
if ARGV[4] == 'create' then
  local n = redis.call('HLEN', KEYS[1])
  if n >= tonumber(ARGV[6]) then return {-1, n} end
end
local new = cjson.decode(ARGV[5])
local before = redis.call('HLEN', KEYS[5])
local oldset, newset, distinct = {}, {}, before
local oldDoc = redis.call('HGET', KEYS[4], ARGV[1])
if oldDoc then for _, k in ipairs(cjson.decode(oldDoc)) do oldset[k] = true end end
for _, k in ipairs(new) do
  newset[k] = true
  if not oldset[k] and redis.call('HEXISTS', KEYS[5], k) == 0 then distinct = distinct + 1 end
end
for k in pairs(oldset) do
  if not newset[k] and tonumber(redis.call('HGET', KEYS[5], k) or '0') <= 1 then distinct = distinct - 1 end
end
if distinct > before and distinct > tonumber(ARGV[7]) then return {-2, distinct} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '' then redis.call('HDEL', KEYS[2], ARGV[1]) else redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
` + unrefLua + `
if #new > 0 then
  for _, k in ipairs(new) do redis.call('HINCRBY', KEYS[5], k, 1) end
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
end
redis.call('INCR', KEYS[3])
return {1, 0}`)

var deleteScript = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
` + unrefLua + `
redis.call('INCR', KEYS[3])
return 1`)

var scriptKeys = []string{KeyRules, KeySecrets, KeyVersion, KeyRuleKeywords, KeyKeywordRefs}

// NameTakenError is a write refused because another rule has the name: a
// rule's name is how people and rules files (keyalert rules apply) tell
// rules apart, so two of the same name would make either ambiguous.
type NameTakenError struct {
	Name string
	ID   string // the rule that has it
}

func (e *NameTakenError) Error() string {
	return fmt.Sprintf("rule %s is already called %q", e.ID, e.Name)
}

// checkName returns a NameTakenError when a rule other than id is called
// name. It reads before the write rather than inside its script (a name
// index would need migrating stored rules): two concurrent creations of one
// name can still both succeed, which a later write of either then reports.
func (s *Store) checkName(ctx context.Context, id, name string) error {
	snap, err := s.Snapshot(ctx)
	if err != nil {
		return err
	}
	for _, r := range snap.Rules {
		if r.Name == name && r.ID != id {
			return &NameTakenError{Name: name, ID: r.ID}
		}
	}
	return nil
}

// Create stores a new rule under a fresh id and publishes the keyword set.
// Past a limit of Options.Limits it returns validate.Errors naming it; with
// a name another rule has, a NameTakenError.
func (s *Store) Create(ctx context.Context, r Rule) (Rule, error) {
	if err := s.checkName(ctx, "", r.Name); err != nil {
		return Rule{}, err
	}
	r.ID = newID()
	r.CreatedAt = s.now().UTC().Truncate(time.Millisecond)
	r.UpdatedAt = r.CreatedAt
	if err := s.write(ctx, r, "create"); err != nil {
		return Rule{}, err
	}
	s.publishAfterChange(ctx)
	return r, nil
}

// Update replaces rule id, keeping its creation time; a name another rule
// has is refused with a NameTakenError.
func (s *Store) Update(ctx context.Context, id string, r Rule) (Rule, error) {
	old, err := s.Get(ctx, id)
	if err != nil {
		return Rule{}, err
	}
	if old.Name != r.Name {
		if err := s.checkName(ctx, id, r.Name); err != nil {
			return Rule{}, err
		}
	}
	r.ID, r.CreatedAt = id, old.CreatedAt
	r.UpdatedAt = s.now().UTC().Truncate(time.Millisecond)
	if err := s.write(ctx, r, "update"); err != nil {
		return Rule{}, err
	}
	s.publishAfterChange(ctx)
	return r, nil
}

func (s *Store) write(ctx context.Context, r Rule, mode string) error {
	doc, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode rule %s: %w", r.ID, err)
	}
	refs := []string{}
	if r.Enabled {
		refs = r.KeywordIDs()
	}
	refDoc, _ := json.Marshal(refs)
	res, err := writeScript.Run(ctx, s.rdb, scriptKeys, r.ID, doc, r.PagerDuty.RoutingKey.Reveal(), mode, refDoc,
		s.o.Limits.MaxRules, s.o.Limits.MaxPublishedKeywords).Int64Slice()
	if err != nil {
		return fmt.Errorf("%s rule %s: %w", mode, r.ID, err)
	}
	if len(res) != 2 {
		return fmt.Errorf("%s rule %s: script returned %v", mode, r.ID, res)
	}
	switch res[0] {
	case 1:
		return nil
	case 0:
		if mode == "update" {
			return ErrNotFound
		}
		return fmt.Errorf("create rule %s: id already taken", r.ID)
	case -1:
		return validate.Errors{{Field: "rules", Message: fmt.Sprintf(
			"%d rules stored, the limit is %d (KEYALERT_MAX_RULES): delete rules or raise it", res[1], s.o.Limits.MaxRules)}}
	case -2:
		return validate.Errors{{Field: "keywords", Message: fmt.Sprintf(
			"enabled rules would publish %d distinct keywords, over the limit of %d (KEYALERT_MAX_PUBLISHED_KEYWORDS) that every agent follows",
			res[1], s.o.Limits.MaxPublishedKeywords)}}
	}
	return fmt.Errorf("%s rule %s: script returned %v", mode, r.ID, res)
}

// Counted reports whether an enabled rule counts the keyword series id,
// so a query can tell a series nobody counts from one that counted 0.
func (s *Store) Counted(ctx context.Context, id string) (bool, error) {
	ok, err := s.rdb.HExists(ctx, KeyKeywordRefs, id).Result()
	if err != nil {
		return false, fmt.Errorf("hexists %s %s: %w", KeyKeywordRefs, id, err)
	}
	return ok, nil
}

// Delete removes rule id.
func (s *Store) Delete(ctx context.Context, id string) error {
	n, err := deleteScript.Run(ctx, s.rdb, scriptKeys, id).Int()
	if err != nil {
		return fmt.Errorf("delete rule %s: %w", id, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	s.publishAfterChange(ctx)
	return nil
}

// Get returns rule id with its routing key.
func (s *Store) Get(ctx context.Context, id string) (Rule, error) {
	// A read-only script rather than MULTI: a Redis out of memory refuses
	// every command queued in a MULTI, reads too, but runs a script that
	// only reads.
	vals, err := getScript.Run(ctx, s.rdb, []string{KeyRules, KeySecrets}, id).StringSlice()
	if err != nil {
		return Rule{}, fmt.Errorf("get rule %s: %w", id, err)
	}
	if len(vals) != 2 || vals[0] == "" {
		return Rule{}, ErrNotFound
	}
	var r Rule
	if err := json.Unmarshal([]byte(vals[0]), &r); err != nil {
		return Rule{}, fmt.Errorf("decode rule %s: %w", id, err)
	}
	r.PagerDuty.RoutingKey = Secret(vals[1])
	return r, nil
}

// Snapshot is every rule at one version.
type Snapshot struct {
	Version int64
	Rules   []Rule // ordered by creation time, then id
}

// Snapshot reads all rules and the version atomically.
func (s *Store) Snapshot(ctx context.Context) (Snapshot, error) {
	// A read-only script, atomic like the MULTI it replaces, but served by
	// a Redis out of memory (which refuses anything queued in a MULTI).
	res, err := snapshotScript.Run(ctx, s.rdb, []string{KeyVersion, KeyRules, KeySecrets}).Slice()
	if err != nil {
		return Snapshot{}, fmt.Errorf("load rules: %w", err)
	}
	if len(res) != 3 {
		return Snapshot{}, fmt.Errorf("load rules: script answered %d values, want 3", len(res))
	}
	ver, _ := res[0].(string)
	docs, keys := pairs(res[1]), pairs(res[2])
	snap := Snapshot{Rules: make([]Rule, 0, len(docs))}
	snap.Version, _ = strconv.ParseInt(ver, 10, 64) // absent: version 0
	for id, doc := range docs {
		var r Rule
		if err := json.Unmarshal([]byte(doc), &r); err != nil {
			// One corrupt document must not stop every other rule.
			s.log.Error("skipping undecodable rule", "rule_id", id, "err", err)
			continue
		}
		r.PagerDuty.RoutingKey = Secret(keys[id])
		snap.Rules = append(snap.Rules, r)
	}
	sort.Slice(snap.Rules, func(i, j int) bool {
		a, b := snap.Rules[i], snap.Rules[j]
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.Before(b.CreatedAt)
		}
		return a.ID < b.ID
	})
	return snap, nil
}

var getScript = redis.NewScript(`
return {redis.call('HGET', KEYS[1], ARGV[1]) or '', redis.call('HGET', KEYS[2], ARGV[1]) or ''}`)

var snapshotScript = redis.NewScript(`
return {redis.call('GET', KEYS[1]) or '', redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}`)

// pairs turns an HGETALL reply from a script (a flat list) into a map.
func pairs(v any) map[string]string {
	list, _ := v.([]any)
	m := make(map[string]string, len(list)/2)
	for i := 0; i+1 < len(list); i += 2 {
		k, _ := list[i].(string)
		val, _ := list[i+1].(string)
		m[k] = val
	}
	return m
}

// Version returns the counter bumped by every change (0 before any).
func (s *Store) Version(ctx context.Context) (int64, error) {
	v, err := s.rdb.Get(ctx, KeyVersion).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", KeyVersion, err)
	}
	return v, nil
}

// publishAfterChange republishes the keyword set after a write, from the
// keyword reference counts. A failure is only logged: the write stands, and
// the engine's periodic SyncKeywords heals the published set within a tick.
func (s *Store) publishAfterChange(ctx context.Context) {
	if err := s.publishFromRefs(ctx); err != nil {
		s.log.Warn("publish keyword set after rule change", "key", s.o.KeywordsKey, "err", err)
	}
}

func (s *Store) publishFromRefs(ctx context.Context) error {
	ids, err := s.rdb.HKeys(ctx, KeyKeywordRefs).Result()
	if err != nil {
		return fmt.Errorf("hkeys %s: %w", KeyKeywordRefs, err)
	}
	specs := make([]keyword.Spec, 0, len(ids))
	for _, id := range ids {
		sp, err := keyword.ParseID(id)
		if err != nil {
			return err
		}
		specs = append(specs, sp)
	}
	doc, err := encodeSpecs(specs)
	if err != nil {
		return err
	}
	_, err = s.Publish(ctx, doc)
	return err
}

// RetainKeywords is called after Redis lost its data: the last keyword set
// this store saw published (or, if none, the one published now) is kept in
// every set it publishes until the process restarts, and the set is
// republished at once. It returns the number of keywords retained.
func (s *Store) RetainKeywords(ctx context.Context) (int, error) {
	cur, err := s.rdb.Get(ctx, s.o.KeywordsKey).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("get %s: %w", s.o.KeywordsKey, err)
	}
	s.mu.Lock()
	var add []keyword.Spec
	for _, doc := range [][]byte{s.last, cur} {
		if len(doc) == 0 {
			continue
		}
		specs, err := keyword.DecodeSet(doc)
		if err != nil {
			s.mu.Unlock()
			return 0, fmt.Errorf("decode keyword set to retain: %w", err)
		}
		add = append(add, specs...)
	}
	s.retained = union(s.retained, add)
	n := len(s.retained)
	s.mu.Unlock()
	return n, s.publishFromRefs(ctx)
}

// union is a and b without repeated IDs.
func union(a, b []keyword.Spec) []keyword.Spec {
	seen := map[string]bool{}
	var out []keyword.Spec
	for _, set := range [][]keyword.Spec{a, b} {
		for _, sp := range set {
			if id := sp.ID(); !seen[id] {
				seen[id] = true
				out = append(out, sp)
			}
		}
	}
	return out
}

// withRetained adds the retained keywords, and the stream shard count, to
// doc.
func (s *Store) withRetained(doc []byte) ([]byte, error) {
	s.mu.Lock()
	retained := s.retained
	s.mu.Unlock()
	if len(retained) == 0 && s.o.StreamShards <= 1 {
		return doc, nil
	}
	specs, err := keyword.DecodeSet(doc)
	if err != nil {
		return nil, fmt.Errorf("decode keyword set: %w", err)
	}
	specs = union(specs, retained)
	sort.Slice(specs, func(i, j int) bool { return specs[i].ID() < specs[j].ID() })
	out, err := keyword.EncodeSetShards(specs, s.o.StreamShards)
	if err != nil {
		return nil, fmt.Errorf("encode keyword set: %w", err)
	}
	return out, nil
}

// KeywordSet encodes the union of enabled rules' keywords as a keyword.Set
// document, in ID order so that equal sets encode to equal bytes.
func KeywordSet(rs []Rule) ([]byte, error) {
	var specs []keyword.Spec
	for i := range rs {
		if rs[i].Enabled {
			specs = append(specs, rs[i].Specs()...)
		}
	}
	return encodeSpecs(specs)
}

func encodeSpecs(specs []keyword.Spec) ([]byte, error) {
	sort.Slice(specs, func(i, j int) bool { return specs[i].ID() < specs[j].ID() })
	doc, err := keyword.EncodeSet(specs)
	if err != nil {
		return nil, fmt.Errorf("encode keyword set: %w", err)
	}
	return doc, nil
}

// SyncKeywords publishes the keyword set of rs at the keywords key unless it
// is already there; it reports whether it wrote. Two writers racing may leave
// an older set for a moment; the next sync (every engine tick) repairs it.
func (s *Store) SyncKeywords(ctx context.Context, rs []Rule) (bool, error) {
	doc, err := KeywordSet(rs)
	if err != nil {
		return false, err
	}
	return s.Publish(ctx, doc)
}

// Publish writes an encoded keyword set (KeywordSet) at the keywords key
// unless it is already there; it reports whether it wrote. After a data
// loss (RetainKeywords) the keywords retained are added. The set carries its
// sum in its first bytes (keyword.SumPrefixLen), so the check reads only
// those instead of the whole set, and the one SET writes document and sum
// together: nothing for agents to see half-written, one key in one cluster
// slot whatever the key is called.
func (s *Store) Publish(ctx context.Context, doc []byte) (bool, error) {
	doc, err := s.withRetained(doc)
	if err != nil {
		return false, err
	}
	if sum, ok := keyword.PeekSum(doc); ok {
		var prefix *redis.StringCmd
		var size *redis.IntCmd
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			prefix = p.GetRange(ctx, s.o.KeywordsKey, 0, int64(keyword.SumPrefixLen-1))
			size = p.StrLen(ctx, s.o.KeywordsKey)
			return nil
		})
		if err != nil {
			return false, fmt.Errorf("getrange %s: %w", s.o.KeywordsKey, err)
		}
		// The length too, so that a set edited by hand under its old sum
		// (which agents ignore) is most likely repaired rather than kept.
		cur := []byte(prefix.Val())
		if curSum, ok := keyword.PeekSum(cur); ok && curSum == sum && size.Val() == int64(len(doc)) {
			s.remember(doc) // the same set is in Redis
			return false, nil
		}
	} else {
		cur, err := s.rdb.Get(ctx, s.o.KeywordsKey).Bytes()
		if err != nil && !errors.Is(err, redis.Nil) {
			return false, fmt.Errorf("get %s: %w", s.o.KeywordsKey, err)
		}
		s.remember(cur)
		if bytes.Equal(cur, doc) {
			return false, nil
		}
	}
	if err := s.rdb.Set(ctx, s.o.KeywordsKey, doc, 0).Err(); err != nil {
		return false, fmt.Errorf("set %s: %w", s.o.KeywordsKey, err)
	}
	s.remember(doc)
	return true, nil
}

// remember keeps doc as the last set seen unless it is empty.
func (s *Store) remember(doc []byte) {
	if len(doc) == 0 || bytes.Equal(doc, emptySet) {
		return
	}
	s.mu.Lock()
	if !bytes.Equal(s.last, doc) {
		s.last = bytes.Clone(doc)
	}
	s.mu.Unlock()
}

func newID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	return "r" + hex.EncodeToString(b[:])
}
