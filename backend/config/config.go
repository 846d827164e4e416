// Package config reads keyalertd's settings from command-line flags with
// environment fallbacks (flag, then KEYALERT_* variable, then default) and
// validates them. Every setting is one row of the settings table below, which
// also renders the README table, so docs and code cannot drift apart. Packages
// read the resulting Config; a new feature adds a field and a row.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keyalert/keyalert/pkg/redisurl"
	"github.com/keyalert/keyalert/pkg/stream"
)

// Config is the validated configuration of one keyalertd process.
type Config struct {
	// Redis is the parsed KEYALERT_REDIS_URL.
	Redis    redisurl.URL
	RedisURL string // as given, for logs (password removed by Redacted)

	Stream   string // stream key the plugin writes to
	Group    string // consumer group shared by every keyalertd on the stream
	Consumer string // this process's name in the group
	Listen   string // HTTP listen address

	Retention     time.Duration // how long windows and dedup ids are kept
	BatchSize     int           // entries per XREADGROUP / apply script
	Workers       int           // concurrent read-apply loops
	Block         time.Duration // XREADGROUP BLOCK
	ClaimIdle     time.Duration // an entry pending this long is taken over
	ClaimInterval time.Duration // how often idle entries are looked for
	MaxDeliveries int64         // more deliveries than this: dead letter
	Samples       int           // sample lines kept per keyword
	DeadMaxLen    int64         // approximate cap of the dead-letter stream

	APITokens      []string // bearer tokens accepted on /api/v1
	InsecureNoAuth bool     // serve /api/v1 without tokens

	LogFormat       string // json or text
	LogLevel        string // debug, info, warn, error
	ShutdownTimeout time.Duration

	Alerting Alerting // rules, alert engine, outbox, PagerDuty (alerting.go)
}

// Setting is one configuration knob: its flag, its environment variable, its
// default and how it is stored into Config.
type Setting struct {
	Flag    string // without dashes
	Env     string
	Default string // as a user would write it; "" means unset
	Usage   string
	Bool    bool // a flag that may be given without a value
	Secret  bool // never echoed in error messages
	set     func(c *Config, v string) error
}

// Settings lists every setting in README order.
func Settings() []Setting { return settings }

var settings = append([]Setting{
	{Flag: "redis-url", Env: "KEYALERT_REDIS_URL", Default: "redis://127.0.0.1:6379/0", Secret: true,
		Usage: "Redis to consume from: `redis://[user:pass@]host:port/db`, `rediss://` for TLS; several `host:port` separated by commas mean a Redis Cluster",
		set: func(c *Config, v string) error {
			u, err := redisurl.Parse(v)
			c.Redis, c.RedisURL = u, v
			return err
		}},
	{Flag: "stream", Env: "KEYALERT_STREAM", Default: stream.DefaultStream,
		Usage: "stream key the plugin writes to; windows, dedup ids and the dead-letter stream `{stream}:dead` share its cluster slot",
		set: func(c *Config, v string) error {
			if err := checkStreamKey(v); err != nil {
				return err
			}
			c.Stream = v
			return nil
		}},
	{Flag: "group", Env: "KEYALERT_GROUP", Default: "keyalertd",
		Usage: "consumer group; every keyalertd on one stream uses the same group (created if missing)",
		set:   nonEmpty(func(c *Config) *string { return &c.Group })},
	{Flag: "consumer", Env: "KEYALERT_CONSUMER", Default: "",
		Usage: "this process's consumer name in the group (default `<hostname>-<pid>`); a fixed name lets a restarted process resume its own pending entries at once",
		set: func(c *Config, v string) error {
			if v == "" {
				h, err := os.Hostname()
				if err != nil || h == "" {
					h = "keyalertd"
				}
				v = fmt.Sprintf("%s-%d", h, os.Getpid())
			}
			c.Consumer = v
			return nil
		}},
	{Flag: "listen", Env: "KEYALERT_LISTEN", Default: "127.0.0.1:8080",
		Usage: "HTTP listen address (API, health, metrics)",
		set:   nonEmpty(func(c *Config) *string { return &c.Listen })},
	{Flag: "retention", Env: "KEYALERT_RETENTION", Default: "7d",
		Usage: "how long per-minute counts and dedup ids are kept (Go duration, or whole days like `7d`); older entries are acknowledged and not counted",
		set: func(c *Config, v string) error {
			d, err := ParseDuration(v)
			if err == nil && d < 2*time.Minute {
				err = errors.New("want at least 2m")
			}
			c.Retention = d
			return err
		}},
	{Flag: "api-tokens", Env: "KEYALERT_API_TOKENS", Default: "", Secret: true,
		Usage: "comma-separated bearer tokens accepted on /api/v1 (prefer the variable: flags show in `ps`)",
		set: func(c *Config, v string) error {
			c.APITokens = nil
			for _, t := range strings.Split(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					c.APITokens = append(c.APITokens, t)
				}
			}
			return nil
		}},
	{Flag: "insecure-no-auth", Env: "KEYALERT_INSECURE_NO_AUTH", Default: "false", Bool: true,
		Usage: "serve /api/v1 without tokens; required to start when KEYALERT_API_TOKENS is empty",
		set:   boolean(func(c *Config) *bool { return &c.InsecureNoAuth })},
	{Flag: "batch-size", Env: "KEYALERT_BATCH_SIZE", Default: "1000",
		Usage: "entries read and applied per batch (1–5000)",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 1, 5000)
			c.BatchSize = int(n)
			return err
		}},
	{Flag: "workers", Env: "KEYALERT_WORKERS", Default: "4",
		Usage: "concurrent read-apply loops (1–16): some prepare batches while Redis applies another's",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 1, 16)
			c.Workers = int(n)
			return err
		}},
	{Flag: "block", Env: "KEYALERT_BLOCK", Default: "2s",
		Usage: "how long one read waits for new entries; also bounds how long SIGTERM waits for a read",
		set:   durationIn(func(c *Config) *time.Duration { return &c.Block }, time.Millisecond, time.Minute)},
	{Flag: "claim-idle", Env: "KEYALERT_CLAIM_IDLE", Default: "1m",
		Usage: "an entry pending this long with another consumer (presumed dead) is claimed",
		set:   durationIn(func(c *Config) *time.Duration { return &c.ClaimIdle }, 100*time.Millisecond, 24*time.Hour)},
	{Flag: "claim-interval", Env: "KEYALERT_CLAIM_INTERVAL", Default: "15s",
		Usage: "how often idle pending entries are looked for",
		set:   durationIn(func(c *Config) *time.Duration { return &c.ClaimInterval }, 50*time.Millisecond, time.Hour)},
	{Flag: "max-deliveries", Env: "KEYALERT_MAX_DELIVERIES", Default: "10",
		Usage: "an entry delivered more often than this goes to the dead-letter stream",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 1, 1000000)
			c.MaxDeliveries = n
			return err
		}},
	{Flag: "samples", Env: "KEYALERT_SAMPLES", Default: "20",
		Usage: "sample lines kept per keyword (0–1000)",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 0, 1000)
			c.Samples = int(n)
			return err
		}},
	{Flag: "dead-maxlen", Env: "KEYALERT_DEAD_MAXLEN", Default: "100000",
		Usage: "approximate length cap of the dead-letter stream",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 1, 1<<40)
			c.DeadMaxLen = n
			return err
		}},
	{Flag: "log-format", Env: "KEYALERT_LOG_FORMAT", Default: "json",
		Usage: "log format: `json` or `text`",
		set:   oneOf(func(c *Config) *string { return &c.LogFormat }, "json", "text")},
	{Flag: "log-level", Env: "KEYALERT_LOG_LEVEL", Default: "info",
		Usage: "log level: `debug`, `info`, `warn` or `error`",
		set:   oneOf(func(c *Config) *string { return &c.LogLevel }, "debug", "info", "warn", "error")},
	{Flag: "shutdown-timeout", Env: "KEYALERT_SHUTDOWN_TIMEOUT", Default: "10s",
		Usage: "on SIGTERM, how long to wait for the batch in flight and open HTTP requests",
		set:   durationIn(func(c *Config) *time.Duration { return &c.ShutdownTimeout }, time.Second, 10*time.Minute)},
}, alertingSettings...)

// ErrHelp is returned by Load when -h or --help was given; usage has been
// written to the output.
var ErrHelp = flag.ErrHelp

// Load reads settings from args (without the program name), falling back to
// getenv, then to defaults. Errors name the setting and the bad value; usage
// and flag errors go to out.
func Load(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	fs := flag.NewFlagSet("keyalertd", flag.ContinueOnError)
	fs.SetOutput(out)
	given := map[string]string{}
	for _, s := range settings {
		usage := fmt.Sprintf("%s (env %s, default %q)", s.Usage, s.Env, s.Default)
		if s.Bool { // accepts a bare --flag as well as --flag=false
			fs.BoolFunc(s.Flag, usage, func(v string) error { given[s.Flag] = v; return nil })
			continue
		}
		fs.Func(s.Flag, usage, func(v string) error { given[s.Flag] = v; return nil })
	}
	fs.Usage = func() {
		fmt.Fprintln(out, "Usage: keyalertd [flags]\n\nEvery flag falls back to its environment variable, then to its default.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (settings are flags like --stream=NAME)", fs.Arg(0))
	}
	c := &Config{}
	for _, s := range settings {
		v, src := s.Default, s.Env+" (default)"
		if e := getenv(s.Env); e != "" {
			v, src = e, s.Env
		}
		if f, ok := given[s.Flag]; ok {
			v, src = f, s.Env+" (--"+s.Flag+")"
		}
		if err := s.set(c, v); err != nil {
			shown := fmt.Sprintf("%q", v)
			if s.Secret {
				shown = "(value hidden)"
			}
			return nil, fmt.Errorf("%s = %s: %w", src, shown, err)
		}
	}
	if len(c.APITokens) == 0 && !c.InsecureNoAuth {
		return nil, errors.New("KEYALERT_API_TOKENS is empty: set bearer tokens for /api/v1, or pass --insecure-no-auth (KEYALERT_INSECURE_NO_AUTH=true) to serve the API without authentication")
	}
	return c, nil
}

// MarkdownTable renders the settings as the README table.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| Variable | Flag | Default | Meaning |\n|---|---|---|---|\n")
	for _, s := range settings {
		def := "`" + s.Default + "`"
		if s.Default == "" {
			def = "—"
		}
		fmt.Fprintf(&b, "| `%s` | `--%s` | %s | %s |\n", s.Env, s.Flag, def, strings.ReplaceAll(s.Usage, "|", "\\|"))
	}
	return b.String()
}

// ParseDuration accepts Go durations ("90s", "36h") and whole days ("7d").
func ParseDuration(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 64)
		if err != nil || days <= 0 || days > 3650 {
			return 0, fmt.Errorf("want a duration like 36h or 7d")
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("want a positive duration like 36h or 7d")
	}
	return d, nil
}

func nonEmpty(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if strings.TrimSpace(v) == "" {
			return errors.New("must not be empty")
		}
		*field(c) = v
		return nil
	}
}

func oneOf(field func(*Config) *string, allowed ...string) func(*Config, string) error {
	return func(c *Config, v string) error {
		for _, a := range allowed {
			if strings.EqualFold(v, a) {
				*field(c) = a
				return nil
			}
		}
		return fmt.Errorf("want one of %s", strings.Join(allowed, ", "))
	}
}

func boolean(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("want true or false")
		}
		*field(c) = b
		return nil
	}
}

func durationIn(field func(*Config) *time.Duration, lo, hi time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := ParseDuration(v)
		if err != nil {
			return err
		}
		if d < lo || d > hi {
			return fmt.Errorf("want between %v and %v", lo, hi)
		}
		*field(c) = d
		return nil
	}
}

func intIn(v string, lo, hi int64) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errors.New("want an integer")
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("want between %d and %d", lo, hi)
	}
	return n, nil
}

// checkStreamKey rejects stream names whose derived keys would not share the
// stream's cluster slot (a "{}" with nothing inside, or a stray brace).
func checkStreamKey(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	if clusterTag(v) != clusterTag(stream.HashTag(v)+":x") {
		return errors.New("its keys could not share one cluster slot: use a plain name or one hash tag like {keyalert}:events")
	}
	return nil
}

// clusterTag is the part of key that Redis Cluster hashes: the text between
// the first '{' and the next '}' if that is non-empty, else the whole key.
func clusterTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}
