// Package config reads and validates a keyalert [OUTPUT] section. It takes the
// property lookup as a plain func, so it is tested without Fluent Bit; every
// error names the key and the bad value (with any Redis password redacted).
//
// Every key is one row of the settings table below: its name, default,
// bounds, documentation and parser. Parse walks the table and MarkdownTable
// renders the README's "Plugin keys" table from it, so code and docs cannot
// drift apart. A new key adds a Config field and a row.
package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyalert/keyalert/pkg/duration"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/redisurl"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/plugin/accessor"
	"github.com/keyalert/keyalert/plugin/aggregate"
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
	KeySamplesFlush  = "Samples_Per_Flush"
	KeyMaxLen        = "Max_Len"
	KeyRulesKey      = "Rules_Key"
	KeyRulesInterval = "Rules_Interval"
	KeyRedisTimeout  = "Redis_Timeout"
	KeyLabelKeys     = "Label_Keys"
	KeyTagLabel      = "Tag_Label"
	KeyTagRegex      = "Tag_Regex"
	KeyMaxSeries     = "Max_Series"
	KeyWaitReplicas  = "Redis_Wait_Replicas"
	KeyWaitTimeout   = "Redis_Wait_Timeout"
)

// Defaults and bounds; the settings table refers to them, so they are the
// values Parse enforces and the README shows.
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

	DefaultWaitTimeout = time.Second
	MaxWaitReplicas    = 16
	MinWaitTimeout     = 10 * time.Millisecond
	MaxWaitTimeout     = 60 * time.Second
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
	Keys     []string
	AllKeys  bool
	Hostname string
	// HostnameKey reads the host from each record (a record accessor);
	// zero when not set.
	HostnameKey accessor.Accessor
	Samples     int
	// SamplesPerFlush bounds the sample lines of one flush over all series.
	SamplesPerFlush int
	MaxLen          int64
	// RulesKey is where the published keyword set is read; "" disables it.
	RulesKey      string
	RulesInterval time.Duration
	RedisTimeout  time.Duration
	// LabelKeys are the labels read from each record, in the order written.
	LabelKeys []LabelKey
	// TagLabel keeps the chunk's tag as the series' tag; off leaves it empty.
	TagLabel bool
	// TagRegex derives labels from the tag by its named groups; nil when unset.
	TagRegex *regexp.Regexp
	// MaxSeries bounds the distinct series per keyword per flush.
	MaxSeries int
	// WaitReplicas is how many replicas must confirm a chunk's writes
	// (WAIT) before a flush returns FLB_OK; 0 does not wait.
	WaitReplicas int
	WaitTimeout  time.Duration
}

// LabelKey is one item of Label_Keys: a label name and where each record
// holds its value.
type LabelKey struct {
	Name string
	Path accessor.Accessor
}

// LabelNames lists every label a series can carry: Label_Keys' names, then
// Tag_Regex's named groups, in the order written.
func (c *Config) LabelNames() []string {
	var out []string
	for _, l := range c.LabelKeys {
		out = append(out, l.Name)
	}
	return append(out, TagRegexNames(c.TagRegex)...)
}

// TagRegexNames lists the named groups of re, in order; nil for a nil re.
func TagRegexNames(re *regexp.Regexp) []string {
	if re == nil {
		return nil
	}
	var out []string
	for _, n := range re.SubexpNames() {
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}

// Getter returns a property's value, "" when unset.
type Getter func(key string) string

// Setting is one [OUTPUT] key: its name, its default, its bounds, its README
// documentation and how its value is stored into Config.
type Setting struct {
	Key string // as written in the configuration; matched case-insensitively
	// Default is what an unset (or blank) key reads as, written as a user
	// would write it; "" means the key has no value.
	Default string
	// DefaultDoc is the README's Default cell where the default is not a value
	// a user could write (Hostname: the machine's hostname); "" shows Default.
	DefaultDoc string
	// Min and Max bound the value, written as a user would write them; ""
	// where that side is unbounded. Kind says how they (and the value) read.
	Min, Max string
	Kind     Kind
	Doc      string // the README's "Meaning" cell
	// after lists keys this one is read with: it is read once they are, and
	// not at all if any of them is invalid, as its errors would be noise.
	after []string
	// set parses v (trimmed, Default when blank) into c. Its errors need not
	// name the key (Parse adds it) but must show the value.
	set func(c *Config, s Setting, v string) error
}

// Kind is what a bounded setting's value is.
type Kind uint8

const (
	KindText     Kind = iota // no bounds
	KindInteger              // a base-10 integer
	KindDuration             // pkg/duration's grammar
)

// Settings lists every key in README order.
func Settings() []Setting { return slices.Clone(settings) }

var settings = []Setting{
	{Key: KeyRedisURL, Default: DefaultRedisURL,
		Doc: "Redis server: `redis://[user:password@]host:port/db`, or `rediss://…` for TLS; several `host:port` separated by commas mean a Redis Cluster (the same form as `KEYALERT_REDIS_URL`). " +
			"Query options (`?option=value&…`): `dial_timeout`, `read_timeout` and `write_timeout` (durations, by default `Redis_Timeout`) and `pool_size` (connections per node, `1` to `" + strconv.Itoa(redisurl.MaxPoolSize) + "`). " +
			"The password is never logged.",
		set: func(c *Config, _ Setting, v string) error {
			safe := redisurl.Redact(v)
			u, err := redisurl.Parse(v)
			if err != nil {
				return fmt.Errorf("%q: %v", safe, err)
			}
			c.Redis, c.RedisURL = u.Options(), safe
			return nil
		}},
	{Key: KeyStream, Default: stream.DefaultStream,
		Doc: "Stream key the entries are appended to.",
		set: func(c *Config, _ Setting, v string) error { c.Stream = v; return nil }},
	{Key: KeyKeywords, after: []string{KeyIgnoreCase, KeyMatch},
		Doc: "Static keywords, comma-separated; `\\,` is a literal comma; spaces around each keyword are trimmed. Keywords equal after case folding (with `Ignore_Case on`) are kept once. May be empty when `Rules_Key` is followed.",
		set: func(c *Config, _ Setting, v string) (err error) {
			c.Keywords, err = parseKeywords(v, c.Match, c.IgnoreCase)
			return err
		}},
	{Key: KeyIgnoreCase, Default: "off",
		Doc: "`on`/`off`, `true`/`false`, `yes`/`no`, `1`/`0`. Applies to every static keyword: ASCII case folding for `substring`/`word`, `(?i)` for `regex`.",
		set: func(c *Config, _ Setting, v string) (err error) {
			c.IgnoreCase, err = parseBool(v)
			return err
		}},
	{Key: KeyMatch, Default: keyword.Substring.String(),
		Doc: "How static keywords match: `substring` (anywhere), `word` (not next to a letter, digit, `_` or non-ASCII byte) or `regex` (Go RE2; each keyword must compile).",
		set: func(c *Config, _ Setting, v string) error {
			m, err := keyword.ParseMode(v)
			if err != nil {
				return fmt.Errorf("%q is not a match mode (want substring, word or regex)", v)
			}
			c.Match = m
			return nil
		}},
	{Key: KeyKeys, Default: DefaultKeys,
		Doc: "Top-level record keys whose string (or binary) values are scanned, comma-separated. `*` scans every string and binary value of the record, inside nested maps and arrays too, down to 32 levels (values nested deeper are not scanned). A record counts once per distinct keyword, however many of its values contain it.",
		set: func(c *Config, _ Setting, v string) (err error) {
			c.Keys, c.AllKeys, err = parseKeys(v)
			return err
		}},
	{Key: KeyHostname, DefaultDoc: "the machine's hostname",
		Doc: "Host label of the entries.",
		set: func(c *Config, _ Setting, v string) error {
			if v == "" {
				h, err := os.Hostname()
				if err != nil || h == "" {
					return fmt.Errorf("not set and the system hostname is unavailable (%v)", err)
				}
				v = h
			}
			c.Hostname = v
			return nil
		}},
	{Key: KeyHostnameKey,
		Doc: "Record field whose string value is the host label instead: a top-level key (`host`) or a record accessor as in Fluent Bit's own plugins (`$kubernetes['host']`, `$kubernetes['labels']['node']`, `$items[0]`; at most " + strconv.Itoa(accessor.MaxDepth) + " levels). Records without it (or with an empty or non-string value) use `Hostname`. Host, tag and label values are sanitized: control characters (NUL included) become `_`, invalid UTF-8 becomes U+FFFD, and a value is cut to " + strconv.Itoa(stream.MaxLabelValueBytes) + " bytes at a character boundary.",
		set: func(c *Config, _ Setting, v string) (err error) {
			if v == "" {
				return nil
			}
			c.HostnameKey, err = accessor.Parse(v)
			return err
		}},
	{Key: KeyLabelKeys,
		Doc: "Labels read from each record, comma-separated `name=$accessor` or `$accessor` items in the record accessor syntax of `Hostname_Key` (`namespace=$kubernetes['namespace_name'], $kubernetes['labels']['app'], $level`). " +
			"A bare accessor is named by its last key, characters other than letters, digits and `_` becoming `_` (`$kubernetes['labels']['app.kubernetes.io/name']` is `app_kubernetes_io_name`). " +
			"Names are letters, digits and `_`, not starting with a digit, at most " + strconv.Itoa(stream.MaxLabelNameBytes) + " bytes, unique, and not `host` or `tag`; with `Tag_Regex`'s groups at most " + strconv.Itoa(stream.MaxLabels) + " labels. " +
			"A record without the field (or with a value that is not a string) has an empty value for that label, and an empty label is left out of the entry. Each distinct set of values is its own series.",
		set: func(c *Config, _ Setting, v string) (err error) {
			c.LabelKeys, err = ParseLabelKeys(v)
			return err
		}},
	{Key: KeyTagLabel, Default: "on",
		Doc: "`on`: the chunk's Fluent Bit tag is the series' tag. `off`: the tag is left empty, so that tags with one value per container (`kube.var.log.containers.<pod>_<namespace>_<container>-<id>.log`) do not make a series each; take the parts worth keeping with `Tag_Regex`.",
		set: func(c *Config, _ Setting, v string) (err error) {
			c.TagLabel, err = parseBool(v)
			return err
		}},
	{Key: KeyTagRegex, after: []string{KeyLabelKeys},
		Doc: "A Go regular expression (RE2) applied to each chunk's tag; each named group `(?P<name>…)` is a label of that name (`^kube\\.var\\.log\\.containers\\.(?P<pod>[^_]+)_(?P<namespace>[^_]+)_(?P<container>.+)-[0-9a-f]{64}\\.log$`). " +
			"It needs at least one named group; group names follow the rules of `Label_Keys` names and count towards its limit. A tag it does not match gives empty values.",
		set: func(c *Config, _ Setting, v string) (err error) {
			c.TagRegex, err = parseTagRegex(v, c.LabelKeys)
			return err
		}},
	{Key: KeyMaxSeries, Default: strconv.Itoa(aggregate.DefaultMaxSeries), Kind: KindInteger, Min: "1", Max: strconv.Itoa(aggregate.MaxMaxSeries),
		Doc: "Most distinct series (host, tag and labels) one keyword may have in one flush, `1` to `" + strconv.Itoa(aggregate.MaxMaxSeries) + "`. Past it the keyword's further counts of that flush go to the overflow series, whose host, tag and every label are `" + stream.OverflowValue + "`; nothing is dropped. " +
			"A warning naming the keyword and the limit is logged at most once a minute, with the number of counts sent to the overflow series since the start.",
		set: func(c *Config, s Setting, v string) error {
			n, err := s.integer(v)
			c.MaxSeries = int(n)
			return err
		}},
	{Key: KeySamples, Default: strconv.Itoa(DefaultSamples), Kind: KindInteger, Min: "0", Max: strconv.Itoa(stream.MaxSamples),
		Doc: "Matching lines kept per flush for each keyword in each series (host, tag and labels: with `Hostname_Key` or `Label_Keys`, every series of a chunk gets its own), `0` to `" + strconv.Itoa(stream.MaxSamples) + "`; each is cut to 512 bytes at a UTF-8 boundary. `Samples_Per_Flush` bounds them over the whole flush.",
		set: func(c *Config, s Setting, v string) error {
			n, err := s.integer(v)
			c.Samples = int(n)
			return err
		}},
	{Key: KeySamplesFlush, Default: strconv.Itoa(aggregate.DefaultSamplesPerFlush), Kind: KindInteger, Min: "1", Max: strconv.Itoa(aggregate.MaxSamplesPerFlush),
		Doc: "Most sample lines one flush keeps over all keywords and series, `1` to `" + strconv.Itoa(aggregate.MaxSamplesPerFlush) + "`: with many series per chunk, `Samples` per series would otherwise copy up to series × keywords × 512 bytes per flush. Lines are taken in record order, so once the bound is reached, series first seen later in the chunk get none in that flush.",
		set: func(c *Config, s Setting, v string) error {
			n, err := s.integer(v)
			c.SamplesPerFlush = int(n)
			return err
		}},
	{Key: KeyMaxLen, Default: strconv.Itoa(DefaultMaxLen), Kind: KindInteger, Min: "0",
		Doc: "Approximate stream length (`XADD MAXLEN ~ n`); `0` disables trimming. Entries trimmed before keyalertd read them are lost (keyalertd logs and counts them), so size it for the longest time keyalertd may fall behind: entries per second of all agents × that time (1,000 hosts × 32 keywords at `Flush 1` write 32,000 entries/s, so the default holds about 30 s; each entry is about 300–400 bytes of Redis memory).",
		set: func(c *Config, s Setting, v string) (err error) {
			c.MaxLen, err = s.integer(v)
			return err
		}},
	{Key: KeyRulesKey, Default: keyword.DefaultSetKey,
		Doc: "Redis key where the backend publishes its keyword set; `off` or `none` stops following it. The effective keywords are the static ones plus the published ones (each ID once). Each `Rules_Interval` only the set's sum (its first 47 bytes, `GETRANGE`) is read, the whole set only when the sum changed; a set without a sum (published by a keyalertd that predates sums, or by hand) is read whole every `Rules_Interval`. If Redis is unreachable at start, the static keywords apply until the set can be read. With no keywords in effect, chunks are accepted and nothing is counted.",
		set: func(c *Config, _ Setting, v string) error {
			c.RulesKey = v
			if strings.EqualFold(v, "off") || strings.EqualFold(v, "none") {
				c.RulesKey = ""
			}
			return nil
		}},
	{Key: KeyRulesInterval, Default: durationText(DefaultRulesInterval), Kind: KindDuration,
		Min: durationText(MinRulesInterval), Max: durationText(MaxRulesInterval),
		Doc: "How often `Rules_Key` is read (`" + durationText(MinRulesInterval) + "` to `" + durationText(MaxRulesInterval) + "`), so a change applies within a few seconds without a restart. " +
			"Written in keyalert's one duration grammar (`pkg/duration`): a Go duration such as `1500ms` or `1m`, or `d`/`w` units; a bare number such as `10` is refused (write `10s`). " +
			"A document that does not parse is logged and the previous keywords are kept.",
		set: func(c *Config, s Setting, v string) (err error) {
			c.RulesInterval, err = s.duration(v)
			return err
		}},
	{Key: KeyRedisTimeout, Default: durationText(DefaultRedisTimeout), Kind: KindDuration,
		Min: durationText(MinRedisTimeout), Max: durationText(MaxRedisTimeout),
		Doc: "Deadline for one flush's Redis round trip and for one `Rules_Key` read (`" + durationText(MinRedisTimeout) + "` to `" + durationText(MaxRedisTimeout) + "`, in the duration grammar of `Rules_Interval`); " +
			"also the dial, read and write timeouts unless the URL sets them (`?dial_timeout=…`, `read_timeout`, `write_timeout`).",
		set: func(c *Config, s Setting, v string) (err error) {
			c.RedisTimeout, err = s.duration(v)
			return err
		}},
	{Key: KeyWaitReplicas, Default: "0", Kind: KindInteger, Min: "0", Max: strconv.Itoa(MaxWaitReplicas),
		Doc: "Replicas that must hold a chunk's entries before the flush returns `FLB_OK` (`0` to `" + strconv.Itoa(MaxWaitReplicas) + "`): after the chunk's `MULTI/EXEC` on each master it wrote to, `WAIT n` up to `Redis_Wait_Timeout`. " +
			"Fewer acknowledgements return `FLB_RETRY` with a warning (the entries may already count; keyalertd drops the retry's copy). " +
			"With `1` or more, a master that dies after a flush returned `FLB_OK` cannot take the chunk with it when a replica that acknowledged is promoted; with `0` (asynchronous replication) entries written in the last moments before a master dies can be lost. " +
			"It does not make writes durable on disk (that is the masters' and replicas' `appendfsync`).",
		set: func(c *Config, s Setting, v string) error {
			n, err := s.integer(v)
			c.WaitReplicas = int(n)
			return err
		}},
	{Key: KeyWaitTimeout, Default: durationText(DefaultWaitTimeout), Kind: KindDuration,
		Min: durationText(MinWaitTimeout), Max: durationText(MaxWaitTimeout),
		Doc: "How long one `WAIT` of `Redis_Wait_Replicas` may take (`" + durationText(MinWaitTimeout) + "` to `" + durationText(MaxWaitTimeout) + "`); it adds to the flush's `Redis_Timeout`.",
		set: func(c *Config, s Setting, v string) (err error) {
			c.WaitTimeout, err = s.duration(v)
			return err
		}},
}

// Parse reads every key through get, walking the settings table, and
// validates the result. The error has a line per bad value (a list key may
// have several), each naming its key.
func Parse(get Getter) (*Config, error) {
	c := &Config{}
	var errs []error
	for _, m := range Misspelled(get) {
		v := redisurl.Redact(get(m.Key)) // any key may hold a URL
		errs = append(errs, fmt.Errorf("%s: not a keyalert key (value %q); did you mean %s? Fluent Bit matches keys in any case", m.Key, v, m.Want))
	}
	read := map[string]bool{}   // keys whose turn has come
	failed := map[string]bool{} // keys with a bad value
	val := func(s Setting) string {
		if v := strings.TrimSpace(get(s.Key)); v != "" {
			return v
		}
		return s.Default
	}
	ready := func(s Setting) bool {
		for _, k := range s.after {
			if !read[k] {
				return false
			}
		}
		return true
	}
	apply := func(s Setting) {
		read[s.Key] = true
		for _, k := range s.after {
			if failed[k] {
				return
			}
		}
		if err := s.set(c, s, val(s)); err != nil {
			failed[s.Key] = true
			errs = append(errs, nameErr(s.Key, err))
		}
	}
	// Table order, except that a key read with others waits for them
	// (Keywords for Ignore_Case and Match_Mode), so errors follow the README.
	var waiting []Setting
	for _, s := range settings {
		if !ready(s) {
			waiting = append(waiting, s)
			continue
		}
		apply(s)
		for progress := true; progress; {
			n := len(waiting)
			waiting = slices.DeleteFunc(waiting, func(w Setting) bool {
				if ready(w) {
					apply(w)
					return true
				}
				return false
			})
			progress = len(waiting) < n
		}
	}
	for _, w := range waiting { // unreachable while every after names a row (tested)
		apply(w)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	// What no single key can check.
	if len(c.Keywords) == 0 && c.RulesKey == "" {
		return nil, fmt.Errorf("%s: no keywords configured and %s is %q, so nothing would ever be counted", KeyKeywords, KeyRulesKey, strings.TrimSpace(get(KeyRulesKey)))
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

// nameErr prefixes each of err's errors (a key may report several, one per
// bad list item) with the key, so every line of Parse's error names it.
func nameErr(key string, err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, e := range j.Unwrap() {
			errs = append(errs, nameErr(key, e))
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s: %w", key, err)
}

// MarkdownTable renders the settings as the README's "Plugin keys" table.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| Key | Default | Meaning |\n|---|---|---|\n")
	for _, s := range settings {
		def := s.DefaultDoc
		switch {
		case def != "":
		case s.Default == "":
			def = "(none)"
		default:
			def = "`" + s.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", s.Key, def, strings.ReplaceAll(s.Doc, "|", "\\|"))
	}
	return b.String()
}

// durationText writes a duration bound or default as the README has always
// shown them, whole seconds up to a minute ("60s", not "1m").
func durationText(d time.Duration) string {
	if d%time.Second == 0 && d <= time.Minute {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return duration.Format(d)
}

// Range writes the setting's bounds for messages: "1s to 60s", "at least 0";
// "" when it has none.
func (s Setting) Range() string {
	switch {
	case s.Min != "" && s.Max != "":
		return s.Min + " to " + s.Max
	case s.Min != "":
		return "at least " + s.Min
	case s.Max != "":
		return "at most " + s.Max
	}
	return ""
}

// integer reads a non-negative integer within the setting's bounds.
func (s Setting) integer(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative integer", v)
	}
	if lo, _ := strconv.ParseInt(s.Min, 10, 64); s.Min != "" && n < lo {
		return 0, fmt.Errorf("%d is under the minimum of %d", n, lo)
	}
	if hi, _ := strconv.ParseInt(s.Max, 10, 64); s.Max != "" && n > hi {
		return 0, fmt.Errorf("%d is over the limit of %d", n, hi)
	}
	return n, nil
}

// duration reads pkg/duration's grammar ("2s", "500ms", "1d") within the
// setting's bounds.
func (s Setting) duration(v string) (time.Duration, error) {
	d, err := duration.Parse(v)
	if err != nil {
		return 0, err
	}
	lo, _ := duration.Parse(s.Min) // "" reads as no lower bound: 0
	hi, err := duration.Parse(s.Max)
	if d < lo || (err == nil && d > hi) {
		return 0, fmt.Errorf("%q is out of range (want %s)", v, s.Range())
	}
	return d, nil
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
	field("hostname_key", c.HostnameKey.String())
	field("redis", strings.Join(c.Redis.Addrs, ",")+"/"+strconv.Itoa(c.Redis.DB))
	field("stream", c.Stream)
	for _, k := range c.Keywords {
		field("kw", k.ID())
	}
	field("rules_key", c.RulesKey)
	// The label keys change what a chunk's entries are; written only when
	// set, so a label-free instance keeps the identity it had before them.
	for _, l := range c.LabelKeys {
		field("label", l.Name+"="+l.Path.String())
	}
	if !c.TagLabel {
		field("tag_label", "off")
	}
	if c.TagRegex != nil {
		field("tag_regex", c.TagRegex.String())
	}
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
			errs = append(errs, fmt.Errorf("item %d of %q is empty", i+1, s))
			continue
		}
		sp := keyword.Spec{Text: it, Match: mode, IgnoreCase: icase}
		if err := sp.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", it, err))
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
			return nil, false, fmt.Errorf("item %d of %q is empty", i+1, s)
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

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "on", "true", "yes", "1":
		return true, nil
	case "off", "false", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (want on/off, true/false, yes/no, 1/0)", s)
}
