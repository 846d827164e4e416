// Package config reads and validates a keyalert [OUTPUT] section. It takes the
// property lookup as a plain func, so it is tested without Fluent Bit; every
// error names the key and the bad value (with any Redis password redacted).
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keyalert/keyalert/pkg/duration"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/redisurl"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// Key names as written in the Fluent Bit configuration. Fluent Bit matches them
// case-insensitively. None of them is one the core reserves (host, port, tls*,
// alias, match, retry_limit, storage.*, log_level, workers).
const (
	KeyRedisURL      = "Redis_URL"
	KeyStream        = "Stream"
	KeyKeywords      = "Keywords"
	KeyIgnoreCase    = "Ignore_Case"
	KeyMatch         = "Match_Mode"
	KeyKeys          = "Keys"
	KeyHostname      = "Hostname"
	KeyHostnameKey   = "Hostname_Key"
	KeySamples       = "Samples"
	KeyMaxLen        = "Max_Len"
	KeyRulesKey      = "Rules_Key"
	KeyRulesInterval = "Rules_Interval"
	KeyRedisTimeout  = "Redis_Timeout"
)

// Defaults for keys left unset.
const (
	DefaultRedisURL      = "redis://127.0.0.1:6379/0"
	DefaultKeys          = "log,message"
	DefaultSamples       = 1
	DefaultMaxLen        = 1000000
	DefaultRulesInterval = 2 * time.Second
	DefaultRedisTimeout  = 5 * time.Second

	MinRulesInterval = time.Second
	MaxRulesInterval = 60 * time.Second
	MinRedisTimeout  = 100 * time.Millisecond
	MaxRedisTimeout  = 60 * time.Second
)

// Config is one validated instance configuration.
type Config struct {
	// Redis holds the connection options from Redis_URL (several addresses
	// mean a Redis Cluster), with timeouts derived
	// from Redis_Timeout where the URL does not set them.
	Redis *redis.UniversalOptions
	// RedisURL is Redis_URL with the password replaced, safe to log.
	RedisURL string
	Stream   string
	// Keywords are the static keywords, canonical and de-duplicated by ID.
	Keywords   []keyword.Spec
	IgnoreCase bool
	Match      keyword.Mode
	// Keys are the top-level record keys scanned; AllKeys means every string
	// or bin value at any depth.
	Keys        []string
	AllKeys     bool
	Hostname    string
	HostnameKey string
	Samples     int
	MaxLen      int64
	// RulesKey is where the published keyword set is read; "" disables it.
	RulesKey      string
	RulesInterval time.Duration
	RedisTimeout  time.Duration
}

// Getter returns a property's value, "" when unset.
type Getter func(key string) string

// Parse reads every key through get and validates the result.
func Parse(get Getter) (*Config, error) {
	c := &Config{}
	var errs []error
	fail := func(err error) { errs = append(errs, err) }
	val := func(key string) string { return strings.TrimSpace(get(key)) }

	if err := c.parseRedisURL(val(KeyRedisURL)); err != nil {
		fail(err)
	}
	c.Stream = val(KeyStream)
	if c.Stream == "" {
		c.Stream = stream.DefaultStream
	}

	var err error
	optsOK := true
	if c.IgnoreCase, err = parseBool(KeyIgnoreCase, val(KeyIgnoreCase), false); err != nil {
		fail(err)
		optsOK = false
	}
	if m := val(KeyMatch); m != "" {
		if c.Match, err = keyword.ParseMode(m); err != nil {
			fail(fmt.Errorf("%s: %q is not a match mode (want substring, word or regex)", KeyMatch, m))
			optsOK = false
		}
	}
	// Keywords are read with Ignore_Case and Match_Mode; with either invalid,
	// keyword errors would be noise.
	if optsOK {
		if c.Keywords, err = parseKeywords(val(KeyKeywords), c.Match, c.IgnoreCase); err != nil {
			fail(err)
		}
	}

	keys := val(KeyKeys)
	if keys == "" {
		keys = DefaultKeys
	}
	if c.Keys, c.AllKeys, err = parseKeys(keys); err != nil {
		fail(err)
	}

	c.Hostname = val(KeyHostname)
	if c.Hostname == "" {
		h, herr := os.Hostname()
		if herr != nil || h == "" {
			fail(fmt.Errorf("%s: not set and the system hostname is unavailable (%v)", KeyHostname, herr))
		}
		c.Hostname = h
	}
	c.HostnameKey = val(KeyHostnameKey)

	samples, err := parseInt(KeySamples, val(KeySamples), DefaultSamples, stream.MaxSamples)
	if err != nil {
		fail(err)
	}
	c.Samples = int(samples)
	if c.MaxLen, err = parseInt(KeyMaxLen, val(KeyMaxLen), DefaultMaxLen, -1); err != nil {
		fail(err)
	}

	switch rk := val(KeyRulesKey); {
	case rk == "":
		c.RulesKey = keyword.DefaultSetKey
	case strings.EqualFold(rk, "off"), strings.EqualFold(rk, "none"):
		c.RulesKey = ""
	default:
		c.RulesKey = rk
	}
	if c.RulesInterval, err = parseDuration(KeyRulesInterval, val(KeyRulesInterval), DefaultRulesInterval, MinRulesInterval, MaxRulesInterval); err != nil {
		fail(err)
	}
	if c.RedisTimeout, err = parseDuration(KeyRedisTimeout, val(KeyRedisTimeout), DefaultRedisTimeout, MinRedisTimeout, MaxRedisTimeout); err != nil {
		fail(err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	if len(c.Keywords) == 0 && c.RulesKey == "" {
		return nil, fmt.Errorf("%s: no keywords configured and %s is %q, so nothing would ever be counted", KeyKeywords, KeyRulesKey, val(KeyRulesKey))
	}
	// Timeouts follow Redis_Timeout unless the URL's query set them.
	if c.Redis.DialTimeout == 0 {
		c.Redis.DialTimeout = c.RedisTimeout
	}
	if c.Redis.ReadTimeout == 0 {
		c.Redis.ReadTimeout = c.RedisTimeout
	}
	if c.Redis.WriteTimeout == 0 {
		c.Redis.WriteTimeout = c.RedisTimeout
	}
	c.Redis.ContextTimeoutEnabled = true
	// Fail a dial fast: Fluent Bit retries the chunk itself, and a flush
	// blocked on a dead Redis holds up its engine (without workers).
	if c.Redis.DialerRetries == 0 {
		c.Redis.DialerRetries = 2
	}
	return c, nil
}

func (c *Config) parseRedisURL(raw string) error {
	if raw == "" {
		raw = DefaultRedisURL
	}
	safe := redisurl.Redact(raw)
	u, err := redisurl.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %q: %v", KeyRedisURL, safe, err)
	}
	c.Redis = u.Options()
	c.RedisURL = safe
	return nil
}

// DB is the database number from Redis_URL.
func (c *Config) DB() int { return c.Redis.DB }

// Identity is the instance's stable identity for batch ids: everything that
// makes its output distinct (hostname, Redis address and database without
// credentials, stream, keyword configuration, scanned keys). It survives a
// restart, so a chunk retried after a restart keeps its batch id, and it
// differs between hosts, so two agents never share one.
func (c *Config) Identity() string {
	var b strings.Builder
	b.WriteString("keyalert/1")
	field := func(name, v string) {
		b.WriteByte('\x00')
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(v)
	}
	field("hostname", c.Hostname)
	field("hostname_key", c.HostnameKey)
	field("redis", strings.Join(c.Redis.Addrs, ",")+"/"+strconv.Itoa(c.Redis.DB))
	field("stream", c.Stream)
	for _, k := range c.Keywords {
		field("kw", k.ID())
	}
	field("rules_key", c.RulesKey)
	if c.AllKeys {
		field("keys", "*")
	} else {
		for _, k := range c.Keys {
			field("key", k)
		}
	}
	return b.String()
}

// SplitList splits a comma-separated value: `\,` is a literal comma, every
// other backslash is kept (regexes need them), items are trimmed.
func SplitList(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == ',':
			cur.WriteByte(',')
			i++
		case s[i] == ',':
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(out, strings.TrimSpace(cur.String()))
}

func parseKeywords(s string, mode keyword.Mode, icase bool) ([]keyword.Spec, error) {
	if s == "" {
		return nil, nil
	}
	items := SplitList(s)
	seen := make(map[string]bool, len(items))
	var out []keyword.Spec
	var errs []error
	for i, it := range items {
		if it == "" {
			errs = append(errs, fmt.Errorf("%s: item %d of %q is empty", KeyKeywords, i+1, s))
			continue
		}
		sp := keyword.Spec{Text: it, Match: mode, IgnoreCase: icase}
		if err := sp.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q: %w", KeyKeywords, it, err))
			continue
		}
		sp = sp.Canonical()
		// "Error,error" with Ignore_Case on is one keyword: keep the first.
		if id := sp.ID(); !seen[id] {
			seen[id] = true
			out = append(out, sp)
		}
	}
	return out, errors.Join(errs...)
}

func parseKeys(s string) ([]string, bool, error) {
	var keys []string
	all := false
	for i, k := range SplitList(s) {
		switch k {
		case "":
			return nil, false, fmt.Errorf("%s: item %d of %q is empty", KeyKeys, i+1, s)
		case "*":
			all = true
		default:
			keys = append(keys, k)
		}
	}
	if all {
		keys = nil
	}
	return keys, all, nil
}

func parseBool(key, s string, def bool) (bool, error) {
	switch strings.ToLower(s) {
	case "":
		return def, nil
	case "on", "true", "yes", "1":
		return true, nil
	case "off", "false", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("%s: %q is not a boolean (want on/off, true/false, yes/no, 1/0)", key, s)
}

// parseInt reads a non-negative integer; max < 0 means unbounded.
func parseInt(key, s string, def, max int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: %q is not a non-negative integer", key, s)
	}
	if max >= 0 && n > max {
		return 0, fmt.Errorf("%s: %d is over the limit of %d", key, n, max)
	}
	return n, nil
}

// parseDuration reads the one duration grammar (pkg/duration: "2s",
// "500ms", or whole seconds as Fluent Bit's own keys take them).
func parseDuration(key, s string, def, min, max time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := duration.Parse(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a duration (want %s)", key, s, duration.Syntax)
	}
	if d < min || d > max {
		return 0, fmt.Errorf("%s: %q is out of range (want %v to %v)", key, s, min, max)
	}
	return d, nil
}
