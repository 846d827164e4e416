// Package config owns every keyalertd setting: its flag, its environment
// variable, its default, its bounds and its documentation are one row of the
// table in settings.go, which also renders the README table. Load reads flags
// with environment fallbacks (flag, then KEYALERT_* variable, then default)
// straight into the Options of the packages that use them; those packages
// never name a flag or a variable, and their zero Options are their defaults,
// which the table renders from the packages' own Default constants.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/api"
	"github.com/keyalert/keyalert/backend/ingest"
	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/notify/pagerduty"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/receiver"
	"github.com/keyalert/keyalert/backend/redisguard"
	"github.com/keyalert/keyalert/backend/rollup"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/session"
	"github.com/keyalert/keyalert/backend/timeinterval"
	"github.com/keyalert/keyalert/pkg/redisurl"
)

// Config is the validated configuration of one keyalertd process. The
// Options fields hold only settings; keyalertd adds clients, loggers,
// registries and hooks when it wires them.
type Config struct {
	Redis    redisurl.URL // the parsed KEYALERT_REDIS_URL
	RedisURL string       // as given; log it through redisurl.Redact

	Listen          string // HTTP listen address
	LogFormat       string // json or text
	LogLevel        string // debug, info, warn or error
	ShutdownTimeout time.Duration

	Ingest    ingest.Options     // stream, group, batches, retention, dead letters
	API       api.Options        // tokens, body and request bounds
	Rules     rules.Options      // where the keyword set is published
	Lease     lease.Options      // shard and sender leases
	Alert     alert.Options      // evaluation tick, links, sample lines
	Alerts    alert.StoreOptions // what is kept of alerts: resolved ones' TTL, history
	Outbox    outbox.Options     // retry delays, concurrency
	PagerDuty pagerduty.Options  // endpoint and timeout
	Guard     redisguard.Options // persistence check, data loss readiness
	Rollup    rollup.Options     // the hourly tier: retention, roll-up pace
	// TimeIntervals bounds the named mute intervals.
	TimeIntervals timeinterval.Options
	Session       session.Options // web console sign-in
	// DefaultRoutingKey pages rules without their own routing key; "" none.
	DefaultRoutingKey rules.Secret
	// Receivers bounds and tunes the named receivers (KEYALERT_MAX_RECEIVERS,
	// per-type pace, timeouts); Receivers.PagerDuty is set when wired.
	Receivers receiver.Options
}

// Setting is one configuration knob.
type Setting struct {
	Flag    string // without dashes
	Env     string
	Default string // as a user would write it; "" means unset
	Bounds  string // the accepted range or values, rendered into docs; "" none
	Usage   string
	Bool    bool // a flag that may be given without a value
	Secret  bool // never echoed in error messages
	set     func(c *Config, v string) error
}

// Settings lists every setting in README order.
func Settings() []Setting { return settings }

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
		usage := fmt.Sprintf("%s (env %s, default %q)", s.doc(), s.Env, s.Default)
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
	if len(c.API.Tokens) == 0 && !c.API.InsecureNoAuth {
		return nil, errors.New("KEYALERT_API_TOKENS is empty: set bearer tokens for /api/v1, or pass --insecure-no-auth (KEYALERT_INSECURE_NO_AUTH=true) to serve the API without authentication")
	}
	return c, nil
}

// doc is the usage text with the bounds appended.
func (s Setting) doc() string {
	if s.Bounds == "" {
		return s.Usage
	}
	return s.Usage + " (" + s.Bounds + ")"
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
		fmt.Fprintf(&b, "| `%s` | `--%s` | %s | %s |\n", s.Env, s.Flag, def, strings.ReplaceAll(s.doc(), "|", "\\|"))
	}
	return b.String()
}
